"""The email magic-link sign-in (POST /v1/auth/magic-link, its verify
routes), against the simulator as identity provider and a local SMTP sink
(smtp_sink.py) started by the test:

- magic_link = fallback: 409 auth.magic_link_not_needed while the IdP
  answers; once a login hits auth.idp_unavailable (whose 503 then carries
  extensions.fallback = "magic_link") the request is 202, the sink gets the
  mail, its link signs in once (302 with the session cookies, the session
  works) and never again;
- an unknown email: the same 202 body, and nothing is sent;
- an expired link; per-email and per-address limits (429
  auth.too_many_attempts with Retry-After); a redirect that is not a local
  path; the SMTP server down (503 auth.email_unavailable, retryable, for
  known and unknown emails alike, login unaffected);
- neither the email address nor the token ever appears in the logs."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import (ACCOUNTS, SIGNIN, Jar, auth_config, login,  # noqa
                      parse_set_cookies, start_sim)
from harness import Daemon  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402
from upstream_env import closed_port  # noqa: E402

BASE = "http://portal.test"
AUTH = {"login_max_failures_per_address": 1000}


def magic_keys(smtp_url, **extra):
    keys = {"magic_link": "fallback", "smtp_url": smtp_url,
            "smtp_from": "no-reply@example.com", "magic_link_url": BASE,
            "smtp_timeout_ms": 2000}
    keys.update(extra)
    return keys


class MagicBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        cls.sink = SmtpSink()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.sink.stop()

    def setUp(self):
        self.sim.clear()
        self.sink.clear()
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()

    def daemon(self, smtp_url=None, **keys):
        d = Daemon(auth_config(self.sim.url, auth=AUTH, plugin_auth=magic_keys(
            smtp_url or self.sink.url, **keys)))
        self.daemons.append(d)
        return d

    def assertProblem(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json", r)
        self.assertEqual(r.code, code, r)

    def ask(self, d, who, redirect=None):
        email = ACCOUNTS[who][0] if who in ACCOUNTS else who
        body = {"email": email}
        if redirect:
            body["redirect"] = redirect
        return d.post("/v1/auth/magic-link", body=body)

    def idp_down(self, d):
        """The IdP fails; a login notices (and says where to go)."""
        self.sim.set_behavior(path=SIGNIN, status=503)
        r = login(d, "carol")
        self.assertProblem(r, 503, "auth.idp_unavailable")
        return r

    def link_of(self, msg):
        m = re.search(re.escape(BASE) + r"(/v1/auth/magic-link/verify\?"
                      r"token=[A-Za-z0-9_-]+)", msg["data"])
        self.assertIsNotNone(m, msg["data"])
        return m.group(1)

    def assertNotLogged(self, d, *secrets):
        text = "\n".join(d.lines)
        for s in secrets:
            self.assertNotIn(s, text)


class FallbackTest(MagicBase):
    def test_idp_up_then_down_link_signs_in_once(self):
        d = self.daemon()
        self.assertEqual(login(d, "alice").status, 200)  # remembered
        self.assertProblem(self.ask(d, "alice"), 409,
                           "auth.magic_link_not_needed")
        r = self.idp_down(d)
        self.assertEqual(r.ext.get("fallback"), "magic_link", r.json())
        r = self.ask(d, "alice", redirect="/dashboard?tab=1")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(self.sink.wait(1), "no mail reached the sink")
        msg = self.sink.messages[0]
        self.assertEqual(msg["to"], ["<alice@example.com>"])
        self.assertEqual(msg["from"], "<no-reply@example.com>")
        self.assertIn("Subject: Your sign-in link", msg["data"])
        link = self.link_of(msg)
        token = link.split("token=")[1]
        self.assertGreaterEqual(len(token), 43)
        got = d.get(link)
        self.assertEqual(got.status, 302, got)
        self.assertEqual(got.headers.get("location"), "/dashboard?tab=1")
        self.assertEqual(got.headers.get("referrer-policy"), "no-referrer")
        cookies = parse_set_cookies(got)
        self.assertIn("__session", cookies)
        jar = Jar()
        jar.update(got)
        me = d.get("/v1/auth/me", headers=jar.headers())
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json()["user"]["id"], ACCOUNTS["alice"][2])
        # single use: the same link, by GET or POST, never again
        self.assertProblem(d.get(link), 401, "auth.magic_link_invalid")
        self.assertProblem(d.post("/v1/auth/magic-link/verify",
                                  body={"token": token}), 401,
                           "auth.magic_link_invalid")
        self.assertNotLogged(d, "alice@example.com", token)

    def test_unknown_email_same_answer_nothing_sent(self):
        d = self.daemon()
        self.assertEqual(login(d, "bob").status, 200)
        self.idp_down(d)
        known = self.ask(d, "bob")
        self.assertEqual(known.status, 202, known)
        self.assertTrue(self.sink.wait(1))
        unknown = self.ask(d, "nobody@example.com")
        self.assertEqual(unknown.status, 202, unknown)
        self.assertEqual(unknown.body, known.body)
        time.sleep(0.3)
        self.assertEqual(len(self.sink.messages), 1)
        # the link by POST gives the session in the body
        token = self.link_of(self.sink.messages[0]).split("token=")[1]
        r = d.post("/v1/auth/magic-link/verify", body={"token": token})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["user"]["id"], ACCOUNTS["bob"][2])
        self.assertTrue(r.json()["accessToken"])
        self.assertNotLogged(d, "bob@example.com", "nobody@example.com",
                             token)

    def test_redirect_must_be_a_local_path(self):
        d = self.daemon(magic_link="always")
        for bad in ("//evil.example", "https://evil.example/", "/\\evil",
                    "dashboard"):
            self.assertProblem(self.ask(d, "alice", redirect=bad), 400,
                               "auth.invalid_redirect")
        r = d.post("/v1/auth/magic-link", body={"email": "a b@x.y"})
        self.assertProblem(r, 400, "request.invalid_body")

    def test_always_mode_answers_with_the_idp_up(self):
        d = self.daemon(magic_link="always")
        self.assertEqual(login(d, "alice").status, 200)
        self.assertEqual(self.ask(d, "alice").status, 202)
        self.assertTrue(self.sink.wait(1))
        # the login's 503 names the fallback in this mode too
        self.assertEqual(self.idp_down(d).ext.get("fallback"), "magic_link")

    def test_off_mode_has_no_route_and_no_fallback_hint(self):
        d = self.daemon(magic_link="off")
        self.assertEqual(self.ask(d, "alice").status, 404)
        self.assertNotIn("fallback", self.idp_down(d).ext)


class LimitsTest(MagicBase):
    def test_expired_link(self):
        d = self.daemon(magic_link_ttl_s=1)
        self.assertEqual(login(d, "alice").status, 200)
        self.idp_down(d)
        self.assertEqual(self.ask(d, "alice").status, 202)
        self.assertTrue(self.sink.wait(1))
        link = self.link_of(self.sink.messages[0])
        time.sleep(2.1)
        self.assertProblem(d.get(link), 401, "auth.magic_link_expired")
        self.assertProblem(d.get(link), 401, "auth.magic_link_invalid")

    def test_per_email_and_per_address_limits(self):
        d = self.daemon(magic_link_per_email=2, magic_link_per_address=3)
        self.idp_down(d)
        self.assertEqual(self.ask(d, "x1@example.com").status, 202)
        self.assertEqual(self.ask(d, "x1@example.com").status, 202)
        r = self.ask(d, "X1@example.com")  # the same address
        self.assertProblem(r, 429, "auth.too_many_attempts")
        ra = int(r.headers.get("retry-after"))
        self.assertTrue(0 < ra <= 900, ra)
        self.assertEqual(self.ask(d, "x2@example.com").status, 202)
        r = self.ask(d, "x3@example.com")  # 4th from this address
        self.assertProblem(r, 429, "auth.too_many_attempts")
        self.assertTrue(r.headers.get("retry-after"))

    def test_failed_verifications_are_limited(self):
        d = self.daemon(magic_link="always", magic_link_verify_failures=3)
        for _ in range(3):
            self.assertProblem(d.get("/v1/auth/magic-link/verify?token=" +
                                     "A" * 43), 401,
                               "auth.magic_link_invalid")
        r = d.get("/v1/auth/magic-link/verify?token=" + "B" * 43)
        self.assertProblem(r, 429, "auth.too_many_attempts")

    def test_smtp_down(self):
        d = self.daemon(smtp_url="smtp://127.0.0.1:%d" % closed_port())
        self.assertEqual(login(d, "alice").status, 200)
        self.idp_down(d)
        for who in ("alice", "nobody@example.com"):
            r = self.ask(d, who)
            self.assertProblem(r, 503, "auth.email_unavailable")
            self.assertTrue(r.json().get("retryable") or
                            r.ext.get("retryable"), r.json())
        # nothing else is affected: the IdP back, login works
        self.sim.clear()
        self.assertEqual(login(d, "alice").status, 200)
        self.assertEqual(d.get("/v1/auth/status").status, 200)


class ConfigTest(unittest.TestCase):
    def check(self, keys, env=None):
        cfg = auth_config(None, plugin_auth=keys)
        d = Daemon(cfg, start=False, env=env)
        try:
            return harness.run_tool(["-t", "-c", d.config_path],
                                    env=d.env)
        finally:
            d.kill()

    def test_bad_values_are_refused(self):
        base = magic_keys("smtp://127.0.0.1:25")
        for k, v, want in (("magic_link", "sometimes", "magic_link"),
                           ("smtp_url", "http://x", "smtp_url"),
                           ("smtp_from", "nobody", "smtp_from"),
                           ("magic_link_url", "portal.test", "magic_link_url"),
                           ("smtp_password", "@env:BH_TEST_NO_SUCH_VAR",
                            "smtp_password")):
            keys = dict(base)
            keys[k] = v
            if k == "smtp_password":
                keys["smtp_username"] = "u"
            r = self.check(keys)
            self.assertNotEqual(r.returncode, 0, (k, v))
            self.assertIn(want, r.stdout + r.stderr, (k, v))
        keys = dict(base, smtp_username="@env:BH_TEST_SMTP_USER",
                    smtp_password="@env:BH_TEST_SMTP_PASS")
        r = self.check(keys, env={"BH_TEST_SMTP_USER": "u",
                                  "BH_TEST_SMTP_PASS": "p"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("BH_TEST_SMTP_PASS=p", r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()
