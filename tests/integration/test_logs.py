"""Logs: one JSON line per request; Authorization and Cookie values are never
logged; a log sink that fails (a pipe nobody reads, a reader that went away,
stdout not open at all) never blocks serving."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase, SLACK, echo_section  # noqa

SECRETS = ("SECRET-AUTH-7f3a9c", "SECRET-COOKIE-41b2e8",
           "SECRET-REFRESH-99d0aa", "SECRET-QUERY-5e5e5e")
OK = b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"


class AccessLogTest(DaemonTestCase):
    CONFIG = {"server": {"admin_token": "admin-token-for-log-tests"},
              "plugin.echo": echo_section()}

    def test_every_stdout_line_is_json(self):
        self.d.get("/t/echo/ok")
        self.d.wait_event(lambda e: e.get("event") == "request")
        for line in list(self.d.lines):
            doc = json.loads(line)
            self.assertIsInstance(doc, dict, line)
            self.assertIn("time", doc, line)
            self.assertIn(doc.get("level"), ("debug", "info", "warn",
                                             "error"), line)
            self.assertIsInstance(doc.get("event"), str, line)

    def test_refused_request_id_is_replaced_and_logged(self):
        # too long, and outside [A-Za-z0-9-_.:]: replaced by a fresh id,
        # and a warn line shows the refused one truncated and escaped
        for sent, shown in (("a" * 65, "a" * 64),
                            ("bad id\"<x>" + "z" * 100,
                             ("bad id\"<x>" + "z" * 100)[:64])):
            with self.subTest(sent=sent[:12]):
                r = self.d.get("/t/echo/ok", headers={"X-Request-ID": sent})
                self.assertEqual(r.status, 200, r)
                rid = r.headers["x-request-id"]
                self.assertNotEqual(rid, sent)
                self.assertRegex(rid, r"^[0-9A-Z]{26}$")
                ev = self.d.wait_event(
                    lambda e: e.get("event") == "request_id_replaced" and
                    e.get("requestId") == rid)
                self.assertIsNotNone(ev, "no request_id_replaced line")
                self.assertEqual(ev["level"], "warn")
                self.assertEqual(ev["refused"], shown)
                self.assertEqual(ev["refusedLength"], len(sent))
        # a control byte (tab) is escaped, never written raw
        r = self.d.get("/t/echo/ok", headers={"X-Request-ID": "t\tab"})
        rid = r.headers["x-request-id"]
        ev = self.d.wait_event(lambda e: e.get("requestId") == rid and
                               e.get("event") == "request_id_replaced")
        self.assertEqual(ev["refused"], "t\\x09ab")
        # a good id is kept and not logged as replaced
        r = self.d.get("/t/echo/ok", headers={"X-Request-ID": "ok-id_1.2:3"})
        self.assertEqual(r.headers["x-request-id"], "ok-id_1.2:3")
        self.assertFalse([e for e in self.d.events("request_id_replaced")
                          if e.get("requestId") == "ok-id_1.2:3"])

    def test_one_line_per_request(self):
        cases = [("GET", "/t/echo/ok", 200, None),
                 ("GET", "/t/echo/nope", 404, "route.not_found"),
                 ("POST", "/t/echo/ok", 405, "route.method_not_allowed"),
                 ("GET", "/t/echo/params/a/b?x=1", 200, None),
                 ("POST", "/t/echo/validate", 400, "request.invalid_body")]
        for i, (method, path, status, code) in enumerate(cases):
            rid = "log-one-%d" % i
            body = "{}" if method == "POST" else None
            r = self.d.request(method, path, body=body,
                               headers={"X-Request-ID": rid,
                                        "Content-Type": "application/json"})
            self.assertEqual(r.status, status)
        for i, (method, path, status, code) in enumerate(cases):
            with self.subTest(path=path):
                logs = self.d.request_log("log-one-%d" % i)
                self.assertEqual(len(logs), 1, logs)
                ev = logs[0]
                self.assertEqual(ev["method"], method)
                self.assertEqual(ev["path"], path.split("?")[0])
                self.assertEqual(ev["status"], status)
                self.assertEqual(ev.get("code"), code)
                self.assertEqual(ev.get("plugin"), "echo")
                self.assertIsInstance(ev.get("durationUs"), int)
                self.assertEqual(ev["level"], "info")

    def test_pipelined_requests_each_get_a_line(self):
        batch = b"".join(
            b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\nX-Request-ID: pl-%d\r\n"
            b"\r\n" % i for i in range(10))
        with self.d.raw_conn() as c:
            c.send(batch)
            self.assertEqual(len(c.read_responses(10)), 10)
        for i in range(10):
            self.assertEqual(len(self.d.request_log("pl-%d" % i)), 1)

    def test_refused_requests_are_logged_too(self):
        with self.d.raw_conn() as c:
            c.send(b"GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n"
                   b"X-Request-ID: refused-1\r\nContent-Length: 1\r\n"
                   b"Content-Length: 2\r\n\r\nab")
            r = c.read_response()
        self.assertEqual(r.status, 400)
        rid = r.headers["x-request-id"]
        logs = self.d.request_log(rid)
        self.assertEqual(len(logs), 1, self.diag())
        self.assertEqual(logs[0]["status"], 400)
        self.assertEqual(logs[0]["code"], "request.bad_request")

    def test_credentials_are_never_logged(self):
        auth, cookie, refresh, query = SECRETS
        hdrs = {"Authorization": "Bearer " + auth,
                "Cookie": "__session=%s; __refresh=%s" % (cookie, refresh),
                "X-Request-ID": "cred-1"}
        self.d.get("/t/echo/ok", headers=hdrs)
        self.d.get("/t/echo/nope?token=" + query, headers=hdrs)
        self.d.post("/t/echo/validate", body="{}",
                    headers=dict(hdrs, **{"Content-Type":
                                          "application/json"}))
        self.d.get("/t/echo/never", headers=hdrs)  # handler_timeout line
        self.d.admin("/admin/status", headers=hdrs)  # 401, wrong token
        # a request refused by the parser after its credential headers
        self.d.raw(("GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n"
                    "Authorization: Bearer %s\r\nCookie: __session=%s\r\n"
                    "X-Bad: a\r\n b\r\n\r\n" % (auth, cookie)).encode(),
                   expect=1, close_wait=0)
        # a request cut by the header timeout would log too; and one whose
        # head is too large
        self.d.raw(("GET /t/echo/ok HTTP/1.1\r\nHost: t\r\n"
                    "Authorization: Bearer %s\r\nX-Big: %s\r\n\r\n" %
                    (auth, "a" * 20000)).encode(), expect=1, close_wait=0)
        self.d.post("/t/echo/never/release")
        self.d.wait_event(lambda e: e.get("event") == "request" and
                          e.get("path") == "/t/echo/never/release")
        time.sleep(0.1)
        text = "\n".join(self.d.lines) + self.d.stderr
        for secret in SECRETS:
            self.assertNotIn(secret, text)
        self.assertGreaterEqual(len(self.d.request_log("cred-1")), 4)


class SinkTest(unittest.TestCase):
    """Each daemon here has a stdout that fails; serving must go on."""

    N = 4800  # past the log ring (4096 lines) and the pipe
    # all N on one connection: past the default keepalive_requests
    SERVER = {"keepalive_requests": 100000}

    def hammer(self, d):
        t0 = time.monotonic()
        with d.raw_conn(timeout=30) as c:
            sent = 0
            got = 0
            batch = 200
            while sent < self.N:
                c.send(OK * batch)
                sent += batch
                rs = c.read_responses(batch, timeout=20)
                got += len(rs)
                self.assertTrue(all(r.status == 200 for r in rs))
        elapsed = time.monotonic() - t0
        self.assertEqual(got, self.N)
        return elapsed

    def check_serving(self, d, expect_drops=True):
        elapsed = self.hammer(d)
        self.assertLess(elapsed, 15 + (15 if harness.SANITIZE else 0))
        # a fresh connection and the admin API still answer at once
        t0 = time.monotonic()
        self.assertEqual(d.get("/t/echo/ok").status, 200)
        st = d.admin("/admin/status")
        self.assertEqual(st.status, 200)
        self.assertLess(time.monotonic() - t0, SLACK)
        doc = st.json()
        self.assertGreaterEqual(doc["requestsTotal"], self.N)
        if expect_drops:
            self.assertGreater(doc["logLinesDropped"], 0, doc)

    def test_pipe_nobody_reads(self):
        d = Daemon({"server": self.SERVER, "plugin.echo": echo_section()},
                   stdout="unread",
                   pipe_size=4096)
        with d:
            self.check_serving(d)

    def test_reader_went_away(self):
        d = Daemon({"server": self.SERVER, "plugin.echo": echo_section()},
                   stdout="closed")
        with d:
            self.check_serving(d)

    def test_stdout_not_open(self):
        d = Daemon({"server": self.SERVER, "plugin.echo": echo_section()},
                   stdout="fd-closed")
        with d:
            self.check_serving(d, expect_drops=False)
            self.assertEqual(d.get("/t/echo/nope").status, 404)


if __name__ == "__main__":
    harness.main()
