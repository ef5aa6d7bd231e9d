"""Webhooks belong to an owner: two users signed in through the real auth
plugin (alice and bob, sessions from the simulator's identity provider)
against one webhooks store.

- Bob cannot list, read, change (URL, enabled), rotate (and never receives
  alice's new whsec_), delete alice's endpoint, list or filter by it, read
  or retry her deliveries: each answers 404 exactly as an id that never
  existed (same code, same body apart from the request id), and alice's
  endpoint is unchanged afterwards (her old secret still signs).
- Bob's events fan out to bob's endpoints only: alice's receiver sees none
  of them; idempotency keys are per owner (bob's key never replays
  alice's event).
- Publishing for another owner needs the scope webhooks:publish: a back-end
  token holding it publishes to alice's endpoints (signed with alice's
  secret), bob naming alice gets 403 auth.forbidden and nothing is sent.
- An API key of alice's is alice: it sees her endpoints.
- Rows of a version-1 store (before owners) belong to nobody: invisible and
  never fanned out to, until an operator gives them an owner with the SQL
  documented in etc/bulkhead.ini.
"""

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, bearer, login  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402

ALICE = "sim_user_alice"
BOB = "sim_user_bob"
MISSING_EP = "ep_000000000000000000000000"
MISSING_DLV = "dlv_000000000000000000000000"
# long enough for a delivery that should not happen to have happened: the
# first attempt is due at once and the receiver answers at once
QUIET_S = 1.0 * W.SLACK


def config(sim_url, **keys):
    return auth_config(sim_url,
                       extra={"plugin.webhooks": W.webhooks_section(**keys)})


def publisher(scope="webhooks:publish", sub="svc_backend"):
    """A back-end service's Bearer token (signed by the core's key)."""
    tok = W.mint_access_token(W.TEST_SECRET, sub, scope=scope,
                              iat=int(time.time()) - 60)
    return bearer(tok)


def type_of(path):
    """The event type a test's endpoint at `path` subscribes to."""
    return path.strip("/").replace("/", ".")


def problem_shape(r):
    """The Problem body without what differs per request."""
    doc = r.json()
    for k in ("requestId", "traceId", "spanId"):
        doc.get("extensions", {}).pop(k, None)
    doc.pop("instance", None)
    return doc


