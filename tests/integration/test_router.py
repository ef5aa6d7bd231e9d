"""Router: 404 route.not_found, 405 route.method_not_allowed with Allow,
path parameters, wildcards, HEAD, and the listener split (API routes are not
on the admin port and vice versa)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section, first_party  # noqa


def allow_set(r):
    return {m.strip() for m in r.headers.get("allow", "").split(",")
            if m.strip()}


class RouterTest(DaemonTestCase):
    CONFIG = dict({"plugin.echo": echo_section()},
                  **first_party("billing"))

    def test_not_found_outside_any_mount(self):
        for path in ("/", "/nope", "/v1", "/t", "/t/ech", "/v1/billingx"):
            with self.subTest(path=path):
                r = self.d.get(path)
                doc = self.assertProblem(r, 404, "route.not_found")
                self.assertFalse(doc["extensions"]["retryable"])
                self.assertEqual(doc["title"], "Not Found")

    def test_not_found_inside_a_mount(self):
        for path in ("/t/echo", "/t/echo/", "/t/echo/nope",
                     "/t/echo/params/only-one", "/t/echo/params/a/b/c",
                     "/v1/billing/nope"):
            with self.subTest(path=path):
                self.assertProblem(self.d.get(path), 404, "route.not_found")

    def test_instance_is_the_path_without_query(self):
        r = self.d.get("/t/echo/nope?token=abc&x=1")
        doc = self.assertProblem(r, 404, "route.not_found")
        self.assertEqual(doc["instance"], "/t/echo/nope")
        self.assertNotIn(b"token=abc", r.body)

    def test_method_not_allowed_with_allow(self):
        cases = [
            ("POST", "/t/echo/ok", {"GET", "HEAD"}),
            ("DELETE", "/t/echo/ok", {"GET", "HEAD"}),
            ("GET", "/t/echo/validate", {"POST"}),
            ("PUT", "/t/echo/body", {"POST"}),
            ("POST", "/t/echo/params/1/2", {"GET", "HEAD"}),
            ("POST", "/t/echo/files/a/b/c", {"GET", "HEAD"}),
            ("GET", "/t/echo/never/release", {"POST"}),
            ("POST", "/v1/billing/status", {"GET", "HEAD"}),
        ]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = self.d.request(method, path)
                doc = self.assertProblem(r, 405, "route.method_not_allowed")
                self.assertEqual(doc["title"], "Method Not Allowed")
                self.assertEqual(allow_set(r), allowed, r)
                self.assertNotIn(method, allow_set(r))

    def test_options_gets_405_with_allow(self):
        r = self.d.request("OPTIONS", "/t/echo/validate")
        self.assertProblem(r, 405, "route.method_not_allowed")
        self.assertEqual(allow_set(r), {"POST"})

    def test_params(self):
        r = self.d.get("/t/echo/params/first/second")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"a": "first", "b": "second"})

    def test_params_are_percent_decoded(self):
        r = self.d.get("/t/echo/params/a%20b/%C3%A9x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"a": "a b", "b": "\u00e9x"})
        # a decoded '/' would make two segments of one: refused
        # (test_path_params)
        r = self.d.get("/t/echo/params/a%20b/%C3%A9%2Fx")
        self.assertEqual(r.status, 400, r)

    def test_wildcard(self):
        for rest in ("a", "a/b/c", "x.txt", "deep/er/and/deeper.json"):
            with self.subTest(rest=rest):
                r = self.d.get("/t/echo/files/" + rest)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {"rest": rest})

    def test_query_string_does_not_change_the_route(self):
        r = self.d.get("/t/echo/params/p/q?a=zzz&b=yyy")
        self.assertEqual(r.json(), {"a": "p", "b": "q"})

    def test_head_is_served_by_get(self):
        g = self.d.get("/t/echo/ok")
        h = self.d.request("HEAD", "/t/echo/ok")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.headers.get("content-length"),
                         g.headers.get("content-length"))
        self.assertEqual(h.headers.get("content-type"),
                         g.headers.get("content-type"))

    def test_head_on_missing_route(self):
        r = self.d.request("HEAD", "/t/echo/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json")

    def test_dot_segments_are_refused(self):
        for path in ("/t/echo/../echo/ok", "/t/echo/./ok", "/t/echo/.."):
            with self.subTest(path=path):
                res = self.d.raw(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" %
                                  path).encode(), expect=1, close_wait=0)
                self.assertEqual(len(res.responses), 1, res)
                self.assertProblem(res.responses[0], 400,
                                   "request.bad_request")

    def test_api_listener_does_not_serve_admin_paths(self):
        for path in ("/healthz", "/readyz", "/admin/status"):
            with self.subTest(path=path):
                self.assertProblem(self.d.get(path), 404, "route.not_found")

    def test_admin_listener_does_not_serve_api_routes(self):
        r = self.d.admin("/t/echo/ok")
        self.assertNotEqual(r.status, 200, r)
        self.assertProblem(r, 404, "route.not_found")

    def test_access_log_names_the_owner(self):
        r = self.d.get("/t/echo/ok", headers={"X-Request-ID": "route-log-1"})
        self.assertEqual(r.status, 200)
        logs = self.d.request_log("route-log-1")
        self.assertEqual(len(logs), 1, logs)
        self.assertEqual(logs[0].get("plugin"), "echo")
        self.assertEqual(logs[0].get("status"), 200)


if __name__ == "__main__":
    harness.main()
