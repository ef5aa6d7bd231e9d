"""API keys: create (the raw key shown once), use (X-API-Key on another
plugin's protected route), list (prefixes only), revoke. Keys are managed
with a session, never with a key; one user never sees or revokes another's.
Creation that fails in the store answers a Problem and never a partial
key."""

import os
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer, login, start_sim  # noqa: E402
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402
from harness import Daemon  # noqa: E402


class ApiKeyTestBase(unittest.TestCase):
    # scopes any signed-in user may give a key of theirs
    AUTH = {"api_key_scopes": "read, webhooks:write"}

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cls.d = Daemon(auth_config(cls.sim.url, auth=cls.AUTH))
        except BaseException:
            cls.sim.stop()
            raise
        cls.alice = bearer(login(cls.d, "alice").json()["accessToken"])
        cls.bob = bearer(login(cls.d, "bob").json()["accessToken"])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def assertProblem(self, r, status, code):
        where = "%r%s" % (r, self.d.diag(10) if r.status != status else "")
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.code, code, where)


class ApiKeyTest(ApiKeyTestBase):
    def create(self, who, **body):
        return self.d.post("/v1/api-keys", body=body, headers=who)

    def test_create_use_list_revoke(self):
        d = self.d
        r = self.create(self.alice, name="ci", scopes=["read",
                                                       "webhooks:write"])
        self.assertEqual(r.status, 201, r)
        k = r.json()
        self.assertTrue(k["id"].startswith("key_"))
        self.assertTrue(k["key"].startswith("bhk_"))
        self.assertGreaterEqual(len(k["key"]), 36)
        self.assertEqual(k["prefix"], k["key"][:12])
        self.assertEqual(k["name"], "ci")
        self.assertEqual(k["scopes"], ["read", "webhooks:write"])
        self.assertEqual(r.headers.get("cache-control"), "no-store")

        # use it on another plugin's protected route
        w = d.get("/t/whoami", headers={"X-API-Key": k["key"]})
        self.assertEqual(w.status, 200, w)
        self.assertEqual(w.json()["kind"], "api_key")
        self.assertEqual(w.json()["userId"], "sim_user_alice")
        self.assertEqual(w.json()["keyId"], k["id"])
        self.assertEqual(w.json()["scopes"], "read webhooks:write")
        self.assertEqual(w.json()["sessionId"], "")
        # keys are not ambient credentials: no origin check
        w = d.post("/t/whoami", headers={"X-API-Key": k["key"]})
        self.assertEqual(w.status, 200, w)

        # listed by prefix, never the key itself
        r = d.get("/v1/api-keys", headers=self.alice)
        self.assertEqual(r.status, 200, r)
        keys = r.json()["keys"]
        mine = [x for x in keys if x["id"] == k["id"]]
        self.assertEqual(len(mine), 1, keys)
        self.assertEqual(mine[0]["prefix"], k["prefix"])
        self.assertEqual(mine[0]["name"], "ci")
        self.assertEqual(mine[0]["scopes"], ["read", "webhooks:write"])
        self.assertNotIn("key", mine[0])
        self.assertNotIn(k["key"].encode(), r.body)
        # another user sees none of it and cannot revoke it
        r = d.get("/v1/api-keys", headers=self.bob)
        self.assertNotIn(k["id"], [x["id"] for x in r.json()["keys"]])
        r = d.request("DELETE", "/v1/api-keys/" + k["id"], headers=self.bob)
        self.assertProblem(r, 404, "auth.api_key_not_found")
        self.assertEqual(d.get("/t/whoami", headers={
            "X-API-Key": k["key"]}).status, 200)

        # revoke
        r = d.request("DELETE", "/v1/api-keys/" + k["id"],
                      headers=self.alice)
        self.assertEqual(r.status, 204, r)
        w = d.get("/t/whoami", headers={"X-API-Key": k["key"]})
        self.assertProblem(w, 401, "auth.unauthenticated")
        r = d.get("/v1/api-keys", headers=self.alice)
        self.assertNotIn(k["id"], [x["id"] for x in r.json()["keys"]])
        r = d.request("DELETE", "/v1/api-keys/" + k["id"],
                      headers=self.alice)
        self.assertProblem(r, 404, "auth.api_key_not_found")
        for line in d.lines:
            self.assertNotIn(k["key"], line)

    def test_keys_are_managed_with_a_session_only(self):
        k = self.create(self.alice).json()
        self.assertEqual(k["name"], "")
        self.assertEqual(k["scopes"], [])
        kh = {"X-API-Key": k["key"]}
        self.assertProblem(self.create(kh), 403, "auth.forbidden")
        self.assertProblem(self.d.get("/v1/api-keys", headers=kh), 403,
                           "auth.forbidden")
        self.assertProblem(self.d.request("DELETE", "/v1/api-keys/" + k["id"],
                                          headers=kh), 403, "auth.forbidden")
        self.assertProblem(self.d.get("/v1/api-keys"), 401,
                           "auth.unauthenticated")

    def test_bad_keys_and_bodies(self):
        for key in ("bhk_unknown", "x" * 200, ""):
            r = self.d.get("/t/whoami", headers={"X-API-Key": key})
            self.assertProblem(r, 401, "auth.unauthenticated")
        r = self.create(self.alice, scopes=["Bad Scope"])
        self.assertProblem(r, 400, "request.invalid_body")
        self.assertEqual(r.ext["errors"][0]["field"], "scopes")
        r = self.create(self.alice, name="n", extra=1)
        self.assertProblem(r, 400, "request.invalid_body")
        r = self.create(self.alice, scopes=["s%d" % i for i in range(21)])
        self.assertProblem(r, 400, "request.invalid_body")
        r = self.d.request("DELETE", "/v1/api-keys/" + "k" * 300,
                           headers=self.alice)
        self.assertProblem(r, 404, "auth.api_key_not_found")


