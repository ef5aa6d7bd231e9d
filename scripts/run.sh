#!/usr/bin/env bash
# Builds bulkhead and runs it on its embedded default configuration:
# API on 127.0.0.1:8080, admin on 127.0.0.1:9901, data under ./bulkhead-data.
# Extra arguments go to the daemon (e.g. -c etc/bulkhead.ini).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULKHEAD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
exec build/bulkhead "$@"
