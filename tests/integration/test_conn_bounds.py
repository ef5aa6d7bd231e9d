"""Bounded memory per connection: a pipelining client that never reads its
answers cannot grow the worker (reading stops once the unsent output passes
its bound, whatever the parse state), and it is cut by send_timeout_ms;
keepalive_requests caps the requests one connection is served."""

import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase, SLACK, echo_section  # noqa: E402

SEND_TIMEOUT = 1.0
# 37 bytes: most reads end inside a request, the case the old bound missed
REQ = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"
# the worker may grow by this much at most (the unfixed code grew by
# hundreds of MB here); ASan's redzones and allocator caches count too
RSS_BOUND_MB = 80 if harness.SANITIZE else 30
# ASan keeps freed memory in its quarantine (256 MB by default), so every
# request served would count: keep it small to measure live memory
ASAN_ENV = {"ASAN_OPTIONS": ":".join(
    o for o in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=4")
    if o)} if harness.SANITIZE else None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class NonReaderTest(DaemonTestCase):
    ENV = ASAN_ENV
    CONFIG = {"server": {"send_timeout_ms": int(SEND_TIMEOUT * 1000),
                         # the request cap would hide the output bound
                         "keepalive_requests": 1000000000,
                         "keepalive_timeout_ms": 60000,
                         "header_timeout_ms": 60000},
              "plugin.echo": echo_section()}

    def test_pipelining_non_reader_is_bounded_and_cut(self):
        pid = self.d.get("/t/echo/pid").json()["pid"]
        before = rss_kb(pid)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.d.port()))
        s.setblocking(False)
        # Every send ends in the middle of a request, so (as long as the
        # worker keeps up) every read does too: the parse state is never
        # "between requests" when a read ends.
        big = REQ * 2000
        state = {"sent": 0, "error": None, "t_err": None, "t_stall": None}
        stop = threading.Event()

        def pump():
            pos = 0
            last_progress = time.monotonic()
            while not stop.is_set():
                _, w, _ = select.select([], [s], [], 0.05)
                now = time.monotonic()
                if not w:
                    if state["t_stall"] is None and now - last_progress > 0.3:
                        state["t_stall"] = last_progress
                    continue
                start = pos % len(REQ)
                size = len(REQ) // 2 if pos == 0 else len(REQ) * 1000
                try:
                    n = s.send(big[start:start + size])
                except BlockingIOError:
                    continue
                except OSError as e:
                    state["error"] = e
                    state["t_err"] = now
                    return
                pos += n
                state["sent"] += n
                last_progress = now
                state["t_stall"] = None

        peak = [before]
        t = threading.Thread(target=pump, daemon=True)
        t0 = time.monotonic()
        t.start()
        limit = 8.0 + SLACK
        while t.is_alive() and time.monotonic() - t0 < limit:
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.05)
        stop.set()
        t.join(2)
        peak[0] = max(peak[0], rss_kb(pid))
        s.close()
        grown_mb = (peak[0] - before) / 1024.0
        sys.stderr.write("worker RSS %d kB -> peak %d kB (+%.1f MB); sent "
                         "%.1f MB; error %r\n" % (before, peak[0], grown_mb,
                                                  state["sent"] / 1048576.0,
                                                  state["error"]))
        self.assertLess(grown_mb, RSS_BOUND_MB,
                        "worker grew by %.0f MB (sent %d MB of requests)" %
                        (grown_mb, state["sent"] >> 20))
        self.assertIsNotNone(state["error"],
                             "connection still open after %.0f s of a client "
                             "that reads nothing (send_timeout_ms=%d); sent "
                             "%d MB" % (limit, SEND_TIMEOUT * 1000,
                                        state["sent"] >> 20))
        self.assertIsInstance(state["error"], (ConnectionResetError,
                                               BrokenPipeError))
        # cut by the send timeout: soon after the client stopped getting
        # anything through
        stalled = state["t_stall"] or t0
        self.assertLess(state["t_err"] - stalled, SEND_TIMEOUT + SLACK + 1.0)
        ev = self.d.wait_event(lambda e: e.get("event") == "send_timeout")
        self.assertIsNotNone(ev, self.diag())
        # and the worker still serves
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)

    def test_slow_reader_is_not_cut(self):
        # a client that reads, slowly, keeps its connection past the timeout
        with self.d.raw_conn() as c:
            c.send(REQ * 2000)
            got = []
            t0 = time.monotonic()
            while len(got) < 2000 and time.monotonic() - t0 < 10:
                got += c.read_responses(200, timeout=5)
                time.sleep(SEND_TIMEOUT / 4)
            self.assertEqual(len(got), 2000)
            self.assertTrue(all(r.status == 200 for r in got))
            self.assertTrue(c.is_open(0.2))


class KeepaliveRequestsTest(DaemonTestCase):
    CONFIG = {"server": {"keepalive_requests": 3},
              "plugin.echo": echo_section()}

    def test_pipelined_requests_past_the_cap(self):
        res = self.d.raw(REQ * 5, expect=5)
        self.assertEqual(len(res.responses), 3, res)
        self.assertTrue(all(r.status == 200 for r in res.responses), res)
        self.assertFalse(res.responses[0].closes())
        self.assertFalse(res.responses[1].closes())
        self.assertTrue(res.responses[2].closes(), res)
        self.assertTrue(res.closed, res)

    def test_sequential_requests_past_the_cap(self):
        with self.d.raw_conn() as c:
            for i in range(3):
                c.send(REQ)
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.closes(), i == 2, r)
            self.assertTrue(c.wait_closed(2.0))

    def test_config_refuses_zero(self):
        d = Daemon({"server": {"keepalive_requests": 0},
                    "plugin.echo": echo_section()}, start=False)
        try:
            r = harness.run_tool(["-t", "-c", d.config_path])
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("keepalive_requests", r.stderr + r.stdout)
        finally:
            d.stop(check=False)


if __name__ == "__main__":
    harness.main()
