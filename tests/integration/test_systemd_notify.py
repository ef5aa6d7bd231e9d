"""Readiness for systemd (Type=notify): the master tells $NOTIFY_SOCKET
READY=1 once its workers serve, RELOADING=1 then READY=1 around a reload,
STOPPING=1 on SIGTERM. Without $NOTIFY_SOCKET nothing is sent. The unit file
checks the config with `bulkhead -t` before it reloads."""

import os
import signal
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402


class NotifyTest(harness.DaemonTestCase):

    def setUp(self):
        # a short path: unix socket names are limited to 107 bytes
        self.dir = tempfile.mkdtemp(prefix="bh-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)
        self.d = Daemon({"server": {"workers": 2},
                         "plugin.echo": harness.echo_section()},
                        env={"NOTIFY_SOCKET": self.path})

    def tearDown(self):
        if self.d:
            self.d.stop()
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)

    def next_state(self):
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def test_ready_reloading_stopping(self):
        st = self.next_state()
        self.assertEqual(st.get("READY"), "1", st)
        # ready means serving: both workers answer
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)
        os.kill(self.d.proc.pid, signal.SIGHUP)
        self.assertEqual(self.next_state().get("RELOADING"), "1")
        self.assertEqual(self.next_state().get("READY"), "1")
        self.assertEqual(self.d.get("/t/echo/ok").status, 200)
        self.d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.next_state().get("STOPPING"), "1")
        self.d.proc.wait(10)
        self.assertEqual(self.d.proc.returncode, 0)
        self.d.stop()
        self.d = None


class UnitFileTest(harness.unittest.TestCase):

    def test_unit_checks_before_reload_and_waits_for_readiness(self):
        with open(os.path.join(harness.SOURCE_DIR, "etc",
                               "bulkhead.service.in")) as f:
            unit = f.read()
        self.assertIn("Type=notify", unit)
        reload_lines = [l for l in unit.splitlines()
                        if l.startswith("ExecReload=")]
        self.assertTrue(any(" -t" in l for l in reload_lines), reload_lines)
        self.assertTrue(any("HUP" in l for l in reload_lines), reload_lines)


if __name__ == "__main__":
    harness.main()
