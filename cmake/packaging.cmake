# Installation beyond the binaries (the systemd unit, the example config,
# the man page, the docs) and the Debian package (cpack -G DEB).
#
#   cmake --install build [--prefix P]   unit in P/lib/systemd/system, config
#                                        in the prefix's etc (/etc for /usr)
#   cd build && cpack -G DEB             bulkhead_<version>_<arch>.deb, /usr
include(${CMAKE_SOURCE_DIR}/cmake/install_paths.cmake)

set(BULKHEAD_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd unit goes (relative: under the install prefix)")
set(BH_SYSCONFDIR_SETTING "${CMAKE_INSTALL_SYSCONFDIR}")

# The man page, compressed as Debian wants it (gzip -n: no name or time,
# the same bytes every build).
find_program(GZIP gzip REQUIRED)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/install/bulkhead.8.gz
                   COMMAND ${GZIP} -9nc ${CMAKE_SOURCE_DIR}/docs/bulkhead.8
                           > ${CMAKE_BINARY_DIR}/install/bulkhead.8.gz
                   DEPENDS ${CMAKE_SOURCE_DIR}/docs/bulkhead.8 VERBATIM)
add_custom_target(bulkhead_man ALL DEPENDS ${CMAKE_BINARY_DIR}/install/bulkhead.8.gz)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/install)
install(FILES ${CMAKE_BINARY_DIR}/install/bulkhead.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES README.md docs/ARCHITECTURE.md docs/PLUGINS.md docs/BENCHMARKS.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES etc/bulkhead.ini DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

configure_file(${CMAKE_SOURCE_DIR}/cmake/install_service.cmake.in
               ${CMAKE_BINARY_DIR}/install/install_service.cmake @ONLY)
install(SCRIPT ${CMAKE_BINARY_DIR}/install/install_service.cmake)

# --- Debian package ----------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME bulkhead)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR bulkhead)
set(CPACK_PACKAGE_CONTACT "bulkhead maintainers <bulkhead@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "resilient API gateway daemon with per-upstream plugins")
set(CPACK_PACKAGE_DESCRIPTION
    "A libuv gateway that loads one plugin per upstream domain (auth, billing,\n\
webhooks, ai) and gives each retries, circuit breakers, rate limits and\n\
RFC 9457 Problem JSON errors. Includes the plugin SDK header and .pc file.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# (with CPACK_SET_DESTDIR, cpack installs to CPACK_INSTALL_PREFIX)
set(CPACK_INSTALL_PREFIX /usr)
# DESTDIR staging: the install script sees the real prefix (/usr), so the
# unit it writes names /usr/bin/bulkhead, and /etc stays /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from the binaries (dpkg-shlibdeps, in dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
bh_sysconfdir("${CPACK_PACKAGING_INSTALL_PREFIX}" "${BH_SYSCONFDIR_SETTING}" BH_DEB_SYSCONFDIR)
file(WRITE ${CMAKE_BINARY_DIR}/install/debian/conffiles "${BH_DEB_SYSCONFDIR}/bulkhead/bulkhead.ini\n")
foreach(s postinst prerm postrm)
  configure_file(${CMAKE_SOURCE_DIR}/etc/debian/${s} ${CMAKE_BINARY_DIR}/install/debian/${s} COPYONLY)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/install/debian/conffiles ${CMAKE_BINARY_DIR}/install/debian/postinst
    ${CMAKE_BINARY_DIR}/install/debian/prerm ${CMAKE_BINARY_DIR}/install/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
