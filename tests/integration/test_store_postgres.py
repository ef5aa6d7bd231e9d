"""The identity store on PostgreSQL ([store] backend = postgres): two
bulkhead daemons on one private PostgreSQL (pg_server.py), the auth plugin
in front of the simulator's identity provider on both.

- login on A, refresh on B; the spent token presented again on B revokes
  the family, and A refuses its refresh too (cluster-wide rotation);
- a logout on B: A refuses the session's access token within the
  revoked-session poll's bound;
- an API key created on A works on B; revoked on B, it fails on A;
- PostgreSQL stopped: refresh and API keys answer 503
  auth.session_store_unavailable, access tokens still verify, other
  plugins are untouched; restarted: everything recovers by itself;
- `bulkhead user add/disable` act for every instance;
- `bulkhead -t` checks the connection and the schema version, `bulkhead
  migrate` applies the migrations; a url that is not postgresql:// is
  refused at load."""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer, login, start_sim  # noqa: E402
from harness import Daemon, echo_section  # noqa: E402
from pg_server import PgServer, wait_for  # noqa: E402


def pg_config(sim_url, url, **auth):
    cfg = auth_config(sim_url, auth=auth, extra={
        "store": {"backend": "postgres", "url": "@env:TEST_STORE_URL",
                  "pool": "2"},
        "plugin.echo": echo_section()})
    return cfg


class TwoInstancesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.sim = start_sim()
        env = {"TEST_STORE_URL": cls.pg.url}
        cls.a = cls.b = None
        try:
            cls.a = Daemon(pg_config(cls.sim.url, cls.pg.url), env=env)
            cls.b = Daemon(pg_config(cls.sim.url, cls.pg.url), env=env)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for d in (cls.a, cls.b):
                if d:
                    d.stop()
        finally:
            cls.sim.stop()
            cls.pg.destroy()

    def assertProblem(self, r, status, code, d=None):
        where = "%r%s" % (r, (d or self.a).diag(10)
                          if r.status != status else "")
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.code, code, where)

    def test_schema_and_version(self):
        self.assertEqual(self.pg.psql(
            "SELECT max(version) FROM bh_identity.schema_migrations"), "1")
        # the url never reaches a log line (it may hold a password)
        for d in (self.a, self.b):
            for line in list(d.lines):
                self.assertNotIn(self.pg.url, line)

    def test_refresh_rotation_and_reuse_across_instances(self):
        a, b = self.a, self.b
        r = login(a, "carol", include_refresh=True)
        self.assertEqual(r.status, 200, r)
        rt1 = r.json()["refreshToken"]
        r2 = b.post("/v1/auth/refresh", body={"refreshToken": rt1})
        self.assertEqual(r2.status, 200, "%r%s" % (r2, b.diag(10)))
        rt2 = r2.json()["refreshToken"]
        access2 = r2.json()["accessToken"]
        self.assertEqual(a.get("/t/whoami", headers=bearer(access2)).status,
                         200)
        # rt1 is spent for A too: presenting it on B again is reuse
        r3 = b.post("/v1/auth/refresh", body={"refreshToken": rt1})
        self.assertProblem(r3, 401, "auth.session_revoked", b)
        # ... which revoked the family for A
        r4 = a.post("/v1/auth/refresh", body={"refreshToken": rt2})
        self.assertProblem(r4, 401, "auth.session_revoked")
        # and A stops accepting the family's access token within the poll
        self.assertTrue(wait_for(lambda: a.get(
            "/t/whoami", headers=bearer(access2)).status == 401, 5.0),
            a.diag(10))

    def test_logout_on_b_reaches_a(self):
        a, b = self.a, self.b
        r = login(a, "alice", include_refresh=True)
        self.assertEqual(r.status, 200, r)
        access, rt = r.json()["accessToken"], r.json()["refreshToken"]
        self.assertEqual(a.get("/t/whoami", headers=bearer(access)).status,
                         200)
        r = b.post("/v1/auth/logout", body={"refreshToken": rt},
                   headers=bearer(access))
        self.assertIn(r.status, (200, 204), "%r%s" % (r, b.diag(10)))
        t0 = time.time()
        self.assertTrue(wait_for(lambda: a.get(
            "/t/whoami", headers=bearer(access)).status == 401, 5.0),
            a.diag(10))
        self.assertLess(time.time() - t0, 3.5)  # the poll's documented bound
        r = a.post("/v1/auth/refresh", body={"refreshToken": rt})
        self.assertProblem(r, 401, "auth.session_revoked")

    def test_api_key_created_on_a_works_on_b_revoked_on_b_fails_on_a(self):
        a, b = self.a, self.b
        alice = bearer(login(a, "alice").json()["accessToken"])
        r = a.post("/v1/api-keys", body={"name": "ci"}, headers=alice)
        self.assertEqual(r.status, 201, "%r%s" % (r, a.diag(10)))
        k = r.json()
        kh = {"X-API-Key": k["key"]}
        self.assertEqual(b.get("/t/whoami", headers=kh).status, 200,
                         b.diag(10))
        self.assertEqual(a.get("/t/whoami", headers=kh).status, 200)
        r = b.request("DELETE", "/v1/api-keys/" + k["id"], headers=alice)
        self.assertIn(r.status, (200, 204), "%r%s" % (r, b.diag(10)))
        self.assertProblem(a.get("/t/whoami", headers=kh), 401,
                           "auth.unauthenticated")


