"""Strict HTTP/1.1 front: empty header and trailer names, repeated identity
and framing headers, Transfer-Encoding from HTTP/1.0 and oversized chunk
extensions are refused with 400; connections past max_connections or
max_connections_per_ip get a short 503 Problem; a 204/304 answer never
carries a body; 100 Continue is written whole and in order."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, RawConn, SLACK, echo_section  # noqa: E402

OK = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"
MAX_HEADER_BYTES = 4096


def req(lines, method="GET", path="/t/echo/ok", version="HTTP/1.1",
        body=b""):
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join(l + "\r\n" for l in lines) + "\r\n"
    return head.encode("latin-1") + body


class StrictTest(DaemonTestCase):
    CONFIG = {"server": {"max_header_bytes": MAX_HEADER_BYTES,
                         "keepalive_requests": 100000},
              "auth": {"api_key_header": "X-Gateway-Key"},
              "plugin.echo": echo_section()}

    def assertRefused(self, data, code="request.bad_request", status=400):
        res = self.d.raw(data + OK, expect=2)
        self.assertEqual(len(res.responses), 1, res)
        self.assertProblem(res.responses[0], status, code)
        self.assertTrue(res.responses[0].closes(), res)
        self.assertTrue(res.closed, res)

    def assertServed(self, data, status=200):
        res = self.d.raw(data, expect=1, close_wait=0)
        self.assertEqual(len(res.responses), 1, res)
        self.assertEqual(res.responses[0].status, status, res)

    # -- empty names ----------------------------------------------------------

    def test_empty_header_name(self):
        self.assertRefused(req(["Host: t", ": ignored"]))

    def test_bare_colon_header(self):
        self.assertRefused(req(["Host: t", ":"]))

    def test_empty_name_first(self):
        self.assertRefused(req([": x", "Host: t"]))

    def test_empty_trailer_name(self):
        body = b"5\r\nhello\r\n0\r\n: sneaky\r\n\r\n"
        self.assertRefused(req(["Host: t", "Transfer-Encoding: chunked"],
                               "POST", "/t/echo/body", body=body))

    def test_good_trailer_is_fine(self):
        body = b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
        self.assertServed(req(["Host: t", "Transfer-Encoding: chunked"],
                              "POST", "/t/echo/body", body=body))

    # -- repeated headers -----------------------------------------------------

    def test_repeated_headers_refused(self):
        for name, v1, v2 in (
                ("Authorization", "Bearer a", "Bearer b"),
                ("Origin", "https://a.example", "https://b.example"),
                ("Content-Type", "application/json", "text/plain"),
                ("X-Gateway-Key", "k1", "k2"),
                ("x-gateway-KEY", "k1", "k1"),
                ("X-API-Key", "a", "b")):
            with self.subTest(name=name):
                self.assertRefused(req(["Host: t", "%s: %s" % (name, v1),
                                        "%s: %s" % (name.upper(), v2)]))

    def test_single_copies_served(self):
        self.assertServed(req(["Host: t", "Authorization: Bearer a",
                               "Origin: https://a.example",
                               "Content-Type: application/json",
                               "X-Gateway-Key: k", "X-API-Key: a",
                               "Accept: a", "Accept: b"]))

    # -- Transfer-Encoding and HTTP/1.0 ---------------------------------------

    def test_transfer_encoding_in_http10(self):
        body = b"5\r\nhello\r\n0\r\n\r\n"
        self.assertRefused(req(["Host: t", "Transfer-Encoding: chunked"],
                               "POST", "/t/echo/body", "HTTP/1.0", body))

    def test_http10_with_length_is_fine(self):
        res = self.d.raw(req(["Content-Length: 5"], "POST", "/t/echo/body",
                             "HTTP/1.0", b"hello"), expect=1)
        self.assertEqual(res.responses[0].status, 200, res)
        self.assertEqual(res.responses[0].json(), {"length": 5})

    # -- chunk extensions -----------------------------------------------------

    def test_chunk_extensions_over_the_budget(self):
        ext = b";e=" + b"x" * 500
        body = b"".join(b"1%s\r\na\r\n" % ext for _ in range(20)) + \
            b"0\r\n\r\n"
        self.assertRefused(req(["Host: t", "Transfer-Encoding: chunked"],
                               "POST", "/t/echo/body", body=body))

    def test_one_long_chunk_extension(self):
        body = b"1;" + b"n" * (MAX_HEADER_BYTES * 2) + b"\r\na\r\n0\r\n\r\n"
        self.assertRefused(req(["Host: t", "Transfer-Encoding: chunked"],
                               "POST", "/t/echo/body", body=body))

    def test_small_chunk_extensions_are_fine(self):
        body = b"5;a=b\r\nhello\r\n0;c\r\n\r\n"
        self.assertServed(req(["Host: t", "Transfer-Encoding: chunked"],
                              "POST", "/t/echo/body", body=body))

    # -- 204 / 304 ------------------------------------------------------------

    def test_bodyless_statuses_never_carry_the_body(self):
        for status in (204, 304):
            with self.subTest(status=status):
                with self.d.raw_conn() as c:
                    c.send(b"GET /t/echo/status/%d HTTP/1.1\r\nHost: t\r\n"
                           b"\r\n" % status + OK)
                    r1 = c.read_response()
                    self.assertEqual(r1.status, status, r1)
                    self.assertNotIn("content-length", r1.headers)
                    r2 = c.read_response()
                    # the follow-up answer starts right after the head
                    self.assertIsNotNone(r2)
                    self.assertEqual(r2.status, 200, (r2, c.buf))
                    self.assertEqual(r2.json()["plugin"], "echo")
                    self.assertEqual(c.buf, b"")
                    c.send(OK)
                    self.assertEqual(c.read_response().status, 200)

    def test_other_status_keeps_the_body(self):
        r = self.d.get("/t/echo/status/202")
        self.assertEqual(r.status, 202)
        self.assertEqual(r.body, b'{"ignored":true}')

    # -- 100 Continue ---------------------------------------------------------

    def test_continue_after_a_queued_answer(self):
        # A large answer the client has not read yet is queued when the
        # next request asks for 100 Continue: the interim answer must
        # follow it whole, in order, not be dropped or cut.
        big = b"a" * (MAX_HEADER_BYTES - 200)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.d.port()))
        c = RawConn.__new__(RawConn)
        c.sock, c.buf, c.eof, c.reset = s, b"", False, False
        # ~8 MB of answers: more than the socket buffers hold, so answers
        # are queued in the daemon when the POST head is parsed
        n = 2000
        gets = b"".join(b"GET /t/echo/files/%s HTTP/1.1\r\nHost: t\r\n"
                        b"\r\n" % big for _ in range(n))
        head = (b"POST /t/echo/body HTTP/1.1\r\nHost: t\r\n"
                b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        sent = []

        def sender():
            try:
                s.sendall(gets + head)
                time.sleep(0.3)
                s.sendall(b"hello")
                sent.append(True)
            except OSError as e:
                sent.append(e)

        t = threading.Thread(target=sender, daemon=True)
        try:
            t.start()
            time.sleep(0.5)  # the client reads nothing for a while
            rs = c.read_responses(n + 2, timeout=20)
            t.join(10)
            self.assertEqual(sent, [True])
            self.assertEqual(len(rs), n + 2, [r.status for r in rs])
            self.assertTrue(all(r.status == 200 for r in rs[:n]))
            self.assertEqual(rs[n].status, 100, rs[n])
            self.assertEqual(rs[n + 1].status, 200)
            self.assertEqual(rs[n + 1].json(), {"length": 5})
        finally:
            c.close()


def conn_from(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    c = RawConn.__new__(RawConn)
    c.sock, c.buf, c.eof, c.reset = s, b"", False, False
    s.settimeout(5)
    return c


class ConnectionLimitTest(DaemonTestCase):
    CONFIG = {"server": {"max_connections": 4, "max_connections_per_ip": 2,
                         "keepalive_timeout_ms": 30000,
                         "header_timeout_ms": 30000},
              "plugin.echo": echo_section()}

    def served(self, c):
        c.send(OK)
        r = c.read_response()
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)

    def assertOverloaded(self, c):
        c.send(OK)
        r = c.read_response(3)
        self.assertIsNotNone(r, "bare close instead of a 503")
        self.assertProblem(r, 503, "server.overloaded")
        self.assertTrue(r.closes(), r)
        self.assertTrue(c.wait_closed(2))
        self.assertFalse(c.reset)

    def wait_gone(self):
        # the daemon forgets closed connections as it reads their EOF
        time.sleep(0.3)

    def test_per_address_cap(self):
        conns = [conn_from(self.d.port(), "127.0.0.1") for _ in range(2)]
        try:
            for c in conns:
                self.served(c)
            extra = conn_from(self.d.port(), "127.0.0.1")
            try:
                self.assertOverloaded(extra)
            finally:
                extra.close()
            # another address is not affected
            other = conn_from(self.d.port(), "127.0.0.2")
            try:
                self.served(other)
            finally:
                other.close()
            # and the refused one did not take a slot
            self.served(conns[0])
        finally:
            for c in conns:
                c.close()
        self.wait_gone()
        again = conn_from(self.d.port(), "127.0.0.1")
        try:
            self.served(again)
        finally:
            again.close()
        self.wait_gone()

    def test_global_cap(self):
        conns = [conn_from(self.d.port(), src) for src in
                 ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2")]
        try:
            for c in conns:
                self.served(c)
            extra = conn_from(self.d.port(), "127.0.0.3")
            try:
                self.assertOverloaded(extra)
            finally:
                extra.close()
        finally:
            for c in conns:
                c.close()
        self.wait_gone()
        c = conn_from(self.d.port(), "127.0.0.3")
        try:
            self.served(c)
        finally:
            c.close()
        self.wait_gone()


if __name__ == "__main__":
    harness.main()
