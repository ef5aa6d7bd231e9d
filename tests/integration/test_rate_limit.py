"""Rate limits: token buckets per route policy ([rate_limit.NAME] quota,
window_s, burst, key), keyed by client address or VERIFIED API key (an
unverified key header counts against the caller's address, and a key
lookup is paid for by the address first, so floods of invalid keys are
limited and make no buckets). A burst passes,
then 429 rate_limit.exceeded with Retry-After equal to retryAfterSeconds,
and the IETF draft's fields on every answer of a limited route
(RateLimit-Policy: "name";q=Q;w=W and RateLimit: "name";r=R;t=T); tokens
refill at quota per window. An upstream's own local limit refuses calls
before they reach it. A limited route never affects the other plugin."""

import http.client
import os
import re
import secrets
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer, login  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import (TwoSimsCase, metric, scrape, start_sim,  # noqa
                          up_config)

RL_FIELD = re.compile(
    r'^"([a-z0-9_]+)";r=(\d+);t=(\d+)(?:;pk=:[A-Za-z0-9+/]+=*:)?$')
PK = re.compile(r';pk=:[A-Za-z0-9+/]+=*:$')


def nopk(v):
    """A RateLimit(-Policy) field without its partition key."""
    return PK.sub("", v) if v is not None else None


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
        self.assertEqual(nopk(r.headers.get("ratelimit-policy")), policy, r)
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
            self.assertEqual(nopk(r.headers.get("ratelimit-policy")), self.POLICY,
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
        r = self.d.get("/t/up_two/get/x")
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

    def test_unverified_api_keys_count_against_the_address(self):
        # /t/up_two/ok authenticates nobody: whatever X-Api-Key holds, the
        # caller is its address -- a new value per request buys nothing
        policy = '"perkey";q=1;w=60'
        m0 = scrape(self.d)
        statuses = []
        for i in range(10):
            key = "random-%s" % secrets.token_hex(8)
            r = self.d.get("/t/up_two/ok", headers={"X-Api-Key": key})
            statuses.append(r.status)
            self.assertEqual(nopk(r.headers.get("ratelimit-policy")), policy, r)
            if r.status == 429:
                ra = self.assertLimited(r, policy)
                self.assertTrue(55 <= ra <= 60, r)
            self.assertNotIn(key, r.body.decode() + str(r.headers))
        self.assertEqual(statuses, [200, 200] + [429] * 8)
        m1 = scrape(self.d)
        self.assertEqual(
            metric(m1, "bulkhead_rate_limited_total", policy="perkey") -
            metric(m0, "bulkhead_rate_limited_total", policy="perkey"), 8)
        self.assertNotIn("random-", self.d.admin("/metrics").body.decode())


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


KEY_HEADER = "X-Gw-Key"  # [auth] api_key_header: the limiter follows it


class ApiKeyLimitTest(unittest.TestCase):
    """GET /t/whoami/limited (auth required) under [rate_limit.keyed]: a
    token per minute, burst 3, key = api_key. A valid key has its own
    bucket; an invalid one is charged to the caller's address before the
    store lookup (401 while the address has tokens, then 429 without a
    lookup); other callers count against their address. Each test speaks
    from its own loopback address (127.0.0.N) so their buckets are apart."""

    POLICY = '"keyed";q=1;w=60'

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cfg = auth_config(
                cls.sim.url, auth={"api_key_header": KEY_HEADER},
                extra={"rate_limit.keyed": {"quota": 1, "window_s": 60,
                                            "burst": 3, "key": "api_key"}})
            cfg["plugin.whoami"]["limited_policy"] = "keyed"
            cls.d = Daemon(cfg)
        except BaseException:
            cls.sim.stop()
            raise
        cls.alice = bearer(login(cls.d, "alice").json()["accessToken"])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def get(self, source, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.d.api_port,
                                       timeout=10,
                                       source_address=(source, 0))
        return self.d.request("GET", "/t/whoami/limited", headers=headers,
                              conn=c)

    def new_key(self):
        r = self.d.post("/v1/api-keys", body={"name": "rl"},
                        headers=self.alice)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def assertProblem(self, r, status, code):
        self.assertEqual((r.status, r.code), (status, code), r)

    def test_random_invalid_keys_are_limited_by_address(self):
        m0 = scrape(self.d)
        got = [self.get("127.0.0.2", {KEY_HEADER: "bhk_" +
                                      secrets.token_hex(16)})
               for _ in range(10)]
        for r in got[:3]:
            self.assertProblem(r, 401, "auth.unauthenticated")
        for r in got[3:]:
            self.assertProblem(r, 429, "rate_limit.exceeded")
            self.assertEqual(nopk(r.headers.get("ratelimit-policy")), self.POLICY)
            ra = int(r.headers["retry-after"])
            self.assertTrue(1 <= ra <= 60, r)
        m1 = scrape(self.d)
        self.assertEqual(
            metric(m1, "bulkhead_rate_limited_total", policy="keyed") -
            metric(m0, "bulkhead_rate_limited_total", policy="keyed"), 7)

    def test_concurrent_invalid_keys_are_limited_too(self):
        # the address pays before the lookup starts: 20 at once, 3 looked up
        out, lock = [], threading.Lock()

        def one():
            r = self.get("127.0.0.5", {KEY_HEADER: "bhk_" +
                                       secrets.token_hex(16)})
            with lock:
                out.append((r.status, r.code))

        ts = [threading.Thread(target=one) for _ in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(sorted(out).count((401, "auth.unauthenticated")), 3,
                         out)
        self.assertEqual(sorted(out).count((429, "rate_limit.exceeded")), 17,
                         out)

    def test_a_valid_key_has_its_own_quota(self):
        a, b = self.new_key(), self.new_key()
        # key a: its burst of 3, then refused (a minute to wait)
        for left in (2, 1, 0):
            r = self.get("127.0.0.3", {KEY_HEADER: a["key"]})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["keyId"], a["id"])
            self.assertEqual(nopk(r.headers.get("ratelimit")),
                             '"keyed";r=%d;t=%d' % (left, 60 * (3 - left)), r)
        r = self.get("127.0.0.3", {KEY_HEADER: a["key"]})
        self.assertProblem(r, 429, "rate_limit.exceeded")
        self.assertTrue(55 <= int(r.headers["retry-after"]) <= 60, r)
        # a flood of random keys from elsewhere neither refills a's bucket
        # (no bucket per random value, nothing evicted) nor touches b's
        for _ in range(30):
            self.get("127.0.0.4", {KEY_HEADER: "bhk_" +
                                   secrets.token_hex(16)})
        r = self.get("127.0.0.3", {KEY_HEADER: a["key"]})
        self.assertProblem(r, 429, "rate_limit.exceeded")
        for left in (2, 1, 0):
            r = self.get("127.0.0.3", {KEY_HEADER: b["key"]})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.ratelimit_left(r), left, r)
        # the valid keys' lookups were given back to 127.0.0.3's address
        # bucket: a bearer caller there (counted by address) has all 3
        for left in (2, 1, 0):
            r = self.get("127.0.0.3", self.alice)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["kind"], "bearer")
            self.assertEqual(self.ratelimit_left(r), left, r)
        self.assertProblem(self.get("127.0.0.3", self.alice), 429,
                           "rate_limit.exceeded")
        # and the raw header of the default name is no key here
        r = self.get("127.0.0.6", {"X-API-Key": a["key"]})
        self.assertProblem(r, 401, "auth.unauthenticated")

    def ratelimit_left(self, r):
        m = RL_FIELD.match(r.headers.get("ratelimit", ""))
        self.assertIsNotNone(m, r)
        return int(m.group(2))


if __name__ == "__main__":
    harness.main()
