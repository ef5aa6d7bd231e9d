"""Blast radius between the payment and the LLM compartments.

The payment provider down -- hanging past its timeout, answering 500s,
then gone (connection refused) -- does not change a single response of the
ai plugin, the auth middleware or the auth plugin, nor slow them down,
while billing calls are in flight the whole time; and billing keeps telling
the truth (no account is still no_billing_account). The LLM provider down
-- overloaded (529), hanging, gone -- does not change a single billing
response. Every response is compared with the one taken before the fault
(status, content type, Retry-After, body; request ids and provider object
ids aside)."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402
from harness import Daemon  # noqa: E402

PAYING = "user_paying"
ADMIN_UPGRADED = "user_admin_upgraded"
REVIEW = {"review": "Lovely cut, friendly staff.", "tone": "friendly",
          "businessName": "Salon Aurora"}
# no breaker verdict: every fault phase really reaches the faulty provider
UPSTREAM = {"timeout_ms": 800, "breaker_min_calls": 100000}
# an answer that waited for nobody's upstream, generous for ASan
FAST = 0.5 * P.SLOW


def normalize(r):
    body = r.body.decode("utf-8", "replace")
    body = re.sub(r'"(requestId|traceId|spanId)":"[^"]*"', r'"\1":"-"', body)
    body = re.sub(r"_sim_\d+", "_sim_N", body)
    return (r.status, r.headers.get("content-type"),
            r.headers.get("retry-after"), r.headers.get("cache-control"),
            body)


class Load(object):
    """Keeps calling `calls` (functions) from a few threads until stop()."""

    def __init__(self, calls, threads=3):
        self.calls = calls
        self.stop_ev = threading.Event()
        self.count = 0
        self.threads = [threading.Thread(target=self.run, args=(i,),
                                         daemon=True) for i in range(threads)]

    def run(self, i):
        n = i
        while not self.stop_ev.is_set():
            try:
                self.calls[n % len(self.calls)]()
            except Exception:  # noqa: BLE001 - load only; answers checked
                pass
            self.count += 1
            n += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)


class IsolationBase(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.billing_sim = P.start_sim()
        cls.ai_sim = P.start_sim()
        cls.CONFIG = P.config(cls.billing_sim.url, cls.ai_sim.url,
                              auth_plugin=True, upstream_billing=UPSTREAM,
                              upstream_ai=UPSTREAM)
        # one token for the whole class: /v1/auth/me shows its expiry
        cls.token = {"Authorization": "Bearer " + mint_access_token(
            TEST_SECRET, PAYING, iat=int(time.time()) - 5, ttl_s=600)}
        try:
            cls.d = Daemon(cls.CONFIG)
            P.seed_customer(cls.d, PAYING, "cus_paying")
        except BaseException:
            cls.billing_sim.stop()
            cls.ai_sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(IsolationBase, cls).tearDownClass()
        finally:
            cls.billing_sim.stop()
            cls.ai_sim.stop()

    # -- the two sets of requests --------------------------------------------

    def ai_auth(self):
        d, tok = self.d, self.token
        sse = dict(tok, Accept="text/event-stream")
        forged = {"Authorization": "Bearer " + mint_access_token(
            "another-secret-of-at-least-32-bytes!!", PAYING)}
        return [
            ("ai status", lambda: d.get("/v1/ai/status")),
            ("draft", lambda: d.post("/v1/ai/draft-reply", body=REVIEW,
                                     headers=tok)),
            ("draft streamed", lambda: d.post("/v1/ai/draft-reply",
                                              body=REVIEW, headers=sse)),
            ("draft invalid", lambda: d.post("/v1/ai/draft-reply",
                                             body={"review": ""},
                                             headers=tok)),
            ("draft no token", lambda: d.post("/v1/ai/draft-reply",
                                              body=REVIEW)),
            ("auth status", lambda: d.get("/v1/auth/status")),
            ("me", lambda: d.get("/v1/auth/me", headers=tok)),
            ("me no token", lambda: d.get("/v1/auth/me")),
            ("me forged", lambda: d.get("/v1/auth/me", headers=forged)),
        ]

    def billing(self):
        d, tok = self.d, self.token
        admin = P.bearer(ADMIN_UPGRADED)
        return [
            ("billing status", lambda: d.get("/v1/billing/status")),
            ("portal", lambda: d.post("/v1/billing/portal-session",
                                      headers=tok)),
            ("portal no account", lambda: d.post(
                "/v1/billing/portal-session", headers=admin)),
            ("subscription", lambda: d.get("/v1/billing/subscription",
                                           headers=tok)),
            ("checkout", lambda: d.post("/v1/billing/checkout-session",
                                        body={"priceId": "price_pro"},
                                        headers=tok)),
            ("checkout invalid", lambda: d.post(
                "/v1/billing/checkout-session", body={"priceId": 7},
                headers=tok)),
            ("event unsigned", lambda: P.post_event(
                d, P.checkout_event("x", "cus_x"), signature=False)),
            ("portal no token", lambda: d.post("/v1/billing/portal-session")),
        ]

    def snapshot(self, calls, timed=False):
        out = {}
        for name, fn in calls:
            t0 = time.monotonic()
            r = fn()
            dt = time.monotonic() - t0
            out[name] = normalize(r)
            if timed:
                self.assertLess(dt, FAST, "%s took %.2fs: %r" % (name, dt, r))
        return out

    def assertUnchanged(self, baseline, calls, phase):
        now = self.snapshot(calls, timed=True)
        for name in baseline:
            self.assertEqual(now[name], baseline[name],
                             "%s changed while %s" % (name, phase))


class PaymentProviderDownTest(IsolationBase):

    def test_payment_provider_down_changes_no_ai_or_auth_response(self):
        baseline = self.snapshot(self.ai_auth())
        self.assertEqual(baseline["draft"][0], 200, baseline)
        self.assertEqual(baseline["me"][0], 200, baseline)
        self.assertEqual(baseline["me no token"][0], 401, baseline)
        b = self.billing_sim
        portal = lambda: self.d.post("/v1/billing/portal-session",  # noqa
                                     headers=self.token, timeout=10)
        sub = lambda: self.d.get("/v1/billing/subscription",  # noqa
                                 headers=self.token, timeout=10)
        for phase, rule in (("hanging", {"action": "hang"}),
                            ("failing", {"preset": "stripe_500"})):
            b.reset()
            b.set_behavior(path="*", **rule)
            with Load([portal, sub]) as load:
                time.sleep(0.2)  # billing calls now wait on the provider
                for _ in range(2):
                    self.assertUnchanged(baseline, self.ai_auth(), phase)
            self.assertGreater(load.count, 0)
            r = portal()
            self.assertIn(r.code, ("billing.payment_unavailable",
                                   "billing.payment_timeout"), r)
            self.assertEqual(self.d.post("/v1/billing/portal-session",
                                         headers=P.bearer(ADMIN_UPGRADED))
                             .code, "billing.no_billing_account")
        # gone altogether
        b.stop()
        with Load([portal, sub]):
            self.assertUnchanged(baseline, self.ai_auth(), "gone")
        r = portal()
        doc = self.assertProblem(r, 503, "billing.payment_unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)


class LlmProviderDownTest(IsolationBase):

    def test_llm_provider_down_changes_no_billing_response(self):
        baseline = self.snapshot(self.billing())
        self.assertEqual(baseline["portal"][0], 200, baseline)
        self.assertEqual(baseline["portal no account"][0], 400, baseline)
        a = self.ai_sim
        draft = lambda: self.d.post("/v1/ai/draft-reply", body=REVIEW,  # noqa
                                    headers=self.token, timeout=10)
        stream = lambda: self.d.post(  # noqa
            "/v1/ai/draft-reply", body=REVIEW, timeout=10,
            headers=dict(self.token, Accept="text/event-stream"))
        for phase, rule in (("overloaded", {"preset": "anthropic_overloaded"}),
                            ("hanging", {"action": "hang"}),
                            ("failing mid-stream",
                             {"action": "stream_fail_after",
                              "fail_after_events": 4})):
            a.reset()
            a.set_behavior(path="*", **rule)
            with Load([draft, stream]) as load:
                time.sleep(0.2)
                for _ in range(2):
                    self.assertUnchanged(baseline, self.billing(), phase)
            self.assertGreater(load.count, 0)
        r = draft()
        self.assertIn(r.code, ("ai.unavailable", "ai.timeout"), r)
        a.stop()
        with Load([draft, stream]):
            self.assertUnchanged(baseline, self.billing(), "gone")
        doc = self.assertProblem(draft(), 503, "ai.unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        events = self.d.events("request")
        self.assertFalse([e for e in events if e.get("plugin") == "billing"
                          and e.get("status", 0) >= 500], "billing 5xx")


if __name__ == "__main__":
    harness.main()
