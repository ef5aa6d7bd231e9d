"""Helpers for the process tests (crash containment, reload, drain, shared
state): keep-alive connections pinned to a known worker process, a steady
load that attributes every failure to the worker that owned the connection,
and /admin/status readers. Standard library only."""

import threading
import time

import harness
from harness import Daemon, RawConn
from upstream_env import start_sim


def pid_of(conn, closing=None):
    """Which worker serves this keep-alive connection (echo's /t/echo/pid).
    With a list as `closing`, appends whether the answer said
    "Connection: close" (a draining worker's does)."""
    conn.send("GET /t/echo/pid HTTP/1.1\r\nHost: t\r\n\r\n")
    r = conn.read_response(5.0)
    if r is None or r.status != 200:
        raise AssertionError("GET /t/echo/pid answered %r" % (r,))
    if closing is not None:
        closing.append(r.closes())
    return r.json()["pid"]


def pinned_conns(d, per_worker=2, workers=2, tries=200):
    """{pid: [RawConn, ...]} with per_worker open keep-alive connections on
    each of `workers` distinct worker processes. The kernel picks the
    worker at accept time, so connections are opened until every worker
    has its share; the extra ones are closed."""
    out = {}
    for _ in range(tries):
        if (len(out) >= workers and
                all(len(v) >= per_worker for v in out.values())):
            break
        c = RawConn(d.port())
        pid = pid_of(c)
        lst = out.setdefault(pid, [])
        if len(lst) < per_worker:
            lst.append(c)
        else:
            c.close()
        time.sleep(0.005)
    full = {p: v for p, v in out.items() if len(v) >= per_worker}
    if len(full) < workers:
        for v in out.values():
            for c in v:
                c.close()
        raise AssertionError("could not reach %d workers with %d connections "
                             "each: %r" % (workers, per_worker,
                                           {p: len(v) for p, v in out.items()}))
    for p, v in out.items():
        if p not in full:
            for c in v:
                c.close()
    return full


class PinnedLoad(object):
    """One thread per connection, each sending `path` back to back on its
    own keep-alive connection. A request that gets no answer is a failure
    charged to the worker that owned the connection; the thread then opens
    a new connection (its pid learned again) and goes on. An answer with
    "Connection: close" is no failure: the thread reconnects. Every status
    other than `expect` is a failure too."""

    def __init__(self, d, conns, path="/t/echo/ok", expect=200, pause=0.0):
        self.d = d
        self.path = path
        self.expect = expect
        self.pause = pause
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = {}        # pid -> answered requests
        self.failures = {}  # pid -> [what, ...]
        self.pids_seen = set()
        self.threads = []
        for pid, lst in conns.items():
            for c in lst:
                t = threading.Thread(target=self._run, args=(c, pid),
                                     daemon=True)
                self.threads.append(t)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _count(self, table, pid, v):
        with self.lock:
            if table is self.ok:
                self.ok[pid] = self.ok.get(pid, 0) + 1
            else:
                self.failures.setdefault(pid, []).append(v)
            self.pids_seen.add(pid)

    def _reconnect(self):
        while not self.stop_flag.is_set():
            try:
                c = RawConn(self.d.port())
                closing = []
                pid = pid_of(c, closing)
                if closing[0]:
                    # a draining worker took it: it said it closes
                    c.close()
                    continue
                return c, pid
            except (OSError, AssertionError, TimeoutError):
                # the listener never goes away; say so if it ever does
                self._count(self.failures, None, "reconnect failed")
                time.sleep(0.05)
        return None, None

    def _run(self, conn, pid):
        req = "GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % self.path
        last = time.monotonic()
        while not self.stop_flag.is_set():
            r = None
            err = None
            idle = time.monotonic() - last
            try:
                conn.send(req)
                r = conn.read_response(10.0)
            except (OSError, TimeoutError, ValueError) as e:
                err = repr(e)
            last = time.monotonic()
            if r is None:
                # how long the connection sat idle before this request
                # tells a server bug from a client that paused
                self._count(self.failures, pid, "%s (idle %.0f ms before)" %
                            (err or "closed, no answer", idle * 1000))
                conn.close()
                conn, pid = self._reconnect()
                if conn is None:
                    return
                continue
            if r.status == self.expect:
                self._count(self.ok, pid, None)
            else:
                self._count(self.failures, pid, "status %d" % r.status)
            if r.closes():
                conn.close()
                conn, pid = self._reconnect()
                if conn is None:
                    return
            if self.pause:
                time.sleep(self.pause)
        conn.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)
        return self

    def total_ok(self):
        with self.lock:
            return sum(self.ok.values())


def status(d):
    r = d.admin("/admin/status")
    if r.status != 200:
        raise AssertionError("/admin/status answered %r" % (r,))
    return r.json()


def plugin_status(d, name):
    for p in status(d)["plugins"]:
        if p["name"] == name:
            return p
    raise AssertionError("plugin %s not in /admin/status" % name)


def ready_workers(d, generation=None):
    out = []
    for w in status(d)["workers"]:
        if w.get("ready") and not w.get("draining") and (
                generation is None or w["generation"] == generation):
            out.append(w["pid"])
    return out


def wait_workers(d, n, exclude=(), timeout=10.0):
    """Waits until n ready workers run, none of them in `exclude`; returns
    their pids."""
    deadline = time.monotonic() + timeout
    pids = []
    while time.monotonic() < deadline:
        pids = [p for p in ready_workers(d) if p not in exclude]
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    raise AssertionError("only %r ready workers (excluding %r) after %.0fs: %r"
                         % (pids, list(exclude), timeout, status(d)["workers"]))


class SimDaemonCase(harness.DaemonTestCase):
    """One simulator for the class, a fresh daemon with worker processes
    per test (process state must not leak between tests). Subclasses
    define config(sim_url)."""

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = start_sim()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def config(self, sim_url):
        raise NotImplementedError

    def setUp(self):
        self.sim.reset()
        self.d = Daemon(self.config(self.sim.url))
        wait_workers(self.d, 2)

    def tearDown(self):
        if self.d:
            self.d.stop()
