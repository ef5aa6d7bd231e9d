"""The request path's cheap forms keep their behaviour:

- requests pipelined behind an upstream call (answered later, on another
  loop turn) are held while that call is in flight and answered in order,
  also when the client half-closes right after sending them;
- bytes that arrive while a request is in flight are the next request;
- upstream keep-alive connections are reused (one connection for many
  calls, proxied or not) and an idle pooled connection that the upstream
  closes costs nothing afterwards (no busy loop) and is replaced;
- a proxied answer (head held back and sent with the body) is complete,
  for fixed-length and for chunked upstream answers;
- the cached metric series count every request of every (route, status,
  code) combination.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SLACK  # noqa: E402
from upstream_env import (TwoSimsCase, metric, parse_metrics,  # noqa
                          start_sim, up_config)


def get(path, rid, extra=()):
    lines = ["GET %s HTTP/1.1" % path, "Host: t", "X-Request-ID: %s" % rid]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def group_cpu_seconds(pgid):
    """utime + stime of every process in the group, in seconds."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / hz


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HotPathTest(TwoSimsCase):

    @classmethod
    def start_sims(cls):
        # a port of our own, so a second simulator can take the first one's
        # place (the upstream URL stays the same)
        cls.port = free_port()
        return start_sim(listen="127.0.0.1:%d" % cls.port), start_sim()

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url,
            one={"timeout_ms": 2000, "retries": 0,
                 "breaker_min_calls": 1000},
            plugin_one={"route_timeout_ms": 4000},
            server={"workers": "1"})

    # -- pipelining behind upstream calls ---------------------------------

    def test_pipelined_behind_upstream_calls(self):
        batch = (get("/t/up_one/proxy/a", "hp-0") +
                 get("/t/up_one/get/b", "hp-1") +
                 get("/t/up_one/ok", "hp-2") +
                 get("/t/up_one/proxy/c?x=1", "hp-3"))
        with self.d.raw_conn() as c:
            c.send(batch)
            rs = c.read_responses(4)
            self.assertEqual([r.headers.get("x-request-id") for r in rs],
                             ["hp-0", "hp-1", "hp-2", "hp-3"], rs)
            self.assertEqual([r.status for r in rs], [200] * 4, rs)
            self.assertEqual(rs[0].json()["path"], "/t/up_one/proxy/a")
            self.assertEqual(rs[2].json(), {"plugin": "up_one", "ok": True})
            self.assertFalse(any(r.closes() for r in rs), rs)
            # still usable
            c.send(get("/t/up_one/ok", "hp-4"))
            r = c.read_response()
            self.assertEqual((r.status, r.headers["x-request-id"]),
                             (200, "hp-4"))

    def test_half_close_after_pipelined_upstream_calls(self):
        batch = (get("/t/up_one/proxy/a", "hc-0") +
                 get("/t/up_one/get/b", "hc-1"))
        with self.d.raw_conn() as c:
            c.send(batch)
            c.shutdown_write()
            rs = c.read_responses(2)
            self.assertEqual([r.headers.get("x-request-id") for r in rs],
                             ["hc-0", "hc-1"], rs)
            self.assertEqual([r.status for r in rs], [200, 200], rs)
            # then the daemon closes: nothing more will come
            self.assertTrue(c.wait_closed(2 * SLACK))
            self.assertEqual(c.buf, b"")

    def test_request_arriving_while_one_is_in_flight(self):
        # a proxy route sends the whole path upstream
        self.sim1.set_behavior(path="/t/up_one/proxy/slow", delay_ms=300)
        with self.d.raw_conn() as c:
            c.send(get("/t/up_one/proxy/slow", "fl-0"))
            time.sleep(0.1)  # the first is upstream now
            c.send(get("/t/up_one/ok", "fl-1"))
            rs = c.read_responses(2)
            self.assertEqual([(r.status, r.headers.get("x-request-id"))
                              for r in rs],
                             [(200, "fl-0"), (200, "fl-1")], rs)

    # -- upstream connections -----------------------------------------------

    def test_keep_alive_connection_reused(self):
        # one warm-up call: the pool holds a connection from then on
        self.assertEqual(self.d.get("/t/up_one/get/warm").status, 200)
        self.sim1.reset_stats()
        c = self.d.connection()
        try:
            for i in range(6):
                path = "/t/up_one/%s/r%d" % ("proxy" if i % 2 else "get", i)
                r = self.d.get(path, conn=c)
                self.assertEqual(r.status, 200, r)
        finally:
            c.close()
        st = self.sim1.stats()
        self.assertEqual(st["total"], 6, st)
        # "connections": how many connections sent these requests
        self.assertEqual(st["connections"], 1, st)
        self.assertEqual(st["open_connections"], 1, st)

    def test_upstream_closing_idle_connection(self):
        cls = type(self)
        self.assertEqual(self.d.get("/t/up_one/proxy/x").status, 200)
        # the upstream goes away: its end of the pooled connection closes
        cls.sim1.stop()
        time.sleep(0.2)
        pg = self.d.proc.pid
        before = group_cpu_seconds(pg)
        time.sleep(1.0)
        spent = group_cpu_seconds(pg) - before
        # a poll left watching a closed socket would spin a core
        self.assertLess(spent, 0.25 * SLACK)
        # and comes back on the same address: a fresh connection serves
        cls.sim1 = start_sim(listen="127.0.0.1:%d" % cls.port)
        for path in ("/t/up_one/proxy/y", "/t/up_one/get/z"):
            r = self.d.get(path)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(cls.sim1.stats()["connections"], 1)

    # -- proxied answers --------------------------------------------------

    def test_proxied_answers_complete(self):
        big = "x" * 100000
        self.sim1.set_behavior(path="/t/up_one/proxy/big", body=big)
        r = self.d.get("/t/up_one/proxy/big")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.decode(), big)
        self.assertEqual(r.headers.get("content-length"), str(len(big)))
        self.assertIn("x-request-id", r.headers)
        # chunked from the upstream (server-sent events): chunked to the
        # client, every event there
        self.sim1.set_behavior(path="/t/up_one/proxy/events", action="stream")
        r = self.d.get("/t/up_one/proxy/events")
        self.assertEqual(r.status, 200, r)
        self.assertIn("chunked", r.headers.get("transfer-encoding", ""))
        self.assertIn(b"message_stop", r.body)
        # HEAD: a head and no body
        r = self.d.request("HEAD", "/t/up_one/proxy/big")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"")

    # -- metrics ------------------------------------------------------------

    def test_cached_series_count_every_request(self):
        def counts():
            m = parse_metrics(self.d.admin("/metrics").body.decode())
            ok = metric(m, "bulkhead_requests_total", plugin="up_one",
                        route="/t/up_one/ok", status="200", code="") or 0
            nf = metric(m, "bulkhead_requests_total", plugin="up_one",
                        route="", status="404", code="route.not_found") or 0
            calls = metric(m, "bulkhead_upstream_calls_total",
                           upstream="up_one", outcome="http_2xx") or 0
            return ok, nf, calls
        ok0, nf0, calls0 = counts()
        for _ in range(7):
            self.assertEqual(self.d.get("/t/up_one/ok").status, 200)
        for _ in range(3):
            self.assertEqual(self.d.get("/t/up_one/nothing").status, 404)
        for _ in range(4):
            self.assertEqual(self.d.get("/t/up_one/get/m").status, 200)
        ok1, nf1, calls1 = counts()
        self.assertEqual((ok1 - ok0, nf1 - nf0, calls1 - calls0), (7, 3, 4))


if __name__ == "__main__":
    harness.main()
