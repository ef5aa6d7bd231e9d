"""Sessions end to end: the real daemon, the auth plugin against the
simulator's identity provider, the whoami test plugin as "a protected route
of another plugin", a real SQLite store.

Login -> me -> access token expiry -> silent refresh through the cookie on
another plugin's route (and on a proxy route) -> refresh expiry -> 401 for
JSON clients, 302 with the right query for a browser navigation; explicit
refresh for API clients; refresh-token reuse revokes the whole family;
logout; the CSRF check; cookie attributes; restart keeps sessions."""

import os
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import (ACCOUNTS, SIGNIN, Jar, auth_config, bearer,  # noqa: E402
                      browser_login, login, parse_set_cookies, start_sim,
                      wait_until)
from harness import Daemon  # noqa: E402

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class SessionTestBase(unittest.TestCase):
    AUTH = {}
    SERVER = {}

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cls.d = Daemon(auth_config(cls.sim.url, auth=cls.AUTH,
                                       server=cls.SERVER))
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def setUp(self):
        self.sim.clear()
        self.sim.reset_stats()

    def assertProblem(self, r, status, code):
        where = "%r%s" % (r, self.d.diag(10) if r.status != status else "")
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json", where)
        self.assertEqual(r.code, code, where)
        self.assertEqual(r.ext.get("requestId"), r.headers.get("x-request-id"))

    def origin(self):
        return "http://127.0.0.1:%d" % self.d.port()

    def assertCleared(self, r):
        c = parse_set_cookies(r)
        for name in ("__session", "__refresh"):
            self.assertIn(name, c, r)
            self.assertEqual(c[name][1].get("max-age"), "0", r)


class ExpiryFlowTest(SessionTestBase):
    """Short lifetimes: access 2 s, refresh 3 s (exp has one-second
    granularity, so a token lives between ttl - 1 and ttl seconds)."""
    AUTH = {"access_ttl_s": 2, "refresh_ttl_s": 3}

    def test_login_me_expiry_silent_refresh_refresh_expiry(self):
        d = self.d
        r = login(d, "alice")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["user"], {"id": "sim_user_alice"})
        self.assertEqual(doc["tokenType"], "Bearer")
        self.assertNotIn("refreshToken", doc)  # not asked for
        self.assertNotIn("email", r.body.decode())  # no personal data
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        jar = Jar()
        jar.update(r)
        self.assertEqual(jar.get("__session"), doc["accessToken"])
        self.assertTrue(jar.get("__refresh", ).startswith("rt_"))
        self.assertEqual(self.sim.count(SIGNIN), 1)

        me = d.get("/v1/auth/me", headers=bearer(doc["accessToken"]))
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json()["user"]["id"], "sim_user_alice")
        self.assertEqual(me.json()["session"]["kind"], "bearer")
        sid = me.json()["session"]["id"]
        self.assertTrue(sid.startswith("ses_"))
        me = d.get("/v1/auth/me", headers=jar.headers())
        self.assertEqual(me.json()["session"]["kind"], "cookie", me)

        # the access token expires
        wait_until(doc["expiresAt"] + 0.05)
        r = d.get("/v1/auth/me", headers=bearer(doc["accessToken"]))
        self.assertProblem(r, 401, "auth.token_expired")
        self.assertIn('error="invalid_token"',
                      r.headers.get("www-authenticate", ""))
        # the auth plugin's own routes are never refreshed silently
        r = d.get("/v1/auth/me", headers=jar.headers())
        self.assertProblem(r, 401, "auth.unauthenticated")
        self.assertNotIn("__session", parse_set_cookies(r))

        # another plugin's protected route: refreshed silently and served
        t_rotated = time.time()
        r = jar.update(d.get("/t/whoami", headers=jar.headers()))
        self.assertEqual(r.status, 200, r)
        who = r.json()
        self.assertEqual(who["kind"], "cookie")
        self.assertEqual(who["userId"], "sim_user_alice")
        self.assertEqual(who["sessionId"], sid)  # the same session family
        cookies = parse_set_cookies(r)
        self.assertIn("__session", cookies)
        self.assertIn("__refresh", cookies)
        self.assertNotEqual(cookies["__session"][0], doc["accessToken"])
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        self.assertGreater(who["expiresAt"], time.time())
        # refresh needs neither the identity provider nor the auth plugin
        self.assertEqual(self.sim.count(SIGNIN), 1)
        r = d.get("/t/whoami", headers=jar.headers())
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("set-cookie", r.headers)

        # the refresh token expires too (3 s after the rotation), and the
        # access token it came with before it
        wait_until(t_rotated + 3.1)
        r = d.get("/t/whoami",
                  headers=jar.headers(Accept="application/json"))
        self.assertProblem(r, 401, "auth.session_expired")
        self.assertCleared(r)
        r = d.get("/t/whoami?tab=2", headers=jar.headers(Accept=HTML))
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.headers["location"],
                         "/login?reason=session_expired")
        self.assertCleared(r)


