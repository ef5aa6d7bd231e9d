"""What a proxy route's upstream receives of the caller's credentials and
forwarding headers (a recording upstream: the simulator).

By default the gateway's credentials stay at the gateway: the __session /
__refresh cookies (and their __Host- names; other cookies go on), the API
key header ([auth] api_key_header), and an Authorization the session
middleware verified. The upstream learns who the caller is from
X-Bulkhead-User / -Auth / -Scopes / -Key-Id, set by the core after every
X-Bulkhead-* the client sent is dropped. Forwarded, X-Forwarded-For,
X-Real-IP, X-Forwarded-Host and X-Forwarded-Proto are rebuilt from the
connection; the client's are dropped. [upstream.NAME] forward_credentials =
true passes the credentials on for one upstream."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import ACCOUNTS, auth_config, bearer, login, start_sim  # noqa
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402
from harness import Daemon, run_tool, test_plugin  # noqa: E402

PROXY = "/t/whoami/proxy/items/1"
OPEN_PROXY = "/t/up_one/proxy/items/1"

FORGED = {
    "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
    "X-Forwarded-For": "6.6.6.6",
    "X-Real-IP": "6.6.6.6",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Bulkhead-User": "admin",
    "X-Bulkhead-Scopes": "admin superuser",
    "X-Bulkhead-Tenant": "tenant_other",
}


def hdrs(rec):
    """Recorded request headers: lower-case name -> list of values."""
    out = {}
    for k, v in rec["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def config(sim_url, forward=False):
    # keys may carry "read": the creator's session holds no scopes itself
    cfg = auth_config(sim_url, auth={"api_key_scopes": "read"}, extra={
        "plugin.up_one": {"path": test_plugin("up_one"),
                          "mount": "/t/up_one"},
        "upstream.up_one": {"url": sim_url, "retries": 0},
    })
    if forward:
        cfg["upstream.whoami"]["forward_credentials"] = "true"
    return cfg


class CredentialsBase(unittest.TestCase):
    FORWARD = False

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cls.d = Daemon(config(cls.sim.url, cls.FORWARD))
        except BaseException:
            cls.sim.stop()
            raise
        cls.host = "127.0.0.1:%d" % cls.d.api_port

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def setUp(self):
        self.sim.clear_requests()

    def upstream_saw(self, path, headers):
        r = self.d.get(path, headers=headers)
        self.assertEqual(r.status, 200, "%r%s" % (r, self.d.diag(10)))
        recs = self.sim.requests(path)
        self.assertEqual(len(recs), 1, recs)
        return hdrs(recs[0])

    def assertForwardingRebuilt(self, h):
        self.assertEqual(h.get("x-forwarded-for"), ["127.0.0.1"], h)
        self.assertEqual(h.get("x-real-ip"), ["127.0.0.1"], h)
        self.assertEqual(h.get("x-forwarded-host"), [self.host], h)
        self.assertEqual(h.get("x-forwarded-proto"), ["http"], h)
        self.assertEqual(h.get("forwarded"),
                         ['for=127.0.0.1;host="%s";proto=http' % self.host], h)
        self.assertIsNone(h.get("x-bulkhead-tenant"), h)


class ProxyCredentialsTest(CredentialsBase):

    def test_bearer_token_stays_and_identity_goes(self):
        tok = mint_access_token(TEST_SECRET, "user_42", scope="read write",
                                sid="ses_1")
        headers = dict(FORGED)
        headers.update(bearer(tok))
        h = self.upstream_saw(PROXY, headers)
        self.assertIsNone(h.get("authorization"), h)
        self.assertEqual(h.get("x-bulkhead-user"), ["user_42"], h)
        self.assertEqual(h.get("x-bulkhead-auth"), ["bearer"], h)
        self.assertEqual(h.get("x-bulkhead-scopes"), ["read write"], h)
        self.assertIsNone(h.get("x-bulkhead-key-id"), h)
        self.assertForwardingRebuilt(h)
        for values in h.values():
            for v in values:
                self.assertNotIn(tok, v)

    def test_cached_tokens_each_send_their_own_identity(self):
        """The identity lines are built once per cached token: each hit of
        each token still sends its own, as a bearer or as a cookie."""
        t1 = mint_access_token(TEST_SECRET, "user_c1", scope="read",
                               sid="ses_c1")
        t2 = mint_access_token(TEST_SECRET, "user_c2", scope="write admin",
                               sid="ses_c2")
        for _ in range(2):
            for tok, user, scopes in ((t1, "user_c1", "read"),
                                      (t2, "user_c2", "write admin")):
                self.sim.clear_requests()
                h = self.upstream_saw(PROXY, bearer(tok))
                self.assertEqual(h.get("x-bulkhead-user"), [user], h)
                self.assertEqual(h.get("x-bulkhead-auth"), ["bearer"], h)
                self.assertEqual(h.get("x-bulkhead-scopes"), [scopes], h)
        self.sim.clear_requests()
        h = self.upstream_saw(PROXY, {"Cookie": "__session=%s" % t2})
        self.assertEqual(h.get("x-bulkhead-user"), ["user_c2"], h)
        self.assertEqual(h.get("x-bulkhead-auth"), ["cookie"], h)
        self.assertEqual(h.get("x-bulkhead-scopes"), ["write admin"], h)

    def test_session_cookies_stay_other_cookies_go(self):
        tok = mint_access_token(TEST_SECRET, "user_7")
        cookie = ("theme=dark; __session=%s; __refresh=rt_secret_refresh; "
                  "__Host-session=hs; lang=en; __Host-refresh=hr" % tok)
        headers = dict(FORGED)
        headers["Cookie"] = cookie
        h = self.upstream_saw(PROXY, headers)
        self.assertEqual(h.get("cookie"), ["theme=dark; lang=en"], h)
        self.assertEqual(h.get("x-bulkhead-user"), ["user_7"], h)
        self.assertEqual(h.get("x-bulkhead-auth"), ["cookie"], h)
        self.assertIsNone(h.get("x-bulkhead-scopes"), h)
        self.assertForwardingRebuilt(h)

    def test_only_session_cookies_leave_no_cookie_header(self):
        tok = mint_access_token(TEST_SECRET, "user_7")
        h = self.upstream_saw(PROXY, {
            "Cookie": "__session=%s; __refresh=rt_secret_refresh" % tok})
        self.assertIsNone(h.get("cookie"), h)
        self.assertEqual(h.get("x-bulkhead-user"), ["user_7"], h)

    def test_api_key_stays(self):
        alice = bearer(login(self.d, "alice").json()["accessToken"])
        k = self.d.post("/v1/api-keys", body={"name": "proxy",
                                              "scopes": ["read"]},
                        headers=alice)
        self.assertEqual(k.status, 201, k)
        key = k.json()
        headers = dict(FORGED)
        headers["X-API-Key"] = key["key"]
        h = self.upstream_saw(PROXY, headers)
        self.assertIsNone(h.get("x-api-key"), h)
        self.assertIsNone(h.get("authorization"), h)
        self.assertEqual(h.get("x-bulkhead-user"), [ACCOUNTS["alice"][2]], h)
        self.assertEqual(h.get("x-bulkhead-auth"), ["api_key"], h)
        self.assertEqual(h.get("x-bulkhead-key-id"), [key["id"]], h)
        self.assertEqual(h.get("x-bulkhead-scopes"), ["read"], h)
        self.assertForwardingRebuilt(h)

    def test_unauthenticated_route_drops_keys_cookies_and_forgeries(self):
        """A route without auth verified nothing: its Authorization is the
        client's business and goes on; our cookies and the key header never
        do, and no identity is made up."""
        headers = dict(FORGED)
        headers.update({"Authorization": "Basic dXNlcjpwYXNz",
                        "X-API-Key": "bhk_not_verified_anywhere",
                        "Cookie": "__session=abc; a=b; __refresh=def"})
        h = self.upstream_saw(OPEN_PROXY, headers)
        self.assertEqual(h.get("authorization"), ["Basic dXNlcjpwYXNz"], h)
        self.assertIsNone(h.get("x-api-key"), h)
        self.assertEqual(h.get("cookie"), ["a=b"], h)
        for name in ("x-bulkhead-user", "x-bulkhead-auth",
                     "x-bulkhead-scopes"):
            self.assertIsNone(h.get(name), h)
        self.assertForwardingRebuilt(h)


class ForwardCredentialsTest(CredentialsBase):
    """[upstream.whoami] forward_credentials = true."""
    FORWARD = True

    def test_credentials_go_on_forgeries_do_not(self):
        tok = mint_access_token(TEST_SECRET, "user_42", scope="read")
        headers = dict(FORGED)
        headers.update(bearer(tok))
        headers["Cookie"] = "__session=x; theme=dark; __refresh=rt_1"
        h = self.upstream_saw(PROXY, headers)
        self.assertEqual(h.get("authorization"), ["Bearer " + tok], h)
        self.assertEqual(h.get("cookie"),
                         ["__session=x; theme=dark; __refresh=rt_1"], h)
        self.assertEqual(h.get("x-bulkhead-user"), ["user_42"], h)
        self.assertEqual(h.get("x-bulkhead-scopes"), ["read"], h)
        self.assertForwardingRebuilt(h)


class ForwardCredentialsConfigTest(unittest.TestCase):
    def test_bad_value_is_refused_at_load(self):
        cfg = auth_config(harness.DEAD_UPSTREAM)
        cfg["upstream.whoami"]["forward_credentials"] = "maybe"
        d = Daemon(cfg, start=False)  # writes the file only
        r = run_tool(["-t", "-c", d.config_path])
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("[upstream.whoami] forward_credentials", r.stderr, r)
        self.assertIn("maybe", r.stderr, r)


if __name__ == "__main__":
    harness.main()
