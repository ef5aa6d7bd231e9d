#!/usr/bin/env bash
# bulkhead vs nginx, side by side, in one run on one machine.
#
#   tests/bench/run.sh                  # 5 s per measured run, 50 connections
#   BENCH_SECONDS=10 BENCH_CONNS=100 tests/bench/run.sh
#   BENCH_WORKERS=2 tests/bench/run.sh  # workers = 2 vs worker_processes 2
#
# Scenarios (each served by bulkhead, then by nginx, same URL, same wrk;
# see scenario_def and nginx_location below, the two places a new scenario
# is described):
#   fail-fast  GET /t/up_one/get/x     bulkhead: up_one's breaker forced open,
#                                      the 503 Problem JSON; nginx: `return
#                                      503` of the very same body
#   proxy      GET /t/up_one/proxy/x   bulkhead proxy route vs nginx
#                                      proxy_pass, both with keep-alive to
#                                      the same bulkhead-sim
#   local      GET /v1/auth/status     auth plugin's local JSON vs nginx
#                                      `return 200` of the same body
#   proxy-64k  GET /t/up_one/proxy/big like proxy, the simulator answering
#                                      a 64 KiB body (bodies must stream)
#   auth-proxy GET /t/whoami/proxy/x   an auth-required proxy route (the
#                                      whoami test plugin): the HS256 access
#                                      token in Authorization is verified on
#                                      every request, then proxied; nginx:
#                                      the same plain proxy_pass (no auth)
#
# Measured per run: requests/s and p99 (wrk --latency) and the server's CPU
# microseconds per request: utime+stime from /proc before and after the
# measured run, divided by the requests wrk completed, summed over the
# server's process group (nginx: master + workers; bulkhead: master +
# workers, every thread). Both servers write one JSON log line per request
# to a file in the same temp dir, so both pay for logging.
#
# Workers and pinning (the machine this was written on has 2 cores):
#   BENCH_WORKERS=1 (default): bulkhead `workers = 1`, nginx
#     `worker_processes 1`. The server under test runs alone on core
#     BENCH_SERVER_CPU (0); wrk (-t1) and the upstream simulator share core
#     BENCH_LOAD_CPU (1). The simulator is the same process for both
#     servers, so it loads both equally and never takes CPU from the server
#     measured.
#   BENCH_WORKERS=2: `workers = 2` vs `worker_processes 2`, wrk -t2. With 4
#     or more cores the server gets cores 0,1 and wrk and the simulator
#     2,3. With fewer, there is no core to spare: server, wrk and simulator
#     all run on cores 0,1 and the kernel shares them out. That is the same
#     for both servers, and CPU per request still counts only the server's
#     own processes, so it stays comparable; requests/s then also depends
#     on how much CPU wrk and the simulator took (see the busy columns).
#
# Environment:
#   BENCH_SECONDS    measured run length per server and scenario (5; 1..300)
#   BENCH_CONNS      wrk connections (50; 1..10000)
#   BENCH_WARMUP     warm-up seconds before each measured run (2; 0..60)
#   BENCH_ROUNDS     rounds per scenario, bulkhead then nginx in each; the
#                    table shows the median of the rounds (1; 1..20)
#   BENCH_SCENARIOS  subset, e.g. "local proxy" (all five)
#   BENCH_WORKERS    worker processes of each server (1; 1..16)
#   BENCH_BUILD_DIR  build directory (<repo>/build-bench)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU   cores, or comma-separated lists of
#                    cores (see above for the defaults)
#   BENCH_KEEP_TMP=1 keep the temp dir (configs, logs, wrk outputs)
#
# Safety: loopback only, every duration bounded, every process this script
# starts is stopped by the EXIT/INT/TERM trap, temp files live in one
# mktemp directory that is removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ALL_SCENARIOS="fail-fast proxy local auth-proxy proxy-64k" # see scenario_def / nginx_location

BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_CONNS=${BENCH_CONNS:-50}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_SCENARIOS=${BENCH_SCENARIOS:-$ALL_SCENARIOS}
BENCH_WORKERS=${BENCH_WORKERS:-1}
BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}

