#!/usr/bin/env python3
"""The webhooks dispatcher under load (driven by tests/bench/webhooks.sh).

One bulkhead (master + one worker) with the webhooks plugin, three
endpoints subscribed to the benchmark's event type, all three at one local
bulkhead-sim answering 200 at once. wrk POSTs events (authenticated with a
minted Bearer token) for BENCH_SECONDS over BENCH_CONNS connections; each
accepted event (202) fans out to three deliveries, which the dispatcher
sends while the load runs and after it, until the receiver has them all.

Measured, for each SQLite durability setting in BENCH_WH_SYNC:
  accepted/s    events answered 202 per second during the wrk run
  p50/p99       latency of POST /v1/webhooks/events (wrk --latency)
  deliv/s run   deliveries the receiver got per second during the run
  deliv/s all   all deliveries / (first event .. last delivery received)
  drain s       time from the end of the run to the last delivery
  cpu us/event  the daemon's CPU (all its processes and threads) per
                accepted event, deliveries included
and checked: every delivery arrived exactly once per endpoint.

Environment (set by webhooks.sh): BH_BIN, SIM_BIN, PLUGIN_DIR, WRK, TMP,
BENCH_SECONDS, BENCH_CONNS, BENCH_SERVER_CPU, BENCH_LOAD_CPU, BENCH_WH_SYNC.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from auth_tokens import auth_config, mint_access_token  # noqa: E402

SECRET = "bench-secret-0123456789-abcdefghij-KLMNOP"
TYPE = "bench.order_created"
PATHS = ["/r1", "/r2", "/r3"]

ENV = os.environ
TMP = ENV["TMP"]
SECONDS = int(ENV.get("BENCH_SECONDS", "5"))
CONNS = int(ENV.get("BENCH_CONNS", "16"))
SERVER_CPU = ENV.get("BENCH_SERVER_CPU", "0")
LOAD_CPU = ENV.get("BENCH_LOAD_CPU", "1")
PROCS = []


def die(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.exit(1)


def listening(path, want=None, timeout=10.0):
    """Port of the first {"event":"listening"} line of the file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if ev.get("event") != "listening":
                        continue
                    if want and ev.get("listener") != want:
                        continue
                    addr = ev.get("address") or ev.get("listen")
                    return int(addr.rsplit(":", 1)[1])
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    die("no listening line in %s" % path)


def start(args, out, cpu_core, session=False):
    p = subprocess.Popen(["taskset", "-c", cpu_core] + args,
                         stdin=subprocess.DEVNULL, stdout=open(out, "w"),
                         stderr=open(out + ".err", "w"),
                         start_new_session=session,
                         env=dict((k, v) for k, v in ENV.items()
                                  if not k.startswith("BULKHEAD_")))
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        p.terminate()
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)


