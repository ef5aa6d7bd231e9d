"""LLM provider fallback in the ai plugin: [plugin.ai] fallback = ai_backup
names a second Anthropic-shaped provider (its own simulator, key, model,
breaker). A retryable outcome of the primary (429, 529, 5xx, refused,
timeout, breaker open) sends the draft to the fallback, which serves it
(X-Served-By, "provider"); our request or key refused (400, 401) never
falls back; when both fail the answer is the primary's Problem with
extensions.attempts and the shortest Retry-After. Streaming falls back
only before the first byte. Each simulator counts its own hits; the
access log and /metrics count the fallbacks per pair."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon  # noqa: E402
from upstream_env import closed_port, metric, scrape, set_breaker  # noqa

MESSAGES = "/v1/messages"
USER = "user_fallback"
REVIEW = {"review": "Lovely cut, friendly staff.",
          "businessName": "Salon Aurora"}
DRAFT = "Thank you for your review! (sim)"
BACKUP_KEY = "sk-ant-test-backup-0123456789"
BACKUP_MODEL = "claude-backup-model"
OVERLOADED = {"preset": "anthropic_overloaded"}

# primary behaviour -> why the fallback serves
RETRYABLE = {
    "rate_limited_429": {"preset": "anthropic_rate_limit"},
    "overloaded_529": OVERLOADED,
    "api_error_500": {"preset": "anthropic_500"},
    "reset": {"action": "reset"},
    "timeout": {"delay_ms": 3000},
}


def fallback_config(primary_url, backup_url, extra=None, ai=None,
                    upstream_ai=None):
    a = {"fallback": "ai_backup", "ai_backup.api_key": BACKUP_KEY,
         "ai_backup.model": BACKUP_MODEL}
    a.update(ai or {})
    ex = {"upstream.ai_backup": dict(P.QUIET_UPSTREAM, url=backup_url)}
    ex.update(extra or {})
    ua = {"timeout_ms": 400}
    ua.update(upstream_ai or {})
    return P.config(ai_url=primary_url, upstream_ai=ua, ai=a, extra=ex)


class FallbackTestCase(harness.DaemonTestCase):
    PRIMARY_DEAD = False
    AI = None
    EXTRA = None
    UPSTREAM_AI = None

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        # one simulator per provider, each counting its own hits
        cls.primary = P.start_sim(extra_args=("--name", "primary"))
        cls.backup = P.start_sim(extra_args=("--name", "backup"))
        url = ("http://127.0.0.1:%d" % closed_port() if cls.PRIMARY_DEAD
               else cls.primary.url)
        cls.CONFIG = fallback_config(url, cls.backup.url, extra=cls.EXTRA,
                                     ai=cls.AI, upstream_ai=cls.UPSTREAM_AI)
        try:
            cls.d = Daemon(cls.CONFIG)
        except BaseException:
            cls.primary.stop()
            cls.backup.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(FallbackTestCase, cls).tearDownClass()
        finally:
            cls.primary.stop()
            cls.backup.stop()

    def setUp(self):
        super(FallbackTestCase, self).setUp()
        self.primary.reset()
        self.backup.reset()

    def draft(self, user=USER, **h):
        return self.d.post("/v1/ai/draft-reply", body=REVIEW,
                           headers=P.bearer(user, **h))

    def stream(self, user=USER):
        s = P.StreamReader(self.d, "/v1/ai/draft-reply", REVIEW,
                           P.bearer(user, Accept="text/event-stream"))
        self.addCleanup(s.close)
        s.read_head()
        return s

    def assertServedBy(self, r, name, what=""):
        self.assertEqual(r.status, 200, "%s %r" % (what, r))
        self.assertEqual(r.json(), {"draft": DRAFT, "provider": name}, what)
        self.assertEqual(r.headers.get("x-served-by"), name, what)

    def assertBackupRequest(self):
        rec = self.backup.requests(MESSAGES)[-1]
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertEqual(hdrs["x-api-key"], BACKUP_KEY)
        self.assertEqual(json.loads(rec["body"])["model"], BACKUP_MODEL)


def _retryable_test(name):
    def test(self):
        self.primary.set_behavior(path=MESSAGES, **RETRYABLE[name])
        r = self.draft()
        self.assertServedBy(r, "ai_backup", name)
        self.assertEqual(self.primary.count(MESSAGES), 1, name)
        self.assertEqual(self.backup.count(MESSAGES), 1, name)
        self.assertBackupRequest()
        if name == "timeout":
            # the fallback runs within what is left of the request's
            # deadline (65 s): the primary's 400 ms (to the ms) are spent
            rec = self.backup.requests(MESSAGES)[-1]
            hdrs = dict((k.lower(), v) for k, v in rec["headers"])
            self.assertLess(int(hdrs["x-request-timeout-ms"]), 64650)
    test.__name__ = "test_primary_" + name + "_falls_back"
    return test


class FallbackTest(FallbackTestCase):

    def test_a_healthy_primary_serves_alone(self):
        self.assertEqual(self.primary.stats()["name"], "primary")
        self.assertEqual(self.backup.stats()["name"], "backup")
        r = self.draft()
        self.assertServedBy(r, "ai")
        self.assertEqual(self.primary.count(MESSAGES), 1)
        self.assertEqual(self.backup.count(MESSAGES), 0)
        rec = self.primary.requests(MESSAGES)[-1]
        hdrs = dict((k.lower(), v) for k, v in rec["headers"])
        self.assertEqual(hdrs["x-api-key"], P.AI_KEY)  # each its own key
        self.assertEqual(json.loads(rec["body"])["model"], P.MODEL)

    def test_breaker_open_falls_back_without_calling_the_primary(self):
        set_breaker(self.d, "ai", "forced_open")
        try:
            r = self.draft()
        finally:
            set_breaker(self.d, "ai", "closed")
        self.assertServedBy(r, "ai_backup")
        self.assertEqual(self.primary.stats()["total"], 0)
        self.assertEqual(self.backup.count(MESSAGES), 1)

    def test_our_request_refused_never_falls_back(self):
        self.primary.set_behavior(path=MESSAGES,
                                  preset="anthropic_invalid_request")
        r = self.draft()
        doc = self.assertProblem(r, 502, "ai.bad_upstream_request")
        self.assertNotIn("attempts", doc["extensions"])
        self.assertNotIn("x-served-by", r.headers)
        self.assertEqual(self.backup.count(MESSAGES), 0)

    def test_our_key_refused_never_falls_back(self):
        self.primary.set_behavior(path=MESSAGES, preset="anthropic_auth")
        r = self.draft()
        self.assertProblem(r, 503, "ai.misconfigured")
        self.assertEqual(self.primary.count(MESSAGES), 1)
        self.assertEqual(self.backup.count(MESSAGES), 0)

    def test_all_down_answers_the_primarys_code_with_attempts(self):
        self.primary.set_behavior(path=MESSAGES, preset="anthropic_rate_limit")
        self.backup.set_behavior(path=MESSAGES, headers={"retry-after": "4"},
                                 **OVERLOADED)
        before = scrape(self.d)
        r = self.draft()
        doc = self.assertProblem(r, 429, "ai.rate_limited")
        ext = doc["extensions"]
        self.assertEqual(ext["attempts"], [
            {"provider": "ai", "code": "ai.rate_limited"},
            {"provider": "ai_backup", "code": "ai.unavailable"}])
        # the primary says 7 s, the fallback 4 s: the soonest wins
        self.assertEqual(r.headers.get("retry-after"), "4", r)
        self.assertEqual(ext["retryAfterSeconds"], 4)
        self.assertIs(ext["retryable"], True)
        self.assertNotIn("x-served-by", r.headers)
        self.assertEqual(self.primary.count(MESSAGES), 1)
        self.assertEqual(self.backup.count(MESSAGES), 1)
        log = self.d.request_log(r.headers["x-request-id"])
        self.assertEqual(log[-1].get("code"), "ai.rate_limited", log)
        self.assertEqual(log[-1].get("fallbacks"), "ai>ai_backup", log)
        after = scrape(self.d)
        pair = {"plugin": "ai", "from": "ai", "to": "ai_backup"}
        self.assertEqual(
            metric(after, "bulkhead_upstream_fallbacks_total", **pair) -
            metric(before, "bulkhead_upstream_fallbacks_total", **pair), 1)

    def test_all_down_without_retry_after_sends_none(self):
        self.primary.set_behavior(path=MESSAGES, **OVERLOADED)
        self.backup.set_behavior(path=MESSAGES, action="reset")
        r = self.draft()
        doc = self.assertProblem(r, 503, "ai.unavailable")
        self.assertEqual([a["provider"] for a in doc["extensions"]["attempts"]],
                         ["ai", "ai_backup"])
        self.assertNotIn("retry-after", r.headers)
        self.assertNotIn("retryAfterSeconds", doc["extensions"])

    def test_a_fallback_served_answer_is_logged_and_counted(self):
        self.primary.set_behavior(path=MESSAGES, preset="anthropic_500")
        r = self.draft()
        self.assertServedBy(r, "ai_backup")
        log = self.d.request_log(r.headers["x-request-id"])
        self.assertEqual(log[-1].get("status"), 200, log)
        self.assertEqual(log[-1].get("fallbacks"), "ai>ai_backup", log)
        # the primary's failure is an attempt, not the answer's code
        self.assertNotIn("code", log[-1], log)

    def test_streaming_falls_back_before_the_first_byte(self):
        self.primary.set_behavior(path=MESSAGES, **OVERLOADED)
        self.backup.set_behavior(path=MESSAGES, action="stream",
                                 stream_delay_ms=0)
        s = self.stream()
        self.assertEqual(s.status, 200, s.headers)
        self.assertEqual(s.headers.get("x-served-by"), "ai_backup")
        s.read_all()
        ev = s.events()
        self.assertEqual(ev[-1][0], "done", ev)
        self.assertEqual(json.loads(ev[-1][1]),
                         {"draft": DRAFT, "provider": "ai_backup"})
        self.assertEqual(self.primary.count(MESSAGES), 1)
        self.assertEqual(self.backup.count(MESSAGES), 1)

    def test_streaming_never_falls_back_after_the_first_byte(self):
        self.primary.set_behavior(path=MESSAGES, action="stream_fail_after",
                                  fail_after_events=4, stream_delay_ms=20)
        s = self.stream()
        self.assertEqual(s.status, 200, s.headers)
        self.assertEqual(s.headers.get("x-served-by"), "ai")
        s.read_all()
        ev = s.events()
        self.assertEqual(ev[0][0], "delta", ev)
        self.assertEqual(ev[-1][0], "error", ev)
        doc = P.problem_of(ev[-1][1])
        self.assertEqual(doc["extensions"]["code"], "ai.unavailable", doc)
        self.assertEqual(self.backup.count(MESSAGES), 0)


for _name in RETRYABLE:
    _t = _retryable_test(_name)
    setattr(FallbackTest, _t.__name__, _t)


class FallbackRefusedTest(FallbackTestCase):
    """The primary's address refuses connections."""
    PRIMARY_DEAD = True

    def test_primary_refused_falls_back(self):
        r = self.draft()
        self.assertServedBy(r, "ai_backup")
        self.assertEqual(self.backup.count(MESSAGES), 1)
        self.assertBackupRequest()


