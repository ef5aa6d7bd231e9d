"""Integration test harness for bulkhead (Python 3 standard library only).

Starts the real `bulkhead` binary on ephemeral loopback ports with a real
config file and real plugin `.so` files, and speaks HTTP to it.

Environment (set by tests/CMakeLists.txt for ctest):
  BULKHEAD_BIN              the daemon binary
  BULKHEAD_PLUGIN_DIR       first-party plugins (auth.so, billing.so ...)
  BULKHEAD_TEST_PLUGIN_DIR  test plugins (echo.so, badabi.so ...)
  BULKHEAD_SOURCE_DIR, BULKHEAD_BUILD_DIR, BULKHEAD_SANITIZE

When run by hand without them, the harness falls back to <source>/build.

    from harness import Daemon, test_plugin
    with Daemon({"plugin.echo": {"path": test_plugin("echo"),
                                 "mount": "/t/echo"}}) as d:
        r = d.get("/t/echo/ok")
        assert r.status == 200
"""

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("BULKHEAD_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(HERE))
BUILD_DIR = os.environ.get("BULKHEAD_BUILD_DIR") or os.path.join(
    SOURCE_DIR, "build")
BIN = os.environ.get("BULKHEAD_BIN") or os.path.join(BUILD_DIR, "bulkhead")
PLUGIN_DIR = os.environ.get("BULKHEAD_PLUGIN_DIR") or os.path.join(
    BUILD_DIR, "plugins")
TEST_PLUGIN_DIR = os.environ.get("BULKHEAD_TEST_PLUGIN_DIR") or os.path.join(
    BUILD_DIR, "test-plugins")
SANITIZE = os.environ.get("BULKHEAD_SANITIZE", "").upper() in (
    "1", "ON", "TRUE", "YES")

# Generous margins for timing assertions under sanitizers / loaded CI boxes.
SLACK = 3.0 if SANITIZE else 1.5
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def event_name(ev):
    """A log line's event under any log_format (bulkhead, ecs, otel)."""
    if not isinstance(ev, dict):
        return None
    for k in ("event", "event.action", "event.name"):
        if k in ev:
            return ev[k]
    return None


def test_plugin(name):
    """Absolute path of a test plugin (tests/plugins/NAME.c)."""
    return os.path.join(TEST_PLUGIN_DIR, name + ".so")


def plugin(name):
    """Absolute path of a first-party plugin (plugins/NAME)."""
    return os.path.join(PLUGIN_DIR, name + ".so")


def echo_section(mount="/t/echo", **extra):
    sec = {"path": test_plugin("echo"), "mount": mount}
    sec.update(extra)
    return sec


# A loopback address where nothing answers (the discard port): first-party
# plugins that register an upstream get it, so they load without reaching
# any real provider.
DEAD_UPSTREAM = "http://127.0.0.1:9"


def first_party(*names):
    """Config sections for first-party plugins: [plugin.NAME] mounted at
    /v1/NAME, plus an [upstream.NAME] url for the ones that call a
    provider."""
    out = {}
    for name in names:
        out["plugin." + name] = {"path": plugin(name), "mount": "/v1/" + name}
    for name in names:
        out["upstream." + name] = {"url": DEAD_UPSTREAM}
    return out


def render_config(sections):
    """{"server": {...}, "plugin.x": {...}} -> INI text (insertion order)."""
    out = []
    for name, kv in sections.items():
        out.append("[%s]" % name)
        for k, v in kv.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (list, tuple)):
                v = ", ".join(v)
            out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------