die() { echo "bench: $*" >&2; exit 1; }
is_int() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
is_int "$BENCH_SECONDS" 1 300 || die "BENCH_SECONDS must be 1..300"
is_int "$BENCH_CONNS" 1 10000 || die "BENCH_CONNS must be 1..10000"
is_int "$BENCH_WARMUP" 0 60 || die "BENCH_WARMUP must be 0..60"
is_int "$BENCH_ROUNDS" 1 20 || die "BENCH_ROUNDS must be 1..20"
is_int "$BENCH_WORKERS" 1 16 || die "BENCH_WORKERS must be 1..16"
for s in $BENCH_SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s'"
done

# Cores: see the header. A list is "N" or "N,M,..."; lists of w cores
# starting at 0 for the server, and the next w for the load when there
# are that many, else the same ones.
NCPU=$(getconf _NPROCESSORS_ONLN)
core_list() { # first count -> "first,first+1,..."
  local i out=
  for ((i = $1; i < $1 + $2; i++)); do out+=${out:+,}$i; done
  echo "$out"
}
if [ "$BENCH_WORKERS" = 1 ]; then
  BENCH_SERVER_CPU=${BENCH_SERVER_CPU:-0}
  BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-1}
elif ((NCPU >= 2 * BENCH_WORKERS)); then
  BENCH_SERVER_CPU=${BENCH_SERVER_CPU:-$(core_list 0 "$BENCH_WORKERS")}
  BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-$(core_list "$BENCH_WORKERS" "$BENCH_WORKERS")}
else
  BENCH_SERVER_CPU=${BENCH_SERVER_CPU:-$(core_list 0 "$BENCH_WORKERS")}
  BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-$BENCH_SERVER_CPU}
