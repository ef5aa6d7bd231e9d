"""Keep-alive and pipelining: several requests in one write are answered in
order, over the same connection, including a slow (deadline) answer in the
middle; Connection: close and HTTP/1.0 semantics are honoured."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, echo_section  # noqa: E402


def get(path, rid=None, extra=()):
    lines = ["GET %s HTTP/1.1" % path, "Host: t"]
    if rid:
        lines.append("X-Request-ID: %s" % rid)
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_body(body, rid=None):
    lines = ["POST /t/echo/body HTTP/1.1", "Host: t",
             "Content-Length: %d" % len(body)]
    if rid:
        lines.append("X-Request-ID: %s" % rid)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class PipeliningTest(DaemonTestCase):
    CONFIG = {"server": {"keepalive_timeout_ms": 3000,
                         "header_timeout_ms": 2000,
                         "body_timeout_ms": 2000},
              "plugin.echo": echo_section()}

    def test_keepalive_with_http_client(self):
        c = self.d.connection()
        try:
            for i in range(5):
                r = self.d.get("/t/echo/params/%d/k" % i, conn=c)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {"a": str(i), "b": "k"})
                self.assertFalse(r.closes(), r)
            # errors keep the connection too
            r = self.d.get("/t/echo/nope", conn=c)
            self.assertProblem(r, 404, "route.not_found")
            self.assertFalse(r.closes(), r)
            r = self.d.get("/t/echo/ok", conn=c)
            self.assertEqual(r.status, 200)
            sock = c.sock
            self.assertIsNotNone(sock, "http.client had to reconnect")
        finally:
            c.close()

    def test_pipelined_requests_answered_in_order(self):
        batch = b"".join(get("/t/echo/params/%d/p" % i, "pipe-%d" % i)
                         for i in range(5))
        batch += post_body(b"hello", "pipe-5")
        batch += get("/nope", "pipe-6")
        batch += get("/t/echo/ok", "pipe-7", ["Content-Length: 0"])
        with self.d.raw_conn() as c:
            c.send(batch)
            rs = c.read_responses(8)
            self.assertEqual(len(rs), 8, rs)
            for i, r in enumerate(rs):
                self.assertEqual(r.headers.get("x-request-id"),
                                 "pipe-%d" % i, rs)
                self.assertFalse(r.closes(), r)
            for i in range(5):
                self.assertEqual(rs[i].status, 200)
                self.assertEqual(rs[i].json(), {"a": str(i), "b": "p"})
            self.assertEqual(rs[5].json(), {"length": 5})
            self.assertProblem(rs[6], 404, "route.not_found")
            self.assertEqual(rs[7].status, 200)
            self.assertEqual(c.buf, b"")
            # the connection is still good
            c.send(get("/t/echo/ok", "after"))
            r = c.read_response()
            self.assertEqual((r.status, r.headers["x-request-id"]),
                             (200, "after"))

    def test_many_pipelined_requests(self):
        n = 300
        with self.d.raw_conn(timeout=20) as c:
            c.send(b"".join(get("/t/echo/params/%d/m" % i) for i in range(n)))
            rs = c.read_responses(n, timeout=20)
            self.assertEqual(len(rs), n)
            self.assertEqual([r.json()["a"] for r in rs],
                             [str(i) for i in range(n)])
            self.assertEqual(len({r.headers["x-request-id"] for r in rs}), n,
                             "request ids are not unique")

    def test_pipelined_slow_answer_keeps_order(self):
        # /t/echo/never is answered by the core at its 300 ms deadline; the
        # requests behind it wait their turn
        batch = get("/t/echo/ok", "s-0") + get("/t/echo/never", "s-1") + \
            get("/t/echo/params/x/y", "s-2") + post_body(b"abc", "s-3")
        with self.d.raw_conn() as c:
            t0 = time.monotonic()
            c.send(batch)
            rs = c.read_responses(4, timeout=5)
            self.assertEqual([r.headers.get("x-request-id") for r in rs],
                             ["s-0", "s-1", "s-2", "s-3"], rs)
            self.assertEqual(rs[0].status, 200)
            self.assertProblem(rs[1], 504, "echo.timeout")
            self.assertEqual(rs[2].json(), {"a": "x", "b": "y"})
            self.assertEqual(rs[3].json(), {"length": 3})
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.d.post("/t/echo/never/release")

    def test_request_split_into_single_bytes(self):
        data = get("/t/echo/params/one/two") + post_body(b"xyz")
        with self.d.raw_conn() as c:
            for i in range(len(data)):
                c.send(data[i:i + 1])
            rs = c.read_responses(2)
            self.assertEqual(rs[0].json(), {"a": "one", "b": "two"})
            self.assertEqual(rs[1].json(), {"length": 3})

    def test_pipeline_boundary_split_mid_request(self):
        # TCP may cut a pipeline anywhere: the first read holds request 1
        # and the start of request 2, the rest of request 2 comes later.
        first = get("/t/echo/params/a/1")
        cases = {
            "in the request line": first + b"GET /t/ec",
            "in the headers": first + get("/t/echo/params/b/2")[:-10],
            "in the body": first + post_body(b"0123456789")[:-4],
        }
        rests = {
            "in the request line":
                b"ho/params/b/2 HTTP/1.1\r\nHost: t\r\n\r\n",
            "in the headers": get("/t/echo/params/b/2")[-10:],
            "in the body": b"6789",
        }
        for name, head in cases.items():
            with self.subTest(cut=name):
                with self.d.raw_conn() as c:
                    c.send(head)
                    r1 = c.read_response(2)
                    self.assertEqual(r1.json(), {"a": "a", "b": "1"})
                    c.send(rests[name])
                    try:
                        r2 = c.read_response(1.5)
                    except TimeoutError:
                        r2 = None
                    self.assertIsNotNone(
                        r2, "request 2, split %s across two reads, was "
                        "never answered (the rest of it was not read)" % name)
                    if name == "in the body":
                        self.assertEqual(r2.json(), {"length": 10}, r2)
                    else:
                        self.assertEqual(r2.json(), {"a": "b", "b": "2"}, r2)

    def test_connection_close_stops_the_pipeline(self):
        batch = get("/t/echo/params/1/c") + \
            get("/t/echo/params/2/c", extra=["Connection: close"]) + \
            get("/t/echo/params/3/c")
        res = self.d.raw(batch, expect=3)
        self.assertEqual(len(res.responses), 2, res)
        self.assertFalse(res.responses[0].closes())
        self.assertTrue(res.responses[1].closes())
        self.assertEqual(res.responses[1].json()["a"], "2")
        self.assertTrue(res.closed)
        self.assertEqual(res.leftover, b"")

    def test_bad_request_in_the_middle_of_a_pipeline(self):
        batch = get("/t/echo/params/1/b") + \
            b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n" \
            b"Content-Length: 2\r\n\r\nab" + get("/t/echo/params/3/b")
        res = self.d.raw(batch, expect=3)
        self.assertEqual(len(res.responses), 2, res)
        self.assertEqual(res.responses[0].status, 200)
        self.assertProblem(res.responses[1], 400, "request.bad_request")
        self.assertTrue(res.closed)

    def test_head_response_has_no_body_and_pipeline_continues(self):
        batch = b"HEAD /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n" + \
            get("/t/echo/ok")
        with self.d.raw_conn() as c:
            c.send(batch)
            h = c.read_response(head=True)
            self.assertEqual(h.status, 200)
            self.assertEqual(h.headers.get("content-length"), "31")
            g = c.read_response()
            self.assertEqual(g.status, 200, g)
            self.assertEqual(len(g.body), 31)
            self.assertEqual(c.buf, b"")

    def test_http10_closes_by_default(self):
        res = self.d.raw(b"GET /t/echo/ok HTTP/1.0\r\n\r\n" +
                         get("/t/echo/ok"), expect=2)
        self.assertEqual(len(res.responses), 1, res)
        self.assertEqual(res.responses[0].status, 200)
        self.assertTrue(res.closed)

    def test_http10_keepalive(self):
        with self.d.raw_conn() as c:
            for i in range(2):
                c.send(b"GET /t/echo/ok HTTP/1.0\r\n"
                       b"Connection: keep-alive\r\n\r\n")
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers.get("connection", "").lower(),
                                 "keep-alive")
            self.assertTrue(c.is_open())

    def test_half_closed_client_still_gets_its_answer(self):
        with self.d.raw_conn() as c:
            c.send(get("/t/echo/ok") + get("/t/echo/params/z/z"))
            c.shutdown_write()
            rs = c.read_responses(2)
            self.assertEqual([r.status for r in rs], [200, 200], rs)
            self.assertTrue(c.wait_closed(2))

    def test_client_gone_mid_pipeline_does_not_hurt(self):
        for _ in range(5):
            with self.d.raw_conn() as c:
                c.send(get("/t/echo/never") + get("/t/echo/ok") * 3)
        r = self.d.get("/t/echo/ok")
        self.assertEqual(r.status, 200)
        time.sleep(0.4)  # past the deadline of the abandoned requests
        r = self.d.post("/t/echo/never/release")
        self.assertEqual(r.status, 200)
        self.assertTrue(self.d.alive())


if __name__ == "__main__":
    harness.main()
