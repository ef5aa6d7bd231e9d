"""Reload and shutdown with worker processes. SIGHUP and POST /admin/reload
start a new generation of workers with the re-read config while the old
one finishes what it accepted: under a steady load (keep-alive connections
and fresh ones) not one request fails. A config that fails validation is
refused and the running one stays. SIGTERM stops accepting, lets in-flight
slow requests finish, and exits 0; a second signal exits at once."""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, echo_section, render_config  # noqa: E402
from upstream_env import Background, plugin_section  # noqa: E402
from workers import (PinnedLoad, SimDaemonCase, pinned_conns,  # noqa: E402
                     status, wait_workers)

SLOW_MS = 1500
SLOW_INIT_MS = 700


def config(sim_url, drain_ms=5000, **server):
    srv = {"workers": 2, "drain_timeout_ms": drain_ms}
    srv.update(server)
    return {
        "server": srv,
        "plugin.echo": echo_section(),
        "plugin.up_one": plugin_section("up_one"),
        "upstream.up_one": {"url": sim_url, "timeout_ms": 10000,
                            "retries": 0},
    }


class _SimCase(SimDaemonCase):

    def config(self, sim_url):
        return config(sim_url)


class ReloadTest(_SimCase):

    def generation(self):
        return status(self.d)["generation"]

    def wait_generation(self, g, timeout=15.0):
        """Waits for generation g to be the only one running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status(self.d)
            ws = st["workers"]
            if (st["generation"] == g and len(ws) == 2 and
                    all(w["generation"] == g and w["ready"] for w in ws)):
                return [w["pid"] for w in ws]
            time.sleep(0.05)
        self.fail("generation %d never took over: %r%s" %
                  (g, status(self.d)["workers"], self.diag()))

    def test_reload_under_load_fails_nothing(self):
        g0 = self.generation()
        old = wait_workers(self.d, 2)
        conns = pinned_conns(self.d, per_worker=2)
        load = PinnedLoad(self.d, conns).start()
        fresh = Background(self.d, ["/t/echo/ok", "/t/echo/pid"],
                           pause=0.005).start()
        time.sleep(0.3)
        r = self.d.admin("/admin/reload", method="POST")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["generation"], g0 + 1)
        mid = self.wait_generation(g0 + 1)
        time.sleep(0.3)
        os.kill(self.d.proc.pid, signal.SIGHUP)
        new = self.wait_generation(g0 + 2)
        time.sleep(0.3)
        load.stop()
        results = fresh.stop()

        self.assertEqual(load.failures, {}, "keep-alive requests failed "
                         "during reload: %r" % [
                             e for e in self.d.events() if e.get("event") in (
                                 "worker_started", "worker_exited",
                                 "shutdown", "drain_timeout", "reload")])
        bad = [x for x in results if x[1] != 200 or x[4]]
        self.assertEqual(bad, [], "requests on fresh connections failed")
        self.assertGreater(load.total_ok(), 50)
        self.assertGreater(len(results), 20)
        # the load really moved from one generation to the next
        self.assertFalse(set(old) & set(mid))
        self.assertFalse(set(mid) & set(new))
        seen = load.pids_seen
        self.assertTrue(seen & set(old), seen)
        self.assertTrue(seen & set(new), (seen, new))
        # old workers drained and exited cleanly
        exited = {e["pid"]: e for e in self.d.events("worker_exited")}
        for pid in old + mid:
            self.assertIn(pid, exited)
            self.assertEqual(exited[pid].get("status"), 0, exited[pid])

    def test_reload_applies_the_new_config(self):
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)
        cfg = config(self.sim.url)
        cfg["plugin.echo"]["mount"] = "/t/echo2"
        self._rewrite(cfg)
        g0 = self.generation()
        os.kill(self.d.proc.pid, signal.SIGHUP)
        self.wait_generation(g0 + 1)
        # echo's routes live under /t/echo, which is no longer its mount:
        # it refuses to load and the old mount is gone
        r = self.d.get("/t/echo/ok")
        self.assertNotEqual(r.status, 200, r)

    def _rewrite(self, cfg):
        sections = {"server": {"listen": "127.0.0.1:%d" % self.d.port(),
                               "admin_listen": "127.0.0.1:%d" %
                               self.d.port(admin=True),
                               "data_dir": self.d.data_dir, "log": "stdout"}}
        sections["server"].update(cfg.pop("server"))
        sections.update(cfg)
        with open(self.d.config_path, "w") as f:
            f.write(render_config(sections))

    def test_invalid_config_is_refused_and_the_running_one_stays(self):
        g0 = self.generation()
        pids = sorted(wait_workers(self.d, 2))
        with open(self.d.config_path, "a") as f:
            f.write("\n[rate_limit.broken]\nrate = lots\n")
        r = self.d.admin("/admin/reload", method="POST")
        doc = self.assertProblem(r, 400, "admin.reload_refused")
        self.assertIn("rate", doc.get("detail", ""))
        os.kill(self.d.proc.pid, signal.SIGHUP)
        self.d.wait_event(lambda e: e.get("event") == "reload_refused")
        time.sleep(0.3)
        self.assertEqual(self.generation(), g0)
        self.assertEqual(sorted(wait_workers(self.d, 2)), pids)
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)

    def slow_generations(self):
        """From the next reload on, workers take SLOW_INIT_MS to be ready:
        whatever arrives meanwhile arrives during the reload."""
        cfg = config(self.sim.url)
        cfg["plugin.echo"]["init_delay_ms"] = SLOW_INIT_MS
        self._rewrite(cfg)

    def test_concurrent_reloads_make_one_generation(self):
        g0 = self.generation()
        old = wait_workers(self.d, 2)
        self.wait_generation(g0)
        self.slow_generations()
        n = 8
        barrier = threading.Barrier(n)
        out, lock = [], threading.Lock()

        def one():
            barrier.wait()
            r = self.d.admin("/admin/reload", method="POST")
            with lock:
                out.append(r)

        ts = [threading.Thread(target=one) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        accepted = [r for r in out if r.status == 202]
        self.assertEqual(len(accepted), 1, out)
        self.assertEqual(accepted[0].json(),
                         {"status": "reloading", "generation": g0 + 1})
        for r in out:
            if r.status != 202:
                doc = self.assertProblem(r, 409, "admin.reload_in_progress")
                # a 409 is not retried blindly; Retry-After says when
                self.assertIs(doc["extensions"]["retryable"], False, r)
                self.assertEqual(r.headers.get("retry-after"), "1", r)
        pids = self.wait_generation(g0 + 1)
        self.assertFalse(set(pids) & set(old), (pids, old))
        time.sleep(0.5)
        st = status(self.d)
        self.assertEqual(st["generation"], g0 + 1, "more than one reload ran")
        self.assertFalse(st["reloading"])
        self.assertEqual(sorted(w["pid"] for w in st["workers"]),
                         sorted(pids))
        # once it is done, the next one is accepted
        r = self.d.admin("/admin/reload", method="POST")
        self.assertEqual(r.status, 202, r)
        self.wait_generation(g0 + 2)

    def test_sighups_during_a_reload_make_one_more(self):
        g0 = self.generation()
        self.wait_generation(g0)
        self.slow_generations()
        r = self.d.admin("/admin/reload", method="POST")
        self.assertEqual(r.status, 202, r)
        for _ in range(3):
            os.kill(self.d.proc.pid, signal.SIGHUP)
            time.sleep(0.05)
        self.assertTrue(status(self.d)["reloading"])
        self.wait_generation(g0 + 2)
        time.sleep(0.6)
        self.assertEqual(self.generation(), g0 + 2,
                         "each SIGHUP started its own reload")
        self.assertTrue(self.d.events("reload_deferred"))
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)


class DrainTest(_SimCase):

    def slow_requests(self, n):
        """n slow upstream requests in flight, each on its own connection;
        returns (threads, results)."""
        self.sim.set_behavior(path="/slow/*", delay_ms=SLOW_MS)
        results = [None] * n

        def one(i):
            try:
                r = self.d.get("/t/up_one/get/slow/%d" % i, timeout=15)
                results[i] = r.status
            except OSError as e:
                results[i] = repr(e)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 5
        while self.sim.stats()["total"] < n:
            self.assertLess(time.monotonic(), deadline, "requests not "
                            "in flight: %r" % self.sim.stats())
            time.sleep(0.02)
        return ts, results

    def test_sigterm_drains_in_flight_requests(self):
        ts, results = self.slow_requests(4)
        t0 = time.monotonic()
        self.d.proc.send_signal(signal.SIGTERM)
        # master and both workers have begun to drain
        deadline = time.monotonic() + 5
        while len(self.d.events("shutdown")) < 3:
            self.assertLess(time.monotonic(), deadline, self.diag())
            time.sleep(0.02)
        # no longer accepting: a new connection is refused or closed
        # without an answer
        try:
            r = self.d.get("/t/echo/ok", timeout=2)
            self.fail("a request after SIGTERM was served: %r" % r)
        except (OSError, harness.http.client.HTTPException):
            pass
        for t in ts:
            t.join(15)
        self.assertEqual(results, [200] * 4)
        self.d.proc.wait(15)
        elapsed = time.monotonic() - t0
        self.assertEqual(self.d.proc.returncode, 0, self.diag())
        self.assertLess(elapsed, 5.0 + SLOW_MS / 1000.0)
        self.d.stop()  # asserts no sanitizer report
        self.d = None

    def test_second_signal_exits_at_once(self):
        ts, results = self.slow_requests(2)
        self.d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        t0 = time.monotonic()
        self.d.proc.send_signal(signal.SIGTERM)
        self.d.proc.wait(5)
        self.assertLess(time.monotonic() - t0, 1.5)
        for t in ts:
            t.join(15)
        # the slow requests were cut, not answered
        self.assertNotIn(200, results)
        self.d.stop(check=False)
        self.d = None

    def test_drain_timeout_bounds_the_wait(self):
        self.d.stop()
        self.d = Daemon(config(self.sim.url, drain_ms=300))
        wait_workers(self.d, 2)
        ts, results = self.slow_requests(2)
        t0 = time.monotonic()
        self.d.proc.send_signal(signal.SIGTERM)
        self.d.proc.wait(10)
        self.assertLess(time.monotonic() - t0, SLOW_MS / 1000.0,
                        "the drain waited for requests past its timeout")
        for t in ts:
            t.join(15)
        self.assertNotIn(200, results)
        self.d.stop(check=False)
        self.d = None


if __name__ == "__main__":
    harness.main()
