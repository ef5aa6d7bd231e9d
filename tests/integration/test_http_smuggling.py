"""Malformed and smuggling input: each gets exactly one 400
request.bad_request with Connection: close, the connection is closed, and
the bytes that follow (a would-be smuggled request) are never answered."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section  # noqa: E402

SMUGGLED = b"GET /t/echo/params/smuggled/x HTTP/1.1\r\nHost: t\r\n\r\n"
OK = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"


def req(head_lines, body=b"", method="POST", path="/t/echo/body"):
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    return head.encode() + b"".join(
        (h if isinstance(h, bytes) else h.encode()) + b"\r\n"
        for h in head_lines) + b"\r\n" + body


# name -> raw request; each is followed by SMUGGLED on the same write
BAD = {
    # framing conflicts
    "cl_and_te": req(["Host: t", "Content-Length: 5",
                      "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "te_and_cl": req(["Host: t", "Transfer-Encoding: chunked",
                      "Content-Length: 5"], b"0\r\n\r\n"),
    "te_and_cl_zero": req(["Host: t", "Transfer-Encoding: chunked",
                           "Content-Length: 0"], b"0\r\n\r\n"),
    "duplicate_cl_same": req(["Host: t", "Content-Length: 4",
                              "Content-Length: 4"], b"abcd"),
    "duplicate_cl_different": req(["Host: t", "Content-Length: 4",
                                   "Content-Length: 40"], b"abcd"),
    "cl_list": req(["Host: t", "Content-Length: 4, 4"], b"abcd"),
    "cl_not_a_number": req(["Host: t", "Content-Length: abc"]),
    "cl_negative": req(["Host: t", "Content-Length: -1"]),
    "cl_plus_sign": req(["Host: t", "Content-Length: +4"], b"abcd"),
    "te_not_chunked_last": req(["Host: t", "Transfer-Encoding: gzip"],
                               b"abcd"),
    "te_chunked_then_gzip": req(["Host: t",
                                 "Transfer-Encoding: chunked, gzip"],
                                b"0\r\n\r\n"),
    "te_chunked_twice": req(["Host: t", "Transfer-Encoding: chunked",
                             "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "bad_chunk_size": req(["Host: t", "Transfer-Encoding: chunked"],
                          b"zz\r\nab\r\n0\r\n\r\n"),
    "chunk_size_bare_lf": req(["Host: t", "Transfer-Encoding: chunked"],
                              b"4\nabcd\n0\n\n"),
    # obs-fold
    "obs_fold_sp": req(["Host: t", "X-A: one", " two"], method="GET",
                       path="/t/echo/ok"),
    "obs_fold_htab": req(["Host: t", "X-A: one", "\ttwo"], method="GET",
                         path="/t/echo/ok"),
    "obs_fold_first_line": req([" Host: t"], method="GET", path="/t/echo/ok"),
    "obs_fold_content_length": req(["Host: t", "Content-Length:", " 4"],
                                   b"abcd"),
    # bad header bytes
    "space_in_name": req(["Host: t", "Bad Name: 1"], method="GET",
                         path="/t/echo/ok"),
    "space_before_colon": req(["Host: t", "Content-Length : 4"], b"abcd"),
    "nul_in_value": req([b"Host: t", b"X-A: a\x00b"], method="GET",
                        path="/t/echo/ok"),
    "ctl_in_value": req([b"Host: t", b"X-A: a\x01b"], method="GET",
                        path="/t/echo/ok"),
    "del_in_value": req([b"Host: t", b"X-A: a\x7fb"], method="GET",
                        path="/t/echo/ok"),
    "bare_cr_in_value": req([b"Host: t", b"X-A: a\rb"], method="GET",
                            path="/t/echo/ok"),
    "non_token_in_name": req([b"Host: t", b"X(A): 1"], method="GET",
                             path="/t/echo/ok"),
    "eight_bit_in_name": req([b"Host: t", b"X-\xc3\xa9: 1"], method="GET",
                             path="/t/echo/ok"),
    "no_colon": req(["Host: t", "JustAName"], method="GET",
                    path="/t/echo/ok"),
    # request line
    "garbage": b"GARBAGE\r\n\r\n",
    "http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "bare_lf_lines": b"GET /t/echo/ok HTTP/1.1\nHost: t\n\n",
}


class SmugglingTest(DaemonTestCase):
    CONFIG = {"server": {"header_timeout_ms": 2000,
                         "body_timeout_ms": 2000},
              "plugin.echo": echo_section()}

    def assertRejected(self, res, name):
        where = "%s: %r" % (name, res)
        self.assertEqual(len(res.responses), 1,
                         "%s: expected exactly one answer (the smuggled "
                         "request must not be served)" % where)
        r = res.responses[0]
        self.assertProblem(r, 400, "request.bad_request", name)
        self.assertFalse(r.json()["extensions"]["retryable"], where)
        self.assertTrue(r.closes(), "%s: no Connection: close" % where)
        self.assertTrue(res.closed, "%s: connection left open" % where)
        self.assertEqual(res.leftover, b"", where)

    def test_each_bad_request_is_refused_and_closed(self):
        for name, data in BAD.items():
            with self.subTest(case=name):
                res = self.d.raw(data + SMUGGLED, expect=2, timeout=3)
                self.assertRejected(res, name)

    def test_bad_request_after_a_good_one_on_the_same_connection(self):
        # the fold/validation state is per request: a good first request,
        # then a folded second one, then a would-be smuggled third
        res = self.d.raw(OK + BAD["obs_fold_sp"] + SMUGGLED, expect=3)
        self.assertEqual(len(res.responses), 2, res)
        self.assertEqual(res.responses[0].status, 200, res)
        self.assertFalse(res.responses[0].closes(), res)
        self.assertProblem(res.responses[1], 400, "request.bad_request")
        self.assertTrue(res.closed, res)

    def test_fold_split_across_reads(self):
        # the continuation line arrives in a separate segment
        parts = [b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-A: one\r\n",
                 b" two\r\n\r\n"]
        res = self.d.raw(parts, chunks_delay=0.1, expect=1)
        self.assertRejected(res, "fold split")
        parts = [b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-A: one\r",
                 b"\n\ttwo\r\n\r\n"]
        res = self.d.raw(parts, chunks_delay=0.1, expect=1)
        self.assertRejected(res, "fold split after CR")

    def test_cl_te_split_across_reads(self):
        parts = [b"POST /t/echo/body HTTP/1.1\r\nHost: t\r\n",
                 b"Content-Length: 5\r\n",
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED]
        res = self.d.raw(parts, chunks_delay=0.05, expect=2)
        self.assertRejected(res, "cl+te split")

    def test_valid_edge_cases_are_not_rejected(self):
        # HTAB and obs-text inside a value, chunk extensions, OWS around a
        # value: all valid HTTP/1.1
        ok = {
            "htab_in_value": req([b"Host: t", b"X-A: a\tb"], method="GET",
                                 path="/t/echo/ok"),
            "obs_text_in_value": req([b"Host: t", b"X-A: caf\xc3\xa9"],
                                     method="GET", path="/t/echo/ok"),
            "ows_around_value": req(["Host: t", "X-A:   padded   "],
                                    method="GET", path="/t/echo/ok"),
            "chunk_extension": req(["Host: t", "Transfer-Encoding: chunked"],
                                   b"4;name=value\r\nabcd\r\n0\r\n\r\n"),
            "leading_empty_line": b"\r\n" + OK,
        }
        for name, data in ok.items():
            with self.subTest(case=name):
                with self.d.raw_conn() as c:
                    c.send(data)
                    r = c.read_response()
                    self.assertIsNotNone(r, name)
                    self.assertEqual(r.status, 200, "%s: %r" % (name, r))
                    c.send(OK)  # and the connection is still usable
                    self.assertEqual(c.read_response().status, 200, name)

    def test_chunked_body_is_decoded(self):
        data = req(["Host: t", "Transfer-Encoding: chunked"],
                   b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        with self.d.raw_conn() as c:
            c.send(data + OK)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"length": 7})
            self.assertEqual(c.read_response().status, 200)

    def test_chunked_body_with_trailer_fields(self):
        # Trailer fields after the last chunk are valid HTTP/1.1. Serving
        # the body (and ignoring them) or refusing with a Problem are both
        # acceptable; the daemon must answer and keep serving.
        data = req(["Host: t", "Transfer-Encoding: chunked"],
                   b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n")
        after = (b"GET /t/echo/params/after/trailer HTTP/1.1\r\n"
                 b"Host: t\r\n\r\n")
        res = self.d.raw(data + after, expect=2, close_wait=0.3)
        alive = self.d.alive(settle=0.5)
        self.assertTrue(alive, "the daemon died on a chunked request with "
                        "a trailer field" + self.diag())
        self.assertGreaterEqual(len(res.responses), 1, res)
        r = res.responses[0]
        if r.status == 200:
            self.assertEqual(r.json(), {"length": 7})
            # and the next request on the connection is framed right
            self.assertEqual(len(res.responses), 2, res)
            self.assertEqual(res.responses[1].json(),
                             {"a": "after", "b": "trailer"})
        else:
            self.assertProblem(r, 400, "request.bad_request")
            self.assertEqual(len(res.responses), 1, res)
            self.assertTrue(res.closed, res)
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)

    def test_daemon_still_serves_after_the_abuse(self):
        for data in BAD.values():
            self.d.raw(data, expect=1, close_wait=0)
        r = self.d.get("/t/echo/ok")
        self.assertEqual(r.status, 200, self.diag())
        self.assertTrue(self.d.alive())
        # every refused request was answered and logged, none was served
        self.assertFalse([e for e in self.d.events("request")
                          if e.get("path") == "/t/echo/params/smuggled/x"],
                         "a smuggled request reached the router")


if __name__ == "__main__":
    harness.main()
