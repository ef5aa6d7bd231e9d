"""Forged and broken credentials are refused (401 auth.unauthenticated, the
handler never runs), on the wire: alg none, HS256 signed with the RS256
public key, a wrong signature, expired, wrong aud / iss, missing exp,
garbage. Also what start-up refuses: a short secret, a missing secret
variable, an identity store the migrations cannot bring up to date (the
file is left as it was); and the fail-closed default without [auth]."""

import os
import shutil
import sqlite3
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import (FIXTURES, auth_config, bearer, login,  # noqa: E402
                      start_sim)
from auth_tokens import (TEST_SECRET, b64url, mint_access_token,  # noqa: E402
                         mint_token)
from harness import Daemon, render_config, run_tool, test_plugin  # noqa: E402


def claims(**kw):
    now = int(time.time())
    c = {"iss": "bulkhead", "aud": "bulkhead", "sub": "mallory",
         "typ": "access", "iat": now, "exp": now + 300}
    c.update(kw)
    return dict((k, v) for k, v in c.items() if v is not None)


HS = {"alg": "HS256", "typ": "JWT"}


class ForgedHS256Test(harness.DaemonTestCase):
    CONFIG = auth_config(idp="local")

    def refused(self, token, why):
        for headers in (bearer(token), {"Cookie": "__session=" + token}):
            r = self.d.get("/t/whoami", headers=headers)
            self.assertProblem(r, 401, "auth.unauthenticated",
                               "%s (%r)" % (why, headers))

    def test_control_a_good_token_passes(self):
        r = self.d.get("/t/whoami", headers=bearer(
            mint_access_token(TEST_SECRET, "user_ok", sid="s1",
                              scope="read")))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["userId"], "user_ok")
        self.assertEqual(r.json()["scopes"], "read")

    def test_forged_tokens(self):
        now = int(time.time())
        cases = {
            "alg none, no signature":
                mint_token(TEST_SECRET, {"alg": "none", "typ": "JWT"},
                           claims(), signature=b""),
            "alg none, a signature anyway":
                mint_token(TEST_SECRET, {"alg": "none"}, claims()),
            "alg NONE":
                mint_token(TEST_SECRET, {"alg": "NONE"}, claims(),
                           signature=b"x"),
            "HS512": mint_token(TEST_SECRET, {"alg": "HS512"}, claims()),
            "no alg": mint_token(TEST_SECRET, {"typ": "JWT"}, claims()),
            "wrong secret":
                mint_token("another-secret-0123456789-abcdefghijkl", HS,
                           claims()),
            "empty secret": mint_token("", HS, claims()),
            # expired AND wrong otherwise: never told "expired"
            "expired, wrong secret":
                mint_token("another-secret-0123456789-abcdefghijkl", HS,
                           claims(exp=now - 5)),
            "expired, wrong issuer": mint_access_token(
                TEST_SECRET, "u", exp=now - 5, iss="https://evil.example"),
            "expired, wrong audience": mint_access_token(
                TEST_SECRET, "u", exp=now - 5, aud="portal"),
            "expired, not an access token": mint_token(
                TEST_SECRET, HS, claims(exp=now - 5, typ="refresh")),
            "expired, missing sub": mint_token(
                TEST_SECRET, HS, claims(exp=now - 5, sub=None)),
            "expired, alg none": mint_token(
                TEST_SECRET, {"alg": "none"}, claims(exp=now - 5),
                signature=b""),
            "not yet valid": mint_access_token(TEST_SECRET, "u",
                                               nbf=now + 3600),
            "issued in the future": mint_access_token(TEST_SECRET, "u",
                                                      iat=now + 3600),
            "wrong audience": mint_access_token(TEST_SECRET, "u",
                                                aud="portal"),
            "wrong issuer": mint_access_token(TEST_SECRET, "u",
                                              iss="https://evil.example"),
            "missing exp": mint_token(TEST_SECRET, HS, claims(exp=None)),
            "exp as a string": mint_token(TEST_SECRET, HS,
                                          claims(exp=str(now + 300))),
            "missing iss": mint_token(TEST_SECRET, HS, claims(iss=None)),
            "missing sub": mint_token(TEST_SECRET, HS, claims(sub=None)),
            "not an access token": mint_token(TEST_SECRET, HS,
                                              claims(typ="refresh")),
            "crit header": mint_token(TEST_SECRET, {"alg": "HS256",
                                                    "crit": ["exp"]},
                                      claims()),
        }
        good = mint_access_token(TEST_SECRET, "u")
        h, p, s = good.split(".")
        cases["flipped signature"] = "%s.%s.%s" % (
            h, p, ("B" if s[0] == "A" else "A") + s[1:])
        cases["payload swapped"] = "%s.%s.%s" % (
            h, b64url('{"iss":"bulkhead","aud":"bulkhead","sub":"admin",'
                      '"typ":"access","exp":%d}' % (now + 300)), s)
        cases["signature dropped"] = "%s.%s." % (h, p)
        cases["two parts"] = "%s.%s" % (h, p)
        for garbage in ("", "x", "a.b.c", "....", "not a token at all",
                        "eyJhbGciOiJIUzI1NiJ9.%%%.AAAA", "A" * 9000,
                        good + ".extra", good.replace(".", "..", 1)):
            cases["garbage %r" % garbage[:20]] = garbage
        for why, tok in cases.items():
            self.refused(tok, why)
        for line in self.d.lines:
            self.assertNotIn(good, line)

    def test_expired_bearer_token_reads_token_expired(self):
        # validly signed, every claim good, only past its exp: the client
        # is told to refresh (RFC 6750 invalid_token), not to sign in
        tok = mint_access_token(TEST_SECRET, "u", exp=int(time.time()) - 5)
        r = self.d.get("/t/whoami", headers=bearer(tok))
        self.assertProblem(r, 401, "auth.token_expired")
        self.assertEqual(r.header_count("WWW-Authenticate"), 1, r)
        self.assertEqual(r.headers.get("www-authenticate"),
                         'Bearer error="invalid_token", '
                         'error_description="expired"', r)
        # no token at all still reads auth.unauthenticated, with the realm
        r = self.d.get("/t/whoami")
        self.assertProblem(r, 401, "auth.unauthenticated")
        self.assertEqual(r.headers.get("www-authenticate"),
                         'Bearer realm="bulkhead"', r)
        # the session cookie (a browser, refreshed by the core) unchanged
        r = self.d.get("/t/whoami", headers={"Cookie": "__session=" + tok})
        self.assertProblem(r, 401, "auth.unauthenticated")

    def test_other_schemes(self):
        tok = mint_access_token(TEST_SECRET, "u")
        for value in ("Basic dXNlcjpwYXNz", "Token " + tok, "Bearer",
                      "bearer  " + "x"):
            r = self.d.get("/t/whoami", headers={"Authorization": value})
            self.assertProblem(r, 401, "auth.unauthenticated", value)
        # a bad Authorization header is not rescued by a good cookie
        r = self.d.get("/t/whoami", headers={
            "Authorization": "Bearer x", "Cookie": "__session=" + tok})
        self.assertProblem(r, 401, "auth.unauthenticated")
        # the scheme is case-insensitive (RFC 9110)
        r = self.d.get("/t/whoami", headers={"Authorization": "bearer " + tok})
        self.assertEqual(r.status, 200, r)


