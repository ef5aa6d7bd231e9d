"""Admin listener: /healthz, /readyz, /admin/status, /admin/errors, and the
optional bearer admin token (401 admin.unauthorized without it) and
metrics token (/metrics)."""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Daemon, DaemonTestCase, echo_section,  # noqa
                     first_party, run_tool)

TOKEN = "s3cret-admin-token-0123456789"
CODE_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def version():
    out = run_tool(["--version"]).stdout
    m = re.match(r"^bulkhead (\S+) \(plugin ABI (\d+)\.(\d+)\)$", out.strip())
    assert m, out
    return m.group(1), "%s.%s" % (m.group(2), m.group(3))


class OpenAdminTest(DaemonTestCase):
    CONFIG = dict({"plugin.echo": echo_section(required=True)},
                  **first_party("billing"))

    def test_healthz(self):
        r = self.d.admin("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ok"})
        self.assertEqual(r.headers.get("content-type"), "application/json")
        self.assertEqual(r.headers.get("cache-control"), "no-store")

    def test_readyz(self):
        r = self.d.admin("/readyz")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["status"], "ready", doc)
        self.assertEqual(doc["stores"]["identity"],
                         {"backend": "sqlite", "status": "ok"})
        # the plugins' stores (billing, webhooks), when loaded
        for name, st in doc["stores"].items():
            self.assertIn(name, ("identity", "billing", "webhooks"), doc)
            self.assertEqual(st["backend"], "sqlite", doc)

    def test_head_probe(self):
        r = self.d.admin("/healthz", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")

    def test_status_document(self):
        for _ in range(3):
            self.d.get("/t/echo/ok")
        r = self.d.admin("/admin/status")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        doc = r.json()
        ver, abi = version()
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(doc["version"], ver)
        self.assertEqual(doc["abi"], abi)
        self.assertEqual(doc["listeners"]["api"],
                         "127.0.0.1:%d" % self.d.api_port)
        self.assertEqual(doc["listeners"]["admin"],
                         "127.0.0.1:%d" % self.d.admin_port)
        self.assertGreaterEqual(doc["requestsTotal"], 3)
        self.assertIsInstance(doc["uptimeSeconds"], int)
        names = [p["name"] for p in doc["plugins"]]
        self.assertEqual(names, ["echo", "billing"])  # config order
        echo = doc["plugins"][0]
        self.assertEqual(echo["state"], "loaded")
        self.assertEqual(echo["version"], "0.1.0")
        self.assertEqual(echo["abi"], abi)
        self.assertTrue(echo["required"])
        self.assertEqual(echo["mounts"], ["/t/echo"])
        self.assertIsNone(echo["lastError"])
        self.assertIn({"method": "GET", "pattern": "/t/echo/ok"},
                      echo["routes"])
        self.assertFalse(doc["plugins"][1]["required"])

    def test_requests_total_counts(self):
        before = self.d.admin("/admin/status").json()["requestsTotal"]
        for _ in range(4):
            self.d.get("/t/echo/ok")
        self.d.get("/nope")
        after = self.d.admin("/admin/status").json()["requestsTotal"]
        self.assertGreaterEqual(after - before, 5)

    def test_errors_catalogue(self):
        r = self.d.admin("/admin/errors")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        codes = {c["code"]: c for c in doc["codes"]}
        self.assertEqual(len(codes), len(doc["codes"]), "duplicate codes")
        for c in doc["codes"]:
            self.assertRegex(c["code"], CODE_RE)
            self.assertIsInstance(c["status"], int)
            self.assertTrue(400 <= c["status"] <= 599, c)
            self.assertIsInstance(c["retryable"], bool)
            self.assertIsInstance(c["title"], str)
        for core in ("request.bad_request", "request.invalid_body",
                     "route.not_found", "route.method_not_allowed",
                     "request.timeout", "request.too_large",
                     "request.headers_too_large", "generic.internal",
                     "plugin.unavailable", "admin.not_ready",
                     "admin.unauthorized"):
            self.assertIn(core, codes)
            self.assertEqual(codes[core]["owner"], "core")
        self.assertEqual(codes["echo.forbidden_key"]["owner"], "echo")
        self.assertEqual(codes["echo.forbidden_key"]["status"], 403)
        self.assertEqual(codes["echo.timeout"]["status"], 504)
        self.assertTrue(codes["echo.timeout"]["retryable"])
        self.assertEqual(codes["billing.payment_unavailable"]["owner"],
                         "billing")
        self.assertIn("request.field_required", doc["fieldCodes"])
        self.assertIn("request.field_unknown", doc["fieldCodes"])

    def test_errors_catalogue_matches_list_codes(self):
        r = self.d.admin("/admin/errors")
        out = run_tool(["--list-codes", "-c", self.d.config_path])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), r.json())

    def test_wrong_method(self):
        for path in ("/healthz", "/readyz", "/admin/status", "/admin/errors"):
            with self.subTest(path=path):
                r = self.d.admin(path, method="POST", body="{}")
                self.assertProblem(r, 405, "route.method_not_allowed")
                allow = {m.strip() for m in r.headers["allow"].split(",")}
                self.assertEqual(allow, {"GET", "HEAD"})

    def test_unknown_admin_path(self):
        for path in ("/admin/nope", "/nope", "/admin"):
            with self.subTest(path=path):
                self.assertProblem(self.d.admin(path), 404,
                                   "route.not_found")

    def test_admin_listener_refuses_bad_input_too(self):
        res = self.d.raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                         admin=True, expect=2)
        self.assertEqual(len(res.responses), 1, res)
        self.assertProblem(res.responses[0], 400, "request.bad_request")
        self.assertTrue(res.closed, res)
        res = self.d.raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
                         b"a" * 20000 + b"\r\n\r\n", admin=True, expect=1)
        self.assertProblem(res.responses[0], 431,
                           "request.headers_too_large")
        self.assertTrue(res.closed, res)
        # keep-alive works there as well
        with self.d.raw_conn(admin=True) as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 3)
            self.assertEqual([r.status for r in c.read_responses(3)],
                             [200, 200, 200])

    def test_http10_probe_without_host(self):
        # no browser sends a request without Host: an old-style probe may
        res = self.d.raw(b"GET /healthz HTTP/1.0\r\n\r\n", admin=True)
        self.assertEqual(res.responses[0].status, 200, res)

    def test_admin_requests_are_logged_as_admin(self):
        self.d.admin("/healthz", headers={"X-Request-ID": "admin-log-1"})
        logs = self.d.request_log("admin-log-1")
        self.assertEqual(len(logs), 1, logs)
        self.assertEqual(logs[0].get("listener"), "admin")
        self.assertEqual(logs[0].get("status"), 200)


