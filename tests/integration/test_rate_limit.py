"""Rate limits: token buckets per route policy ([rate_limit.NAME] quota,
window_s, burst, key), keyed by client address or API key. A burst passes,
then 429 rate_limit.exceeded with Retry-After equal to retryAfterSeconds,
and the IETF draft's fields on every answer of a limited route
(RateLimit-Policy: "name";q=Q;w=W and RateLimit: "name";r=R;t=T); tokens
refill at quota per window. An upstream's own local limit refuses calls
before they reach it. A limited route never affects the other plugin."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, metric, scrape, up_config  # noqa: E402

RL_FIELD = re.compile(r'^"([a-z0-9_]+)";r=(\d+);t=(\d+)$')


class _RateCase(TwoSimsCase):
    RESET_SIMS = False

    def ratelimit(self, r):
        """(name, remaining, reset) from the RateLimit field."""
        self.assertEqual(r.header_count("RateLimit"), 1, r)
        m = RL_FIELD.match(r.headers.get("ratelimit", ""))
        self.assertIsNotNone(m, "bad RateLimit field: %r" % r)
        return m.group(1), int(m.group(2)), int(m.group(3))

    def assertLimited(self, r, policy):
        doc = self.assertProblem(r, 429, "rate_limit.exceeded")
        self.assertIs(doc["extensions"]["retryable"], True, r)
        ra = r.headers.get("retry-after")
        self.assertIsNotNone(ra, r)
        self.assertEqual(r.header_count("Retry-After"), 1, r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), int(ra),
                         "retryAfterSeconds must equal Retry-After: %r" % r)
        self.assertEqual(r.headers.get("ratelimit-policy"), policy, r)
        name, remaining, _ = self.ratelimit(r)
        self.assertEqual(remaining, 0, r)
        return int(ra)


class RouteLimitTest(_RateCase):
    """up_one /ok: 1 token per second, burst 3, per client address.
    up_two /ok: 1 token per minute, burst 2, per API key."""

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url,
            plugin_one={"ok_rate_limit": "okburst"},
            plugin_two={"ok_rate_limit": "perkey"},
            extra={
                "rate_limit.okburst": {"quota": 1, "window_s": 1,
                                       "burst": 3, "key": "client"},
                "rate_limit.perkey": {"quota": 1, "window_s": 60,
                                      "burst": 2, "key": "api_key"},
            })

    POLICY = '"okburst";q=1;w=1'

    def test_burst_then_429_then_refill(self):
        m0 = scrape(self.d)
        # the burst: three answers, counting down
        for left in (2, 1, 0):
            r = self.d.get("/t/up_one/ok")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"plugin": "up_one", "ok": True})
            self.assertEqual(r.headers.get("ratelimit-policy"), self.POLICY,
                             r)
            self.assertEqual(r.header_count("RateLimit-Policy"), 1, r)
            name, remaining, reset = self.ratelimit(r)
            self.assertEqual((name, remaining), ("okburst", left), r)
            # seconds until the bucket is full again: one per used token
            self.assertEqual(reset, 3 - left, r)
            self.assertNotIn("retry-after", r.headers, r)
        # then refused, with the time until the next token
        refused = 0
        for _ in range(3):
            r = self.d.get("/t/up_one/ok")
            ra = self.assertLimited(r, self.POLICY)
            self.assertEqual(ra, 1, r)
            refused += 1
        # other routes, and the other plugin, are not limited by it
        self.assertEqual(self.d.get("/t/up_one/get/x").status, 200)
        self.assertNotIn("ratelimit", self.d.get("/t/up_one/get/x").headers)
        r = self.d.get("/t/up_two/ok", headers={"X-Api-Key": "other-key"})
        self.assertEqual(r.status, 200, r)
        m1 = scrape(self.d)
        self.assertEqual(
            metric(m1, "bulkhead_rate_limited_total", policy="okburst") -
            metric(m0, "bulkhead_rate_limited_total", policy="okburst"),
            refused)
        # refill: after Retry-After one token is back -- one, not the burst
        time.sleep(1.1)
        r = self.d.get("/t/up_one/ok")
        self.assertEqual(r.status, 200, "no refill after Retry-After: %r" % r)
        self.assertEqual(self.ratelimit(r)[1], 0, r)
        self.assertLimited(self.d.get("/t/up_one/ok"), self.POLICY)
        # and more with time
        time.sleep(2.1)
        for left in (1, 0):
            r = self.d.get("/t/up_one/ok")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.ratelimit(r)[1], left, r)

    def test_api_key_buckets_are_separate(self):
        policy = '"perkey";q=1;w=60'
        for key in ("key-a", "key-b"):
            with self.subTest(key=key):
                for left in (1, 0):
                    r = self.d.get("/t/up_two/ok", headers={"X-Api-Key": key})
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.headers.get("ratelimit-policy"),
                                     policy)
                    self.assertEqual(self.ratelimit(r)[1], left, r)
                r = self.d.get("/t/up_two/ok", headers={"X-Api-Key": key})
                ra = self.assertLimited(r, policy)
                # a token per minute: about a minute to wait
                self.assertTrue(55 <= ra <= 60, r)
        r = self.d.get("/t/up_two/ok", headers={"X-Api-Key": "key-c"})
        self.assertEqual(r.status, 200, r)
        # the key never appears in answers or metrics
        text = self.d.admin("/metrics").body.decode()
        self.assertNotIn("key-a", text)
        self.assertNotIn("key-c", r.body.decode() + str(r.headers))


class UpstreamLimitTest(_RateCase):
    """[upstream.up_two] rate_limit: the gateway's own cap on calls to the
    provider. Refused calls never reach it and say when to come back."""

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url, two={"rate_limit": "upcalls", "retries": 0},
            extra={"rate_limit.upcalls": {"quota": 1, "window_s": 60,
                                          "burst": 2}})

    def test_upstream_local_limit(self):
        for i in range(2):
            r = self.d.get("/t/up_two/get/u%d" % i)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim2.stats()["total"], 2)
        for i in range(3):
            t0 = time.monotonic()
            r = self.d.get("/t/up_two/get/u-more%d" % i)
            doc = self.assertProblem(r, 503, "up_two.upstream_unavailable")
            self.assertIs(doc["extensions"]["retryable"], True, r)
            ra = int(r.headers["retry-after"])
            self.assertTrue(55 <= ra <= 60, r)
            self.assertEqual(doc["extensions"].get("retryAfterSeconds"), ra)
            self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.sim2.stats()["total"], 2,
                         "a call over the upstream's limit went out")
        m = scrape(self.d)
        self.assertEqual(metric(m, "bulkhead_upstream_calls_total",
                                upstream="up_two", outcome="rate_limited"), 3)
        # the proxy route of the same upstream shares the limit
        r = self.d.get("/t/up_two/proxy/p")
        self.assertProblem(r, 503, "up_two.upstream_unavailable")
        self.assertEqual(self.sim2.stats()["total"], 2)
        # up_one has no such limit
        for i in range(5):
            self.assertEqual(self.d.get("/t/up_one/get/x%d" % i).status, 200)
        self.assertEqual(self.sim1.stats()["total"], 5)


if __name__ == "__main__":
    harness.main()
