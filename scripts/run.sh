#!/usr/bin/env bash
# Builds bulkhead and runs it on its embedded default configuration (no
# config file): API on 127.0.0.1:8080, admin on 127.0.0.1:9901, data under
# ./bulkhead-data, every first-party plugin enabled. The upstream simulator
# is started as the default payment and LLM providers (127.0.0.1:8090, or
# BULKHEAD_DEMO_SIM=HOST:PORT), so every route works on a fresh machine.
# Extra arguments go to the daemon (e.g. -c etc/bulkhead.ini).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target bulkhead bulkhead-sim auth billing webhooks ai

sim_addr="${BULKHEAD_DEMO_SIM:-127.0.0.1:8090}"
build/bulkhead-sim --listen "$sim_addr" >/dev/null &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT INT TERM
sleep 0.3
if ! kill -0 "$sim_pid" 2>/dev/null; then
  echo "run.sh: the provider simulator could not listen on $sim_addr" \
       "(set BULKHEAD_DEMO_SIM=127.0.0.1:PORT)" >&2
  exit 1
fi
export BULKHEAD_UPSTREAM_BILLING_URL="http://$sim_addr"
export BULKHEAD_UPSTREAM_AI_URL="http://$sim_addr"
cat >&2 <<MSG
run.sh: providers simulated at http://$sim_addr (control: /__sim/behavior)
run.sh: try  curl -s localhost:8080/v1/billing/provider-status
MSG
build/bulkhead "$@"
