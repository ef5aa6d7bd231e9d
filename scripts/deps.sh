#!/usr/bin/env bash
# Installs the Debian packages bulkhead needs, when they are missing.
# Usage: scripts/deps.sh [--bench]
set -euo pipefail

pkgs=(build-essential cmake pkg-config python3 curl
      libuv1-dev node-llhttp libjwt-dev libsqlite3-dev libcurl4-openssl-dev
      libjansson-dev libinih-dev libsodium-dev libsystemd-dev libssl-dev
      chromium nodejs dpkg-dev file systemd man-db mandoc
      libhiredis-dev redis-server libpq-dev postgresql prometheus python3-prometheus-client
      openssl)
# libhiredis-dev: [redis] shared rate limits; redis-server: the private
# server tests/integration/redis_server.py starts for them.
# prometheus (promtool) and python3-prometheus-client: test_metrics_formats.
# libpq-dev: the PostgreSQL store backend; postgresql: the private server
# the PostgreSQL tests start (tests/integration/pg_server.py).
# chromium: the browser tests (test_webhooks_browser, test_cors_browser);
# test_cors_browser installs puppeteer-core with npm: Debian's npm package,
# unless the nodejs installed already brings npm (a nodejs built elsewhere
# conflicts with Debian's npm).
# dpkg-dev (dpkg-shlibdeps) and file: cpack -G DEB's dependency list;
# systemd: systemd-analyze verify / security on the unit; man-db, mandoc:
# the man page (tests/packaging/test_deb.py).
# openssl: the CLI makes test_upstream_tls's CA and certificates.
# prometheus (promtool) and python3-prometheus-client (its OpenMetrics
# parser): test_metrics_formats checks both /metrics formats.
command -v npm >/dev/null || pkgs+=(npm)
if [[ "${1:-}" == "--bench" ]]; then
  # valgrind: tests/bench/callgrind.py; strace: tests/bench/syscalls.py
  pkgs+=(nginx-light wrk valgrind strace)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
