"""Drive bulkhead-sim, the upstream simulator, from integration tests.

Standard library only. Typical use:

    from sim_client import Sim

    with Sim() as sim:                      # BULKHEAD_SIM_BIN or binary=...
        sim.set_behavior(path="/v1/charges", preset="stripe_500", times=2)
        ... point the gateway at sim.url, exercise it ...
        assert sim.stats()["paths"]["/v1/charges"]["count"] == 3
        hdrs = dict(sim.requests("/v1/charges")[-1]["headers"])

Rules are plain keyword arguments mirroring the control API's JSON fields
(path, method, status, body, headers, delay_ms, action,
trickle_bytes_per_sec, times, then, preset, fail_after_events,
stream_delay_ms, raw_headers: a string written into the answer's head as
it is, after the other headers, with its own line ends, for heads no sane
upstream sends such as "X-A: foo\rSet-Cookie: x=1\r\n").
"""

import http.client
import json
import os
import select
import signal
import subprocess
import threading
import time
import urllib.parse

__all__ = ["Sim", "SimError"]


class SimError(Exception):
    """The simulator did not start, or a control call failed."""


class Sim:
    def __init__(self, binary=None, listen="127.0.0.1:0",
                 control="127.0.0.1:0", extra_args=(), stderr=None,
                 start_timeout=10.0):
        """Starts the simulator and waits for its "listening" line.

        control=None serves the control API only under /__sim/ on the main
        port. stderr is passed to subprocess (None inherits ours).
        """
        self.binary = binary or os.environ.get("BULKHEAD_SIM_BIN")
        if not self.binary:
            raise SimError("set BULKHEAD_SIM_BIN or pass binary=")
        args = [self.binary, "--listen", listen]
        if control:
            args += ["--control", control]
        args += list(extra_args)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=stderr,
                                     preexec_fn=_die_with_parent
                                     if threading.active_count() == 1
                                     else None)
        try:
            info = self._read_listening(start_timeout)
        except Exception:
            self._kill()
            raise
        self.info = info
        self.host, self.port = _split(info["listen"])
        self.control_host, self.control_port = _split(info["control"])
        self.url = "http://%s:%d" % (_urlhost(self.host), self.port)
        self.control_url = "http://%s:%d" % (_urlhost(self.control_host),
                                            self.control_port)

    def _read_listening(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimError("simulator did not report listening in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SimError("simulator exited before listening (rc=%s)"
                               % self.proc.wait())
            buf += chunk
        line = buf.split(b"\n", 1)[0]
        info = json.loads(line)
        if info.get("event") != "listening":
            raise SimError("unexpected first line: %r" % line)
        return info

    # -- context manager ------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- control API ----------------------------------------------------

    def control(self, method, path, body=None, timeout=10.0):
        """One control call; returns the decoded JSON answer.

        path is relative to the control root, e.g. "/stats".
        Raises SimError on a non-2xx answer.
        """
        conn = http.client.HTTPConnection(self.control_host,
                                          self.control_port, timeout=timeout)
        try:
            data = None
            headers = {}
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, "/__sim" + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        doc = json.loads(raw) if raw else None
        if resp.status >= 300:
            raise SimError("%s %s -> %d %s" % (method, path, resp.status, raw))
        return doc

    def set_behavior(self, **rule):
        """Adds a rule; returns {"ok": true, "id": N, "ids": [N]}."""
        return self.control("POST", "/behavior", rule)

    def set_behaviors(self, rules):
        """Adds several rules at once (all or nothing)."""
        return self.control("POST", "/behaviors", list(rules))

    def behaviors(self):
        return self.control("GET", "/behaviors")["rules"]

    def remove_behavior(self, path, method=None):
        q = "?method=" + urllib.parse.quote(method) if method else ""
        return self.control("DELETE", "/behaviors/" +
                            urllib.parse.quote(path, safe="") + q)

    def clear(self):
        """Removes every rule."""
        return self.control("DELETE", "/behaviors")

    def stats(self):
        return self.control("GET", "/stats")

    def reset_stats(self):
        return self.control("POST", "/stats/reset")

    def requests(self, path=None, limit=1000, method=None):
        """Recorded requests, oldest first: dicts with method, path, query,
        headers ([name, value] list), body, body_size, time_ms, and what
        was answered: status (null for close/reset/hang) and action..."""
        q = {"limit": str(limit)}
        if path:
            q["path"] = path
        if method:
            q["method"] = method
        return self.control("GET", "/requests?" +
                            urllib.parse.urlencode(q))["requests"]

    def clear_requests(self):
        return self.control("DELETE", "/requests")

    def count(self, path, method=None):
        """Requests received on path (optionally for one method)."""
        entry = self.stats()["paths"].get(path)
        if not entry:
            return 0
        if method:
            return entry["methods"].get(method, 0)
        return entry["count"]

    def config(self, **settings):
        if settings:
            return self.control("POST", "/config", settings)
        return self.control("GET", "/config")

    def presets(self):
        return self.control("GET", "/presets")["presets"]

    def reset(self):
        """Rules, stats, recorded requests and config back to the start."""
        return self.control("POST", "/reset")

    # -- lifecycle ------------------------------------------------------

    def stop(self, timeout=5.0):
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _die_with_parent():
    """Linux: SIGTERM the simulator if the test process dies, so an
    aborted test run never leaves one behind holding a port. Skipped when
    the caller runs threads: preexec_fn is not safe with threads."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _split(hostport):
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _urlhost(host):
    return "[%s]" % host if ":" in host else host
