"""Retries (DESIGN "Shared policies"): only idempotent methods, or a POST
that carries an Idempotency-Key; on connect errors/resets, 408, 429, 502,
503, 504; exponential backoff with full jitter that honours the upstream's
Retry-After (and gives up when it is above retry_after_max_s); bounded by
the request deadline and by a retry budget so an outage never multiplies
load. Hit counts come from the simulator; the circuit breaker is disabled
in these daemons so it never hides a retry."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import (TwoSimsCase, closed_port, metric, scrape,  # noqa: E402
                          timed_get, up_config)

DEADLINE_MS = 1000  # up_two's route deadline


class RetryTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url,
            one={"timeout_ms": 600, "retries": 2, "retry_base_ms": 20,
                 "retry_cap_ms": 80, "retry_after_max_s": 3,
                 # a generous budget: these tests are about the policy
                 "retry_budget_percent": 100, "retry_budget_min": 1000,
                 "breaker_mode": "disabled"},
            two={"timeout_ms": 10000, "retries": 10, "retry_base_ms": 50,
                 "retry_cap_ms": 50, "retry_budget_percent": 100,
                 "retry_budget_min": 1000, "breaker_mode": "disabled"},
            plugin_one={"route_timeout_ms": 6000},
            plugin_two={"route_timeout_ms": DEADLINE_MS})

    def retries_total(self, upstream="up_one"):
        return metric(scrape(self.d), "bulkhead_upstream_retries_total",
                      upstream=upstream)

    # -- what is retried ----------------------------------------------------

    def test_get_retried_on_503_succeeds_on_second_try(self):
        self.sim1.set_behavior(path="/r/503", status=503, times=1)
        before = self.retries_total()
        r = self.d.get("/t/up_one/get/r/503?x=1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream-attempts"), "2", r)
        self.assertEqual(r.json()["path"], "/r/503")
        self.assertEqual(self.sim1.count("/r/503"), 2)
        self.assertEqual(self.retries_total() - before, 1)
        reqs = self.sim1.requests("/r/503")
        self.assertEqual([q["query"] for q in reqs], ["x=1", "x=1"])
        # one request id across the attempts: the client's answer's
        ids = [dict((k.lower(), v) for k, v in q["headers"])["x-request-id"]
               for q in reqs]
        self.assertEqual(ids, [r.headers["x-request-id"]] * 2)

    def test_get_retried_on_retryable_statuses(self):
        for status in (502, 504, 408, 429):
            with self.subTest(status=status):
                path = "/r/once-%d" % status
                self.sim1.set_behavior(path=path, status=status, times=1)
                before = self.retries_total()
                r = self.d.get("/t/up_one/get" + path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers.get("x-upstream-attempts"), "2", r)
                self.assertEqual(self.sim1.count(path), 2)
                self.assertEqual(self.retries_total() - before, 1)

    def test_get_retried_when_connection_dies_without_answer(self):
        # the upstream takes the request and closes / resets the
        # connection without a byte of answer: a GET is tried again
        for action in ("close", "reset"):
            with self.subTest(action=action):
                path = "/r/once-" + action
                self.sim1.set_behavior(path=path, action=action, times=1)
                r = self.d.get("/t/up_one/get" + path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["path"], path)
                self.assertEqual(self.sim1.count(path), 2)

    def test_retries_stop_at_max_retries(self):
        self.sim1.set_behavior(path="/r/always503", status=503)
        r = self.d.get("/t/up_one/get/r/always503")
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        self.assertEqual(self.sim1.count("/r/always503"), 3)  # 1 + retries

    def test_not_retried_outcomes(self):
        cases = [
            ("500", {"status": 500}, 502, "up_one.failed"),
            ("501", {"status": 501}, 502, "up_one.failed"),
            ("400", {"preset": "stripe_no_customer"}, 400,
             "up_one.not_on_file"),
            ("404", {"status": 404}, 502, "up_one.upstream_error"),
            # a timeout has spent the attempt's time: never repeated
            ("timeout", {"delay_ms": 2500}, 504, "up_one.timeout"),
        ]
        for name, rule, status, code in cases:
            with self.subTest(outcome=name):
                path = "/r/no-" + name
                self.sim1.set_behavior(path=path, **rule)
                r = self.d.get("/t/up_one/get" + path)
                self.assertProblem(r, status, code)
                self.assertEqual(self.sim1.count(path), 1,
                                 "%s must not be retried" % name)

    # -- POST ---------------------------------------------------------------

    def test_post_never_retried_unless_marked(self):
        for status, code in ((503, "up_one.unavailable"),
                             (502, "up_one.failed"),
                             (504, "up_one.failed"),
                             (429, "up_one.rate_limited")):
            with self.subTest(status=status):
                path = "/p/unmarked-%d" % status
                self.sim1.set_behavior(path=path, status=status, times=1)
                r = self.d.post("/t/up_one/post" + path, body={"n": 1})
                self.assertProblem(r, 503 if status == 503 else
                                   429 if status == 429 else 502, code)
                self.assertEqual(self.sim1.count(path), 1,
                                 "an unmarked POST was retried")

    def test_unmarked_post_not_resent_when_kept_alive_connection_dies(self):
        # The upstream reads the whole POST, then closes the (reused,
        # kept-alive) connection without answering: it may well have acted
        # on it, so sending it again could charge a card twice. The answer
        # is the transport failure, and the upstream saw the POST once.
        for i, action in enumerate(("close", "close", "reset")):
            with self.subTest(action=action, round=i):
                # a GET first so the POST goes over a pooled connection
                self.assertEqual(self.d.get("/t/up_one/get/warm").status, 200)
                path = "/p/dies-%d" % i
                self.sim1.set_behavior(path=path, action=action, times=1)
                r = self.d.post("/t/up_one/post" + path, body={"charge": i})
                self.assertEqual(
                    self.sim1.count(path, "POST"), 1,
                    "an unmarked POST reached the upstream twice (%r)" % r)
                doc = self.assertProblem(r, 503, "up_one.unavailable")
                self.assertIs(doc["extensions"]["retryable"], True)

    def test_post_with_idempotency_key_is_retried(self):
        path = "/p/marked"
        self.sim1.set_behavior(path=path, status=503, times=1)
        r = self.d.post("/t/up_one/post" + path, body={"amount": 42},
                        headers={"Idempotency-Key": "key-123"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream-attempts"), "2", r)
        reqs = self.sim1.requests(path)
        self.assertEqual(len(reqs), 2)
        for q in reqs:
            h = dict((k.lower(), v) for k, v in q["headers"])
            self.assertEqual(q["method"], "POST")
            self.assertEqual(h.get("idempotency-key"), "key-123")
            self.assertEqual(q["body"], '{"amount": 42}')

    # -- backoff ------------------------------------------------------------

    def test_backoff_honours_retry_after(self):
        for status in (503, 429):
            with self.subTest(status=status):
                path = "/b/ra-%d" % status
                self.sim1.set_behavior(path=path, status=status,
                                       headers={"Retry-After": "1"}, times=1)
                r, dt = timed_get(self.d, "/t/up_one/get" + path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers.get("x-upstream-attempts"), "2")
                reqs = self.sim1.requests(path)
                self.assertEqual(len(reqs), 2)
                gap = reqs[1]["time_ms"] - reqs[0]["time_ms"]
                self.assertGreaterEqual(gap, 950,
                                        "retried %d ms after a "
                                        "Retry-After: 1" % gap)
                self.assertGreaterEqual(dt, 0.95)

    def test_retry_after_above_max_is_not_waited_for(self):
        # retry_after_max_s = 3: a 10 s Retry-After means "do not retry";
        # the client is told the upstream's Retry-After
        path = "/b/ra-long"
        self.sim1.set_behavior(path=path, status=503,
                               headers={"Retry-After": "10"}, times=1)
        r, dt = timed_get(self.d, "/t/up_one/get" + path)
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertEqual(r.headers.get("retry-after"), "10", r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), 10)
        self.assertEqual(self.sim1.count(path), 1)
        self.assertLess(dt, 5.0, "waited for a Retry-After it gave up on")

    def test_backoff_without_retry_after_is_bounded_by_cap(self):
        # retry_cap_ms 80: two retries can wait at most 160 ms in total
        path = "/b/jitter"
        self.sim1.set_behavior(path=path, status=503, times=2)
        r = self.d.get("/t/up_one/get" + path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream-attempts"), "3", r)
        reqs = self.sim1.requests(path)
        self.assertEqual(len(reqs), 3)
        for a, b in zip(reqs, reqs[1:]):
            gap = b["time_ms"] - a["time_ms"]
            self.assertGreaterEqual(gap, 0)
            # the cap plus generous room for a slow (sanitizer) build
            self.assertLess(gap, 80 + 400 * harness.SLACK, reqs)

    # -- deadline (up_two: route deadline 1000 ms) --------------------------

    def test_retry_after_past_deadline_is_not_waited_for(self):
        path = "/d/ra2"
        self.sim2.set_behavior(path=path, status=503,
                               headers={"Retry-After": "2"})
        r, dt = timed_get(self.d, "/t/up_two/get" + path)
        doc = self.assertProblem(r, 503, "up_two.unavailable")
        self.assertEqual(r.headers.get("retry-after"), "2", r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), 2)
        self.assertEqual(self.sim2.count(path), 1,
                         "retried although the wait ran past the deadline")
        self.assertLess(dt, 1.9)

    def test_hanging_upstream_cut_at_deadline(self):
        # upstream timeout 10 s, route deadline 1 s: the deadline wins
        path = "/d/hang"
        self.sim2.set_behavior(path=path, delay_ms=8000)
        r, dt = timed_get(self.d, "/t/up_two/get" + path, timeout=10)
        doc = self.assertProblem(r, 504, "up_two.timeout")
        self.assertIs(doc["extensions"]["retryable"], True)
        self.assertGreaterEqual(dt, DEADLINE_MS / 1000.0 * 0.9)
        self.assertLess(dt, 4.0, "the route deadline was not enforced")
        self.assertEqual(self.sim2.count(path), 1)
        h = dict((k.lower(), v) for k, v in
                 self.sim2.requests(path)[0]["headers"])
        self.assertTrue(0 < int(h["x-request-timeout-ms"]) <= DEADLINE_MS, h)

    def test_retries_bounded_by_deadline(self):
        # retries = 10, but each attempt takes 300 ms and the deadline is
        # 1 s: a handful of attempts, then the last real answer
        path = "/d/slow503"
        self.sim2.set_behavior(path=path, status=503, delay_ms=300)
        r, dt = timed_get(self.d, "/t/up_two/get" + path, timeout=10)
        self.assertIn(r.status, (503, 504), r)
        self.assertIn(r.code, ("up_two.unavailable", "up_two.timeout"), r)
        self.assertLess(dt, 1.0 + 1.5 * harness.SLACK)
        reqs = self.sim2.requests(path)
        self.assertTrue(2 <= len(reqs) <= 4, "attempts: %d" % len(reqs))
        left = [int(dict((k.lower(), v) for k, v in q["headers"])
                    ["x-request-timeout-ms"]) for q in reqs]
        self.assertTrue(all(0 < x <= DEADLINE_MS for x in left), left)
        self.assertEqual(left, sorted(left, reverse=True),
                         "the deadline travels, shrinking: %r" % left)
        self.assertLess(left[-1], left[0])


class RetryOnConnectErrorTest(harness.DaemonTestCase):
    """up_one's upstream refuses connections. The attempt counter shows
    what the simulator cannot: how often a connection was tried."""

    CONFIG = up_config(
        "http://127.0.0.1:%d" % closed_port(), "http://127.0.0.1:1",
        one={"retries": 2, "retry_base_ms": 5, "retry_cap_ms": 20,
             "connect_timeout_ms": 500, "retry_budget_percent": 100,
             "retry_budget_min": 1000, "breaker_mode": "disabled"},
        plugin_one={"route_timeout_ms": 5000})

    def attempts(self):
        m = scrape(self.d)
        return (metric(m, "bulkhead_upstream_attempts_total",
                       upstream="up_one"),
                metric(m, "bulkhead_upstream_retries_total",
                       upstream="up_one"))

    def test_get_retried_on_connect_error(self):
        a0, r0 = self.attempts()
        r = self.d.get("/t/up_one/get/x")
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        a1, r1 = self.attempts()
        self.assertEqual(a1 - a0, 3, "1 attempt + 2 retries")
        self.assertEqual(r1 - r0, 2)

    def test_post_not_retried_on_connect_error_unless_marked(self):
        a0, r0 = self.attempts()
        r = self.d.post("/t/up_one/post/x", body={"a": 1})
        self.assertProblem(r, 503, "up_one.unavailable")
        a1, r1 = self.attempts()
        self.assertEqual((a1 - a0, r1 - r0), (1, 0))
        r = self.d.post("/t/up_one/post/x", body={"a": 1},
                        headers={"Idempotency-Key": "k-1"})
        self.assertProblem(r, 503, "up_one.unavailable")
        a2, r2 = self.attempts()
        self.assertEqual((a2 - a1, r2 - r1), (3, 2))


class RetryBudgetTest(TwoSimsCase):
    """A full outage of up_one: retries are capped by the budget
    (20 % of requests, floor 3) instead of tripling the load."""

    N = 30

    @classmethod
    def make_config(cls, one_url, two_url):
        policy = {"timeout_ms": 1000, "retries": 2, "retry_base_ms": 1,
                  "retry_cap_ms": 5, "retry_budget_percent": 20,
                  "retry_budget_min": 3, "breaker_mode": "disabled"}
        return up_config(one_url, two_url, one=policy, two=policy,
                         plugin_one={"route_timeout_ms": 5000},
                         plugin_two={"route_timeout_ms": 5000})

    def test_budget_caps_retries_under_full_outage(self):
        self.sim1.set_behavior(path="/*", status=503)
        for i in range(self.N):
            r = self.d.get("/t/up_one/get/outage/%d" % i)
            self.assertProblem(r, 503, "up_one.unavailable")
        hits = self.sim1.stats()["total"]
        retries = hits - self.N
        # without a budget: N * 3 = 90 hits
        self.assertGreaterEqual(retries, 3, "the floor allows 3 retries")
        self.assertLessEqual(retries, max(3, self.N * 20 // 100) + 3,
                             "%d upstream hits for %d requests: the retry "
                             "budget did not cap retries" % (hits, self.N))
        m = scrape(self.d)
        self.assertEqual(metric(m, "bulkhead_upstream_retries_total",
                                upstream="up_one"), retries)
        self.assertEqual(metric(m, "bulkhead_upstream_attempts_total",
                                upstream="up_one"), hits)
        # the budget is per upstream: up_two still retries
        self.sim2.set_behavior(path="/once", status=503, times=1)
        r = self.d.get("/t/up_two/get/once")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream-attempts"), "2", r)


if __name__ == "__main__":
    harness.main()
