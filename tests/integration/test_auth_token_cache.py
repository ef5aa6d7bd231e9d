"""The worker's verified-token cache ([auth] token_cache_size) on the wire:
a token accepted (and so cached) opens the door only for exactly itself:
one byte changed anywhere and it is verified again and refused; a cached
token stops working when it expires; a reload with a new secret leaves no
token of the old one working."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer  # noqa: E402
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402
from harness import Daemon, RawConn, render_config  # noqa: E402
from upstream_env import metric_sum, scrape  # noqa: E402
from workers import status, wait_workers  # noqa: E402

NEW_SECRET = "rotated-secret-0123456789-abcdefghij-QRSTU"


class TokenCacheTest(harness.DaemonTestCase):
    CONFIG = auth_config(idp="local")

    def test_one_byte_off_a_cached_token_is_refused(self):
        tok = mint_access_token(TEST_SECRET, "user_cached", sid="s1")
        for _ in range(3):  # the first verifies and caches, the rest hit
            r = self.d.get("/t/whoami", headers=bearer(tok))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["userId"], "user_cached")
        h, p, s = tok.split(".")
        positions = sorted(set([0, len(h) - 1, len(h) + 1,
                                len(h) + 1 + len(p) // 2,
                                len(h) + len(p), len(h) + len(p) + 2,
                                len(tok) - 2, len(tok) - 1]))
        for i in positions:
            if tok[i] == ".":
                continue
            c = "B" if tok[i] != "B" else "C"
            bad = tok[:i] + c + tok[i + 1:]
            r = self.d.get("/t/whoami", headers=bearer(bad))
            self.assertProblem(r, 401, "auth.unauthenticated",
                               "byte %d changed" % i)
        for bad in (tok[:-1], tok + "A", tok + "."):
            r = self.d.get("/t/whoami", headers=bearer(bad))
            self.assertProblem(r, 401, "auth.unauthenticated", bad[-5:])
        # and the cached one still works
        self.assertEqual(self.d.get("/t/whoami", headers=bearer(tok)).status,
                         200)

    def test_hits_and_misses_are_counted(self):
        def counts():
            m = scrape(self.d)
            return (metric_sum(m, "bulkhead_auth_token_cache_total",
                               result="hit"),
                    metric_sum(m, "bulkhead_auth_token_cache_total",
                               result="miss"))
        tok = mint_access_token(TEST_SECRET, "user_counted", sid="s4")
        h0, m0 = counts()
        for _ in range(3):  # verified once, then found twice
            r = self.d.get("/t/whoami", headers=bearer(tok))
            self.assertEqual(r.status, 200, r)
        h1, m1 = counts()
        self.assertEqual((h1 - h0, m1 - m0), (2, 1))
        # a forged token is a miss (verified, refused, not cached)
        r = self.d.get("/t/whoami", headers=bearer(tok[:-2] + "AA"))
        self.assertProblem(r, 401, "auth.unauthenticated")
        h2, m2 = counts()
        self.assertEqual((h2 - h1, m2 - m1), (0, 1))

    def test_a_cached_token_expires(self):
        exp = int(time.time()) + 2
        tok = mint_access_token(TEST_SECRET, "user_brief", sid="s2", exp=exp)
        r = self.d.get("/t/whoami", headers=bearer(tok))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.d.get("/t/whoami", headers=bearer(tok)).status,
                         200)
        while time.time() < exp + 0.2:
            time.sleep(0.1)
        # a cached, validly signed token past its exp is told "expired"
        for _ in range(2):
            r = self.d.get("/t/whoami", headers=bearer(tok))
            self.assertProblem(r, 401, "auth.token_expired", "expired")


class TokenCacheReloadTest(unittest.TestCase):

    def cfg(self, secret):
        c = auth_config(idp="local", secret=secret)
        c["server"] = {"workers": 2}
        return c

    def test_reload_with_a_new_secret_flushes_the_cache(self):
        d = Daemon(self.cfg(TEST_SECRET))
        try:
            wait_workers(d, 2)
            old = mint_access_token(TEST_SECRET, "user_old", sid="s3")
            # fresh connections: both workers verify and cache it
            for _ in range(12):
                c = RawConn(d.port())
                try:
                    c.send("GET /t/whoami HTTP/1.1\r\nHost: t\r\n"
                           "Authorization: Bearer %s\r\n\r\n" % old)
                    r = c.read_response(5.0)
                    self.assertEqual(r.status, 200, r)
                finally:
                    c.close()
            g0 = status(d)["generation"]
            sections = self.cfg(NEW_SECRET)
            server = {"listen": "127.0.0.1:%d" % d.port(),
                      "admin_listen": "127.0.0.1:%d" % d.port(admin=True),
                      "data_dir": d.data_dir, "log": "stdout"}
            server.update(sections.pop("server"))
            full = {"server": server}
            full.update(sections)
            with open(d.config_path, "w") as f:
                f.write(render_config(full))
            os.kill(d.proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                ws = status(d)["workers"]
                if (len(ws) == 2 and all(w["generation"] == g0 + 1 and
                                         w["ready"] for w in ws)):
                    break
                time.sleep(0.05)
            else:
                self.fail("no new generation: %r" % status(d))
            new = mint_access_token(NEW_SECRET, "user_new", sid="s4")
            for _ in range(12):
                r = d.get("/t/whoami", headers=bearer(old))
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.json()["extensions"]["code"],
                                 "auth.unauthenticated")
                r = d.get("/t/whoami", headers=bearer(new))
                self.assertEqual(r.status, 200, r)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
