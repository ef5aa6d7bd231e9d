"""Blast radius of the webhooks compartment.

- A dead receiver (it accepts the connection and never answers) does not
  slow a healthy one: the healthy endpoint gets every event at once while
  the dead one holds at most its concurrency cap of requests; the overall
  cap bounds all endpoints together.
- The webhooks store made unavailable (its directory replaced by a plain
  file: works for root too, where a read-only mode would not) answers
  503 webhooks.unavailable on the webhooks API, /admin/status reports the
  plugin unhealthy, while the auth middleware and the billing and ai
  routes answer as before; once the directory is back, the API and the
  deliveries recover by themselves, and nothing accepted before is lost.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402
from upstream_env import Background  # noqa: E402

PER_ENDPOINT = 2
TIMEOUT_MS = 1500


class DeadReceiverTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(max_in_flight_per_endpoint=PER_ENDPOINT,
                              max_in_flight=16, delivery_timeout_ms=TIMEOUT_MS,
                              lease_ms=TIMEOUT_MS + 2000)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(DeadReceiverTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_dead_receiver_does_not_delay_a_healthy_one(self):
        api = W.Api(self.d)
        self.sim.set_behavior(path="/hooks/dead", action="hang")
        dead = api.create(self.sim.url + "/hooks/dead", ["iso.t"])
        healthy = api.create(self.sim.url + "/hooks/ok", ["iso.t"])
        n = 20
        t0 = time.monotonic()
        ids = [api.event_id("iso.t", {"i": i}) for i in range(n)]
        self.assertTrue(W.wait_for(
            lambda: len(self.sim.requests("/hooks/ok")) >= n, timeout=5),
            "healthy receiver got %d of %d" %
            (len(self.sim.requests("/hooks/ok")), n))
        took = time.monotonic() - t0
        # the dead receiver's attempts take TIMEOUT_MS each, PER_ENDPOINT
        # at a time: waiting for them would take n / 2 * 1.5 s = 15 s
        self.assertLess(took, TIMEOUT_MS / 1000.0 * 0.9 + 0.5 * W.SLACK,
                        "the healthy endpoint waited for the dead one")
        self.assertEqual(sorted(W.ids_at(self.sim, "/hooks/ok")), sorted(ids))
        recs = self.sim.requests("/hooks/ok")
        self.assertTrue(all(W.verify(healthy["secret"], r) for r in recs))
        # the dead one holds at most its cap, whatever the backlog
        self.assertLessEqual(len(self.sim.requests("/hooks/dead")),
                             PER_ENDPOINT)
        self.assertGreaterEqual(len(self.sim.requests("/hooks/dead")), 1)
        # more events for the healthy endpoint still flow at once
        t1 = time.monotonic()
        more = api.event_id("iso.t", {"late": True})
        self.assertTrue(W.wait_for(lambda: more in W.ids_at(
            self.sim, "/hooks/ok"), timeout=3))
        self.assertLess(time.monotonic() - t1, 0.5 * W.SLACK)
        pending = api.all_deliveries("?endpoint=%s&status=pending" %
                                     dead["id"])
        self.assertEqual(len(pending), n + 1)
        self.assertLessEqual(sum(1 for x in pending if x["inFlight"]),
                             PER_ENDPOINT)


class OverallCapTest(harness.DaemonTestCase):
    """max_in_flight bounds all endpoints together."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(max_in_flight_per_endpoint=PER_ENDPOINT,
                              max_in_flight=3, delivery_timeout_ms=TIMEOUT_MS,
                              lease_ms=TIMEOUT_MS + 2000)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(OverallCapTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_overall_cap(self):
        api = W.Api(self.d)
        self.sim.set_behavior(path="/hooks/slow*", action="hang")
        for i in range(3):
            api.create(self.sim.url + "/hooks/slow%d" % i, ["cap.t"])
        for i in range(4):
            api.event_id("cap.t", {"i": i})  # 12 deliveries, 6 could go
        self.assertTrue(W.wait_for(lambda: len(self.sim.requests(
            "/hooks/slow*")) >= 3, timeout=3))
        time.sleep(TIMEOUT_MS / 1000.0 * 0.5)
        self.assertEqual(len(self.sim.requests("/hooks/slow*")), 3,
                         "more than max_in_flight at once")


class StoreUnavailableTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(others=("auth", "billing", "ai"))
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(StoreUnavailableTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def plugin_status(self):
        r = self.d.admin("/admin/status")
        return dict((p["name"], p) for p in r.json()["plugins"])["webhooks"]

    def test_store_unavailable_only_affects_webhooks(self):
        api = W.Api(self.d)
        ep = api.create(self.sim.url + "/hooks/store", ["st.t"])
        before = api.event_id("st.t", {"n": "before"})
        self.assertTrue(W.wait_for(lambda: before in W.ids_at(
            self.sim, "/hooks/store"), timeout=5))

        store = os.path.join(self.d.data_dir, "plugins", "webhooks")
        away = store + ".away"
        os.rename(store, away)
        with open(store, "w") as f:  # a file where the directory was
            f.write("not a directory\n")
        other = ["/v1/billing/status", "/v1/ai/status", "/v1/auth/status",
                 "/v1/webhooks/status"]
        bg = Background(self.d, other).start()
        try:
            for method, path, body in (
                    ("POST", "/events", {"type": "st.t", "data": {}}),
                    ("GET", "/endpoints", None),
                    ("GET", "/endpoints/" + ep["id"], None),
                    ("POST", "/endpoints", {"url": self.sim.url + "/h",
                                            "events": ["a"]}),
                    ("GET", "/deliveries", None)):
                r = api.call(method, path, body)
                doc = self.assertProblem(r, 503, "webhooks.unavailable", path)
                self.assertIs(doc["extensions"]["retryable"], True)
            # the core's auth middleware still judges every request
            r = api.call("GET", "/endpoints", auth=False)
            self.assertProblem(r, 401, "auth.unauthenticated")
            self.assertTrue(W.wait_for(
                lambda: self.plugin_status().get("healthy") is False,
                timeout=3), self.plugin_status())
            st = self.d.get("/v1/webhooks/status").json()
            self.assertEqual(st["status"], "unavailable")
            time.sleep(0.3)
        finally:
            bg.check(self, min_each=3)
            os.remove(store)
            os.rename(away, store)

        # back by itself: the API answers, and new and old work flows
        self.assertTrue(W.wait_for(lambda: api.event(
            "st.t", {"n": "after"}).status == 202, timeout=3))
        self.assertTrue(W.wait_for(lambda: len(set(W.ids_at(
            self.sim, "/hooks/store"))) >= 2, timeout=5))
        self.assertTrue(W.wait_for(
            lambda: self.plugin_status().get("healthy") is True, timeout=3))
        succeeded = api.all_deliveries("?endpoint=%s&status=succeeded" %
                                       ep["id"])
        self.assertGreaterEqual(len(succeeded), 2)


if __name__ == "__main__":
    harness.main()
