"""Ending sessions, and the session cookies' names: the real daemon with
two worker processes, the auth plugin against the simulator's identity
provider, the whoami and echo test plugins.

- logout with only `Authorization: Bearer` revokes the session that token
  carries, so its refresh token stops working
- a revoked session's access tokens stop working at once in every worker
  (the revoked-session set in shared memory), also after a restart
- with cookie_secure the cookies are __Host-session / __Host-refresh
  (Secure, Path=/, no Domain) and the unprefixed names mean nothing
- a Cookie header naming a session cookie twice is refused: 401
  auth.ambiguous_credentials"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import (Jar, auth_config, bearer, login,  # noqa: E402
                      parse_set_cookies, start_sim)
from harness import Daemon, echo_section  # noqa: E402
from workers import pinned_conns  # noqa: E402


def whoami_raw(conn, headers):
    """GET /t/whoami over a pinned keep-alive connection."""
    lines = "".join("%s: %s\r\n" % kv for kv in headers.items())
    conn.send("GET /t/whoami HTTP/1.1\r\nHost: t\r\n%s\r\n" % lines)
    r = conn.read_response(5.0)
    if r is None:
        raise AssertionError("no answer to GET /t/whoami")
    return r


class RevocationTestBase(unittest.TestCase):
    AUTH = {}
    WORKERS = 2

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        cls.data = tempfile.mkdtemp(prefix="bulkhead-auth-revoke-")
        cls.cfg = auth_config(cls.sim.url, auth=cls.AUTH, server={
            "workers": cls.WORKERS, "data_dir": cls.data},
            extra={"plugin.echo": echo_section()})
        try:
            cls.d = Daemon(cls.cfg)
        except BaseException:
            cls.sim.stop()
            shutil.rmtree(cls.data, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()
            shutil.rmtree(cls.data, ignore_errors=True)

    def assertProblem(self, r, status, code):
        where = "%r%s" % (r, self.d.diag(10) if r.status != status else "")
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json", where)
        self.assertEqual(r.code, code, where)

    def origin(self):
        return "http://127.0.0.1:%d" % self.d.port()

    def on_both_workers(self, headers, per_worker=3):
        """The answers to whoami with `headers` on fresh connections, as
        {pid: [status, ...]}, over both workers."""
        conns = pinned_conns(self.d, per_worker=per_worker)
        try:
            self.assertEqual(len(conns), 2, conns)
            return {pid: [whoami_raw(c, headers) for c in lst]
                    for pid, lst in conns.items()}
        finally:
            for lst in conns.values():
                for c in lst:
                    c.close()


class LogoutTest(RevocationTestBase):
    def test_bearer_only_logout_revokes_the_session(self):
        d = self.d
        r = login(d, "alice")
        self.assertEqual(r.status, 200, r)
        jar = Jar()
        jar.update(r)
        token = r.json()["accessToken"]
        self.assertEqual(d.get("/t/whoami", headers=bearer(token)).status, 200)
        # an API client holding only its access token logs out
        r = d.post("/v1/auth/logout", headers=bearer(token))
        self.assertEqual(r.status, 204, r)
        # the session's refresh token no longer works ...
        r = d.post("/v1/auth/refresh", headers={
            "Cookie": "__refresh=" + jar.get("__refresh"),
            "Origin": self.origin()})
        self.assertProblem(r, 401, "auth.session_revoked")
        # ... nor silently on another plugin's route
        r = d.get("/t/whoami", headers={
            "Cookie": "__refresh=" + jar.get("__refresh")})
        self.assertProblem(r, 401, "auth.session_revoked")
        # and its access token is refused at once
        self.assertProblem(d.get("/t/whoami", headers=bearer(token)), 401,
                           "auth.session_revoked")
        # logout stays idempotent, with a dead token too
        self.assertEqual(d.post("/v1/auth/logout",
                                headers=bearer(token)).status, 204)
        self.assertEqual(d.post("/v1/auth/logout",
                                headers=bearer("x.y.z")).status, 204)

    def test_session_cookie_only_logout_passes_the_origin_check(self):
        d = self.d
        jar = Jar()
        jar.update(login(d, "bob"))
        only = {"Cookie": "__session=" + jar.get("__session")}
        r = d.post("/v1/auth/logout", headers=dict(
            only, Origin="https://evil.example"))
        self.assertProblem(r, 403, "auth.csrf_rejected")
        self.assertEqual(d.get("/t/whoami", headers=only).status, 200)
        r = d.post("/v1/auth/logout", headers=dict(only, Origin=self.origin()))
        self.assertEqual(r.status, 204, r)
        self.assertProblem(d.get("/t/whoami", headers=only), 401,
                           "auth.session_revoked")
        r = d.get("/t/whoami", headers=jar.headers())
        self.assertProblem(r, 401, "auth.session_revoked")


class RevokedEverywhereTest(RevocationTestBase):
    def test_logout_on_one_connection_ends_the_token_in_every_worker(self):
        d = self.d
        r = login(d, "alice")
        jar = Jar()
        jar.update(r)
        token = r.json()["accessToken"]
        other = login(d, "bob").json()["accessToken"]
        before = self.on_both_workers(bearer(token))
        for pid, answers in before.items():
            self.assertEqual([a.status for a in answers], [200] * 3, pid)
        # logout on one connection (cookies, like a browser)
        r = d.post("/v1/auth/logout", headers=jar.headers(
            Origin=self.origin()))
        self.assertEqual(r.status, 204, r)
        # at once, on fresh connections over both workers
        after = self.on_both_workers(bearer(token))
        for pid, answers in after.items():
            self.assertEqual([(a.status, a.code) for a in answers],
                             [(401, "auth.session_revoked")] * 3, pid)
        after = self.on_both_workers(
            {"Cookie": "__session=" + jar.get("__session")}, per_worker=1)
        for pid, answers in after.items():
            self.assertEqual(answers[0].status, 401, (pid, answers))
        # another session is untouched
        for pid, answers in self.on_both_workers(bearer(other)).items():
            self.assertEqual([a.status for a in answers], [200] * 3, pid)

    def test_refresh_reuse_ends_the_access_tokens_too(self):
        d = self.d
        r = login(d, "carol", include_refresh=True)
        first = r.json()
        r = d.post("/v1/auth/refresh",
                   body={"refreshToken": first["refreshToken"]})
        self.assertEqual(r.status, 200, r)
        newer = r.json()["accessToken"]
        # the spent token again: reuse, the whole family is revoked
        r = d.post("/v1/auth/refresh",
                   body={"refreshToken": first["refreshToken"]})
        self.assertProblem(r, 401, "auth.session_revoked")
        for tok in (first["accessToken"], newer):
            for pid, answers in self.on_both_workers(bearer(tok),
                                                     per_worker=1).items():
                self.assertEqual((answers[0].status, answers[0].code),
                                 (401, "auth.session_revoked"), pid)

    def test_a_restart_remembers_revocations(self):
        d = self.d
        r = login(d, "alice")
        token = r.json()["accessToken"]
        self.assertEqual(d.post("/v1/auth/logout",
                                headers=bearer(token)).status, 204)
        live = login(d, "bob").json()["accessToken"]
        d.stop()
        type(self).d = Daemon(self.cfg)
        d = self.d
        self.assertProblem(d.get("/t/whoami", headers=bearer(token)), 401,
                           "auth.session_revoked")
        self.assertEqual(d.get("/t/whoami", headers=bearer(live)).status, 200)
        self.assertTrue(d.wait_event(
            lambda e: e.get("event") == "revoked_sessions_loaded"))


class FullSetTest(RevocationTestBase):
    """The set has 64 slots: revocations that find no room fail closed
    (every older token refused until refreshed), never evict."""
    AUTH = {"revoked_sessions_max": 64}
    WORKERS = 1

    def test_full_set_fails_closed(self):
        d = self.d
        keep = Jar()
        keep.update(login(d, "bob"))
        kept = keep.get("__session")
        sessions = []
        for _ in range(70):
            r = login(d, "alice")
            self.assertEqual(r.status, 200, r)
            sessions.append(r.json()["accessToken"])
        for tok in sessions:
            self.assertEqual(d.post("/v1/auth/logout",
                                    headers=bearer(tok)).status, 204)
        self.assertTrue(d.wait_event(
            lambda e: e.get("event") == "revoked_set_full"))
        # every revoked token is refused (none was evicted) ...
        for tok in sessions:
            r = d.get("/t/whoami", headers=bearer(tok))
            self.assertEqual(r.status, 401, r)
        # ... and so is an older live one, until it is refreshed
        r = d.get("/t/whoami", headers=bearer(kept))
        self.assertProblem(r, 401, "auth.session_expired")
        old_refresh = keep.get("__refresh")
        r = keep.update(d.get("/t/whoami", headers={
            "Cookie": "__session=%s; __refresh=%s" % (kept, old_refresh)}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["userId"], "sim_user_bob")
        # silently refreshed: the refresh token rotated
        self.assertNotEqual(keep.get("__refresh"), old_refresh)


class HostCookieTest(RevocationTestBase):
    AUTH = {"cookie_secure": True}
    WORKERS = 0

    def test_host_prefixed_names(self):
        d = self.d
        r = login(d, "alice")
        c = parse_set_cookies(r)
        self.assertEqual(sorted(c), ["__Host-refresh", "__Host-session"], r)
        for name in c:
            attrs = c[name][1]
            self.assertIs(attrs.get("secure"), True, r)
            self.assertEqual(attrs.get("path"), "/", r)
            self.assertNotIn("domain", attrs, r)
            self.assertIs(attrs.get("httponly"), True, r)
        session = c["__Host-session"][0]
        refresh = c["__Host-refresh"][0]
        r = d.get("/t/whoami", headers={"Cookie": "__Host-session=" + session})
        self.assertEqual(r.status, 200, r)
        # the unprefixed names are not ours any more
        r = d.get("/t/whoami", headers={"Cookie": "__session=" + session})
        self.assertProblem(r, 401, "auth.unauthenticated")
        r = d.get("/t/whoami", headers={"Cookie": "__refresh=" + refresh})
        self.assertProblem(r, 401, "auth.unauthenticated")
        # silent refresh with the prefixed refresh cookie
        r = d.get("/t/whoami", headers={"Cookie": "__Host-refresh=" + refresh})
        self.assertEqual(r.status, 200, r)
        self.assertIn("__Host-refresh", parse_set_cookies(r))
        # logout clears the prefixed cookies
        jar = Jar()
        jar.update(login(d, "bob"))
        r = d.post("/v1/auth/logout", headers=jar.headers(
            Origin=self.origin()))
        self.assertEqual(r.status, 204, r)
        cleared = parse_set_cookies(r)
        for name in ("__Host-session", "__Host-refresh"):
            self.assertEqual(cleared[name][1].get("max-age"), "0", r)
            self.assertIs(cleared[name][1].get("secure"), True, r)

    def test_duplicate_host_cookie_is_refused(self):
        d = self.d
        good = parse_set_cookies(login(d, "alice"))["__Host-session"][0]
        for cookie in ("__Host-session=%s; __Host-session=forged" % good,
                       "__Host-session=forged; __Host-session=%s" % good,
                       "__Host-session=%s; __Host-session=%s" % (good, good)):
            r = d.get("/t/whoami", headers={"Cookie": cookie})
            self.assertProblem(r, 401, "auth.ambiguous_credentials")
            self.assertIn("bearer", r.headers.get("www-authenticate", "")
                          .lower())


class DuplicateCookieTest(RevocationTestBase):
    WORKERS = 0

    def test_duplicate_cookies_are_refused(self):
        d = self.d
        jar = Jar()
        jar.update(login(d, "alice"))
        good, refresh = jar.get("__session"), jar.get("__refresh")
        # the first copy used to win: a planted one in front chose the
        # session; now neither is used
        for cookie in ("__session=forged; __session=" + good,
                       "__session=%s; other=1; __session=forged" % good,
                       "__session=%s; __refresh=%s; __refresh=rt_x" % (
                           good, refresh)):
            r = d.get("/t/whoami", headers={"Cookie": cookie})
            self.assertProblem(r, 401, "auth.ambiguous_credentials")
        # two Cookie header lines count as one list
        raw = d.raw("GET /t/whoami HTTP/1.1\r\nHost: t\r\nCookie: __session="
                    "%s\r\nCookie: __session=forged\r\n\r\n" % good)
        self.assertEqual(raw.responses[0].status, 401, raw)
        self.assertEqual(raw.responses[0].code, "auth.ambiguous_credentials")
        # the refresh endpoint refuses a doubled refresh cookie too
        r = d.post("/v1/auth/refresh", headers={
            "Cookie": "__refresh=%s; __refresh=rt_x" % refresh,
            "Origin": self.origin()})
        self.assertProblem(r, 401, "auth.ambiguous_credentials")
        # one copy of each: fine, and the refresh token was not spent
        r = d.get("/t/whoami", headers={"Cookie": "__session=" + good})
        self.assertEqual(r.status, 200, r)
        r = d.post("/v1/auth/refresh", headers={
            "Cookie": "__refresh=" + refresh, "Origin": self.origin()})
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    harness.main()
