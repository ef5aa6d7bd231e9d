"""The seed's bug, as a test: an account that simply has no billing record
(an admin-upgraded account that never went through checkout) must never be
told the payment provider is down.

- no customer on file -> 400 billing.no_billing_account (not retryable, the
  detail says to contact support), decided locally: the provider is never
  called, and the answer stays the same while the provider is down or its
  breaker is open;
- a customer on file and the provider down -> 503
  billing.payment_unavailable (retryable): the other truth;
- the plugin's own database unusable -> 503 billing.store_unavailable:
  neither of the two, and the provider is not blamed (nor called); the
  store recovers by itself once the file can be opened again.
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import set_breaker, wait_for  # noqa: E402

ADMIN_UPGRADED = "user_admin_upgraded"  # a plan set by hand: no customer
PAYING = "user_paying"


class NoBillingAccountTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url)
        try:
            cls.d = Daemon(cls.CONFIG)
            P.seed_customer(cls.d, PAYING, "cus_paying")
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(NoBillingAccountTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(NoBillingAccountTest, self).setUp()
        self.sim.reset()

    def portal(self, user):
        return self.d.post("/v1/billing/portal-session", headers=P.bearer(user))

    def assertNoAccount(self, r):
        doc = self.assertProblem(r, 400, "billing.no_billing_account")
        self.assertIs(doc["extensions"]["retryable"], False)
        self.assertIn("Contact support", doc["detail"])
        self.assertNotIn("retry-after", r.headers)

    def assertUnavailable(self, r):
        doc = self.assertProblem(r, 503, "billing.payment_unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        return doc

    def test_no_billing_account_while_the_provider_is_healthy(self):
        self.assertNoAccount(self.portal(ADMIN_UPGRADED))
        self.assertNoAccount(self.d.get("/v1/billing/subscription",
                                        headers=P.bearer(ADMIN_UPGRADED)))
        self.assertEqual(self.sim.stats()["total"], 0)
        # the same moment, an account with a record gets its portal
        r = self.portal(PAYING)
        self.assertEqual(r.status, 200, r)

    def test_provider_down_is_a_different_answer(self):
        self.sim.set_behavior(path="*", preset="stripe_500")
        self.assertUnavailable(self.portal(PAYING))
        self.assertNoAccount(self.portal(ADMIN_UPGRADED))
        self.assertEqual(self.sim.count("/v1/billing_portal/sessions"), 1)

    def test_no_billing_account_while_the_breaker_is_open(self):
        set_breaker(self.d, "billing", "forced_open")
        try:
            doc = self.assertUnavailable(self.portal(PAYING))
            self.assertGreaterEqual(doc["extensions"]["retryAfterSeconds"], 1)
            self.assertNoAccount(self.portal(ADMIN_UPGRADED))
        finally:
            set_breaker(self.d, "billing", "closed")
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_checkout_is_how_an_account_gets_one(self):
        user = "user_first_checkout"
        self.assertNoAccount(self.portal(user))
        r = self.d.post("/v1/billing/checkout-session",
                        body={"priceId": "price_pro"}, headers=P.bearer(user))
        self.assertEqual(r.status, 200, r)  # no record needed to start one
        P.seed_customer(self.d, user, "cus_first")  # the provider reports it
        r = self.portal(user)
        self.assertEqual(r.status, 200, r)
        form = self.sim.requests("/v1/billing_portal/sessions")[-1]["body"]
        self.assertIn("customer=cus_first", form)


class StoreUnavailableTest(harness.DaemonTestCase):
    """The database path is blocked by a plain file, then freed."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.tmp = tempfile.mkdtemp(prefix="billing-store-")
        cls.blocker = os.path.join(cls.tmp, "db")
        with open(cls.blocker, "w") as f:
            f.write("a file where the database directory should be\n")
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, billing={
            "database": os.path.join(cls.blocker, "billing.db")})
        try:
            cls.d = Daemon(cls.CONFIG)
        except BaseException:
            cls.sim.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(StoreUnavailableTest, cls).tearDownClass()
        finally:
            cls.sim.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def plugin_status(self):
        doc = self.d.admin("/admin/status").json()
        return dict((p["name"], p) for p in doc["plugins"])["billing"]

    def test_store_down_is_neither_no_account_nor_provider_down(self):
        for method, path, body in (
                ("POST", "/v1/billing/portal-session", None),
                ("POST", "/v1/billing/checkout-session",
                 {"priceId": "price_pro"}),
                ("GET", "/v1/billing/subscription", None)):
            r = self.d.request(method, path, body=body,
                               headers=P.bearer(PAYING))
            doc = self.assertProblem(r, 503, "billing.store_unavailable", path)
            self.assertIs(doc["extensions"]["retryable"], True)
        r = P.post_event(self.d, P.checkout_event(PAYING, "cus_x"))
        self.assertProblem(r, 503, "billing.store_unavailable")
        self.assertEqual(self.sim.stats()["total"], 0)  # provider not blamed
        self.assertTrue(wait_for(
            lambda: self.plugin_status().get("healthy") is False),
            self.plugin_status())
        st = self.d.get("/v1/billing/status").json()
        self.assertEqual(st["store"], "unavailable", st)

        # the path becomes usable: the next request reopens the store
        os.remove(self.blocker)
        os.mkdir(self.blocker)
        r = P.post_event(self.d, P.checkout_event(PAYING, "cus_back"))
        self.assertEqual(r.status, 200, r)
        r = self.d.post("/v1/billing/portal-session", headers=P.bearer(PAYING))
        self.assertEqual(r.status, 200, r)
        self.assertTrue(wait_for(
            lambda: self.plugin_status().get("healthy") is True),
            self.plugin_status())


if __name__ == "__main__":
    harness.main()
