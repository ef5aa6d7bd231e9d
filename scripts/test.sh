#!/usr/bin/env bash
# Builds and runs the whole test suite twice: a normal build, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer.
# Set BULKHEAD_SKIP_SANITIZE=1 to run only the first pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

echo "== build and test (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [[ "${BULKHEAD_SKIP_SANITIZE:-0}" != 1 ]]; then
  echo "== build and test (ASan + UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBULKHEAD_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j"$jobs")
fi
