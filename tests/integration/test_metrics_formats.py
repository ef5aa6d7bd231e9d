"""/metrics formats and the series every scraper expects: `promtool check
metrics` on the Prometheus text format; OpenMetrics 1.0 text when the
scraper's Accept asks for it (counter families named without _total,
canonical le values, # EOF last), parsed by the Prometheus client's strict
OpenMetrics parser; bulkhead_build_info; process_* summed over master and
workers; the breaker failure rate as a 0-1 _ratio."""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, metric, parse_metrics, up_config  # noqa

OM_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
             "application/openmetrics-text;version=0.0.1;q=0.75,"
             "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Parses OpenMetrics text with prometheus_client (python3-prometheus-client),
# in a Debian python3 when the one running the suite lacks the module.
OM_PARSE = r"""
import sys
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse)
for fam in parse(sys.stdin.read()):
    for s in fam.samples:
        print("%s %s %s" % (fam.type, s.name, s.value))
"""


def promtool(text):
    exe = shutil.which("promtool")
    if exe is None:
        raise AssertionError("promtool missing: scripts/deps.sh installs "
                             "the prometheus package")
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    return p.returncode, p.stdout.decode()


def om_parse(text):
    for py in (sys.executable, "/usr/bin/python3"):
        p = subprocess.run([py, "-c", OM_PARSE], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        if b"No module named" in p.stderr:
            continue
        if p.returncode != 0:
            raise AssertionError("OpenMetrics parser refused the text: %s"
                                 % p.stderr.decode()[-800:])
        return [ln.split(" ") for ln in p.stdout.decode().splitlines()]
    raise AssertionError("prometheus_client missing: scripts/deps.sh "
                         "installs python3-prometheus-client")


class MetricsFormatsTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url, server={"workers": 2},
                         one={"retries": 0, "breaker_min_calls": 1000},
                         two={"retries": 0, "breaker_min_calls": 1000})

    def traffic(self):
        for _ in range(3):
            self.assertEqual(self.d.get("/t/up_one/get/mf/ok").status, 200)

    def test_prometheus_text_is_promtool_clean(self):
        self.traffic()
        r = self.d.admin("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), PROM_TYPE)
        text = r.body.decode()
        rc, out = promtool(text)
        self.assertEqual((rc, out), (0, ""), text[-2000:])
        self.assertNotIn("# EOF", text)

    def test_openmetrics_when_asked(self):
        self.traffic()
        r = self.d.admin("/metrics", headers={"Accept": OM_ACCEPT})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), OM_TYPE)
        text = r.body.decode()
        self.assertTrue(text.endswith("# EOF\n"), text[-200:])
        self.assertIn("# TYPE bulkhead_requests counter\n", text)
        self.assertIn("# TYPE process_cpu_seconds counter\n", text)
        self.assertNotIn("# TYPE bulkhead_requests_total ", text)
        self.assertIn('le="1.0"', text)
        samples = om_parse(text)
        names = {s[1] for s in samples}
        self.assertIn("bulkhead_requests_total", names)
        self.assertIn("bulkhead_build_info", names)
        for typ, name, _v in samples:
            if typ == "counter":
                self.assertTrue(name.endswith("_total"), name)
        # promtool reads the 0.0.4 text format only: in OpenMetrics text a
        # counter's samples (x_total) follow a family named x, which it
        # lints as samples without HELP. Anything else must be clean.
        rc, out = promtool(text)
        other = [ln for ln in out.splitlines()
                 if not (ln.endswith("_total no help text")
                         and "# HELP %s " % ln.split()[0][:-6] in text)]
        self.assertEqual(other, [], out)
        # a scraper that does not ask gets the classic format
        for accept in ("text/plain", "application/openmetrics-text;q=0", "*/*"):
            r = self.d.admin("/metrics", headers={"Accept": accept})
            self.assertEqual(r.headers.get("content-type"), PROM_TYPE, accept)

    def test_build_info_and_process_metrics(self):
        m = parse_metrics(self.d.admin("/metrics").body.decode())
        info = [(ls, v) for (n, ls), v in m["samples"].items()
                if n == "bulkhead_build_info"]
        self.assertEqual(len(info), 1, info)
        labels = dict(info[0][0])
        self.assertRegex(labels.get("version", ""), r"^\d+\.\d+\.\d+")
        self.assertRegex(labels.get("plugin_abi", ""), r"^\d+\.\d+$")
        self.assertEqual(info[0][1], 1)
        for name, typ in (("process_cpu_seconds_total", "counter"),
                          ("process_resident_memory_bytes", "gauge"),
                          ("process_open_fds", "gauge"),
                          ("process_max_fds", "gauge"),
                          ("process_start_time_seconds", "gauge")):
            with self.subTest(name=name):
                self.assertEqual(m["types"].get(name), typ)
                self.assertIn((name, frozenset()), m["samples"])
        rss = metric(m, "process_resident_memory_bytes")
        self.assertGreater(rss, 1 << 20)
        fds = metric(m, "process_open_fds")
        # master and two workers: each holds listeners, pipes, the log
        self.assertGreater(fds, 6)
        self.assertLess(fds, metric(m, "process_max_fds") * 3)
        start = metric(m, "process_start_time_seconds")
        self.assertLessEqual(start, time.time() + 1)
        self.assertGreater(start, time.time() - 3600)

    def test_breaker_failure_ratio(self):
        # up_two serves this test only: 3 answers and 1 failure in its window
        for _ in range(3):
            self.assertEqual(self.d.get("/t/up_two/get/mf/ok").status, 200)
        self.sim2.set_behavior(path="/mf/bad", status=500)
        self.assertEqual(self.d.get("/t/up_two/get/mf/bad").status, 502)
        m = parse_metrics(self.d.admin("/metrics").body.decode())
        self.assertEqual(m["types"].get("bulkhead_breaker_failure_ratio"),
                         "gauge")
        self.assertNotIn("bulkhead_breaker_failure_rate", m["types"])
        self.assertAlmostEqual(metric(m, "bulkhead_breaker_failure_ratio",
                                      upstream="up_two"), 0.25, places=6)
        self.assertEqual(metric(m, "bulkhead_breaker_failure_ratio",
                                upstream="up_one"), 0)


if __name__ == "__main__":
    harness.main()