fi
for v in BENCH_SERVER_CPU BENCH_LOAD_CPU; do
  [[ ${!v} =~ ^[0-9]+(,[0-9]+)*$ ]] || die "$v must be a core or a list of cores"
  for c in ${!v//,/ }; do ((c < NCPU)) || die "$v: core $c is not online ($NCPU cores)"; done
done
# wrk: a thread per worker, so the client is not one core's worth short
WRK_THREADS=$BENCH_WORKERS
((WRK_THREADS <= BENCH_CONNS)) || WRK_THREADS=$BENCH_CONNS

# ---------------------------------------------------------------------------
# Tools: nginx and wrk come from Debian and are installed when missing.
# ---------------------------------------------------------------------------
find_nginx() {
  command -v nginx 2>/dev/null && return 0
  [ -x /usr/sbin/nginx ] && { echo /usr/sbin/nginx; return 0; }
  return 1
}

missing=()
find_nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
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
NGINX=$(find_nginx) || die "nginx not found after install"
# the interpreter itself, not a version-manager shim: the CPU snapshots
# around a measured run should take milliseconds
PY=$(python3 -c 'import sys; print(sys.executable)')
WRK=$(command -v wrk)
if [ "$BENCH_SERVER_CPU" = "$BENCH_LOAD_CPU" ]; then
  echo "bench: note: server, wrk and simulator share cores $BENCH_SERVER_CPU" >&2
fi

# ---------------------------------------------------------------------------
# Processes and cleanup
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-bench.XXXXXX")
PIDS=() # every process started here, stopped by cleanup

stop_pid() { # pid: TERM, up to 10 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench: process $pid ignored SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
    echo "bench: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # drop a stopped pid from PIDS
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

free_port() {
  "$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# file [listener]: the port of the first JSON line {"event":"listening",...}
# on 127.0.0.1 (bulkhead: "address" and "listener"; bulkhead-sim: "listen")
json_port() {
  "$PY" - "$@" <<'PYEOF' 2>/dev/null || true
import json, sys
want = sys.argv[2] if len(sys.argv) > 2 else None
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if not isinstance(ev, dict) or ev.get("event") != "listening":
        continue
    if want is not None and ev.get("listener") != want:
        continue
    addr = ev.get("address") or ev.get("listen") or ""
    host, _, port = addr.rpartition(":")
    if host == "127.0.0.1" and port.isdigit():
        print(port)
        break
PYEOF
}

pgid_of() { ps -o pgid= -p "$1" | tr -d ' '; }

wait_http() { # url: until it answers at all (any status), 10 s at most
  local i
  for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
echo "== build (Release) in $BENCH_BUILD_DIR"
cmake -S "$ROOT" -B "$BENCH_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
  -DBULKHEAD_TESTS=ON >"$TMP/cmake.log" 2>&1 ||
  { cat "$TMP/cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$BENCH_BUILD_DIR" -j"$NCPU" --target bulkhead bulkhead-sim \
  up_one whoami auth billing webhooks ai >"$TMP/build.log" 2>&1 ||
  { tail -40 "$TMP/build.log" >&2; die "build failed"; }
BH_BIN=$BENCH_BUILD_DIR/bulkhead
# the simulator's place in the build tree has moved between versions
# (tests/bulkhead-sim, then bulkhead-sim): take the one just built
SIM_BIN=
for f in "$BENCH_BUILD_DIR/tests/bulkhead-sim" "$BENCH_BUILD_DIR/bulkhead-sim"; do
  if [ -x "$f" ] && { [ -z "$SIM_BIN" ] || [ "$f" -nt "$SIM_BIN" ]; }; then SIM_BIN=$f; fi
done
[ -n "$SIM_BIN" ] || die "bulkhead-sim not built (looked in $BENCH_BUILD_DIR and its tests/)"
PLUGIN_DIR=$BENCH_BUILD_DIR/plugins
UP_ONE=$BENCH_BUILD_DIR/test-plugins/up_one.so
for f in "$BH_BIN" "$UP_ONE" "$PLUGIN_DIR/auth.so"; do
  [ -e "$f" ] || die "missing build output $f"
done

# ---------------------------------------------------------------------------
# The upstream simulator (one for the whole run, on the load core)
# ---------------------------------------------------------------------------
taskset -c "$BENCH_LOAD_CPU" "$SIM_BIN" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
  </dev/null >"$TMP/sim.out" 2>"$TMP/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
SIM_PORT=
for ((i = 0; i < 100; i++)); do
  SIM_PORT=$(json_port "$TMP/sim.out")
  [ -n "$SIM_PORT" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || { cat "$TMP/sim.err" >&2; die "bulkhead-sim exited"; }
  sleep 0.1
done
[ -n "$SIM_PORT" ] || die "bulkhead-sim did not report a loopback port"
SIM_CTL_PORT=$("$PY" -c "import json, sys
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if isinstance(ev, dict) and ev.get('control'):
        print(ev['control'].rpartition(':')[2])
        break" "$TMP/sim.out")
[ -n "$SIM_CTL_PORT" ] || die "bulkhead-sim did not report its control port"
# sim_rule JSON / sim_rule_clear: a behaviour rule of the simulator for
# every path ("/*"), for the scenario that needs one (S_SIM_RULE)
sim_rule() {
  curl -sf --max-time 5 -H 'Content-Type: application/json' --data-binary @- \
    "http://127.0.0.1:$SIM_CTL_PORT/behavior" >/dev/null <<<"$1" || die "cannot set the simulator rule"
}
sim_rule_clear() {
  curl -sf --max-time 5 -X DELETE "http://127.0.0.1:$SIM_CTL_PORT/behaviors/%2F%2A" >/dev/null || true
}

# ---------------------------------------------------------------------------
# bulkhead
# ---------------------------------------------------------------------------
BH_PID=
BH_PGID=
BH_PORT=
BH_LOG= # per scenario

write_bulkhead_conf() { # file; the scenario's S_UPSTREAM_CONF, S_BH_CONF
  cat >"$1" <<EOF
# written by tests/bench/run.sh
[server]
listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
data_dir = $TMP/bulkhead-data
plugin_dir = $PLUGIN_DIR
log = $BH_LOG
log_level = info
workers = $BENCH_WORKERS

[plugin.auth]
path = auth.so
mount = /v1/auth, /v1/api-keys

[plugin.billing]
path = billing.so
mount = /v1/billing

[plugin.webhooks]
path = webhooks.so
mount = /v1/webhooks

[plugin.ai]
path = ai.so
mount = /v1/ai

[plugin.up_one]
path = $UP_ONE
mount = /t/up_one

[upstream.up_one]
url = http://127.0.0.1:$SIM_PORT
EOF
  if [ -n "$S_UPSTREAM_CONF" ]; then printf '%s\n' "$S_UPSTREAM_CONF" >>"$1"; fi
  if [ -n "$S_BH_CONF" ]; then printf '\n%s\n' "$S_BH_CONF" >>"$1"; fi
}

start_bulkhead() { # config
  rm -f "$BH_LOG"
  # a clean environment as far as bulkhead is concerned: no BULKHEAD_*
  # override from the caller's shell changes what is measured
  # setsid: a process group of its own, so its CPU is the sum over that
  # group, like nginx's (today one process; master + workers once the
  # daemon forks workers)
  local unset_env=() v
  while IFS= read -r v; do unset_env+=(-u "$v"); done < <(compgen -e | grep '^BULKHEAD_' || true)
  env "${unset_env[@]}" \
    setsid taskset -c "$BENCH_SERVER_CPU" "$BH_BIN" -c "$1" \
    </dev/null >"$TMP/bulkhead.stdout" 2>"$TMP/bulkhead.stderr" &
  BH_PID=$!
  PIDS+=("$BH_PID")
  BH_PORT=
  local i
  for ((i = 0; i < 100; i++)); do
    if [ -f "$BH_LOG" ]; then
      BH_PORT=$(json_port "$BH_LOG" api)
      [ -n "$BH_PORT" ] && break
    fi
    kill -0 "$BH_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$BH_PORT" ]; then
    cat "$TMP/bulkhead.stderr" "$BH_LOG" >&2 2>/dev/null || true
    die "bulkhead did not start"
  fi
  BH_PGID=$(pgid_of "$BH_PID")
  [ "$BH_PGID" = "$BH_PID" ] || die "bulkhead is not alone in its process group"
}

stop_bulkhead() {
  stop_pid "$BH_PID"
  forget_pid "$BH_PID"
  BH_PID=
}

# ---------------------------------------------------------------------------
# nginx: worker_processes BENCH_WORKERS, master on, daemon off, own group
# ---------------------------------------------------------------------------
NGX_DIR=$TMP/nginx
NGX_MASTER=
NGX_PGID=
NGX_PORT=
NGX_LOG= # per scenario
mkdir -p "$NGX_DIR"

# $1 = scenario, $2 = body (what bulkhead answered, for S_SAME_BODY)
write_nginx_conf() {
  local user_line=""
  # as root, nginx would switch its worker to "nobody", which cannot enter
  # the 0700 temp dir: keep the worker as the invoking user
  if [ "$(id -u)" -eq 0 ]; then user_line="user $(id -un) $(id -gn);"; fi
  local location
  location=$(nginx_location "$1" "$2")
  cat >"$NGX_DIR/nginx.conf" <<EOF
# written by tests/bench/run.sh
$user_line
worker_processes $BENCH_WORKERS;
daemon off;
master_process on;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log warn;
events { worker_connections 4096; }
http {
  # one JSON line per request, unbuffered (a write per line), like
  # bulkhead's request log
  log_format bench escape=json '{"time":"\$time_iso8601","level":"info",'
    '"event":"request","requestId":"\$request_id","method":"\$request_method",'
    '"path":"\$uri","status":\$status,"durationS":\$request_time}';
  access_log $NGX_LOG bench;
  server_tokens off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path $NGX_DIR/body;
  proxy_temp_path $NGX_DIR/proxy;
  fastcgi_temp_path $NGX_DIR/fastcgi;
  uwsgi_temp_path $NGX_DIR/uwsgi;
  scgi_temp_path $NGX_DIR/scgi;
  upstream sim {
    server 127.0.0.1:$SIM_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    $location
  }
}
EOF
}

start_nginx() {
  rm -f "$NGX_DIR/nginx.pid" "$NGX_LOG"
  # setsid: nginx gets a process group of its own, so its CPU is the sum
  # over that group (master + worker)
  setsid taskset -c "$BENCH_SERVER_CPU" "$NGINX" -p "$NGX_DIR" \
    -e "$NGX_DIR/error.log" -c "$NGX_DIR/nginx.conf" \
    </dev/null >"$TMP/nginx.stdout" 2>"$TMP/nginx.stderr" &
  local launcher=$! i
  PIDS+=("$launcher")
  NGX_MASTER=
  for ((i = 0; i < 100; i++)); do
    [ -s "$NGX_DIR/nginx.pid" ] && NGX_MASTER=$(cat "$NGX_DIR/nginx.pid") && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$NGX_MASTER" ]; then
    cat "$TMP/nginx.stderr" "$NGX_DIR/error.log" >&2 2>/dev/null || true
    die "nginx did not start"
  fi
  [ "$NGX_MASTER" = "$launcher" ] || PIDS+=("$NGX_MASTER")
  wait_http "http://127.0.0.1:$NGX_PORT/" || die "nginx does not answer"
  NGX_PGID=$(pgid_of "$NGX_MASTER")
  [ "$NGX_PGID" = "$NGX_MASTER" ] || die "nginx is not alone in its process group"
}

stop_nginx() {
  stop_pid "$NGX_MASTER"
  forget_pid "$NGX_MASTER"
  local p
  for p in "${PIDS[@]}"; do # the setsid launcher, if it was another pid
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; forget_pid "$p"; }
  done
  NGX_MASTER=
}

# ---------------------------------------------------------------------------
# Scenarios. Adding one: its name in ALL_SCENARIOS (top), a case in
# scenario_def (the request and bulkhead's side) and one in nginx_location
# (nginx's side, doing the same work).
# ---------------------------------------------------------------------------

# scenario_def NAME sets:
#   S_PATH           request path, the same for both servers
#   S_STATUS         the status every answer must have
#   S_HEADERS        request headers ("Name: value" each; curl and wrk send
#                    them to both servers)
#   S_UPSTREAM_CONF  lines added to bulkhead's [upstream.up_one]
#   S_BH_CONF        more bulkhead config (whole sections), appended
#   S_SIM_RULE       a simulator behaviour rule (JSON) set for the scenario
#   S_SAME_BODY      1: nginx answers a fixed copy of bulkhead's body
#                    (fetched first; it must not contain ' $ or \);
#                    0: both relay the upstream simulator's answer
scenario_def() {
  S_PATH= S_STATUS=200 S_HEADERS=() S_UPSTREAM_CONF= S_BH_CONF= S_SAME_BODY=1
  S_SIM_RULE=
  case $1 in
  fail-fast)
    S_PATH=/t/up_one/get/x S_STATUS=503
    S_UPSTREAM_CONF="breaker_mode = forced_open" ;;
  proxy) S_PATH=/t/up_one/proxy/x S_SAME_BODY=0 ;;
  proxy-64k)
    S_PATH=/t/up_one/proxy/big S_SAME_BODY=0
    S_SIM_RULE=$("$PY" -c 'import json; print(json.dumps({"path": "/*", "body": "x" * 65536}))') ;;
  local) S_PATH=/v1/auth/status ;;
  auth-proxy)
    # a token minted like the tests do (tests/integration/auth_tokens.py),
    # valid for the whole run; the daemon verifies it once, then finds it in
    # the worker's token cache (exp still checked each time), then proxies
    local secret=bench-secret-0123456789-abcdefghijklmnop tok
    tok=$("$PY" -c "import sys; sys.path.insert(0, sys.argv[1])
import auth_tokens as a
print(a.mint_access_token(sys.argv[2], 'bench-user', ttl_s=86400,
                          sid='ses_bench', scope='read write'))" \
      "$ROOT/tests/integration" "$secret") || die "cannot mint a token"
    S_PATH=/t/whoami/proxy/x S_SAME_BODY=0
    S_HEADERS=("Authorization: Bearer $tok")
    S_BH_CONF="[auth]
jwt_secret = $secret

[plugin.whoami]
path = $BENCH_BUILD_DIR/test-plugins/whoami.so
mount = /t/whoami

[upstream.whoami]
url = http://127.0.0.1:$SIM_PORT" ;;
  *) die "scenario '$1' has no definition" ;;
  esac
}

