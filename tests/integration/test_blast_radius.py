"""Blast radius: two plugins (up_one, up_two), each with its own upstream in
its own simulator. For each upstream fault -- connection refused, slow past
the timeout, 500s, 503 with Retry-After, 429, resets mid-body -- the faulty
plugin's routes answer the error map's code/status/retryable/Retry-After,
its breaker opens after the configured window and then fails fast (no
upstream attempt: simulator hit count and attempt counter unchanged),
half-opens after breaker_open_ms (a failed trial re-opens it), and closes
again once the fault clears; meanwhile the other plugin's routes keep
answering 200 without a single error."""

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import (FAST, Background, closed_port, metric,  # noqa: E402
                          scrape, start_sim, timed_get, up_config,
                          upstream_status)

MIN_CALLS = 4
OPEN_MS = 700
HALF_OPEN_CALLS = 2
TIMEOUT_MS = 300
OPEN_RETRY_AFTER_MAX = int(math.ceil(OPEN_MS / 1000.0))
# wait this long for open -> half-open (sleep is exact; add a margin)
OPEN_WAIT = OPEN_MS / 1000.0 + 0.15

UPSTREAM = {
    "timeout_ms": TIMEOUT_MS,
    "connect_timeout_ms": 500,
    "retries": 0,  # one attempt per request: hit counts are exact
    "breaker_window_ms": 20000,
    "breaker_min_calls": MIN_CALLS,
    "breaker_failure_rate": 50,
    "breaker_open_ms": OPEN_MS,
    "breaker_half_open_calls": HALF_OPEN_CALLS,
}
PLUGIN = {"route_timeout_ms": 4000}

# name -> simulator rule (None: nothing listens), expected answer while the
# breaker is closed, and the breaker's lastError.
FAULTS = {
    "connection_refused": dict(
        rule=None, status=503, code="unavailable", retry_after=None,
        last_error="connect failed"),
    "slow_past_timeout": dict(
        rule={"delay_ms": 3000}, status=504, code="timeout",
        retry_after=None, last_error="timeout",
        min_seconds=TIMEOUT_MS / 1000.0 * 0.9),
    "http_500": dict(
        rule={"preset": "stripe_500"}, status=502, code="failed",
        retry_after=None, last_error="HTTP 500"),
    "http_503_retry_after": dict(
        rule={"status": 503, "headers": {"Retry-After": "7"},
              "body": {"error": {"type": "api_error"}}},
        status=503, code="unavailable", retry_after=7,
        last_error="HTTP 503"),
    "http_429": dict(
        rule={"preset": "stripe_rate_limit"}, status=429,
        code="rate_limited", retry_after=2, last_error="HTTP 429"),
    "reset_mid_body": dict(
        rule={"status": 200, "action": "reset_mid_body", "body": "x" * 4000},
        status=503, code="unavailable", retry_after=None,
        last_error="connection reset"),
}


