"""billing's error map, row by row: for each way the payment provider can
fail (5xx, 503 with Retry-After, a reset or closed connection, a timeout,
our key refused, 429 with and without Retry-After, card errors, validation
errors, an unknown customer or price, a reused idempotency key, a 404, a
success without a session URL), the simulator plays the provider and the
client's answer is asserted on status, code, retryable and Retry-After,
along with the number of calls the provider received. Also: breaker open
and the upstream's local rate limit answer at once without calling it, the
misconfiguration is logged loudly without the key, local validation never
reaches the provider, and successes have the documented shape with the
Stripe-shaped request behind them (form body, Bearer key)."""

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import set_breaker  # noqa: E402

PAYING = "user_paying"
CUSTOMER = "cus_paying_1"
RA_DEFAULT = 5  # rate_limited_retry_after_s in this config

PATHS = {"portal": "/v1/billing_portal/sessions",
         "checkout": "/v1/checkout/sessions",
         "subscription": "/v1/subscriptions"}

# name -> (simulator rule, route, status, code, retryable, Retry-After)
ROWS = {
    "provider_500": ({"preset": "stripe_500"}, "portal", 503,
                     "billing.payment_unavailable", True, None),
    "provider_502": ({"status": 502, "body": "upstream proxy error"},
                     "subscription", 503, "billing.payment_unavailable", True,
                     None),
    "provider_503_retry_after": (
        {"status": 503, "headers": {"Retry-After": "7"},
         "body": {"error": {"type": "api_error"}}},
        "portal", 503, "billing.payment_unavailable", True, 7),
    "connection_closed": ({"action": "close"}, "portal", 503,
                          "billing.payment_unavailable", True, None),
    "connection_reset": ({"action": "reset"}, "checkout", 503,
                         "billing.payment_unavailable", True, None),
    "timeout": ({"delay_ms": 3000}, "portal", 504, "billing.payment_timeout",
                True, None),
    "our_key_refused_401": ({"preset": "stripe_auth"}, "portal", 503,
                            "billing.misconfigured", False, None),
    "our_key_lacks_rights_403": (
        {"status": 403, "body": {"error": {
            "type": "invalid_request_error",
            "message": "The provided key does not have access"}}},
        "subscription", 503, "billing.misconfigured", False, None),
    "rate_limited_429": ({"preset": "stripe_rate_limit"}, "portal", 503,
                         "billing.payment_unavailable", True, 2),
    "rate_limited_429_without_retry_after": (
        {"status": 429, "body": {"error": {
            "type": "invalid_request_error", "code": "rate_limit"}}},
        "checkout", 503, "billing.payment_unavailable", True, RA_DEFAULT),
    "card_declined": ({"preset": "stripe_card_declined"}, "checkout", 402,
                      "billing.card_declined", False, None),
    "card_expired": (
        {"status": 402, "body": {"error": {"type": "card_error",
                                           "code": "expired_card"}}},
        "checkout", 402, "billing.card_expired", False, None),
    "payment_failed": (
        {"status": 402, "body": {"error": {"type": "card_error",
                                           "code": "insufficient_funds"}}},
        "checkout", 402, "billing.payment_failed", False, None),
    "customer_gone_at_provider": ({"preset": "stripe_no_customer"}, "portal",
                                  400, "billing.no_billing_account", False,
                                  None),
    "unknown_price": (
        {"status": 400, "body": {"error": {
            "type": "invalid_request_error", "code": "resource_missing",
            "param": "line_items[0][price]"}}},
        "checkout", 400, "billing.invalid_price", False, None),
    "idempotency_key_reused": (
        {"status": 400, "body": {"error": {
            "type": "idempotency_error",
            "message": "Keys for idempotent requests can only be used with "
                       "the same parameters they were first used with."}}},
        "checkout", 409, "billing.idempotency_key_reused", False, None),
    "invalid_request": (
        {"status": 400, "body": {"error": {
            "type": "invalid_request_error",
            "code": "parameter_invalid_integer",
            "param": "line_items[0][quantity]"}}},
        "checkout", 400, "billing.invalid_request", False, None),
    "provider_404": ({"status": 404, "body": {"error": {
        "type": "invalid_request_error"}}}, "subscription", 502,
        "billing.provider_rejected", False, None),
    "session_without_url": ({"status": 200, "body": {"id": "cs_x"}},
                            "checkout", 502, "billing.provider_bad_response",
                            True, None),
    "subscription_list_unreadable": ({"status": 200, "body": "not json"},
                                     "subscription", 502,
                                     "billing.provider_bad_response", True,
                                     None),
}


