"""At least once, never twice at once.

- kill -9 of the whole daemon (master and workers) in the middle of a
  burst of events, with deliveries in flight; a new daemon on the same
  database delivers every event that was accepted (202) at least once:
  none is lost, counted at the receiver.
- Two daemons, two workers each, sharing one database file: every event
  is delivered exactly once, although four dispatchers compete for the
  deliveries (a lease per claim; a duplicate would mean two processes
  sent the same attempt).
"""

import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402

LEASE_MS = 5000
TIMEOUT_MS = 1500


class CrashTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.dir = tempfile.mkdtemp(prefix="bulkhead-wh-")
        cls.db = os.path.join(cls.dir, "webhooks.db")

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.sim.reset()

    def daemon(self, workers=1):
        return Daemon(W.config(server={"workers": workers}, database=self.db,
                               delivery_timeout_ms=TIMEOUT_MS,
                               lease_ms=LEASE_MS, max_in_flight=8,
                               max_in_flight_per_endpoint=4))

    def test_kill_9_during_a_burst_loses_nothing(self):
        self.sim.set_behavior(path="/hooks/crash", delay_ms=150)
        d = self.daemon()
        accepted = []
        try:
            api = W.Api(d)
            ep = api.create(self.sim.url + "/hooks/crash", ["c.t"])
            stop = threading.Event()

            def burst():
                i = 0
                while not stop.is_set() and i < 400:
                    try:
                        r = api.event("c.t", {"i": i})
                    except OSError:
                        return  # the daemon is gone
                    if r.status == 202:
                        accepted.append(r.json()["id"])
                    i += 1

            t = threading.Thread(target=burst, daemon=True)
            t.start()
            # kill once deliveries are under way and events still arrive
            self.assertTrue(W.wait_for(lambda: len(accepted) >= 40 and len(
                self.sim.requests("/hooks/crash")) >= 4, timeout=10))
            d.kill()  # SIGKILL to the process group: master and worker
            stop.set()
            t.join(10)
        finally:
            d.kill()
        got_before = set(W.ids_at(self.sim, "/hooks/crash"))
        self.assertLess(len(got_before), len(accepted),
                        "the kill came too late to test anything")

        self.sim.clear_requests()
        d2 = self.daemon()
        restarted = time.monotonic()
        try:
            api = W.Api(d2)
            # the dead worker's leases still hold what it had in flight,
            # but not the endpoint's capacity: the rest flows at once
            self.assertTrue(W.wait_for(lambda: self.sim.requests(
                "/hooks/crash"), timeout=LEASE_MS / 1000.0))
            first = self.sim.requests("/hooks/crash")[0]
            self.assertLess(time.monotonic() - restarted,
                            min(2.0 * harness.SLACK / 1.5, 4.0))
            self.assertNotIn(W.headers_of(first)["webhook-id"], got_before)
            def missing():
                return set(accepted) - got_before - set(
                    W.ids_at(self.sim, "/hooks/crash"))
            self.assertTrue(W.wait_for(lambda: not missing(),
                                       timeout=LEASE_MS / 1000.0 + 15),
                            "lost events: %d of %d" % (len(missing()),
                                                       len(accepted)))
            self.assertTrue(W.wait_for(lambda: not api.all_deliveries(
                "?endpoint=%s&status=pending" % ep["id"]), timeout=10))
            ok = api.all_deliveries("?endpoint=%s&status=succeeded" %
                                    ep["id"])
            self.assertGreaterEqual(len(ok), len(accepted))
            self.assertEqual(api.all_deliveries("?status=failed"), [])
            recs = self.sim.requests("/hooks/crash")
            self.assertTrue(all(W.verify(ep["secret"], r) for r in recs))
        finally:
            d2.stop()

    def test_two_daemons_sharing_the_file_deliver_each_event_once(self):
        self.sim.set_behavior(path="/hooks/shared", delay_ms=30)
        a = self.daemon(workers=2)
        b = self.daemon(workers=2)
        try:
            apis = [W.Api(a), W.Api(b)]
            ep = apis[0].create(self.sim.url + "/hooks/shared", ["sh.t"])
            ids = []
            lock = threading.Lock()

            bad = []

            def post(api, k):
                for i in range(30):
                    r = api.event("sh.t", {"from": k, "i": i})
                    with lock:
                        if r.status == 202:
                            ids.append(r.json()["id"])
                        else:
                            bad.append(r)

            threads = [threading.Thread(target=post, args=(api, k))
                       for k, api in enumerate(apis)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            self.assertEqual(bad, [])
            self.assertEqual(len(ids), 60)
            self.assertTrue(W.wait_for(lambda: len(self.sim.requests(
                "/hooks/shared")) >= len(ids), timeout=15))
            self.assertTrue(W.wait_for(lambda: not apis[1].all_deliveries(
                "?endpoint=%s&status=pending" % ep["id"]), timeout=10))
            time.sleep(0.5)
            got = W.ids_at(self.sim, "/hooks/shared")
            dup = set(x for x in got if got.count(x) > 1)
            self.assertEqual(dup, set(), "delivered twice: %r" % dup)
            self.assertEqual(sorted(got), sorted(ids))
        finally:
            a.stop()
            b.stop()


if __name__ == "__main__":
    harness.main()
