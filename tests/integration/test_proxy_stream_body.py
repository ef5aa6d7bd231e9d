"""Request bodies streamed through proxy routes (core/http/stream_body.c,
core/upstream/h1_body.c): the call starts once the client's head is
parsed and the body goes upstream as it is read, framed as the client
framed it (its Content-Length, or chunked), never gathered whole in the
gateway; reading the client stops while the upstream's queue is full.
The origin here is a raw-socket server of the test's own, so it can read
slowly and report the framing and a digest of what reached it."""

import hashlib
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SANITIZE  # noqa: E402
from upstream_env import start_sim, up_config  # noqa: E402

LIMIT = 80 << 20  # [server] max_body_bytes for the class
PATH = "/t/up_one/proxy/upload"


class Origin(object):
    """HTTP/1.1 origin: reads one request per connection (Content-Length
    or chunked), waits `delay` seconds before its first body read, reads
    in 64 KiB steps, and answers a JSON summary, or records an incomplete
    body when the connection ends first. Its receive buffer is small so
    that back-pressure reaches the gateway instead of the kernel."""

    def __init__(self):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.url = "http://127.0.0.1:%d" % self.ls.getsockname()[1]
        self.delay = 0.0
        self.seen = []  # one dict per request
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,),
                             daemon=True).start()

    def _serve(self, s):
        s.settimeout(30)
        f = s.makefile("rb")
        rec = {"complete": False, "len": 0, "done": False}
        with self.lock:
            # at once: a test that follows never sees an earlier one's
            self.seen.append(rec)
        try:
            line = f.readline()
            if not line:
                return
            rec["method"] = line.split(b" ")[0].decode()
            hdrs = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                hdrs[k.strip().lower()] = v.strip()
            rec["cl"] = hdrs.get("content-length")
            rec["te"] = hdrs.get("transfer-encoding")
            time.sleep(self.delay)
            digest = hashlib.sha256()
            if rec["te"] == "chunked":
                while True:
                    size = int(f.readline().split(b";")[0], 16)
                    if size == 0:
                        while f.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    self._read(f, size, digest, rec)
                    f.read(2)
            else:
                self._read(f, int(rec["cl"] or 0), digest, rec)
            rec["complete"] = True
            rec["sha256"] = digest.hexdigest()
            body = json.dumps(rec).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
        except (OSError, ValueError):
            pass
        finally:
            rec["done"] = True
            try:
                s.close()
            except OSError:
                pass

    def _read(self, f, n, digest, rec):
        while n > 0:
            b = f.read(min(n, 65536))
            if not b:
                raise ValueError("short body")
            digest.update(b)
            rec["len"] += len(b)
            n -= len(b)

    def stop(self):
        self.ls.close()


def worker_hwm_rss(d):
    """(VmHWM, VmRSS) in KiB of the worker processes (the master's
    children), the largest of each."""
    pids = [d.proc.pid]
    try:
        with open("/proc/%d/task/%d/children" % (d.proc.pid, d.proc.pid)) as f:
            pids = [int(p) for p in f.read().split()] or pids
    except OSError:
        pass
    hwm = rss = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    rss = max(rss, int(line.split()[1]))
    return hwm, rss


def read_answer(sock, timeout=30):
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            return harness.parse_response(buf)[0]
        except harness._Incomplete:
            pass
        b = sock.recv(65536)
        if not b:
            return harness.parse_response(buf)[0]
        buf += b


class ProxyStreamBodyTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.origin = Origin()
        cls.sim2 = start_sim()
        cls.CONFIG = up_config(
            cls.origin.url, cls.sim2.url, server={"max_body_bytes": LIMIT,
                                                  "workers": 1},
            one={"timeout_ms": 30000, "retries": 1, "retry_base_ms": 10,
                 "breaker_min_calls": 1000},
            two={"retries": 2, "retry_base_ms": 10, "retry_cap_ms": 20,
                 "retry_budget_percent": 100, "retry_budget_min": 1000,
                 "breaker_min_calls": 1000},
            plugin_one={"route_timeout_ms": 30000})
        try:
            super().setUpClass()
        except Exception:
            cls.origin.stop()
            cls.sim2.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.origin.stop()
            cls.sim2.stop()

    def setUp(self):
        super().setUp()
        self.origin.delay = 0.0
        with self.origin.lock:
            del self.origin.seen[:]

    def connect(self, sndbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.connect(("127.0.0.1", self.d.api_port))
        return s

    def head(self, length=None, chunked=False):
        h = "POST %s HTTP/1.1\r\nHost: x\r\n" % PATH
        h += "Content-Type: application/octet-stream\r\n"
        if chunked:
            h += "Transfer-Encoding: chunked\r\n"
        else:
            h += "Content-Length: %d\r\n" % length
        return (h + "\r\n").encode()

    def test_a_large_upload_intact_and_not_buffered(self):
        # first in the class: the worker's memory peak is still its own
        body = os.urandom(16 << 20)
        hwm0, rss0 = worker_hwm_rss(self.d)
        s = self.connect()
        s.sendall(self.head(len(body)) + body)
        r = read_answer(s)
        s.close()
        self.assertEqual(r.status, 200, r)
        got = r.json()
        self.assertTrue(got["complete"], got)
        self.assertEqual(got["len"], len(body))
        self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(got["cl"], str(len(body)))
        self.assertIsNone(got["te"])
        hwm1, _ = worker_hwm_rss(self.d)
        if not SANITIZE:  # ASan's quarantine keeps freed pieces resident
            # a buffered body would lift the peak by its 16 MiB
            self.assertLess(hwm1 - max(hwm0, rss0), 4 << 10,
                            (hwm0, rss0, hwm1))

    def test_slow_origin_stalls_the_client(self):
        self.origin.delay = 3.0
        # more than every socket buffer on the way can hold (the gateway's
        # receive buffer alone may grow to net.ipv4.tcp_rmem's maximum)
        body = os.urandom(64 << 20)
        _, rss0 = worker_hwm_rss(self.d)
        s = self.connect(sndbuf=65536)
        s.sendall(self.head(len(body)))
        s.setblocking(False)
        sent, t0 = 0, time.monotonic()
        while sent < len(body) and time.monotonic() - t0 < 2.0:
            try:
                sent += s.send(body[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        _, rss1 = worker_hwm_rss(self.d)
        # the origin has read nothing yet: the client got out only what
        # the socket buffers and the gateway's bounded queue hold
        self.assertLess(sent, 48 << 20, sent)
        if not SANITIZE:
            self.assertLess(rss1 - rss0, 8 << 10, (rss0, rss1))
        s.setblocking(True)
        s.sendall(body[sent:])
        r = read_answer(s)
        s.close()
        self.assertEqual(r.status, 200, r)
        got = r.json()
        self.assertEqual(got["len"], len(body))
        self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())

    def test_chunked_upload_forwarded_chunked(self):
        pieces = [os.urandom(n) for n in (1, 1000, 70000, 5, 300000, 65536)]
        body = b"".join(pieces)
        s = self.connect()
        s.sendall(self.head(chunked=True))
        for p in pieces:
            s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.02)
        s.sendall(b"0\r\n\r\n")
        r = read_answer(s)
        s.close()
        self.assertEqual(r.status, 200, r)
        got = r.json()
        self.assertEqual(got["te"], "chunked", got)
        self.assertIsNone(got["cl"], got)
        self.assertEqual(got["len"], len(body))
        self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())

    def test_known_length_over_limit_413_before_upstream(self):
        s = self.connect()
        s.sendall(self.head(LIMIT + 1))
        r = read_answer(s, timeout=10)
        s.close()
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.json()["extensions"]["code"], "request.too_large")
        time.sleep(0.3)
        self.assertEqual(self.origin.seen, [])

    def test_chunked_over_limit_413_and_upstream_aborted(self):
        s = self.connect()
        s.sendall(self.head(chunked=True))
        piece = os.urandom(1 << 20)
        frame = b"%x\r\n%s\r\n" % (len(piece), piece)
        err = []

        def send():
            try:
                for _ in range(LIMIT // len(piece) + 4):
                    s.sendall(frame)
                s.sendall(b"0\r\n\r\n")
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        r = read_answer(s, timeout=30)
        t.join(30)
        s.close()
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.json()["extensions"]["code"], "request.too_large")
        self.assertTrue(r.closes(), r)  # the rest of the stream is lost
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.origin.lock:
                seen = list(self.origin.seen)
            if seen and all(rec["done"] for rec in seen):
                break
            time.sleep(0.05)
        # the upstream never took a partial body for a whole one
        for rec in seen:
            self.assertFalse(rec["complete"], rec)
            self.assertLessEqual(rec["len"], LIMIT)

    def test_streamed_body_not_retried_short_one_is(self):
        # both POSTs are marked safe to retry; only the short body, read
        # whole and kept, can be sent twice
        path = "/t/up_two/proxy/retry"
        key = {"Content-Type": "text/plain", "Idempotency-Key": "k-1"}
        self.sim2.reset()
        self.sim2.set_behavior(path=path, status=503, times=1)
        r = self.d.post(path, body=b"x" * 1000, headers=key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim2.count(path), 2)
        self.sim2.reset()
        self.sim2.set_behavior(path=path, status=503, times=1)
        r = self.d.post(path, body=b"y" * (256 << 10), headers=key)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["extensions"]["code"], "up_two.unavailable")
        self.assertEqual(self.sim2.count(path), 1)

    def test_small_bodies_still_proxied(self):
        r = self.d.post(PATH, body=b"hello", headers={
            "Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, r)
        got = r.json()
        self.assertEqual(got["len"], 5)
        self.assertEqual(got["cl"], "5")
        r = self.d.get(PATH)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["len"], 0)


if __name__ == "__main__":
    harness.main()