class FallbackLocalLimitTest(FallbackTestCase):
    """The primary's own rate limit ([upstream.ai] rate_limit): one call an
    hour. Spent, the next draft goes to the fallback without a call."""
    UPSTREAM_AI = {"rate_limit": "ai_calls"}
    EXTRA = {"rate_limit.ai_calls": {"quota": 1, "window_s": 3600}}

    def test_the_primarys_spent_limit_falls_back(self):
        self.assertServedBy(self.draft(), "ai")
        r = self.draft()
        self.assertServedBy(r, "ai_backup")
        self.assertEqual(self.primary.count(MESSAGES), 1)
        self.assertEqual(self.backup.count(MESSAGES), 1)


class TokenBudgetTest(FallbackTestCase):
    """[rate_limit.ai_tokens] unit = tokens: 40 provider tokens an hour per
    principal; the simulator reports 10 input + 8 output tokens a draft."""
    AI = {"token_budget": "ai_tokens"}
    EXTRA = {"rate_limit.ai_tokens": {"unit": "tokens", "quota": 40,
                                      "window_s": 3600, "key": "principal"}}

    def assertPolicy(self, r, remaining):
        pol = r.headers.get("ratelimit-policy", "")
        self.assertTrue(pol.startswith('"ai_tokens";q=40;w=3600;qu="tokens"'),
                        r)
        rl = r.headers.get("ratelimit", "")
        self.assertTrue(rl.startswith('"ai_tokens";r=%d;' % remaining), r)

    def test_the_budget_runs_out_across_requests(self):
        user = "user_budget_1"
        for left in (40, 22, 4):  # the budget before each draft
            r = self.draft(user)
            self.assertServedBy(r, "ai")
            self.assertPolicy(r, left)
        # 4 left, 18 spent: the bucket is empty now
        before = self.primary.count(MESSAGES)
        r = self.draft(user)
        doc = self.assertProblem(r, 429, "ai.token_budget_exceeded")
        self.assertIs(doc["extensions"]["retryable"], True)
        # one token back in 3600 / 40 = 90 s
        self.assertEqual(r.headers.get("retry-after"), "90", r)
        self.assertEqual(doc["extensions"]["retryAfterSeconds"], 90)
        self.assertPolicy(r, 0)
        self.assertEqual(self.primary.count(MESSAGES), before)  # not called
        # another principal has a budget of its own
        r = self.draft("user_budget_2")
        self.assertServedBy(r, "ai")
        self.assertPolicy(r, 40)

    def test_a_stream_is_charged_from_its_final_usage(self):
        user = "user_budget_stream"
        self.primary.set_behavior(path=MESSAGES, action="stream",
                                  stream_delay_ms=0)
        s = self.stream(user)
        self.assertTrue(s.headers.get("ratelimit", "").startswith(
            '"ai_tokens";r=40;'), s.headers)
        s.read_all()
        self.assertEqual(s.events()[-1][0], "done")
        # message_start: 10 input; the final message_delta: 8 output
        r = self.draft(user)
        self.assertPolicy(r, 22)

    def test_a_fallback_served_draft_is_charged_too(self):
        user = "user_budget_fallback"
        self.primary.set_behavior(path=MESSAGES, **OVERLOADED)
        r = self.draft(user)
        self.assertServedBy(r, "ai_backup")
        self.primary.reset()
        r = self.draft(user)
        self.assertServedBy(r, "ai")
        self.assertPolicy(r, 22)


