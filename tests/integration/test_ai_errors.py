"""ai's error map, row by row, for POST /v1/ai/draft-reply with the
simulator playing an Anthropic-shaped provider: 429 rate_limit_error ->
429 ai.rate_limited with the provider's retry-after passed through; 529
overloaded_error, 5xx, a reset or closed connection, the breaker open ->
503 ai.unavailable (retryable); a timeout -> 504 ai.timeout; 400
invalid_request_error -> 502 ai.bad_upstream_request (not retryable,
logged); 401/403 (our key) and 404 (our model) -> 503 ai.misconfigured (not
retryable, logged loudly, never the key). Also the upstream's local limit,
a success without text, the Messages API request we send (x-api-key,
anthropic-version, model and max_tokens from config), and strict body
validation that never reaches the provider."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import set_breaker  # noqa: E402

MESSAGES = "/v1/messages"
USER = "user_ai"
REVIEW = {"review": "The colour came out exactly as I wanted.",
          "tone": "formal", "businessName": "Salon Aurora"}

# name -> (simulator rule, status, code, retryable, Retry-After)
ROWS = {
    "rate_limited_429": ({"preset": "anthropic_rate_limit"}, 429,
                         "ai.rate_limited", True, 7),
    "rate_limited_429_without_retry_after": (
        {"status": 429, "body": {"type": "error", "error": {
            "type": "rate_limit_error", "message": "slow down"}}},
        429, "ai.rate_limited", True, None),
    "overloaded_529": ({"preset": "anthropic_overloaded"}, 503,
                       "ai.unavailable", True, None),
    "overloaded_529_retry_after": (
        {"preset": "anthropic_overloaded", "headers": {"retry-after": "4"}},
        503, "ai.unavailable", True, 4),
    "api_error_500": ({"preset": "anthropic_500"}, 503, "ai.unavailable",
                      True, None),
    "unavailable_503": ({"status": 503, "headers": {"retry-after": "9"},
                         "body": {"type": "error", "error": {
                             "type": "api_error"}}},
                        503, "ai.unavailable", True, 9),
    "connection_reset": ({"action": "reset"}, 503, "ai.unavailable", True,
                         None),
    "connection_closed": ({"action": "close"}, 503, "ai.unavailable", True,
                          None),
    "timeout": ({"delay_ms": 3000}, 504, "ai.timeout", True, None),
    "invalid_request_400": ({"preset": "anthropic_invalid_request"}, 502,
                            "ai.bad_upstream_request", False, None),
    "request_too_large_413": (
        {"status": 413, "body": {"type": "error", "error": {
            "type": "request_too_large"}}},
        502, "ai.bad_upstream_request", False, None),
    "our_key_refused_401": ({"preset": "anthropic_auth"}, 503,
                            "ai.misconfigured", False, None),
    "our_key_forbidden_403": (
        {"status": 403, "body": {"type": "error", "error": {
            "type": "permission_error"}}},
        503, "ai.misconfigured", False, None),
    "unknown_model_404": (
        {"status": 404, "body": {"type": "error", "error": {
            "type": "not_found_error", "message": "model: x"}}},
        503, "ai.misconfigured", False, None),
    "other_4xx_422": ({"status": 422, "body": {"type": "error"}}, 502,
                      "ai.bad_upstream_request", False, None),
    "success_without_text": (
        {"status": 200, "body": {"id": "msg_1", "type": "message",
                                 "content": []}},
        502, "ai.invalid_response", True, None),
    "success_not_json": ({"status": 200, "body": "<html>"}, 502,
                         "ai.invalid_response", True, None),
}


class AiTestCase(harness.DaemonTestCase):
    UPSTREAM = {"timeout_ms": 400}
    EXTRA = None

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(ai_url=cls.sim.url, upstream_ai=cls.UPSTREAM,
                              extra=cls.EXTRA)
        try:
            cls.d = Daemon(cls.CONFIG)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(AiTestCase, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(AiTestCase, self).setUp()
        self.sim.reset()

    def draft(self, body=None, headers=None, user=USER):
        h = P.bearer(user)
        h.update(headers or {})
        return self.d.post("/v1/ai/draft-reply",
                           body=REVIEW if body is None else body, headers=h)

    def assertAnswer(self, r, status, code, retryable, retry_after, what=""):
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
    rule, status, code, retryable, ra = ROWS[name]

    def test(self):
        self.sim.set_behavior(path=MESSAGES, **rule)
        r = self.draft()
        doc = self.assertAnswer(r, status, code, retryable, ra, name)
        self.assertNotIn("(sim)", doc.get("detail", ""))
        self.assertNotIn("x-api-key", r.body.decode())
        # a POST to the Messages API is never repeated by the core
        self.assertEqual(self.sim.count(MESSAGES), 1, name)
    test.__name__ = "test_row_" + name
    return test


class AiErrorMapTest(AiTestCase):

    def test_success_and_the_request_we_send(self):
        r = self.draft()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"draft": "Thank you for your review! (sim)",
                                    "provider": "ai"})
        self.assertEqual(r.headers.get("x-served-by"), "ai", r)
        rec = self.sim.requests(MESSAGES)[-1]
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertEqual(hdrs["x-api-key"], P.AI_KEY)
        self.assertEqual(hdrs["anthropic-version"], "2023-06-01")
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertNotIn("authorization", hdrs)  # the user's token stays here
        body = json.loads(rec["body"])
        self.assertEqual(body["model"], P.MODEL)
        self.assertEqual(body["max_tokens"], P.MAX_TOKENS)
        self.assertNotIn("stream", body)
        self.assertEqual(len(body["messages"]), 1)
        msg = body["messages"][0]
        self.assertEqual(msg["role"], "user")
        self.assertIn(REVIEW["review"], msg["content"])
        self.assertIn("Salon Aurora", msg["content"])
        self.assertIn("formal", msg["content"])
        self.assertTrue(body["system"])

    def test_breaker_open_answers_at_once(self):
        set_breaker(self.d, "ai", "forced_open")
        try:
            t0 = time.monotonic()
            r = self.draft()
            dt = time.monotonic() - t0
            doc = self.assertProblem(r, 503, "ai.unavailable")
            self.assertIs(doc["extensions"]["retryable"], True)
            ra = int(r.headers["retry-after"])
            self.assertGreaterEqual(ra, 1)
            self.assertEqual(doc["extensions"]["retryAfterSeconds"], ra)
            self.assertLess(dt, 1.0 * P.SLOW)
            r = self.draft(headers={"Accept": "text/event-stream"})
            self.assertProblem(r, 503, "ai.unavailable")
        finally:
            set_breaker(self.d, "ai", "closed")
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_our_failures_are_logged_for_ops_without_secrets(self):
        self.sim.set_behavior(path=MESSAGES, preset="anthropic_auth")
        r1 = self.draft()
        self.sim.set_behavior(path=MESSAGES, preset="anthropic_invalid_request")
        r2 = self.draft()
        loud = self.d.wait_event(lambda e: e.get("plugin") == "ai" and
                                 "MISCONFIGURED" in e.get("msg", ""))
        self.assertIsNotNone(loud, self.d.diag())
        self.assertEqual(loud["level"], "error")
        self.assertIn(r1.headers["x-request-id"], loud["msg"])
        self.assertIn("authentication_error", loud["msg"])
        warn = self.d.wait_event(lambda e: e.get("plugin") == "ai" and
                                 r2.headers["x-request-id"] in
                                 e.get("msg", ""))
        self.assertIsNotNone(warn, self.d.diag())
        self.assertEqual(warn["level"], "warn")
        self.assertIn("invalid_request_error", warn["msg"])
        logs = "\n".join(self.d.lines)
        self.assertNotIn(P.AI_KEY, logs)
        self.assertNotIn(REVIEW["review"], logs)  # nor what the user wrote
        self.assertNotIn("at least one message", logs)  # nor the provider's

    def test_strict_body_validation(self):
        long_review = "x" * 4001
        cases = [
            ({}, "review"),
            ({"review": "ok"}, "businessName"),
            ({"review": "", "businessName": "B"}, "review"),
            ({"review": long_review, "businessName": "B"}, "review"),
            ({"review": "ok", "businessName": "B" * 121}, "businessName"),
            ({"review": "ok", "businessName": "B", "tone": "sarcastic"},
             "tone"),
            ({"review": 7, "businessName": "B"}, "review"),
            ({"review": "ok", "businessName": "B", "rating": 5}, "rating"),
        ]
        for body, field in cases:
            with self.subTest(field=field, body=str(body)[:60]):
                r = self.draft(body=body)
                doc = self.assertProblem(r, 400, "request.invalid_body")
                self.assertIn(field, [e["field"] for e in
                                      doc["extensions"]["errors"]], r)
        for body, field in (({"review": "   \n\t ", "businessName": "B"},
                             "review"),
                            ({"review": "ok", "businessName": "A\nB"},
                             "businessName"),
                            ({"review": "ok\u0007", "businessName": "B"},
                             "review")):
            with self.subTest(field=field, body=body):
                r = self.draft(body=body)
                doc = self.assertProblem(r, 400, "ai.invalid_field")
                self.assertIs(doc["extensions"]["retryable"], False)
                self.assertEqual(doc["extensions"]["errors"][0]["field"],
                                 field)
        r = self.d.post("/v1/ai/draft-reply", body="x" * 20000,
                        headers=P.bearer(USER))
        self.assertProblem(r, 413, "request.too_large")
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_auth_required(self):
        r = self.d.post("/v1/ai/draft-reply", body=REVIEW)
        self.assertProblem(r, 401, "auth.unauthenticated")
        self.assertEqual(self.sim.stats()["total"], 0)

    def test_tone_defaults_to_friendly(self):
        r = self.draft(body={"review": "Nice", "businessName": "B"})
        self.assertEqual(r.status, 200, r)
        body = json.loads(self.sim.requests(MESSAGES)[-1]["body"])
        self.assertIn("Tone: friendly", body["messages"][0]["content"])


for _name in ROWS:
    setattr(AiErrorMapTest, "test_row_" + _name, _row_test(_name))


class AiLocalRateLimitTest(AiTestCase):
    """[upstream.ai] rate_limit: our own quota toward the provider."""

    UPSTREAM = {"rate_limit": "llm_quota"}
    EXTRA = {"rate_limit.llm_quota": {"quota": 1, "window_s": 60}}

    def test_local_limit_answers_rate_limited_with_retry_after(self):
        self.assertEqual(self.draft().status, 200)
        r = self.draft()
        doc = self.assertProblem(r, 429, "ai.rate_limited")
        self.assertIs(doc["extensions"]["retryable"], True)
        ra = int(r.headers["retry-after"])
        self.assertTrue(1 <= ra <= 60, r)
        self.assertEqual(doc["extensions"]["retryAfterSeconds"], ra)
        self.assertEqual(self.sim.count(MESSAGES), 1)


if __name__ == "__main__":
    harness.main()
