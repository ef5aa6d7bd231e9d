"""CORS on the API listener, in raw HTTP: a preflight (OPTIONS with Origin
and Access-Control-Request-Method) is answered 204 by the core before the
session check and the rate limit, with the methods the route table serves
at the path; an allowed origin gets Access-Control-Allow-Origin (echoed),
the credentials and exposed-headers lines on every answer, the core's
Problems included (401, 404, 413, 429, 503); a disallowed origin gets none
and is otherwise served as before; Vary: Origin whenever the answer depends
on it. The cors_* keys of [plugin.NAME] fall back to [server]; `-t` refuses
bad values and '*' together with credentials."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer, login, start_sim  # noqa: E402
from harness import Daemon, echo_section, run_tool, test_plugin  # noqa: E402

PORTAL = "http://portal.example.test:3000"
ADMIN_UI = "https://admin.example.test"
EVIL = "http://evil.example.test"
DEFAULT_EXPOSE = "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy"


def acl(r):
    """The Access-Control-* lines of an answer, lower-cased names."""
    return dict((k.lower(), v) for k, v in r.header_list
                if k.lower().startswith("access-control-"))


def vary(r):
    return [v.strip().lower() for k, vals in r.header_list
            if k.lower() == "vary" for v in vals.split(",")]


class CorsTest(unittest.TestCase):
    """[server]: portal may call, without credentials (echo inherits it).
    [plugin.whoami]: its own list (portal and the admin UI), with
    credentials, a rate limit of a burst of 2 on /t/whoami/limited.
    [plugin.initfail]: a plugin that failed to start (503)."""

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cfg = auth_config(
                cls.sim.url,
                server={"cors_origins": PORTAL, "cors_max_age": 120},
                extra={"rate_limit.tiny": {"quota": 1, "window_s": 60,
                                           "burst": 2, "key": "client"},
                       "plugin.echo": echo_section(),
                       "plugin.initfail": {"path": test_plugin("initfail"),
                                           "mount": "/t/initfail"}})
            cfg["plugin.whoami"].update({
                "limited_policy": "tiny",
                "cors_origins": "%s, %s" % (PORTAL, ADMIN_UI),
                "cors_credentials": True,
                "cors_headers": "Authorization, Content-Type, X-Trace"})
            cls.d = Daemon(cfg)
        except BaseException:
            cls.sim.stop()
            raise
        cls.token = login(cls.d, "alice").json()["accessToken"]

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def preflight(self, path, origin, method="GET", headers=None):
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        h.update(headers or {})
        return self.d.request("OPTIONS", path, headers=h)

    def assertAllowed(self, r, origin, credentials):
        where = "%r%s" % (r, self.d.diag(10))
        a = acl(r)
        self.assertEqual(a.get("access-control-allow-origin"), origin, where)
        self.assertEqual(r.header_count("Access-Control-Allow-Origin"), 1, r)
        if credentials:
            self.assertEqual(a.get("access-control-allow-credentials"),
                             "true", where)
        else:
            self.assertNotIn("access-control-allow-credentials", a, where)
        self.assertIn("origin", vary(r), where)
        return a

    def assertProblemAllowed(self, r, status, code, origin, credentials):
        self.assertEqual((r.status, r.code), (status, code), r)
        a = self.assertAllowed(r, origin, credentials)
        self.assertEqual(a.get("access-control-expose-headers"),
                         DEFAULT_EXPOSE, r)
        return a

    # ---- preflights ------------------------------------------------------

    def test_preflight_allowed_before_auth(self):
        """/t/whoami needs a session: the preflight (no credentials, as
        browsers send it) is answered 204 by the core, not 401."""
        r = self.preflight("/t/whoami", ADMIN_UI, "DELETE",
                           {"Access-Control-Request-Headers":
                            "authorization"})
        self.assertEqual(r.status, 204, r)
        a = self.assertAllowed(r, ADMIN_UI, credentials=True)
        self.assertEqual(a.get("access-control-allow-methods"),
                         "DELETE, GET, HEAD, POST", r)
        self.assertEqual(a.get("access-control-allow-headers"),
                         "Authorization, Content-Type, X-Trace", r)
        # whoami does not set cors_max_age: [server]'s value
        self.assertEqual(a.get("access-control-max-age"), "120", r)
        self.assertEqual(r.body, b"")
        self.assertIn("x-request-id", r.headers)

    def test_preflight_inherits_server_policy(self):
        r = self.preflight("/t/echo/validate", PORTAL, "POST")
        self.assertEqual(r.status, 204, r)
        a = self.assertAllowed(r, PORTAL, credentials=False)
        self.assertEqual(a.get("access-control-allow-methods"), "POST", r)
        self.assertEqual(a.get("access-control-allow-headers"),
                         "Authorization, Content-Type, X-Request-ID", r)
        self.assertEqual(a.get("access-control-max-age"), "120", r)

    def test_preflight_bypasses_rate_limit(self):
        """Preflights take no token: after many, the burst of 2 is whole."""
        for _ in range(5):
            r = self.preflight("/t/whoami/limited", PORTAL)
            self.assertEqual(r.status, 204, r)
            self.assertNotIn("ratelimit", r.headers, r)
        hdr = bearer(self.token)
        hdr["Origin"] = PORTAL
        got = [self.d.get("/t/whoami/limited", headers=hdr) for _ in range(3)]
        self.assertEqual([g.status for g in got[:2]], [200, 200], got)
        # the 429 of the core carries the CORS lines too, and exposes its
        # Retry-After and RateLimit fields to the page
        self.assertProblemAllowed(got[2], 429, "rate_limit.exceeded", PORTAL,
                                  credentials=True)
        self.assertIn("retry-after", got[2].headers)

    def test_preflight_disallowed_origin_is_plain(self):
        r = self.preflight("/t/whoami", EVIL, "POST")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(acl(r), {}, r)
        self.assertEqual(r.headers.get("allow"), "DELETE, GET, HEAD, POST", r)
        self.assertIn("origin", vary(r), r)

    def test_options_without_preflight_headers_unchanged(self):
        r = self.d.request("OPTIONS", "/t/whoami", headers={"Origin": PORTAL})
        self.assertEqual((r.status, r.code),
                         (405, "route.method_not_allowed"), r)
        self.assertAllowed(r, PORTAL, credentials=True)
        r = self.d.request("OPTIONS", "/t/echo/ok")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(acl(r), {}, r)

    def test_preflight_unknown_path_is_404_with_cors(self):
        r = self.preflight("/t/echo/nothing-here", PORTAL)
        self.assertProblemAllowed(r, 404, "route.not_found", PORTAL, False)

    # ---- actual requests -------------------------------------------------

    def test_allowed_origin_plain_answer(self):
        r = self.d.get("/t/echo/ok", headers={"Origin": PORTAL})
        self.assertEqual(r.status, 200, r)
        a = self.assertAllowed(r, PORTAL, credentials=False)
        self.assertEqual(a.get("access-control-expose-headers"),
                         DEFAULT_EXPOSE, r)
        self.assertNotIn("access-control-allow-methods", a, r)

    def test_disallowed_origin_unaffected(self):
        plain = self.d.get("/t/echo/ok")
        r = self.d.get("/t/echo/ok", headers={"Origin": EVIL})
        self.assertEqual((r.status, r.body), (plain.status, plain.body), r)
        self.assertEqual(acl(r), {}, r)
        self.assertIn("origin", vary(r), r)
        # an origin allowed elsewhere (whoami's list) is not allowed here
        r = self.d.get("/t/echo/ok", headers={"Origin": ADMIN_UI})
        self.assertEqual(acl(r), {}, r)
        # a near miss is not an exact match
        r = self.d.get("/t/echo/ok", headers={"Origin": PORTAL + "0"})
        self.assertEqual(acl(r), {}, r)
        r = self.d.get("/t/whoami", headers={"Origin": "null"})
        self.assertEqual((r.status, acl(r)), (401, {}), r)

    def test_no_origin_still_varies(self):
        r = self.d.get("/t/echo/ok")
        self.assertEqual(acl(r), {}, r)
        self.assertIn("origin", vary(r), r)

    def test_bearer_and_problems_carry_cors(self):
        hdr = bearer(self.token)
        hdr["Origin"] = ADMIN_UI
        r = self.d.get("/t/whoami", headers=hdr)
        self.assertEqual(r.status, 200, r)
        self.assertAllowed(r, ADMIN_UI, credentials=True)
        r = self.d.get("/t/whoami", headers={"Origin": ADMIN_UI})
        self.assertProblemAllowed(r, 401, "auth.unauthenticated", ADMIN_UI,
                                  True)
        r = self.d.get("/t/echo/missing", headers={"Origin": PORTAL})
        self.assertProblemAllowed(r, 404, "route.not_found", PORTAL, False)
        r = self.d.get("/t/initfail/x", headers={"Origin": PORTAL})
        self.assertProblemAllowed(r, 503, "plugin.unavailable", PORTAL, False)
        r = self.d.post("/t/echo/body", body=b"x" * 2000,
                        headers={"Origin": PORTAL})
        self.assertProblemAllowed(r, 413, "request.too_large", PORTAL,
                                  False)
        r = self.d.get("/t/echo/problem/echo.forbidden_key",
                       headers={"Origin": PORTAL})
        self.assertProblemAllowed(r, 403, "echo.forbidden_key", PORTAL, False)

    def test_streamed_proxy_answer_carries_cors(self):
        """A proxy route (streamed head): the core's lines are there too."""
        hdr = bearer(self.token)
        hdr["Origin"] = PORTAL
        r = self.d.get("/t/whoami/proxy/x", headers=hdr)
        self.assertAllowed(r, PORTAL, credentials=True)

    def test_proxy_upstream_cors_lines_are_dropped(self):
        """The mount's policy decides, not the upstream's own lines: one
        Access-Control-Allow-Origin for an allowed origin, none for
        another, the upstream's other headers kept."""
        path = "/t/whoami/proxy/cors"
        self.sim.set_behavior(path=path, status=200, body="up",
                              headers={"Access-Control-Allow-Origin": "*",
                                       "Access-Control-Max-Age": "99999",
                                       "X-Sim-End": "kept"})
        hdr = bearer(self.token)
        hdr["Origin"] = PORTAL
        r = self.d.get(path, headers=hdr)
        self.assertEqual((r.status, r.body), (200, b"up"), r)
        self.assertAllowed(r, PORTAL, credentials=True)
        self.assertNotIn("access-control-max-age", acl(r), r)
        self.assertEqual(r.headers.get("x-sim-end"), "kept", r)
        hdr["Origin"] = EVIL
        r = self.d.get(path, headers=hdr)
        self.assertEqual((r.status, acl(r)), (200, {}), r)
        self.assertEqual(r.headers.get("x-sim-end"), "kept", r)


