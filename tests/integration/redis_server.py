"""A private redis-server for the tests: a free loopback port, a temporary
directory, no persistence (no RDB, no AOF), stopped (and its directory
removed) by stop() or on leaving a `with` block. Works as root or not:
redis-server needs no privilege and drops none.

    with RedisServer() as rs:
        rs.url          # "redis://127.0.0.1:PORT"
        rs.cli("PING")  # "PONG" (a minimal RESP client, no redis-py)
        rs.stop(); rs.start()   # same port and password, empty data
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader(object):
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)


class RedisError(Exception):
    pass


class RedisServer(object):
    def __init__(self, password=None, unix=False, start=True):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-redis-")
        self.port = _free_port()
        self.password = password
        self.socket_path = os.path.join(self.tmp, "redis.sock") if unix else None
        self.proc = None
        self.log_path = os.path.join(self.tmp, "redis.log")
        if start:
            self.start()

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def start(self, timeout=10.0):
        args = [REDIS_SERVER, "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", self.tmp,
                "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", self.log_path,
                "--protected-mode", "yes",
                # DEBUG SLEEP makes a slow server on demand (7.x refuses
                # DEBUG unless enabled; older versions have no such option)
                "--enable-debug-command", "local"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.socket_path:
            args += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                if "enable-debug-command" in err:
                    args.remove("--enable-debug-command")
                    args.remove("local")
                    self.proc = subprocess.Popen(
                        args, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        start_new_session=True)
                    continue
                raise RuntimeError("redis-server exited: %s %s" %
                                   (err, self._log_tail()))
            try:
                if self.cli("PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer on port %d: %s" %
                           (self.port, self._log_tail()))

    def _log_tail(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def cli(self, *args, timeout=5.0):
        """One command on a fresh connection; the reply decoded."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            r = _Reader(s)
            if self.password:
                s.sendall(_encode(["AUTH", self.password]))
                r.reply()
            s.sendall(_encode(args))
            return r.reply()

    def send_nowait(self, *args):
        """Sends a command and leaves its connection open without reading
        (DEBUG SLEEP blocks the server meanwhile); close() it later."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
        if self.password:
            s.sendall(_encode(["AUTH", self.password]))
        s.sendall(_encode(args))
        return s

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
