"""Shared fixtures for the upstream / resilience integration tests
(test_blast_radius, test_retry, test_breaker_admin, test_rate_limit,
test_proxy, test_metrics). Standard library only.

- two simulators, one per test plugin upstream (up_one, up_two), so hit
  counts are independent;
- config builders for the up_one / up_two test plugins
  (tests/plugins/upstream_plugin.inc) and their [upstream.NAME] sections;
- closed_port(): a loopback port that refuses connections;
- Background: a thread that keeps calling the healthy plugin's routes while
  a test faults the other one, and checks they all answered 200;
- admin helpers: upstream_status(), set_breaker();
- parse_metrics() / metric(): the Prometheus text of /metrics.
"""

import os
import re
import socket
import threading
import time

import harness
from harness import SANITIZE, test_plugin
from sim_client import Sim



def _find_sim():
    if os.environ.get("BULKHEAD_SIM_BIN"):
        return os.environ["BULKHEAD_SIM_BIN"]
    for rel in (("bulkhead-sim",), ("tests", "bulkhead-sim")):
        p = os.path.join(harness.BUILD_DIR, *rel)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(harness.BUILD_DIR, "bulkhead-sim")


SIM_BIN = _find_sim()

# "Fails fast": an answer that needed no upstream at all. Generous enough
# for the ASan build, far below every upstream timeout the tests configure.
FAST = 0.4 if SANITIZE else 0.2


def start_sim(**kw):
    """A simulator process (stop() it, or use it as a context manager)."""
    return Sim(binary=SIM_BIN, **kw)


def closed_port():
    """A loopback port that was bound and closed: connecting is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def plugin_section(name, **keys):
    sec = {"path": test_plugin(name), "mount": "/t/" + name}
    sec.update(keys)
    return sec


def up_config(one_url, two_url, one=None, two=None, plugin_one=None,
              plugin_two=None, server=None, extra=None):
    """Config dict for a daemon serving up_one and up_two. `one`/`two` are
    [upstream.up_one] / [upstream.up_two] keys, plugin_* the plugin
    sections' own keys (route_timeout_ms, ok_rate_limit), extra more
    sections ([rate_limit.NAME] ...)."""
    cfg = {}
    if server:
        cfg["server"] = dict(server)
    cfg["plugin.up_one"] = plugin_section("up_one", **(plugin_one or {}))
    cfg["plugin.up_two"] = plugin_section("up_two", **(plugin_two or {}))
    u1 = {"url": one_url}
    u1.update(one or {})
    u2 = {"url": two_url}
    u2.update(two or {})
    cfg["upstream.up_one"] = u1
    cfg["upstream.up_two"] = u2
    for k, v in (extra or {}).items():
        cfg[k] = v
    return cfg


class TwoSimsCase(harness.DaemonTestCase):
    """A daemon shared by the class, configured by make_config(one_url,
    two_url) against two simulators of its own (start_sims() may place
    them). Both simulators are reset before each test unless RESET_SIMS
    is false; they stop with the class."""

    RESET_SIMS = True

    @classmethod
    def start_sims(cls):
        return start_sim(), start_sim()

    @classmethod
    def make_config(cls, one_url, two_url):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.sim1, cls.sim2 = cls.start_sims()
        cls.CONFIG = cls.make_config(cls.sim1.url, cls.sim2.url)
        try:
            super().setUpClass()
        except Exception:
            cls.sim1.stop()
            cls.sim2.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sim1.stop()
            cls.sim2.stop()

    def setUp(self):
        super().setUp()
        if self.RESET_SIMS:
            self.sim1.reset()
            self.sim2.reset()


# --------------------------------------------------------------------------
# Admin
# --------------------------------------------------------------------------

def upstream_status(d, name):
    """The /admin/status "upstreams" entry of one upstream."""
    r = d.admin("/admin/status")
    if r.status != 200:
        raise AssertionError("/admin/status answered %r" % r)
    for u in r.json().get("upstreams", []):
        if u.get("name") == name:
            return u
    raise AssertionError("upstream %s not in /admin/status: %r" % (name, r))


def breaker_state(d, name):
    return upstream_status(d, name)["breaker"]["state"]


def set_breaker(d, name, state, headers=None):
    """POST /admin/upstreams/NAME/breaker {"state": state}."""
    return d.admin("/admin/upstreams/%s/breaker" % name, method="POST",
                   body={"state": state}, headers=headers)


def timed_get(d, path, **kw):
    t0 = time.monotonic()
    r = d.get(path, **kw)
    return r, time.monotonic() - t0


def wait_for(pred, timeout=3.0, step=0.02):
    """Polls pred() until it is true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


