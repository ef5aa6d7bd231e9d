"""Webhooks API: the endpoint registry (the secret shown once, list, get,
patch, delete, rotate), events with an idempotency key, delivery listings
with pagination and filters, the error map (webhooks.endpoint_not_found,
webhooks.invalid_url naming the field, webhooks.invalid_event_type,
webhooks.invalid_query), SSRF refusal of private, loopback and link-local
URLs (at creation, and at connect time for a name or an endpoint written
under a laxer config), IPv4 embedded in IPv6 judged as the IPv4 address,
allowed_ports, one generic invalid_url answer whatever the cause (the log
names it), and authentication through the core's middleware."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, run_tool  # noqa: E402
import webhooks_env as W  # noqa: E402


class WebhooksApiTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config()
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(WebhooksApiTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def setUp(self):
        super(WebhooksApiTest, self).setUp()
        self.api = W.Api(self.d)
        self.sim.reset()

    def url(self, path):
        return self.sim.url + path

    # -- authentication -----------------------------------------------------

    def test_routes_require_authentication(self):
        for method, path in (("GET", "/endpoints"), ("POST", "/events"),
                             ("GET", "/deliveries"),
                             ("GET", "/deliveries/dlv_000000000000000000000000")):
            r = self.api.call(method, path, {} if method == "POST" else None,
                              auth=False)
            self.assertProblem(r, 401, "auth.unauthenticated", path)
        bad = {"Authorization": "Bearer " + W.mint_access_token(
            "another-secret-0123456789-abcdefghijklmn", "u")}
        r = self.api.call("GET", "/endpoints", auth=False, headers=bad)
        self.assertProblem(r, 401, "auth.unauthenticated")

    # -- endpoints ----------------------------------------------------------

    def test_endpoint_lifecycle(self):
        r = self.api.call("POST", "/endpoints",
                          {"url": self.url("/hooks/life"),
                           "events": ["order.created", "order.paid",
                                      "order.created"],
                           "description": "orders"})
        self.assertEqual(r.status, 201, r)
        ep = r.json()
        self.assertRegex(ep["id"], r"^ep_[0-9a-f]{24}$")
        self.assertRegex(ep["secret"], r"^whsec_[A-Za-z0-9+/]{43}=$")
        self.assertEqual(ep["events"], ["order.created", "order.paid"])
        self.assertEqual(ep["description"], "orders")
        self.assertIs(ep["enabled"], True)
        self.assertEqual(ep["breaker"]["state"], "closed")

        got = self.api.endpoint(ep["id"])
        self.assertNotIn("secret", got, "the secret is shown once only")
        self.assertEqual(got["url"], ep["url"])
        listed = self.api.call("GET", "/endpoints?limit=100").json()["data"]
        self.assertIn(ep["id"], [e["id"] for e in listed])
        self.assertTrue(all("secret" not in e for e in listed))

        r = self.api.call("PATCH", "/endpoints/" + ep["id"],
                          {"url": self.url("/hooks/life2"),
                           "events": ["invoice.sent"], "enabled": False})
        self.assertEqual(r.status, 200, r)
        p = r.json()
        self.assertEqual(p["url"], self.url("/hooks/life2"))
        self.assertEqual(p["events"], ["invoice.sent"])
        self.assertIs(p["enabled"], False)
        self.assertEqual(p["disabledReason"], "manual")
        self.assertEqual(p["description"], "orders")
        # a disabled endpoint gets no deliveries
        r = self.api.event("invoice.sent", {"n": 1})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["deliveries"], 0)
        r = self.api.call("PATCH", "/endpoints/" + ep["id"], {"enabled": True})
        self.assertIs(r.json()["enabled"], True)
        self.assertIsNone(r.json()["disabledReason"])

        r = self.api.call("DELETE", "/endpoints/" + ep["id"])
        self.assertEqual(r.status, 204, r)
        for method in ("GET", "DELETE", "PATCH"):
            r = self.api.call(method, "/endpoints/" + ep["id"],
                              {} if method == "PATCH" else None)
            self.assertProblem(r, 404, "webhooks.endpoint_not_found", method)
        r = self.api.call("POST", "/endpoints/" + ep["id"] + "/rotate-secret")
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")
        r = self.api.call("GET", "/endpoints/not-an-id")
        self.assertProblem(r, 404, "webhooks.endpoint_not_found")

    def test_rotate_secret_returns_a_new_secret_once(self):
        ep = self.api.create(self.url("/hooks/rot"), ["a.b"])
        r = self.api.call("POST", "/endpoints/%s/rotate-secret" % ep["id"])
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertRegex(doc["secret"], r"^whsec_")
        self.assertNotEqual(doc["secret"], ep["secret"])
        self.assertIn("previousSecretExpiresAt", doc)
        self.assertNotIn("secret", self.api.endpoint(ep["id"]))

    def test_invalid_urls_name_the_field(self):
        cases = ["ftp://example.com/x", "not a url", "http://",
                 "https://user:pw@example.com/x", "http://example.com/#frag",
                 "file:///etc/passwd", "gopher://example.com/"]
        for url in cases:
            r = self.api.call("POST", "/endpoints", {"url": url,
                                                     "events": ["a"]})
            doc = self.assertProblem(r, 400, "webhooks.invalid_url", url)
            self.assertEqual(doc["extensions"].get("errors"),
                             [{"field": "url", "code": "webhooks.invalid_url"}],
                             r)
            self.assertNotIn("user:pw", r.body.decode(), "no echo of secrets")
        ep = self.api.create(self.url("/hooks/patch-url"), ["a"])
        r = self.api.call("PATCH", "/endpoints/" + ep["id"],
                          {"url": "ftp://example.com/"})
        self.assertProblem(r, 400, "webhooks.invalid_url")
        self.assertEqual(self.api.endpoint(ep["id"])["url"],
                         self.url("/hooks/patch-url"))

    def test_private_and_link_local_urls_are_refused(self):
        # loopback is allowed in this config; the other classes are not
        for url in ("http://10.0.0.8/hook", "http://192.168.1.1/hook",
                    "http://172.16.5.4:8080/hook", "http://169.254.169.254/",
                    "http://[fe80::1]/hook", "http://[fd00::1]/hook",
                    "http://[::ffff:10.0.0.1]/hook", "http://0.0.0.0/hook",
                    "http://100.64.0.1/hook", "http://224.0.0.1/hook"):
            r = self.api.call("POST", "/endpoints", {"url": url,
                                                     "events": ["a"]})
            self.assertProblem(r, 400, "webhooks.invalid_url", url)
        self.assertEqual(self.api.call("POST", "/endpoints", {
            "url": "https://hooks.example.com/in", "events": ["a"]}).status,
            201)

    def test_body_shape_and_event_types(self):
        r = self.api.call("POST", "/endpoints", {"url": self.url("/x")})
        doc = self.assertProblem(r, 400, "request.invalid_body")
        self.assertIn({"field": "events", "code": "request.field_required"},
                      doc["extensions"]["errors"])
        r = self.api.call("POST", "/endpoints", {"url": self.url("/x"),
                                                 "events": ["bad type!"]})
        doc = self.assertProblem(r, 400, "webhooks.invalid_event_type")
        self.assertEqual(doc["extensions"]["errors"][0]["field"], "events")
        r = self.api.event("has space", {})
        self.assertProblem(r, 400, "webhooks.invalid_event_type")
        r = self.api.call("POST", "/events", {"type": "a", "data": [1]})
        self.assertProblem(r, 400, "request.invalid_body")
        r = self.api.call("POST", "/events", {"type": "a", "data": {},
                                              "extra": 1})
        self.assertProblem(r, 400, "request.invalid_body")

    # -- events -------------------------------------------------------------

    def test_event_fans_out_and_idempotency_key_answers_the_original(self):
        a = self.api.create(self.url("/hooks/idem-a"), ["user.signup"])
        b = self.api.create(self.url("/hooks/idem-b"), ["*"])
        self.api.create(self.url("/hooks/idem-c"), ["other.type"])
        key = "signup-%f" % time.time()
        r1 = self.api.event("user.signup", {"user": "u1"}, key=key)
        self.assertEqual(r1.status, 202, r1)
        doc = r1.json()
        self.assertRegex(doc["id"], r"^evt_[0-9a-f]{24}$")
        self.assertEqual(doc["deliveries"], 2)
        self.assertNotIn("idempotent-replayed", r1.headers)
        # the same key again: the original answer, nothing new recorded
        r2 = self.api.event("user.signup", {"user": "u1"}, key=key)
        self.assertEqual(r2.status, 202, r2)
        self.assertEqual(r2.json(), doc)
        self.assertEqual(r2.headers.get("idempotent-replayed"), "true")
        r3 = self.api.event("user.signup", {"user": "u2"}, key=key + "-2")
        self.assertNotEqual(r3.json()["id"], doc["id"])
        self.assertTrue(W.wait_for(
            lambda: len(self.sim.requests("/hooks/idem-a")) == 2 and
            len(self.sim.requests("/hooks/idem-b")) == 2, timeout=5))
        time.sleep(0.3)
        for path, ep in (("/hooks/idem-a", a), ("/hooks/idem-b", b)):
            ids = W.ids_at(self.sim, path)
            self.assertEqual(sorted(ids), sorted([doc["id"],
                                                  r3.json()["id"]]), path)
            self.assertTrue(all(W.verify(ep["secret"], rec)
                                for rec in self.sim.requests(path)))
        self.assertEqual(self.sim.requests("/hooks/idem-c"), [])

    # -- deliveries ---------------------------------------------------------

    def test_pagination_and_filters(self):
        ep1 = self.api.create(self.url("/hooks/page1"), ["page.test"])
        ep2 = self.api.create(self.url("/hooks/page2"), ["page.test"])
        self.sim.set_behavior(path="/hooks/page2", status=400)
        n = 7
        for i in range(n):
            self.assertEqual(self.api.event("page.test", {"i": i}).status, 202)
        q1 = "?endpoint=%s" % ep1["id"]
        q2 = "?endpoint=%s" % ep2["id"]
        self.assertTrue(W.wait_for(lambda: len(self.api.all_deliveries(
            q1 + "&status=succeeded")) == n, timeout=6))
        self.assertTrue(W.wait_for(lambda: len(self.api.all_deliveries(
            q2 + "&status=failed")) == n, timeout=10))
        page = self.api.deliveries(q1 + "&limit=3")
        self.assertEqual(len(page["data"]), 3)
        self.assertIsNotNone(page["nextCursor"])
        seen, cursor, pages = [], None, 0
        while True:
            q = q1 + "&limit=3" + ("&cursor=" + cursor if cursor else "")
            page = self.api.deliveries(q)
            seen.extend(page["data"])
            pages += 1
            cursor = page["nextCursor"]
            if not cursor:
                break
        self.assertEqual(pages, 3)
        ids = [x["id"] for x in seen]
        self.assertEqual(len(ids), n)
        self.assertEqual(len(set(ids)), n, "a delivery on two pages")
        self.assertTrue(all(x["endpointId"] == ep1["id"] for x in seen))
        created = [x["createdAt"] for x in seen]
        self.assertEqual(created, sorted(created, reverse=True))
        self.assertEqual(self.api.all_deliveries(q1 + "&status=failed"), [])
        failed = self.api.all_deliveries(q2 + "&status=failed")
        self.assertTrue(all(x["lastStatusCode"] == 400 for x in failed))
        self.assertTrue(all(x["attemptCount"] == len(W.SCHEDULE_MS)
                            for x in failed))
        everything = self.api.all_deliveries("?status=failed")
        self.assertGreaterEqual(len(everything), n)

        for q, field in (("?limit=0", "limit"), ("?limit=101", "limit"),
                         ("?limit=x", "limit"), ("?cursor=-1", "cursor"),
                         ("?status=done", "status"),
                         ("?endpoint=../x", "endpoint")):
            r = self.api.call("GET", "/deliveries" + q)
            doc = self.assertProblem(r, 400, "webhooks.invalid_query", q)
            self.assertEqual(doc["extensions"]["errors"][0]["field"], field)
        r = self.api.call("GET", "/endpoints?limit=1000")
        self.assertProblem(r, 400, "webhooks.invalid_query")

    def test_delivery_detail_and_not_found(self):
        ep = self.api.create(self.url("/hooks/detail"), ["d.t"])
        self.api.event_id("d.t", {"k": "v"})
        self.assertTrue(W.wait_for(lambda: self.api.all_deliveries(
            "?endpoint=%s&status=succeeded" % ep["id"]), timeout=5))
        dl = self.api.all_deliveries("?endpoint=%s" % ep["id"])[0]
        doc = self.api.delivery(dl["id"])
        self.assertEqual(doc["status"], "succeeded")
        self.assertEqual(doc["eventType"], "d.t")
        self.assertEqual(len(doc["attempts"]), 1)
        att = doc["attempts"][0]
        self.assertEqual(att["attempt"], 1)
        self.assertEqual(att["statusCode"], 200)
        self.assertIsNone(att["error"])
        self.assertIsInstance(att["latencyMs"], int)
        self.assertRegex(att["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        path = "/deliveries/dlv_000000000000000000000000"
        self.assertProblem(self.api.call("GET", path), 404,
                           "webhooks.delivery_not_found", path)
        # a parameter that decodes to a NUL never reaches the plugin
        path = "/deliveries/x%00y"
        self.assertProblem(self.api.call("GET", path), 400,
                           "request.bad_request", path)
        r = self.api.call("POST",
                          "/deliveries/dlv_000000000000000000000000/retry")
        self.assertProblem(r, 404, "webhooks.delivery_not_found")


class WebhooksSsrfTest(harness.DaemonTestCase):
    """A daemon that allows no loopback receivers."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.tmp_db = None
        cls.CONFIG = W.config(allow_loopback=False)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(WebhooksSsrfTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_loopback_refused_at_creation(self):
        api = W.Api(self.d)
        for url in (self.sim.url + "/hook", "http://localhost:%d/h" %
                    self.sim.port, "http://LOCALHOST./h",
                    "http://app.localhost/h", "http://127.1.2.3/h",
                    "http://[::1]:%d/h" % self.sim.port):
            r = api.call("POST", "/endpoints", {"url": url, "events": ["a"]})
            self.assertProblem(r, 400, "webhooks.invalid_url", url)

    def test_connect_time_check_refuses_what_creation_could_not_see(self):
        """An endpoint written under a config that allowed loopback, then
        served by one that does not: the dispatcher refuses the address
        it would connect to, and the receiver never sees a byte."""
        shared = os.path.join(self.d.tmp, "shared.db")
        lax = Daemon(W.config(database=shared))
        try:
            ep = W.Api(lax).create(self.sim.url + "/hooks/ssrf", ["s.t"])
        finally:
            lax.stop()
        strict = Daemon(W.config(database=shared, allow_loopback=False))
        try:
            api = W.Api(strict)
            eid = api.event_id("s.t", {"x": 1})
            self.assertTrue(W.wait_for(lambda: api.all_deliveries(
                "?endpoint=%s&status=failed" % ep["id"]), timeout=8))
            dl = api.all_deliveries("?endpoint=%s" % ep["id"])[0]
            doc = api.delivery(dl["id"])
            self.assertEqual(doc["eventId"], eid)
            self.assertEqual(
                [a["error"] for a in doc["attempts"]],
                ["address_not_allowed"] * len(W.SCHEDULE_MS), doc)
            self.assertEqual(self.sim.requests("/hooks/ssrf"), [])
        finally:
            strict.stop()

    def test_embedded_ipv4_and_tunnels_refused_with_one_generic_answer(self):
        """IPv4 inside IPv6 is judged as the IPv4 address, Teredo is
        reserved; whatever the cause the caller gets the same answer (no
        map of what the checks let through) and the log names the cause."""
        api = W.Api(self.d)
        cases = (
            ("http://[::ffff:127.0.0.1]/h", "loopback"),
            ("http://[64:ff9b::7f00:1]/h", "loopback"),
            ("http://[64:ff9b::a9fe:a9fe]/latest", "link-local"),
            ("http://[64:ff9b:1:a00:1::]/h", "reserved"),
            ("http://[2002:a00:1::1]/h", "private"),
            ("http://[2002:7f00:1::1]/h", "loopback"),
            ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/h", "reserved"),
            ("http://10.0.0.8/h", "private"),
            ("ftp://example.com/h", "scheme"),
            ("https://user:pw@example.com/h", "credentials"),
        )
        bodies = set()
        for url, cause in cases:
            r = api.call("POST", "/endpoints", {"url": url, "events": ["a"]})
            doc = self.assertProblem(r, 400, "webhooks.invalid_url", url)
            self.assertEqual(doc["detail"],
                             "The webhook endpoint URL is not valid.", url)
            rid = doc["extensions"].pop("requestId")
            doc["extensions"].pop("traceId")
            doc["extensions"].pop("spanId")
            bodies.add(json.dumps(doc, sort_keys=True))
            ev = self.d.wait_event(lambda e, rid=rid: rid in e.get("msg", ""))
            self.assertIsNotNone(ev, url + self.d.diag())
            self.assertIn("refused", ev["msg"])
            self.assertIn(cause, ev["msg"], url)
            # the log names the cause, never the URL (it may hold a token)
            self.assertNotIn(url.split("//")[1].split("/")[0], ev["msg"])
        self.assertEqual(len(bodies), 1, bodies)
        # and a public address in IPv6 clothing is still fine
        r = api.call("POST", "/endpoints", {
            "url": "https://[2002:808:808::1]/in", "events": ["a"]})
        self.assertEqual(r.status, 201, r)


class WebhooksPortsTest(harness.DaemonTestCase):
    """allowed_ports: by default only 80 and 443, when an endpoint is saved
    and again at connect time; a bad value fails `bulkhead -t`."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(allowed_ports=None)  # the default
        del cls.CONFIG["plugin.webhooks"]["allowed_ports"]
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(WebhooksPortsTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_default_ports_are_80_and_443(self):
        api = W.Api(self.d)
        for url in ("https://hooks.example.com:8443/in",
                    "http://hooks.example.com:22/", "http://127.0.0.1:6379/",
                    "http://localhost:%d/h" % self.sim.port):
            r = api.call("POST", "/endpoints", {"url": url, "events": ["a"]})
            doc = self.assertProblem(r, 400, "webhooks.invalid_url", url)
            self.assertEqual(doc["detail"],
                             "The webhook endpoint URL is not valid.", url)
            rid = doc["extensions"]["requestId"]
            ev = self.d.wait_event(lambda e, rid=rid: rid in e.get("msg", ""))
            self.assertIsNotNone(ev, url)
            self.assertIn("allowed_ports", ev["msg"])
        for url in ("https://hooks.example.com/in",
                    "http://hooks.example.com:80/in",
                    "https://hooks.example.com:443/in",
                    "http://127.0.0.1/in"):  # loopback allowed here
            r = api.call("POST", "/endpoints", {"url": url, "events": ["a"]})
            self.assertEqual(r.status, 201, (url, r))

    def test_connect_time_check_refuses_a_port_no_longer_allowed(self):
        """An endpoint saved while any port was allowed, then served with
        the default: the dispatcher refuses to connect, the receiver never
        sees a byte."""
        shared = os.path.join(self.d.tmp, "ports.db")
        lax = Daemon(W.config(database=shared))
        try:
            ep = W.Api(lax).create(self.sim.url + "/hooks/port", ["p.t"])
        finally:
            lax.stop()
        cfg = W.config(database=shared)
        del cfg["plugin.webhooks"]["allowed_ports"]
        strict = Daemon(cfg)
        try:
            api = W.Api(strict)
            api.event_id("p.t", {"x": 1})
            self.assertTrue(W.wait_for(lambda: api.all_deliveries(
                "?endpoint=%s&status=failed" % ep["id"]), timeout=8))
            dl = api.all_deliveries("?endpoint=%s" % ep["id"])[0]
            doc = api.delivery(dl["id"])
            self.assertEqual([a["error"] for a in doc["attempts"]],
                             ["address_not_allowed"] * len(W.SCHEDULE_MS),
                             doc)
            self.assertEqual(self.sim.requests("/hooks/port"), [])
        finally:
            strict.stop()

    def test_bad_allowed_ports_fail_the_config_check(self):
        for value in ("0", "65536", "80-", "443,http", "90-80", ""):
            with self.subTest(value=value):
                cfg = W.config(server={"data_dir": os.path.join(
                    self.d.tmp, "check-data")}, allowed_ports=value)
                path = os.path.join(self.d.tmp, "check.ini")
                with open(path, "w") as f:
                    f.write(harness.render_config(cfg))
                res = run_tool(["-t", "-c", path], timeout=20)
                self.assertNotEqual(res.returncode, 0, res.stdout)
                self.assertIn("allowed_ports", res.stdout + res.stderr)
        cfg = W.config(server={"data_dir": os.path.join(
            self.d.tmp, "check-data")}, allowed_ports="80, 443, 8000-8999")
        with open(path, "w") as f:
            f.write(harness.render_config(cfg))
        res = run_tool(["-t", "-c", path], timeout=20)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


if __name__ == "__main__":
    harness.main()