class Response(object):
    """One HTTP response: status, reason, headers (lower-cased names; a
    repeated header keeps its values joined by ", "), header_list (all
    (name, value) pairs in order), body (bytes)."""

    def __init__(self, status, reason, header_list, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.version = version
        self.header_list = header_list
        self.headers = {}
        for k, v in header_list:
            k = k.lower()
            self.headers[k] = (self.headers[k] + ", " + v
                               if k in self.headers else v)
        self.body = body
        self._json = None

    def json(self):
        if self._json is None:
            self._json = json.loads(self.body.decode("utf-8"))
        return self._json

    def header_count(self, name):
        return sum(1 for k, _ in self.header_list if k.lower() == name.lower())

    @property
    def code(self):
        """extensions.code of a nested Problem (or top-level code)."""
        doc = self.json()
        if "extensions" in doc and isinstance(doc["extensions"], dict):
            return doc["extensions"].get("code")
        return doc.get("code")

    @property
    def ext(self):
        doc = self.json()
        return doc.get("extensions", {})

    def closes(self):
        return "close" in self.headers.get("connection", "").lower()

    def __repr__(self):
        body = self.body[:300]
        return "<Response %d %r %r>" % (self.status, self.headers, body)


class RawResult(object):
    def __init__(self, responses, closed, leftover, elapsed):
        self.responses = responses
        self.closed = closed  # the server closed the connection (EOF/reset)
        self.leftover = leftover  # bytes after the last complete response
        self.elapsed = elapsed

    def __repr__(self):
        return "<RawResult closed=%s leftover=%r responses=%r>" % (
            self.closed, self.leftover[:200], self.responses)


class _Incomplete(Exception):
    pass


def parse_response(buf, head=False):
    """Parses one response at the start of buf. Returns (Response, rest) or
    raises _Incomplete. head=True: no body whatever the headers say."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete()
    head_text = buf[:end].decode("latin-1")
    lines = head_text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("bad status line %r" % lines[0])
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    hl = []
    for line in lines[1:]:
        if ":" not in line:
            raise ValueError("bad header line %r" % line)
        k, v = line.split(":", 1)
        hl.append((k.strip(), v.strip()))
    rest = buf[end + 4:]
    lower = {k.lower(): v for k, v in hl}
    if head or status in (204, 304) or 100 <= status < 200:
        return Response(status, reason, hl, b"", parts[0]), rest
    if "transfer-encoding" in lower:
        # the daemon never sends chunked bodies; parse anyway
        body = b""
        while True:
            nl = rest.find(b"\r\n")
            if nl < 0:
                raise _Incomplete()
            size = int(rest[:nl].split(b";")[0], 16)
            if len(rest) < nl + 2 + size + 2:
                raise _Incomplete()
            body += rest[nl + 2:nl + 2 + size]
            rest = rest[nl + 2 + size + 2:]
            if size == 0:
                break
        return Response(status, reason, hl, body, parts[0]), rest
    n = int(lower.get("content-length", "0"))
    if len(rest) < n:
        raise _Incomplete()
    return Response(status, reason, hl, rest[:n], parts[0]), rest[n:]


class RawConn(object):
    """A raw TCP connection for malformed bytes, pipelining and slow
    sending. Reads are buffered; read_response() returns the next parsed
    response or None once the server has closed."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def try_send(self, data):
        """send() that reports a closed/reset connection as False."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline):
        """Reads more bytes; False on EOF or timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout=5.0, head=False):
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                try:
                    resp, self.buf = parse_response(self.buf, head=head)
                    return resp
                except _Incomplete:
                    pass
            if not self._fill(deadline):
                if self.eof:
                    return None
                raise TimeoutError(
                    "no complete response within %.1fs; have %r" %
                    (timeout, self.buf[:500]))

    def read_responses(self, n, timeout=5.0, head=False):
        out = []
        deadline = time.monotonic() + timeout
        for _ in range(n):
            r = self.read_response(max(0.01, deadline - time.monotonic()),
                                   head=head)
            if r is None:
                break
            out.append(r)
        return out

    def wait_closed(self, timeout=2.0):
        """True once the server closed (EOF or reset) within timeout. Any
        bytes received meanwhile stay in self.buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return False
        return True

    def is_open(self, wait=0.2):
        """True when nothing shows the connection closed within `wait`."""
        return not self.wait_closed(wait)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

class DaemonError(AssertionError):
    pass


class Daemon(object):
    """A running bulkhead.

    config: a dict of sections ({"server": {...}, "plugin.echo": {...}}) or
    INI text. With a dict, [server] gets listen/admin_listen 127.0.0.1:0,
    data_dir inside the temp dir and log = stdout unless the dict sets
    them. Text is written as given, after replacing "@TMP@" with the temp
    dir path.

    stdout: "read" (default: a thread keeps every line, see .lines/.events),
    "unread" (lines are read up to the listening lines, then the pipe is
    left full; pipe_size shrinks the pipe), "closed" (the read end is
    closed once both ports are known) or "fd-closed" (the daemon starts
    with fd 1 closed; the ports are found through /proc).
    """

    def __init__(self, config=None, env=None, args=(), start=True,
                 stdout="read", pipe_size=None):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-it-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.config_path = os.path.join(self.tmp, "bulkhead.ini")
        if config is None:
            config = {"plugin.echo": echo_section()}
        if isinstance(config, dict):
            sections = {"server": {}}
            sections.update(config)
            server = {"listen": "127.0.0.1:0",
                      "admin_listen": "127.0.0.1:0",
                      "data_dir": self.data_dir,
                      "log": "stdout"}
            server.update(sections["server"] or {})
            sections["server"] = server
            text = render_config(sections)
        else:
            text = config.replace("@TMP@", self.tmp)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.config_text = text
        self.env = dict((k, v) for k, v in os.environ.items()
                        if not k.startswith("BULKHEAD_"))
        if env:
            self.env.update(env)
        self.args = list(args)
        self.stdout_mode = stdout
        self.pipe_size = pipe_size
        self.proc = None
        self.lines = []
        self._lines_lock = threading.Lock()
        self._lines_cv = threading.Condition(self._lines_lock)
        self._stderr = []
        self._threads = []
        self.api_port = None
        self.admin_port = None
        self.returncode = None
        self._stopped = False
        if start:
            try:
                self.start()
            except BaseException:
                self._stopped = True
                self.kill()
                raise

    # -- process ----------------------------------------------------------

    def start(self):
        if not os.access(BIN, os.X_OK):
            raise DaemonError("no bulkhead binary at %s (set BULKHEAD_BIN "
                              "or build into <source>/build)" % BIN)
        if self.stdout_mode == "fd-closed":
            # fd 1 is not even open in the daemon (`bulkhead >&-`)
            self.proc = subprocess.Popen(
                [BIN, "-c", self.config_path] + self.args,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=self.env, cwd=self.tmp,
                start_new_session=True, preexec_fn=lambda: os.close(1))
            t = threading.Thread(target=self._read_stderr, daemon=True)
            t.start()
            self._threads.append(t)
            self._find_ports_in_proc()
            return
        self.proc = subprocess.Popen(
            [BIN, "-c", self.config_path] + self.args,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.env, cwd=self.tmp,
            start_new_session=True)
        if self.pipe_size:
            import fcntl
            fcntl.fcntl(self.proc.stdout.fileno(),
                        getattr(fcntl, "F_SETPIPE_SZ", 1031), self.pipe_size)
        t = threading.Thread(target=self._read_stderr, daemon=True)
        t.start()
        self._threads.append(t)
        if self.stdout_mode == "read":
            t = threading.Thread(target=self._read_stdout, daemon=True)
            t.start()
            self._threads.append(t)
            self._wait_ports()
        else:
            self._read_stdout_until_ports()
            if self.stdout_mode == "closed":
                self.proc.stdout.close()

    def _listening_ports(self):
        """Loopback TCP ports the process listens on (Linux /proc)."""
        inodes = set()
        fd_dir = "/proc/%d/fd" % self.proc.pid
        try:
            for fd in os.listdir(fd_dir):
                try:
                    link = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            return []
        ports = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        return ports

    def _find_ports_in_proc(self):
        """Without log lines to read: find the two listening sockets and
        tell the admin one by its /healthz."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError("daemon exited (%s) before listening" %
                                  self.proc.returncode + self.diag())
            ports = self._listening_ports()
            if len(ports) >= 2:
                for port in ports:
                    c = http.client.HTTPConnection("127.0.0.1", port,
                                                   timeout=5)
                    try:
                        c.request("GET", "/healthz")
                        admin = c.getresponse().status == 200
                    except OSError:
                        admin = None
                    finally:
                        c.close()
                    if admin:
                        self.admin_port = port
                    elif admin is False:
                        self.api_port = port
                if self.api_port and self.admin_port:
                    return
            time.sleep(0.05)
        self.kill()
        raise DaemonError("listening sockets not found" + self.diag())

    def _add_line(self, line):
        with self._lines_cv:
            self.lines.append(line)
            if line.startswith("{"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = None
                if isinstance(ev, dict) and event_name(ev) == "listening":
                    port = int(ev["address"].rsplit(":", 1)[1])
                    if ev.get("listener") == "api":
                        self.api_port = port
                    elif ev.get("listener") == "admin":
                        self.admin_port = port
            self._lines_cv.notify_all()

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self._add_line(raw.decode("utf-8", "replace").rstrip("\n"))
        with self._lines_cv:
            self._lines_cv.notify_all()

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace"))

    def _read_stdout_until_ports(self):
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        pending = b""
        while self.api_port is None or self.admin_port is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise DaemonError("daemon did not report its ports in time" +
                                  self.diag())
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(5)
                raise DaemonError("daemon exited (%s) before listening" %
                                  self.proc.returncode + self.diag())
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                self._add_line(line.decode("utf-8", "replace"))

    def _wait_ports(self):
        deadline = time.monotonic() + START_TIMEOUT
        with self._lines_cv:
            while self.api_port is None or self.admin_port is None:
                if self.proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lines_cv.wait(min(left, 0.1))
        if self.api_port is None or self.admin_port is None:
            rc = self.proc.poll()
            self.kill()
            raise DaemonError(
                "daemon did not report both listening lines within %.0fs "
                "(exit %s)" % (START_TIMEOUT, rc) + self.diag())

    @property
    def stderr(self):
        return "".join(self._stderr)

    def diag(self, nlines=40):
        """Text to append to failure messages: stderr and the last logs."""
        with self._lines_lock:
            tail = self.lines[-nlines:]
        return ("\n--- daemon stderr ---\n%s--- last %d stdout lines ---\n%s"
                % (self.stderr, len(tail), "\n".join(tail)))

    def _kill_group(self):
        """SIGKILL to the master and every worker: the daemon runs in its
        own session, so no worker outlives a test holding its pipes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_hard(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self):
        if self.proc:
            self._kill_group()
            if self.proc.poll() is None:
                self.proc.wait(5)
        self._cleanup()

    def _cleanup(self):
        if self.proc is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self._kill_group()  # a straggler would hold the pipes open
        for t in self._threads:
            t.join(2)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is None:
                continue
            try:
                if f and not f.closed:
                    f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self, check=True, sig=signal.SIGTERM):
        """SIGTERM, wait up to 10 s; asserts exit code 0 (an ASan/UBSan
        report makes it non-zero) and no sanitizer report on stderr."""
        if self._stopped:
            return self.returncode
        self._stopped = True
        if self.proc is None:  # never started (start=False)
            self._cleanup()
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.proc.wait(5)
            for t in self._threads:
                t.join(2)
            msg = ("daemon did not exit within %ss of SIGTERM" %
                   STOP_TIMEOUT) + self.diag()
            self._cleanup()
            if check:
                raise DaemonError(msg)
            return None
        for t in self._threads:
            t.join(5)
        self.returncode = self.proc.returncode
        report = self.sanitizer_report()
        msg = None
        if self.returncode != 0:
            msg = "daemon exited with %s after SIGTERM" % self.returncode
        elif report:
            msg = "sanitizer report on daemon stderr"
        if msg:
            msg += self.diag()
        self._cleanup()
        if check and msg:
            raise DaemonError(msg)
        return self.returncode

    def sanitizer_report(self):
        err = self.stderr
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "ERROR: UndefinedBehaviorSanitizer"):
            if marker in err:
                return True
        return False

    def alive(self, settle=0.0):
        """True while the process runs; with settle, waits that long for
        it to exit first (a crash closes the sockets a moment before the
        process can be reaped)."""
        if settle:
            try:
                self.proc.wait(settle)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll() is None

    def healthy(self):
        """Alive and answering /healthz on the admin listener."""
        if not self.alive():
            return False
        try:
            r = self.request("GET", "/healthz", admin=True, timeout=3)
            return r.status == 200
        except OSError:
            return self.alive(1.0) and False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop(check=False)
            except Exception:
                pass
        return False

    # -- logs -------------------------------------------------------------

    def events(self, event=None):
        """Parsed JSON log lines (optionally one event kind)."""
        out = []
        with self._lines_lock:
            lines = list(self.lines)
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if event is None or event_name(ev) == event:
                out.append(ev)
        return out

    def wait_event(self, pred, timeout=5.0):
        """The first parsed log line satisfying pred, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events():
                if pred(ev):
                    return ev
            if time.monotonic() >= deadline:
                return None
            with self._lines_cv:
                self._lines_cv.wait(0.05)

    def request_log(self, request_id, timeout=5.0):
        """Access log lines of one request id (waits for the first)."""
        self.wait_event(lambda e: e.get("event") == "request" and
                        e.get("requestId") == request_id, timeout)
        return [e for e in self.events("request")
                if e.get("requestId") == request_id]

    # -- requests ---------------------------------------------------------

    def port(self, admin=False):
        return self.admin_port if admin else self.api_port

    def connection(self, admin=False, timeout=5.0):
        return http.client.HTTPConnection("127.0.0.1", self.port(admin),
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, admin=False,
                timeout=5.0, conn=None):
        """One request through http.client; returns a Response. With conn,
        the request goes over that (keep-alive) connection."""
        own = conn is None
        c = conn or self.connection(admin, timeout)
        try:
            hdrs = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.getheaders(), data,
                            "HTTP/1.%d" % (r.version % 10))
        finally:
            if own:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def admin(self, path, method="GET", **kw):
        """A request to the admin listener. A POST says it is JSON (the
        admin listener answers 415 otherwise) unless headers say else."""
        if method == "POST":
            hdrs = dict(kw.pop("headers", None) or {})
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/json"
            kw["headers"] = hdrs
        return self.request(method, path, admin=True, **kw)

    def raw_conn(self, admin=False, timeout=5.0):
        return RawConn(self.port(admin), timeout)

    def raw(self, data, admin=False, expect=1, timeout=5.0, close_wait=2.0,
            head=False, chunks_delay=None):
        """Sends bytes on a fresh connection (data may be a list of chunks,
        sent chunks_delay seconds apart), reads up to `expect` responses,
        then waits up to close_wait for the server to close (0: don't
        wait). Returns a RawResult."""
        t0 = time.monotonic()
        with self.raw_conn(admin, timeout) as c:
            if isinstance(data, (list, tuple)):
                for i, ch in enumerate(data):
                    if i and chunks_delay:
                        time.sleep(chunks_delay)
                    if not c.try_send(ch):
                        break
            else:
                c.try_send(data)
            resps = c.read_responses(expect, timeout, head=head)
            closed = c.eof
            if not closed and close_wait:
                closed = c.wait_closed(close_wait)
            return RawResult(resps, closed, c.buf, time.monotonic() - t0)


