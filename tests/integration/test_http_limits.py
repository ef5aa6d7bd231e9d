"""HTTP limits and timeouts: 431 for oversized heads, 408 for slow heads and
bodies (slowloris-proof), 413 for bodies over the route's limit (with
Content-Length and chunked), and the idle keep-alive timeout."""

import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, SLACK, echo_section  # noqa: E402

HEADER_TIMEOUT = 0.3
BODY_TIMEOUT = 0.35
KEEPALIVE_TIMEOUT = 0.5
MAX_HEADER_BYTES = 4096
MAX_BODY_BYTES = 2048  # server-wide; /t/echo/body has its own 1024

OK = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"


def post(path, headers, body=b""):
    head = "POST %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (
        path, "".join("%s: %s\r\n" % kv for kv in headers))
    return head.encode() + body


def chunked(sizes, fill=b"a"):
    return b"".join(b"%x\r\n%s\r\n" % (n, fill * n) for n in sizes) + \
        b"0\r\n\r\n"


class LimitsTest(DaemonTestCase):
    CONFIG = {
        "server": {"header_timeout_ms": int(HEADER_TIMEOUT * 1000),
                   "body_timeout_ms": int(BODY_TIMEOUT * 1000),
                   "keepalive_timeout_ms": int(KEEPALIVE_TIMEOUT * 1000),
                   "max_header_bytes": MAX_HEADER_BYTES,
                   "max_body_bytes": MAX_BODY_BYTES},
        "plugin.echo": echo_section(),
    }

    def assertOnlyProblem(self, res, status, code):
        """Exactly one response, a Problem, Connection: close, then EOF."""
        self.assertEqual(len(res.responses), 1, res)
        r = res.responses[0]
        self.assertProblem(r, status, code)
        self.assertTrue(r.closes(), r)
        self.assertTrue(res.closed, res)
        self.assertEqual(res.leftover, b"", res)
        return r

    def assertServes(self):
        r = self.d.get("/t/echo/ok")
        self.assertEqual(r.status, 200, self.diag())

    # -- 431 ----------------------------------------------------------------

    def test_one_huge_header_431(self):
        req = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-Big: " + \
            b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n\r\n" + OK
        res = self.d.raw(req, expect=2)
        self.assertOnlyProblem(res, 431, "request.headers_too_large")
        self.assertServes()

    def test_many_headers_over_the_byte_limit_431(self):
        hdrs = b"".join(b"X-H%02d: %s\r\n" % (i, b"v" * 90)
                        for i in range(MAX_HEADER_BYTES // 90 + 5))
        res = self.d.raw(b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n" + hdrs +
                         b"\r\n", expect=2)
        self.assertOnlyProblem(res, 431, "request.headers_too_large")

    def test_huge_header_sent_in_pieces_431(self):
        pieces = [b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-Big: "]
        pieces += [b"b" * 700] * 8
        pieces += [b"\r\n\r\n"]
        res = self.d.raw(pieces, chunks_delay=0.01, expect=1)
        self.assertOnlyProblem(res, 431, "request.headers_too_large")

    def test_head_under_the_limit_is_served(self):
        req = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-Big: " + \
            b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n"
        with self.d.raw_conn() as c:
            c.send(req)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertFalse(r.closes(), r)
            c.send(req)  # and the limit is per request, not per connection
            self.assertEqual(c.read_response().status, 200)

    # -- 408 ----------------------------------------------------------------

    def test_header_timeout_408(self):
        res = self.d.raw(b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n",
                         expect=1, timeout=HEADER_TIMEOUT + SLACK + 2)
        self.assertOnlyProblem(res, 408, "request.timeout")
        self.assertGreaterEqual(res.elapsed, HEADER_TIMEOUT * 0.8, res)
        self.assertLess(res.elapsed, HEADER_TIMEOUT + SLACK, res)

    def trickle(self, first, unit, interval=0.05, limit=None):
        """Sends `first`, then `unit` every `interval` s while the server
        stays silent. Returns (response or None, closed, elapsed)."""
        limit = limit or HEADER_TIMEOUT + SLACK + 0.3
        c = self.d.raw_conn()
        t0 = time.monotonic()
        resp = None
        try:
            if first:
                c.send(first)
            while time.monotonic() - t0 < limit:
                if not c.try_send(unit):
                    break
                r, _, _ = select.select([c.sock], [], [], interval)
                if r:
                    break
            if time.monotonic() - t0 < limit:
                resp = c.read_response(2)
            elapsed = time.monotonic() - t0
            closed = c.wait_closed(1.0) if time.monotonic() - t0 < limit \
                else False
            return resp, closed, elapsed
        finally:
            c.close()

    def test_slowloris_header_bytes_cut_at_header_timeout(self):
        resp, closed, elapsed = self.trickle(
            b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"x")
        self.assertIsNotNone(resp, "connection still open after %.1fs of "
                             "trickling header bytes" % elapsed)
        self.assertProblem(resp, 408, "request.timeout")
        self.assertTrue(closed)
        self.assertLess(elapsed, HEADER_TIMEOUT + SLACK)

    def test_slowloris_whole_header_lines_cut_at_header_timeout(self):
        resp, closed, elapsed = self.trickle(
            b"GET /t/echo/ok HTTP/1.1\r\n", b"X-A: 1\r\n")
        self.assertIsNotNone(resp, "still open after %.1fs" % elapsed)
        self.assertProblem(resp, 408, "request.timeout")
        self.assertTrue(closed)
        self.assertLess(elapsed, HEADER_TIMEOUT + SLACK)

    def test_slowloris_empty_lines_before_request_line_are_cut(self):
        # A client that trickles CRLFs never starts a request line, but it is
        # still sending head bytes: it must not hold the connection forever.
        resp, closed, elapsed = self.trickle(b"", b"\r\n")
        self.assertTrue(
            elapsed < HEADER_TIMEOUT + SLACK and closed,
            "a client trickling CRLF every 50 ms kept the connection open "
            "for %.1fs (header_timeout_ms=%d)" % (elapsed,
                                                  HEADER_TIMEOUT * 1000))
        if resp is not None:
            self.assertProblem(resp, 408, "request.timeout")

    def test_slowloris_empty_lines_on_idle_keepalive_are_cut(self):
        c = self.d.raw_conn()
        try:
            c.send(OK)
            self.assertEqual(c.read_response().status, 200)
            t0 = time.monotonic()
            limit = max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + SLACK
            closed = False
            while time.monotonic() - t0 < limit + 0.3:
                if not c.try_send(b"\r\n"):
                    closed = True
                    break
                if c.wait_closed(0.05):
                    closed = True
                    break
            elapsed = time.monotonic() - t0
            self.assertTrue(
                closed and elapsed < limit,
                "an idle keep-alive connection fed one CRLF every 50 ms "
                "stayed open for %.1fs (keepalive_timeout_ms=%d)" %
                (elapsed, KEEPALIVE_TIMEOUT * 1000))
        finally:
            c.close()

    def test_body_timeout_408(self):
        res = self.d.raw(post("/t/echo/body", [("Content-Length", "10")],
                              b"abc"), expect=1,
                         timeout=BODY_TIMEOUT + SLACK + 2)
        r = self.assertOnlyProblem(res, 408, "request.timeout")
        self.assertEqual(r.json().get("instance"), "/t/echo/body")
        self.assertGreaterEqual(res.elapsed, BODY_TIMEOUT * 0.8, res)
        self.assertLess(res.elapsed, BODY_TIMEOUT + SLACK, res)

    def test_slow_body_cut_at_body_timeout(self):
        resp, closed, elapsed = self.trickle(
            post("/t/echo/body", [("Content-Length", "1000")]), b"a",
            limit=BODY_TIMEOUT + SLACK + 0.3)
        self.assertIsNotNone(resp, "still open after %.1fs" % elapsed)
        self.assertProblem(resp, 408, "request.timeout")
        self.assertTrue(closed)
        self.assertLess(elapsed, BODY_TIMEOUT + SLACK)

    def test_slow_chunked_body_cut_at_body_timeout(self):
        resp, closed, elapsed = self.trickle(
            post("/t/echo/body", [("Transfer-Encoding", "chunked")]),
            b"1\r\na\r\n", limit=BODY_TIMEOUT + SLACK + 0.3)
        self.assertIsNotNone(resp, "still open after %.1fs" % elapsed)
        self.assertProblem(resp, 408, "request.timeout")
        self.assertTrue(closed)
        self.assertLess(elapsed, BODY_TIMEOUT + SLACK)

    # -- 413 ----------------------------------------------------------------

    def test_content_length_over_route_limit_413_before_body(self):
        # answered from the head alone: the client need not send the body
        res = self.d.raw(post("/t/echo/body", [("Content-Length", "1025")]),
                         expect=1)
        self.assertOnlyProblem(res, 413, "request.too_large")
        self.assertLess(res.elapsed, BODY_TIMEOUT, res)

    def test_chunked_over_route_limit_413(self):
        res = self.d.raw(post("/t/echo/body",
                              [("Transfer-Encoding", "chunked")],
                              chunked([512, 512, 512])) + OK, expect=2)
        self.assertOnlyProblem(res, 413, "request.too_large")

    def test_body_at_route_limit_is_served(self):
        with self.d.raw_conn() as c:
            c.send(post("/t/echo/body", [("Content-Length", "1024")],
                        b"x" * 1024))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"length": 1024})
            c.send(post("/t/echo/body", [("Transfer-Encoding", "chunked")],
                        chunked([512, 500, 12])))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"length": 1024})
            self.assertTrue(c.is_open())

    def test_server_limit_applies_to_routes_without_their_own(self):
        big = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
        res = self.d.raw(post("/t/echo/validate",
                              [("Content-Type", "application/json"),
                               ("Content-Length", str(len(big)))], big),
                         expect=1)
        self.assertOnlyProblem(res, 413, "request.too_large")
        res = self.d.raw(post("/t/echo/validate",
                              [("Content-Type", "application/json"),
                               ("Transfer-Encoding", "chunked")],
                              chunked([1000, 1000, 100])), expect=1)
        self.assertOnlyProblem(res, 413, "request.too_large")

    def test_expect_continue(self):
        with self.d.raw_conn() as c:
            c.send(post("/t/echo/body", [("Content-Length", "4"),
                                         ("Expect", "100-continue")]))
            r = c.read_response()
            self.assertEqual(r.status, 100, r)
            c.send(b"abcd")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"length": 4})

    def test_expect_continue_over_limit_gets_413_not_100(self):
        res = self.d.raw(post("/t/echo/body", [("Content-Length", "5000"),
                                               ("Expect", "100-continue")]),
                         expect=2)
        self.assertOnlyProblem(res, 413, "request.too_large")

    # -- idle ---------------------------------------------------------------

    def test_idle_keepalive_connection_closed_silently(self):
        with self.d.raw_conn() as c:
            c.send(OK)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertFalse(r.closes(), r)
            t0 = time.monotonic()
            self.assertTrue(c.wait_closed(KEEPALIVE_TIMEOUT + SLACK),
                            "idle keep-alive connection not closed")
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, KEEPALIVE_TIMEOUT * 0.8)
            self.assertEqual(c.buf, b"", "bytes sent on an idle close")

    def test_keepalive_timer_restarts_per_request(self):
        with self.d.raw_conn() as c:
            t0 = time.monotonic()
            # several requests spread over more than one keep-alive period
            while time.monotonic() - t0 < KEEPALIVE_TIMEOUT * 1.5:
                c.send(OK)
                self.assertEqual(c.read_response().status, 200)
                time.sleep(KEEPALIVE_TIMEOUT / 3)
            c.send(OK)
            self.assertEqual(c.read_response().status, 200)

    def test_silent_fresh_connection_closed(self):
        with self.d.raw_conn() as c:
            t0 = time.monotonic()
            self.assertTrue(c.wait_closed(HEADER_TIMEOUT + SLACK))
            self.assertLess(time.monotonic() - t0, HEADER_TIMEOUT + SLACK)

    def test_still_serving_after_all_that(self):
        self.assertServes()
        self.assertTrue(self.d.alive())


if __name__ == "__main__":
    harness.main()
