"""Composite routes ([composite.NAME]): each section is dispatched
in-process through the normal request path, concurrently, and the answer
is 200 {"sections": {KEY: {"status", "body" | "problem"}}} once every
section answered or ran out of time. One section's failure (its upstream
503 through the simulator, its plugin disabled or quarantined, its handler
past its route deadline, the composite's timeout) stays in its slot while
the others answer 200; only a failed `required` section makes the whole
answer that section's Problem. The session check runs once per composite:
an expired session cookie is refreshed once and the new cookies go out
once. A plugin crashing its worker under composite load costs only the
composites in flight on that worker, and once quarantined its slot says
plugin.unavailable. Access log and metrics have one line per section plus
one for the composite."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import Jar, auth_config, browser_login, wait_until  # noqa: E402
from harness import (Daemon, DaemonTestCase, RawConn, echo_section,  # noqa
                     parse_response, test_plugin)
from upstream_env import (TwoSimsCase, metric, parse_metrics,  # noqa: E402
                          plugin_section, start_sim)
from workers import plugin_status, wait_workers  # noqa: E402

SLACK = harness.SLACK
ONE_BODY = {"items": [1, 2, 3], "source": "one"}
TWO_BODY = {"plan": "pro", "source": "two"}

# A deliberate SIGSEGV must reach the kernel, not the sanitizer's report.
CRASH_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                              ":handle_segv=0:handle_abort=0:handle_sigill=0")
             .lstrip(":")}


def sections(r):
    doc = r.json()
    assert set(doc) == {"sections"}, doc
    return doc["sections"]


class _Slots(object):
    def assertSlotOk(self, slot, body=None, msg=None):
        self.assertEqual(slot.get("status"), 200, msg or slot)
        self.assertIn("body", slot, msg or slot)
        self.assertNotIn("problem", slot, msg or slot)
        if body is not None:
            self.assertEqual(slot["body"], body, msg or slot)

    def assertSlotProblem(self, slot, status, code, msg=None):
        self.assertEqual(slot.get("status"), status, msg or slot)
        self.assertNotIn("body", slot, msg or slot)
        pb = slot.get("problem")
        self.assertIsInstance(pb, dict, msg or slot)
        self.assertEqual(pb.get("status"), status, msg or slot)
        self.assertEqual(pb["extensions"]["code"], code, msg or slot)
        self.assertIsInstance(pb["extensions"]["retryable"], bool)
        return pb


class CompositeTest(_Slots, TwoSimsCase):
    """echo, up_one and up_two (each in front of its own simulator), crashy
    disabled; four composites over them."""

    @classmethod
    def make_config(cls, one_url, two_url):
        return {
            "server": {"workers": 0,
                       "cors_origins": "https://portal.example"},
            "plugin.echo": echo_section(composite="on"),
            "plugin.up_one": plugin_section("up_one",
                                            ok_rate_limit="tight"),
            "plugin.up_two": plugin_section("up_two"),
            "rate_limit.tight": {"quota": 1, "window_s": 3600},
            "plugin.crashy": {"path": test_plugin("crashy"),
                              "mount": "/t/crashy", "enabled": False},
            "upstream.up_one": {"url": one_url, "retries": 0,
                                "timeout_ms": 5000,
                                "breaker_min_calls": 1000},
            "upstream.up_two": {"url": two_url, "retries": 0,
                                "breaker_min_calls": 1000},
            "composite.dash": {
                "route": "GET /v1/dash",
                "section.ok": "GET /t/echo/ok",
                "section.one": "GET /t/up_one/get/v1/one?limit=5",
                "section.two": "GET /t/up_two/get/v1/two",
                "timeout_ms": 3000},
            "composite.strict": {
                "route": "GET /v1/strict",
                "section.ok": "GET /t/echo/ok",
                "section.one": "GET /t/up_one/get/v1/one?limit=5",
                "section.two": "GET /t/up_two/get/v1/two",
                "required": "one"},
            "composite.slow": {
                "route": "GET /v1/slow",
                "section.ok": "GET /t/echo/ok",
                "section.one": "GET /t/up_one/get/v1/one?limit=5",
                "section.never": "GET /t/echo/never",
                "timeout_ms": 800},
            "composite.px": {
                "route": "GET /v1/px",
                "section.json": "GET /t/up_one/proxy/v1/one",
                "section.text": "GET /t/up_one/proxy/v1/text",
                "section.cut": "GET /t/up_one/proxy/v1/cut"},
            "composite.limited": {
                "route": "GET /v1/limited",
                "section.ok": "GET /t/echo/ok",
                "section.tight": "GET /t/up_one/ok"},
            "composite.off": {
                "route": "GET /v1/off",
                "section.ok": "GET /t/echo/ok",
                "section.gone": "GET /t/crashy/ok"},
        }

    def setUp(self):
        super().setUp()
        self.sim1.set_behavior(path="/v1/one", status=200, body=ONE_BODY)
        self.sim2.set_behavior(path="/v1/two", status=200, body=TWO_BODY)

    def tearDown(self):
        # echo keeps its /never requests until told: end them, so the
        # daemon frees them before it stops
        self.d.post("/t/echo/never/release")
        super().tearDown()

    def test_every_section_healthy(self):
        r = self.d.get("/v1/dash")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        s = sections(r)
        self.assertEqual(list(s), ["ok", "one", "two"])
        self.assertSlotOk(s["ok"], {"plugin": "echo", "status": "ok"})
        self.assertSlotOk(s["one"], ONE_BODY)  # the upstream's body verbatim
        self.assertSlotOk(s["two"], TWO_BODY)
        # each section reached its upstream once, its query string intact
        reqs = self.sim1.requests("/v1/one")
        self.assertEqual(len(reqs), 1, reqs)
        self.assertIn("limit=5", str(reqs[0]))
        self.assertEqual(self.sim2.count("/v1/two"), 1)

    def test_access_log_and_metrics_per_section_and_composite(self):
        r = self.d.get("/v1/dash")
        self.assertEqual(r.status, 200, r)
        rid = r.headers["x-request-id"]
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            lines = [e for e in self.d.events("request")
                     if e.get("requestId") == rid]
            if len(lines) >= 4:
                break
            time.sleep(0.05)
        by = {e.get("section"): e for e in lines}
        self.assertEqual(len(lines), 4, lines)
        self.assertEqual(set(by), {None, "ok", "one", "two"}, lines)
        self.assertEqual(by[None]["path"], "/v1/dash")
        self.assertEqual(by[None]["composite"], "dash")
        self.assertEqual(by[None]["status"], 200)
        self.assertEqual(by["one"]["plugin"], "up_one")
        self.assertEqual(by["one"]["route"], "/t/up_one/get/*")
        self.assertEqual(by["one"]["composite"], "dash")
        self.assertEqual(by["one"]["status"], 200)
        self.assertNotIn("limit=5", by["one"]["path"])  # never the query
        m = parse_metrics(self.d.admin("/metrics").body.decode())
        self.assertGreaterEqual(metric(m, "bulkhead_requests_total",
                                       plugin="", route="/v1/dash",
                                       status="200", code="") or 0, 1, m)
        self.assertGreaterEqual(metric(m, "bulkhead_requests_total",
                                       plugin="up_one",
                                       route="/t/up_one/get/*",
                                       status="200", code="") or 0, 1)

    def test_each_upstream_failing_in_turn(self):
        for key, sim, path, code in (
                ("one", self.sim1, "/v1/one", "up_one.unavailable"),
                ("two", self.sim2, "/v1/two", "up_two.unavailable")):
            with self.subTest(section=key):
                sim.clear()
                sim.set_behavior(path=path, status=503)
                r = self.d.get("/v1/dash")
                self.assertEqual(r.status, 200, r)
                s = sections(r)
                pb = self.assertSlotProblem(s[key], 503, code)
                self.assertEqual(pb["instance"],
                                 "/t/%s/get%s" % (code.split(".")[0], path))
                self.assertEqual(pb["extensions"]["requestId"],
                                 r.headers["x-request-id"])
                self.assertSlotOk(s["ok"])
                other = "two" if key == "one" else "one"
                self.assertSlotOk(s[other],
                                  TWO_BODY if other == "two" else ONE_BODY)
                self.setUp()

    def test_handler_past_its_route_deadline(self):
        t0 = time.monotonic()
        r = self.d.get("/v1/slow")
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        # echo's /never has a 300 ms route deadline, below the composite's
        self.assertSlotProblem(s["never"], 504, "echo.timeout")
        self.assertSlotOk(s["ok"])
        self.assertSlotOk(s["one"], ONE_BODY)
        self.assertLess(took, 0.8 + SLACK, "waited for more than the deadline")

    def test_late_section_gets_generic_timeout_without_delaying_others(self):
        self.sim1.clear()
        self.sim1.set_behavior(path="/v1/one", status=200, body=ONE_BODY,
                               delay_ms=4000)
        t0 = time.monotonic()
        r = self.d.get("/v1/slow")
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        self.assertSlotProblem(s["one"], 504, "generic.timeout")
        self.assertSlotOk(s["ok"])
        self.assertSlotProblem(s["never"], 504, "echo.timeout")
        # the answer left at the composite's 800 ms, not the upstream's 4 s
        self.assertGreater(took, 0.7)
        self.assertLess(took, 0.8 + SLACK)
        rid = r.headers["x-request-id"]
        ev = self.d.wait_event(lambda e: e.get("event") == "section_timeout"
                               and e.get("requestId") == rid)
        self.assertIsNotNone(ev, self.diag())
        self.assertEqual(ev.get("section"), "one", ev)
        self.assertEqual(ev.get("composite"), "slow", ev)

    def test_proxy_sections_are_gathered(self):
        px = "/t/up_one/proxy/v1/"
        self.sim1.set_behavior(path=px + "one", status=200, body=ONE_BODY)
        self.sim1.set_behavior(path=px + "text", status=200, body="plain",
                               headers={"Content-Type": "text/plain"})
        self.sim1.set_behavior(path=px + "cut", action="reset_mid_body")
        r = self.d.get("/v1/px")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        self.assertSlotOk(s["json"], ONE_BODY)
        self.assertSlotOk(s["text"], "plain")  # not JSON: a JSON string
        self.assertSlotProblem(s["cut"], 502, "composite.section_failed")

    def test_section_rate_limited_on_its_own_route(self):
        r = self.d.get("/v1/limited")
        self.assertSlotOk(sections(r)["tight"])
        r = self.d.get("/v1/limited")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        pb = self.assertSlotProblem(s["tight"], 429, "rate_limit.exceeded")
        self.assertGreater(pb["extensions"]["retryAfterSeconds"], 0)
        self.assertSlotOk(s["ok"])
        # the route's bucket is the same one a direct call draws from
        self.assertEqual(self.d.get("/t/up_one/ok").status, 429)

    def test_cors_preflight_and_lines(self):
        origin = {"Origin": "https://portal.example"}
        r = self.d.request("OPTIONS", "/v1/dash", headers=dict(
            origin, **{"Access-Control-Request-Method": "GET"}))
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.headers.get("access-control-allow-origin"),
                         origin["Origin"])
        self.assertIn("GET", r.headers.get("access-control-allow-methods"))
        r = self.d.get("/v1/dash", headers=origin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("access-control-allow-origin"),
                         origin["Origin"])

    def test_unavailable_plugin(self):
        r = self.d.get("/v1/off")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        pb = self.assertSlotProblem(s["gone"], 503, "plugin.unavailable")
        self.assertEqual(pb["extensions"].get("plugin"), "crashy")
        self.assertEqual(pb["extensions"].get("reason"), "disabled")
        self.assertSlotOk(s["ok"])

    def test_required_section_failing_fails_the_whole_answer(self):
        self.sim1.clear()
        self.sim1.set_behavior(path="/v1/one", status=503,
                               headers={"Retry-After": "7"})
        r = self.d.get("/v1/strict")
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertEqual(doc["instance"], "/t/up_one/get/v1/one")
        self.assertEqual(r.headers.get("retry-after"), "7", r)
        self.assertEqual(doc["extensions"].get("retryAfterSeconds"), 7)
        self.assertNotIn("sections", doc)

    def test_other_sections_failing_do_not_fail_a_required_one(self):
        self.sim2.clear()
        self.sim2.set_behavior(path="/v1/two", status=503)
        r = self.d.get("/v1/strict")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        self.assertSlotOk(s["one"], ONE_BODY)
        self.assertSlotProblem(s["two"], 503, "up_two.unavailable")

    def test_sections_run_concurrently(self):
        # two sections each 600 ms upstream: together well under 1.2 s
        self.sim1.clear()
        self.sim2.clear()
        self.sim1.set_behavior(path="/v1/one", status=200, body=ONE_BODY,
                               delay_ms=600)
        self.sim2.set_behavior(path="/v1/two", status=200, body=TWO_BODY,
                               delay_ms=600)
        t0 = time.monotonic()
        r = self.d.get("/v1/dash")
        took = time.monotonic() - t0
        s = sections(r)
        self.assertSlotOk(s["one"], ONE_BODY)
        self.assertSlotOk(s["two"], TWO_BODY)
        self.assertLess(took, 1.1 if not harness.SANITIZE else 1.19, took)

    def test_plugin_registered_composite(self):
        r = self.d.get("/t/echo/pair")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        self.assertSlotOk(s["ok"], {"plugin": "echo", "status": "ok"})
        self.assertSlotOk(s["params"], {"a": "x", "b": "y"})
        # outside the plugin's mount: refused at start, never served
        ev = self.d.wait_event(lambda e: e.get("event") == "composite_refused")
        self.assertIsNotNone(ev, self.diag())
        self.assertIn("echo_outside", ev.get("msg", "") + str(ev))
        self.assertEqual(self.d.get("/v1/outside").status, 404)

    def test_config_check_refuses_a_bad_composite(self):
        bad = dict(self.CONFIG)
        bad["composite.broken"] = {"route": "GET /v1/broken",
                                   "section.a": "GET /t/echo/ok",
                                   "required": "b"}
        res = harness.run_tool(["-t", "-c", self._write(bad)])
        self.assertNotEqual(res.returncode, 0, res)
        self.assertIn("[composite.broken] required", res.stdout + res.stderr)
        self.assertIn("b is not a section", res.stdout + res.stderr)

    def _write(self, cfg):
        import tempfile
        fd, path = tempfile.mkstemp(suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(harness.render_config(cfg))
        self.addCleanup(os.unlink, path)
        return path


class CompositeQuarantineTest(_Slots, DaemonTestCase):
    """One worker, quarantine at the first crash: the composite's crashy
    section says plugin.unavailable (quarantined) while echo answers."""

    ENV = CRASH_ENV
    CONFIG = {
        "server": {"workers": 1, "quarantine_after": 1,
                   "quarantine_window_s": 60},
        "plugin.echo": echo_section(),
        "plugin.crashy": {"path": test_plugin("crashy"),
                          "mount": "/t/crashy"},
        "composite.mixed": {"route": "GET /v1/mixed",
                            "section.ok": "GET /t/echo/ok",
                            "section.crashy": "GET /t/crashy/ok"},
    }

    def test_quarantined_plugin_section(self):
        r = self.d.get("/v1/mixed")
        s = sections(r)
        self.assertSlotOk(s["crashy"], {"plugin": "crashy", "status": "ok"})
        with RawConn(self.d.port()) as c:
            c.send("GET /t/crashy/segv HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertIsNone(c.read_response(10.0))
        deadline = time.monotonic() + 10
        while not plugin_status(self.d, "crashy").get("quarantined"):
            self.assertLess(time.monotonic(), deadline, self.diag())
            time.sleep(0.05)
        wait_workers(self.d, 1)
        r = self.d.get("/v1/mixed")
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        pb = self.assertSlotProblem(s["crashy"], 503, "plugin.unavailable")
        self.assertEqual(pb["extensions"].get("reason"), "quarantined")
        self.assertSlotOk(s["ok"], {"plugin": "echo", "status": "ok"})


class CompositeSessionTest(_Slots, unittest.TestCase):
    """The auth plugin against the simulator's identity provider, whoami's
    auth-required routes as sections: access 2 s, refresh 60 s, no grace
    (a second rotation of one refresh token would be a reuse)."""

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        cfg = auth_config(cls.sim.url, auth={"access_ttl_s": 2,
                                             "refresh_ttl_s": 60})
        cfg["composite.me"] = {
            "route": "GET /v1/me",
            # the auth plugin's own route is never refreshed silently
            "section.me": "GET /v1/auth/me",
            "section.who": "GET /t/whoami",
            "section.again": "GET /t/whoami?again=1",
            "section.limited": "GET /t/whoami/limited",
            "section.open": "GET /t/whoami/open"}
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

    def composite(self, jar, **h):
        return jar.update(self.d.get("/v1/me", headers=jar.headers(**h)))

    def set_cookies(self, r):
        return [v.split("=", 1)[0] for k, v in r.header_list
                if k.lower() == "set-cookie"]

    def test_expired_session_refreshed_once_for_the_whole_composite(self):
        jar = browser_login(self.d, "alice")
        r = self.composite(jar.copy())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.set_cookies(r), [])  # fresh: nothing to refresh
        self.assertSlotOk(sections(r)["me"])
        user = sections(r)["who"]["body"]["userId"]
        exp = sections(r)["who"]["body"]["expiresAt"]
        wait_until(exp + 0.05)
        r = self.composite(jar)
        self.assertEqual(r.status, 200, "%r%s" % (r, self.d.diag(20)))
        s = sections(r)
        for key in ("who", "again", "limited"):
            self.assertSlotOk(s[key], msg="%s: %r" % (key, s[key]))
            self.assertEqual(s[key]["body"]["kind"], "cookie")
            self.assertEqual(s[key]["body"]["userId"], user)
            self.assertGreater(s[key]["body"]["expiresAt"], exp)
        self.assertSlotOk(s["open"], {"principal": None})
        # ... as on its own: the expired cookie does not let it in
        self.assertSlotProblem(s["me"], 401, "auth.unauthenticated")
        # one rotation: one new pair of cookies, on the composite only
        self.assertEqual(sorted(self.set_cookies(r)),
                         ["__refresh", "__session"], r.header_list)
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        self.assertEqual(self.d.events("refresh_reuse"), [])
        # the pair it carried is the live one: the family was not revoked
        r = self.d.get("/t/whoami", headers=jar.headers())
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("set-cookie", r.headers)

    def test_api_key_checked_once_for_the_whole_composite(self):
        from auth_env import bearer, login
        tok = login(self.d, "bob").json()["accessToken"]
        r = self.d.post("/v1/api-keys", body={"name": "dash"},
                        headers=bearer(tok))
        self.assertEqual(r.status, 201, r)
        key, kid = r.json()["key"], r.json()["id"]
        r = self.d.get("/v1/me", headers={"X-API-Key": key})
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        for k in ("who", "again", "limited"):
            self.assertSlotOk(s[k], msg="%s: %r" % (k, s[k]))
            self.assertEqual(s[k]["body"]["kind"], "api_key")
            self.assertEqual(s[k]["body"]["keyId"], kid)
        self.assertEqual(self.set_cookies(r), [])
        r = self.d.get("/v1/me", headers={"X-API-Key": key + "x"})
        s = sections(r)
        for k in ("who", "again", "limited"):
            self.assertSlotProblem(s[k], 401, "auth.unauthenticated")

    def test_refused_caller_gets_the_refusal_in_each_protected_slot(self):
        r = self.d.get("/v1/me", headers={"Accept": "text/html",
                                          "Sec-Fetch-Mode": "navigate"})
        self.assertEqual(r.status, 200, r)
        s = sections(r)
        for key in ("me", "who", "again", "limited"):
            self.assertSlotProblem(s[key], 401, "auth.unauthenticated")
        self.assertSlotOk(s["open"], {"principal": None})


class CompositeCrashLoadTest(_Slots, DaemonTestCase):
    """Two workers, quarantine after 3 charges: composites whose section
    crashes its worker, under load from several connections. A crash loses
    only what was in flight on that worker; every composite answered says
    the truth per slot; once quarantined, every composite answers 200 with
    the crashy slot plugin.unavailable and echo's slot 200."""

    ENV = CRASH_ENV
    QUARANTINE_AFTER = 3
    THREADS = 4
    CONFIG = {
        "server": {"workers": 2, "quarantine_after": QUARANTINE_AFTER,
                   "quarantine_window_s": 60, "keepalive_requests": 100000},
        "plugin.echo": echo_section(),
        "plugin.crashy": {"path": test_plugin("crashy"),
                          "mount": "/t/crashy"},
        "composite.boom": {"route": "GET /v1/boom",
                           "section.ok": "GET /t/echo/ok",
                           "section.crash": "GET /t/crashy/segv"},
        "composite.calm": {"route": "GET /v1/calm",
                           "section.ok": "GET /t/echo/ok",
                           "section.crashy": "GET /t/crashy/ok"},
    }

    def _load(self, path, stop, results):
        req = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode()
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = socket.create_connection(
                        ("127.0.0.1", self.d.port()), timeout=10)
                conn.sendall(req)
                buf = b""
                r = None
                while r is None:
                    chunk = conn.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed without an answer")
                    buf += chunk
                    try:
                        r, _ = parse_response(buf)
                    except Exception as e:  # noqa: B902 (incomplete)
                        if type(e).__name__ != "_Incomplete":
                            raise
                        r = None
                results.append(("ok", r))
                if r.closes():
                    conn.close()
                    conn = None
            except (OSError, ConnectionError) as e:
                results.append(("lost", repr(e)))
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.02)
        if conn:
            conn.close()

    def test_crashy_section_under_load(self):
        stop = threading.Event()
        boom, calm = [], []
        threads = [threading.Thread(target=self._load,
                                    args=("/v1/boom", stop, boom),
                                    daemon=True)
                   for _ in range(self.THREADS)]
        threads += [threading.Thread(target=self._load,
                                     args=("/v1/calm", stop, calm),
                                     daemon=True)
                    for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                if plugin_status(self.d, "crashy").get("quarantined"):
                    break
                time.sleep(0.05)
            self.assertTrue(plugin_status(self.d, "crashy").get("quarantined"),
                            self.diag())
            wait_workers(self.d, 2)
            n = len(boom)
            while len(boom) < n + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        answered = [r for kind, r in boom if kind == "ok"]
        lost = [r for kind, r in boom if kind == "lost"]
        # each crash costs at most what was in flight on its worker: one
        # request per load connection
        self.assertLessEqual(len(lost), self.QUARANTINE_AFTER * (
            self.THREADS + 2), lost)
        self.assertGreaterEqual(len(answered), 20)
        for r in answered:
            self.assertEqual(r.status, 200, r)
            s = sections(r)
            self.assertSlotOk(s["ok"], {"plugin": "echo", "status": "ok"})
            pb = self.assertSlotProblem(s["crash"], 503, "plugin.unavailable")
            self.assertEqual(pb["extensions"]["reason"], "quarantined")
        # the calm composites: answered ones always tell the truth
        calm_ok = [r for kind, r in calm if kind == "ok"]
        self.assertGreater(len(calm_ok), 0)
        for r in calm_ok:
            s = sections(r)
            self.assertSlotOk(s["ok"])
            self.assertIn(s["crashy"]["status"], (200, 503), s)
        # the last ones see the quarantine
        self.assertEqual(sections(calm_ok[-1])["crashy"]["status"], 503)
        # the workers were restarted each time and echo still serves
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)


if __name__ == "__main__":
    harness.main()