class ApiKeyScopeTest(ApiKeyTestBase):
    """A key carries only scopes its creator's session holds, or ones
    [auth] api_key_scopes allows anyone: never self-assigned privileges."""

    def create(self, who, scopes):
        return self.d.post("/v1/api-keys", body={"scopes": scopes},
                           headers=who)

    def test_a_user_cannot_mint_admin_superuser(self):
        r = self.create(self.alice, ["admin", "superuser"])
        self.assertProblem(r, 403, "auth.scope_not_allowed")
        self.assertEqual(r.ext["errors"][0]["field"], "scopes")
        self.assertNotIn(b"bhk_", r.body)
        # one scope too many spoils the lot; no key was stored
        r = self.create(self.alice, ["read", "admin"])
        self.assertProblem(r, 403, "auth.scope_not_allowed")
        listed = self.d.get("/v1/api-keys", headers=self.alice).json()["keys"]
        for k in listed:
            self.assertNotIn("admin", k["scopes"], listed)

    def test_allowlisted_and_held_scopes(self):
        r = self.create(self.alice, ["read", "webhooks:write"])
        self.assertEqual(r.status, 201, r)
        # a session that holds a scope may hand it to its keys ...
        ops = bearer(mint_access_token(TEST_SECRET, "user_ops",
                                       sid="ses_ops", scope="billing:admin"))
        r = self.create(ops, ["billing:admin", "read"])
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["scopes"], ["billing:admin", "read"])
        w = self.d.get("/t/whoami", headers={"X-API-Key": r.json()["key"]})
        self.assertEqual(w.json()["scopes"], "billing:admin read", w)
        # ... but not a scope it lacks, nor a prefix of one it holds
        for bad in (["billing:admin", "admin"], ["billing"], ["billing:"]):
            self.assertProblem(self.create(ops, bad), 403,
                               "auth.scope_not_allowed")


class ApiKeyNoAllowlistTest(ApiKeyTestBase):
    AUTH = {}

    def test_without_allowlist_only_held_scopes(self):
        r = self.d.post("/v1/api-keys", body={"scopes": ["read"]},
                        headers=self.alice)
        self.assertProblem(r, 403, "auth.scope_not_allowed")
        r = self.d.post("/v1/api-keys", body={"name": "plain"},
                        headers=self.alice)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["scopes"], [])


class ApiKeyStoreFailureTest(ApiKeyTestBase):
    def test_creation_failure_answers_a_problem_not_a_partial_key(self):
        ok = self.d.post("/v1/api-keys", body={"name": "before"},
                         headers=self.alice)
        self.assertEqual(ok.status, 201, ok)
        # the store loses its table under the daemon
        db = sqlite3.connect(os.path.join(self.d.data_dir, "identity.db"),
                             timeout=10)
        db.execute("DROP TABLE api_keys")
        db.commit()
        db.close()
        r = self.d.post("/v1/api-keys", body={"name": "ci"},
                        headers=self.alice)
        self.assertProblem(r, 503, "auth.session_store_unavailable")
        self.assertIs(r.ext["retryable"], True)
        self.assertNotIn(b"bhk_", r.body)
        self.assertNotIn("key", r.json())
        r = self.d.get("/t/whoami", headers={"X-API-Key": ok.json()["key"]})
        self.assertProblem(r, 503, "auth.session_store_unavailable")
        # access tokens need no store: still fine
        self.assertEqual(self.d.get("/t/whoami", headers=self.alice).status,
                         200)
        self.assertTrue(self.d.wait_event(
            lambda e: e.get("event") == "store_failed"))


if __name__ == "__main__":
    harness.main()