class ForgedRS256Test(unittest.TestCase):
    """jwt_alg = RS256: the daemon signs with the private key; a token
    HMAC-signed with the public key's PEM (the classic algorithm confusion
    libjwt 1.10 falls for when it is handed the token's own alg) is
    refused."""

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        cls.pub = os.path.join(FIXTURES, "rs256-test-public.pem")
        cfg = auth_config(cls.sim.url, secret=None, auth={
            "jwt_alg": "RS256",
            "jwt_private_key": os.path.join(FIXTURES,
                                            "rs256-test-private.pem"),
            "jwt_public_key": "@file:" + cls.pub})
        try:
            cls.d = Daemon(cfg)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def test_rs256(self):
        r = login(self.d, "alice")
        self.assertEqual(r.status, 200, r)
        tok = r.json()["accessToken"]
        self.assertTrue(tok.startswith(b64url('{"alg":"RS256"')[:10]), tok)
        r = self.d.get("/t/whoami", headers=bearer(tok))
        self.assertEqual(r.status, 200, r)
        with open(self.pub, "rb") as f:
            pem = f.read()
        for header in ({"alg": "HS256", "typ": "JWT"},
                       {"alg": "RS256", "typ": "JWT"}):
            forged = mint_token(pem, header, claims(sub="sim_user_alice"))
            r = self.d.get("/t/whoami", headers=bearer(forged))
            self.assertEqual(r.status, 401, (header, r))
            self.assertEqual(r.code, "auth.unauthenticated")
        # an HS256 token with the test secret means nothing here either
        r = self.d.get("/t/whoami", headers=bearer(
            mint_access_token(TEST_SECRET, "u")))
        self.assertEqual(r.status, 401, r)


def write_config(tmp, sections):
    path = os.path.join(tmp, "bulkhead.ini")
    with open(path, "w") as f:
        f.write(render_config(sections))
    return path


class StartupTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-auth-start-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sections(self, **auth):
        cfg = {"server": {"listen": "127.0.0.1:0",
                          "admin_listen": "127.0.0.1:0",
                          "data_dir": self.data, "workers": 0},
               "plugin.whoami": {"path": test_plugin("whoami"),
                                 "mount": "/t/whoami"}}
        if auth:
            cfg["auth"] = auth
        return cfg

    def refused(self, sections, *needles, env=None):
        path = write_config(self.tmp, sections)
        for args in (["-t", "-c", path], ["-c", path]):
            p = run_tool(args, env=env, timeout=20)
            self.assertNotEqual(p.returncode, 0, (args, p.stdout, p.stderr))
            for n in needles:
                self.assertIn(n, p.stderr, (args, p.stderr))
        return p

    def test_short_secret_is_refused(self):
        p = self.refused(self.sections(jwt_secret="x" * 31),
                         "[auth] jwt_secret", "at least 32 bytes (got 31)")
        self.assertNotIn("x" * 31, p.stderr)  # the secret is never echoed
        self.refused(self.sections(jwt_secret="@env:BH_TEST_SECRET"),
                     "at least 32 bytes (got 5)",
                     env={"BH_TEST_SECRET": "short"})
        self.refused(self.sections(jwt_secret="@env:BH_TEST_UNSET"),
                     "BH_TEST_UNSET is not set")
        self.refused(self.sections(jwt_secret="@file:/nonexistent/secret"),
                     "cannot read /nonexistent/secret")
        self.refused(self.sections(jwt_alg="HS257"), "[auth] jwt_alg")
        self.refused(self.sections(jwt_alg="RS256"), "jwt_public_key",
                     "required")
        self.refused(self.sections(
            jwt_alg="ES256",
            jwt_private_key=os.path.join(FIXTURES, "es256-test-private.pem"),
            jwt_public_key=os.path.join(FIXTURES, "rs256-test-public.pem")),
            "do not make a working ES256 key pair")
        self.refused(self.sections(access_ttl_s="0"), "[auth] access_ttl_s")
        self.refused(self.sections(csrf_origins="portal.example.com"),
                     "[auth] csrf_origins")
        self.refused(self.sections(no_such_key="1"), "[auth] no_such_key",
                     "unknown key")
        self.refused(self.sections(api_key_scopes="read, Admin"),
                     "[auth] api_key_scopes", "a-z")
        self.refused(self.sections(api_key_scopes="read " + "x" * 65),
                     "[auth] api_key_scopes")
        self.refused(self.sections(revoked_sessions_max="63"),
                     "[auth] revoked_sessions_max", "between 64 and")
        self.refused(self.sections(revoked_sessions_max="lots"),
                     "[auth] revoked_sessions_max")
        self.refused(self.sections(token_cache_size="1048577"),
                     "[auth] token_cache_size", "between 0 and 1048576")
        self.refused(self.sections(token_cache_size="-1"),
                     "[auth] token_cache_size")

    def test_secret_from_file_and_environment(self):
        sf = os.path.join(self.tmp, "secret")
        with open(sf, "w") as f:
            f.write(TEST_SECRET + "\n")
        path = write_config(self.tmp, self.sections(jwt_secret="@file:" + sf))
        p = run_tool(["-t", "-c", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        with Daemon(self.sections(), env={
                "BULKHEAD_AUTH_JWT_SECRET": TEST_SECRET}) as d:
            r = d.get("/t/whoami",
                      headers=bearer(mint_access_token(TEST_SECRET, "u")))
            self.assertEqual(r.status, 200, r)

    def test_without_auth_section_routes_fail_closed(self):
        with Daemon(self.sections()) as d:
            for h in ({}, bearer(mint_access_token(TEST_SECRET, "u")),
                      {"Cookie": "__refresh=rt_x"}):
                r = d.get("/t/whoami", headers=h)
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.code, "auth.unauthenticated")
            self.assertTrue(d.wait_event(
                lambda e: e.get("event") == "auth_secret_generated"))
        st = os.stat(os.path.join(self.data, "jwt.secret"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertGreaterEqual(st.st_size, 64)

    def db(self):
        os.makedirs(self.data, exist_ok=True)
        return sqlite3.connect(os.path.join(self.data, "identity.db"))

    def test_newer_schema_is_refused(self):
        c = self.db()
        c.execute("PRAGMA user_version = 99")
        c.commit()
        c.close()
        self.refused_run("schema version 99, newer than this bulkhead")
        c = self.db()
        self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 99)
        c.close()

    def test_failed_migration_leaves_the_file_as_it_was(self):
        # a file at version 1 that already has a table migration 2 creates:
        # migration 2 fails, and 3 must not be applied either
        c = self.db()
        c.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY)")
        c.execute("CREATE TABLE api_keys (id TEXT)")
        c.execute("PRAGMA user_version = 1")
        c.commit()
        c.close()
        self.refused_run("002_api_keys.sql failed",
                         "stays at schema version 1")
        c = self.db()
        self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 1)
        tables = set(r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        c.close()
        self.assertNotIn("users", tables)
        self.assertNotIn("bh_schema_migrations", tables)

    def test_not_a_database(self):
        os.makedirs(self.data, exist_ok=True)
        with open(os.path.join(self.data, "identity.db"), "wb") as f:
            f.write(b"this is not a database" * 100)
        self.refused_run("identity.db", "not a database")

    def refused_run(self, *needles):
        path = write_config(self.tmp, self.sections(jwt_secret=TEST_SECRET))
        p = run_tool(["-c", path], timeout=20)
        self.assertEqual(p.returncode, 1, (p.stdout, p.stderr))
        for n in needles:
            self.assertIn(n, p.stderr)
        self.assertNotIn("listening", p.stdout)


if __name__ == "__main__":
    harness.main()