# --------------------------------------------------------------------------
# Background load on the healthy compartment
# --------------------------------------------------------------------------

class Background(object):
    """Calls `paths` round robin on a fresh connection each, until stop().
    Every answer is kept as (path, status, code, seconds, error)."""

    def __init__(self, d, paths, pause=0.01, timeout=5.0):
        self.d = d
        self.paths = list(paths)
        self.pause = pause
        self.timeout = timeout
        self.results = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            t0 = time.monotonic()
            try:
                r = self.d.get(path, timeout=self.timeout)
                code = None
                if r.status != 200:
                    try:
                        code = r.code
                    except ValueError:
                        code = r.body[:200]
                self.results.append((path, r.status, code,
                                     time.monotonic() - t0, None))
            except Exception as e:  # noqa: BLE001 - reported by check()
                self.results.append((path, None, None,
                                     time.monotonic() - t0, repr(e)))
            self._stop.wait(self.pause)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(self.timeout + 5)
        return self.results

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def count(self, path):
        return sum(1 for p, st, _, _, _ in self.results
                   if p == path and st == 200)

    def check(self, tc, min_each=2, max_seconds=None):
        """Every request answered 200 without a transport error; each path
        was called at least min_each times (waiting up to 5 s for that)."""
        wait_for(lambda: all(sum(1 for x in self.results if x[0] == p) >=
                             min_each for p in self.paths), timeout=5.0)
        self.stop()
        bad = [x for x in self.results if x[1] != 200 or x[4]]
        tc.assertFalse(bad, "healthy plugin's routes failed while the other "
                       "one was faulted: %r" % bad[:10])
        for p in self.paths:
            n = sum(1 for x in self.results if x[0] == p)
            tc.assertGreaterEqual(n, min_each,
                                  "background made too few calls to %s" % p)
        if max_seconds is not None and self.results:
            slowest = max(x[3] for x in self.results)
            tc.assertLess(slowest, max_seconds,
                          "a healthy route took %.2fs while the other "
                          "plugin was faulted" % slowest)


# --------------------------------------------------------------------------
# Prometheus text
# --------------------------------------------------------------------------

_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _parse_labels(text):
    out = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ValueError("bad label set %r" % text)
        val = (m.group(2).replace('\\"', '"').replace("\\n", "\n")
               .replace("\\\\", "\\"))
        out[m.group(1)] = val
        pos = m.end()
    return out


def parse_metrics(text):
    """{"samples": {(name, frozenset(labels.items())): value},
        "types": {family: type}, "help": {family: text}}. Raises
    ValueError on a line that is not valid exposition text."""
    samples, types, helps = {}, {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4:
                raise ValueError("bad TYPE line %r" % line)
            types[parts[2]] = parts[3]
            continue
        if line.startswith("# HELP "):
            parts = line.split(None, 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("bad sample line %r" % line)
        labels = _parse_labels(m.group(3) or "")
        key = (m.group(1), frozenset(labels.items()))
        if key in samples:
            raise ValueError("duplicate series %r" % line)
        samples[key] = float(m.group(4))
    return {"samples": samples, "types": types, "help": helps}


def scrape(d):
    r = d.admin("/metrics")
    if r.status != 200:
        raise AssertionError("/metrics answered %r" % r)
    return parse_metrics(r.body.decode("utf-8"))


def metric(m, name, **labels):
    """Value of the series with exactly these labels (0 when absent)."""
    return m["samples"].get((name, frozenset(labels.items())), 0.0)


def metric_sum(m, name, **labels):
    """Sum over the series whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m["samples"].items()
               if n == name and want <= set(ls))
