"""State every worker must agree on lives in the shared mapping: a breaker
opened by failures one worker saw fails fast in the other, with no upstream
connection; a rate-limit bucket drained through one worker is empty in the
other; /metrics and /admin/status count what both workers did."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, RawConn, echo_section  # noqa: E402
from upstream_env import (FAST, metric, metric_sum, plugin_section,  # noqa: E402
                          scrape, upstream_status)
from workers import (SimDaemonCase, pinned_conns, status,  # noqa: E402
                     wait_workers)

MIN_CALLS = 4


def config(sim_url):
    return {
        "server": {"workers": 2},
        "plugin.echo": echo_section(),
        "plugin.up_one": plugin_section("up_one", ok_rate_limit="shared"),
        "upstream.up_one": {"url": sim_url, "timeout_ms": 3000, "retries": 0,
                            "breaker_min_calls": MIN_CALLS,
                            "breaker_window_ms": 30000,
                            "breaker_failure_rate": 50,
                            "breaker_open_ms": 30000},
        "rate_limit.shared": {"quota": 4, "window_s": 3600, "burst": 4},
    }


def get(conn, path):
    conn.send("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path)
    r = conn.read_response(10.0)
    if r is None:
        raise AssertionError("no answer to %s" % path)
    return r


class SharedStateTest(SimDaemonCase):

    def config(self, sim_url):
        return config(sim_url)

    def setUp(self):
        super().setUp()
        conns = pinned_conns(self.d, per_worker=1)
        (self.pa, [self.a]), (self.pb, [self.b]) = sorted(conns.items())

    def tearDown(self):
        self.a.close()
        self.b.close()
        super().tearDown()

    def test_breaker_opened_in_one_worker_fails_fast_in_the_other(self):
        self.sim.set_behavior(path="/boom/*", status=500)
        for i in range(MIN_CALLS):
            r = get(self.a, "/t/up_one/get/boom/%d" % i)
            self.assertProblem(r, 502, "up_one.failed")
        self.assertEqual(upstream_status(self.d, "up_one")["breaker"]["state"],
                         "open")
        hits = self.sim.stats()["total"]
        t0 = time.monotonic()
        r = get(self.b, "/t/up_one/get/fine")
        dt = time.monotonic() - t0
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertTrue(doc["extensions"]["retryable"])
        self.assertGreater(int(r.headers["retry-after"]), 0)
        self.assertLess(dt, FAST)
        self.assertEqual(self.sim.stats()["total"], hits,
                         "the other worker still called the upstream")
        # closing it through the admin API reaches both workers too
        r = self.d.admin("/admin/upstreams/up_one/breaker", method="POST",
                         body={"state": "closed"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(get(self.a, "/t/up_one/get/fine").status, 200)
        self.assertEqual(get(self.b, "/t/up_one/get/fine").status, 200)

    def test_rate_limit_bucket_is_shared(self):
        statuses = []
        for i in range(6):
            conn = self.a if i % 2 == 0 else self.b
            statuses.append(get(conn, "/t/up_one/ok").status)
        # quota 4 for the whole daemon, whichever worker answers
        self.assertEqual(statuses, [200, 200, 200, 200, 429, 429])
        r = get(self.b, "/t/up_one/ok")
        self.assertProblem(r, 429, "rate_limit.exceeded")

    def test_metrics_count_both_workers(self):
        m0 = scrape(self.d)
        for _ in range(3):
            self.assertEqual(get(self.a, "/t/echo/ok").status, 200)
            self.assertEqual(get(self.b, "/t/echo/ok").status, 200)
        m1 = scrape(self.d)
        key = dict(plugin="echo", route="/t/echo/ok", status="200", code="")
        before = metric(m0, "bulkhead_requests_total", **key) or 0
        self.assertEqual(metric(m1, "bulkhead_requests_total", **key) - before,
                         6)
        st = self.d.admin("/admin/status").json()
        self.assertEqual(len(st["workers"]), 2)
        self.assertGreaterEqual(st["connections"], 2)

    def test_counts_survive_a_replaced_worker(self):
        """Each worker counts in shards of its own; one killed leaves its
        counts in the totals, and the worker that takes its slot adds to
        them: no counter goes down."""
        key = dict(plugin="echo", route="/t/echo/ok", status="200", code="")
        hist = "bulkhead_request_duration_seconds_count"
        calls = "bulkhead_upstream_calls_total"
        m0 = scrape(self.d)
        t0 = status(self.d)["requestsTotal"]
        for _ in range(3):
            self.assertEqual(get(self.a, "/t/echo/ok").status, 200)
            self.assertEqual(get(self.b, "/t/echo/ok").status, 200)
        for i in range(2):
            self.assertEqual(get(self.a, "/t/up_one/get/f%d" % i).status, 200)

        def delta(m, name, **labels):
            return metric_sum(m, name, **labels) - metric_sum(m0, name,
                                                              **labels)

        m1 = scrape(self.d)
        t1 = status(self.d)["requestsTotal"]
        self.assertGreaterEqual(t1 - t0, 8)
        self.assertEqual(metric(m1, "bulkhead_requests_total", **key) -
                         metric(m0, "bulkhead_requests_total", **key), 6)
        self.assertEqual(delta(m1, hist, plugin="echo"), 6)
        self.assertEqual(delta(m1, calls, upstream="up_one"), 2)

        self.a.close()
        os.kill(self.pa, signal.SIGKILL)
        wait_workers(self.d, 2, exclude=(self.pa,))
        m2 = scrape(self.d)
        t2 = status(self.d)["requestsTotal"]
        self.assertGreaterEqual(t2, t1)
        self.assertEqual(metric(m2, "bulkhead_requests_total", **key) -
                         metric(m0, "bulkhead_requests_total", **key), 6)
        self.assertEqual(delta(m2, hist, plugin="echo"), 6)
        self.assertEqual(delta(m2, calls, upstream="up_one"), 2)

        # the successor (and the survivor) keep counting on top
        self.a = RawConn(self.d.port())
        for i in range(4):
            self.assertEqual(get(self.a, "/t/echo/ok").status, 200)
            self.assertEqual(get(self.a, "/t/up_one/get/g%d" % i).status, 200)
        m3 = scrape(self.d)
        self.assertEqual(metric(m3, "bulkhead_requests_total", **key) -
                         metric(m0, "bulkhead_requests_total", **key), 10)
        self.assertEqual(delta(m3, hist, plugin="echo"), 10)
        self.assertEqual(delta(m3, calls, upstream="up_one"), 6)
        self.assertGreaterEqual(status(self.d)["requestsTotal"] - t2, 8)


if __name__ == "__main__":
    harness.main()
