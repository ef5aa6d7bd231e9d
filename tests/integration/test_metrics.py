"""/metrics on the admin listener: Prometheus text (format 0.0.4) whose
upstream, retry, breaker and rate-limit series move exactly with what the
tests do: bulkhead_upstream_calls_total{upstream,outcome},
bulkhead_upstream_retries_total{upstream}, bulkhead_breaker_state{upstream,
state}, bulkhead_rate_limited_total{policy}, bulkhead_requests_total{plugin,
route,status,code}. Label values come only from what the daemon declared,
never from the request."""

import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import (TwoSimsCase, metric, metric_sum,  # noqa: E402
                          parse_metrics, scrape, set_breaker, up_config)

FAMILIES = {
    "bulkhead_requests_total": "counter",
    "bulkhead_upstream_calls_total": "counter",
    "bulkhead_upstream_retries_total": "counter",
    "bulkhead_upstream_attempts_total": "counter",
    "bulkhead_breaker_state": "gauge",
    "bulkhead_rate_limited_total": "counter",
}
GET_ROUTE = "/t/up_one/get/*"


class MetricsTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(
            one_url, two_url,
            one={"timeout_ms": 400, "retries": 1, "retry_base_ms": 5,
                 "retry_cap_ms": 10, "retry_budget_percent": 100,
                 "retry_budget_min": 1000, "breaker_min_calls": 1000},
            two={"timeout_ms": 400, "retries": 0,
                 "breaker_min_calls": 1000},
            plugin_one={"ok_rate_limit": "metered", "route_timeout_ms": 3000},
            extra={"rate_limit.metered": {"quota": 1, "window_s": 60,
                                          "burst": 2}})

    def delta(self, before, after, name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    def test_exposition_format(self):
        r = self.d.admin("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"),
                         "text/plain; version=0.0.4; charset=utf-8")
        text = r.body.decode("utf-8")
        self.assertTrue(text.endswith("\n"))
        m = parse_metrics(text)  # every line parses, no duplicate series
        for fam, typ in FAMILIES.items():
            with self.subTest(family=fam):
                self.assertEqual(m["types"].get(fam), typ)
                self.assertTrue(m["help"].get(fam), "no HELP for " + fam)
        for (name, _), v in m["samples"].items():
            if name.endswith("_total"):
                self.assertGreaterEqual(v, 0, name)
        # HEAD and GET only
        r = self.d.admin("/metrics", method="POST")
        self.assertProblem(r, 405, "route.method_not_allowed")

    def test_upstream_calls_by_outcome_and_retries(self):
        self.sim1.set_behavior(path="/m/500", status=500)
        self.sim1.set_behavior(path="/m/once", status=503, times=1)
        self.sim2.set_behavior(path="/m/reset", action="reset")
        self.sim2.set_behavior(path="/m/slow", delay_ms=3000)
        m0 = scrape(self.d)
        for _ in range(3):
            self.assertEqual(self.d.get("/t/up_one/get/m/ok").status, 200)
        self.assertEqual(self.d.get("/t/up_one/get/m/500").status, 502)
        r = self.d.get("/t/up_one/get/m/once")
        self.assertEqual((r.status, r.headers.get("x-upstream-attempts")),
                         (200, "2"), r)
        self.assertEqual(self.d.get("/t/up_two/get/m/reset").status, 503)
        self.assertEqual(self.d.get("/t/up_two/get/m/slow").status, 504)
        m1 = scrape(self.d)
        calls = "bulkhead_upstream_calls_total"
        self.assertEqual(self.delta(m0, m1, calls, upstream="up_one",
                                    outcome="http_2xx"), 4)
        self.assertEqual(self.delta(m0, m1, calls, upstream="up_one",
                                    outcome="http_5xx"), 1)
        self.assertEqual(self.delta(m0, m1, calls, upstream="up_two",
                                    outcome="reset"), 1)
        self.assertEqual(self.delta(m0, m1, calls, upstream="up_two",
                                    outcome="timeout"), 1)
        self.assertEqual(metric_sum(m1, calls) - metric_sum(m0, calls), 7)
        self.assertEqual(self.delta(m0, m1, "bulkhead_upstream_retries_total",
                                    upstream="up_one"), 1)
        self.assertEqual(self.delta(m0, m1, "bulkhead_upstream_retries_total",
                                    upstream="up_two"), 0)
        self.assertEqual(self.delta(m0, m1, "bulkhead_upstream_attempts_total",
                                    upstream="up_one"), 6)
        self.assertEqual(self.sim1.stats()["total"], 6)

    def test_breaker_state_and_breaker_open_calls(self):
        def states(m, name):
            return {s: metric(m, "bulkhead_breaker_state", upstream=name,
                              state=s)
                    for s in ("closed", "open", "half_open")}
        m0 = scrape(self.d)
        for name in ("up_one", "up_two"):
            self.assertEqual(states(m0, name),
                             {"closed": 1, "open": 0, "half_open": 0})
        try:
            self.assertEqual(set_breaker(self.d, "up_one",
                                         "forced_open").status, 200)
            for _ in range(2):
                r = self.d.get("/t/up_one/get/m/bo")
                self.assertProblem(r, 503, "up_one.unavailable")
            m1 = scrape(self.d)
            self.assertEqual(states(m1, "up_one"),
                             {"closed": 0, "open": 1, "half_open": 0})
            self.assertEqual(states(m1, "up_two"),
                             {"closed": 1, "open": 0, "half_open": 0})
            self.assertEqual(self.delta(m0, m1,
                                        "bulkhead_upstream_calls_total",
                                        upstream="up_one",
                                        outcome="breaker_open"), 2)
            self.assertEqual(self.delta(m0, m1,
                                        "bulkhead_upstream_attempts_total",
                                        upstream="up_one"), 0)
            self.assertGreaterEqual(
                self.delta(m0, m1, "bulkhead_breaker_transitions_total",
                           upstream="up_one"), 1)
            self.assertEqual(
                self.delta(m0, m1, "bulkhead_requests_total",
                           plugin="up_one", route=GET_ROUTE, status="503",
                           code="up_one.unavailable"), 2)
        finally:
            set_breaker(self.d, "up_one", "closed")
        m2 = scrape(self.d)
        self.assertEqual(states(m2, "up_one"),
                         {"closed": 1, "open": 0, "half_open": 0})

    def test_rate_limited_total(self):
        m0 = scrape(self.d)
        statuses = [self.d.get("/t/up_one/ok").status for _ in range(5)]
        self.assertEqual(statuses, [200, 200, 429, 429, 429])
        m1 = scrape(self.d)
        self.assertEqual(self.delta(m0, m1, "bulkhead_rate_limited_total",
                                    policy="metered"), 3)
        self.assertEqual(
            self.delta(m0, m1, "bulkhead_requests_total", plugin="up_one",
                       route="/t/up_one/ok", status="429",
                       code="rate_limit.exceeded"), 3)
        self.assertEqual(
            self.delta(m0, m1, "bulkhead_requests_total", plugin="up_one",
                       route="/t/up_one/ok", status="200", code=""), 2)

    def test_requests_total_labels_are_declared_values(self):
        token = uuid.uuid4().hex
        m0 = scrape(self.d)
        r = self.d.get("/t/up_two/get/%s?q=%s" % (token, token),
                       headers={"X-Request-ID": "rid-" + token,
                                "User-Agent": token})
        self.assertEqual(r.status, 200, r)
        self.sim2.set_behavior(path="/err-" + token, status=500)
        r = self.d.get("/t/up_two/get/err-" + token)
        self.assertProblem(r, 502, "up_two.failed")
        r = self.d.get("/t/up_two/nothing-" + token)
        self.assertEqual(r.status, 404, r)
        text = self.d.admin("/metrics").body.decode()
        self.assertNotIn(token, text, "a label value came from the request")
        m1 = parse_metrics(text)
        self.assertEqual(self.delta(m0, m1, "bulkhead_requests_total",
                                    plugin="up_two", route="/t/up_two/get/*",
                                    status="200", code=""), 1)
        self.assertEqual(self.delta(m0, m1, "bulkhead_requests_total",
                                    plugin="up_two", route="/t/up_two/get/*",
                                    status="502", code="up_two.failed"), 1)
        self.assertEqual(metric_sum(m1, "bulkhead_requests_total",
                                    status="404") -
                         metric_sum(m0, "bulkhead_requests_total",
                                    status="404"), 1)

    def test_counters_only_grow_between_scrapes(self):
        m0 = scrape(self.d)
        self.d.get("/t/up_one/get/m/grow")
        time.sleep(0.05)
        m1 = scrape(self.d)
        for (name, labels), v in m0["samples"].items():
            if m0["types"].get(name) == "counter":
                self.assertGreaterEqual(m1["samples"].get((name, labels), 0),
                                        v, (name, dict(labels)))


if __name__ == "__main__":
    harness.main()
