"""Cluster-wide rate limits: [rate_limit.NAME] backend = redis keeps the
buckets on one Redis server ([redis] url) that every instance shares, so a
limit of N per window across two daemons is N in total, not 2N (the local
backend, the control, gives each daemon its own N). The answers are the
local backend's: 429 rate_limit.exceeded with Retry-After equal to
retryAfterSeconds, RateLimit-Policy and RateLimit on every answer.

Redis is never allowed to fail or stall a request: stopped, the policy
falls back to the daemon's local buckets (no request fails; /admin/status,
/metrics and ONE log line say so), and it is shared again once the server
is back, without restarting bulkhead; a slow server (DEBUG SLEEP) costs a
request at most [redis] timeout_ms before the local buckets decide.

A private redis-server on a free loopback port (redis_server.py) serves
each class; nothing is mocked."""

import json
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, echo_section, run_tool  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from upstream_env import metric, scrape, wait_for  # noqa: E402

QUOTA = 5
POLICY = '"shared";q=1;w=60'  # quota 1 per minute, burst QUOTA
RL = re.compile(r'^"shared";r=(\d+);t=(\d+);pk=:[A-Za-z0-9+/]+=*:$')
PK = re.compile(r';pk=:[A-Za-z0-9+/]+=*:$')


def config(url, backend="redis", timeout_ms=250, workers=None, **redis):
    """The echo plugin's whole mount limited by one policy: QUOTA requests
    then one more per minute, per client address."""
    cfg = {"plugin.echo": echo_section(rate_limit="shared"),
           "rate_limit.shared": {"quota": 1, "window_s": 60,
                                 "burst": QUOTA, "key": "client",
                                 "backend": backend}}
    if workers is not None:
        cfg["server"] = {"workers": workers}
    if url is not None:
        r = {"url": url, "timeout_ms": timeout_ms,
             "reconnect_max_ms": 200}
        r.update(redis)
        cfg["redis"] = r
    return cfg


def status(d):
    return d.request("GET", "/admin/status", admin=True).json()


def events(d, name):
    return [e for e in d.events() if e.get("event") == name]


