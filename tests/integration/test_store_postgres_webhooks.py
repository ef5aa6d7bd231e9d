"""The webhooks plugin's store on the shared PostgreSQL ([store] backend =
postgres, the SDK's store_connect(), schema bh_webhooks): two daemons, one
private PostgreSQL (pg_server.py), a real receiver (the simulator).

- a burst of events accepted across both daemons, one of them killed with
  SIGKILL mid-burst: every accepted event is delivered; no attempt is sent
  twice except the few the killed daemon had in flight (at least once),
  and those, leased to the dead daemon, are sent by the survivor after
  their lease expired;
- an endpoint created on A is listed on B, a delivery's state change made
  by B's dispatcher is read on A (one shared store);
- PostgreSQL stopped: /v1/webhooks/* answers 503 webhooks.unavailable, the
  core is untouched; restarted: the API works again and what was accepted
  before is delivered, without restarting bulkhead."""

import collections
import os
import shutil
import sys
import threading
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402
from pg_server import PgServer, wait_for  # noqa: E402
from test_webhooks_stream import SSE, doc  # noqa: E402

LEASE_MS = 4000
IN_FLIGHT = 4


def config(tmp, **keys):
    keys.setdefault("lease_ms", LEASE_MS)
    keys.setdefault("delivery_timeout_ms", 1500)
    keys.setdefault("max_in_flight", IN_FLIGHT)
    keys.setdefault("max_in_flight_per_endpoint", IN_FLIGHT)
    # each instance's own file, which must stay unused on postgres
    cfg = W.config(database=tempfile.mktemp(suffix=".db", dir=tmp), **keys)
    cfg["store"] = {"backend": "postgres", "url": "@env:TEST_STORE_URL",
                    "pool": "1"}
    return cfg