class FallbackChainTest(FallbackTestCase):
    """Two fallbacks, tried in order: ai, ai_backup, ai_spare."""

    @classmethod
    def setUpClass(cls):
        cls.spare = P.start_sim(extra_args=("--name", "spare"))
        cls.AI = {"fallback": "ai_backup, ai_spare",
                  "ai_spare.api_key": "sk-ant-test-spare-0123456789"}
        cls.EXTRA = {"upstream.ai_spare": dict(P.QUIET_UPSTREAM,
                                               url=cls.spare.url)}
        try:
            super(FallbackChainTest, cls).setUpClass()
        except BaseException:
            cls.spare.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(FallbackChainTest, cls).tearDownClass()
        finally:
            cls.spare.stop()

    def setUp(self):
        super(FallbackChainTest, self).setUp()
        self.spare.reset()

    def test_the_second_fallback_serves_when_the_first_fails_too(self):
        self.primary.set_behavior(path=MESSAGES, **OVERLOADED)
        self.backup.set_behavior(path=MESSAGES, preset="anthropic_rate_limit")
        r = self.draft()
        self.assertServedBy(r, "ai_spare")
        self.assertEqual([s.count(MESSAGES) for s in
                          (self.primary, self.backup, self.spare)], [1, 1, 1])
        rec = self.spare.requests(MESSAGES)[-1]
        body = json.loads(rec["body"])
        self.assertEqual(body["model"], P.MODEL)  # the primary's by default
        log = self.d.request_log(r.headers["x-request-id"])
        self.assertEqual(log[-1].get("fallbacks"),
                         "ai>ai_backup,ai_backup>ai_spare", log)

    def test_a_fallbacks_key_refused_ends_the_chain(self):
        self.primary.set_behavior(path=MESSAGES, **OVERLOADED)
        self.backup.set_behavior(path=MESSAGES, preset="anthropic_auth")
        r = self.draft()
        doc = self.assertProblem(r, 503, "ai.unavailable")
        self.assertEqual(doc["extensions"]["attempts"], [
            {"provider": "ai", "code": "ai.unavailable"},
            {"provider": "ai_backup", "code": "ai.misconfigured"}])
        self.assertEqual(self.spare.count(MESSAGES), 0)
        loud = self.d.wait_event(lambda e: e.get("plugin") == "ai" and
                                 "MISCONFIGURED" in e.get("msg", "") and
                                 r.headers["x-request-id"] in e["msg"])
        self.assertIsNotNone(loud, self.d.diag())
        self.assertIn("ai_backup.api_key", loud["msg"])
        self.assertNotIn(BACKUP_KEY, "\n".join(self.d.lines))


