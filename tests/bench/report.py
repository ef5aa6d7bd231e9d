#!/usr/bin/env python3
"""Result bookkeeping for tests/bench/run.sh.

    report.py record RESULTS SCENARIO SERVER WRK_OUTPUT CPU_US_BEFORE
                     CPU_US_AFTER LOG_LINES_BEFORE LOG_LINES_AFTER
        parses one `wrk --latency` output and appends one JSON line to
        RESULTS; prints a one-line summary. Fails (exit 1) when wrk's
        output has no request count.
    report.py table RESULTS
        prints the side-by-side table (Markdown, so it can be pasted) and
        a details table.

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
    cpu_before, cpu_after, log_before, log_after = (int(x) for x in argv[4:8])
    with open(wrk_file) as f:
        w = parse_wrk(f.read())
    w.update(scenario=scenario, server=server,
             cpu_us=cpu_after - cpu_before,
             log_lines=log_after - log_before)
    n = w["requests"]
    w["cpu_us_per_req"] = w["cpu_us"] / n if n else None
    w["core_busy_pct"] = (100.0 * w["cpu_us"] / (w["elapsed_s"] * 1e6)
                          if w["elapsed_s"] else None)
    with open(path, "a") as f:
        f.write(json.dumps(w) + "\n")
    print("  %-8s %-8s %9.0f req/s  p99 %-9s  %s CPU/req  (%d requests, "
          "%d non-2xx, %d socket errors, %d log lines)" % (
              scenario, server, w["rps"], fmt_us(w["p99_us"]),
              fmt_us(w["cpu_us_per_req"]), n, w["non2xx"],
              w["socket_errors"], w["log_lines"]))
    return 0


def table(argv):
    rows = {}
    order = []
    with open(argv[0]) as f:
        for line in f:
            r = json.loads(line)
            if r["scenario"] not in rows:
                order.append(r["scenario"])
                rows[r["scenario"]] = {}
            rows[r["scenario"]][r["server"]] = r
    print("| scenario | bulkhead req/s | nginx req/s | req/s ratio "
          "| p99 bulkhead | p99 nginx | CPU/req bulkhead | CPU/req nginx "
          "| CPU/req ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in order:
        b = rows[s].get("bulkhead", {})
        n = rows[s].get("nginx", {})
        print("| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s |" % (
            s, b.get("rps", 0), n.get("rps", 0),
            ratio(b.get("rps"), n.get("rps")),
            fmt_us(b.get("p99_us")), fmt_us(n.get("p99_us")),
            fmt_us(b.get("cpu_us_per_req")), fmt_us(n.get("cpu_us_per_req")),
            ratio(b.get("cpu_us_per_req"), n.get("cpu_us_per_req"))))
    print()
    print("| scenario | server | requests | non-2xx | socket errors "
          "| log lines | server core busy | p50 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in order:
        for srv in ("bulkhead", "nginx"):
            r = rows[s].get(srv)
            if r is None:
                continue
            print("| %s | %s | %d | %d | %d | %d | %.0f%% | %s |" % (
                s, srv, r["requests"], r["non2xx"], r["socket_errors"],
                r["log_lines"], r["core_busy_pct"] or 0, fmt_us(r["p50_us"])))
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        return table(sys.argv[2:])
    if len(sys.argv) == 10 and sys.argv[1] == "record":
        return record(sys.argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