def call(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, json.dumps(body) if body is not None else None,
                  h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def sim_counts(port):
    _, body = call(port, "GET", "/__sim/stats")
    paths = json.loads(body)["paths"]
    return [paths.get(p, {}).get("count", 0) for p in PATHS]


def lua(token):
    path = os.path.join(TMP, "post.lua")
    with open(path, "w") as f:
        f.write("""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
request = function()
  n = n + 1
  local body = '{"type":"%s","data":{"order":' .. n ..
    ',"amount":1250,"currency":"eur","customer":"cus_0123456789"}}'
  return wrk.format(nil, "/v1/webhooks/events", nil, body)
end
""" % (token, TYPE))
    return path


def parse_wrk(text):
    def num(pat, default=None):
        m = re.search(pat, text, re.M)
        return m.group(1) if m else default

    def ms(v):
        m = re.match(r"([\d.]+)(us|ms|s)", v or "")
        if not m:
            return float("nan")
        f = float(m.group(1))
        return f / 1000 if m.group(2) == "us" else f * 1000 if \
            m.group(2) == "s" else f
    total = int(num(r"(\d+) requests in", "0"))
    bad = int(num(r"Non-2xx or 3xx responses: (\d+)", "0"))
    errs = num(r"Socket errors: (.*)", "")
    return {"total": total, "bad": bad, "socket_errors": errs,
            "p50": ms(num(r"^\s*50%\s+(\S+)")),
            "p99": ms(num(r"^\s*99%\s+(\S+)"))}


RUN_NO = [0]


def run(sync, sim_port):
    """One measured run on a fresh daemon and a fresh database."""
    RUN_NO[0] += 1
    tag = "%s-%d" % (sync, RUN_NO[0])
    data = os.path.join(TMP, "data-" + tag)
    log = os.path.join(TMP, "bulkhead-%s.log" % tag)
    conf = os.path.join(TMP, "bulkhead-%s.ini" % tag)
    with open(conf, "w") as f:
        f.write("""# written by tests/bench/webhooks.py
[server]
listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
data_dir = %s
plugin_dir = %s
log = %s
workers = 1

%s
[plugin.webhooks]
path = webhooks.so
mount = /v1/webhooks
allow_loopback = true
allowed_ports = any
synchronous = %s
max_in_flight = 64
max_in_flight_per_endpoint = 16
""" % (data, ENV["PLUGIN_DIR"], log, auth_config(SECRET), sync))
    bh = start([ENV["BH_BIN"], "-c", conf],
               os.path.join(TMP, "bh-%s.out" % tag), SERVER_CPU, session=True)
    try:
        port = listening(log, "api")
        token = mint_access_token(SECRET, "bench", ttl_s=3600,
                                  iat=int(time.time()) - 60)
        for p in PATHS:
            st, body = call(port, "POST", "/v1/webhooks/endpoints",
                            {"url": "http://127.0.0.1:%d%s" % (sim_port, p),
                             "events": [TYPE]}, token)
            if st != 201:
                die("create endpoint: %d %s" % (st, body[:200]))
        call(sim_port, "POST", "/__sim/stats/reset")
        script = lua(token)
        pg = os.getpgid(bh.pid)
        c0 = cpu_of(pg)
        t0 = time.monotonic()
        out = subprocess.run(
            ["taskset", "-c", LOAD_CPU, ENV["WRK"], "-t1", "-c", str(CONNS),
             "-d", "%ds" % SECONDS, "--latency", "-s", script,
             "http://127.0.0.1:%d/" % port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, timeout=SECONDS + 60).stdout
        t1 = time.monotonic()
        during = sum(sim_counts(sim_port))
        w = parse_wrk(out)
        accepted = w["total"] - w["bad"]
        want = accepted
        deadline = t1 + 300
        counts = sim_counts(sim_port)
        while min(counts) < want and time.monotonic() < deadline:
            time.sleep(0.02)
            counts = sim_counts(sim_port)
        t2 = time.monotonic()
        c1 = cpu_of(pg)
        time.sleep(0.5)
        counts = sim_counts(sim_port)
        # wrk stops counting with a request per connection still in
        # flight, which the daemon accepted: the daemon's own listing says
        # how many deliveries there are, each sent how many times
        ndel, nattempts, cursor = 0, 0, None
        while True:
            q = "/v1/webhooks/deliveries?status=succeeded&limit=100"
            st, body = call(port, "GET", q + ("&cursor=" + cursor
                                              if cursor else ""), None, token)
            page = json.loads(body)
            ndel += len(page["data"])
            nattempts += sum(x["attemptCount"] for x in page["data"])
            cursor = page["nextCursor"]
            if not cursor:
                break
        return {
            "sync": sync, "accepted": accepted, "bad": w["bad"],
            "socket_errors": w["socket_errors"],
            "accepted_per_s": accepted / (t1 - t0),
            "p50": w["p50"], "p99": w["p99"],
            "deliv_run": during / (t1 - t0),
            "deliv_all": sum(counts) / (t2 - t0),
            "drain_s": t2 - t1,
            "cpu_us_event": (c1 - c0) / accepted if accepted else
            float("nan"),
            "exact": (ndel == nattempts == sum(counts) and
                      len(set(counts)) == 1 and
                      accepted <= counts[0] <= accepted + CONNS),
            "counts": counts,
            "wrk": out}
    finally:
        stop(bh)


def cpu_of(pgid):
    """CPU microseconds used so far by process group pgid (cpu.py)."""
    out = subprocess.run([sys.executable, os.path.join(HERE, "cpu.py"),
                          "pgid:%d" % pgid], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout.split()
    return int(out[1])


def median(rs):
    """Each figure's median over rounds; the checks must hold in all."""
    if len(rs) == 1:
        return rs[0]
    out = dict(rs[0])
    for k in ("accepted_per_s", "p50", "p99", "deliv_run", "deliv_all",
              "drain_s", "cpu_us_event"):
        v = sorted(r[k] for r in rs)
        out[k] = v[len(v) // 2]
    out["exact"] = all(r["exact"] for r in rs)
    out["bad"] = sum(r["bad"] for r in rs)
    out["socket_errors"] = " ".join(r["socket_errors"] for r in rs
                                    if r["socket_errors"])
    return out


def main():
    sim = start([ENV["SIM_BIN"], "--listen", "127.0.0.1:0"],
                os.path.join(TMP, "sim.out"), LOAD_CPU, session=True)
    results, rounds = [], int(ENV.get("BENCH_ROUNDS", "1"))
    syncs = ENV.get("BENCH_WH_SYNC", "full normal").split()
    try:
        sim_port = listening(os.path.join(TMP, "sim.out"))
        runs = dict((sync, []) for sync in syncs)
        for _ in range(rounds):  # interleaved, so drift hits both alike
            for sync in syncs:
                runs[sync].append(run(sync, sim_port))
        for sync in syncs:
            results.append(median(runs[sync]))
    finally:
        stop(sim)
    print("\n%d s of POST /v1/webhooks/events, %d connections, fan-out 3, "
          "server on core %s, wrk + receiver on core %s%s\n" %
          (SECONDS, CONNS, SERVER_CPU, LOAD_CPU,
           ", median of %d rounds" % rounds if rounds > 1 else ""))
    print("| synchronous | accepted/s | p50 ms | p99 ms | deliveries/s "
          "(during run) | deliveries/s (to last) | drain s | CPU us/event "
          "| each delivered once |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %.0f | %.2f | %.2f | %.0f | %.0f | %.2f | %.0f | %s |" % (
            r["sync"], r["accepted_per_s"], r["p50"], r["p99"], r["deliv_run"],
            r["deliv_all"], r["drain_s"], r["cpu_us_event"],
            "yes" if r["exact"] else "NO %r (accepted %d)" % (
                r["counts"], r["accepted"])))
    for r in results:
        if r["bad"] or r["socket_errors"]:
            print("\nwarning (%s): %d non-2xx answers, socket errors: %s" %
                  (r["sync"], r["bad"], r["socket_errors"]))
    if os.environ.get("BENCH_VERBOSE"):
        for r in results:
            print("\n--- wrk (%s) ---\n%s" % (r["sync"], r["wrk"]))
    return 0 if all(r["exact"] and not r["bad"] for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for p in PROCS:
            stop(p)
