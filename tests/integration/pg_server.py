"""A private PostgreSQL for the tests: initdb in a temporary directory, a
free loopback port, trust authentication for the loopback only, started
with pg_ctl and stopped (and removed) after. PostgreSQL refuses to run as
root: then the server runs as the unprivileged user `nobody` (setpriv),
which owns the directory. Standard library only.

    pg = PgServer()          # initdb + start
    pg.url                   # postgresql://bulkhead@127.0.0.1:PORT/bulkhead
    pg.stop(); pg.start()    # the same cluster, the same port
    pg.psql("SELECT 1")      # one statement through psql, its output
    pg.destroy()
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

USER = "bulkhead"  # the cluster's superuser and the database's name


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    raise RuntimeError("no PostgreSQL server binaries (apt-get install "
                       "postgresql; scripts/deps.sh does)")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer(object):
    def __init__(self, start=True):
        self.bindir = _bindir()
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-pg-")
        self.datadir = os.path.join(self.tmp, "data")
        self.logfile = os.path.join(self.tmp, "server.log")
        self.port = _free_port()
        self.url = "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, USER)
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            os.chmod(self.tmp, 0o700)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as = ["setpriv", "--reuid=%d" % pw.pw_uid,
                        "--regid=%d" % pw.pw_gid, "--clear-groups", "--"]
        self._run("initdb", "-D", self.datadir, "-U", USER, "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\n"
                    "max_connections = 100\n" % (self.port, self.tmp))
        self.running = False
        if start:
            self.start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", USER, USER)

    def _run(self, tool, *args, **kw):
        cmd = self._as + [os.path.join(self.bindir, tool)] + list(args)
        return subprocess.run(cmd, check=kw.get("check", True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=self.tmp, timeout=kw.get("timeout", 60))

    def start(self):
        self._run("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w",
                  "-t", "30", "start")
        self.running = True

    def stop(self):
        if self.running:
            self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w",
                      "stop", check=False)
        self.running = False

    def psql(self, sql):
        r = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                      USER, "-d", USER, "-At", "-v", "ON_ERROR_STOP=1", "-c",
                      sql)
        return r.stdout.decode().strip()

    def log(self):
        try:
            with open(self.logfile) as f:
                return f.read()
        except OSError:
            return ""

    def destroy(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.destroy()


def wait_for(pred, timeout=10.0, every=0.1):
    """pred() until truthy or the timeout; its last value."""
    end = time.time() + timeout
    v = pred()
    while not v and time.time() < end:
        time.sleep(every)
        v = pred()
    return v