class _RedisCase(unittest.TestCase):
    def setUp(self):
        self.rs = RedisServer()
        self.addCleanup(self.rs.close)
        self.daemons = []

    def daemon(self, cfg, env=None):
        d = Daemon(cfg, env=env)
        self.daemons.append(d)
        self.addCleanup(d.stop)
        return d

    def until(self, pred, timeout):
        self.assertTrue(wait_for(pred, timeout), "not true within %ss" %
                        timeout)

    def assertAllowed(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(PK.sub("", r.headers.get("ratelimit-policy", "")),
                         POLICY, r)
        self.assertIsNotNone(RL.match(r.headers.get("ratelimit", "")), r)
        self.assertNotIn("retry-after", r.headers, r)

    def assertLimited(self, r):
        self.assertEqual(r.status, 429, r)
        doc = r.json()
        self.assertEqual(doc["extensions"]["code"], "rate_limit.exceeded", r)
        self.assertIs(doc["extensions"]["retryable"], True, r)
        self.assertEqual(r.header_count("Retry-After"), 1, r)
        ra = int(r.headers["retry-after"])
        self.assertEqual(doc["extensions"]["retryAfterSeconds"], ra, r)
        self.assertTrue(1 <= ra <= 60, r)
        self.assertEqual(PK.sub("", r.headers.get("ratelimit-policy", "")),
                         POLICY, r)
        m = RL.match(r.headers.get("ratelimit", ""))
        self.assertIsNotNone(m, r)
        self.assertEqual(int(m.group(1)), 0, r)

    def burst(self, daemons, rounds):
        """rounds requests on each daemon, interleaved; every answer is a
        200 or a proper 429. Returns the number of 200s."""
        ok = 0
        for _ in range(rounds):
            for d in daemons:
                r = d.get("/t/echo/ok")
                if r.status == 200:
                    self.assertAllowed(r)
                    ok += 1
                else:
                    self.assertLimited(r)
        return ok


class SharedQuotaTest(_RedisCase):
    def test_two_daemons_share_one_quota(self):
        cfg = config(self.rs.url)
        a, b = self.daemon(cfg), self.daemon(cfg)
        # N in total across both, not 2N
        self.assertEqual(self.burst([a, b], QUOTA * 2), QUOTA)
        # the remaining count runs down across both daemons
        self.rs.cli("DEL", "bulkhead:rl:shared:a:127.0.0.1")
        seen = []
        for d in (a, b, a, b):
            r = d.get("/t/echo/ok")
            self.assertAllowed(r)
            seen.append(int(RL.match(r.headers["ratelimit"]).group(1)))
        self.assertEqual(seen, [QUOTA - 1, QUOTA - 2, QUOTA - 3, QUOTA - 4])
        # the bucket is on the server, with an expiry: no key lives forever
        self.assertEqual(self.rs.cli("EXISTS",
                                     "bulkhead:rl:shared:a:127.0.0.1"), 1)
        ttl = self.rs.cli("PTTL", "bulkhead:rl:shared:a:127.0.0.1")
        self.assertTrue(0 < ttl <= (4 * 60 + 1) * 1000, ttl)
        for d in (a, b):
            st = status(d)["redis"]
            self.assertEqual(st["state"], "shared", st)
            self.assertEqual(st["transitions"], {"fallback": 0, "shared": 0})
            self.assertNotIn(self.rs.url.split("//")[1].split(":")[0] + "@",
                             json.dumps(st))
            m = scrape(d)
            self.assertEqual(metric(m, "bulkhead_redis_up"), 1)
            self.assertEqual(events(d, "rate_limit_fallback"), [])
        # 2 x 2 x QUOTA asked, QUOTA allowed: the rest refused, on either
        self.assertEqual(
            sum(metric(scrape(d), "bulkhead_rate_limited_total",
                       policy="shared") for d in (a, b)), 3 * QUOTA)

    def test_local_backend_control_gives_each_daemon_its_quota(self):
        cfg = config(self.rs.url, backend="local")
        a, b = self.daemon(cfg), self.daemon(cfg)
        self.assertEqual(self.burst([a, b], QUOTA * 2), 2 * QUOTA)
        self.assertEqual(self.rs.cli("DBSIZE"), 0)

    def test_same_answers_as_the_local_backend(self):
        """The script runs the local bucket's arithmetic: the same sequence
        of requests gets the same statuses, RateLimit fields and
        Retry-After on either backend."""
        def answers(d):
            out = []
            for _ in range(QUOTA + 2):
                r = d.get("/t/echo/ok")
                out.append((r.status, PK.sub("", r.headers["ratelimit"]),
                            PK.sub("", r.headers["ratelimit-policy"]),
                            r.headers.get("retry-after")))
            return out
        local = answers(self.daemon(config(self.rs.url, backend="local")))
        shared = answers(self.daemon(config(self.rs.url)))
        self.assertEqual(shared, local)
        self.assertEqual([a[0] for a in shared],
                         [200] * QUOTA + [429, 429])
        self.assertEqual(shared[0][1], '"shared";r=4;t=60')
        self.assertEqual(shared[-1][1:], ('"shared";r=0;t=300', POLICY, "60"))

    def test_noscript_after_script_flush(self):
        """A server that lost the script (SCRIPT FLUSH, a restart behind a
        proxy) gets it whole once: no fallback, the count goes on."""
        d = self.daemon(config(self.rs.url))
        self.assertEqual(self.burst([d], 2), 2)
        self.assertEqual(self.rs.cli("SCRIPT", "FLUSH"), "OK")
        self.assertEqual(self.burst([d], QUOTA), QUOTA - 2)
        self.assertEqual(status(d)["redis"]["state"], "shared")
        self.assertEqual(status(d)["redis"]["fallbackChecks"], 0)


class AuthAndSocketTest(_RedisCase):
    def test_password_from_env(self):
        rs = RedisServer(password="pw-" + os.urandom(6).hex())
        self.addCleanup(rs.close)
        a = self.daemon(config("@env:BH_TEST_REDIS_URL"),
                        env={"BH_TEST_REDIS_URL": rs.url})
        self.assertEqual(self.burst([a], QUOTA + 2), QUOTA)
        self.assertEqual(rs.cli("EXISTS", "bulkhead:rl:shared:a:127.0.0.1"),
                         1)
        st = status(a)["redis"]
        self.assertEqual(st["state"], "shared", st)
        self.assertEqual(st["url"], "redis://:***@127.0.0.1:%d/0" % rs.port)
        self.assertNotIn(rs.password, json.dumps(status(a)))
        self.assertNotIn(rs.password, scrape_text(a))
        for line in a.lines:
            self.assertNotIn(rs.password, line)
        # a wrong password: refused by the server, so local buckets, and
        # the reason shows (never the password)
        bad = "redis://:wrong-%s@127.0.0.1:%d" % (os.urandom(4).hex(),
                                                   rs.port)
        b = self.daemon(config(bad))
        self.until(lambda: status(b)["redis"]["state"] == "fallback", 5)
        self.assertEqual(self.burst([b], QUOTA + 1), QUOTA)
        err = status(b)["redis"]["lastError"] or ""
        self.assertTrue("WRONGPASS" in err or "invalid password" in err, err)
        self.assertNotIn("wrong-", json.dumps(status(b)))

    def test_unix_socket(self):
        rs = RedisServer(unix=True)
        self.addCleanup(rs.close)
        url = "unix://%s" % rs.socket_path
        a, b = self.daemon(config(url)), self.daemon(config(url))
        self.assertEqual(self.burst([a, b], QUOTA), QUOTA)
        self.assertEqual(status(a)["redis"]["url"], url)
        self.assertEqual(status(a)["redis"]["state"], "shared")
        self.assertEqual(rs.cli("EXISTS", "bulkhead:rl:shared:a:127.0.0.1"),
                         1)

    def test_config_errors(self):
        path = os.path.join(self.rs.tmp, "bad.ini")
        cases = [
            ({"rate_limit.shared": {"quota": 1, "backend": "redis"}},
             "[rate_limit.shared] backend: redis needs [redis] url"),
            ({"rate_limit.shared": {"quota": 1, "backend": "memcached"}},
             "[rate_limit.shared] backend: expected local or redis"),
            ({"redis": {"url": "http://127.0.0.1:6379"}},
             "[redis] url: expected redis://"),
            ({"redis": {"url": "redis://127.0.0.1:99999"}},
             "[redis] url: redis URL: port must be 1..65535"),
            ({"redis": {"url": "redis://127.0.0.1", "timeout_ms": "0"}},
             "[redis] timeout_ms: expected milliseconds"),
            ({"redis": {"url": "redis://127.0.0.1", "pool": "2"}},
             "[redis] pool: unknown key"),
            ({"redis": {"url": "@env:BH_TEST_NOT_SET"}},
             "environment variable BH_TEST_NOT_SET is not set"),
        ]
        for sections, want in cases:
            cfg = {"server": {"listen": "127.0.0.1:0",
                              "admin_listen": "127.0.0.1:0",
                              "data_dir": os.path.join(self.rs.tmp, "d")}}
            cfg.update(sections)
            with open(path, "w") as f:
                f.write(harness.render_config(cfg))
            res = run_tool(["-t", "-c", path])
            self.assertNotEqual(res.returncode, 0, (sections, res))
            self.assertIn(want, res.stderr, (sections, res.stderr))
        with open(path, "w") as f:
            f.write(harness.render_config(
                {"redis": {"url": "redis://user:hunter2@127.0.0.1:1/3"},
                 "rate_limit.shared": {"quota": 1, "backend": "redis"}}))
        res = run_tool(["-t", "-c", path])
        self.assertEqual(res.returncode, 0, res)
        self.assertNotIn("hunter2", res.stdout + res.stderr)


def scrape_text(d):
    return d.request("GET", "/metrics", admin=True).body.decode()


class FallbackTest(_RedisCase):
    def test_redis_stopped_then_restarted(self):
        # two workers: the log says each transition once for the daemon
        cfg = config(self.rs.url, workers=2)
        a, b = self.daemon(cfg), self.daemon(cfg)
        self.assertEqual(self.burst([a, b], 2), 4)
        m0 = scrape(a)
        self.assertEqual(metric(m0, "bulkhead_redis_up"), 1)

        # Redis stops mid-run: a steady stream of requests never fails
        stop = threading.Event()
        bad = []
        seen = {"n": 0}

        def load():
            while not stop.is_set():
                t0 = time.time()
                r = a.get("/t/echo/ok")
                took = time.time() - t0
                seen["n"] += 1
                if r.status not in (200, 429) or took > harness.SLACK:
                    bad.append((r.status, took, r))
        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(0.2)
        self.rs.stop()
        self.until(lambda: status(a)["redis"]["state"] == "fallback", 5)
        time.sleep(0.5)
        stop.set()
        t.join(10)
        self.assertEqual(bad, [])
        self.assertGreater(seen["n"], 5)

        st = status(a)["redis"]
        self.assertEqual(st["state"], "fallback", st)
        self.assertGreaterEqual(st["processesInFallback"], 1, st)
        self.assertEqual(st["transitions"]["fallback"], 1, st)
        self.assertTrue(st["lastError"], st)
        m = scrape(a)
        self.assertEqual(metric(m, "bulkhead_redis_up"), 0)
        self.assertEqual(metric(m, "bulkhead_redis_transitions_total",
                                to="fallback"), 1)
        self.assertGreater(metric(m, "bulkhead_redis_fallback_checks_total"),
                           0)
        # limits still hold, on each daemon's own buckets now: b has QUOTA
        # of its own (its local buckets were never charged)
        self.assertEqual(self.burst([b], QUOTA + 3), QUOTA)
        self.until(lambda: status(b)["redis"]["state"] == "fallback", 5)
        # workers on both daemons went down; ONE line per daemon
        self.until(lambda: len(events(a, "rate_limit_fallback")) >= 1, 5)
        time.sleep(0.5)  # the other worker, if it were to log too
        for d in (a, b):
            self.assertEqual(len(events(d, "rate_limit_fallback")), 1,
                             d.events())
            self.assertEqual(events(d, "rate_limit_shared"), [])

        # Redis is back (empty: no persistence): shared again, no restart
        self.rs.start()
        for d in (a, b):
            self.until(lambda: status(d)["redis"]["state"] == "shared", 10)
        # every worker of both daemons reaches the server again; the shared
        # bucket is new, so QUOTA in total across both
        self.until(lambda: all(metric(scrape(d), "bulkhead_redis_up") == 1
                             for d in (a, b)), 10)
        self.assertEqual(self.burst([a, b], QUOTA * 2), QUOTA)
        self.assertEqual(self.rs.cli("EXISTS",
                                     "bulkhead:rl:shared:a:127.0.0.1"), 1)
        for d in (a, b):
            self.until(lambda: events(d, "rate_limit_shared"), 5)
            self.assertEqual(len(events(d, "rate_limit_shared")), 1,
                             d.events())
            self.assertEqual(len(events(d, "rate_limit_fallback")), 1)
            st = status(d)["redis"]
            self.assertEqual(st["transitions"], {"fallback": 1, "shared": 1})
            m = scrape(d)
            self.assertEqual(metric(m, "bulkhead_redis_transitions_total",
                                    to="shared"), 1)

    def test_unreachable_at_start(self):
        """No server at all: the daemon starts, limits are local, and it
        says so once."""
        self.rs.stop()
        d = self.daemon(config(self.rs.url))
        self.assertEqual(self.burst([d], QUOTA + 2), QUOTA)
        st = status(d)["redis"]
        self.assertEqual(st["state"], "fallback", st)
        self.assertIn("connect", st["lastError"], st)
        self.until(lambda: events(d, "rate_limit_fallback"), 5)
        self.assertEqual(len(events(d, "rate_limit_fallback")), 1)
        self.rs.start()
        self.until(lambda: status(d)["redis"]["state"] == "shared", 10)
        self.burst([d], 1)
        self.assertEqual(self.rs.cli("EXISTS",
                                     "bulkhead:rl:shared:a:127.0.0.1"), 1)


class SlowRedisTest(_RedisCase):
    TIMEOUT_MS = 30

    def test_slow_server_costs_at_most_the_deadline(self):
        d = self.daemon(config(self.rs.url, timeout_ms=self.TIMEOUT_MS))
        self.assertEqual(self.burst([d], 2), 2)
        # the server sleeps for 2 s: every command waits behind it
        sleeper = self.rs.send_nowait("DEBUG", "SLEEP", "2")
        self.addCleanup(sleeper.close)
        time.sleep(0.1)
        took = []
        t_end = time.time() + 1.2
        while time.time() < t_end:
            t0 = time.time()
            r = d.get("/t/echo/ok")
            took.append(time.time() - t0)
            self.assertIn(r.status, (200, 429), r)
        # the first waits timeout_ms; then the policy is local at once
        limit = self.TIMEOUT_MS / 1000.0 + (0.5 if harness.SANITIZE else 0.25)
        self.assertLess(max(took), limit, took)
        st = status(d)["redis"]
        self.assertEqual(st["state"], "fallback", st)
        self.assertGreaterEqual(st["timeouts"], 1, st)
        self.assertIn("timeout_ms", st["lastError"], st)
        self.until(lambda: events(d, "rate_limit_fallback"), 5)
        self.assertEqual(len(events(d, "rate_limit_fallback")), 1)
        # the server wakes up: shared again
        self.until(lambda: status(d)["redis"]["state"] == "shared", 10)
        self.until(lambda: events(d, "rate_limit_shared"), 5)
        self.assertEqual(len(events(d, "rate_limit_shared")), 1)


if __name__ == "__main__":
    unittest.main()
