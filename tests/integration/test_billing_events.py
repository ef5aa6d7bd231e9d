"""POST /v1/billing/provider-events: the payment provider's signed
callbacks. Stripe's scheme: Stripe-Signature "t=<ts>,v1=<hex HMAC-SHA256
of '<ts>.<body>'>". A good event is taken once and recorded (a completed
checkout gives the user a billing account; a deleted customer takes it
away). Refused: no or malformed header, a wrong secret, a tampered body, a
timestamp outside the tolerance (400 with distinct codes), a body that is
no event (400). An event id seen before (a redelivery, or the same bytes
again) is not applied twice and answers 200 {"received": true,
"duplicate": true}, since the provider retries anything else for days;
also across worker processes, which share the plugin's SQLite file."""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402

TOLERANCE = 300


class EventsTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, billing={
            "webhook_tolerance_s": TOLERANCE})
        try:
            cls.d = Daemon(cls.CONFIG)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(EventsTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(EventsTest, self).setUp()
        self.sim.reset()

    def portal_customer(self, user):
        """The customer the portal call sends to the provider, or the
        Problem code when there is none."""
        r = self.d.post("/v1/billing/portal-session", headers=P.bearer(user))
        if r.status != 200:
            return r.code
        body = self.sim.requests("/v1/billing_portal/sessions")[-1]["body"]
        return dict(kv.split("=") for kv in body.split("&"))["customer"]

    def assertRefused(self, r, status, code, what=""):
        doc = self.assertProblem(r, status, code, what)
        self.assertIs(doc["extensions"]["retryable"], False, r)

    def test_a_completed_checkout_records_the_customer(self):
        self.assertEqual(self.portal_customer("user_ev1"),
                         "billing.no_billing_account")
        r = P.post_event(self.d, P.checkout_event("user_ev1", "cus_ev1"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"received": True})
        self.assertEqual(self.portal_customer("user_ev1"), "cus_ev1")

    def test_other_event_types_are_taken_and_ignored(self):
        body = json.dumps({"id": P.event_id(), "type": "invoice.paid",
                           "data": {"object": {"id": "in_1"}}})
        r = P.post_event(self.d, body)
        self.assertEqual(r.status, 200, r)

    def test_customer_deleted_removes_the_billing_account(self):
        P.seed_customer(self.d, "user_del", "cus_del")
        self.assertEqual(self.portal_customer("user_del"), "cus_del")
        body = json.dumps({"id": P.event_id(), "type": "customer.deleted",
                           "data": {"object": {"id": "cus_del",
                                               "object": "customer"}}})
        self.assertEqual(P.post_event(self.d, body).status, 200)
        self.assertEqual(self.portal_customer("user_del"),
                         "billing.no_billing_account")

    def test_redeliveries_answer_200_duplicate(self):
        body = P.checkout_event("user_rep", "cus_rep")
        sig = P.sign_event(body)
        r = P.post_event(self.d, body, signature=sig)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"received": True})
        # the very same bytes again, and the same event id freshly signed
        # (a redelivery whose first 200 was lost): 2xx, not applied again
        for s in (sig, P.sign_event(body, t=time.time() + 1)):
            r = P.post_event(self.d, body, signature=s)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"received": True, "duplicate": True})
        ev = self.d.wait_event(lambda e: e.get("plugin") == "billing" and
                               "delivered again" in e.get("msg", ""))
        self.assertIsNotNone(ev)
        self.assertEqual(self.portal_customer("user_rep"), "cus_rep")
        # a redelivery still needs a good signature
        r = P.post_event(self.d, body, signature=sig.replace("v1=", "v1=0"))
        self.assertEqual(r.status, 400, r)

    def test_signature_failures(self):
        body = P.checkout_event("user_forged", "cus_forged")
        good = P.sign_event(body)
        t = good.split(",")[0]
        mac = good.split("v1=")[1]
        cases = {
            "missing header": False,
            "empty header": "",
            "garbage": "not a signature",
            "no timestamp": "v1=" + mac,
            "no v1": t,
            "bad timestamp": "t=12x4,v1=" + mac,
            "short mac": t + ",v1=" + mac[:-2],
            "non-hex mac": t + ",v1=" + "z" * 64,
            "only v0": t + ",v0=" + mac,
            "wrong secret": P.sign_event(body, secret="whsec_someone_else"),
            "other timestamp": "t=%d,v1=%s" % (int(t[2:]) + 1, mac),
        }
        for what, sig in cases.items():
            with self.subTest(what):
                r = P.post_event(self.d, body, signature=sig)
                self.assertRefused(r, 400, "billing.signature_invalid", what)
        # a body changed after signing: the customer is not recorded
        tampered = body.replace("cus_forged", "cus_attacker")
        r = P.post_event(self.d, tampered, signature=good)
        self.assertRefused(r, 400, "billing.signature_invalid")
        self.assertEqual(self.portal_customer("user_forged"),
                         "billing.no_billing_account")
        # one good v1 among others (the provider rolling its secret)
        rolled = "%s,v1=%s,v1=%s" % (t, "0" * 64, mac)
        self.assertEqual(P.post_event(self.d, body, signature=rolled).status,
                         200)
        logs = "\n".join(self.d.lines)
        self.assertNotIn(P.WEBHOOK_SECRET, logs)

    def test_timestamp_tolerance(self):
        now = time.time()
        for what, t in (("too old", now - TOLERANCE - 30),
                        ("from the future", now + TOLERANCE + 30)):
            with self.subTest(what):
                body = P.checkout_event("user_time", "cus_time")
                r = P.post_event(self.d, body,
                                 signature=P.sign_event(body, t=t))
                self.assertRefused(r, 400, "billing.signature_expired", what)
        body = P.checkout_event("user_time", "cus_time")
        r = P.post_event(self.d, body,
                         signature=P.sign_event(body, t=now - TOLERANCE + 30))
        self.assertEqual(r.status, 200, r)
        # an expired event does not burn its id: the signed redelivery works
        old = P.checkout_event("user_time2", "cus_time2")
        r = P.post_event(self.d, old, signature=P.sign_event(
            old, t=now - 10 * TOLERANCE))
        self.assertRefused(r, 400, "billing.signature_expired")
        self.assertEqual(P.post_event(self.d, old).status, 200)

    def test_signed_bodies_that_are_not_events(self):
        for body in ("not json", "[]", json.dumps({"type": "x"}),
                     json.dumps({"id": "evt_1"}),
                     json.dumps({"id": "evt_1", "type": "x", "data": {}}),
                     json.dumps({"id": "", "type": "x",
                                 "data": {"object": {}}})):
            with self.subTest(body=body):
                r = P.post_event(self.d, body)
                self.assertRefused(r, 400, "billing.invalid_event")

    def test_the_route_needs_no_session_but_the_signature(self):
        body = P.checkout_event("user_s", "cus_s")
        r = P.post_event(self.d, body, headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, r)  # the bytes are what is signed
        self.assertEqual(self.sim.stats()["total"], 0)


