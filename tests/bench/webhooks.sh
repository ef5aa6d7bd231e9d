#!/usr/bin/env bash
# The webhooks dispatcher under load: events accepted per second with a
# fan-out to 3 endpoints, and deliveries completed per second against a
# local receiver (bulkhead-sim), for synchronous = full and normal.
#
#   tests/bench/webhooks.sh
#   BENCH_SECONDS=10 BENCH_CONNS=32 tests/bench/webhooks.sh
#
# Environment:
#   BENCH_SECONDS    length of the measured wrk run (5; 1..300)
#   BENCH_CONNS      wrk connections (16; 1..10000)
#   BENCH_WH_SYNC    durability settings to measure ("full normal")
#   BENCH_ROUNDS     rounds per setting, interleaved; medians shown (1; 1..20)
#   BENCH_BUILD_DIR  build directory (<repo>/build-bench)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU   cores (0 and 1): the daemon alone on
#                    one, wrk and the receiver on the other
#   BENCH_KEEP_TMP=1 keep the temp dir (configs, logs)
#   BENCH_VERBOSE=1  print wrk's own output too
#
# Safety: loopback only, every duration bounded, every process started is
# stopped on exit, temp files live in one mktemp directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_CONNS=${BENCH_CONNS:-16}
BENCH_WH_SYNC=${BENCH_WH_SYNC:-full normal}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
BENCH_SERVER_CPU=${BENCH_SERVER_CPU:-0}
BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-1}

die() { echo "bench: $*" >&2; exit 1; }
is_int() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
is_int "$BENCH_SECONDS" 1 300 || die "BENCH_SECONDS must be 1..300"
is_int "$BENCH_CONNS" 1 10000 || die "BENCH_CONNS must be 1..10000"
is_int "$BENCH_ROUNDS" 1 20 || die "BENCH_ROUNDS must be 1..20"
for s in $BENCH_WH_SYNC; do
  case $s in full | normal) ;; *) die "BENCH_WH_SYNC: unknown '$s'" ;; esac
done

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
command -v cmake >/dev/null || missing+=(cmake)
if ((${#missing[@]})); then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    SUDO=(sudo)
  fi
  echo "bench: installing ${missing[*]} (apt-get)"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NCPU=$(getconf _NPROCESSORS_ONLN)
((BENCH_SERVER_CPU < NCPU && BENCH_LOAD_CPU < NCPU)) ||
  die "cores $BENCH_SERVER_CPU/$BENCH_LOAD_CPU not online ($NCPU cores)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-whbench.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then echo "bench: kept $TMP" >&2
  else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== build (Release) in $BENCH_BUILD_DIR"
cmake -S "$ROOT" -B "$BENCH_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
  -DBULKHEAD_TESTS=ON >"$TMP/cmake.log" 2>&1 ||
  { cat "$TMP/cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$BENCH_BUILD_DIR" -j"$NCPU" --target bulkhead bulkhead-sim \
  webhooks >"$TMP/build.log" 2>&1 ||
  { tail -40 "$TMP/build.log" >&2; die "build failed"; }
SIM_BIN=
for f in "$BENCH_BUILD_DIR/tests/bulkhead-sim" "$BENCH_BUILD_DIR/bulkhead-sim"; do
  if [ -x "$f" ] && { [ -z "$SIM_BIN" ] || [ "$f" -nt "$SIM_BIN" ]; }; then SIM_BIN=$f; fi
done
[ -n "$SIM_BIN" ] || die "bulkhead-sim not built"

echo "== webhooks: ${BENCH_SECONDS}s per run, $BENCH_CONNS connections, sync: $BENCH_WH_SYNC"
env BH_BIN="$BENCH_BUILD_DIR/bulkhead" SIM_BIN="$SIM_BIN" \
  PLUGIN_DIR="$BENCH_BUILD_DIR/plugins" WRK="$(command -v wrk)" TMP="$TMP" \
  BENCH_SECONDS="$BENCH_SECONDS" BENCH_CONNS="$BENCH_CONNS" \
  BENCH_SERVER_CPU="$BENCH_SERVER_CPU" BENCH_LOAD_CPU="$BENCH_LOAD_CPU" \
  BENCH_WH_SYNC="$BENCH_WH_SYNC" BENCH_ROUNDS="$BENCH_ROUNDS" \
  python3 "$HERE/webhooks.py"