# nginx_location NAME BODY: the location block nginx serves S_PATH with.
# Every location sends X-Request-ID (bulkhead always does).
nginx_location() {
  case $1 in
  fail-fast)
    cat <<EOF
location / {
      default_type application/problem+json;
      add_header X-Request-ID \$request_id always;
      add_header Cache-Control no-store always;
      add_header Retry-After 30 always;
      return 503 '$2';
    }
EOF
    ;;
  local)
    cat <<EOF
location / {
      default_type application/json;
      add_header X-Request-ID \$request_id always;
      return 200 '$2';
    }
EOF
    ;;
  proxy | auth-proxy | proxy-64k)
    cat <<EOF
location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-ID \$request_id;
      add_header X-Request-ID \$request_id always;
    }
EOF
    ;;
  *) die "scenario '$1' has no nginx location" ;;
  esac
}

# ---------------------------------------------------------------------------
# One measured run
# ---------------------------------------------------------------------------
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
WRK_CMD=(taskset -c "$BENCH_LOAD_CPU" "$WRK" -t"$WRK_THREADS" -c"$BENCH_CONNS"
  -d"${BENCH_SECONDS}s" --latency --timeout 2s)

lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# the scenario's request headers as options: hdr_opts -H -> (-H "a: b" ...)
hdr_opts() {
  local h
  HDR_OPTS=()
  for h in "${S_HEADERS[@]}"; do HDR_OPTS+=("$1" "$h"); done
}

