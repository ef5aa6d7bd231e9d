#!/usr/bin/env python3
"""Result bookkeeping for tests/bench/run.sh.

    report.py record RESULTS SCENARIO SERVER WRK_OUTPUT KEY=VALUE...
        parses one `wrk --latency` output and appends one JSON line to
        RESULTS; prints a one-line summary. Fails when wrk's output has no
        request count. Keys, each a before/after pair of integers:
          t0, t1         monotonic microseconds of the two snapshots
          cpu0, cpu1     server CPU microseconds (cpu.py pid:N / pgid:N)
          log0, log1     lines in the server's request log
          score0, score1 server core busy microseconds, all processes
          lcore0, lcore1 load core busy microseconds, all processes
        and expect_non2xx=1 when every answer should be non-2xx
    report.py table RESULTS
        prints the side-by-side table (Markdown, so it can be pasted; with
        several rounds, each figure is the median over the rounds) and a
        table of every measured run.

Ratios are bulkhead / nginx: above 1 means bulkhead serves more requests
per second; for CPU per request below 1 means bulkhead is cheaper.
"""

import json
import re
import sys

UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1000000.0, "m": 60000000.0,
           "h": 3600000000.0}


def parse_duration_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("bad wrk duration %r" % text)
    return float(m.group(1)) * UNIT_US[m.group(2)]


def parse_wrk(text):
    out = {"non2xx": 0, "socket_errors": 0, "timeouts": 0}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", text,
                  re.M)
    if not m:
        raise ValueError("no request count in wrk output")
    out["requests"] = int(m.group(1))
    out["elapsed_s"] = parse_duration_us(m.group(2) + m.group(3)) / 1e6
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(r"^\s*%s%%\s+(\S+)" % pct, text, re.M)
        out["p%s_us" % pct] = parse_duration_us(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        c, r, w, t = (int(x) for x in m.groups())
        out["socket_errors"] = c + r + w + t
        out["timeouts"] = t
    return out


def fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 1000:
        return "%.2f ms" % (us / 1000.0)
    return "%.0f us" % us


def ratio(a, b):
    if not a or not b:
        return "n/a"
    return "%.2fx" % (a / b)


def record(argv):
    path, scenario, server, wrk_file = argv[:4]
    kv = {}
    for a in argv[4:]:
        k, v = a.split("=", 1)
        kv[k] = int(v)
    with open(wrk_file) as f:
        w = parse_wrk(f.read())
    w.update(scenario=scenario, server=server,
             cpu_us=kv["cpu1"] - kv["cpu0"],
             log_lines=kv["log1"] - kv["log0"])
    n = w["requests"]
    # busy shares over the window between the two snapshots (t0, t1)
    el = kv["t1"] - kv["t0"]
    w["cpu_us_per_req"] = w["cpu_us"] / n if n else None
    w["server_busy_pct"] = 100.0 * w["cpu_us"] / el if el else None
    w["server_core_busy_pct"] = (100.0 * (kv["score1"] - kv["score0"]) / el
                                 if el else None)
    w["load_core_busy_pct"] = (100.0 * (kv["lcore1"] - kv["lcore0"]) / el
                               if el else None)
    # every answer must be the one the scenario is about: all 503s for
    # fail-fast (expect_non2xx=1), no non-2xx at all otherwise
    want = n if kv.get("expect_non2xx") else 0
    w["warnings"] = []
    if w["non2xx"] != want:
        w["warnings"].append("%d non-2xx answers, expected %d" % (
            w["non2xx"], want))
    if w["socket_errors"]:
        w["warnings"].append("%d socket errors" % w["socket_errors"])
    with open(path, "a") as f:
        f.write(json.dumps(w) + "\n")
    print("  %-8s %-8s %9.0f req/s  p99 %-9s  %s CPU/req  (%d requests, "
          "%d non-2xx, %d socket errors, %d log lines)" % (
              scenario, server, w["rps"], fmt_us(w["p99_us"]),
              fmt_us(w["cpu_us_per_req"]), n, w["non2xx"],
              w["socket_errors"], w["log_lines"]))
    for m in w["warnings"]:
        print("  WARNING: %s/%s: %s" % (scenario, server, m))
    return 0


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2.0


def table(argv):
    runs = {}  # (scenario, server) -> [record, ...] in run order
    order = []
    with open(argv[0]) as f:
        for line in f:
            r = json.loads(line)
            if r["scenario"] not in order:
                order.append(r["scenario"])
            runs.setdefault((r["scenario"], r["server"]), []).append(r)

    def med(s, srv, key):
        return median(r.get(key) for r in runs.get((s, srv), []))

    print("| scenario | bulkhead req/s | nginx req/s | req/s ratio "
          "| p99 bulkhead | p99 nginx | CPU/req bulkhead | CPU/req nginx "
          "| CPU/req ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in order:
        brps, nrps = med(s, "bulkhead", "rps"), med(s, "nginx", "rps")
        bcpu = med(s, "bulkhead", "cpu_us_per_req")
        ncpu = med(s, "nginx", "cpu_us_per_req")
        print("| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s |" % (
            s, brps or 0, nrps or 0, ratio(brps, nrps),
            fmt_us(med(s, "bulkhead", "p99_us")),
            fmt_us(med(s, "nginx", "p99_us")),
            fmt_us(bcpu), fmt_us(ncpu), ratio(bcpu, ncpu)))
    print()
    print("Every measured run (server busy: the server's own CPU over the "
          "window; core busy: every process on the server's / the load's "
          "cores; in % of one core, so with several cores above 100% is "
          "possible):")
    print()
    print("| scenario | server | req/s | requests | non-2xx | socket errors "
          "| log lines | p50 | p99 | CPU/req | server busy "
          "| server core busy | load core busy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in order:
        for srv in ("bulkhead", "nginx"):
            for r in runs.get((s, srv), []):
                print("| %s | %s | %.0f | %d | %d | %d | %d | %s | %s | %s "
                      "| %.0f%% | %.0f%% | %.0f%% |" % (
                          s, srv, r["rps"], r["requests"], r["non2xx"],
                          r["socket_errors"], r["log_lines"],
                          fmt_us(r["p50_us"]), fmt_us(r["p99_us"]),
                          fmt_us(r["cpu_us_per_req"]),
                          r["server_busy_pct"] or 0,
                          r["server_core_busy_pct"] or 0,
                          r["load_core_busy_pct"] or 0))
    for s in order:
        for srv in ("bulkhead", "nginx"):
            for r in runs.get((s, srv), []):
                for m in r.get("warnings", []):
                    print("\nWARNING: %s/%s: %s" % (s, srv, m))
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        return table(sys.argv[2:])
    if len(sys.argv) >= 6 and sys.argv[1] == "record":
        return record(sys.argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
