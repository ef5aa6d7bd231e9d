"""W3C Trace Context: a valid client traceparent is continued (same trace
id, the gateway's own span as the parent-id upstream, tracestate passed
on); an absent or malformed one starts a new trace (and its tracestate is
dropped). Every upstream call carries exactly one traceparent: proxy
routes and plugin calls, on the core's HTTP/1.1 client and on libcurl.
The trace and span ids are in the access-log line and in every Problem
beside requestId."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, up_config  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
GOOD = "00-%s-%s-01" % (TRACE, PARENT)
TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

MALFORMED = [
    "00-%s-%s-01" % (TRACE.upper(), PARENT),        # uppercase hex
    "00-%s-%s-01" % ("0" * 32, PARENT),             # all-zero trace id
    "00-%s-%s-01" % (TRACE, "0" * 16),              # all-zero parent id
    "ff-%s-%s-01" % (TRACE, PARENT),                # version ff
    "00-%s-%s-01-extra" % (TRACE, PARENT),          # 00 with more fields
    "00-%s-%s" % (TRACE, PARENT),                   # no flags
    "00_%s_%s_01" % (TRACE, PARENT),                # wrong separators
    "garbage",
]


def rec_headers(rec):
    out = {}
    for k, v in rec["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


class TraceContextTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url,
                         one={"retries": 0, "breaker_min_calls": 1000})

    def upstream_tp(self, path):
        # a plugin call goes to what follows /get/; a proxy route as it came
        if path.startswith("/t/up_one/get/"):
            path = path[len("/t/up_one/get"):]
        reqs = self.sim1.requests(path)
        self.assertEqual(len(reqs), 1, reqs)
        h = rec_headers(reqs[0])
        tps = h.get("traceparent", [])
        self.assertEqual(len(tps), 1, "one traceparent upstream: %r" % h)
        m = TP_RE.match(tps[0])
        self.assertIsNotNone(m, tps[0])
        return m.groups(), h

    def access_line(self, rid):
        logs = self.d.request_log(rid)
        self.assertEqual(len(logs), 1, logs)
        return logs[0]

    def check_continued(self, path):
        r = self.d.get(path, headers={"traceparent": GOOD,
                                      "tracestate": "vendor=abc,other=x:1",
                                      "X-Request-ID": "tc-" + path[-6:]})
        self.assertEqual(r.status, 200, r)
        (trace, parent, flags), h = self.upstream_tp(path)
        self.assertEqual(trace, TRACE)
        self.assertNotEqual(parent, PARENT, "our span is the parent upstream")
        self.assertEqual(flags, "01")
        self.assertEqual(h.get("tracestate"), ["vendor=abc,other=x:1"])
        ev = self.access_line("tc-" + path[-6:])
        self.assertEqual(ev["traceId"], TRACE)
        self.assertEqual(ev["spanId"], parent)

    def check_new_trace(self, path, sent):
        r = self.d.get(path, headers={"traceparent": sent,
                                      "tracestate": "vendor=abc"})
        self.assertEqual(r.status, 200, r)
        (trace, parent, flags), h = self.upstream_tp(path)
        self.assertNotEqual(trace, TRACE, sent)
        self.assertNotEqual(trace, "0" * 32)
        self.assertEqual(flags, "00")
        self.assertNotIn("tracestate", h, "a tracestate without its "
                         "traceparent is dropped")
        return trace

    def test_proxy_continues_valid_trace(self):
        self.check_continued("/t/up_one/proxy/tc/pxok01")

    def test_plugin_call_continues_valid_trace(self):
        self.check_continued("/t/up_one/get/tc/plok01")

    def test_plugin_call_without_traceparent_starts_a_trace(self):
        path = "/t/up_one/get/tc/none"
        r = self.d.get(path, headers={"X-Request-ID": "tc-none-1"})
        self.assertEqual(r.status, 200, r)
        (trace, parent, _), _h = self.upstream_tp(path)
        ev = self.access_line("tc-none-1")
        self.assertEqual(ev["traceId"], trace)
        self.assertEqual(ev["spanId"], parent)

    def test_malformed_traceparent_starts_a_new_trace(self):
        seen = set()
        for i, bad in enumerate(MALFORMED):
            for kind in ("proxy", "get"):
                with self.subTest(bad=bad, kind=kind):
                    path = "/t/up_one/%s/tc/bad%d" % (kind, i)
                    seen.add(self.check_new_trace(path, bad))
        self.assertEqual(len(seen), 2 * len(MALFORMED), "fresh ids")

    def test_later_version_is_read_as_00(self):
        path = "/t/up_one/proxy/tc/v01"
        sent = "01-%s-%s-01-what-comes-later" % (TRACE, PARENT)
        r = self.d.get(path, headers={"traceparent": sent})
        self.assertEqual(r.status, 200, r)
        (trace, _parent, _flags), _h = self.upstream_tp(path)
        self.assertEqual(trace, TRACE)

    def test_problem_carries_trace_and_span(self):
        r = self.d.get("/t/no/such/route",
                       headers={"traceparent": GOOD, "X-Request-ID": "tc-pb"})
        self.assertEqual(r.status, 404, r)
        ext = r.json()["extensions"]
        self.assertEqual(ext["requestId"], "tc-pb")
        self.assertEqual(ext["traceId"], TRACE)
        self.assertRegex(ext["spanId"], r"^[0-9a-f]{16}$")
        self.assertNotEqual(ext["spanId"], PARENT)
        ev = self.access_line("tc-pb")
        self.assertEqual(ev["traceId"], TRACE)
        self.assertEqual(ev["spanId"], ext["spanId"])

    def test_upstream_problem_carries_trace(self):
        path = "/t/up_one/get/tc/fail"
        self.sim1.set_behavior(path="/tc/fail", status=500)
        r = self.d.get(path, headers={"traceparent": GOOD})
        self.assertEqual(r.status, 502, r)
        ext = r.json()["extensions"]
        self.assertEqual(ext["traceId"], TRACE)
        (_trace, parent, _f), _h = self.upstream_tp(path)
        self.assertEqual(ext["spanId"], parent)


def over_curl(cfg):
    for name, sec in cfg.items():
        if name.startswith("upstream."):
            sec["transport"] = "curl"
    return cfg


class TraceContextOverCurlTest(TraceContextTest):
    @classmethod
    def make_config(cls, one_url, two_url):
        return over_curl(super().make_config(one_url, two_url))


if __name__ == "__main__":
    harness.main()