# scenario server url cpu-spec(pid:N | pgid:N) logfile; uses S_STATUS and
# S_HEADERS
measure() {
  local scenario=$1 server=$2 url=$3 sel=$4 log=$5
  local out=$TMP/wrk-$scenario-$server.txt
  hdr_opts -H
  if ((BENCH_WARMUP > 0)); then
    timeout --foreground -k 5 $((BENCH_WARMUP + 30)) taskset -c "$BENCH_LOAD_CPU" \
      "$WRK" -t"$WRK_THREADS" -c"$BENCH_CONNS" -d"${BENCH_WARMUP}s" --timeout 2s \
      "${HDR_OPTS[@]}" "$url" >/dev/null ||
      die "$scenario/$server: warm-up failed"
  fi
  sleep 0.5 # let the log writers catch up before counting lines
  local log0 log1 t0 cpu0 sc0 lc0 t1 cpu1 sc1 lc1 expect_non2xx=0
  [ "$S_STATUS" = 200 ] || expect_non2xx=1
  local specs=("$sel" "core:$BENCH_SERVER_CPU" "core:$BENCH_LOAD_CPU")
  log0=$(lines_of "$log")
  read -r t0 cpu0 sc0 lc0 < <("$PY" "$HERE/cpu.py" "${specs[@]}") ||
    die "$scenario/$server: CPU snapshot failed"
  timeout --foreground -k 5 $((BENCH_SECONDS + 30)) "${WRK_CMD[@]}" \
    "${HDR_OPTS[@]}" "$url" >"$out" ||
    { cat "$out" >&2; die "$scenario/$server: wrk failed"; }
  read -r t1 cpu1 sc1 lc1 < <("$PY" "$HERE/cpu.py" "${specs[@]}") ||
    die "$scenario/$server: CPU snapshot failed"
  sleep 0.5
  log1=$(lines_of "$log")
  local shown= h
  for h in "${S_HEADERS[@]}"; do shown+=" -H '$h'"; done
  echo "  \$ ${WRK_CMD[*]}$shown $url" | sed "s|$WRK|wrk|"
  "$PY" "$HERE/report.py" record "$RESULTS" "$scenario" "$server" "$out" \
    t0="$t0" t1="$t1" cpu0="$cpu0" cpu1="$cpu1" log0="$log0" log1="$log1" \
    score0="$sc0" score1="$sc1" lcore0="$lc0" lcore1="$lc1" \
    expect_non2xx="$expect_non2xx"
}