class BillingTestCase(harness.DaemonTestCase):
    """A daemon with billing (and ai) in front of one simulator, a customer
    on file for PAYING. Subclasses may set BILLING / UPSTREAM / EXTRA."""

    BILLING = {"rate_limited_retry_after_s": RA_DEFAULT}
    UPSTREAM = {"timeout_ms": 400}
    EXTRA = None

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, billing=cls.BILLING,
                              upstream_billing=cls.UPSTREAM, extra=cls.EXTRA)
        try:
            cls.d = Daemon(cls.CONFIG)
            P.seed_customer(cls.d, PAYING, CUSTOMER)
        except BaseException:
            cls.sim.stop()
            if cls.d:
                cls.d.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(BillingTestCase, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(BillingTestCase, self).setUp()
        self.sim.reset()

    def call(self, route, user=PAYING, **kw):
        h = P.bearer(user)
        h.update(kw.pop("headers", {}))
        if route == "portal":
            return self.d.post("/v1/billing/portal-session", headers=h, **kw)
        if route == "checkout":
            body = kw.pop("body", {"priceId": "price_pro_monthly"})
            return self.d.post("/v1/billing/checkout-session", body=body,
                               headers=h, **kw)
        return self.d.get("/v1/billing/subscription", headers=h, **kw)

    def assertAnswer(self, r, status, code, retryable, retry_after,
                     what=""):
        doc = self.assertProblem(r, status, code, what)
        self.assertIs(doc["extensions"]["retryable"], retryable, r)
        if retry_after is None:
            self.assertNotIn("retry-after", r.headers, r)
            self.assertNotIn("retryAfterSeconds", doc["extensions"], r)
        else:
            self.assertEqual(r.headers.get("retry-after"), str(retry_after), r)
            self.assertEqual(doc["extensions"].get("retryAfterSeconds"),
                             retry_after, r)
        return doc


def _row_test(name):
    rule, route, status, code, retryable, ra = ROWS[name]

    def test(self):
        self.sim.set_behavior(path=PATHS[route], **rule)
        r = self.call(route)
        doc = self.assertAnswer(r, status, code, retryable, ra, name)
        # the provider's own words never reach the client
        self.assertNotIn("(sim)", doc.get("detail", ""), r)
        self.assertNotIn("Invalid API Key", r.body.decode(), r)
        seen = self.sim.requests(PATHS[route])
        if rule.get("action") in ("close", "reset"):
            # libcurl re-sends on its own a request whose reused keep-alive
            # connection died unanswered: safe only because every attempt
            # carries the same Idempotency-Key
            self.assertIn(len(seen), (1, 2), name)
            keys = set(dict((k.lower(), v) for k, v in q["headers"])
                       .get("idempotency-key") for q in seen)
            self.assertEqual(len(keys), 1, seen)
        else:
            self.assertEqual(len(seen), 1, name)
    test.__name__ = "test_row_" + name
    return test


class BillingErrorMapTest(BillingTestCase):

    def test_success_shapes_and_what_the_provider_received(self):
        r = self.call("checkout", body={"priceId": "price_pro_monthly",
                                        "quantity": 2})
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(set(doc), {"id", "url"}, doc)
        self.assertTrue(doc["url"].startswith("https://"), doc)
        rec = self.sim.requests(PATHS["checkout"])[-1]
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertEqual(hdrs["authorization"], "Bearer " + P.SECRET_KEY)
        self.assertEqual(hdrs["content-type"],
                         "application/x-www-form-urlencoded")
        self.assertTrue(hdrs["idempotency-key"].startswith("bh_"), hdrs)
        form = dict(urllib.parse.parse_qsl(rec["body"]))
        self.assertEqual(form["line_items[0][price]"], "price_pro_monthly")
        self.assertEqual(form["line_items[0][quantity]"], "2")
        self.assertEqual(form["mode"], "subscription")
        self.assertEqual(form["customer"], CUSTOMER)  # known customer reused
        self.assertEqual(form["success_url"],
                         "https://app.example.invalid/billing/done")

        r = self.call("checkout", user="user_new")
        self.assertEqual(r.status, 200, r)
        form = dict(urllib.parse.parse_qsl(
            self.sim.requests(PATHS["checkout"])[-1]["body"]))
        self.assertNotIn("customer", form)
        self.assertEqual(form["client_reference_id"], "user_new")

        r = self.call("portal")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json()), {"url"}, r)
        form = dict(urllib.parse.parse_qsl(
            self.sim.requests(PATHS["portal"])[-1]["body"]))
        self.assertEqual(form, {"customer": CUSTOMER,
                                "return_url":
                                "https://app.example.invalid/account"})

        r = self.call("subscription")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "active",
                                    "plan": {"priceId": "price_sim_pro",
                                             "name": "Pro"},
                                    "currentPeriodEnd": 4102444800,
                                    "cancelAtPeriodEnd": False})
        rec = self.sim.requests(PATHS["subscription"])[-1]
        self.assertEqual(dict(urllib.parse.parse_qsl(rec["query"])),
                         {"customer": CUSTOMER, "status": "all",
                          "limit": "1"})
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertNotIn("idempotency-key", hdrs)  # a GET needs none

        self.sim.set_behavior(path=PATHS["subscription"],
                              body={"object": "list", "data": []})
        r = self.call("subscription")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "none", r)
        self.assertIsNone(r.json()["plan"], r)

    def test_breaker_open_answers_at_once(self):
        self.assertEqual(set_breaker(self.d, "billing", "forced_open").status,
                         200)
        try:
            for route in ("portal", "checkout", "subscription"):
                t0 = time.monotonic()
                r = self.call(route)
                dt = time.monotonic() - t0
                doc = self.assertProblem(r, 503, "billing.payment_unavailable",
                                         route)
                self.assertIs(doc["extensions"]["retryable"], True)
                ra = int(r.headers["retry-after"])
                self.assertGreaterEqual(ra, 1, r)
                self.assertEqual(doc["extensions"]["retryAfterSeconds"], ra)
                self.assertLess(dt, 1.0 * P.SLOW, r)
            self.assertEqual(self.sim.stats()["total"], 0)
        finally:
            set_breaker(self.d, "billing", "closed")
        # the local answer still comes first while the breaker is open
        self.assertEqual(self.call("portal", user="nobody").code,
                         "billing.no_billing_account")

    def test_misconfiguration_is_logged_loudly_without_the_key(self):
        self.sim.set_behavior(path=PATHS["portal"], preset="stripe_auth")
        r = self.call("portal")
        self.assertProblem(r, 503, "billing.misconfigured")
        ev = self.d.wait_event(lambda e: e.get("event") == "plugin_log" and
                               e.get("plugin") == "billing" and
                               "MISCONFIGURED" in e.get("msg", ""))
        self.assertIsNotNone(ev, self.d.diag())
        self.assertEqual(ev["level"], "error", ev)
        self.assertIn(r.headers["x-request-id"], ev["msg"])
        self.assertIn("api_key_invalid", ev["msg"])  # the provider's code
        logs = "\n".join(self.d.lines)
        self.assertNotIn(P.SECRET_KEY, logs)
        self.assertNotIn(P.WEBHOOK_SECRET, logs)

    def test_local_validation_never_reaches_the_provider(self):
        cases = [
            ({}, "request.invalid_body", "priceId"),
            ({"priceId": ""}, "request.invalid_body", "priceId"),
            ({"priceId": "price_x", "quantity": 0}, "request.invalid_body",
             "quantity"),
            ({"priceId": "price_x", "extra": 1}, "request.invalid_body",
             "extra"),
            ({"priceId": "price x&customer=cus_evil"},
             "billing.invalid_price", "priceId"),
        ]
        for body, code, field in cases:
            with self.subTest(body=body):
                r = self.call("checkout", body=body)
                doc = self.assertProblem(r, 400, code)
                self.assertIs(doc["extensions"]["retryable"], False)
                self.assertIn(field, [e["field"] for e in
                                      doc["extensions"].get("errors", [])], r)
        r = self.call("portal", body={"x": 1})
        self.assertProblem(r, 400, "request.invalid_body")
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_unauthenticated_routes(self):
        for method, path in (("POST", "/v1/billing/checkout-session"),
                             ("POST", "/v1/billing/portal-session"),
                             ("GET", "/v1/billing/subscription")):
            r = self.d.request(method, path, body={"priceId": "price_x"}
                               if method == "POST" else None)
            self.assertProblem(r, 401, "auth.unauthenticated", path)
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_codes_are_in_the_catalogue(self):
        r = self.d.admin("/admin/errors")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        entries = doc.get("codes", doc) if isinstance(doc, dict) else doc
        codes = set(e["code"] for e in entries)
        want = set(row[3] for row in ROWS.values()) | {
            "billing.no_billing_account", "billing.store_unavailable",
            "billing.signature_invalid", "billing.signature_expired",
            "billing.invalid_event"}
        self.assertFalse(want - codes, want - codes)


for _name in ROWS:
    setattr(BillingErrorMapTest, "test_row_" + _name, _row_test(_name))


class BillingLocalRateLimitTest(BillingTestCase):
    """[upstream.billing] rate_limit: the provider's quota kept locally."""

    UPSTREAM = {"rate_limit": "stripe_quota"}
    EXTRA = {"rate_limit.stripe_quota": {"quota": 1, "window_s": 60}}

    def test_local_limit_answers_payment_unavailable_with_retry_after(self):
        self.assertEqual(self.call("portal").status, 200)
        r = self.call("portal")
        doc = self.assertProblem(r, 503, "billing.payment_unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        ra = int(r.headers["retry-after"])
        self.assertTrue(1 <= ra <= 60, r)
        self.assertEqual(doc["extensions"]["retryAfterSeconds"], ra)
        self.assertEqual(self.sim.count(PATHS["portal"]), 1)


if __name__ == "__main__":
    harness.main()
