"""A handler that never ends: the core answers 504 "<plugin>.timeout" at
the route deadline (300 ms for GET /t/echo/never), exactly once, keeps the
connection usable, and a late end call from the plugin is refused."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, SLACK, echo_section  # noqa: E402

DEADLINE = 0.3
NEVER = b"GET /t/echo/never HTTP/1.1\r\nHost: t\r\n\r\n"
OK = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"


class DeadlineTest(DaemonTestCase):
    CONFIG = {"server": {"handler_timeout_ms": 5000},
              "plugin.echo": echo_section()}

    def release(self):
        r = self.d.post("/t/echo/never/release")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def setUp(self):
        super().setUp()
        self.release()  # start with nothing held

    def test_core_answers_plugin_timeout(self):
        t0 = time.monotonic()
        r = self.d.get("/t/echo/never", headers={"X-Request-ID": "never-1"})
        elapsed = time.monotonic() - t0
        doc = self.assertProblem(r, 504, "echo.timeout")
        self.assertIs(doc["extensions"]["retryable"], True)
        self.assertEqual(doc["extensions"]["requestId"], "never-1")
        self.assertEqual(doc["title"], "Gateway Timeout")
        self.assertEqual(doc["detail"],
                         "The echo handler did not answer in time.")
        self.assertEqual(doc["instance"], "/t/echo/never")
        self.assertGreaterEqual(elapsed, DEADLINE * 0.9)
        self.assertLess(elapsed, DEADLINE + SLACK)
        ev = self.d.wait_event(lambda e: e.get("event") == "handler_timeout"
                               and e.get("requestId") == "never-1")
        self.assertIsNotNone(ev, self.diag())
        self.assertEqual(ev.get("plugin"), "echo")
        self.assertEqual(ev.get("route"), "/t/echo/never")
        logs = self.d.request_log("never-1")
        self.assertEqual(len(logs), 1, logs)
        self.assertEqual(logs[0].get("status"), 504)
        self.assertEqual(logs[0].get("code"), "echo.timeout")

    def test_late_end_call_is_refused_and_nothing_more_is_sent(self):
        with self.d.raw_conn() as c:
            c.send(NEVER)
            r = c.read_response(DEADLINE + SLACK)
            self.assertProblem(r, 504, "echo.timeout")
            self.assertFalse(r.closes(), r)
            held = self.release()
            # the plugin still held the request; its end call came too late
            self.assertEqual(held, {"held": 1, "canceled": 1})
            # no second answer on the client's connection
            self.assertTrue(c.is_open(0.3))
            self.assertEqual(c.buf, b"", "a second answer was sent")
            c.send(OK)
            r = c.read_response()
            self.assertEqual(r.status, 200)

    def test_other_requests_are_not_blocked(self):
        conns = [self.d.raw_conn() for _ in range(5)]
        try:
            for c in conns:
                c.send(NEVER)
            t0 = time.monotonic()
            for _ in range(5):
                r = self.d.get("/t/echo/ok")
                self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, DEADLINE,
                            "pending handlers slowed other requests")
            for c in conns:
                r = c.read_response(DEADLINE + SLACK)
                self.assertProblem(r, 504, "echo.timeout")
        finally:
            for c in conns:
                c.close()
        self.assertEqual(self.release(), {"held": 5, "canceled": 5})

    def test_client_gone_before_deadline(self):
        for _ in range(3):
            with self.d.raw_conn() as c:
                c.send(NEVER)
                time.sleep(0.02)
        time.sleep(DEADLINE + 0.2)
        held = self.release()
        self.assertEqual(held["held"], 3, held)
        self.assertEqual(held["canceled"], 3, held)
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)

    def test_release_before_deadline_answers_normally(self):
        with self.d.raw_conn() as c:
            c.send(NEVER)
            time.sleep(0.05)
            self.assertEqual(self.release(), {"held": 1, "canceled": 0})
            r = c.read_response(2)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"released": True})
            # and the deadline does not fire later on this connection
            c.send(OK)
            self.assertEqual(c.read_response().status, 200)
            time.sleep(DEADLINE + 0.1)
            self.assertEqual(c.buf, b"")
            self.assertTrue(c.is_open(0.1))

    def test_deadline_while_client_pipelines(self):
        with self.d.raw_conn() as c:
            c.send(NEVER + OK + NEVER + OK)
            rs = c.read_responses(4, timeout=2 * DEADLINE + SLACK)
            self.assertEqual([r.status for r in rs], [504, 200, 504, 200], rs)
        self.assertEqual(self.release(), {"held": 2, "canceled": 2})


if __name__ == "__main__":
    harness.main()
