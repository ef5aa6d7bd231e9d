"""The auth plugin's magic-link store on the shared PostgreSQL ([store]
backend = postgres, schema bh_auth): two daemons, one private PostgreSQL
(pg_server.py), the simulator as identity provider, a local SMTP sink.

- an account seen signing in on A and an IdP outage noticed on A serve B:
  a link requested on B is sent;
- a link sent by A opens on B (302 with the session cookies) and is then
  spent for A too;
- PostgreSQL stopped: the link request answers 503 auth.email_unavailable
  and verification 503 auth.session_store_unavailable; back by itself."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon  # noqa: E402
from pg_server import PgServer, wait_for  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402
import test_auth_magic_link as M  # noqa: E402


class MagicTwoInstancesTest(M.MagicBase):
    def setUp(self):
        super().setUp()
        self.pg = PgServer()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.pg.destroy()

    def daemon(self, smtp_url=None, **keys):
        cfg = M.auth_config(self.sim.url, auth=M.AUTH,
                            plugin_auth=M.magic_keys(smtp_url or
                                                     self.sink.url, **keys))
        cfg["store"] = {"backend": "postgres", "url": "@env:TEST_STORE_URL",
                        "pool": "1"}
        d = Daemon(cfg, env={"TEST_STORE_URL": self.pg.url})
        self.daemons.append(d)
        return d

    def test_link_sent_on_a_opens_on_b_once(self):
        a, b = self.daemon(), self.daemon()
        self.assertEqual(M.login(a, "alice").status, 200)  # remembered on A
        self.idp_down(a)  # noticed on A (recorded by A's store thread)
        # B knows both
        self.assertTrue(wait_for(lambda: self.ask(
            b, "alice", redirect="/home").status == 202, 5), b.diag(10))
        self.assertTrue(self.sink.wait(1), "no mail reached the sink")
        self.sink.clear()
        r = self.ask(a, "alice", redirect="/home")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(self.sink.wait(1), "no mail reached the sink")
        link = self.link_of(self.sink.messages[0])  # sent by A
        got = b.get(link)
        self.assertEqual(got.status, 302, "%r%s" % (got, b.diag(10)))
        self.assertEqual(got.headers.get("location"), "/home")
        self.assertIn("set-cookie", {k.lower() for k in got.headers})
        # single use across instances
        again = a.get(link)
        self.assertProblem(again, 401, "auth.magic_link_invalid")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM bh_auth.tokens"),
                         "0")

    def test_postgres_down_then_back(self):
        d = self.daemon()
        self.assertEqual(M.login(d, "alice").status, 200)
        self.idp_down(d)
        self.assertTrue(wait_for(lambda: self.ask(d, "alice").status == 202,
                                 5), d.diag(10))
        self.pg.stop()
        self.assertProblem(self.ask(d, "alice"), 503,
                           "auth.email_unavailable")
        r = d.get("/v1/auth/magic-link/verify?token=" + "x" * 43)
        self.assertProblem(r, 503, "auth.session_store_unavailable")
        self.pg.start()
        self.assertTrue(wait_for(lambda: self.ask(d, "alice").status == 202,
                                 15), d.diag(20))


if __name__ == "__main__":
    unittest.main()
