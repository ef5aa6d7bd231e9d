# Where the configuration of an install under PREFIX lives, by the GNU
# rule GNUInstallDirs follows: /etc for the prefixes / and /usr, /etc/opt/X
# for /opt/X, PREFIX/etc otherwise. An absolute SYSCONFDIR (given at
# configure time, -DCMAKE_INSTALL_SYSCONFDIR=/etc) wins.
# Included both at configure time (the package's conffiles) and at install
# time (the unit and the example config), so that both follow the prefix
# the install really uses (cmake --install --prefix, or the package's).
function(bh_sysconfdir prefix sysconfdir out)
  string(REGEX REPLACE "/+$" "" p "${prefix}")
  if(IS_ABSOLUTE "${sysconfdir}")
    set(r "${sysconfdir}")
  elseif(p STREQUAL "" OR p STREQUAL "/usr")
    set(r "/${sysconfdir}")
  elseif(p MATCHES "^/opt/([^/]+)$")
    set(r "/${sysconfdir}/opt/${CMAKE_MATCH_1}")
  else()
    set(r "${p}/${sysconfdir}")
  endif()
  set(${out} "${r}" PARENT_SCOPE)
endfunction()

# DIR relative to PREFIX unless it is absolute.
function(bh_full_dir prefix dir out)
  string(REGEX REPLACE "/+$" "" p "${prefix}")
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${p}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
