#!/usr/bin/env python3
"""System calls per request, counted with `strace -c -f`, for bulkhead
(`workers = 1`: master and worker, every thread) and nginx
(`master_process off`), on the scenarios and configs of callgrind.py: one
keep-alive connection, one request at a time, each server run twice (N and
N + M requests) and the difference over M printed per syscall, so start-up
and shutdown cancel out. Kernel time is part of run.sh's CPU figure; this
says which calls it is spent in.

    tests/bench/syscalls.py                       # every scenario, both servers
    SC_SCENARIOS="proxy" SC_SERVERS=bulkhead tests/bench/syscalls.py

SC_N (default 100) and SC_M (default 1000) set the two run lengths;
SC_WORKERS (default 1) bulkhead's workers. strace slows the servers down,
so a timer-driven call (the log writer's batching, epoll timeouts) may
read higher than without it."""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import callgrind as cg  # noqa: E402


def counts(path):
    """{syscall: calls} of an `strace -c` summary."""
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) not in (5, 6) or not parts[3].isdigit():
            continue
        name = parts[-1]
        if name == "total":
            continue
        out[name] = int(parts[3])
    return out


def main():
    scen = os.environ.get("SC_SCENARIOS", " ".join(cg.ALL)).split()
    servers = os.environ.get("SC_SERVERS", "bulkhead nginx").split()
    n = int(os.environ.get("SC_N", "100"))
    m = int(os.environ.get("SC_M", "1000"))
    workers = int(os.environ.get("SC_WORKERS", "1"))
    tmp = tempfile.mkdtemp(prefix="bh-syscalls-")
    sim = cg.start_sim()
    try:
        for name in scen:
            if name == "proxy-64k":
                sim.set_behavior(path="/*", body="x" * 65536)
            body = None
            for server in servers:
                res = []
                for k in (n, n + m):
                    out = os.path.join(tmp, "%s-%s-%d.txt" % (server, name, k))
                    wrap = ["strace", "-c", "-f", "-o", out]
                    got = cg.run(server, name, k, tmp, sim, body, out, wrap,
                                 workers)
                    if server == "bulkhead" and name in ("fail-fast", "local"):
                        body = got.decode()
                    res.append(counts(out))
                a, b = res
                per = sorted(((b[s] - a.get(s, 0)) / float(m), s) for s in b)
                per = [(v, s) for v, s in reversed(per) if v >= 0.01]
                total = sum(v for v, _ in per)
                print("%-10s %-9s %6.2f syscalls/request: %s" %
                      (name, server, total,
                       ", ".join("%s %.2f" % (s, v) for v, s in per)),
                      flush=True)
            if name == "proxy-64k":
                sim.remove_behavior("/*")
    finally:
        sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