class OwnerBase(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        try:
            cls.CONFIG = config(cls.sim.url)
            cls.d = Daemon(cls.CONFIG)
            cls.alice = cls.session("alice")
            cls.bob = cls.session("bob")
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def session(cls, who):
        r = login(cls.d, who)
        if r.status != 200:
            raise AssertionError("login %s: %r" % (who, r))
        return bearer(r.json()["accessToken"])

    @classmethod
    def tearDownClass(cls):
        try:
            super(OwnerBase, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def call(self, who, method, path, body=None):
        return self.d.request(method, "/v1/webhooks" + path, body=body,
                              headers=who, timeout=10)

    def create(self, who, path, events=None):
        """An endpoint at `path`, subscribed to events (default: the one
        type of the path, so endpoints of other tests do not add up)."""
        events = events or [type_of(path)]
        r = self.call(who, "POST", "/endpoints",
                      {"url": self.sim.url + path, "events": list(events)})
        self.assertEqual(r.status, 201, r)
        return r.json()

    def event(self, who, type_, data=None, **extra):
        body = {"type": type_, "data": data or {}}
        body.update(extra)
        return self.call(who, "POST", "/events", body)

    def wait_received(self, path, n, timeout=5.0):
        ok = W.wait_for(lambda: len(self.sim.requests(path)) >= n,
                        timeout=timeout, step=0.05)
        self.assertTrue(ok, "%s got %d of %d" %
                        (path, len(self.sim.requests(path)), n))

    def alice_endpoint(self, path):
        """Alice's endpoint at `path` with one delivered event: (endpoint,
        delivery id, her view of the endpoint)."""
        ep = self.create(self.alice, path)
        r = self.event(self.alice, type_of(path), {"n": 1})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["deliveries"], 1, r)
        self.wait_received(path, 1)
        r = self.call(self.alice, "GET", "/deliveries?endpoint=" + ep["id"])
        self.assertEqual(r.status, 200, r)
        dls = r.json()["data"]
        self.assertEqual(len(dls), 1, dls)
        r = self.call(self.alice, "GET", "/endpoints/" + ep["id"])
        self.assertEqual(r.status, 200, r)
        return ep, dls[0]["id"], r.json()

    def assertLikeMissing(self, r, missing, code):
        """404 `code`, the body of the same request for a missing id."""
        self.assertProblem(r, 404, code)
        self.assertProblem(missing, 404, code)
        self.assertEqual(problem_shape(r), problem_shape(missing))
        self.assertNotIn(b"whsec_", r.body)

    def assertUnchanged(self, ep, view, path, received=1):
        """Alice's endpoint as she saw it, her receiver's count, and her
        original secret still the one that signs."""
        r = self.call(self.alice, "GET", "/endpoints/" + ep["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), view)
        time.sleep(QUIET_S)
        self.assertEqual(len(self.sim.requests(path)), received,
                         "alice's receiver got something from bob")
        r = self.event(self.alice, type_of(path), {"n": 2})
        self.assertEqual(r.status, 202, r)
        self.wait_received(path, received + 1)
        last = self.sim.requests(path)[-1]
        self.assertTrue(W.verify(ep["secret"], last), last)


class OtherOwnerTest(OwnerBase):
    """Each of bob's attempts on alice's endpoint, one test each."""

    def test_list_shows_only_own_endpoints(self):
        ep, _, view = self.alice_endpoint("/hooks/o-list")
        mine = self.create(self.bob, "/hooks/o-list-bob")
        r = self.call(self.bob, "GET", "/endpoints?limit=100")
        self.assertEqual(r.status, 200, r)
        ids = [x["id"] for x in r.json()["data"]]
        self.assertNotIn(ep["id"], ids)
        self.assertIn(mine["id"], ids)
        r = self.call(self.alice, "GET", "/endpoints?limit=100")
        self.assertNotIn(mine["id"], [x["id"] for x in r.json()["data"]])
        self.assertUnchanged(ep, view, "/hooks/o-list")

    def test_get(self):
        ep, _, view = self.alice_endpoint("/hooks/o-get")
        self.assertLikeMissing(
            self.call(self.bob, "GET", "/endpoints/" + ep["id"]),
            self.call(self.bob, "GET", "/endpoints/" + MISSING_EP),
            "webhooks.endpoint_not_found")
        self.assertUnchanged(ep, view, "/hooks/o-get")

    def test_patch_url(self):
        ep, _, view = self.alice_endpoint("/hooks/o-patch")
        body = {"url": self.sim.url + "/hooks/o-patch-stolen"}
        self.assertLikeMissing(
            self.call(self.bob, "PATCH", "/endpoints/" + ep["id"], body),
            self.call(self.bob, "PATCH", "/endpoints/" + MISSING_EP, body),
            "webhooks.endpoint_not_found")
        body = {"enabled": False, "events": ["other.t"]}
        self.assertLikeMissing(
            self.call(self.bob, "PATCH", "/endpoints/" + ep["id"], body),
            self.call(self.bob, "PATCH", "/endpoints/" + MISSING_EP, body),
            "webhooks.endpoint_not_found")
        self.assertUnchanged(ep, view, "/hooks/o-patch")
        self.assertEqual(self.sim.requests("/hooks/o-patch-stolen"), [])

    def test_rotate_secret(self):
        ep, _, view = self.alice_endpoint("/hooks/o-rotate")
        r = self.call(self.bob, "POST",
                      "/endpoints/%s/rotate-secret" % ep["id"])
        self.assertLikeMissing(
            r, self.call(self.bob, "POST",
                         "/endpoints/%s/rotate-secret" % MISSING_EP),
            "webhooks.endpoint_not_found")
        self.assertNotIn("previousSecretExpiresAt", self.call(
            self.alice, "GET", "/endpoints/" + ep["id"]).json())
        self.assertUnchanged(ep, view, "/hooks/o-rotate")
        # only the original secret signs (no second, rotated, signature)
        last = self.sim.requests("/hooks/o-rotate")[-1]
        self.assertEqual(len(W.headers_of(last)["webhook-signature"].split()),
                         1)

    def test_delete(self):
        ep, _, view = self.alice_endpoint("/hooks/o-delete")
        self.assertLikeMissing(
            self.call(self.bob, "DELETE", "/endpoints/" + ep["id"]),
            self.call(self.bob, "DELETE", "/endpoints/" + MISSING_EP),
            "webhooks.endpoint_not_found")
        self.assertUnchanged(ep, view, "/hooks/o-delete")

    def test_deliveries_listing(self):
        ep, did, view = self.alice_endpoint("/hooks/o-dlist")
        r = self.call(self.bob, "GET", "/deliveries?limit=100")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(did, [x["id"] for x in r.json()["data"]])
        self.assertNotIn(ep["id"], r.body.decode())
        self.assertLikeMissing(
            self.call(self.bob, "GET", "/deliveries?endpoint=" + ep["id"]),
            self.call(self.bob, "GET", "/deliveries?endpoint=" + MISSING_EP),
            "webhooks.endpoint_not_found")
        self.assertUnchanged(ep, view, "/hooks/o-dlist")

    def test_delivery_detail(self):
        ep, did, view = self.alice_endpoint("/hooks/o-dget")
        self.assertLikeMissing(
            self.call(self.bob, "GET", "/deliveries/" + did),
            self.call(self.bob, "GET", "/deliveries/" + MISSING_DLV),
            "webhooks.delivery_not_found")
        self.assertUnchanged(ep, view, "/hooks/o-dget")

    def test_delivery_retry(self):
        ep, did, view = self.alice_endpoint("/hooks/o-retry")
        self.assertLikeMissing(
            self.call(self.bob, "POST", "/deliveries/%s/retry" % did),
            self.call(self.bob, "POST", "/deliveries/%s/retry" % MISSING_DLV),
            "webhooks.delivery_not_found")
        # no second send of alice's delivery
        self.assertUnchanged(ep, view, "/hooks/o-retry")
        r = self.call(self.alice, "GET", "/deliveries/" + did)
        self.assertEqual(r.json()["attemptCount"], 1, r)

    def test_events_fan_out_within_the_owner(self):
        ep, _, view = self.alice_endpoint("/hooks/o-fan")
        bobs = self.create(self.bob, "/hooks/o-fan-bob", ["hooks.o-fan"])
        r = self.event(self.bob, "hooks.o-fan", {"from": "bob"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["deliveries"], 1, r)
        self.wait_received("/hooks/o-fan-bob", 1)
        self.assertTrue(W.verify(bobs["secret"],
                                 self.sim.requests("/hooks/o-fan-bob")[0]))
        self.assertUnchanged(ep, view, "/hooks/o-fan")
        for rec in self.sim.requests("/hooks/o-fan"):
            self.assertNotIn("bob", rec["body"])

    def test_naming_another_owner_needs_the_publish_scope(self):
        ep, _, view = self.alice_endpoint("/hooks/o-named")
        for scope in ("", "webhooks:write", "webhooks:publisher",
                      "webhooks publish"):
            who = publisher(scope, sub=BOB) if scope else self.bob
            r = self.event(who, "hooks.o-named", {"from": "bob"},
                           owner=ALICE)
            self.assertProblem(r, 403, "auth.forbidden", scope)
            # the same answer for an owner that does not exist
            r2 = self.event(who, "hooks.o-named", {}, owner="nobody_at_all")
            self.assertEqual(problem_shape(r), problem_shape(r2))
        self.assertUnchanged(ep, view, "/hooks/o-named")

    def test_idempotency_keys_are_per_owner(self):
        ep, _, view = self.alice_endpoint("/hooks/o-idem")
        r = self.event(self.alice, "hooks.o-idem", {"k": 1},
                       idempotencyKey="shared-key-1")
        self.assertEqual(r.status, 202, r)
        self.wait_received("/hooks/o-idem", 2)
        alices = r.json()["id"]
        r = self.event(self.bob, "hooks.o-idem", {"k": 2},
                       idempotencyKey="shared-key-1")
        self.assertEqual(r.status, 202, r)
        self.assertIsNone(r.headers.get("idempotent-replayed"), r)
        self.assertNotEqual(r.json()["id"], alices)
        self.assertEqual(r.json()["deliveries"], 0, r)
        # alice's own replay still answers her event
        r = self.event(self.alice, "hooks.o-idem", {"k": 1},
                       idempotencyKey="shared-key-1")
        self.assertEqual(r.headers.get("idempotent-replayed"), "true", r)
        self.assertEqual(r.json()["id"], alices)
        self.assertUnchanged(ep, view, "/hooks/o-idem", received=2)


class PublishTest(OwnerBase):
    def test_publisher_publishes_for_a_named_owner(self):
        ep = self.create(self.alice, "/hooks/p-alice", ["pub.t"])
        bobs = self.create(self.bob, "/hooks/p-bob", ["pub.t"])
        own = self.create(publisher(), "/hooks/p-svc", ["pub.t"])
        r = self.event(publisher("read webhooks:publish"), "pub.t",
                       {"for": "alice"}, owner=ALICE)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["deliveries"], 1, r)
        eid = r.json()["id"]
        self.wait_received("/hooks/p-alice", 1)
        rec = self.sim.requests("/hooks/p-alice")[0]
        self.assertEqual(W.headers_of(rec)["webhook-id"], eid)
        self.assertTrue(W.verify(ep["secret"], rec))
        # the event is alice's: her delivery listing shows it
        r = self.call(self.alice, "GET", "/deliveries?endpoint=" + ep["id"])
        self.assertEqual([x["eventId"] for x in r.json()["data"]], [eid])
        # without owner the publisher publishes for itself
        r = self.event(publisher(), "pub.t", {"for": "svc"})
        self.assertEqual(r.json()["deliveries"], 1, r)
        self.wait_received("/hooks/p-svc", 1)
        # naming oneself needs no scope
        r = self.event(self.bob, "pub.t", {"for": "bob"}, owner=BOB)
        self.assertEqual(r.json()["deliveries"], 1, r)
        self.wait_received("/hooks/p-bob", 1)
        time.sleep(QUIET_S)
        self.assertEqual(len(self.sim.requests("/hooks/p-alice")), 1)
        self.assertEqual(len(self.sim.requests("/hooks/p-bob")), 1)
        self.assertEqual(len(self.sim.requests("/hooks/p-svc")), 1)
        self.assertTrue(W.verify(bobs["secret"],
                                 self.sim.requests("/hooks/p-bob")[0]))
        self.assertTrue(W.verify(own["secret"],
                                 self.sim.requests("/hooks/p-svc")[0]))
        # the scope publishes, nothing more: no reading of alice's endpoint
        r = self.call(publisher(), "GET", "/endpoints/" + ep["id"])
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")

    def test_api_key_is_its_owner(self):
        ep = self.create(self.alice, "/hooks/p-key")
        r = self.d.post("/v1/api-keys", body={"name": "ci"},
                        headers=self.alice)
        self.assertEqual(r.status, 201, r)
        key = {"X-API-Key": r.json()["key"]}
        r = self.call(key, "GET", "/endpoints/" + ep["id"])
        self.assertEqual(r.status, 200, r)
        r = self.call(self.bob, "GET", "/endpoints/" + ep["id"])
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")


def version1_store(path, receiver_url):
    """A webhooks file as schema version 1 left it: one endpoint
    subscribed to everything, one event with an idempotency key."""
    sql = open(os.path.join(harness.SOURCE_DIR, "schema", "webhooks",
                            "001_init.sql")).read()
    db = sqlite3.connect(path)
    db.executescript(sql)
    now = int(time.time() * 1000)
    db.execute("INSERT INTO endpoints (id, url, events, secret, created_at, "
               "updated_at) VALUES (?, ?, '[\"*\"]', ?, ?, ?)",
               ("ep_0123456789abcdef01234567", receiver_url,
                "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
                now, now))
    db.execute("INSERT INTO endpoint_events VALUES ('*', "
               "'ep_0123456789abcdef01234567')")
    db.execute("INSERT INTO events (id, type, payload, idempotency_key, "
               "created_at) VALUES ('evt_0123456789abcdef01234567', 'old.t', "
               "'{}', 'old-key', ?)", (now,))
    db.execute("INSERT INTO deliveries (id, event_id, endpoint_id, state, "
               "attempts, next_at, created_at, updated_at, completed_at) "
               "VALUES ('dlv_0123456789abcdef01234567', "
               "'evt_0123456789abcdef01234567', "
               "'ep_0123456789abcdef01234567', 'failed', 8, ?, ?, ?, ?)",
               (now, now, now, now))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


class MigrationTest(OwnerBase):
    LEGACY = "ep_0123456789abcdef01234567"
    LEGACY_DLV = "dlv_0123456789abcdef01234567"

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        try:
            cls.tmpdir = tempfile.mkdtemp(prefix="bh-whmig-")
            cls.db = os.path.join(cls.tmpdir, "v1.db")
            version1_store(cls.db, cls.sim.url + "/hooks/legacy")
            cls.CONFIG = config(cls.sim.url, database=cls.db)
            cls.d = Daemon(cls.CONFIG)
            cls.alice = cls.session("alice")
            cls.bob = cls.session("bob")
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super(MigrationTest, cls).tearDownClass()
        finally:
            shutil.rmtree(cls.tmpdir, ignore_errors=True)

    def sql(self, query, args=()):
        db = sqlite3.connect(self.db, timeout=10)
        try:
            rows = db.execute(query, args).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def sql_script(self, script):
        db = sqlite3.connect(self.db, timeout=10)
        try:
            db.executescript(script)
        finally:
            db.close()

    def test_old_rows_belong_to_nobody_until_reassigned(self):
        # migrated past version 2 (3: delivery_changes, for the stream). The
        # workers migrate on their store thread after start-up, so a loaded
        # machine may read the file before that: wait for it, boundedly.
        deadline = time.monotonic() + 15
        while (self.sql("PRAGMA user_version") != [(3,)]
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.assertEqual(self.sql("PRAGMA user_version"), [(3,)])
        self.assertEqual(self.sql("SELECT owner FROM endpoints WHERE id = ?",
                                  (self.LEGACY,)), [(None,)])
        mine = self.create(self.alice, "/hooks/m-alice", ["*"])
        for who in (self.alice, self.bob):
            r = self.call(who, "GET", "/endpoints?limit=100")
            self.assertNotIn(self.LEGACY, [x["id"] for x in r.json()["data"]])
            r = self.call(who, "GET", "/endpoints/" + self.LEGACY)
            self.assertProblem(r, 404, "webhooks.endpoint_not_found")
            r = self.call(who, "GET", "/deliveries/" + self.LEGACY_DLV)
            self.assertProblem(r, 404, "webhooks.delivery_not_found")
            r = self.call(who, "POST",
                          "/deliveries/%s/retry" % self.LEGACY_DLV)
            self.assertProblem(r, 404, "webhooks.delivery_not_found")
            r = self.call(who, "GET", "/deliveries?limit=100")
            self.assertNotIn(self.LEGACY_DLV, r.body.decode())
            # the old event's key is nobody's: no replay of it
            r = self.event(who, "old.t", {}, idempotencyKey="old-key")
            self.assertEqual(r.status, 202, r)
            self.assertIsNone(r.headers.get("idempotent-replayed"), r)
        self.wait_received("/hooks/m-alice", 1)
        time.sleep(QUIET_S)
        self.assertEqual(self.sim.requests("/hooks/legacy"), [])
        # the operator's reassignment, as etc/bulkhead.ini documents it
        self.sql_script(
            "UPDATE endpoints SET owner = '%s' WHERE id = '%s';"
            "UPDATE deliveries SET owner = '%s' WHERE endpoint_id = '%s'" %
            (ALICE, self.LEGACY, ALICE, self.LEGACY))
        r = self.call(self.alice, "GET", "/endpoints/" + self.LEGACY)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["url"], self.sim.url + "/hooks/legacy")
        r = self.call(self.alice, "GET", "/deliveries/" + self.LEGACY_DLV)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "failed", r)
        r = self.event(self.alice, "new.t", {"after": "reassign"})
        self.assertEqual(r.json()["deliveries"], 2, r)
        self.wait_received("/hooks/legacy", 1)
        self.assertEqual(json.loads(self.sim.requests("/hooks/legacy")[0][
            "body"])["data"], {"after": "reassign"})
        r = self.call(self.bob, "GET", "/endpoints/" + self.LEGACY)
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")
        self.assertTrue(mine)


if __name__ == "__main__":
    harness.main()