class FallbackConfigTest(harness.DaemonTestCase):
    """A fallback or budget the plugin cannot serve fails its load, with
    the reason; the daemon keeps serving."""

    def assertLoadFails(self, ai, extra, what):
        cfg = fallback_config(harness.DEAD_UPSTREAM, harness.DEAD_UPSTREAM,
                              extra=extra, ai=ai)
        with Daemon(cfg) as d:
            ev = d.wait_event(lambda e: e.get("event") ==
                              "plugin_load_failed" and
                              e.get("plugin") == "ai")
            self.assertIsNotNone(ev, d.diag())
            self.assertIn(what, ev.get("error", ""), ev)
            r = d.post("/v1/ai/draft-reply", body=REVIEW,
                       headers=P.bearer(USER))
            self.assertProblem(r, 503, "plugin.unavailable")

    def test_a_budget_must_count_tokens(self):
        self.assertLoadFails({"token_budget": "ai_calls"},
                             {"rate_limit.ai_calls": {"quota": 5}},
                             "set unit = tokens")

    def test_a_budget_needs_its_section(self):
        self.assertLoadFails({"token_budget": "nowhere"}, None,
                             "[rate_limit.nowhere]")

    def test_a_fallback_is_one_of_the_plugins_upstreams(self):
        self.assertLoadFails({"fallback": "backup"}, None,
                             "'ai' or 'ai_<suffix>'")


if __name__ == "__main__":
    harness.main()
