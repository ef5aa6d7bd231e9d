"""Live delivery status over server-sent events
(GET /v1/webhooks/deliveries/stream), read by an SSE parser written here
from the WHATWG event-stream format (no browser in the test run):

- a receiver that fails twice then succeeds: queued, attempting, retrying,
  ..., succeeded arrive in that order with strictly increasing ids, and the
  data is the delivery's JSON (no attempts list);
- a disconnect mid-way and a reconnect with Last-Event-ID: nothing lost,
  nothing repeated (compared with a fresh stream from the start);
- two daemons sharing one database file: the stream of one sees changes
  the other made;
- reload while streaming: the stream ends cleanly with a final comment and
  the reconnect resumes exactly on the new generation;
- a reader that does not read is cut once its unsent bytes pass the bound;
- per-principal and total limits: 429 webhooks.too_many_streams with
  Retry-After; streams are scoped to the caller's owner; heartbeats."""

import http.client
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402

STREAM_KEYS = dict(stream_poll_ms=50, stream_heartbeat_ms=300,
                   stream_retry_ms=1000)


class SSE(object):
    """One event stream, parsed on a thread: .events is a queue of dicts
    {"id", "event", "data"} and ("comment", text) tuples; None at the end
    (with .clean telling whether the chunked body ended properly)."""

    def __init__(self, port, sub="user_wh", last_id=None, query="",
                 timeout=10.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", port,
                                               timeout=timeout)
        h = W.auth_headers(sub)
        h["Accept"] = "text/event-stream"
        if last_id is not None:
            h["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", "/v1/webhooks/deliveries/stream" + query,
                          headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.events = queue.Queue()
        self.clean = None
        self.retry = None
        if self.status == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            self.body = self.resp.read()

    def _run(self):
        ev = {}
        data = []
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        ev["data"] = "\n".join(data)
                        self.events.put(ev)
                    ev, data = {}, []
                    continue
                if line.startswith(":"):
                    self.events.put(("comment", line[1:].strip()))
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)
                elif field in ("id", "event"):
                    ev[field] = value
            self.clean = True
        except Exception:  # cut, or closed by the test
            self.clean = False
        self.events.put(None)

    def next(self, timeout=5.0, comments=False):
        """The next event (a dict), skipping comments unless asked."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no event within %.1f s" % timeout)
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(e, tuple) and not comments:
                continue
            return e

    def deliveries(self, until, timeout=8.0):
        """Events read until until(list) is true."""
        out = []
        deadline = time.monotonic() + timeout
        while not until(out):
            e = self.next(max(0.05, deadline - time.monotonic()))
            if e is None:
                raise AssertionError("stream ended after %r" % out)
            out.append(e)
        return out

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()


def doc(e):
    return json.loads(e["data"])


class StreamTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(**STREAM_KEYS)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(StreamTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(StreamTest, self).setUp()
        self.api = W.Api(self.d)
        self.sim.reset()
        self.streams = []

    def tearDown(self):
        for s in self.streams:
            s.close()
        # the daemon notices a closed stream at its next write
        time.sleep(0.4)
        super(StreamTest, self).tearDown()

    def open(self, **kw):
        s = SSE(self.d.port(), **kw)
        self.streams.append(s)
        return s

    def test_fail_then_succeed_arrives_in_order(self):
        self.sim.set_behavior(path="/hooks/flaky", status=500, times=2)
        ep = self.api.create(self.sim.url + "/hooks/flaky", ["s.t"])
        s = self.open(query="?endpoint=" + ep["id"])
        self.assertEqual(s.status, 200)
        self.assertEqual(s.resp.getheader("Content-Type"),
                         "text/event-stream; charset=utf-8")
        self.assertEqual(s.resp.getheader("Cache-Control"), "no-store")
        self.api.event_id("s.t", {"n": 1})
        got = s.deliveries(lambda out: out and
                           doc(out[-1])["change"] == "succeeded")
        self.assertEqual(s.retry, 1000)
        changes = [doc(e)["change"] for e in got]
        self.assertEqual(changes, ["queued", "attempting", "retrying",
                                   "attempting", "retrying", "attempting",
                                   "succeeded"])
        ids = [int(e["id"]) for e in got]
        self.assertEqual(ids, sorted(set(ids)), "ids not increasing")
        self.assertTrue(all(e["event"] == "delivery" for e in got))
        last = doc(got[-1])
        self.assertEqual(last["status"], "succeeded")
        self.assertEqual(last["attemptCount"], 3)
        self.assertEqual(last["lastStatusCode"], 200)
        self.assertNotIn("attempts", last)
        retrying = doc(got[2])
        self.assertEqual(retrying["status"], "pending")
        self.assertEqual(retrying["lastStatusCode"], 500)
        self.assertIsNotNone(retrying["nextAttemptAt"])
        self.assertTrue(doc(got[1])["inFlight"])
        # the same delivery GET /deliveries/{id} shows, minus the attempts
        full = self.api.delivery(last["id"])
        del full["attempts"]
        for k in ("id", "eventId", "eventType", "endpointId", "status",
                  "attemptCount", "createdAt", "completedAt"):
            self.assertEqual(full[k], last[k], k)

    def test_resume_with_last_event_id_loses_and_repeats_nothing(self):
        ep = self.api.create(self.sim.url + "/hooks/resume", ["r.t"])
        q = "?endpoint=" + ep["id"]
        s = self.open(query=q)
        for i in range(3):
            self.api.event_id("r.t", {"i": i})
        first = s.deliveries(lambda out: len(out) >= 4)
        s.close()
        for i in range(3, 6):
            self.api.event_id("r.t", {"i": i})
        # 6 deliveries, 3 changes each (queued, attempting, succeeded)
        self.assertTrue(W.wait_for(lambda: len(self.api.all_deliveries(
            q + "&status=succeeded")) == 6, timeout=8))
        s2 = self.open(query=q, last_id=first[-1]["id"])
        rest = s2.deliveries(lambda out: len(first) + len(out) >= 18)
        fresh = self.open(query=q + "&lastEventId=0")
        every = fresh.deliveries(lambda out: len(out) >= 18)
        resumed = [e["id"] for e in first + rest]
        self.assertEqual(resumed, [e["id"] for e in every])
        self.assertEqual(len(set(resumed)), 18)
        # and nothing more is pending for this stream
        s2.close()
        fresh.close()

    def test_heartbeat_and_owner_scope(self):
        ep = self.api.create(self.sim.url + "/hooks/scope", ["o.t"])
        other = self.open(sub="user_other")
        mine = self.open(query="?endpoint=" + ep["id"])
        self.api.event_id("o.t", {})
        got = mine.deliveries(lambda out: len(out) >= 3)
        self.assertEqual(doc(got[-1])["change"], "succeeded")
        # the other owner sees nothing but heartbeats
        seen = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                seen.append(other.events.get(timeout=0.1))
            except queue.Empty:
                pass
        self.assertIn(("comment", "heartbeat"), seen)
        self.assertFalse([e for e in seen if isinstance(e, dict)], seen)

    def test_per_principal_and_total_limits(self):
        d = Daemon(W.config(stream_max_per_principal=2, stream_max_total=3,
                            **STREAM_KEYS))
        try:
            self.limits(d)
        finally:
            for s in self.streams:
                s.close()
            d.stop()

    def limits(self, d):
        self.open = lambda **kw: self.streams.append(
            SSE(d.port(), **kw)) or self.streams[-1]
        a1, a2 = self.open(), self.open()
        self.assertEqual((a1.status, a2.status), (200, 200))
        a3 = self.open()
        r = harness.Response(a3.status, "", a3.resp.getheaders(), a3.body)
        self.assertProblem(r, 429, "webhooks.too_many_streams")
        self.assertEqual(r.headers.get("retry-after"), "1")
        b1 = self.open(sub="user_b")
        self.assertEqual(b1.status, 200)
        b2 = self.open(sub="user_b")  # per principal fine, 4th in total
        self.assertEqual(b2.status, 429)
        a1.close()
        # the daemon notices at its next write (heartbeat)

        def reopened():
            s = self.open(sub="user_b")
            return s.status == 200
        self.assertTrue(W.wait_for(reopened, timeout=3, step=0.2))
        t0 = time.monotonic()
        d.stop()  # open streams end at once: the drain waits for none
        self.assertLess(time.monotonic() - t0, 5.0)

    def test_another_owners_endpoint_is_not_found(self):
        ep = self.api.create(self.sim.url + "/hooks/theirs", ["x.t"])
        s = self.open(sub="user_other", query="?endpoint=" + ep["id"])
        r = harness.Response(s.status, "", s.resp.getheaders(), s.body)
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")
        s = self.open(query="?endpoint=ep_000000000000000000000000")
        self.assertEqual(s.status, 404)
        s = self.open(query="?status=bogus")
        self.assertEqual(s.status, 400)

    def test_bad_last_event_id(self):
        s = self.open(last_id="x1")
        r = harness.Response(s.status, "", s.resp.getheaders(), s.body)
        self.assertProblem(r, 400, "webhooks.invalid_query")

    def test_slow_reader_is_disconnected(self):
        d = Daemon(W.config(stream_max_buffer_bytes=4096, **STREAM_KEYS))
        try:
            api = W.Api(d)
            eps = [api.create(self.sim.url + "/hooks/slow%d" % i, ["w.t"])
                   for i in range(3)]
            self.assertEqual(len(eps), 3)
            c = socket.socket()
            # a tiny window and segments: the kernels on both sides hold
            # little, so what the reader leaves unread piles up in the
            # daemon, where the bound applies
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            c.connect(("127.0.0.1", d.port()))
            tok = W.auth_headers()["Authorization"]
            c.sendall(("GET /v1/webhooks/deliveries/stream HTTP/1.1\r\n"
                       "Host: t\r\nAuthorization: %s\r\n"
                       "Accept: text/event-stream\r\n\r\n" % tok).encode())
            # never read: 3 endpoints x 40 events x 3 changes of ~500 bytes
            for i in range(40):
                api.event_id("w.t", {"i": i, "pad": "x" * 200})
            ev = d.wait_event(lambda e: "too slow" in e.get("msg", ""),
                              timeout=10)
            self.assertIsNotNone(ev, "the slow reader was not cut")
            # the connection is closed: draining it ends with EOF
            c.settimeout(5)
            total = 0
            while True:
                try:
                    b = c.recv(65536)
                except ConnectionResetError:
                    break
                if not b:
                    break
                total += len(b)
            c.close()
            self.assertLess(total, 2 * 1024 * 1024)
            self.assertTrue(d.alive())
        finally:
            d.stop()


class StreamProcessesTest(harness.DaemonTestCase):
    """Two daemons on one database file; reload while streaming."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.dir = tempfile.mkdtemp(prefix="bulkhead-stream-")
        cls.db = os.path.join(cls.dir, "webhooks.db")
        cls.d = None

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sim.stop()
        finally:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.sim.reset()

    def daemon(self, workers=1):
        return Daemon(W.config(server={"workers": workers}, database=self.db,
                               **STREAM_KEYS))

    def test_changes_made_by_another_process_arrive(self):
        a = self.daemon()
        b = self.daemon()
        s = None
        try:
            ep = W.Api(a).create(self.sim.url + "/hooks/two", ["t.t"])
            s = SSE(a.port(), query="?endpoint=" + ep["id"])
            W.Api(b).event_id("t.t", {})  # fanned out and sent by b or a
            got = s.deliveries(lambda out: out and
                               doc(out[-1])["change"] == "succeeded")
            self.assertEqual([doc(e)["change"] for e in got],
                             ["queued", "attempting", "succeeded"])
        finally:
            if s:
                s.close()
            a.stop()
            b.stop()

    def test_reload_ends_the_stream_cleanly_and_resume_is_exact(self):
        d = self.daemon(workers=1)
        try:
            api = W.Api(d)
            ep = api.create(self.sim.url + "/hooks/reload", ["l.t"])
            q = "?endpoint=" + ep["id"]
            s = SSE(d.port(), query=q)
            api.event_id("l.t", {})
            before = s.deliveries(lambda out: len(out) >= 3)
            os.kill(d.proc.pid, signal.SIGHUP)
            tail = []
            while True:
                e = s.next(8.0, comments=True)
                if e is None:
                    break
                tail.append(e)
            self.assertTrue(s.clean, "the stream was cut, not ended")
            self.assertTrue(tail and isinstance(tail[-1], tuple) and
                            "reconnect" in tail[-1][1], tail)
            s.close()
            # the next generation: events made meanwhile are resumed
            self.assertTrue(W.wait_for(lambda: api.event("l.t", {}).status ==
                                       202, timeout=8, step=0.2))
            s2 = SSE(d.port(), query=q, last_id=before[-1]["id"])
            after = s2.deliveries(lambda out: out and
                                  doc(out[-1])["change"] == "succeeded")
            s2.close()
            self.assertEqual([doc(e)["change"] for e in after],
                             ["queued", "attempting", "succeeded"])
            self.assertGreater(int(after[0]["id"]), int(before[-1]["id"]))
        finally:
            d.stop()


if __name__ == "__main__":
    harness.main()
