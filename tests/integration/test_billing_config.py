"""Secrets and config of the billing and ai plugins: the provider keys come
from "@env:VAR", "@file:PATH" or the BULKHEAD_PLUGIN_<NAME>_<KEY>
environment override, reach the providers as the right headers, and never
appear in a log line or an answer. A secret that cannot be read, or a bad
value, fails that plugin's load with a precise log line (its routes answer
plugin.unavailable) while the other plugin serves on."""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
from harness import Daemon, run_tool  # noqa: E402

ENV_KEY = "sk_test_from_env_4242"
FILE_WEBHOOK = "whsec_from_file_7777"
FILE_AI_KEY = "sk-ant-from-file-1111"
OVERRIDE_KEY = "sk_test_override_5151"


class SecretFormsTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.tmp = tempfile.mkdtemp(prefix="billing-secrets-")
        wh = os.path.join(cls.tmp, "webhook")
        with open(wh, "w") as f:
            f.write(FILE_WEBHOOK + "\n")
        ak = os.path.join(cls.tmp, "ai")
        with open(ak, "w") as f:
            f.write(FILE_AI_KEY + "\n")
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, cls.sim.url, billing={
            "secret_key": "@env:BH_TEST_PAYMENT_KEY",
            "webhook_secret": "@file:" + wh,
            "api_version": "2024-06-20",
            "prices": "price_basic, price_pro"},
            ai={"api_key": "@file:" + ak, "anthropic_version": "2023-01-01"})
        cls.ENV = {"BH_TEST_PAYMENT_KEY": ENV_KEY}
        try:
            cls.d = Daemon(cls.CONFIG, env=cls.ENV)
        except BaseException:
            cls.sim.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(SecretFormsTest, cls).tearDownClass()
        finally:
            cls.sim.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_secrets_reach_the_providers_and_nothing_else(self):
        r = P.post_event(self.d, P.checkout_event("user_c", "cus_c"),
                         signature=P.sign_event(
                             P.checkout_event("user_c", "cus_c", eid="e1"),
                             secret=FILE_WEBHOOK))
        self.assertEqual(r.code, "billing.signature_invalid")  # other body
        body = P.checkout_event("user_c", "cus_c")
        r = P.post_event(self.d, body, signature=P.sign_event(
            body, secret=FILE_WEBHOOK))
        self.assertEqual(r.status, 200, r)
        r = self.d.post("/v1/billing/portal-session",
                        headers=P.bearer("user_c"))
        self.assertEqual(r.status, 200, r)
        hdrs = dict((k.lower(), v) for k, v in self.sim.requests(
            "/v1/billing_portal/sessions")[-1]["headers"])
        self.assertEqual(hdrs["authorization"], "Bearer " + ENV_KEY)
        self.assertEqual(hdrs["stripe-version"], "2024-06-20")
        r = self.d.post("/v1/ai/draft-reply", headers=P.bearer("user_c"),
                        body={"review": "ok", "businessName": "B"})
        self.assertEqual(r.status, 200, r)
        hdrs = dict((k.lower(), v) for k, v in self.sim.requests(
            "/v1/messages")[-1]["headers"])
        self.assertEqual(hdrs["x-api-key"], FILE_AI_KEY)
        self.assertEqual(hdrs["anthropic-version"], "2023-01-01")
        logs = "\n".join(self.d.lines) + self.d.stderr
        for secret in (ENV_KEY, FILE_WEBHOOK, FILE_AI_KEY):
            self.assertNotIn(secret, logs)
        r = self.d.admin("/admin/status")
        for secret in (ENV_KEY, FILE_WEBHOOK, FILE_AI_KEY):
            self.assertNotIn(secret, r.body.decode())

    def test_the_price_allow_list(self):
        h = P.bearer("user_c")
        r = self.d.post("/v1/billing/checkout-session", headers=h,
                        body={"priceId": "price_pro"})
        self.assertEqual(r.status, 200, r)
        r = self.d.post("/v1/billing/checkout-session", headers=h,
                        body={"priceId": "price_enterprise"})
        doc = self.assertProblem(r, 400, "billing.invalid_price")
        self.assertEqual(doc["extensions"]["errors"],
                         [{"field": "priceId", "code": "billing.invalid_price"}])
        self.assertEqual(self.sim.count("/v1/checkout/sessions"), 1)


class EnvironmentOverrideTest(harness.DaemonTestCase):
    CONFIG = P.config(billing={"secret_key": None})
    ENV = {"BULKHEAD_PLUGIN_BILLING_SECRET_KEY": OVERRIDE_KEY}

    @classmethod
    def setUpClass(cls):
        cls.sim = P.start_sim()
        cls.CONFIG = P.config(cls.sim.url, billing={"secret_key": None})
        super(EnvironmentOverrideTest, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super(EnvironmentOverrideTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_the_environment_supplies_the_key(self):
        r = self.d.get("/v1/billing/provider-status")
        self.assertEqual(r.status, 200, r)
        hdrs = dict((k.lower(), v) for k, v in self.sim.requests(
            "/v1/balance")[-1]["headers"])
        self.assertEqual(hdrs["authorization"], "Bearer " + OVERRIDE_KEY)
        self.assertNotIn(OVERRIDE_KEY, "\n".join(self.d.lines))


class UnreadableSecretTest(harness.DaemonTestCase):
    """billing's secret names an unset variable: billing does not load,
    ai serves as usual."""

    CONFIG = P.config(billing={"secret_key": "@env:BH_TEST_NOT_SET"})

    def test_billing_fails_to_load_and_ai_serves(self):
        r = self.d.post("/v1/billing/portal-session",
                        headers=P.bearer("user_x"))
        doc = self.assertProblem(r, 503, "plugin.unavailable")
        self.assertEqual(doc["extensions"].get("plugin"), "billing")
        ev = self.d.wait_event(lambda e: e.get("plugin") == "billing" and
                               "BH_TEST_NOT_SET" in e.get("msg", ""))
        self.assertIsNotNone(ev, self.d.diag())
        self.assertEqual(ev["level"], "error")
        self.assertEqual(self.d.get("/v1/ai/status").status, 200)


class ConfigCheckTest(harness.DaemonTestCase):
    CONFIG = P.config()

    def test_bad_values_fail_bulkhead_t(self):
        for plugin, key, value in (
                ("billing", "webhook_tolerance_s", "0"),
                ("billing", "checkout_mode", "setup"),
                ("billing", "success_url", "javascript:alert(1)"),
                ("billing", "webhook_secret", "@file:/nonexistent/secret"),
                ("ai", "max_tokens", "100000"),
                ("ai", "model", "bad model")):
            with self.subTest(key=key):
                cfg = P.config(server={"data_dir": os.path.join(
                    self.d.tmp, "check-data")}, **{plugin: {key: value}})
                path = os.path.join(self.d.tmp, "check.ini")
                with open(path, "w") as f:
                    f.write(harness.render_config(cfg))
                res = run_tool(["-t", "-c", path], timeout=20)
                self.assertNotEqual(res.returncode, 0, res.stdout)
                self.assertIn(key, res.stdout + res.stderr)


if __name__ == "__main__":
    harness.main()
