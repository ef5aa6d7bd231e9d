"""Webhook deliveries against the simulator as receiver: Standard Webhooks
signatures checked by an independent implementation (one secret, then two
during a rotation's grace period, then the new one alone), the compressed
retry schedule followed (and its jitter bounded), 500 then 200 giving
exactly one successful delivery, Retry-After honoured, 410 disabling the
endpoint, a dead letter after the last attempt replayed by a manual retry,
and the per-endpoint circuit breaker opening, half-opening and closing."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402

GRACE_MS = 1500


def arrivals(sim, path):
    """Arrival times (seconds) of the requests at path, oldest first."""
    return [rec["time_ms"] / 1000.0 for rec in sim.requests(path)]


class DeliveryTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(rotation_grace_ms=GRACE_MS)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(DeliveryTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(DeliveryTest, self).setUp()
        self.api = W.Api(self.d)
        self.sim.reset()

    def endpoint(self, path, events=("*",)):
        return self.api.create(self.sim.url + path, events)

    def wait_requests(self, path, n, timeout=5.0):
        ok = W.wait_for(lambda: len(self.sim.requests(path)) >= n,
                        timeout=timeout)
        self.assertTrue(ok, "receiver %s got %d requests, wanted %d" %
                        (path, len(self.sim.requests(path)), n))
        return self.sim.requests(path)

    def only_delivery(self, ep):
        got = self.api.all_deliveries("?endpoint=" + ep["id"])
        self.assertEqual(len(got), 1, got)
        return got[0]

    # -- the event's data, byte for byte -----------------------------------

    def test_data_reaches_the_receiver_as_sent(self):
        # 2^63 and more, 0.1, an exponent, a long fraction, spacing and an
        # escape: nothing re-encoded (jansson would refuse the first and
        # write 0.1 as 0.10000000000000001)
        self.endpoint("/hooks/exact", ["ledger.entry"])
        data = ('{"big": 9223372036854775808, "huge": '
                '123456789012345678901234567890, "f": 0.1, "e": 1.5e3, '
                '"long": 3.14159265358979323846264338327950288, '
                '"s": "caf\\u00e9", "nested": {"n": -9223372036854775809}}')
        raw = '{"type": "ledger.entry", "data": %s}' % data
        r = self.api.call("POST", "/events", raw,
                          headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r)
        rec = self.wait_requests("/hooks/exact", 1)[0]
        body = rec["body"]
        self.assertIn('"data":' + data, body.replace('"data": ', '"data":'))
        # and the whole body is still JSON a receiver can read
        self.assertEqual(json.loads(body)["data"]["big"], 2 ** 63)

    # -- signatures ---------------------------------------------------------

    def test_signature_verifies_with_an_independent_implementation(self):
        ep = self.endpoint("/hooks/sig", ["invoice.paid"])
        data = {"amount": 1250, "currency": "eur", "note": "caf\u00e9 \u2713",
                "nested": {"list": [1, "two", None, True]}}
        t0 = time.time()
        eid = self.api.event_id("invoice.paid", data)
        rec = self.wait_requests("/hooks/sig", 1)[0]
        h = W.headers_of(rec)
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(h.get("webhook-id"), eid)
        self.assertTrue(h.get("content-type", "").startswith(
            "application/json"), h)
        self.assertLessEqual(abs(int(h["webhook-timestamp"]) - t0), 5)
        self.assertEqual(len(h["webhook-signature"].split(" ")), 1)
        self.assertTrue(h["webhook-signature"].startswith("v1,"))
        self.assertTrue(W.verify(ep["secret"], rec), rec)
        body = json.loads(rec["body"])
        self.assertEqual(body["type"], "invoice.paid")
        self.assertEqual(body["data"], data)
        self.assertRegex(body["timestamp"], r"^\d{4}-\d\d-\d\dT")
        # a forgery fails: another secret, a changed body, a changed id
        other = self.endpoint("/hooks/sig-other", ["nothing"])
        self.assertFalse(W.verify(other["secret"], rec))
        tampered = dict(rec, body=rec["body"].replace("1250", "9999"))
        self.assertFalse(W.verify(ep["secret"], tampered))
        hdrs = [[k, v if k.lower() != "webhook-id" else "evt_x"]
                for k, v in rec["headers"]]
        self.assertFalse(W.verify(ep["secret"], dict(rec, headers=hdrs)))

    def test_rotation_signs_with_both_secrets_during_the_grace_period(self):
        ep = self.endpoint("/hooks/rot", ["r.t"])
        old = ep["secret"]
        r = self.api.call("POST", "/endpoints/%s/rotate-secret" % ep["id"])
        self.assertEqual(r.status, 200, r)
        new = r.json()["secret"]
        rotated = time.monotonic()
        self.api.event_id("r.t", {"n": 1})
        rec = self.wait_requests("/hooks/rot", 1)[0]
        sigs = W.headers_of(rec)["webhook-signature"].split(" ")
        self.assertEqual(len(sigs), 2, sigs)
        self.assertTrue(W.verify(old, rec), "old secret during the grace")
        self.assertTrue(W.verify(new, rec), "new secret during the grace")
        time.sleep(max(0.0, GRACE_MS / 1000.0 + 0.2 -
                       (time.monotonic() - rotated)))
        self.sim.clear_requests()
        self.api.event_id("r.t", {"n": 2})
        rec = self.wait_requests("/hooks/rot", 1)[0]
        sigs = W.headers_of(rec)["webhook-signature"].split(" ")
        self.assertEqual(len(sigs), 1, sigs)
        self.assertTrue(W.verify(new, rec))
        self.assertFalse(W.verify(old, rec), "old secret after the grace")
        self.assertNotIn("previousSecretExpiresAt", self.api.endpoint(ep["id"]))

    # -- retries ------------------------------------------------------------

    def test_retries_follow_the_schedule(self):
        self.sim.set_behavior(path="/hooks/sched", status=500, times=3,
                              then={"status": 200})
        ep = self.endpoint("/hooks/sched")
        self.api.event_id("s.t")
        recs = self.wait_requests("/hooks/sched", 4, timeout=6)
        t = [r["time_ms"] / 1000.0 for r in recs]
        for i, want in enumerate(W.SCHEDULE_MS[1:]):
            gap = t[i + 1] - t[i]
            self.assertGreaterEqual(gap, want / 1000.0 - 0.02,
                                    "attempt %d came early" % (i + 2))
            self.assertLess(gap, want / 1000.0 + 0.35 * W.SLACK,
                            "attempt %d came late" % (i + 2))
        self.assertEqual([r["status"] for r in recs], [500, 500, 500, 200])
        dl = self.api.wait_status(self.only_delivery(ep)["id"], "succeeded")
        self.assertIsNotNone(dl)
        doc = self.api.delivery(dl["id"])
        self.assertEqual(doc["attemptCount"], 4)
        self.assertEqual([a["statusCode"] for a in doc["attempts"]],
                         [500, 500, 500, 200])

    def test_500_then_200_is_exactly_one_successful_delivery(self):
        self.sim.set_behavior(path="/hooks/once", status=500, times=1,
                              then={"status": 200})
        ep = self.endpoint("/hooks/once")
        eid = self.api.event_id("o.t", {"x": 1})
        self.wait_requests("/hooks/once", 2)
        time.sleep(1.0)  # longer than the rest of the schedule
        recs = self.sim.requests("/hooks/once")
        self.assertEqual(len(recs), 2, recs)
        self.assertEqual([W.headers_of(r)["webhook-id"] for r in recs],
                         [eid, eid], "the same message id on the retry")
        self.assertEqual(W.ids_at(self.sim, "/hooks/once", ok_only=True),
                         [eid])
        doc = self.api.delivery(self.only_delivery(ep)["id"])
        self.assertEqual(doc["status"], "succeeded")
        self.assertEqual([a["statusCode"] for a in doc["attempts"]],
                         [500, 200])
        self.assertTrue(all(W.verify(ep["secret"], r) for r in recs))

    def test_retry_after_is_honoured(self):
        self.sim.set_behavior(path="/hooks/ra", status=503,
                              headers={"Retry-After": "2"}, times=1,
                              then={"status": 200})
        self.endpoint("/hooks/ra")
        self.api.event_id("ra.t")
        recs = self.wait_requests("/hooks/ra", 2, timeout=6)
        gap = (recs[1]["time_ms"] - recs[0]["time_ms"]) / 1000.0
        self.assertGreaterEqual(gap, 1.95, "Retry-After: 2 beats 300 ms")
        self.assertLess(gap, 2.0 + 0.5 * W.SLACK)

    def test_410_disables_the_endpoint(self):
        self.sim.set_behavior(path="/hooks/gone", status=410)
        ep = self.endpoint("/hooks/gone", ["g.t"])
        self.api.event_id("g.t")
        dl = self.api.wait_status(self.only_delivery(ep)["id"], "failed")
        self.assertIsNotNone(dl, "a 410 ends the delivery at once")
        self.assertEqual(dl["attemptCount"], 1)
        self.assertEqual(dl["lastStatusCode"], 410)
        self.assertEqual(dl["lastError"], "endpoint_gone")
        got = self.api.endpoint(ep["id"])
        self.assertIs(got["enabled"], False)
        self.assertEqual(got["disabledReason"], "gone")
        r = self.api.event("g.t")
        self.assertEqual(r.json()["deliveries"], 0, "no new deliveries")
        time.sleep(0.3)
        self.assertEqual(len(self.sim.requests("/hooks/gone")), 1)

    def test_dead_letter_then_manual_retry(self):
        self.sim.set_behavior(path="/hooks/dead", status=500)
        ep = self.endpoint("/hooks/dead", ["dl.t"])
        self.api.event_id("dl.t", {"k": 1})
        did = self.only_delivery(ep)["id"]
        dl = self.api.wait_status(did, "failed", timeout=6)
        self.assertIsNotNone(dl, "dead-lettered after the last attempt")
        self.assertEqual(dl["attemptCount"], len(W.SCHEDULE_MS))
        self.assertIsNotNone(dl["completedAt"])
        self.assertEqual(len(self.sim.requests("/hooks/dead")),
                         len(W.SCHEDULE_MS))
        self.assertIn(did, [x["id"] for x in self.api.all_deliveries(
            "?status=failed")])
        # the receiver is fixed; the dead letter is replayed on demand
        self.sim.clear()
        r = self.api.call("POST", "/deliveries/%s/retry" % did)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "pending")
        dl = self.api.wait_status(did, "succeeded")
        self.assertIsNotNone(dl)
        self.assertEqual(dl["attemptCount"], len(W.SCHEDULE_MS) + 1)
        self.assertEqual(len(W.ids_at(self.sim, "/hooks/dead", ok_only=True)),
                         1)
        # replaying a succeeded delivery sends it once more
        r = self.api.call("POST", "/deliveries/%s/retry" % did)
        self.assertEqual(r.status, 202, r)
        self.assertIsNotNone(self.api.wait_status(did, "succeeded"))
        self.assertTrue(W.wait_for(lambda: len(W.ids_at(
            self.sim, "/hooks/dead", ok_only=True)) == 2, timeout=5))


class JitterTest(harness.DaemonTestCase):
    """Waits are spread: base 400 ms, jitter 50% -> 200..600 ms."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(retry_schedule="0, 400ms",
                              retry_jitter_percent=50)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(JitterTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_jitter_stays_within_bounds(self):
        api = W.Api(self.d)
        n = 8
        paths = ["/hooks/j%d" % i for i in range(n)]
        for p in paths:
            self.sim.set_behavior(path=p, status=500, times=1,
                                  then={"status": 200})
            api.create(self.sim.url + p, ["j.%s" % p[-1]])
        for p in paths:
            api.event_id("j.%s" % p[-1])
        self.assertTrue(W.wait_for(lambda: all(
            len(self.sim.requests(p)) >= 2 for p in paths), timeout=5))
        gaps = []
        for p in paths:
            t = arrivals(self.sim, p)
            gaps.append(t[1] - t[0])
        for g in gaps:
            self.assertGreaterEqual(g, 0.2 - 0.02, gaps)
            self.assertLess(g, 0.6 + 0.3 * W.SLACK, gaps)
        self.assertGreater(max(gaps) - min(gaps), 0.02,
                           "no spread at all: %r" % gaps)


class BreakerTest(harness.DaemonTestCase):
    """3 consecutive failures open an endpoint's breaker for 1 s; then one
    trial at a time; a success closes it."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(breaker_failures=3, breaker_open_ms=1000,
                              retry_schedule="0, 100ms, 100ms, 100ms, "
                              "100ms, 100ms, 100ms, 100ms",
                              max_in_flight_per_endpoint=1)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(BreakerTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_breaker_opens_half_opens_and_closes(self):
        api = W.Api(self.d)
        self.sim.set_behavior(path="/hooks/brk", status=503)
        ep = api.create(self.sim.url + "/hooks/brk", ["b.t"])
        api.event_id("b.t", {"i": 1})
        self.assertTrue(W.wait_for(lambda: len(self.sim.requests(
            "/hooks/brk")) >= 3, timeout=3))
        self.assertTrue(W.wait_for(lambda: api.endpoint(ep["id"])["breaker"]
                                   ["state"] == "open", timeout=2))
        opened = time.monotonic()
        n_open = len(self.sim.requests("/hooks/brk"))
        self.assertEqual(n_open, 3)
        time.sleep(0.6)  # still open: the schedule (100 ms) must wait
        self.assertEqual(len(self.sim.requests("/hooks/brk")), 3,
                         "no attempt while the breaker is open")
        # half-open after 1 s: one trial, which fails and re-opens it
        self.assertTrue(W.wait_for(lambda: len(self.sim.requests(
            "/hooks/brk")) == 4, timeout=2))
        self.assertGreaterEqual(time.monotonic() - opened, 0.9)
        time.sleep(0.3)
        self.assertEqual(len(self.sim.requests("/hooks/brk")), 4)
        self.assertEqual(api.endpoint(ep["id"])["breaker"]["state"], "open")
        # the receiver recovers: the next trial closes the breaker
        self.sim.clear()
        dl = api.all_deliveries("?endpoint=" + ep["id"])[0]
        self.assertIsNotNone(api.wait_status(dl["id"], "succeeded",
                                             timeout=3))
        got = api.endpoint(ep["id"])
        self.assertEqual(got["breaker"]["state"], "closed", got)
        self.assertEqual(got["breaker"]["consecutiveFailures"], 0)
        self.assertEqual(api.delivery(dl["id"])["attemptCount"], 5)


if __name__ == "__main__":
    harness.main()