class WildcardTest(unittest.TestCase):
    def test_any_origin_without_credentials(self):
        with Daemon({"server": {"cors_origins": "*"},
                     "plugin.echo": echo_section()}) as d:
            r = d.get("/t/echo/ok", headers={"Origin": EVIL})
            self.assertEqual(r.headers.get("access-control-allow-origin"),
                             "*", r)
            self.assertNotIn("origin", vary(r), r)
            r = d.request("OPTIONS", "/t/echo/ok",
                          headers={"Origin": EVIL,
                                   "Access-Control-Request-Method": "GET"})
            self.assertEqual(r.status, 204, r)
            self.assertEqual(r.headers.get("access-control-allow-methods"),
                             "GET, HEAD", r)

    def test_no_cors_configured(self):
        with Daemon({"plugin.echo": echo_section()}) as d:
            r = d.request("OPTIONS", "/t/echo/ok",
                          headers={"Origin": PORTAL,
                                   "Access-Control-Request-Method": "GET"})
            self.assertEqual(r.status, 405, r)
            self.assertEqual(acl(r), {}, r)
            self.assertNotIn("origin", vary(r), r)


class CorsConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-cors-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, server="", echo=""):
        path = os.path.join(self.tmp, "bulkhead.ini")
        with open(path, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1:0\n"
                    "admin_listen = 127.0.0.1:0\ndata_dir = %s\n%s\n"
                    "[plugin.echo]\npath = %s\nmount = /t/echo\n%s" %
                    (os.path.join(self.tmp, "data"), server,
                     test_plugin("echo"), echo))
        return path, run_tool(["-t", "-c", path])

    def assertRefused(self, line, section, key, what, **kw):
        path, res = self.check(**kw)
        self.assertNotEqual(res.returncode, 0, res.stderr)
        self.assertIn("%s:%d: [%s] %s: " % (path, line, section, key),
                      res.stderr)
        self.assertIn(what, res.stderr)

    def test_good(self):
        _, res = self.check(
            server="cors_origins = https://a.example, http://[::1]:8080\n"
                   "cors_credentials = true\ncors_max_age = 0\n",
            echo="cors_expose = X-Request-ID\ncors_headers =\n")
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_wildcard_with_credentials_refused(self):
        self.assertRefused(6, "server", "cors_credentials", "exact origins",
                           server="cors_origins = *\n"
                                  "cors_credentials = true\n")
        # the mount's credentials with [server]'s '*'
        self.assertRefused(10, "plugin.echo", "cors_credentials",
                           "exact origins", server="cors_origins = *\n",
                           echo="cors_credentials = yes\n")

    def test_bad_values_refused(self):
        self.assertRefused(5, "server", "cors_origins", "exact origins",
                           server="cors_origins = https://a.example/app\n")
        self.assertRefused(5, "server", "cors_origins", "exact origins",
                           server="cors_origins = null\n")
        self.assertRefused(5, "server", "cors_origins", "exact origins",
                           server="cors_origins = *, https://a.example\n")
        self.assertRefused(9, "plugin.echo", "cors_origins", "exact origins",
                           echo="cors_origins = a.example\n")
        self.assertRefused(9, "plugin.echo", "cors_max_age", "between 0",
                           echo="cors_max_age = 1h\n")
        self.assertRefused(5, "server", "cors_headers", "header names",
                           server="cors_headers = X-Ok, Bad:Name\n")
        self.assertRefused(9, "plugin.echo", "cors_credentials", "true/false",
                           echo="cors_credentials = maybe\n")


if __name__ == "__main__":
    unittest.main()