class EventsAcrossWorkersTest(harness.DaemonTestCase):
    """Two worker processes: one event posted concurrently is taken once."""

    CONFIG = P.config(server={"workers": 2})

    def test_one_event_is_taken_once_by_all_workers(self):
        body = P.checkout_event("user_many", "cus_many")
        sig = P.sign_event(body)
        results, errors = [], []
        start = threading.Event()

        def post():
            start.wait()
            r = P.post_event(self.d, body, signature=sig)
            results.append(r.status == 200 and r.json().get("duplicate"))
            if r.status != 200:
                errors.append(r)
        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        start.set()
        for t in threads:
            t.join(10)
        # all 2xx; exactly one took it, the others saw a duplicate
        self.assertEqual(errors, [], self.d.diag())
        self.assertEqual(sorted(results, key=bool), [None] + [True] * 7,
                         "%r%s" % (results, self.d.diag()))


class EventsWithoutSecretTest(harness.DaemonTestCase):
    CONFIG = P.config(billing={"webhook_secret": None})

    def test_events_are_refused_when_no_secret_is_configured(self):
        body = P.checkout_event("user_ns", "cus_ns")
        r = P.post_event(self.d, body)
        doc = self.assertProblem(r, 503, "billing.misconfigured")
        self.assertIs(doc["extensions"]["retryable"], False)
        ev = self.d.wait_event(lambda e: e.get("plugin") == "billing" and
                               e.get("level") == "error" and
                               "webhook_secret" in e.get("msg", ""))
        self.assertIsNotNone(ev, self.d.diag())


if __name__ == "__main__":
    harness.main()
