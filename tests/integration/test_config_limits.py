"""Rate limits and retries from the config alone ([plugin.NAME]
rate_limit / retries, and its `routes` lines "METHOD PATTERN rate_limit=NAME
retries=N"): a first-party route that declares no policy is limited with
the same 429 and the IETF draft-10 fields (RateLimit-Policy:
"name";q=Q;w=W;pk=:..: and RateLimit: "name";r=R;t=T;pk=:..:), and the
upstream's retries are replaced per mount and per route, counted by the
simulator."""

import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section, render_config  # noqa
from auth_env import auth_config, bearer  # noqa: E402
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402
from upstream_env import TwoSimsCase, up_config  # noqa: E402

SF_PK = r";pk=:[A-Za-z0-9+/]+=*:"
POLICY_RE = r'^"%s";q=(\d+);w=(\d+)' + SF_PK + r"$"
RL_RE = r'^"%s";r=(\d+);t=(\d+)' + SF_PK + r"$"


class ConfigRateLimitTest(DaemonTestCase):
    """echo declares no policy on any route: the mount gets `mountpol`
    (burst 2), one route `routepol` (burst 1) from a `routes` line."""

    CONFIG = {
        "plugin.echo": echo_section(
            rate_limit="mountpol",
            routes="\n    GET /t/echo/params/{a}/{b} rate_limit=routepol"),
        "rate_limit.mountpol": {"quota": 1, "window_s": 60, "burst": 2},
        "rate_limit.routepol": {"quota": 1, "window_s": 30, "burst": 1},
    }

    def fields(self, r, name):
        pol = r.headers.get("ratelimit-policy", "")
        rl = r.headers.get("ratelimit", "")
        self.assertEqual(r.header_count("RateLimit-Policy"), 1, r)
        self.assertEqual(r.header_count("RateLimit"), 1, r)
        m = re.match(POLICY_RE % name, pol)
        self.assertIsNotNone(m, "RateLimit-Policy %r" % pol)
        n = re.match(RL_RE % name, rl)
        self.assertIsNotNone(n, "RateLimit %r" % rl)
        # the same partition on both fields
        self.assertEqual(pol.rsplit(";pk=", 1)[1], rl.rsplit(";pk=", 1)[1])
        return (int(m.group(1)), int(m.group(2)), int(n.group(1)),
                int(n.group(2)))

    def test_mount_policy_limits_a_route_from_config(self):
        for left in (1, 0):
            r = self.d.get("/t/echo/ok")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.fields(r, "mountpol")[:3], (1, 60, left))
        r = self.d.get("/t/echo/ok")
        doc = self.assertProblem(r, 429, "rate_limit.exceeded")
        q, w, left, t = self.fields(r, "mountpol")
        self.assertEqual((q, w, left), (1, 60, 0))
        self.assertEqual(doc["extensions"]["retryAfterSeconds"],
                         int(r.headers["retry-after"]))
        self.assertTrue(0 < int(r.headers["retry-after"]) <= 60, r)

    def test_route_line_overrides_the_mount(self):
        r = self.d.get("/t/echo/params/x/y")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.fields(r, "routepol")[:3], (1, 30, 0))
        r = self.d.get("/t/echo/params/x/y")
        self.assertProblem(r, 429, "rate_limit.exceeded")
        self.assertEqual(self.fields(r, "routepol")[:3], (1, 30, 0))


class FirstPartyRouteLimitTest(DaemonTestCase):
    """The auth plugin's GET /v1/auth/me declares no policy: a routes line
    alone limits it."""

    CONFIG = auth_config(
        idp="local",
        plugin_auth={"routes": "\n    GET /v1/auth/me rate_limit=me"},
        extra={"rate_limit.me": {"quota": 1, "window_s": 60, "burst": 1,
                                 "key": "principal"}})

    def test_auth_me_limited_from_config(self):
        tok = bearer(mint_access_token(TEST_SECRET, "user_me", sid="s1"))
        r = self.d.get("/v1/auth/me", headers=tok)
        self.assertNotEqual(r.status, 429, r)
        self.assertRegex(r.headers.get("ratelimit-policy", ""),
                         r'^"me";q=1;w=60' + SF_PK + "$")
        r = self.d.get("/v1/auth/me", headers=tok)
        self.assertProblem(r, 429, "rate_limit.exceeded")
        # the bucket is the principal's: another user is not limited
        other = bearer(mint_access_token(TEST_SECRET, "user_2", sid="s2"))
        self.assertNotEqual(self.d.get("/v1/auth/me", headers=other).status,
                            429)
        self.assertRegex(r.headers.get("ratelimit", ""),
                         r'^"me";r=0;t=\d+' + SF_PK + "$")


class ConfigCheckTest(unittest.TestCase):
    def run_check(self, echo):
        with tempfile.TemporaryDirectory() as data:
            cfg = {"server": {"listen": "127.0.0.1:0",
                              "admin_listen": "127.0.0.1:0",
                              "data_dir": data},
                   "plugin.echo": echo_section(**echo),
                   "rate_limit.p": {"quota": 1}}
            path = os.path.join(data, "b.ini")
            with open(path, "w") as f:
                f.write(render_config(cfg))
            return harness.run_tool(["-t", "-c", path])

    def test_bad_values_refused(self):
        for echo, what in (
                ({"rate_limit": "nosuch"}, "[plugin.echo] rate_limit:"),
                ({"retries": "11"}, "expected an integer between 0 and 10"),
                ({"routes": "\n  GET /t/echo/ok rate_limit=nosuch"},
                 "[plugin.echo] routes:"),
                ({"routes": "\n  GET /t/echo/ok speed=3"},
                 "expected rate_limit=NAME or retries=0..10"),
                ({"routes": "\n  get /t/echo/ok retries=1"},
                 "expected 'METHOD /pattern"),
                # a typo'd route would be left unlimited: its load fails
                ({"routes": "\n  GET /t/echo/okk rate_limit=p"},
                 "routes: GET /t/echo/okk is not a route of the plugin")):
            with self.subTest(echo=echo):
                res = self.run_check(echo)
                self.assertNotEqual(res.returncode, 0, res.stderr)
                self.assertIn(what, res.stderr)
        res = self.run_check({"rate_limit": "p", "retries": "0",
                              "routes": "\n  GET /t/echo/ok retries=1"})
        self.assertEqual(res.returncode, 0, res.stderr)


class ConfigRetriesTest(TwoSimsCase):
    """up_one's upstream retries twice; [plugin.up_one] retries = 0 leaves
    it to the client, except /t/up_one/get/* which a routes line gives
    one retry. up_two's mount: retries = 0 for all its routes."""

    @classmethod
    def make_config(cls, one_url, two_url):
        up = {"retries": 2, "retry_base_ms": 10, "retry_cap_ms": 20,
              "retry_budget_percent": 100, "retry_budget_min": 1000,
              "breaker_mode": "disabled"}
        return up_config(
            one_url, two_url, one=dict(up), two=dict(up),
            plugin_one={"retries": 0,
                        "routes": "\n    GET /t/up_one/get/* retries=1"},
            plugin_two={"retries": 0})

    def test_attempts_per_mount_and_route(self):
        self.sim1.set_behavior(path="/r/503", status=503)
        self.sim2.set_behavior(path="/r/503", status=503)
        r = self.d.get("/t/up_one/get/r/503")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(self.sim1.count("/r/503"), 2)  # the route's 1 retry
        r = self.d.get("/t/up_two/get/r/503")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(self.sim2.count("/r/503"), 1)  # the mount's 0


if __name__ == "__main__":
    unittest.main()