METRICS_TOKEN = "scrape-token-0123456789abcdef"


class MetricsTokenTest(DaemonTestCase):
    """[server] metrics_token: GET /metrics needs it as a bearer token;
    probes stay open and the (tokenless) admin API is not affected."""
    CONFIG = {"server": {"metrics_token": METRICS_TOKEN},
              "plugin.echo": echo_section()}

    def test_metrics_need_the_token(self):
        for hdrs in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                     {"Authorization": "Basic " + METRICS_TOKEN}):
            with self.subTest(headers=hdrs):
                r = self.d.admin("/metrics", headers=hdrs)
                self.assertProblem(r, 401, "admin.unauthorized")
                self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
                self.assertNotIn(b"bulkhead_", r.body)
                self.assertNotIn(METRICS_TOKEN.encode(), r.body)
        r = self.d.admin("/metrics", headers={
            "Authorization": "Bearer " + METRICS_TOKEN})
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"bulkhead_requests_total", r.body)
        self.assertEqual(self.d.admin("/healthz").status, 200)
        self.assertEqual(self.d.admin("/admin/status").status, 200)
        for line in self.d.lines:
            self.assertNotIn(METRICS_TOKEN, line)


class TokenAdminTest(DaemonTestCase):
    CONFIG = {"server": {"admin_token": TOKEN},
              "plugin.echo": echo_section()}

    def assertUnauthorized(self, r):
        self.assertProblem(r, 401, "admin.unauthorized")
        self.assertEqual(r.headers.get("www-authenticate", "").split()[0],
                         "Bearer", r)
        self.assertNotIn(TOKEN.encode(), r.body)

    def test_protected_paths_need_the_token(self):
        for path in ("/admin/status", "/admin/errors"):
            with self.subTest(path=path):
                self.assertUnauthorized(self.d.admin(path))
                self.assertUnauthorized(self.d.admin(
                    path, headers={"Authorization": "Bearer wrong-token-xx"}))
                self.assertUnauthorized(self.d.admin(
                    path, headers={"Authorization": "Basic " + TOKEN}))
                self.assertUnauthorized(self.d.admin(
                    path, headers={"Authorization": "Bearer " + TOKEN[:-1]}))
                self.assertUnauthorized(self.d.admin(
                    path, headers={"Authorization": "Bearer " + TOKEN + "x"}))
                r = self.d.admin(path, headers={"Authorization":
                                                "Bearer " + TOKEN})
                self.assertEqual(r.status, 200, r)

    def test_unknown_admin_path_does_not_reveal_itself(self):
        self.assertUnauthorized(self.d.admin("/admin/nope"))
        r = self.d.admin("/admin/nope",
                         headers={"Authorization": "Bearer " + TOKEN})
        self.assertProblem(r, 404, "route.not_found")

    def test_probes_stay_open(self):
        self.assertEqual(self.d.admin("/healthz").status, 200)
        self.assertEqual(self.d.admin("/readyz").status, 200)

    def test_token_is_never_logged(self):
        self.d.admin("/admin/status",
                     headers={"Authorization": "Bearer " + TOKEN})
        self.d.admin("/admin/status",
                     headers={"Authorization": "Bearer " + TOKEN + "x"})
        self.d.wait_event(lambda e: e.get("event") == "request" and
                          e.get("status") == 401)
        for line in self.d.lines:
            self.assertNotIn(TOKEN, line)
        self.assertNotIn(TOKEN, self.d.stderr)


class EnvTokenTest(unittest.TestCase):
    def test_token_from_environment(self):
        with Daemon({"plugin.echo": echo_section()},
                    env={"BULKHEAD_SERVER_ADMIN_TOKEN": TOKEN}) as d:
            r = d.admin("/admin/status")
            self.assertEqual(r.status, 401, r)
            r = d.admin("/admin/status",
                        headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual(r.status, 200, r)
            self.assertNotIn(TOKEN, d.config_text)


if __name__ == "__main__":
    harness.main()