# url expected-status -> body on stdout; dies on another status. Sends the
# scenario's S_HEADERS.
fetch() {
  local code
  hdr_opts -H
  code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 5 "${HDR_OPTS[@]}" "$1") || true
  [ "$code" = "$2" ] || { cat "$TMP/body" >&2 2>/dev/null; die "GET $1: status $code, expected $2"; }
  cat "$TMP/body"
}

# ---------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------
CMDLINE="BENCH_SECONDS=$BENCH_SECONDS BENCH_CONNS=$BENCH_CONNS"
[ "$BENCH_WARMUP" = 2 ] || CMDLINE+=" BENCH_WARMUP=$BENCH_WARMUP"
[ "$BENCH_ROUNDS" = 1 ] || CMDLINE+=" BENCH_ROUNDS=$BENCH_ROUNDS"
[ "$BENCH_WORKERS" = 1 ] || CMDLINE+=" BENCH_WORKERS=$BENCH_WORKERS"
[ "$BENCH_SCENARIOS" = "$ALL_SCENARIOS" ] || CMDLINE+=" BENCH_SCENARIOS='$BENCH_SCENARIOS'"
CMDLINE+=" tests/bench/run.sh"
echo "== bulkhead vs nginx: ${BENCH_SECONDS}s per run after ${BENCH_WARMUP}s warm-up, ${BENCH_CONNS} connections, $BENCH_ROUNDS round(s)"
echo "   command: $CMDLINE"
echo "   bulkhead workers = $BENCH_WORKERS (plus its master), nginx worker_processes $BENCH_WORKERS (plus its master)"
if [ "$BENCH_SERVER_CPU" = "$BENCH_LOAD_CPU" ]; then
  echo "   server, wrk -t$WRK_THREADS and bulkhead-sim all on cores $BENCH_SERVER_CPU (no core to spare)"