class WebhooksTwoInstancesTest(unittest.TestCase):
    def setUp(self):
        self.pg = PgServer()
        self.sim = W.start_sim()
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-whpg-")
        self.env = {"TEST_STORE_URL": self.pg.url}
        self.daemons = []

    def tearDown(self):
        try:
            for d in self.daemons:
                d.kill()
        finally:
            self.sim.stop()
            self.pg.destroy()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self):
        d = Daemon(config(self.tmp), env=self.env)
        self.daemons.append(d)
        return d

    def test_burst_across_two_with_one_killed(self):
        self.sim.set_behavior(path="/hooks/pg", delay_ms=120)
        a, b = self.daemon(), self.daemon()
        api_a, api_b = W.Api(a), W.Api(b)
        ep = api_a.create(self.sim.url + "/hooks/pg", ["pg.t"])
        # one shared store: B sees A's endpoint
        self.assertEqual(api_b.endpoint(ep["id"])["id"], ep["id"])
        accepted, lock = [], threading.Lock()
        stop = threading.Event()

        def post(api, k):
            for i in range(30):
                if stop.is_set() and k == 0:
                    return
                try:
                    r = api.event("pg.t", {"from": k, "i": i})
                except OSError:
                    return  # A is gone
                if r.status == 202:
                    with lock:
                        accepted.append(r.json()["id"])
        ts = [threading.Thread(target=post, args=(api, k), daemon=True)
              for k, api in enumerate((api_a, api_b))]
        for t in ts:
            t.start()
        self.assertTrue(wait_for(lambda: len(self.sim.requests(
            "/hooks/pg")) >= 6 and len(accepted) >= 20, 20), a.diag(20))
        leased = self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.deliveries WHERE state = "
            "'pending' AND lease_until > 0")
        a.kill()  # SIGKILL: master and worker, deliveries in flight
        killed_at = time.monotonic()
        stop.set()
        for t in ts:
            t.join(30)
        self.assertGreaterEqual(len(accepted), 30, "B's events were refused")

        def missing():
            return set(accepted) - set(W.ids_at(self.sim, "/hooks/pg"))
        self.assertTrue(wait_for(lambda: not missing(), LEASE_MS / 1000.0 +
                                 30), "lost %d of %d%s" % (
            len(missing()), len(accepted), b.diag(20)))
        self.assertTrue(wait_for(lambda: self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.deliveries WHERE state <> "
            "'succeeded'") == "0", 15), b.diag(20))
        # every attempt once: only what A had in flight may come twice
        seen = collections.Counter(W.ids_at(self.sim, "/hooks/pg"))
        twice = [i for i, n in seen.items() if n > 1]
        self.assertLessEqual(len(twice), IN_FLIGHT, (twice, leased))
        self.assertTrue(all(n <= 2 for n in seen.values()), seen)
        # the dead daemon's leased work went out from B after the lease
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.deliveries WHERE "
            "lease_until > 0"), "0")
        # an event A committed but was killed before answering is stored
        # (and delivered) though its client never heard 202: at most one
        # per posting thread
        stored = int(self.pg.psql("SELECT count(*) FROM bh_webhooks.events"))
        self.assertGreaterEqual(stored, len(accepted))
        self.assertLessEqual(stored, len(accepted) + len(ts))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.deliveries WHERE state <> "
            "'succeeded'"), "0")
        print("burst: %d accepted, %d resent after the kill, leased at kill "
              "%s, all delivered %.1fs after it" % (
                  len(accepted), len(twice), leased,
                  time.monotonic() - killed_at))
        recs = self.sim.requests("/hooks/pg")
        self.assertTrue(all(W.verify(ep["secret"], r) for r in recs))
        # B's dispatcher's changes are A's store's too: the stream table
        self.assertGreaterEqual(int(self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.delivery_changes WHERE "
            "change = 'succeeded'")), len(accepted))

    def test_stream_shows_changes_made_on_the_other_instance(self):
        a, b = self.daemon(), self.daemon()
        ep = W.Api(a).create(self.sim.url + "/hooks/sse", ["s.t"])
        s = SSE(a.port(), query="?endpoint=" + ep["id"])
        try:
            self.assertEqual(s.status, 200)
            W.Api(b).event_id("s.t", {})  # accepted on B, sent by A or B
            got = s.deliveries(lambda out: out and
                               doc(out[-1])["change"] == "succeeded", 15)
            self.assertEqual([doc(e)["change"] for e in got],
                             ["queued", "attempting", "succeeded"])
            ids = [int(e["id"]) for e in got]
            self.assertEqual(ids, sorted(ids))
        finally:
            s.close()

    def test_same_key_on_both_at_once(self):
        """One idempotency key posted to A and B at the same moment: both
        answer 202 with the one event (the later insert waits on the
        unique index, then replays), never a 500."""
        a, b = self.daemon(), self.daemon()
        apis = (W.Api(a), W.Api(b))
        W.Api(a).create(self.sim.url + "/hooks/k", ["k.t"])
        rounds, bad = 24, []
        for n in range(rounds):
            gate = threading.Barrier(2)
            got = [None, None]

            def post(i):
                gate.wait()
                got[i] = apis[i].event("k.t", {"n": n}, key="both-%d" % n)
            ts = [threading.Thread(target=post, args=(i,)) for i in (0, 1)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10)
            st = [r.status for r in got]
            if st != [202, 202]:
                bad.append((n, st, [r.json().get("code") for r in got]))
                continue
            ids = {r.json()["id"] for r in got}
            self.assertEqual(len(ids), 1, (n, ids))
        self.assertEqual(bad, [], a.diag(10) + b.diag(10))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM bh_webhooks.events WHERE "
            "owner_idempotency_key LIKE 'both-%'"), str(rounds))

    def test_postgres_down_then_back(self):
        self.sim.set_behavior(path="/hooks/dn", delay_ms=0)
        d = self.daemon()
        api = W.Api(d)
        ep = api.create(self.sim.url + "/hooks/dn", ["dn.t"])
        first = api.event_id("dn.t", {"n": 1})
        self.assertTrue(wait_for(lambda: first in W.ids_at(
            self.sim, "/hooks/dn"), 10), d.diag(20))
        self.assertTrue(wait_for(lambda: self.store(d) == {
            "backend": "postgres", "status": "ok"}, 10), self.store(d))
        self.pg.stop()
        r = api.event("dn.t", {"n": 2})
        self.assertEqual(r.status, 503, "%r%s" % (r, d.diag(10)))
        self.assertEqual(r.code, "webhooks.unavailable")
        self.assertEqual(api.call("GET", "/endpoints/" + ep["id"]).code,
                         "webhooks.unavailable")
        self.assertEqual(d.admin("/healthz").status, 200)
        self.assertTrue(wait_for(lambda: self.store(d)["status"] ==
                                 "unavailable", 15), self.store(d))
        self.assertEqual(d.admin("/readyz").json()["stores"]["webhooks"][
            "backend"], "postgres")
        self.pg.start()
        self.assertTrue(wait_for(lambda: api.event(
            "dn.t", {"n": 3}).status == 202, 15), d.diag(20))
        self.assertTrue(wait_for(lambda: len(W.ids_at(
            self.sim, "/hooks/dn")) >= 2, 15), d.diag(20))
        self.assertEqual(api.endpoint(ep["id"])["id"], ep["id"])
        self.assertTrue(wait_for(lambda: self.store(d)["status"] == "ok",
                                 15), self.store(d))

    @staticmethod
    def store(d):
        return d.admin("/admin/status").json()["stores"].get("webhooks")


if __name__ == "__main__":
    unittest.main()
