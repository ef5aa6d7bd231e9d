"""Problem JSON: content type, no-store, the nested "extensions" shape by
default and the flat shape behind problem_style = flat; plugin codes from the
error map; unknown plugin codes become 500 generic.internal; X-Request-ID is
echoed when sane and generated otherwise."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section  # noqa: E402

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


class NestedProblemTest(DaemonTestCase):
    CONFIG = {"plugin.echo": echo_section()}

    def test_shape_and_headers(self):
        r = self.d.get("/t/echo/nope")
        doc = self.assertProblem(r, 404, "route.not_found")
        self.assertEqual(set(doc), {"type", "title", "status", "detail",
                                    "instance", "extensions"}, doc)
        self.assertEqual(doc["title"], "Not Found")
        self.assertEqual(doc["instance"], "/t/echo/nope")
        self.assertIsInstance(doc["detail"], str)
        self.assertEqual(set(doc["extensions"]),
                         {"code", "retryable", "requestId", "traceId",
                          "spanId"}, doc)
        self.assertIs(doc["extensions"]["retryable"], False)
        self.assertEqual(int(r.headers["content-length"]), len(r.body))
        # nothing at the top level that belongs in extensions
        for k in ("code", "retryable", "requestId", "traceId", "spanId"):
            self.assertNotIn(k, doc)

    def test_plugin_code_from_the_error_map(self):
        r = self.d.get("/t/echo/config/secret_key")
        doc = self.assertProblem(r, 403, "echo.forbidden_key")
        self.assertEqual(doc["title"], "Forbidden")
        self.assertEqual(doc["detail"],
                         "This configuration key is not readable.")
        self.assertIs(doc["extensions"]["retryable"], False)
        self.assertEqual(doc["instance"], "/t/echo/config/secret_key")

    def test_plugin_can_raise_its_own_code_by_name(self):
        r = self.d.get("/t/echo/problem/echo.forbidden_key")
        self.assertProblem(r, 403, "echo.forbidden_key")

    def test_plugin_can_raise_a_core_code(self):
        r = self.d.get("/t/echo/problem/request.bad_request")
        self.assertProblem(r, 400, "request.bad_request")

    def test_unknown_code_becomes_generic_internal(self):
        for i, code in enumerate(("echo.no_such_code", "totally.unknown",
                                  "nodot", "billing.payment_unavailable")):
            with self.subTest(code=code):
                rid = "unknown-%d" % i
                r = self.d.get("/t/echo/problem/" + code,
                               headers={"X-Request-ID": rid})
                doc = self.assertProblem(r, 500, "generic.internal")
                self.assertEqual(doc["title"], "Internal Server Error")
                self.assertIs(doc["extensions"]["retryable"], False)
                # the bogus code is a plugin bug: logged, never serialized
                # (the path in "instance" is the only place it may appear)
                rest = dict(doc)
                self.assertEqual(rest.pop("instance"),
                                 "/t/echo/problem/" + code)
                self.assertNotIn(code, json.dumps(rest))
                ev = self.d.wait_event(
                    lambda e: e.get("event") == "unknown_code" and
                    e.get("requestId") == rid)
                self.assertIsNotNone(ev, "unknown code not logged" +
                                     self.diag())
                self.assertEqual(ev.get("code"), code)
                self.assertEqual(ev.get("plugin"), "echo")

    def test_hostile_code_text_stays_out_of_the_body(self):
        # (a '\\' in a parameter is refused before the handler runs)
        code = '"},"x":{"a":"'
        r = self.d.get("/t/echo/problem/%22%7D%2C%22x%22%3A%7B%22a%22%3A"
                       "%22")
        doc = self.assertProblem(r, 500, "generic.internal")
        self.assertNotIn("x", doc)
        self.assertNotIn(code.encode(), r.body)

    def test_retryable_and_titles_of_core_codes(self):
        cases = [
            ("/t/echo/problem/request.timeout", 408, "request.timeout", True,
             "Request Timeout"),
            ("/t/echo/problem/plugin.unavailable", 503, "plugin.unavailable",
             True, "Service Unavailable"),
            ("/t/echo/problem/request.too_large", 413, "request.too_large",
             False, "Content Too Large"),
        ]
        for path, status, code, retryable, title in cases:
            with self.subTest(code=code):
                doc = self.assertProblem(self.d.get(path), status, code)
                self.assertIs(doc["extensions"]["retryable"], retryable)
                self.assertEqual(doc["title"], title)

    # -- request ids --------------------------------------------------------

    def test_sane_request_id_is_echoed_everywhere(self):
        for rid in ("abc-DEF_1.2:3", "a" * 64,
                    "0f8fad5b-d9cb-469f-a165-70867728950e"):
            with self.subTest(rid=rid):
                r = self.d.get("/t/echo/reqid", headers={"X-Request-ID": rid})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers.get("x-request-id"), rid)
                self.assertEqual(r.json(), {"requestId": rid})
                p = self.d.get("/t/echo/nope", headers={"X-Request-ID": rid})
                doc = self.assertProblem(p, 404, "route.not_found")
                self.assertEqual(doc["extensions"]["requestId"], rid)
                self.assertEqual(p.headers.get("x-request-id"), rid)

    def test_insane_request_id_is_replaced(self):
        for rid in ("a" * 65, "has space", "semi;colon", "<script>",
                    "slash/inside", "quote\"d", "caf\u00e9".encode("utf-8")
                    .decode("latin-1")):
            with self.subTest(rid=rid):
                r = self.d.get("/t/echo/reqid", headers={"X-Request-ID": rid})
                self.assertEqual(r.status, 200)
                got = r.headers.get("x-request-id")
                self.assertNotEqual(got, rid)
                self.assertRegex(got, ULID)
                self.assertEqual(r.json(), {"requestId": got})

    def test_missing_request_id_is_generated_and_unique(self):
        ids = set()
        for _ in range(20):
            r = self.d.get("/t/echo/reqid")
            rid = r.headers.get("x-request-id")
            self.assertRegex(rid, ULID)
            self.assertEqual(r.json(), {"requestId": rid})
            ids.add(rid)
        self.assertEqual(len(ids), 20)

    def test_request_id_on_parser_level_errors(self):
        # even a request refused before routing gets an id, in header and
        # body alike
        res = self.d.raw(b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n"
                         b"X-Request-ID: early-1\r\nX: a\r\n b\r\n\r\n",
                         expect=1)
        r = res.responses[0]
        doc = self.assertProblem(r, 400, "request.bad_request")
        self.assertTrue(doc["extensions"]["requestId"])


class FlatProblemTest(DaemonTestCase):
    CONFIG = {"server": {"problem_style": "flat"},
              "plugin.echo": echo_section(),
              "plugin.initfail": {"path": harness.test_plugin("initfail"),
                                  "mount": "/t/initfail"}}

    def test_flat_members_at_top_level(self):
        r = self.d.get("/t/echo/nope", headers={"X-Request-ID": "flat-1"})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json")
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        doc = r.json()
        self.assertNotIn("extensions", doc)
        self.assertEqual(doc["code"], "route.not_found")
        self.assertIs(doc["retryable"], False)
        self.assertEqual(doc["requestId"], "flat-1")
        self.assertEqual(doc["status"], 404)
        self.assertEqual(doc["type"], "about:blank")

    def test_flat_plugin_code(self):
        r = self.d.get("/t/echo/config/nope")
        doc = r.json()
        self.assertEqual(r.status, 403)
        self.assertEqual(doc["code"], "echo.forbidden_key")
        self.assertNotIn("extensions", doc)

    def test_flat_plugin_unavailable_extras(self):
        r = self.d.get("/t/initfail/x")
        self.assertEqual(r.status, 503, r)
        doc = r.json()
        self.assertNotIn("extensions", doc)
        self.assertEqual(doc["code"], "plugin.unavailable")
        self.assertIs(doc["retryable"], True)
        self.assertEqual(doc["plugin"], "initfail")
        self.assertEqual(doc["reason"], "init_failed")

    def test_flat_field_errors(self):
        r = self.d.post("/t/echo/validate", body={"bogus": 1})
        self.assertEqual(r.status, 400, r)
        doc = r.json()
        self.assertEqual(doc["code"], "request.invalid_body")
        self.assertNotIn("extensions", doc)
        fields = {(e["field"], e["code"]) for e in doc["errors"]}
        self.assertEqual(fields, {("email", "request.field_required"),
                                  ("name", "request.field_required"),
                                  ("bogus", "request.field_unknown")})


if __name__ == "__main__":
    harness.main()
