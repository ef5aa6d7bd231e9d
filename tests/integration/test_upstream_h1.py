"""The core's own HTTP/1.1 client (http:// upstreams) against a raw-socket
origin written here, which answers exactly the bytes each case needs and
counts the connections it is given:

- response conformance: every rule of the client's response side (HEAD,
  1xx, an unsolicited 101, 204/304 with stray bytes, a body ended by the
  close, truncated bodies, CL with TE, two lengths) and cases modelled on
  llhttp's response fixtures; each is forwarded correctly or answered
  <plugin>.upstream_error, and a connection is reused only when safe;
- the request as we write it: nothing added the client did not send, a
  GET's body kept with its length, Host from the upstream URL;
- the pool: reuse, an idle close by the upstream (no failed request), a
  pooled connection closed as it is reused (resent once when safe),
  max_connections under load, idle_timeout_ms and max_idle.
"""

import os
import socket
import sys
import threading
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import (closed_port, up_config, start_sim,  # noqa: E402
                          upstream_status)


def chunked(*parts, trailer=""):
    out = ""
    for p in parts:
        out += "%x\r\n%s\r\n" % (len(p), p)
    return out + "0\r\n" + trailer + "\r\n"


# name -> (raw answer, close after it). The answer is for the path
# /<name>; "{len}" is not used: every length is written out.
CASES = {
    "ok_cl": ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
              "Content-Type: text/plain\r\n\r\nhello", False),
    "chunked": ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: text/plain\r\n\r\n" +
                chunked("hel", "lo", trailer="X-Trailer: t\r\n"), False),
    "chunk_ext": ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5;name=value\r\nhello\r\n0\r\n\r\n", False),
    "close_delimited": ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                        "hello", True),
    "http10": ("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello",
               True),
    "conn_close": ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                   "Connection: close\r\n\r\nhello", False),
    "no_reason": ("HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", False),
    "interim": ("HTTP/1.1 100 Continue\r\n\r\n"
                "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
                "\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                False),
    "switching": ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\n\r\nhello", False),
    "no_content_stray": ("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n"
                         "\r\nhello", False),
    "not_modified_stray": ("HTTP/1.1 304 Not Modified\r\n"
                           "Content-Length: 5\r\n\r\nhello", False),
    "no_content": ("HTTP/1.1 204 No Content\r\n\r\n", False),
    "truncated_cl": ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
                     True),
    "truncated_chunked": ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n5\r\nhello\r\n", True),
    "cl_and_te": ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n" + chunked("hello"),
                  False),
    "two_lengths": ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                    "Content-Length: 6\r\n\r\nhello!", False),
    "length_list": ("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
                    False),
    "bad_status": ("HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
                   False),
    "bad_chunk_size": ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                       "\r\nzz\r\nhello\r\n0\r\n\r\n", False),
    "space_in_length": ("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n"
                        "hello", False),
    "empty": ("", True),
}

# forwarded as (status, body), and whether the connection may be reused
GOOD = {
    "ok_cl": (200, b"hello", True),
    "chunked": (200, b"hello", True),
    "chunk_ext": (200, b"hello", True),
    "close_delimited": (200, b"hello", False),
    "http10": (200, b"hello", False),
    "conn_close": (200, b"hello", False),
    "no_reason": (200, b"hello", True),
    "interim": (200, b"hello", True),
    "no_content_stray": (204, b"", False),
    "not_modified_stray": (304, b"", False),
    "no_content": (204, b"", True),
}
# refused: never relayed, <plugin>.upstream_error, not retried
BAD = ["switching", "cl_and_te", "two_lengths", "length_list", "bad_status",
       "bad_chunk_size", "space_in_length"]
# cut short: a transport failure (BH_TRANSPORT_RESET, as libcurl's partial
# file and empty reply were), which up_one's error map answers
# up_one.unavailable; a proxied answer already streaming is cut short too
CUT = ["truncated_cl", "truncated_chunked", "empty"]


