"""Strict JSON bodies: 400 request.invalid_body with extensions.errors
listing EVERY failing field (POST /t/echo/validate: email required string
3..254, name required string <=100, age int 0..150, tone friendly|formal,
tags string array <=5, active bool; unknown fields refused)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section  # noqa: E402

REQ = "request.field_required"
TYPE = "request.field_type"
UNKNOWN = "request.field_unknown"
SHORT = "request.field_too_short"
LONG = "request.field_too_long"
RANGE = "request.field_out_of_range"
NOT_ALLOWED = "request.field_not_allowed"

JSON = {"Content-Type": "application/json"}


class BodyValidationTest(DaemonTestCase):
    CONFIG = {"plugin.echo": echo_section()}

    def post(self, body):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.d.post("/t/echo/validate", body=body, headers=JSON)

    def assertFieldErrors(self, body, expected):
        r = self.post(body)
        doc = self.assertProblem(r, 400, "request.invalid_body", body)
        errs = doc["extensions"].get("errors")
        self.assertIsInstance(errs, list, doc)
        got = [(e.get("field"), e.get("code")) for e in errs]
        self.assertEqual(len(got), len(set(got)), "duplicates: %r" % got)
        self.assertEqual(set(got), set(expected), doc)
        for e in errs:
            self.assertEqual(set(e), {"field", "code"}, e)
        return doc

    def test_valid_body(self):
        r = self.post({"email": "a@b.c", "name": "Ann", "age": 30,
                       "tone": "formal", "tags": ["x", "y"],
                       "active": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"email": "a@b.c", "name": "Ann"})

    def test_valid_minimal_body_and_nulls_refused(self):
        r = self.post({"email": "abc", "name": ""})
        self.assertEqual(r.status, 200, r)
        self.assertFieldErrors({"email": "abc", "name": "N", "age": None},
                               [("age", TYPE)])

    def test_every_failing_field_is_listed(self):
        body = {"email": 5, "age": 200, "tone": "rude", "tags": ["a", 1],
                "active": "yes", "extra": 1, "another": {}}
        doc = self.assertFieldErrors(body, [
            ("email", TYPE), ("name", REQ), ("age", RANGE),
            ("tone", NOT_ALLOWED), ("tags", TYPE), ("active", TYPE),
            ("extra", UNKNOWN), ("another", UNKNOWN)])
        self.assertIs(doc["extensions"]["retryable"], False)
        self.assertEqual(doc["instance"], "/t/echo/validate")

    def test_missing_required_fields(self):
        self.assertFieldErrors({}, [("email", REQ), ("name", REQ)])

    def test_lengths_and_ranges(self):
        self.assertFieldErrors(
            {"email": "ab", "name": "n" * 101, "age": -1,
             "tags": ["a", "b", "c", "d", "e", "f"]},
            [("email", SHORT), ("name", LONG), ("age", RANGE),
             ("tags", LONG)])

    def test_wrong_types(self):
        self.assertFieldErrors(
            {"email": ["a@b.c"], "name": 1, "age": 1.5, "tags": "a",
             "active": 1},
            [("email", TYPE), ("name", TYPE), ("age", TYPE), ("tags", TYPE),
             ("active", TYPE)])

    def test_nul_inside_a_string_is_a_type_error(self):
        self.assertFieldErrors('{"email":"a@b.c","name":"a\\u0000b"}',
                               [("name", TYPE)])

    def test_not_json(self):
        for body in ('{"email": "a@b.c",', "not json", "{'a': 1}",
                     '{"email":"a@b.c","name":"n"} trailing'):
            with self.subTest(body=body):
                r = self.post(body)
                doc = self.assertProblem(r, 400, "request.invalid_body")
                self.assertNotIn("errors", doc["extensions"])

    def test_not_an_object(self):
        for body in ("[]", '"string"', "42", "null", "true"):
            with self.subTest(body=body):
                self.assertProblem(self.post(body), 400,
                                   "request.invalid_body")

    def test_duplicate_keys(self):
        r = self.post('{"email":"a@b.c","name":"x","name":"y"}')
        self.assertProblem(r, 400, "request.invalid_body")

    def test_empty_body(self):
        r = self.d.post("/t/echo/validate", body=b"",
                        headers={"Content-Type": "application/json",
                                 "Content-Length": "0"})
        self.assertProblem(r, 400, "request.invalid_body")

    def test_field_error_keeps_the_connection(self):
        c = self.d.connection()
        try:
            r = self.d.post("/t/echo/validate", body="{}", headers=JSON,
                            conn=c)
            self.assertEqual(r.status, 400)
            self.assertFalse(r.closes())
            r = self.d.post("/t/echo/validate",
                            body='{"email":"abc","name":"n"}', headers=JSON,
                            conn=c)
            self.assertEqual(r.status, 200)
        finally:
            c.close()


if __name__ == "__main__":
    harness.main()
