"""Path parameters once percent-decoded: a {name} capture may not hold
'/', '\\', '?', '#', NUL or be a "." / ".." segment; a "*" tail keeps its
'/' but no dot segment, '\\', '?', '#' or NUL. Such requests get 400
request.bad_request before any handler runs, so a plugin that joins a
parameter into an upstream path (up_one's GET /t/up_one/get/*, which
re-encodes each segment with bh_path_append_segment) can never reach
another upstream path, such as the simulator's control API. A legitimate
parameter with a space or '%' reaches the upstream correctly encoded."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import echo_section  # noqa: E402
from upstream_env import TwoSimsCase, up_config  # noqa: E402

TRAVERSALS = [
    "..%2F..%2F__sim%2Frequests%3Flimit%3D1",
    "%2e%2e/%2e%2e/__sim/requests",
    "x/%2E%2E/%2e%2e/__sim/requests",
    "..%2f__sim%2fstats",
    "a%3Fb",
    "a%23b",
    "a%5Cb",
    "a%00b",
    "%2e",
    "a/%2e/b",
]


class PathParamsTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url,
                         extra={"plugin.echo": echo_section()})

    def test_traversal_never_reaches_the_upstream(self):
        for p in TRAVERSALS:
            with self.subTest(param=p):
                r = self.d.get("/t/up_one/get/" + p)
                doc = self.assertProblem(r, 400, "request.bad_request")
                # not the control API's answer ({"requests": [...]})
                self.assertNotIn("requests", doc)
                self.assertNotIn(b'"requests"', r.body)
        self.assertEqual(self.sim1.requests(), [])
        self.assertEqual(self.sim1.stats()["total"], 0)

    def test_legitimate_parameters_go_upstream_encoded(self):
        cases = [
            ("a%20b", "/a%20b"),
            ("100%25", "/100%25"),
            ("v1/a%20b%25c/d", "/v1/a%20b%25c/d"),
            ("%C3%A9t%C3%A9", "/%C3%A9t%C3%A9"),
            ("a%2Fb", "/a/b"),           # a tail's '/' stays a separator
            ("...", "/..."),
            (".well-known/x", "/.well-known/x"),
            ("semi;colon=1", "/semi%3Bcolon%3D1"),
        ]
        for param, upstream in cases:
            with self.subTest(param=param):
                self.sim1.clear_requests()
                r = self.d.get("/t/up_one/get/" + param + "?q=1")
                self.assertEqual(r.status, 200, r)
                recs = self.sim1.requests()
                self.assertEqual(len(recs), 1, recs)
                self.assertEqual(recs[0]["path"], upstream)
                self.assertEqual(recs[0]["query"], "q=1")

    def test_named_params_are_one_segment(self):
        for a in ("a%2Fb", "%2e%2e", "%2E", "a%5Cb", "a%3Fb", "a%23b",
                  "a%00b"):
            with self.subTest(a=a):
                r = self.d.get("/t/echo/params/%s/x" % a)
                self.assertProblem(r, 400, "request.bad_request")
        r = self.d.get("/t/echo/params/a%20b/%C3%A9%25")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"a": "a b", "b": "\u00e9%"})
        r = self.d.get("/t/echo/params/.../.x")
        self.assertEqual(r.json(), {"a": "...", "b": ".x"})

    def test_tail_keeps_slashes_not_dot_segments(self):
        r = self.d.get("/t/echo/files/a%2Fb/c")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"rest": "a/b/c"})
        for rest in ("a/%2e%2e/b", "%2e%2e", "a/%2E", "a%5Cb", "a%3F",
                     "a%23", "a%00"):
            with self.subTest(rest=rest):
                r = self.d.get("/t/echo/files/" + rest)
                self.assertProblem(r, 400, "request.bad_request")

    def test_proxy_routes_refuse_decoded_dot_segments_too(self):
        r = self.d.get("/t/up_one/proxy/%2e%2e/%2e%2e/__sim/requests")
        self.assertProblem(r, 400, "request.bad_request")
        self.assertEqual(self.sim1.requests(), [])


if __name__ == "__main__":
    harness.main()
