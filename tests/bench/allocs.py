#!/usr/bin/env python3
"""Heap allocations per request, counted: the daemon (workers = 0, one
process) runs with build/tests/alloc_count.so preloaded, serves N and then
N + 1000 requests on keep-alive connections in two separate runs (the
counter read before and after), and the difference over 1000 is the
figure.

    tests/bench/allocs.py            # uses <repo>/build (BULKHEAD_BIN too)

Scenarios: proxy (GET /t/up_one/proxy/x, keep-alive to the simulator),
auth-proxy (the same through an auth-required route with an HS256 bearer
token: cached after the first request) and auth-proxy-nocache
([auth] token_cache_size = 0: verified on every request)."""

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from auth_tokens import TEST_SECRET, auth_section, mint_access_token  # noqa
from harness import Daemon, RawConn  # noqa: E402
from upstream_env import plugin_section, start_sim  # noqa: E402

PRELOAD = os.path.join(os.path.dirname(harness.BIN), "tests",
                       "alloc_count.so")


def config(sim_url, cache=None):
    cfg = {"server": {"workers": 0},
           "plugin.up_one": plugin_section("up_one"),
           "upstream.up_one": {"url": sim_url, "retries": 0}}
    if cache is not None:
        sec = auth_section(TEST_SECRET)
        sec["token_cache_size"] = cache
        cfg["auth"] = sec
        cfg["plugin.whoami"] = {"path": harness.test_plugin("whoami"),
                                "mount": "/t/whoami"}
        cfg["upstream.whoami"] = {"url": sim_url, "retries": 0}
    return cfg


def count(sim_url, path, headers, n, cache):
    out = tempfile.mktemp(prefix="bh-allocs-")
    d = Daemon(config(sim_url, cache),
               env={"LD_PRELOAD": PRELOAD, "BH_ALLOC_COUNT_OUT": out})
    try:
        c = RawConn(d.port())
        c.send("GET /t/up_one/proxy/warm HTTP/1.1\r\nHost: t\r\n\r\n")
        c.read_response(5.0)
        with open(out, "rb") as f:
            start = int.from_bytes(f.read(8), sys.byteorder)
        req = "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (
            path, "".join("%s: %s\r\n" % kv for kv in headers.items()))
        for _ in range(n):
            c.send(req)
            r = c.read_response(5.0)
            if r is None or r.status != 200:
                raise SystemExit("%s answered %r" % (path, r))
            if r.closes():  # keepalive_requests reached
                c.close()
                c = RawConn(d.port())
        c.close()
        with open(out, "rb") as f:
            end = int.from_bytes(f.read(8), sys.byteorder)
    finally:
        d.stop()
    os.unlink(out)
    return end - start


def main():
    if not os.path.exists(PRELOAD):
        raise SystemExit("no %s: build the bh_alloc_count target" % PRELOAD)
    sim = start_sim()
    tok = mint_access_token(TEST_SECRET, "bench-user", ttl_s=3600,
                            sid="ses_bench", scope="read write")
    auth = {"Authorization": "Bearer " + tok}
    try:
        for name, path, headers, cache in (
                ("proxy", "/t/up_one/proxy/x", {}, None),
                ("auth-proxy", "/t/whoami/proxy/x", auth, 4096),
                ("auth-proxy-nocache", "/t/whoami/proxy/x", auth, 0)):
            a = count(sim.url, path, headers, 200, cache)
            b = count(sim.url, path, headers, 1200, cache)
            print("%-20s %6.1f allocations per request" % (name,
                                                           (b - a) / 1000.0))
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