class PostgresDownTest(unittest.TestCase):
    """PostgreSQL stopped mid-run, then started again: only the store's
    answers change, and they come back without restarting bulkhead."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        cls.sim = start_sim()
        cls.d = None
        try:
            cls.d = Daemon(pg_config(cls.sim.url, cls.pg.url),
                           env={"TEST_STORE_URL": cls.pg.url})
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d:
                cls.d.stop()
        finally:
            cls.sim.stop()
            cls.pg.destroy()

    def test_down_then_back(self):
        d = self.d
        r = login(d, "bob", include_refresh=True)
        self.assertEqual(r.status, 200, r)
        access, rt = r.json()["accessToken"], r.json()["refreshToken"]
        bob = bearer(access)
        k = d.post("/v1/api-keys", body={"name": "x"}, headers=bob).json()
        self.pg.stop()
        try:
            r = d.post("/v1/auth/refresh", body={"refreshToken": rt})
            self.assertEqual(r.status, 503, "%r%s" % (r, d.diag(10)))
            self.assertEqual(r.code, "auth.session_store_unavailable")
            r = d.get("/t/whoami", headers={"X-API-Key": k["key"]})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.code, "auth.session_store_unavailable")
            # access tokens verify locally; other plugins are untouched
            self.assertEqual(d.get("/t/whoami", headers=bob).status, 200)
            self.assertEqual(d.get("/t/echo/ok").status, 200)
            # /readyz and /admin/status say which store is down
            st = d.admin("/admin/status").json()
            self.assertEqual(st["stores"]["identity"]["backend"], "postgres")
            self.assertEqual(st["stores"]["identity"]["status"],
                             "unavailable", st)
        finally:
            self.pg.start()
        # back by itself: the next jobs reconnect
        self.assertTrue(wait_for(lambda: d.post(
            "/v1/auth/refresh", body={"refreshToken": rt}).status == 200,
            10.0), d.diag(20))
        self.assertEqual(d.get("/t/whoami",
                               headers={"X-API-Key": k["key"]}).status, 200)
        st = d.admin("/admin/status").json()
        self.assertEqual(st["stores"]["identity"]["status"], "ok", st)


class LocalUsersTest(unittest.TestCase):
    """idp = local on the shared store: `bulkhead user add` on one host
    signs in on every instance; `user disable` ends it on every one."""

    def test_add_and_disable_reach_both_instances(self):
        with PgServer() as pg:
            env = {"TEST_STORE_URL": pg.url}
            cfg = auth_config(None, idp="local", extra={"store": {
                "backend": "postgres", "url": "@env:TEST_STORE_URL"}})
            a = Daemon(cfg, env=env)
            b = None
            try:
                b = Daemon(cfg, env=env)

                def user(*args, password=None):
                    return subprocess.run(
                        [harness.BIN, "-c", a.config_path, "user"] +
                        list(args), env=a.env, universal_newlines=True,
                        input=(password + "\n") if password else "",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60)
                p = user("add", "dana@example.com", password="dana-pass-77")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(p.stdout.strip().startswith("usr_"), p.stdout)
                for d in (a, b):
                    r = login(d, "dana@example.com", password="dana-pass-77")
                    self.assertEqual(r.status, 200, "%r%s" % (r, d.diag(10)))
                p = user("add", "Dana@Example.com", password="other-pass-88")
                self.assertNotEqual(p.returncode, 0)
                self.assertIn("exists already", p.stderr)
                self.assertEqual(user("disable", "dana@example.com")
                                 .returncode, 0)
                for d in (a, b):
                    r = login(d, "dana@example.com", password="dana-pass-77")
                    self.assertEqual((r.status, r.code),
                                     (403, "auth.user_disabled"), r)
            finally:
                a.stop()
                if b:
                    b.stop()


class CommandsTest(unittest.TestCase):
    def test_check_and_migrate(self):
        with PgServer() as pg:
            cfg = pg_config(harness.DEAD_UPSTREAM, pg.url)
            d = Daemon(cfg, start=False, env={"TEST_STORE_URL": pg.url})
            run = lambda *a: subprocess.run(  # noqa: E731
                [harness.BIN, "-c", d.config_path] + list(a), env=d.env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            r = run("-t")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"migration(s) pending", r.stderr)
            r = run("migrate")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(pg.psql(
                "SELECT max(version) FROM bh_identity.schema_migrations"), "1")
            r = run("migrate")  # nothing left to do
            self.assertEqual(r.returncode, 0, r.stderr)
            # a schema newer than this binary: refused by -t and start
            pg.psql("INSERT INTO bh_identity.schema_migrations VALUES "
                    "(999, '999_future.sql', 0)")
            r = run("-t")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(b"newer than this bulkhead knows", r.stderr)
            pg.stop()
            r = run("-t")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(b"cannot connect to PostgreSQL", r.stderr)
            self.assertNotIn(pg.url.encode(), r.stderr)

    def test_bad_url_refused(self):
        cfg = pg_config(harness.DEAD_UPSTREAM, "x")
        d = Daemon(cfg, start=False, env={"TEST_STORE_URL": "mysql://x"})
        r = subprocess.run([harness.BIN, "-c", d.config_path, "-t"],
                           env=d.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"[store] url: expected a postgresql:// URL", r.stderr)


if __name__ == "__main__":
    unittest.main()
