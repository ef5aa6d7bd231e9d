"""Proxy routes (bh_proxy_add: /t/<name>/proxy/*): method, path, query,
end-to-end headers and body go upstream as they came; hop-by-hop headers
(Connection and the headers it names, Keep-Alive, TE, Trailer, Upgrade,
Proxy-*) stay on their hop, both ways; the answer streams back as it
arrives, and once a byte has gone to the client nothing is retried; an
upstream 5xx (and every status the plugin's error map names) is answered
through the error map. X-Request-ID and X-Request-Timeout-Ms travel
upstream on proxy and plugin calls alike."""

import base64
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import (FAST, TwoSimsCase, set_breaker,  # noqa
                          timed_get, up_config)

ROUTE_TIMEOUT_MS = 4000
UPSTREAM_TIMEOUT_MS = 2000


def hdrs(rec):
    """Recorded request headers: lower-case name -> list of values."""
    out = {}
    for k, v in rec["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def body_bytes(rec):
    if "body_base64" in rec:
        return base64.b64decode(rec["body_base64"])
    return rec["body"].encode("utf-8")


class ProxyTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url,
            one={"timeout_ms": UPSTREAM_TIMEOUT_MS, "retries": 1,
                 "retry_base_ms": 10, "retry_cap_ms": 20,
                 "retry_after_max_s": 2, "retry_budget_percent": 100,
                 "retry_budget_min": 1000, "breaker_min_calls": 1000},
            plugin_one={"route_timeout_ms": ROUTE_TIMEOUT_MS})

    def last(self, path):
        reqs = self.sim1.requests(path)
        self.assertEqual(len(reqs), 1, reqs)
        return reqs[0]

    # -- request side -------------------------------------------------------

    def test_get_goes_upstream_as_is(self):
        path = "/t/up_one/proxy/v1/items/42"
        r = self.d.get(path + "?a=1&b=x%20y&a=2",
                       headers={"X-Custom": "hello", "Accept": "text/csv",
                                "Authorization": "Bearer tok-1",
                                "User-Agent": "it-client/1.0",
                                "Cookie": "a=b"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], path)
        rec = self.last(path)
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["query"], "a=1&b=x%20y&a=2")
        h = hdrs(rec)
        self.assertEqual(h.get("x-custom"), ["hello"])
        self.assertEqual(h.get("accept"), ["text/csv"])
        self.assertEqual(h.get("authorization"), ["Bearer tok-1"])
        self.assertEqual(h.get("user-agent"), ["it-client/1.0"])
        self.assertEqual(h.get("cookie"), ["a=b"])
        self.assertEqual(h.get("x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(h.get("x-forwarded-host"),
                         ["127.0.0.1:%d" % self.d.api_port])

    def test_methods_and_bodies_go_upstream_as_is(self):
        payload = bytes(range(256)) * 8
        for method, status in (("POST", 201), ("PUT", 200), ("PATCH", 200),
                               ("DELETE", 204), ("OPTIONS", 200)):
            with self.subTest(method=method):
                path = "/t/up_one/proxy/m/" + method.lower()
                self.sim1.set_behavior(path=path, method=method,
                                       status=status)
                body = None if method == "OPTIONS" else payload
                r = self.d.request(method, path + "?v=1", body=body,
                                   headers={"Content-Type":
                                            "application/octet-stream"})
                self.assertEqual(r.status, status, r)
                rec = self.last(path)
                self.assertEqual(rec["method"], method)
                self.assertEqual(rec["query"], "v=1")
                h = hdrs(rec)
                if body is None:
                    self.assertEqual(rec["body_size"], 0)
                else:
                    self.assertEqual(rec["body_size"], len(payload))
                    self.assertEqual(body_bytes(rec), payload)
                    self.assertEqual(h.get("content-type"),
                                     ["application/octet-stream"])
                    self.assertEqual(h.get("content-length"),
                                     [str(len(payload))])

    def test_large_request_body_intact(self):
        payload = os.urandom(48 * 1024)
        path = "/t/up_one/proxy/upload"
        r = self.d.post(path, body=payload,
                        headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, r)
        rec = self.last(path)
        self.assertEqual(rec["body_size"], len(payload))
        self.assertEqual(body_bytes(rec), payload)

    def test_hop_by_hop_request_headers_stripped(self):
        path = "/t/up_one/proxy/hop"
        r = self.d.get(path, headers={
            "Connection": "keep-alive, X-Hop-Private",
            "X-Hop-Private": "secret-hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        })
        self.assertEqual(r.status, 200, r)
        h = hdrs(self.last(path))
        for name in ("connection", "x-hop-private", "keep-alive", "te",
                     "trailer", "proxy-authorization", "proxy-connection",
                     "transfer-encoding", "upgrade"):
            self.assertNotIn(name, h, "hop-by-hop %s went upstream" % name)
        self.assertEqual(h.get("x-end-to-end"), ["kept"])
        # Host is the upstream's; the client's goes as X-Forwarded-Host
        self.assertNotEqual(h["host"], ["127.0.0.1:%d" % self.d.api_port])

    def test_request_id_travels_upstream(self):
        # the client's sane id is kept, exactly one copy goes upstream
        path = "/t/up_one/proxy/rid"
        r = self.d.get(path, headers={"X-Request-ID": "client-req-42"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-request-id"), "client-req-42")
        h = hdrs(self.last(path))
        self.assertEqual(h.get("x-request-id"), ["client-req-42"])
        # an unusable id is replaced, and the replacement goes upstream
        self.sim1.reset()
        r = self.d.get(path, headers={"X-Request-ID": "bad id with spaces"})
        rid = r.headers.get("x-request-id")
        self.assertTrue(rid and rid != "bad id with spaces", r)
        self.assertEqual(hdrs(self.last(path)).get("x-request-id"), [rid])
        # no client id at all: the daemon's own
        self.sim1.reset()
        r = self.d.get(path)
        self.assertEqual(hdrs(self.last(path)).get("x-request-id"),
                         [r.headers["x-request-id"]])

    def test_deadline_travels_upstream(self):
        # proxy routes run under the server's handler deadline (30 s)
        r = self.d.get("/t/up_one/proxy/dl")
        self.assertEqual(r.status, 200, r)
        v = hdrs(self.last("/t/up_one/proxy/dl")).get("x-request-timeout-ms")
        self.assertIsNotNone(v)
        self.assertEqual(len(v), 1, v)
        self.assertTrue(25000 < int(v[0]) <= 30000, v)
        # plugin calls run under the route's deadline
        r = self.d.get("/t/up_one/get/dl2", headers={"X-Request-ID": "dl-2"})
        self.assertEqual(r.status, 200, r)
        h = hdrs(self.last("/dl2"))
        self.assertTrue(0 < int(h["x-request-timeout-ms"][0]) <=
                        ROUTE_TIMEOUT_MS, h)
        self.assertEqual(h.get("x-request-id"), ["dl-2"])

    # -- answer side --------------------------------------------------------

    def test_answer_headers_and_body_come_back(self):
        path = "/t/up_one/proxy/answer"
        self.sim1.set_behavior(path=path, status=200, body="hello proxy",
                               headers={"X-Sim-End": "kept",
                                        "ETag": '"v1"',
                                        "Cache-Control": "max-age=5",
                                        "Keep-Alive": "timeout=9",
                                        "Proxy-Authenticate": "Basic",
                                        "Content-Type": "text/x-sim"})
        r = self.d.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello proxy")
        self.assertEqual(r.headers.get("content-type"), "text/x-sim")
        self.assertEqual(r.headers.get("x-sim-end"), "kept")
        self.assertEqual(r.headers.get("etag"), '"v1"')
        self.assertEqual(r.headers.get("cache-control"), "max-age=5")
        self.assertNotIn("keep-alive", r.headers, r)
        self.assertNotIn("proxy-authenticate", r.headers, r)
        for name in ("date", "x-request-id", "content-length"):
            self.assertEqual(r.header_count(name), 1, (name, r.header_list))

    def test_non_error_statuses_pass_through(self):
        for status in (201, 202, 301, 404, 409, 410, 422):
            with self.subTest(status=status):
                path = "/t/up_one/proxy/st/%d" % status
                body = '{"upstream":"says %d"}' % status
                rule = {"path": path, "status": status, "body": body}
                if status == 301:
                    rule["headers"] = {"Location": "/elsewhere"}
                self.sim1.set_behavior(**rule)
                r = self.d.get(path)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.body, body.encode(), r)
                self.assertEqual(r.headers.get("content-type"),
                                 "application/json")
                if status == 301:
                    self.assertEqual(r.headers.get("location"), "/elsewhere")
                self.assertEqual(self.sim1.count(path), 1)

    def test_large_answer_intact(self):
        body = "".join("%08d\n" % i for i in range(30000))  # 270 KB
        path = "/t/up_one/proxy/big"
        self.sim1.set_behavior(path=path, body=body)
        r = self.d.get(path, timeout=20)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(body))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(),
                         hashlib.sha256(body.encode()).hexdigest())

    def test_large_answer_to_slow_reader_intact(self):
        # a client that does not read for a while: the socket takes part
        # of each 64 KiB piece, the rest is queued (large pieces go to the
        # socket from the upstream's buffer, only what it refuses is
        # copied); the bytes arrive whole and in order, and the
        # connection still frames the next answer
        import socket
        body = "".join("%08d\n" % i for i in range(100000))  # 900 KB
        path = "/t/up_one/proxy/big-slow"
        self.sim1.set_behavior(path=path, body=body)
        c = harness.RawConn(self.d.port(), timeout=20)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        try:
            req = "GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path
            c.send(req)
            time.sleep(0.5)
            r = c.read_response(20)
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), len(body))
            self.assertEqual(hashlib.sha256(r.body).hexdigest(),
                             hashlib.sha256(body.encode()).hexdigest())
            c.send(req)
            r = c.read_response(20)
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), len(body))
        finally:
            c.close()

    def test_answer_is_streamed(self):
        # 40 bytes at 40 bytes/s: ~1 s upstream. The head and the first
        # bytes reach the client long before the upstream is done.
        path = "/t/up_one/proxy/trickle"
        body = "abcdefghij" * 4
        self.sim1.set_behavior(path=path, action="trickle",
                               trickle_bytes_per_sec=40, body=body)
        with self.d.raw_conn(timeout=10) as c:
            t0 = time.monotonic()
            c.send("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path)
            while b"\r\n\r\n" not in c.buf:
                self.assertTrue(c._fill(t0 + 10), c.buf)
            t_head = time.monotonic() - t0
            got = c.buf.partition(b"\r\n\r\n")[2]
            while len(got) < len(body) // 2:
                self.assertTrue(c._fill(t0 + 10), c.buf)
                got = c.buf.partition(b"\r\n\r\n")[2]
            t_half = time.monotonic() - t0
            resp = c.read_response(10)
            t_done = time.monotonic() - t0
        self.assertIsNotNone(resp)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, body.encode())
        self.assertGreaterEqual(t_done, 0.8, "trickled answer came too fast")
        self.assertGreater(t_done - t_head, 0.5,
                           "the head waited for the whole body")
        self.assertGreater(t_done - t_half, 0.25,
                           "the body was buffered, not streamed")
        self.assertEqual(self.sim1.count(path), 1)

    def test_no_retry_once_bytes_went_to_the_client(self):
        # GET is idempotent and a reset is retryable, but half the answer
        # is already with the client: the connection is closed instead
        path = "/t/up_one/proxy/cut"
        self.sim1.set_behavior(path=path, status=200, body="y" * 20000,
                               action="reset_mid_body")
        with self.d.raw_conn(timeout=5) as c:
            c.send("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path)
            self.assertTrue(c.wait_closed(5), "connection left open")
            head, _, got = c.buf.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"Content-Length: 20000", head)
        self.assertLess(len(got), 20000, "a cut answer looked complete")
        self.assertEqual(self.sim1.count(path), 1)
        # the daemon is fine and the path works when the upstream is
        self.sim1.clear()
        r = self.d.get(path)
        self.assertEqual(r.status, 200, r)

    # -- errors through the error map ---------------------------------------

    def test_upstream_errors_mapped(self):
        cases = [
            # rule, status, code, retryable, Retry-After
            ({"preset": "stripe_500"}, 502, "up_one.failed", True, None),
            ({"status": 502}, 502, "up_one.failed", True, None),
            ({"status": 504}, 502, "up_one.failed", True, None),
            ({"status": 503, "headers": {"Retry-After": "7"}}, 503,
             "up_one.unavailable", True, "7"),
            ({"status": 429, "headers": {"Retry-After": "9"}}, 429,
             "up_one.rate_limited", True, "9"),
            ({"preset": "anthropic_overloaded"}, 503, "up_one.overloaded",
             True, None),
            ({"preset": "stripe_no_customer"}, 400, "up_one.not_on_file",
             False, None),
        ]
        for i, (rule, status, code, retryable, ra) in enumerate(cases):
            with self.subTest(rule=rule):
                path = "/t/up_one/proxy/err/%d" % i
                self.sim1.set_behavior(path=path, **rule)
                r = self.d.get(path)
                doc = self.assertProblem(r, status, code)
                self.assertIs(doc["extensions"]["retryable"], retryable)
                self.assertEqual(r.headers.get("retry-after"), ra, r)
                if ra:
                    self.assertEqual(doc["extensions"]["retryAfterSeconds"],
                                     int(ra))
                # the upstream's own error text is not passed on
                self.assertNotIn(b"(sim)", r.body)
                self.assertNotIn(b"Request-Id", r.body)
                self.assertNotIn("request-id", r.headers)

    def test_transport_failures_mapped(self):
        # connection dropped without an answer (a POST: not retried)
        path = "/t/up_one/proxy/tf/drop"
        self.sim1.set_behavior(path=path, action="reset")
        r = self.d.post(path, body=b"x",
                        headers={"Content-Type": "text/plain"})
        doc = self.assertProblem(r, 503, "up_one.unavailable")
        self.assertIs(doc["extensions"]["retryable"], True)
        self.assertNotIn("retry-after", r.headers)
        # no answer within the upstream's timeout
        path = "/t/up_one/proxy/tf/slow"
        self.sim1.set_behavior(path=path, delay_ms=8000)
        r, dt = timed_get(self.d, path, timeout=15)
        doc = self.assertProblem(r, 504, "up_one.timeout")
        self.assertIs(doc["extensions"]["retryable"], True)
        self.assertGreaterEqual(dt, UPSTREAM_TIMEOUT_MS / 1000.0 * 0.9)
        self.assertEqual(self.sim1.count(path), 1, "a timeout was retried")

    def test_retries_on_proxy_routes(self):
        # GET: a buffered 503 is retried; POST only with an Idempotency-Key
        self.sim1.set_behavior(path="/t/up_one/proxy/rt/get", status=503,
                               times=1)
        r = self.d.get("/t/up_one/proxy/rt/get")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim1.count("/t/up_one/proxy/rt/get"), 2)

        self.sim1.set_behavior(path="/t/up_one/proxy/rt/post", status=503,
                               times=1)
        r = self.d.post("/t/up_one/proxy/rt/post", body=b"once",
                        headers={"Content-Type": "text/plain"})
        self.assertProblem(r, 503, "up_one.unavailable")
        self.assertEqual(self.sim1.count("/t/up_one/proxy/rt/post"), 1)

        self.sim1.set_behavior(path="/t/up_one/proxy/rt/key", status=503,
                               times=1)
        r = self.d.post("/t/up_one/proxy/rt/key", body=b"twice is fine",
                        headers={"Content-Type": "text/plain",
                                 "Idempotency-Key": "idem-7"})
        self.assertEqual(r.status, 200, r)
        reqs = self.sim1.requests("/t/up_one/proxy/rt/key")
        self.assertEqual(len(reqs), 2)
        for q in reqs:
            self.assertEqual(hdrs(q).get("idempotency-key"), ["idem-7"])
            self.assertEqual(q["body"], "twice is fine")

    def test_unmarked_post_not_resent_when_kept_alive_connection_dies(self):
        # the upstream reads the POST, then closes the pooled connection
        # without answering: it may have acted on it; no second copy
        for i in range(2):
            with self.subTest(round=i):
                self.assertEqual(self.d.get("/t/up_one/proxy/warm").status,
                                 200)
                path = "/t/up_one/proxy/dies/%d" % i
                self.sim1.set_behavior(path=path, action="close", times=1)
                r = self.d.post(path, body=b"charge",
                                headers={"Content-Type": "text/plain"})
                self.assertEqual(self.sim1.count(path, "POST"), 1,
                                 "an unmarked POST reached the upstream "
                                 "twice (%r)" % r)
                self.assertProblem(r, 503, "up_one.unavailable")

    def test_breaker_open_fails_fast_on_proxy(self):
        try:
            self.assertEqual(set_breaker(self.d, "up_one",
                                         "forced_open").status, 200)
            for method in ("GET", "POST", "PUT", "DELETE"):
                t0 = time.monotonic()
                r = self.d.request(method, "/t/up_one/proxy/bo",
                                   body=b"x" if method in ("POST", "PUT")
                                   else None,
                                   headers={"Content-Type": "text/plain"})
                doc = self.assertProblem(r, 503, "up_one.unavailable", method)
                self.assertIs(doc["extensions"]["retryable"], True)
                self.assertIn("retry-after", r.headers, r)
                self.assertLess(time.monotonic() - t0, FAST)
            self.assertEqual(self.sim1.stats()["total"], 0)
            # up_two's proxy is another compartment
            r = self.d.get("/t/up_two/proxy/fine")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.sim2.count("/t/up_two/proxy/fine"), 1)
        finally:
            set_breaker(self.d, "up_one", "closed")
        r = self.d.get("/t/up_one/proxy/bo")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim1.stats()["total"], 1)


if __name__ == "__main__":
    harness.main()
