"""Streamed drafts: POST /v1/ai/draft-reply with Accept: text/event-stream
relays the provider's Anthropic-style event stream as it arrives
("event: delta" per text piece, "event: done" with the whole draft). A
provider failure after the first byte -- the connection cut, the timeout,
the provider's own in-stream error event, a stream that stops without
message_stop -- ends the stream with "event: error" whose data is the same
Problem JSON a buffered request would get; a failure before it is an
ordinary Problem with its HTTP status. A client that leaves mid-stream
stops the provider call without blaming the provider."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import metric, scrape, upstream_status, wait_for  # noqa

MESSAGES = "/v1/messages"
USER = "user_stream"
REVIEW = {"review": "Quick and friendly, will come back.",
          "businessName": "Salon Aurora"}
DRAFT = "Thank you for your review! (sim)"
DELTAS = ["Thank you", " for your review!", " (sim)"]
SSE_TYPE = "text/event-stream; charset=utf-8"


class StreamTestCase(harness.DaemonTestCase):
    UPSTREAM = {"timeout_ms": 5000}

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(ai_url=cls.sim.url, upstream_ai=cls.UPSTREAM)
        try:
            cls.d = Daemon(cls.CONFIG)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(StreamTestCase, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(StreamTestCase, self).setUp()
        self.sim.reset()

    def stream(self, **rule):
        """Sets the provider's behaviour, sends a streamed draft request,
        reads it to the end."""
        if rule:
            self.sim.set_behavior(path=MESSAGES, **rule)
        s = P.StreamReader(self.d, "/v1/ai/draft-reply", REVIEW,
                           P.bearer(USER, Accept="text/event-stream"))
        self.addCleanup(s.close)
        s.read_head()
        return s

    def assertStreamHead(self, s):
        self.assertEqual(s.status, 200, s.headers)
        self.assertEqual(s.headers.get("content-type"), SSE_TYPE)
        self.assertEqual(s.headers.get("cache-control"), "no-cache")
        self.assertEqual(s.headers.get("transfer-encoding"), "chunked")

    def assertErrorEvent(self, s, status, code, retryable):
        """The stream's last event is an error with the Problem for code;
        returns the Problem."""
        ev = s.events()
        self.assertTrue(ev, s.pieces)
        self.assertEqual(ev[-1][0], "error", ev)
        doc = P.problem_of(ev[-1][1])
        self.assertEqual(doc["status"], status, doc)
        self.assertEqual(doc["type"], "about:blank", doc)
        self.assertEqual(doc["instance"], "/v1/ai/draft-reply", doc)
        self.assertEqual(doc["extensions"]["code"], code, doc)
        self.assertIs(doc["extensions"]["retryable"], retryable, doc)
        self.assertEqual(doc["extensions"]["requestId"],
                         s.headers.get("x-request-id"), doc)
        self.assertTrue(s.complete, "the stream must end properly")
        return doc

    def buffered_problem(self, rule):
        """What a buffered request gets for the same failure."""
        self.sim.reset()
        self.sim.set_behavior(path=MESSAGES, **rule)
        r = self.d.post("/v1/ai/draft-reply", body=REVIEW,
                        headers=P.bearer(USER))
        return r.json()

    def assertSameProblem(self, streamed, buffered):
        for doc in (streamed, buffered):
            doc["extensions"].pop("requestId")
            doc["extensions"].pop("traceId")
            doc["extensions"].pop("spanId")
        self.assertEqual(streamed, buffered)


class StreamTest(StreamTestCase):

    def test_the_draft_streams_as_the_provider_writes_it(self):
        s = self.stream(action="stream", stream_delay_ms=200)
        self.assertStreamHead(s)
        s.read_all()
        self.assertTrue(s.complete)
        ev = s.events()
        self.assertEqual([e for e, _ in ev], ["delta"] * 3 + ["done"], ev)
        self.assertEqual([json.loads(d)["text"] for _, d in ev[:3]], DELTAS)
        self.assertEqual(json.loads(ev[3][1]), {"draft": DRAFT,
                                                "provider": "ai"})
        # relayed as it came: the first piece long before the provider's end
        first, done = s.first_time("delta"), s.first_time("done")
        self.assertGreater(done - first, 0.6, s.pieces)
        self.assertGreater(len(s.pieces), 3, s.pieces)
        rec = self.sim.requests(MESSAGES)[-1]
        self.assertIs(json.loads(rec["body"])["stream"], True)
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertEqual(hdrs["accept"], "text/event-stream")
        self.assertEqual(hdrs["x-api-key"], P.AI_KEY)
        log = self.d.request_log(s.headers["x-request-id"])
        self.assertEqual(log[-1]["status"], 200, log)

    def test_the_connection_is_reused_after_a_stream(self):
        s = self.stream(action="stream", stream_delay_ms=0)
        s.read_all()
        self.assertTrue(s.complete)
        self.assertNotIn("close", s.headers.get("connection", ""))
        self.sim.reset()
        body = json.dumps(REVIEW).encode()
        tok = P.bearer(USER)["Authorization"]
        s.sock.sendall(b"POST /v1/ai/draft-reply HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: " + tok.encode() + b"\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        s.buf = b""
        while b"\r\n\r\n" not in s.buf and s._fill():
            pass
        self.assertTrue(s.buf.startswith(b"HTTP/1.1 200"), s.buf[:200])

    def test_a_cut_connection_mid_stream_ends_with_an_error_event(self):
        s = self.stream(action="stream_fail_after", fail_after_events=4,
                        stream_delay_ms=20)
        self.assertStreamHead(s)
        s.read_all()
        ev = s.events()
        self.assertEqual(ev[0], ("delta", json.dumps({"text": "Thank you"},
                                                     separators=(",", ":"))))
        doc = self.assertErrorEvent(s, 503, "ai.unavailable", True)
        self.assertNotIn("done", [e for e, _ in ev])
        self.assertSameProblem(doc, self.buffered_problem({"action": "reset"}))
        log = self.d.request_log(s.headers["x-request-id"])
        self.assertEqual(log[-1].get("code"), "ai.unavailable", log)

    def test_the_providers_error_event_ends_the_stream(self):
        s = self.stream(action="stream_error_after", fail_after_events=5,
                        stream_delay_ms=20)
        s.read_all()
        ev = s.events()
        self.assertEqual([e for e, _ in ev], ["delta", "delta", "error"], ev)
        doc = self.assertErrorEvent(s, 503, "ai.unavailable", True)
        self.assertSameProblem(doc, self.buffered_problem(
            {"preset": "anthropic_overloaded"}))

    def test_a_stream_without_message_stop_is_a_failure(self):
        s = self.stream(status=200, body="data: {\"type\":\"ping\"}\n\n",
                        headers={"Content-Type": "text/event-stream"})
        s.read_all()
        self.assertEqual([e for e, _ in s.events()], ["error"])
        self.assertErrorEvent(s, 503, "ai.unavailable", True)

    def test_failures_before_the_first_byte_are_ordinary_problems(self):
        for rule, status, code, ra in (
                ({"preset": "anthropic_rate_limit"}, 429, "ai.rate_limited",
                 "7"),
                ({"preset": "anthropic_overloaded"}, 503, "ai.unavailable",
                 None),
                ({"preset": "anthropic_auth"}, 503, "ai.misconfigured",
                 None),
                ({"preset": "anthropic_invalid_request"}, 502,
                 "ai.bad_upstream_request", None)):
            with self.subTest(code=code):
                self.sim.reset()
                self.sim.set_behavior(path=MESSAGES, **rule)
                r = self.d.post("/v1/ai/draft-reply", body=REVIEW,
                                headers=P.bearer(
                                    USER, Accept="text/event-stream"))
                self.assertProblem(r, status, code)
                self.assertEqual(r.headers.get("retry-after"), ra, r)

    def test_without_accept_the_draft_is_buffered(self):
        r = self.d.post("/v1/ai/draft-reply", body=REVIEW,
                        headers=P.bearer(USER, Accept="application/json"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"draft": DRAFT, "provider": "ai"})
        self.assertEqual(r.headers.get("x-served-by"), "ai", r)
        self.assertNotIn("stream",
                         json.loads(self.sim.requests(MESSAGES)[-1]["body"]))


class StreamTimeoutTest(StreamTestCase):
    """The upstream's timeout covers the whole streamed transfer."""

    UPSTREAM = {"timeout_ms": 900}

    def test_a_timeout_mid_stream_ends_with_ai_timeout(self):
        # events every 250 ms: the first delta (the 4th event) at 750 ms,
        # the timeout at 900 ms, long before the stream's end
        s = self.stream(action="stream", stream_delay_ms=250)
        self.assertStreamHead(s)
        s.read_all()
        ev = s.events()
        self.assertEqual(ev[0][0], "delta", ev)
        doc = self.assertErrorEvent(s, 504, "ai.timeout", True)
        self.assertSameProblem(doc, self.buffered_problem({"delay_ms": 3000}))


