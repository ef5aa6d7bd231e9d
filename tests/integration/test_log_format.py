"""Access-log fields and [server] log_format = bulkhead | ecs | otel: each
line is one JSON object with the client address, user agent, request and
response body bytes, the upstream's name, status, time and retries, the
authenticated principal's id (never a token) and the trace id, under our
names, Elastic Common Schema names or OpenTelemetry semantic-convention
names."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import ACCOUNTS, auth_config, bearer, login, start_sim  # noqa
from upstream_env import TwoSimsCase, up_config  # noqa: E402

TRACE = "0af7651916cd43dd8448eb211c80319c"
TP = "00-%s-b7ad6b7169203331-01" % TRACE

# format -> (time, level, event, request id, field names)
KEYS = {
    "bulkhead": ("time", "level", "event", "requestId", {
        "client": "clientAddr", "ua": "userAgent", "req": "requestBytes",
        "resp": "responseBytes", "status": "status", "method": "method",
        "upstream": "upstream", "up_status": "upstreamStatus",
        "up_us": "upstreamUs", "retries": "retries", "trace": "traceId",
        "span": "spanId", "user": "principal", "path": "path"}),
    "ecs": ("@timestamp", "log.level", "event.action", "http.request.id", {
        "client": "client.ip", "ua": "user_agent.original",
        "req": "http.request.body.bytes", "resp": "http.response.body.bytes",
        "status": "http.response.status_code",
        "method": "http.request.method",
        "upstream": "bulkhead.upstream.name",
        "up_status": "bulkhead.upstream.status_code",
        "up_us": "bulkhead.upstream.duration_us",
        "retries": "bulkhead.upstream.retries", "trace": "trace.id",
        "span": "span.id", "user": "user.id", "path": "url.path"}),
    "otel": ("timestamp", "severity_text", "event.name",
             "bulkhead.request_id", {
                 "client": "client.address", "ua": "user_agent.original",
                 "req": "http.request.body.size",
                 "resp": "http.response.body.size",
                 "status": "http.response.status_code",
                 "method": "http.request.method",
                 "upstream": "bulkhead.upstream.name",
                 "up_status": "bulkhead.upstream.status_code",
                 "up_us": "bulkhead.upstream.duration_us",
                 "retries": "bulkhead.upstream.retries", "trace": "trace_id",
                 "span": "span_id", "user": "user.id", "path": "url.path"}),
}


def access_lines(d, fmt, rid):
    """Raw stdout lines parsed as JSON (every one must parse) whose request
    id is rid, waiting for the first."""
    t, lv, ev, rk, _ = KEYS[fmt]
    got = d.wait_event(lambda e: e.get(ev) == "request" and e.get(rk) == rid)
    if got is None:
        raise AssertionError("no access line for %s%s" % (rid, d.diag()))
    out = []
    with d._lines_lock:
        lines = list(d.lines)
    for line in lines:
        if not line.startswith("{"):
            continue
        e = json.loads(line)  # every line is one JSON object
        if e.get(ev) == "request" and e.get(rk) == rid:
            out.append(e)
    for e in out:
        for k in (t, lv):
            assert k in e, (k, e)
    return out


class _UpstreamFields(TwoSimsCase):
    FORMAT = "bulkhead"

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url,
                         server={"log_format": cls.FORMAT},
                         one={"retries": 2, "retry_base_ms": 5,
                              "retry_cap_ms": 10,
                              "retry_budget_percent": 100,
                              "retry_budget_min": 1000,
                              "breaker_min_calls": 1000})

    def test_fields(self):
        f = KEYS[self.FORMAT][4]
        rid = "lf-%s-1" % self.FORMAT
        body = b'{"hello":"world"}'
        r = self.d.post("/t/up_one/post/lf/ok", body=body, headers={
            "X-Request-ID": rid, "User-Agent": "lf-agent/2.0",
            "Content-Type": "application/json", "traceparent": TP})
        self.assertEqual(r.status, 200, r)
        lines = access_lines(self.d, self.FORMAT, rid)
        self.assertEqual(len(lines), 1, lines)
        e = lines[0]
        self.assertEqual(e[f["client"]], "127.0.0.1")
        self.assertEqual(e[f["ua"]], "lf-agent/2.0")
        self.assertEqual(e[f["req"]], len(body))
        self.assertEqual(e[f["resp"]], len(r.body))
        self.assertEqual(e[f["status"]], 200)
        self.assertEqual(e[f["method"]], "POST")
        self.assertEqual(e[f["path"]], "/t/up_one/post/lf/ok")
        self.assertEqual(e[f["upstream"]], "up_one")
        self.assertEqual(e[f["up_status"]], 200)
        self.assertIsInstance(e[f["up_us"]], int)
        self.assertGreater(e[f["up_us"]], 0)
        self.assertEqual(e[f["retries"]], 0)
        self.assertEqual(e[f["trace"]], TRACE)
        self.assertRegex(e[f["span"]], r"^[0-9a-f]{16}$")

    def test_retries_and_upstream_status(self):
        f = KEYS[self.FORMAT][4]
        rid = "lf-%s-2" % self.FORMAT
        self.sim1.set_behavior(path="/lf/fail", status=503)
        r = self.d.get("/t/up_one/get/lf/fail", headers={"X-Request-ID": rid})
        self.assertEqual(r.status, 503, r)
        e = access_lines(self.d, self.FORMAT, rid)[0]
        self.assertEqual(e[f["upstream"]], "up_one")
        self.assertEqual(e[f["up_status"]], 503)
        self.assertEqual(e[f["retries"]], 2)
        self.assertEqual(self.sim1.count("/lf/fail"), 3)

    def test_no_upstream_no_upstream_fields(self):
        f = KEYS[self.FORMAT][4]
        rid = "lf-%s-3" % self.FORMAT
        r = self.d.get("/t/up_one/ok", headers={"X-Request-ID": rid})
        self.assertEqual(r.status, 200, r)
        e = access_lines(self.d, self.FORMAT, rid)[0]
        self.assertNotIn(f["upstream"], e)
        self.assertNotIn(f["user"], e)


class BulkheadFieldsTest(_UpstreamFields):
    FORMAT = "bulkhead"


class EcsFieldsTest(_UpstreamFields):
    FORMAT = "ecs"


class OtelFieldsTest(_UpstreamFields):
    FORMAT = "otel"


class _PrincipalNoToken(harness.DaemonTestCase):
    FORMAT = "ecs"

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        cls.CONFIG = auth_config(cls.sim.url,
                                 server={"log_format": cls.FORMAT})
        try:
            super().setUpClass()
        except Exception:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sim.stop()

    def test_principal_logged_token_never(self):
        f = KEYS[self.FORMAT][4]
        r = login(self.d, "alice")
        self.assertEqual(r.status, 200, r)
        token = r.json()["accessToken"]
        rid = "lf-%s-me" % self.FORMAT
        h = bearer(token)
        h["X-Request-ID"] = rid
        r = self.d.get("/t/whoami", headers=h)
        self.assertEqual(r.status, 200, r)
        e = access_lines(self.d, self.FORMAT, rid)[0]
        self.assertTrue(e.get(f["user"]), e)
        self.assertNotIn(token, json.dumps(e))
        with self.d._lines_lock:
            everything = "\n".join(self.d.lines)
        self.assertNotIn(token, everything)
        self.assertNotIn(ACCOUNTS["alice"][1], everything)


class EcsPrincipalTest(_PrincipalNoToken):
    FORMAT = "ecs"


class OtelPrincipalTest(_PrincipalNoToken):
    FORMAT = "otel"


class BulkheadPrincipalTest(_PrincipalNoToken):
    FORMAT = "bulkhead"


# the bases hold the tests; only their subclasses run them
del _UpstreamFields, _PrincipalNoToken

if __name__ == "__main__":
    harness.main()