class SessionTest(SessionTestBase):
    AUTH = {"csrf_origins": "https://portal.example.com"}
    SERVER = {"login_page": "/portal/login"}

    def test_no_credentials(self):
        r = self.d.get("/t/whoami")
        self.assertProblem(r, 401, "auth.unauthenticated")
        self.assertEqual(r.headers.get("www-authenticate"),
                         'Bearer realm="bulkhead"')
        r = self.d.get("/t/whoami", headers={"Accept": "application/json"})
        self.assertProblem(r, 401, "auth.unauthenticated")
        # routes without the flag see no principal and need none
        r = self.d.get("/t/whoami/open")
        self.assertEqual((r.status, r.json()), (200, {"principal": None}))

    def test_browser_navigation_redirects_with_the_original_path(self):
        r = self.d.get("/t/whoami?x=1&next=%2Fa%20b", headers={"Accept": HTML})
        self.assertEqual(r.status, 302, r)
        loc = r.headers["location"]
        self.assertTrue(loc.startswith("/portal/login?redirect="), loc)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
        self.assertEqual(q["redirect"], ["/t/whoami?x=1&next=%2Fa%20b"])
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        self.assertEqual(r.body, b"")
        # a navigation the browser marks as such, whatever it accepts
        r = self.d.get("/t/whoami", headers={"Sec-Fetch-Mode": "navigate"})
        self.assertEqual(r.status, 302, r)
        # a fetch() that prefers JSON, and any POST, get the Problem
        r = self.d.get("/t/whoami", headers={
            "Accept": "application/json, text/html;q=0.5"})
        self.assertProblem(r, 401, "auth.unauthenticated")
        r = self.d.post("/t/whoami", headers={"Accept": HTML})
        self.assertProblem(r, 401, "auth.unauthenticated")

    def test_redirect_never_leaves_the_site(self):
        # whatever the request, the Location is this site's login page and
        # the redirect parameter a path on this site
        for target in ("/t/whoami?u=https://evil.example/",
                       "/t/whoami?r=//evil.example",
                       "/t/whoami?%0d%0aSet-Cookie:x=1"):
            r = self.d.get(target, headers={"Accept": HTML})
            self.assertEqual(r.status, 302, r)
            loc = r.headers["location"]
            self.assertTrue(loc.startswith("/portal/login?redirect=/"), loc)
            self.assertNotIn("\r", loc)
            self.assertNotIn("\n", loc)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
            red = q["redirect"][0]
            self.assertTrue(red.startswith("/") and not red.startswith("//"),
                            red)
            self.assertEqual(r.header_count("set-cookie"), 0)

    def test_cookie_attributes(self):
        r = login(self.d, "bob")
        self.assertEqual(r.status, 200, r)
        c = parse_set_cookies(r)
        for name in ("__session", "__refresh"):
            value, attrs = c[name]
            self.assertTrue(value)
            self.assertIs(attrs.get("httponly"), True, r)
            self.assertEqual(attrs.get("samesite"), "Lax", r)
            self.assertEqual(attrs.get("path"), "/", r)
            self.assertNotIn("secure", attrs)  # cookie_secure = false here
            self.assertGreater(int(attrs["max-age"]), 3600)

    def test_explicit_refresh_for_api_clients_and_reuse(self):
        d = self.d
        r = login(d, "carol", include_refresh=True)
        self.assertEqual(r.status, 200, r)
        rt1 = r.json()["refreshToken"]
        self.assertTrue(rt1.startswith("rt_"))
        r2 = d.post("/v1/auth/refresh", body={"refreshToken": rt1})
        self.assertEqual(r2.status, 200, r2)
        rt2 = r2.json()["refreshToken"]
        self.assertNotEqual(rt1, rt2)
        self.assertEqual(r2.json()["user"]["id"], "sim_user_carol")
        self.assertEqual(d.get("/t/whoami", headers=bearer(
            r2.json()["accessToken"])).status, 200)
        # the spent token again: the whole family is revoked
        r3 = d.post("/v1/auth/refresh", body={"refreshToken": rt1})
        self.assertProblem(r3, 401, "auth.session_revoked")
        r4 = d.post("/v1/auth/refresh", body={"refreshToken": rt2})
        self.assertProblem(r4, 401, "auth.session_revoked")
        self.assertTrue(self.d.wait_event(
            lambda e: e.get("event") == "refresh_reuse"), self.d.diag())
        # nothing of the token reached the log
        for line in list(self.d.lines):
            self.assertNotIn(rt1, line)
            self.assertNotIn(rt2, line)
        # unknown and malformed tokens
        r = d.post("/v1/auth/refresh", body={"refreshToken": "rt_nope"})
        self.assertProblem(r, 401, "auth.unauthenticated")
        r = d.post("/v1/auth/refresh", body={"refreshToken": 7})
        self.assertProblem(r, 400, "request.invalid_body")
        r = d.post("/v1/auth/refresh")
        self.assertProblem(r, 401, "auth.unauthenticated")

    def test_cookie_reuse_revokes_the_family(self):
        d = self.d
        jar0 = browser_login(d, "alice")
        # the browser refreshes explicitly (POST with its cookies)
        jar1 = jar0.copy()
        r = jar1.update(d.post("/v1/auth/refresh", headers=jar1.headers(
            Origin=self.origin())))
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("refreshToken", r.json())  # cookies only
        self.assertNotEqual(jar0.get("__refresh"), jar1.get("__refresh"))
        # someone replays the old refresh cookie (no access cookie)
        stolen = Jar({"__refresh": jar0.get("__refresh")})
        r = d.get("/t/whoami", headers=stolen.headers())
        self.assertProblem(r, 401, "auth.session_revoked")
        self.assertCleared(r)
        # the legitimate holder's refresh token is dead as well
        r = d.get("/t/whoami", headers={
            "Cookie": "__refresh=" + jar1.get("__refresh")})
        self.assertProblem(r, 401, "auth.session_revoked")
        r = d.get("/t/whoami", headers={
            "Cookie": "__refresh=" + jar1.get("__refresh"), "Accept": HTML})
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.headers["location"],
                         "/portal/login?reason=session_revoked")

    def test_unknown_refresh_cookie(self):
        r = self.d.get("/t/whoami", headers={
            "Cookie": "__session=garbage; __refresh=rt_unknown"})
        self.assertProblem(r, 401, "auth.unauthenticated")
        self.assertCleared(r)
        r = self.d.get("/t/whoami", headers={
            "Cookie": "__refresh=rt_unknown", "Accept": HTML})
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.headers["location"],
                         "/portal/login?redirect=/t/whoami", r)

    def test_silent_refresh_on_a_proxy_route(self):
        jar = browser_login(self.d, "bob")
        r = jar.update(self.d.get("/t/whoami/proxy/echo", headers={
            "Cookie": "__refresh=" + jar.get("__refresh")}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("path"), "/t/whoami/proxy/echo")
        c = parse_set_cookies(r)
        self.assertIn("__session", c, r)
        self.assertIn("__refresh", c, r)
        self.assertEqual(self.sim.count("/t/whoami/proxy/echo"), 1)
        r = self.d.get("/t/whoami", headers=jar.headers())
        self.assertEqual(r.status, 200, r)

    def test_logout(self):
        d = self.d
        jar = browser_login(d, "alice")
        r = d.post("/v1/auth/logout", headers=jar.headers(
            Origin=self.origin()))
        self.assertEqual(r.status, 204, r)
        self.assertCleared(r)
        r = d.get("/t/whoami", headers={
            "Cookie": "__refresh=" + jar.get("__refresh")})
        self.assertProblem(r, 401, "auth.session_revoked")
        # idempotent, with or without cookies
        r = d.post("/v1/auth/logout", headers=jar.headers(
            Origin=self.origin()))
        self.assertEqual(r.status, 204, r)
        self.assertEqual(d.post("/v1/auth/logout").status, 204)
        # API clients log out with the token in the body
        r = login(d, "bob", include_refresh=True)
        rt = r.json()["refreshToken"]
        self.assertEqual(d.post("/v1/auth/logout",
                                body={"refreshToken": rt}).status, 204)
        r = d.post("/v1/auth/refresh", body={"refreshToken": rt})
        self.assertProblem(r, 401, "auth.session_revoked")
        # a cross-site page cannot log the user out
        jar = browser_login(d, "carol")
        r = d.post("/v1/auth/logout", headers=jar.headers(
            Origin="https://evil.example"))
        self.assertProblem(r, 403, "auth.csrf_rejected")

    def test_csrf_check_on_cookie_authenticated_unsafe_methods(self):
        d = self.d
        jar = browser_login(d, "alice")
        ok = lambda r: self.assertEqual(r.status, 200, r)  # noqa: E731
        # safe methods need no origin
        ok(d.get("/t/whoami", headers=jar.headers()))
        # unsafe ones do
        for h in ({}, {"Origin": "https://evil.example"},
                  {"Origin": "null"},
                  {"Sec-Fetch-Site": "cross-site"},
                  {"Sec-Fetch-Site": "same-site"},
                  {"Sec-Fetch-Site": "none"},
                  {"Origin": "http://127.0.0.1:1"}):
            for method in ("POST", "DELETE"):
                r = d.request(method, "/t/whoami", headers=jar.headers(**h))
                self.assertProblem(r, 403, "auth.csrf_rejected")
        ok(d.post("/t/whoami", headers=jar.headers(Origin=self.origin())))
        ok(d.post("/t/whoami", headers=jar.headers(
            **{"Sec-Fetch-Site": "same-origin"})))
        ok(d.request("DELETE", "/t/whoami", headers=jar.headers(
            Origin="https://portal.example.com")))  # csrf_origins
        # a bearer token is not ambient: no origin needed
        ok(d.post("/t/whoami", headers=bearer(jar.get("__session"))))
        # a silent refresh of a POST is checked the same way
        r = d.post("/t/whoami", headers={
            "Cookie": "__refresh=" + jar.get("__refresh"),
            "Origin": "https://evil.example"})
        self.assertProblem(r, 403, "auth.csrf_rejected")
        r = d.post("/v1/auth/refresh", headers=jar.headers(
            Origin="https://evil.example"))
        self.assertProblem(r, 403, "auth.csrf_rejected")
        # and the refresh token was not spent by the refused attempts
        r = d.post("/v1/auth/refresh", headers=jar.headers(
            Origin=self.origin()))
        self.assertEqual(r.status, 200, r)

    def test_principal_is_the_token_holder(self):
        r = login(self.d, "bob")
        tok = r.json()["accessToken"]
        who = self.d.get("/t/whoami", headers=bearer(tok)).json()
        self.assertEqual(who["userId"], ACCOUNTS["bob"][2])
        self.assertEqual(who["kind"], "bearer")
        self.assertTrue(who["sessionId"].startswith("ses_"))


class GraceTest(SessionTestBase):
    """A browser that sends two requests at once with the same expired
    session both refresh; the second within refresh_grace_s is served
    without new cookies and does not revoke anything."""
    AUTH = {"refresh_grace_s": 30}

    def test_concurrent_refresh_within_grace(self):
        jar = browser_login(self.d, "alice")
        old = {"Cookie": "__refresh=" + jar.get("__refresh")}
        r1 = jar.update(self.d.get("/t/whoami", headers=old))
        self.assertEqual(r1.status, 200, r1)
        self.assertIn("__refresh", parse_set_cookies(r1))
        r2 = self.d.get("/t/whoami", headers=old)
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r2.header_count("set-cookie"), 0)
        # the family lives on
        r3 = self.d.get("/t/whoami", headers={
            "Cookie": "__refresh=" + jar.get("__refresh")})
        self.assertEqual(r3.status, 200, r3)
        # explicit refresh with the spent token inside the grace: refused,
        # but without revoking the family
        r4 = self.d.post("/v1/auth/refresh", headers={
            "Cookie": old["Cookie"], "Origin": "http://127.0.0.1:%d" %
            self.d.port()})
        self.assertProblem(r4, 401, "auth.unauthenticated")


