"""Lingering close: after a connection's last answer (413, 400, Connection:
close) the daemon shuts its side down and reads and drops what the client
still sends, for a bounded time, instead of closing with unread input (the
kernel would reset the connection and the client could lose the answer)."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, SLACK, echo_section  # noqa: E402

UPLOAD = 4 << 20  # /t/echo/validate takes max_body_bytes: 1 MiB
CLIENTS = 30
LINGER_TIME = 1.5
LINGER_TIMEOUT = 0.5


def upload_head(n, path="/t/echo/validate"):
    return ("POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
            "\r\nContent-Length: %d\r\n\r\n" % (path, n)).encode()


class LingeringTest(DaemonTestCase):
    CONFIG = {"server": {"max_body_bytes": 1048576},
              "plugin.echo": echo_section()}

    def test_oversized_uploads_complete_and_read_the_413(self):
        body = b"x" * UPLOAD
        results = [None] * CLIENTS

        def client(i):
            try:
                with self.d.raw_conn(timeout=30) as c:
                    c.send(upload_head(UPLOAD))
                    c.send(body)  # the whole upload, as a client would
                    r = c.read_response(10)
                    closed = c.wait_closed(5)
                    results[i] = ("ok", r, closed, c.reset)
            except OSError as e:
                results[i] = ("error", repr(e))

        threads = [threading.Thread(target=client, args=(i,))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        errors = [r for r in results if r is None or r[0] != "ok"]
        self.assertEqual(errors, [], "%d of %d clients failed while "
                         "sending" % (len(errors), CLIENTS))
        for _, r, closed, reset in results:
            self.assertIsNotNone(r)
            self.assertProblem(r, 413, "request.too_large")
            self.assertTrue(r.closes(), r)
            self.assertTrue(closed)
            self.assertFalse(reset, "the answer was followed by a reset")
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)

    def test_chunked_upload_over_the_limit(self):
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        with self.d.raw_conn(timeout=30) as c:
            c.send(b"POST /t/echo/validate HTTP/1.1\r\nHost: t\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(48):  # 3 MiB
                c.send(chunk)
            c.send(b"0\r\n\r\n")
            r = c.read_response(10)
            self.assertProblem(r, 413, "request.too_large")
            self.assertTrue(c.wait_closed(5))
            self.assertFalse(c.reset)

    def test_bad_request_followed_by_more_bytes(self):
        # a 400 on the first line; the client goes on sending its upload
        with self.d.raw_conn(timeout=30) as c:
            c.send(b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n")
            c.send(b"z" * (2 << 20))
            r = c.read_response(10)
            self.assertProblem(r, 400, "request.bad_request")
            self.assertTrue(c.wait_closed(5))
            self.assertFalse(c.reset)


class LingeringBoundsTest(DaemonTestCase):
    CONFIG = {"server": {"max_body_bytes": 1024,
                         "lingering_time_ms": int(LINGER_TIME * 1000),
                         "lingering_timeout_ms": int(LINGER_TIMEOUT * 1000),
                         "body_timeout_ms": 60000},
              "plugin.echo": echo_section()}

    def too_large(self, c):
        c.send(upload_head(1 << 30))
        r = c.read_response(5)
        self.assertProblem(r, 413, "request.too_large")
        # our side is shut down: the client sees the end of the answer
        self.assertTrue(c.wait_closed(2))

    def test_trickling_client_is_cut_after_lingering_time(self):
        with self.d.raw_conn() as c:
            self.too_large(c)
            t0 = time.monotonic()
            cut = None
            while time.monotonic() - t0 < LINGER_TIME + SLACK + 2:
                try:
                    c.sock.send(b"a" * 100)
                except OSError:
                    cut = time.monotonic() - t0
                    break
                time.sleep(0.1)
            self.assertIsNotNone(cut, "still lingering after %.1f s" %
                                 (time.monotonic() - t0))
            self.assertGreater(cut, LINGER_TIME * 0.6)
            self.assertLess(cut, LINGER_TIME + SLACK)

    def test_silent_client_is_cut_after_lingering_timeout(self):
        with self.d.raw_conn() as c:
            self.too_large(c)
            # within the quiet period a byte is dropped silently
            c.sock.send(b"a")
            time.sleep(0.1)
            c.sock.send(b"b")
            time.sleep(LINGER_TIMEOUT + SLACK)
            # past it, the socket is gone: the kernel answers with a reset
            with self.assertRaises(OSError):
                for _ in range(20):
                    c.sock.send(b"c")
                    time.sleep(0.05)
                    c.sock.recv(1)

    def test_client_that_closes_is_not_waited_for(self):
        c = self.d.raw_conn()
        self.too_large(c)
        c.close()
        # nothing of it stays: the connections gauge goes back down to the
        # admin connection asking (well before lingering_timeout_ms)
        deadline = time.monotonic() + LINGER_TIMEOUT * 0.8
        n = None
        while time.monotonic() < deadline:
            n = self.open_connections()
            if n <= 1:
                break
            time.sleep(0.02)
        self.assertLessEqual(n, 1)

    def open_connections(self):
        text = self.d.admin("/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith("bulkhead_connections") and \
                    not line.startswith("#"):
                return float(line.split()[-1])
        self.fail("no bulkhead_connections gauge in /metrics")

    def test_config_checks_the_lingering_keys(self):
        for key, value, ok in (("lingering_time_ms", 0, True),
                               ("lingering_timeout_ms", 0, False),
                               ("lingering_max_bytes", -1, False),
                               ("send_timeout_ms", 50, False),
                               ("max_connections_per_ip", "x", False)):
            d = harness.Daemon({"server": {key: value},
                                "plugin.echo": echo_section()}, start=False)
            try:
                r = harness.run_tool(["-t", "-c", d.config_path])
                self.assertEqual(r.returncode == 0, ok, (key, r.stderr))
                if not ok:
                    self.assertIn(key, r.stderr + r.stdout)
            finally:
                d.stop(check=False)


class LingeringDrainTest(unittest.TestCase):
    def test_drain_is_not_held_by_a_lingering_connection(self):
        d = harness.Daemon({"server": {"max_body_bytes": 1024,
                                       "drain_timeout_ms": 6000,
                                       "lingering_time_ms": 60000,
                                       "lingering_timeout_ms": 60000},
                            "plugin.echo": echo_section()})
        stop = threading.Event()
        with d:
            c = d.raw_conn()
            try:
                c.send(upload_head(1 << 30))
                self.assertProblem = DaemonTestCase.assertProblem.__get__(self)
                self.assertProblem(c.read_response(5), 413,
                                   "request.too_large")

                def trickle():
                    while not stop.is_set():
                        try:
                            c.sock.send(b"a" * 100)
                        except OSError:
                            return
                        time.sleep(0.05)

                t = threading.Thread(target=trickle, daemon=True)
                t.start()
                time.sleep(0.3)
                t0 = time.monotonic()
                d.stop()
                elapsed = time.monotonic() - t0
            finally:
                stop.set()
                c.close()
        # the drain closes it after its idle grace (1 s), not at the drain
        # timeout and not after lingering_time
        self.assertLess(elapsed, 4.0)
        self.assertEqual(d.events("drain_timeout"), [])


if __name__ == "__main__":
    harness.main()