class ClientGoneTest(StreamTestCase):

    def test_a_client_leaving_stops_the_provider_stream(self):
        # nine events 400 ms apart: the provider would stream for 3.6 s;
        # the client leaves after the first delta (1.2 s), and the gateway
        # learns it at its next writes and stops the provider call
        s = self.stream(action="stream", stream_delay_ms=400)
        while s.first_time("delta") is None:
            self.assertIsNotNone(s.read_piece(), s.pieces)
        s.close()

        def canceled():
            return metric(scrape(self.d), "bulkhead_upstream_calls_total",
                          upstream="ai", outcome="canceled")
        self.assertTrue(wait_for(lambda: canceled() == 1, timeout=4.0),
                        scrape(self.d)["samples"])
        # the provider's events are timed by the clock, not the CPU: this
        # holds under sanitizers too
        self.assertLess(time.monotonic() - s.t0, 3.3,
                        "the provider stream ran to its end")
        self.assertEqual(metric(scrape(self.d), "bulkhead_upstream_calls_total",
                                upstream="ai", outcome="http_2xx"), 0)
        # the provider did nothing wrong: its breaker heard a success
        up = upstream_status(self.d, "ai")
        self.assertEqual(up["breaker"]["failureRate"], 0, up)
        self.assertFalse(up.get("lastError"), up)
        # and the next draft is served as usual
        self.sim.reset()
        r = self.d.post("/v1/ai/draft-reply", body=REVIEW,
                        headers=P.bearer(USER))
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    harness.main()