else
  echo "   server on core(s) $BENCH_SERVER_CPU (alone); wrk -t$WRK_THREADS and bulkhead-sim on core(s) $BENCH_LOAD_CPU"
fi
echo "   both servers log one JSON line per request to a file in $TMP (same disk)"
echo "   $("$BH_BIN" --version), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $("$WRK" --version 2>&1 | head -1 | cut -d' ' -f1-2)"

drop_log() { [ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -f "$1"; }

for scenario in $BENCH_SCENARIOS; do
  scenario_def "$scenario"
  sim_rule_clear
  [ -z "$S_SIM_RULE" ] || sim_rule "$S_SIM_RULE"
  for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    if ((BENCH_ROUNDS > 1)); then
      echo "== $scenario: GET $S_PATH (round $round of $BENCH_ROUNDS)"
    else
      echo "== $scenario: GET $S_PATH"
    fi

    BH_LOG=$TMP/bulkhead-$scenario-$round.log
    NGX_LOG=$NGX_DIR/access-$scenario-$round.log
    write_bulkhead_conf "$TMP/bulkhead-$scenario.ini"
    start_bulkhead "$TMP/bulkhead-$scenario.ini"
    body=$(fetch "http://127.0.0.1:$BH_PORT$S_PATH" "$S_STATUS")
    measure "$scenario" bulkhead "http://127.0.0.1:$BH_PORT$S_PATH" "pgid:$BH_PGID" "$BH_LOG"
    stop_bulkhead
    drop_log "$BH_LOG"

    # nginx answers what bulkhead answered (a fixed copy of it: bulkhead's
    # 503 body carries a per-request id, nginx repeats the one fetched), or
    # both relay the simulator's answer
    if [ "$S_SAME_BODY" = 1 ]; then
      case $body in *"'"* | *'$'* | *\\*) die "body has a quote, \$ or backslash, cannot template it: $body" ;; esac
    fi
    NGX_PORT=$(free_port)
    write_nginx_conf "$scenario" "$body"
    start_nginx
    nbody=$(fetch "http://127.0.0.1:$NGX_PORT$S_PATH" "$S_STATUS")
    if [ "$nbody" != "$body" ]; then
      die "nginx body differs from bulkhead's: $nbody"
    fi
    measure "$scenario" nginx "http://127.0.0.1:$NGX_PORT$S_PATH" "pgid:$NGX_PGID" "$NGX_LOG"
    stop_nginx
    drop_log "$NGX_LOG"
  done
  sim_rule_clear
done

echo
median_note=
((BENCH_ROUNDS == 1)) || median_note="; medians of $BENCH_ROUNDS rounds"
echo "== results (ratio = bulkhead / nginx; CPU = server utime+stime per request$median_note)"
"$PY" "$HERE/report.py" table "$RESULTS"
echo
echo "command: $CMDLINE"
echo "load:    ${WRK_CMD[*]} URL" | sed "s|$WRK|wrk|"
