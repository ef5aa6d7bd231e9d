"""The billing plugin's store on the shared PostgreSQL ([store] backend =
postgres, the SDK's store_connect(), schema bh_billing): two daemons, one
private PostgreSQL (pg_server.py).

- a provider event taken by A is a replay for B (200 duplicate, not
  applied twice), also when both get it at the same moment;
- the user -> customer map a checkout event recorded on A serves B;
- PostgreSQL stopped: events answer 503 billing.store_unavailable, the
  other plugins (ai's routes, the core) are untouched; restarted: events
  are taken again, without restarting bulkhead."""

import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from pg_server import PgServer, wait_for  # noqa: E402


def config(sim_url):
    return P.config(sim_url, extra={"store": {
        "backend": "postgres", "url": "@env:TEST_STORE_URL", "pool": "1"}})


class BillingTwoInstancesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.sim = P.start_sim()
        env = {"TEST_STORE_URL": cls.pg.url}
        cls.a = cls.b = None
        try:
            cls.a = Daemon(config(cls.sim.url), env=env)
            cls.b = Daemon(config(cls.sim.url), env=env)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for d in (cls.a, cls.b):
                if d:
                    d.stop()
        finally:
            cls.sim.stop()
            cls.pg.destroy()

    def portal_customer(self, d, user):
        r = d.post("/v1/billing/portal-session", headers=P.bearer(user))
        if r.status != 200:
            return r.code
        body = self.sim.requests("/v1/billing_portal/sessions")[-1]["body"]
        return dict(kv.split("=") for kv in body.split("&"))["customer"]

    def test_replay_refused_across_instances(self):
        body = P.checkout_event("user_pg1", "cus_pg1")
        r = P.post_event(self.a, body)
        self.assertEqual(r.status, 200, "%r%s" % (r, self.a.diag(10)))
        self.assertEqual(r.json(), {"received": True})
        r = P.post_event(self.b, body)
        self.assertEqual(r.status, 200, "%r%s" % (r, self.b.diag(10)))
        self.assertEqual(r.json(), {"received": True, "duplicate": True})
        # the map A recorded serves B
        self.assertEqual(self.portal_customer(self.b, "user_pg1"), "cus_pg1")
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM bh_billing.provider_events WHERE event_id "
            "= '%s'" % json.loads(body)["id"]), "1")

    def test_one_event_at_once_on_both_is_taken_once(self):
        body = json.dumps({"id": P.event_id(), "type": "invoice.paid",
                           "data": {"object": {"id": "in_pg"}}})
        out = []

        def post(d):
            out.append(P.post_event(d, body).json())
        ts = [threading.Thread(target=post, args=(d,))
              for d in (self.a, self.b, self.a, self.b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(out), 4, out)
        self.assertEqual(sum(1 for o in out if not o.get("duplicate")), 1,
                         out)


class BillingPostgresDownTest(unittest.TestCase):
    def test_down_then_back(self):
        with PgServer() as pg:
            sim = P.start_sim()
            d = None
            try:
                d = Daemon(config(sim.url), env={"TEST_STORE_URL": pg.url})
                r = P.post_event(d, P.checkout_event("user_dn", "cus_dn"))
                self.assertEqual(r.status, 200, r)
                pg.stop()
                r = P.post_event(d, P.checkout_event("user_dn2", "cus_dn2"))
                self.assertEqual(r.status, 503, "%r%s" % (r, d.diag(10)))
                self.assertEqual(r.code, "billing.store_unavailable")
                # the core and the other plugins are untouched
                self.assertEqual(d.admin("/healthz").status, 200)
                r = d.get("/v1/ai/nothing-here", headers=P.bearer("u"))
                self.assertNotEqual(r.code, "billing.store_unavailable")
                pg.start()
                body = P.checkout_event("user_dn3", "cus_dn3")
                self.assertTrue(wait_for(lambda: P.post_event(
                    d, body).status == 200, 10.0), d.diag(20))
            finally:
                if d:
                    d.stop()
                sim.stop()


if __name__ == "__main__":
    unittest.main()
