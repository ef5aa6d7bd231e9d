"""Billing POSTs carry an Idempotency-Key, which is what lets the core retry
them: every attempt of one call carries the same key (asserted on what the
simulated provider received), separate requests carry different keys, and
a client's own Idempotency-Key maps to a stable provider key scoped to the
user and the route. Only retryable outcomes are retried (503, 429 after
its Retry-After, a reset connection); a card error, a 500 and a timeout
are not. The subscription GET is retried without any key."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402

CHECKOUT = "/v1/checkout/sessions"
PORTAL = "/v1/billing_portal/sessions"
USER = "user_idem"


def keys(recs):
    return [dict((k.lower(), v) for k, v in r["headers"]).get(
        "idempotency-key") for r in recs]


class IdempotencyTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, upstream_billing={
            "retries": 2, "retry_base_ms": 20, "retry_cap_ms": 50,
            "retry_budget_min": 1000, "timeout_ms": 400})
        try:
            cls.d = Daemon(cls.CONFIG)
            P.seed_customer(cls.d, USER, "cus_idem")
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(IdempotencyTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(IdempotencyTest, self).setUp()
        self.sim.reset()

    def checkout(self, user=USER, headers=None):
        h = P.bearer(user)
        h.update(headers or {})
        return self.d.post("/v1/billing/checkout-session",
                           body={"priceId": "price_pro"}, headers=h)

    def portal(self, user=USER, headers=None):
        h = P.bearer(user)
        h.update(headers or {})
        return self.d.post("/v1/billing/portal-session", headers=h)

    def test_retries_carry_the_same_key(self):
        self.sim.set_behavior(path=CHECKOUT, status=503,
                              body={"error": {"type": "api_error"}}, times=2)
        r = self.checkout()
        self.assertEqual(r.status, 200, r)
        recs = self.sim.requests(CHECKOUT)
        self.assertEqual([q["status"] for q in recs], [503, 503, 200])
        ks = keys(recs)
        self.assertTrue(ks[0] and ks[0].startswith("bh_"), ks)
        self.assertEqual(len(set(ks)), 1, ks)
        self.assertEqual(len(set(q["body"] for q in recs)), 1)

    def test_429_is_retried_after_its_retry_after_with_the_same_key(self):
        self.sim.set_behavior(path=PORTAL, preset="stripe_rate_limit",
                              headers={"Retry-After": "1"}, times=1)
        t0 = time.monotonic()
        r = self.portal()
        self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(time.monotonic() - t0, 0.95)
        recs = self.sim.requests(PORTAL)
        self.assertEqual([q["status"] for q in recs], [429, 200])
        self.assertEqual(len(set(keys(recs))), 1, keys(recs))
        self.assertGreaterEqual(recs[1]["time_ms"] - recs[0]["time_ms"], 950)

    def test_a_reset_connection_is_retried_with_the_same_key(self):
        self.sim.set_behavior(path=CHECKOUT, action="reset", times=1)
        r = self.checkout()
        self.assertEqual(r.status, 200, r)
        recs = self.sim.requests(CHECKOUT)
        self.assertGreaterEqual(len(recs), 2)
        self.assertEqual(len(set(keys(recs))), 1, keys(recs))

    def test_exhausted_retries_answer_the_map_and_kept_the_key(self):
        self.sim.set_behavior(path=CHECKOUT, status=503,
                              body={"error": {"type": "api_error"}})
        r = self.checkout()
        doc = self.assertProblem(r, 503, "billing.payment_unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        recs = self.sim.requests(CHECKOUT)
        self.assertEqual(len(recs), 3)  # 1 + retries
        self.assertEqual(len(set(keys(recs))), 1)

    def test_outcomes_that_are_not_retried(self):
        for rule, code in (({"preset": "stripe_card_declined"},
                            "billing.card_declined"),
                           ({"preset": "stripe_500"},
                            "billing.payment_unavailable"),
                           ({"delay_ms": 2000}, "billing.payment_timeout")):
            with self.subTest(rule=rule):
                self.sim.reset()
                self.sim.set_behavior(path=CHECKOUT, **rule)
                self.assertEqual(self.checkout().code, code)
                self.assertEqual(self.sim.count(CHECKOUT), 1)

    def test_separate_requests_carry_separate_keys(self):
        for _ in range(3):
            self.assertEqual(self.checkout().status, 200)
        self.assertEqual(self.portal().status, 200)
        ks = keys(self.sim.requests(CHECKOUT)) + keys(self.sim.requests(PORTAL))
        self.assertEqual(len(ks), 4)
        self.assertEqual(len(set(ks)), 4, ks)

    def test_a_client_key_maps_to_a_stable_scoped_provider_key(self):
        mine = {"Idempotency-Key": "client-retry-42"}
        self.checkout(headers=mine)
        self.checkout(headers=mine)  # the client retried its request
        self.checkout(user="user_other", headers=mine)
        self.checkout(headers={"Idempotency-Key": "client-retry-43"})
        self.portal(headers=mine)
        ks = keys(self.sim.requests(CHECKOUT))
        self.assertEqual(ks[0], ks[1])
        self.assertEqual(len({ks[0], ks[2], ks[3]}), 3, ks)
        self.assertNotIn(keys(self.sim.requests(PORTAL))[0], ks)
        for k in ks:  # the client's text is never passed on as such
            self.assertNotIn("client-retry", k)

    def test_subscription_get_is_retried_without_a_key(self):
        self.sim.set_behavior(path="/v1/subscriptions", status=503,
                              body={"error": {"type": "api_error"}}, times=1)
        r = self.d.get("/v1/billing/subscription", headers=P.bearer(USER))
        self.assertEqual(r.status, 200, r)
        recs = self.sim.requests("/v1/subscriptions")
        self.assertEqual(len(recs), 2)
        self.assertEqual(keys(recs), [None, None])


if __name__ == "__main__":
    harness.main()
