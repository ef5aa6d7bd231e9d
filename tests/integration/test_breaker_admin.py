"""The breaker as ops see and steer it: /admin/status "upstreams" (state,
mode, calls, failureRate, lastError) and POST
/admin/upstreams/{name}/breaker {"state": "forced_open" | "closed" |
"disabled" | "metrics_only"}. forced_open fails fast with no upstream hit,
until an operator says "closed"; "closed" brings the upstream back whatever
the breaker was doing; disabled never counts nor trips; metrics_only counts
but never trips. The other plugin's routes keep answering 200."""

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import (FAST, Background, metric, scrape,  # noqa: E402
                          set_breaker, start_sim, timed_get, up_config,
                          upstream_status)

MIN_CALLS = 4
OPEN_MS = 600
UPSTREAM = {"timeout_ms": 2000, "retries": 0, "breaker_min_calls": MIN_CALLS,
            "breaker_window_ms": 20000, "breaker_failure_rate": 50,
            "breaker_open_ms": OPEN_MS, "breaker_half_open_calls": 1}
TOKEN = "admin-token-0123456789abcdef"


class _BreakerCase(harness.DaemonTestCase):
    """A fresh daemon per test (breaker state must not leak between tests),
    two simulators for the class."""

    SERVER = None
    UP = UPSTREAM

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim1 = start_sim()
        cls.sim2 = start_sim()

    @classmethod
    def tearDownClass(cls):
        cls.sim1.stop()
        cls.sim2.stop()

    def setUp(self):
        self.sim1.reset()
        self.sim2.reset()
        self.d = Daemon(up_config(self.sim1.url, self.sim2.url, one=self.UP,
                                  two=self.UP, server=self.SERVER))

    def tearDown(self):
        self.d.stop()

    def status(self, name="up_one"):
        return upstream_status(self.d, name)

    def breaker(self, name="up_one"):
        return self.status(name)["breaker"]

    def fail_calls(self, n, path="/f"):
        """n calls that fail upstream with 500 (breaker closed)."""
        self.sim1.set_behavior(path=path + "/*", status=500)
        for i in range(n):
            r = self.d.get("/t/up_one/get%s/%d" % (path, i))
            self.assertProblem(r, 502, "up_one.failed")

    def assertFailFast(self, r, dt, what=""):
        doc = self.assertProblem(r, 503, "up_one.unavailable", what)
        self.assertIs(doc["extensions"]["retryable"], True, r)
        ra = r.headers.get("retry-after")
        self.assertIsNotNone(ra, r)
        self.assertTrue(1 <= int(ra) <= math.ceil(OPEN_MS / 1000.0), r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), int(ra))
        self.assertLess(dt, FAST, r)


class StatusTest(_BreakerCase):

    def test_status_lists_both_upstreams_idle(self):
        r = self.d.admin("/admin/status")
        self.assertEqual(r.status, 200, r)
        ups = {u["name"]: u for u in r.json()["upstreams"]}
        self.assertEqual(set(ups), {"up_one", "up_two"})
        for name, u in ups.items():
            with self.subTest(upstream=name):
                self.assertEqual(u["plugin"], name)
                b = u["breaker"]
                self.assertEqual(b["state"], "closed")
                self.assertEqual(b["mode"], "auto")
                self.assertEqual(b["calls"], 0)
                self.assertEqual(b["failureRate"], 0)
                self.assertIsNone(u["lastError"])

    def test_status_reports_failure_rate_last_error_and_open(self):
        for i in range(4):
            self.assertEqual(self.d.get("/t/up_one/get/ok%d" % i).status, 200)
        self.fail_calls(1)
        u = self.status()
        self.assertEqual(u["breaker"]["state"], "closed", u)
        self.assertEqual(u["breaker"]["calls"], 5, u)
        self.assertEqual(u["breaker"]["failureRate"], 20, u)
        self.assertEqual(u["lastError"], "HTTP 500", u)
        self.assertIsInstance(u.get("lastErrorAt"), int, u)
        self.assertLess(abs(u["lastErrorAt"] - time.time()), 120, u)
        self.fail_calls(2, "/g")  # 3 of 7 failed: 42 % < 50 %
        u = self.status()
        self.assertEqual(u["breaker"]["state"], "closed", u)
        self.assertEqual(u["breaker"]["failureRate"], 42, u)
        self.fail_calls(1, "/h")  # 4 of 8: 50 % trips a 50 % breaker
        u = self.status()
        self.assertEqual(u["breaker"]["state"], "open", u)
        self.assertEqual(u["breaker"]["calls"], 8, u)
        self.assertEqual(u["breaker"]["failureRate"], 50, u)
        self.assertEqual(u["breaker"]["transitions"], 1, u)
        # the other upstream is untouched
        two = self.status("up_two")
        self.assertEqual(two["breaker"]["state"], "closed", two)
        self.assertEqual(two["breaker"]["calls"], 0, two)
        self.assertIsNone(two["lastError"], two)

    def test_last_error_names_the_failure(self):
        self.sim1.set_behavior(path="/e/503", status=503)
        self.d.get("/t/up_one/get/e/503")
        self.assertEqual(self.status()["lastError"], "HTTP 503")
        self.sim1.set_behavior(path="/e/rst", action="reset_mid_body",
                               body="z" * 3000)
        self.d.get("/t/up_one/get/e/rst")
        self.assertEqual(self.status()["lastError"], "connection reset")


