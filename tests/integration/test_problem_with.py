"""The problem_with service (ABI 1.3): a plugin's extension members land
in extensions (at the top level with problem_style = flat), escaped as the
core's own strings; Retry-After and retryAfterSeconds agree; members the
core writes itself, duplicates and non-objects are refused with a 500 and
one log line naming the plugin."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, test_plugin  # noqa: E402

SECTION = {"path": test_plugin("probwith"), "mount": "/t/probwith"}


class NestedTest(DaemonTestCase):
    CONFIG = {"plugin.probwith": SECTION}

    def members(self, doc):
        return doc["extensions"]

    def problem(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json")
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        doc = r.json()
        self.assertEqual(doc["status"], status)
        self.assertEqual(self.members(doc)["code"], code, doc)
        return doc

    def test_members_are_added(self):
        r = self.d.get("/t/probwith/members", headers={"X-Request-ID": "pw-1"})
        doc = self.problem(r, 400, "request.bad_request")
        m = self.members(doc)
        self.assertEqual(m["hint"], "<b>try & see</b>")
        self.assertEqual(m["count"], 3)
        self.assertIs(m["flag"], True)
        self.assertEqual(m["list"], [{"provider": "p1"}])
        self.assertEqual(m["requestId"], "pw-1")
        self.assertIs(m["retryable"], False)
        self.assertNotIn("retryAfterSeconds", m)
        self.assertNotIn("retry-after", r.headers)
        # the core's escaping: safe to inline in a page
        self.assertNotIn(b"<b>", r.body)
        self.assertIn(b"\\u003cb\\u003e", r.body)

    def test_no_members_is_the_plain_problem(self):
        doc = self.problem(self.d.get("/t/probwith/none"), 400,
                           "request.bad_request")
        self.assertEqual(set(self.members(doc)) - {"code", "retryable",
                                                   "requestId", "traceId",
                                                   "spanId", "type", "title",
                                                   "status", "detail",
                                                   "instance"}, set())

    def test_retry_after_header_and_member_agree(self):
        r = self.d.get("/t/probwith/retry")
        doc = self.problem(r, 503, "plugin.unavailable")
        self.assertEqual(doc["detail"], "Try later.")
        self.assertEqual(r.headers.get("retry-after"), "7")
        self.assertEqual(self.members(doc)["retryAfterSeconds"], 7)
        self.assertEqual(self.members(doc)["hint"], "<b>try & see</b>")

    def test_refused_members(self):
        for case in ("core", "dup", "notobj"):
            with self.subTest(case=case):
                rid = "pw-bad-" + case
                r = self.d.get("/t/probwith/" + case,
                               headers={"X-Request-ID": rid})
                doc = self.problem(r, 500, "generic.internal")
                self.assertNotIn(b"evil", r.body)
                ev = self.d.wait_event(
                    lambda e: e.get("event") == "plugin_bad_problem" and
                    case_word(case) in e.get("msg", ""))
                self.assertIsNotNone(ev, "refusal not logged" + self.diag())
                self.assertIn("plugin probwith: problem_with members",
                              ev["msg"])
                del doc


def case_word(case):
    return {"core": '"code" is the core', "dup": "duplicate",
            "notobj": "members"}[case]


class FlatTest(NestedTest):
    CONFIG = {"server": {"problem_style": "flat"},
              "plugin.probwith": SECTION}

    def members(self, doc):
        self.assertNotIn("extensions", doc)
        return doc


if __name__ == "__main__":
    harness.main()