class Origin(object):
    """A threaded raw-socket HTTP/1.1 origin. Each request is answered
    with CASES[name] for the path's last segment; it records every request
    (connection number, method, path, head lines, body) and how many
    connections were opened and are open now."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.conn_ids = 0  # never reset: a connection's number is unique
        self.reset()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        """Forgets the counts and closes every connection (the daemon's
        pool is empty once it has noticed)."""
        live = getattr(self, "live", [])
        for c in list(live):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 2
        while getattr(self, "open_now", 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        self.live = []
        with getattr(self, "lock", threading.Lock()):
            self.opened = 0
            self.open_now = 0
            self.max_open = 0
            self.closed_by_peer = 0
            self.requests = []
            self.delay = 0.0
            self.close_idle_after = None  # seconds after an answer
            self.drop_reused = 0  # requests on reused conns to drop unread

    def stop(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.opened += 1
                self.conn_ids += 1
                n = self.conn_ids
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
                self.live.append(c)
            threading.Thread(target=self._serve, args=(c, n),
                             daemon=True).start()

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        hdrs = [tuple(x.split(":", 1)) for x in lines[1:]]
        hdrs = [(k.strip().lower(), v.strip()) for k, v in hdrs]
        cl = int(dict(hdrs).get("content-length", "0"))
        while len(rest) < cl:
            d = c.recv(65536)
            if not d:
                return None, b""
            rest += d
        return (method, path, hdrs, rest[:cl]), rest[cl:]

    def _serve(self, c, n):
        buf = b""
        served = 0
        try:
            while True:
                c.settimeout(self.close_idle_after)
                try:
                    req, buf = self._read_request(c, buf)
                except socket.timeout:
                    break  # the upstream's own idle close
                if req is None:
                    with self.lock:
                        self.closed_by_peer += 1
                    break
                with self.lock:
                    self.requests.append((n,) + req)
                    drop = served > 0 and self.drop_reused > 0
                    if drop:
                        self.drop_reused -= 1
                if drop:
                    break  # closed before answering a reused connection
                served += 1
                name = req[1].split("?")[0].rsplit("/", 1)[-1]
                raw, close = CASES.get(name, CASES["ok_cl"])
                if self.delay:
                    time.sleep(self.delay)
                if req[0] == "HEAD":
                    raw = ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                           "Content-Type: text/plain\r\n\r\n")
                c.sendall(raw.encode("latin-1"))
                if close:
                    break
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.open_now -= 1
                if c in self.live:
                    self.live.remove(c)

    def conns_of(self, path):
        with self.lock:
            return [r[0] for r in self.requests
                    if r[2].split("?")[0].rsplit("/", 1)[-1] == path[1:]]


class H1Case(harness.DaemonTestCase):
    UPSTREAM = {}
    ONE_HOST = "127.0.0.1"  # how up_one's URL names the origin
    TWO_URL = None  # up_two's URL; the simulator by default

    @classmethod
    def setUpClass(cls):
        cls.origin = Origin()
        cls.sim = start_sim()
        one = {"timeout_ms": 2000, "retries": 0, "breaker_min_calls": 1000}
        one.update(cls.UPSTREAM)
        one_url = "http://%s:%d" % (cls.ONE_HOST, cls.origin.port)
        cls.CONFIG = up_config(one_url, cls.TWO_URL or cls.sim.url, one=one,
                               server={"workers": 1})
        try:
            super().setUpClass()
        except Exception:
            cls.origin.stop()
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.origin.stop()
            cls.sim.stop()

    def setUp(self):
        super().setUp()
        self.origin.reset()


class ResponseConformanceTest(H1Case):

    def check_good(self, route, name):
        status, body, reuse = GOOD[name]
        path = "/t/up_one/%s/%s" % (route, name)
        r = self.d.get(path)
        self.assertEqual(r.status, status, (name, r))
        self.assertEqual(r.body, body if route == "proxy" or status == 200
                         else r.body, (name, r))
        if route == "proxy":
            self.assertEqual(r.body, body, (name, r))
            self.assertIsNone(r.headers.get("link"), (name, r))
        # a second request: on the same connection only when it was safe
        r2 = self.d.get(path)
        self.assertEqual(r2.status, status, (name, r2))
        conns = self.origin.conns_of("/" + name)
        self.assertEqual(len(conns), 2, (name, conns))
        if reuse:
            self.assertEqual(conns[0], conns[1], (name, "not reused"))
        else:
            self.assertNotEqual(conns[0], conns[1], (name, "reused"))

    def test_good_answers_are_forwarded_and_pooled_when_safe(self):
        for route in ("proxy", "get"):
            for name in GOOD:
                with self.subTest(route=route, case=name):
                    self.origin.reset()
                    self.check_good(route, name)

    def test_bad_answers_are_upstream_errors(self):
        for route in ("proxy", "get"):
            for name in BAD:
                with self.subTest(route=route, case=name):
                    self.origin.reset()
                    path = "/t/up_one/%s/%s" % (route, name)
                    r = self.d.get(path)
                    self.assertProblem(r, 502, "up_one.upstream_error")
                    self.assertNotIn(b"hello", r.body)
                    # and the next answer never comes from that connection
                    r = self.d.get("/t/up_one/%s/ok_cl" % route)
                    self.assertEqual(r.status, 200, r)
                    bad = self.origin.conns_of("/" + name)
                    ok = self.origin.conns_of("/ok_cl")
                    self.assertTrue(bad and ok, (bad, ok))
                    self.assertNotIn(ok[0], bad, name)

    def test_cut_answers_are_transport_failures(self):
        for name in CUT:
            with self.subTest(case=name):
                self.origin.reset()
                r = self.d.get("/t/up_one/get/" + name)
                self.assertProblem(r, 503, "up_one.unavailable")
                self.assertNotIn(b"hello", r.body)
        for name in CUT:
            with self.subTest(route="proxy", case=name):
                self.origin.reset()
                res = self.d.raw(("GET /t/up_one/proxy/%s HTTP/1.1\r\n"
                                  "Host: t\r\n\r\n" % name).encode(),
                                 expect=1, timeout=3.0, close_wait=3.0)
                # either a 503 before anything was relayed, or a relayed
                # head whose body never completes: the connection closes
                if res.responses:
                    self.assertEqual(res.responses[0].status, 503, res)
                else:
                    # the head went out, the body never completed
                    self.assertTrue(res.closed, res)
                    self.assertNotIn(b"\r\n0\r\n\r\n", res.leftover, res)

    def test_head_has_no_body_and_the_connection_is_reused(self):
        with self.d.raw_conn() as c:
            req = ("HEAD /t/up_one/proxy/head HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /t/up_one/proxy/ok_cl HTTP/1.1\r\nHost: t\r\n\r\n")
            c.send(req.encode())
            resps = c.read_responses(1, timeout=5.0, head=True)
            self.assertEqual(resps[0].status, 200, resps)
            self.assertEqual(resps[0].body, b"")
            more = c.read_responses(1, timeout=5.0)
            self.assertEqual(more[0].status, 200, more)
            self.assertEqual(more[0].body, b"hello")
        head = self.origin.conns_of("/head")
        ok = self.origin.conns_of("/ok_cl")
        self.assertEqual(head, ok)


class RequestSerializationTest(H1Case):

    def last(self):
        with self.origin.lock:
            return self.origin.requests[-1]

    def test_nothing_added_and_a_get_body_kept(self):
        r = self.d.request("GET", "/t/up_one/proxy/ok_cl?a=1&b=2",
                           body=b"abc", headers={"X-Mine": "1"})
        self.assertEqual(r.status, 200, r)
        _, method, path, hdrs, body = self.last()
        names = [k for k, _ in hdrs]
        self.assertEqual((method, path),
                         ("GET", "/t/up_one/proxy/ok_cl?a=1&b=2"))
        self.assertEqual(body, b"abc")
        self.assertEqual(dict(hdrs).get("content-length"), "3")
        self.assertEqual(dict(hdrs).get("host"), "127.0.0.1:%d" %
                         self.origin.port)
        self.assertEqual(dict(hdrs).get("x-mine"), "1")
        self.assertIn("x-request-id", names)
        self.assertIn("x-forwarded-for", names)
        self.assertNotIn("accept", names)
        self.assertNotIn("expect", names)
        self.assertEqual(names.count("host"), 1)

    def test_a_post_gets_no_content_type_it_did_not_have(self):
        r = self.d.request("POST", "/t/up_one/proxy/ok_cl", body=b"x=1",
                           headers={"Connection": "x-drop", "X-Drop": "1"})
        self.assertEqual(r.status, 200, r)
        _, method, _, hdrs, body = self.last()
        names = [k for k, _ in hdrs]
        self.assertEqual((method, body), ("POST", b"x=1"))
        self.assertNotIn("content-type", names)
        self.assertNotIn("x-drop", names)
        self.assertNotIn("connection", names)


class PoolTest(H1Case):
    UPSTREAM = {"max_connections": 2, "idle_timeout_ms": 5000}

    def test_reuse_counted_at_the_origin(self):
        for _ in range(20):
            self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        self.assertEqual(len(self.origin.requests), 20)
        self.assertEqual(self.origin.opened, 1)

    def test_idle_close_by_the_upstream_fails_no_request(self):
        self.origin.close_idle_after = 0.05
        for _ in range(5):
            r = self.d.get("/t/up_one/get/ok_cl")
            self.assertEqual(r.status, 200, r)
            time.sleep(0.2)
        self.assertEqual(len(self.origin.requests), 5)
        self.assertEqual(self.origin.opened, 5)

    def test_reused_connection_closed_unanswered_is_resent_once(self):
        self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        self.origin.drop_reused = 1
        r = self.d.get("/t/up_one/get/ok_cl")
        self.assertEqual(r.status, 200, r)
        conns = self.origin.conns_of("/ok_cl")
        # the dropped one reached the origin on the old connection, the
        # resend on a new one; retries = 0, so this was no retry
        self.assertEqual(len(conns), 3, conns)
        self.assertEqual(conns[0], conns[1])
        self.assertNotEqual(conns[1], conns[2])

    def test_a_post_goes_on_a_new_connection(self):
        self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        self.origin.drop_reused = 1
        r = self.d.post("/t/up_one/post/ok_cl", body={})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.origin.conns_of("/ok_cl")), 2)
        self.assertEqual(self.origin.opened, 2)

    def test_max_connections_under_load(self):
        self.origin.delay = 0.1
        results = []

        def one():
            results.append(self.d.get("/t/up_one/get/ok_cl",
                                      timeout=10.0).status)

        ts = [threading.Thread(target=one) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(results, [200] * 10)
        self.assertLessEqual(self.origin.max_open, 2)
        self.assertLessEqual(self.origin.opened, 2)


class IdleLimitsTest(H1Case):
    UPSTREAM = {"idle_timeout_ms": 150, "max_idle": 1}

    def test_idle_timeout_closes_our_side(self):
        self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        deadline = time.monotonic() + 3
        while self.origin.closed_by_peer == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.origin.closed_by_peer, 1)
        self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        self.assertEqual(self.origin.opened, 2)

    def test_max_idle_bounds_the_pool(self):
        self.origin.delay = 0.1
        ts = [threading.Thread(target=self.d.get,
                               args=("/t/up_one/get/ok_cl",))
              for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(self.origin.opened, 3)
        deadline = time.monotonic() + 2
        while self.origin.open_now > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.origin.open_now, 1)


class ResolverTest(H1Case):
    """Names resolved off the loop (uv_getaddrinfo), cached per upstream; a
    name that does not resolve is a DNS failure, as on libcurl."""
    ONE_HOST = "localhost"
    TWO_URL = "http://no-such-host.invalid:8080"
    UPSTREAM = {"dns_ttl_ms": 60000}

    def test_a_name_is_resolved_and_sent_as_host(self):
        for _ in range(3):
            self.assertEqual(self.d.get("/t/up_one/get/ok_cl").status, 200)
        with self.origin.lock:
            hosts = [dict(r[3]).get("host") for r in self.origin.requests]
        self.assertEqual(hosts, ["localhost:%d" % self.origin.port] * 3)
        self.assertEqual(self.origin.opened, 1)

    def test_a_name_that_does_not_resolve(self):
        r = self.d.get("/t/up_two/get/x")
        self.assertProblem(r, 503, "up_two.unavailable")
        self.assertEqual(upstream_status(self.d, "up_two")["lastError"],
                         "DNS failure")


GAI_SHIM = os.path.join(harness.BUILD_DIR, "tests", "gai_addrs.so")
GAI_FILE = os.path.join(tempfile.gettempdir(),
                        "bh-gai-%d.txt" % os.getpid())


@unittest.skipIf(harness.SANITIZE or not os.path.exists(GAI_SHIM),
                 "needs the gai_addrs preload (not built with sanitizers)")
class EveryAddressTest(H1Case):
    """A name with several addresses (given by the gai_addrs preload: these
    machines have no such name of their own): a refused connect moves on
    to the next address, in the resolver's order, on a new socket; only
    when every address refuses is the attempt a connect failure."""
    ONE_HOST = "two-addrs.test"
    TWO_URL = "http://none-answers.test:80"
    UPSTREAM = {"dns_ttl_ms": 60000}
    ENV = {"LD_PRELOAD": GAI_SHIM, "BH_TEST_GAI_FILE": GAI_FILE}

    @classmethod
    def setUpClass(cls):
        # names are resolved at an upstream's first call, so the table can
        # be written once the origin's port is known
        super().setUpClass()
        refused = (closed_port(), closed_port())
        with open(GAI_FILE, "w") as f:
            f.write("two-addrs.test 127.0.0.1:%d 127.0.0.1:%d\n" %
                    (refused[0], cls.origin.port))
            f.write("none-answers.test 127.0.0.1:%d 127.0.0.1:%d\n" %
                    refused)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if os.path.exists(GAI_FILE):
                os.unlink(GAI_FILE)

    def test_a_refused_address_is_followed_by_the_next(self):
        for _ in range(3):
            r = self.d.get("/t/up_one/get/ok_cl")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"hello")
        # one connection to the second address, reused for the others
        self.assertEqual(self.origin.opened, 1)
        self.assertIsNone(upstream_status(self.d, "up_one")["lastError"])

    def test_every_address_refused_is_a_connect_failure(self):
        r = self.d.get("/t/up_two/get/x")
        self.assertProblem(r, 503, "up_two.unavailable")
        self.assertEqual(upstream_status(self.d, "up_two")["lastError"],
                         "connect failed")


class TransportCurlTest(H1Case):
    """transport = curl keeps an http:// upstream on libcurl (the https://
    path): its pool is libcurl's, its request libcurl's."""
    UPSTREAM = {"transport": "curl"}

    def test_curl_adds_accept(self):
        r = self.d.get("/t/up_one/proxy/ok_cl")
        self.assertEqual(r.status, 200, r)
        with self.origin.lock:
            names = [k for k, _ in self.origin.requests[-1][3]]
        self.assertIn("accept", names)


if __name__ == "__main__":
    harness.main()