class BlastRadiusTest(harness.DaemonTestCase):
    """One daemon per fault (a fresh breaker each time), two simulators
    shared by the class and reset before every test."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sims = {"up_one": start_sim(), "up_two": start_sim()}

    @classmethod
    def tearDownClass(cls):
        for s in cls.sims.values():
            s.stop()

    def setUp(self):
        for s in self.sims.values():
            s.reset()

    # -- helpers ------------------------------------------------------------

    def assertFault(self, r, faulty, f, dt=None, what=""):
        code = "%s.%s" % (faulty, f["code"])
        doc = self.assertProblem(r, f["status"], code, what)
        self.assertIs(doc["extensions"]["retryable"], True, r)
        if f["retry_after"] is None:
            self.assertNotIn("retry-after", r.headers, r)
            self.assertNotIn("retryAfterSeconds", doc["extensions"], r)
        else:
            self.assertEqual(r.headers.get("retry-after"),
                             str(f["retry_after"]), r)
            self.assertEqual(doc["extensions"].get("retryAfterSeconds"),
                             f["retry_after"], r)
        if dt is not None and f.get("min_seconds"):
            self.assertGreaterEqual(dt, f["min_seconds"], r)

    def assertFailFast(self, r, dt, faulty, what=""):
        """The breaker's answer: the map's BH_ON_BREAKER_OPEN row, with
        Retry-After = time until half-open, at once."""
        doc = self.assertProblem(r, 503, faulty + ".unavailable", what)
        self.assertIs(doc["extensions"]["retryable"], True, r)
        ra = r.headers.get("retry-after")
        self.assertIsNotNone(ra, r)
        self.assertTrue(1 <= int(ra) <= OPEN_RETRY_AFTER_MAX, r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), int(ra),
                         r)
        self.assertLess(dt, FAST, "breaker-open answer was not fast: %r" % r)

    def phase(self, name, fn):
        """Runs one phase as a subTest; False when it failed (the failure
        is recorded and the test goes on with the independent checks)."""
        ok = []
        with self.subTest(phase=name):
            fn()
            ok.append(True)
        return bool(ok)

    # -- the matrix ---------------------------------------------------------

    def run_fault(self, name, faulty="up_one", healthy="up_two"):
        f = FAULTS[name]
        sim = self.sims[faulty]
        refused = f["rule"] is None
        healer = None
        port = closed_port() if refused else None
        urls = {faulty: ("http://127.0.0.1:%d" % port) if refused else
                sim.url, healthy: self.sims[healthy].url}
        # the healthy plugin's upstream gets room for a loaded machine: a
        # 300 ms budget there would measure the machine, not the isolation
        cfg = up_config(urls["up_one"], urls["up_two"], one=UPSTREAM,
                        two=dict(UPSTREAM, timeout_ms=3000),
                        plugin_one=PLUGIN, plugin_two=PLUGIN)
        base = "/t/%s" % faulty
        bg_get = "/t/%s/get/bg/%s" % (healthy, name)
        state = {}

        with Daemon(cfg) as d:
            type(self).d = d

            def hits():
                """Upstream attempts of the faulty plugin: simulator hits
                (or, with nothing listening, the daemon's attempt
                counter)."""
                if refused:
                    return int(metric(scrape(d),
                                      "bulkhead_upstream_attempts_total",
                                      upstream=faulty))
                return sim.stats()["total"]

            def breaker():
                return upstream_status(d, faulty)["breaker"]

            # the faulty plugin's local route is fine before and after
            r = d.get(base + "/ok")
            self.assertEqual(r.status, 200, r)
            if not refused:
                sim.set_behavior(path="/f/*", **f["rule"])
            bg = Background(d, ["/t/%s/ok" % healthy, bg_get]).start()
            try:
                def trip():
                    for i in range(1, MIN_CALLS + 1):
                        r, dt = timed_get(d, "%s/get/f/%d" % (base, i))
                        self.assertFault(r, faulty, f, dt, "call %d" % i)
                        self.assertEqual(hits(), i, "one attempt per call")
                        if i < MIN_CALLS:
                            self.assertEqual(breaker()["state"], "closed",
                                             "tripped before min_calls")
                    b = breaker()
                    self.assertEqual(b["state"], "open",
                                     "%d failed calls (%s) did not open the "
                                     "breaker: %r" % (MIN_CALLS, name, b))
                    self.assertEqual(b["failureRate"], 100, b)
                    self.assertEqual(b["calls"], MIN_CALLS, b)
                    if f["last_error"]:
                        self.assertEqual(
                            upstream_status(d, faulty)["lastError"],
                            f["last_error"])
                    state["opened"] = time.monotonic()

                def fail_fast():
                    h0 = hits()
                    m0 = scrape(d)
                    for method, path, body in (
                            ("GET", base + "/get/f/open", None),
                            ("POST", base + "/post/f/open", {"a": 1}),
                            ("GET", base + "/proxy/f/open", None),
                            ("GET", base + "/get/f/open2?q=1", None)):
                        t0 = time.monotonic()
                        r = d.request(method, path, body=body)
                        self.assertFailFast(r, time.monotonic() - t0, faulty,
                                            path)
                    self.assertEqual(hits(), h0,
                                     "an open breaker let a call through")
                    m1 = scrape(d)
                    self.assertEqual(
                        metric(m1, "bulkhead_upstream_attempts_total",
                               upstream=faulty),
                        metric(m0, "bulkhead_upstream_attempts_total",
                               upstream=faulty))
                    self.assertEqual(
                        metric(m1, "bulkhead_upstream_calls_total",
                               upstream=faulty, outcome="breaker_open") -
                        metric(m0, "bulkhead_upstream_calls_total",
                               upstream=faulty, outcome="breaker_open"), 4)
                    self.assertEqual(breaker()["state"], "open")

                def failed_trial():
                    # the fault persists: the half-open trial fails and the
                    # breaker opens again at once
                    time.sleep(max(0.0, state["opened"] + OPEN_WAIT -
                                   time.monotonic()))
                    h0 = hits()
                    t0 = breaker()["transitions"]
                    r, dt = timed_get(d, base + "/get/f/trial")
                    self.assertFault(r, faulty, f, dt, "half-open trial")
                    self.assertEqual(hits(), h0 + 1, "exactly one trial call")
                    b = breaker()
                    self.assertEqual(b["state"], "open", b)
                    self.assertEqual(b["transitions"], t0 + 2,
                                     "open -> half_open -> open: %r" % b)
                    state["opened"] = time.monotonic()
                    r, dt = timed_get(d, base + "/get/f/after-trial")
                    self.assertFailFast(r, dt, faulty, "after failed trial")
                    self.assertEqual(hits(), h0 + 1)

                def recover():
                    nonlocal healer
                    if refused:
                        healer = start_sim(listen="127.0.0.1:%d" % port)
                    else:
                        sim.clear()
                    time.sleep(max(0.0, state["opened"] + OPEN_WAIT -
                                   time.monotonic()))
                    h0 = hits() if not refused else None
                    for i in range(HALF_OPEN_CALLS):
                        r = d.get("%s/get/f/heal%d" % (base, i))
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.headers.get("x-upstream-attempts"),
                                         "1", r)
                        want = ("half_open" if i + 1 < HALF_OPEN_CALLS
                                else "closed")
                        self.assertEqual(breaker()["state"], want,
                                         "after %d good trial(s)" % (i + 1))
                    for i in range(3):
                        r = d.get("%s/get/f/ok%d" % (base, i))
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.json()["path"], "/f/ok%d" % i)
                    if refused:
                        self.assertEqual(healer.stats()["total"],
                                         HALF_OPEN_CALLS + 3)
                    else:
                        self.assertEqual(hits(), h0 + HALF_OPEN_CALLS + 3)
                    b = breaker()
                    self.assertEqual((b["state"], b["mode"]),
                                     ("closed", "auto"), b)

                ok = self.phase("trip", trip)
                ok = ok and self.phase("fail_fast", fail_fast)
                ok = ok and self.phase("failed_half_open_trial", failed_trial)
                if ok:
                    self.phase("recover", recover)
                self.check_other(d, bg, healthy, bg_get, name)
            finally:
                bg.stop()
                if healer:
                    healer.stop()
            type(self).d = None

    def check_other(self, d, bg, healthy, bg_get, name):
        """(c): the healthy plugin answered 200 all along, its upstream got
        every background call, its breaker never noticed anything."""
        with self.subTest(phase="other_plugin_unaffected"):
            bg.check(self, min_each=3, max_seconds=3.0 * harness.SLACK)
            self.assertEqual(self.sims[healthy].count("/bg/" + name),
                             bg.count(bg_get))
            u = upstream_status(d, healthy)
            self.assertEqual(u["breaker"]["state"], "closed", u)
            self.assertEqual(u["breaker"]["failureRate"], 0, u)
            self.assertIsNone(u["lastError"], u)
            r = d.get("/t/%s/get/final" % healthy)
            self.assertEqual(r.status, 200, r)

    def test_connection_refused(self):
        self.run_fault("connection_refused")

    def test_slow_past_timeout(self):
        self.run_fault("slow_past_timeout")

    def test_http_500(self):
        self.run_fault("http_500")

    def test_http_503_with_retry_after(self):
        self.run_fault("http_503_retry_after")

    def test_http_429(self):
        self.run_fault("http_429")

    def test_reset_mid_body(self):
        self.run_fault("reset_mid_body")

    def test_mirror_up_two_500_while_up_one_serves(self):
        """The same isolation the other way round."""
        self.run_fault("http_500", faulty="up_two", healthy="up_one")


if __name__ == "__main__":
    harness.main()
