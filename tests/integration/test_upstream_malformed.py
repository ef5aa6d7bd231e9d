"""An upstream answer whose head the gateway will not relay: a header name
that is not a token, a bare CR / LF / other control byte (HTAB aside) in
a value, an obs-fold line. Proxy routes and plugin calls alike answer 502
<plugin>.upstream_error (whatever the plugin's transport rows say), relay
nothing of the answer, and do not retry it; an HTAB inside a value is
fine."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, up_config  # noqa: E402

INJECT = "X-A: foo\rSet-Cookie: injected=1\r\n"

BAD_HEADS = {
    "bare_cr": INJECT,
    "ctl_in_value": "X-A: foo\x01bar\r\n",
    "del_in_value": "X-A: foo\x7fbar\r\n",
    "space_in_name": "Bad Name: x\r\n",
    "space_before_colon": "X-A : x\r\n",
    "empty_name": ": x\r\n",
    "no_colon": "NoColonHere\r\n",  # libcurl's own refusal
    "obs_fold": "X-A: a\r\n folded\r\n",
    "cr_in_name": "X\rA: x\r\n",  # libcurl's own refusal
}


def raw_get(port, path, timeout=5.0):
    """The whole answer's bytes for GET path (Connection: close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   % path).encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


class UpstreamMalformedTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        # one retry allowed: a malformed answer must not use it
        return up_config(one_url, two_url,
                         one={"retries": 1, "retry_base_ms": 10,
                              "retry_cap_ms": 20, "retry_budget_percent": 100,
                              "retry_budget_min": 1000,
                              "breaker_min_calls": 1000})

    def bad_rule(self, path, raw):
        self.sim1.set_behavior(path=path, status=200,
                               body='{"ok":true}', raw_headers=raw)

    def test_proxy_refuses_a_bare_cr(self):
        path = "/t/up_one/proxy/inject"
        self.bad_rule(path, INJECT)
        r = self.d.get(path)
        self.assertProblem(r, 502, "up_one.upstream_error")
        self.assertIsNone(r.headers.get("set-cookie"), r)
        self.assertIsNone(r.headers.get("x-a"), r)
        self.assertEqual(self.sim1.count(path), 1)
        raw = raw_get(self.d.api_port, path)
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw)
        self.assertNotIn(b"injected", raw)
        self.assertNotIn(b"\rSet-Cookie", raw)

    def test_plugin_call_refuses_a_bare_cr(self):
        self.bad_rule("/inject", INJECT)
        r = self.d.get("/t/up_one/get/inject")
        self.assertProblem(r, 502, "up_one.upstream_error")
        self.assertIsNone(r.headers.get("set-cookie"), r)
        self.assertNotIn(b"ok", r.body)
        self.assertEqual(self.sim1.count("/inject"), 1)

    def test_every_bad_head_is_refused(self):
        for name, raw in BAD_HEADS.items():
            for route in ("proxy", "get"):
                with self.subTest(head=name, route=route):
                    up = "/bad/%s/%s" % (route, name)
                    path = ("/t/up_one/proxy" + up if route == "proxy"
                            else "/t/up_one/get" + up)
                    self.bad_rule(path if route == "proxy" else up, raw)
                    r = self.d.get(path)
                    self.assertProblem(r, 502, "up_one.upstream_error",
                                       self.d.diag(5))
                    self.assertNotIn(b"injected", r.body)
                    self.assertNotIn(b'"ok"', r.body)

    def test_htab_in_a_value_is_relayed(self):
        path = "/t/up_one/proxy/tab"
        self.bad_rule(path, "X-Tab: a\tb\r\n")
        r = self.d.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-tab"), "a\tb")
        r = self.d.get("/t/up_one/get/tab2")
        self.assertEqual(r.status, 200, r)

    def test_the_daemon_keeps_serving(self):
        self.bad_rule("/t/up_one/proxy/inject2", INJECT)
        for _ in range(5):
            self.assertEqual(self.d.get("/t/up_one/proxy/inject2").status,
                             502)
        self.assertEqual(self.d.get("/t/up_one/proxy/fine").status, 200)
        self.assertEqual(self.d.get("/t/up_two/proxy/fine").status, 200)


class UpstreamFramingTest(TwoSimsCase):
    """The client's answer is framed by what the gateway relays: the
    upstream's Content-Length only when it is the framing libcurl used
    (one well-formed value, no Transfer-Encoding); chunked otherwise. A
    length that disagrees with the body would leave bytes the client
    reads as its next answer."""

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url)

    def exchange(self, path):
        """Two pipelined GETs on one connection: both answers must parse,
        nothing may be left over."""
        req = "GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path
        with self.d.raw_conn() as c:
            c.send((req + req).encode())
            resps = c.read_responses(2, timeout=5.0)
            return resps, c.buf

    def test_te_and_cl_together_are_refused(self):
        # both framings in one answer: which one the upstream meant is a
        # guess, and a wrong guess desynchronises the connection; refused,
        # never forwarded (RFC 9112 6.1, 6.3)
        path = "/t/up_one/proxy/te-cl"
        self.sim1.set_behavior(path=path, status=200,
                               headers={"Transfer-Encoding": "chunked",
                                        "Content-Length": "5"},
                               body="a\r\n0123456789\r\n0\r\n\r\n")
        resps, left = self.exchange(path)
        self.assertEqual(len(resps), 2, (resps, left))
        for r in resps:
            self.assertProblem(r, 502, "up_one.upstream_error")
            self.assertNotIn(b"0123456789", r.body)
        self.assertEqual(left, b"")

    def test_a_plain_length_is_kept(self):
        path = "/t/up_one/proxy/cl"
        self.sim1.set_behavior(path=path, status=200, body="0123456789")
        resps, left = self.exchange(path)
        self.assertEqual(len(resps), 2, (resps, left))
        for r in resps:
            self.assertEqual(r.body, b"0123456789")
            self.assertEqual(r.headers.get("content-length"), "10")
        self.assertEqual(left, b"")


if __name__ == "__main__":
    harness.main()