def run_tool(args, env=None, timeout=30):
    """Runs the binary with args (not as a daemon); returns
    CompletedProcess with text stdout/stderr."""
    e = dict((k, v) for k, v in os.environ.items()
             if not k.startswith("BULKHEAD_"))
    if env:
        e.update(env)
    return subprocess.run([BIN] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=e, timeout=timeout, universal_newlines=True)


# --------------------------------------------------------------------------
# unittest helpers
# --------------------------------------------------------------------------

class DaemonTestCase(unittest.TestCase):
    """Base class: a daemon shared by the tests of a class. Subclasses set
    CONFIG (dict or text) and optionally ENV."""

    CONFIG = None
    ENV = None
    d = None
    deaths = None

    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.d = Daemon(cls.CONFIG, env=cls.ENV)

    def setUp(self):
        # A daemon that died during an earlier test (a crash is a bug the
        # earlier test reports) is replaced so later tests still mean
        # something; tearDownClass reports every death.
        d = type(self).d
        if d is not None and not d.healthy():
            if d.alive():
                d.kill_hard()
            rc = d.proc.poll()
            type(self).deaths.append("daemon died (exit %s) before %s%s" %
                                     (rc, self.id(), d.diag()))
            d.stop(check=False)
            type(self).d = Daemon(self.CONFIG, env=self.ENV)

    @classmethod
    def tearDownClass(cls):
        errors = list(cls.deaths or [])
        if cls.d is not None:
            d, cls.d = cls.d, None
            try:
                d.stop()
            except DaemonError as e:
                errors.append(str(e))
        if errors:
            raise DaemonError("\n\n".join(errors))

    def assertProblem(self, r, status, code, msg=None):
        """Status, Problem content type, no-store, code, retryable present,
        requestId equal to the X-Request-ID header."""
        where = "%s\n%r" % (msg or "", r)
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json", where)
        self.assertEqual(r.headers.get("cache-control"), "no-store", where)
        doc = r.json()
        self.assertEqual(doc.get("status"), status, where)
        self.assertEqual(doc.get("type"), "about:blank", where)
        self.assertIsInstance(doc.get("title"), str, where)
        ext = doc.get("extensions")
        self.assertIsInstance(ext, dict, where)
        self.assertEqual(ext.get("code"), code, where)
        self.assertIsInstance(ext.get("retryable"), bool, where)
        self.assertTrue(ext.get("requestId"), where)
        self.assertEqual(ext.get("requestId"), r.headers.get("x-request-id"),
                         where)
        return doc

    def diag(self):
        return self.d.diag() if self.d else ""


def main():
    """unittest.main() that exits non-zero on failure and prints the usual
    summary."""
    unittest.main(verbosity=2)