class RestartTest(unittest.TestCase):
    """The store is a real file: sessions survive a restart, with a
    configured secret and with the generated one (no jwt_secret)."""

    def run_restart(self, secret):
        data = tempfile.mkdtemp(prefix="bulkhead-auth-restart-")
        sim = start_sim()
        try:
            cfg = auth_config(sim.url, server={"data_dir": data},
                              auth={"cookie_secure": True,
                                    "jwt_secret": secret})
            d = Daemon(cfg)
            try:
                r = login(d, "alice")
                self.assertEqual(r.status, 200, r)
                c = parse_set_cookies(r)
                # Secure (and so __Host- names) by default
                self.assertIs(c["__Host-session"][1].get("secure"), True, r)
                self.assertIs(c["__Host-refresh"][1].get("secure"), True, r)
                jar = Jar()
                jar.update(r)
            finally:
                d.stop()
            if secret is None:
                path = os.path.join(data, "jwt.secret")
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            self.assertEqual(os.stat(os.path.join(data, "identity.db"))
                             .st_mode & 0o777, 0o600)
            d = Daemon(cfg)
            try:
                r = d.get("/t/whoami",
                          headers=bearer(jar.get("__Host-session")))
                self.assertEqual(r.status, 200, r)
                r = d.get("/t/whoami", headers={
                    "Cookie": "__Host-refresh=" + jar.get("__Host-refresh")})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["userId"], "sim_user_alice")
                self.assertIn("__Host-refresh", parse_set_cookies(r))
                self.assertEqual(sim.count(SIGNIN), 1)
            finally:
                d.stop()
        finally:
            sim.stop()
            shutil.rmtree(data, ignore_errors=True)

    def test_restart_keeps_sessions(self):
        self.run_restart("test-secret-0123456789-abcdefghij-KLMNOP")

    def test_restart_keeps_sessions_with_the_generated_secret(self):
        self.run_restart(None)


if __name__ == "__main__":
    harness.main()