class OverrideTest(_BreakerCase):

    def test_forced_open_fails_fast_until_closed(self):
        with Background(self.d, ["/t/up_two/ok", "/t/up_two/get/bg"]) as bg:
            r = set_breaker(self.d, "up_one", "forced_open")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"upstream": "up_one", "state": "open",
                                        "mode": "forced_open"})
            b = self.breaker()
            self.assertEqual((b["state"], b["mode"]), ("open", "forced_open"))
            hits = self.sim1.stats()["total"]
            for method, path, body in (
                    ("GET", "/t/up_one/get/x", None),
                    ("POST", "/t/up_one/post/x", {"a": 1}),
                    ("GET", "/t/up_one/proxy/x?y=1", None),
                    ("DELETE", "/t/up_one/proxy/x", None)):
                t0 = time.monotonic()
                r = self.d.request(method, path, body=body)
                self.assertFailFast(r, time.monotonic() - t0, path)
            self.assertEqual(self.sim1.stats()["total"], hits,
                             "forced_open let a call reach the upstream")
            # an operator's open does not half-open by itself
            time.sleep(OPEN_MS / 1000.0 + 0.2)
            r, dt = timed_get(self.d, "/t/up_one/get/still")
            self.assertFailFast(r, dt, "after open_ms")
            self.assertEqual(self.sim1.stats()["total"], hits)
            self.assertEqual(self.breaker()["state"], "open")
            # the local route of the same plugin never needed the upstream
            self.assertEqual(self.d.get("/t/up_one/ok").status, 200)

            r = set_breaker(self.d, "up_one", "closed")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"upstream": "up_one",
                                        "state": "closed", "mode": "auto"})
            for i in range(3):
                r = self.d.get("/t/up_one/get/back%d" % i)
                self.assertEqual(r.status, 200, r)
            self.assertEqual(self.sim1.stats()["total"], hits + 3)
            b = self.breaker()
            self.assertEqual((b["state"], b["mode"]), ("closed", "auto"))
            bg.check(self)
        self.assertEqual(self.sim2.count("/bg"), bg.count("/t/up_two/get/bg"))
        self.assertEqual(self.breaker("up_two")["state"], "closed")

    def test_closed_overrides_a_tripped_breaker(self):
        # The breaker opened by itself; the operator knows the upstream is
        # back and says "closed": calls go through at once.
        self.fail_calls(MIN_CALLS)
        self.assertEqual(self.breaker()["state"], "open")
        self.sim1.clear()
        hits = self.sim1.stats()["total"]
        r = set_breaker(self.d, "up_one", "closed")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "closed",
                         "POST state=closed left a tripped breaker open: %r"
                         % r)
        r = self.d.get("/t/up_one/get/after-close")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim1.stats()["total"], hits + 1)
        self.assertEqual(self.breaker()["state"], "closed")

    def test_disabled_never_counts_nor_trips(self):
        r = set_breaker(self.d, "up_one", "disabled")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"upstream": "up_one", "state": "closed",
                                    "mode": "disabled"})
        self.fail_calls(MIN_CALLS * 2)
        self.assertEqual(self.sim1.stats()["total"], MIN_CALLS * 2)
        b = self.breaker()
        self.assertEqual((b["state"], b["mode"]), ("closed", "disabled"), b)
        self.assertEqual(b["calls"], 0, b)
        # back to normal: it counts and trips again
        r = set_breaker(self.d, "up_one", "closed")
        self.assertEqual(r.json(), {"upstream": "up_one", "state": "closed",
                                    "mode": "auto"})
        self.fail_calls(MIN_CALLS, "/g")
        self.assertEqual(self.breaker()["state"], "open")
        r, dt = timed_get(self.d, "/t/up_one/get/g/x")
        self.assertFailFast(r, dt)
        self.assertEqual(self.sim1.stats()["total"], MIN_CALLS * 3)

    def test_metrics_only_counts_but_never_trips(self):
        r = set_breaker(self.d, "up_one", "metrics_only")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"upstream": "up_one", "state": "closed",
                                    "mode": "metrics_only"})
        n = MIN_CALLS * 2
        self.fail_calls(n)
        self.assertEqual(self.sim1.stats()["total"], n,
                         "metrics_only refused a call")
        b = self.breaker()
        self.assertEqual((b["state"], b["mode"]), ("closed", "metrics_only"))
        self.assertEqual(b["calls"], n, b)
        self.assertEqual(b["failureRate"], 100, b)
        self.assertEqual(self.status()["lastError"], "HTTP 500")

    def test_closed_after_metrics_only_serves_a_recovered_upstream(self):
        # metrics_only saw a failing upstream; it has recovered and the
        # operator switches the breaker back on: good calls go through and
        # do not trip it.
        set_breaker(self.d, "up_one", "metrics_only")
        self.fail_calls(MIN_CALLS * 2)
        self.sim1.clear()
        r = set_breaker(self.d, "up_one", "closed")
        self.assertEqual(r.json(), {"upstream": "up_one", "state": "closed",
                                    "mode": "auto"})
        hits = self.sim1.stats()["total"]
        for i in range(3):
            r = self.d.get("/t/up_one/get/good%d" % i)
            self.assertEqual(r.status, 200,
                             "successful call %d after 'closed': %r" % (i, r))
        self.assertEqual(self.sim1.stats()["total"], hits + 3)
        self.assertEqual(self.breaker()["state"], "closed")

    def test_override_is_per_upstream(self):
        set_breaker(self.d, "up_two", "forced_open")
        r = self.d.get("/t/up_two/get/x")
        self.assertProblem(r, 503, "up_two.unavailable")
        self.assertEqual(self.sim2.stats()["total"], 0)
        r = self.d.get("/t/up_one/get/x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.breaker()["mode"], "auto")
        self.assertEqual(self.breaker("up_two")["mode"], "forced_open")

    def test_breaker_state_metric_follows_override(self):
        def gauge(name, state):
            return metric(scrape(self.d), "bulkhead_breaker_state",
                          upstream=name, state=state)
        self.assertEqual(gauge("up_one", "closed"), 1)
        set_breaker(self.d, "up_one", "forced_open")
        self.assertEqual(gauge("up_one", "open"), 1)
        self.assertEqual(gauge("up_one", "closed"), 0)
        self.assertEqual(gauge("up_two", "closed"), 1)
        set_breaker(self.d, "up_one", "closed")
        self.assertEqual(gauge("up_one", "closed"), 1)
        self.assertEqual(gauge("up_one", "open"), 0)


class WindowTest(_BreakerCase):
    """The verdict comes from a sliding window of breaker_window_ms: old
    failures are forgotten."""

    WINDOW_MS = 1000
    UP = dict(UPSTREAM, breaker_window_ms=WINDOW_MS)

    def test_failures_outside_the_window_are_forgotten(self):
        self.fail_calls(MIN_CALLS - 1)
        time.sleep(self.WINDOW_MS / 1000.0 + 0.3)
        self.fail_calls(1, "/g")
        b = self.breaker()
        self.assertEqual(b["state"], "closed",
                         "failures older than the window tripped it: %r" % b)
        self.assertEqual(b["calls"], 1, b)
        self.fail_calls(MIN_CALLS - 1, "/h")
        self.assertEqual(self.breaker()["state"], "open")
        hits = self.sim1.stats()["total"]
        r, dt = timed_get(self.d, "/t/up_one/get/h/x")
        self.assertFailFast(r, dt)
        self.assertEqual(self.sim1.stats()["total"], hits)


class SlowCallTest(_BreakerCase):
    """Slow successes count through the slow-call rate. The window is wide
    enough to hold every slow call even on a sanitizer build."""

    UP = dict(UPSTREAM, breaker_window_ms=10000, breaker_slow_rate=50,
              breaker_slow_call_ms=150)

    def test_slow_successes_trip_it(self):
        self.sim1.set_behavior(path="/slow/*", delay_ms=300)
        for i in range(MIN_CALLS):
            r = self.d.get("/t/up_one/get/slow/%d" % i)
            self.assertEqual(r.status, 200, r)
        b = self.breaker()
        self.assertEqual(b["state"], "open", b)
        self.assertEqual(b["slowRate"], 100, b)
        self.assertEqual(b["failureRate"], 0, b)
        r, dt = timed_get(self.d, "/t/up_one/get/slow/more")
        self.assertFailFast(r, dt)
        self.assertEqual(self.sim1.stats()["total"], MIN_CALLS)
        self.assertEqual(self.d.get("/t/up_two/get/fine").status, 200)


class OverrideValidationTest(_BreakerCase):

    def assertUnchanged(self):
        b = self.breaker()
        self.assertEqual((b["state"], b["mode"]), ("closed", "auto"), b)
        r = self.d.get("/t/up_one/get/still-works")
        self.assertEqual(r.status, 200, r)

    def test_bad_state_value(self):
        r = set_breaker(self.d, "up_one", "half_open")
        self.assertProblem(r, 400, "request.invalid_body")
        r = set_breaker(self.d, "up_one", "OPEN")
        self.assertProblem(r, 400, "request.invalid_body")
        self.assertUnchanged()

    def test_bad_bodies(self):
        path = "/admin/upstreams/up_one/breaker"
        for body in (None, b"", b"not json", {"state": 1}, {},
                     {"state": "closed", "extra": True}, ["closed"]):
            with self.subTest(body=body):
                r = self.d.admin(path, method="POST", body=body,
                                 headers={"Content-Type": "application/json"})
                self.assertProblem(r, 400, "request.invalid_body")
        self.assertUnchanged()

    def test_unknown_upstream(self):
        r = set_breaker(self.d, "nope", "forced_open")
        self.assertProblem(r, 404, "admin.upstream_not_found")
        self.assertUnchanged()

    def test_method_not_allowed(self):
        r = self.d.admin("/admin/upstreams/up_one/breaker")
        self.assertProblem(r, 405, "route.method_not_allowed")
        self.assertEqual(r.headers.get("allow"), "POST", r)
        self.assertUnchanged()


class OverrideAuthTest(_BreakerCase):
    SERVER = {"admin_token": TOKEN}

    def test_override_needs_the_admin_token(self):
        r = set_breaker(self.d, "up_one", "forced_open")
        self.assertProblem(r, 401, "admin.unauthorized")
        r = set_breaker(self.d, "up_one", "forced_open",
                        headers={"Authorization": "Bearer wrong-token-xx"})
        self.assertProblem(r, 401, "admin.unauthorized")
        auth = {"Authorization": "Bearer " + TOKEN}
        r = self.d.admin("/admin/status", headers=auth)
        b = [u for u in r.json()["upstreams"] if u["name"] == "up_one"][0]
        self.assertEqual(b["breaker"]["mode"], "auto",
                         "an unauthorized override took effect")
        self.assertEqual(self.d.get("/t/up_one/get/x").status, 200)
        r = set_breaker(self.d, "up_one", "forced_open", headers=auth)
        self.assertEqual(r.status, 200, r)
        r = self.d.get("/t/up_one/get/x")
        self.assertProblem(r, 503, "up_one.unavailable")


EVIL = "https://evil.example"


class CrossSiteTest(_BreakerCase):
    """A tokenless admin listener (the default) obeys no web page: a
    cross-site request (Origin, Sec-Fetch-Site), a form-like POST (not
    application/json) and a rebinding Host are refused, and nothing
    happens -- the breaker stays closed, no reload starts."""

    def admin_raw(self, method, path, headers, body=b""):
        c = self.d.connection(admin=True)
        try:
            c.putrequest(method, path, skip_host=True,
                         skip_accept_encoding=True)
            for k, v in headers.items():
                c.putheader(k, v)
            if method == "POST":
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body if method == "POST" else None)
            r = c.getresponse()
            return harness.Response(r.status, r.reason, r.getheaders(),
                                    r.read())
        finally:
            c.close()

    def own_host(self):
        return "127.0.0.1:%d" % self.d.admin_port

    def test_cross_site_posts_change_nothing(self):
        gen = self.d.admin("/admin/status").json()["generation"]
        host = self.own_host()
        body = b'{"state":"forced_open"}'
        cases = [
            # the audited attack: a text/plain POST from another site
            ({"Host": host, "Origin": EVIL, "Content-Type": "text/plain"},
             403, "auth.forbidden"),
            ({"Host": host, "Origin": EVIL,
              "Content-Type": "application/json"}, 403, "auth.forbidden"),
            ({"Host": host, "Origin": "null",
              "Content-Type": "application/json"}, 403, "auth.forbidden"),
            ({"Host": host, "Sec-Fetch-Site": "cross-site",
              "Content-Type": "application/json"}, 403, "auth.forbidden"),
            ({"Host": host, "Sec-Fetch-Site": "same-site",
              "Content-Type": "application/json"}, 403, "auth.forbidden"),
            ({"Host": "evil.example:%d" % self.d.admin_port,
              "Origin": "http://evil.example:%d" % self.d.admin_port,
              "Content-Type": "application/json"}, 403, "auth.forbidden"),
            # no Origin at all, but what a form or a simple request sends
            ({"Host": host, "Content-Type": "text/plain"}, 415,
             "request.unsupported_media_type"),
            ({"Host": host,
              "Content-Type": "application/x-www-form-urlencoded"}, 415,
             "request.unsupported_media_type"),
            ({"Host": host}, 415, "request.unsupported_media_type"),
        ]
        for path in ("/admin/upstreams/up_one/breaker", "/admin/reload"):
            for hdrs, status, code in cases:
                with self.subTest(path=path, headers=hdrs):
                    r = self.admin_raw("POST", path, hdrs, body)
                    self.assertProblem(r, status, code)
        self.assertEqual(self.breaker()["mode"], "auto")
        self.assertEqual(self.breaker()["state"], "closed")
        for i in range(3):
            self.assertEqual(self.d.get("/t/up_one/get/x%d" % i).status, 200)
        st = self.d.admin("/admin/status").json()
        self.assertEqual(st["generation"], gen, "a refused reload ran")
        self.assertFalse(st["reloading"])
        refused = [e for e in self.d.events("admin_refused")]
        self.assertTrue(refused, "refusals are logged")

    def test_rebinding_host_is_refused(self):
        for host in ("evil.example", "evil.example:%d" % self.d.admin_port,
                     "127.0.0.1.evil.example", "localhost.evil.example",
                     "[::2]", "127.0.0.1:x"):
            for path in ("/admin/status", "/metrics", "/healthz"):
                with self.subTest(host=host, path=path):
                    r = self.admin_raw("GET", path, {"Host": host})
                    self.assertProblem(r, 403, "auth.forbidden")
                    self.assertNotIn(b"up_one", r.body)
        # loopback names, with or without a port, are this listener
        for host in (self.own_host(), "127.0.0.1", "localhost",
                     "LOCALHOST:%d" % self.d.admin_port, "[::1]",
                     "[::1]:%d" % self.d.admin_port):
            with self.subTest(host=host):
                r = self.admin_raw("GET", "/admin/status", {"Host": host})
                self.assertEqual(r.status, 200, r)

    def test_same_origin_and_no_origin_json_posts_work(self):
        host = self.own_host()
        r = self.admin_raw(
            "POST", "/admin/upstreams/up_one/breaker",
            {"Host": host, "Origin": "http://" + host,
             "Sec-Fetch-Site": "same-origin",
             "Content-Type": "application/json; charset=utf-8"},
            b'{"state":"forced_open"}')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.breaker()["mode"], "forced_open")
        r = self.admin_raw("POST", "/admin/upstreams/up_one/breaker",
                           {"Host": host, "Sec-Fetch-Site": "none",
                            "Content-Type": "application/json"},
                           b'{"state":"closed"}')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.breaker()["mode"], "auto")
        r = set_breaker(self.d, "up_one", "forced_open")  # plain client
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.breaker()["mode"], "forced_open")


if __name__ == "__main__":
    harness.main()
