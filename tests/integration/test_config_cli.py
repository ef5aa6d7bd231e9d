"""Command line and config checking: `bulkhead -t -c FILE` exits 0 on a good
config and non-zero with "FILE:LINE: [section] key: ..." on a bad one;
--version; --list-codes; route conflicts between plugins are refused at load
naming both plugins."""

import json
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Daemon, DaemonError, plugin, run_tool,  # noqa: E402
                     test_plugin)


class ConfigCliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-cli-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, text, name="bulkhead.ini"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text.replace("@DATA@", self.data)
                    .replace("@ECHO@", test_plugin("echo")))
        return path

    def good(self):
        return ("[server]\n"
                "listen = 127.0.0.1:0\n"
                "admin_listen = 127.0.0.1:0\n"
                "data_dir = @DATA@\n"
                "\n"
                "[plugin.echo]\n"
                "path = @ECHO@\n"
                "mount = /t/echo\n")

    def check(self, path, env=None):
        return run_tool(["-t", "-c", path], env=env)

    def assertConfigError(self, text, line, section, key, what=None):
        path = self.write(text)
        res = self.check(path)
        self.assertNotEqual(res.returncode, 0, res.stderr)
        prefix = "%s:%d: [%s]%s: " % (path, line, section,
                                      " " + key if key else "")
        self.assertIn(prefix, res.stderr)
        if what:
            self.assertIn(what, res.stderr)
        self.assertEqual(res.stdout, "")
        return res

    def test_help_lists_environment_and_listeners(self):
        res = run_tool(["--help"])
        self.assertEqual(res.returncode, 0, res.stderr)
        out = res.stdout
        for want in ("--listen HOST:PORT", "--admin-listen HOST:PORT",
                     "replacing [server] listen",
                     "replacing [server] admin_listen", "Environment:",
                     "BULKHEAD_<SECTION>_<KEY>", "@env:VAR", "NOTIFY_SOCKET",
                     "bulkhead [-c FILE] user"):
            self.assertIn(want, out)

    def test_open_admin_listener_needs_a_token(self):
        base = self.good().replace("admin_listen = 127.0.0.1:0",
                                   "admin_listen = 0.0.0.0:0")
        path = self.write(base)
        res = self.check(path)
        self.assertEqual(res.returncode, 2, res.stderr)
        lines = res.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, res.stderr)
        self.assertIn("admin_listen = 0.0.0.0:0 is not a loopback address",
                      lines[0])
        self.assertIn("admin_token is not set", lines[0])
        self.assertIn(path, lines[0])
        # the same at start-up, and for --admin-listen
        res = run_tool(["-c", path], timeout=10)
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("admin_token is not set", res.stderr)
        res = run_tool(["-t", "-c", self.write(self.good(), "lo.ini"),
                        "--admin-listen", "[::]:0"])
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("admin_listen = [::]:0 is not a loopback", res.stderr)
        # with a token it passes; loopback ones pass without
        tok = base.replace("[server]\n",
                           "[server]\nadmin_token = " + "t" * 24 + "\n")
        res = self.check(self.write(tok, "tok.ini"))
        self.assertEqual(res.returncode, 0, res.stderr)
        for addr in ("localhost:0", "127.0.0.2:0", "[::1]:0"):
            with self.subTest(addr=addr):
                res = self.check(self.write(self.good().replace(
                    "admin_listen = 127.0.0.1:0", "admin_listen = " + addr),
                    "a.ini"))
                self.assertEqual(res.returncode, 0, res.stderr)
        self.assertNotIn("t" * 24, res.stderr)

    def test_metrics_token_is_checked(self):
        self.assertConfigError(
            self.good().replace("[server]\n",
                                "[server]\nmetrics_token = short\n"),
            2, "server", "metrics_token", "at least 16")

    def test_version(self):
        res = run_tool(["--version"])
        self.assertEqual(res.returncode, 0)
        self.assertRegex(
            res.stdout.strip(),
            r"^bulkhead \d+\.\d+\.\d+\S* \(plugin ABI \d+\.\d+\)$")

    def test_good_config(self):
        res = self.check(self.write(self.good()))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("OK", res.stderr)

    def test_example_config_checks(self):
        # the documented example, pointed at this build's plugins
        src = os.path.join(harness.SOURCE_DIR, "etc", "bulkhead.ini")
        if not os.path.exists(src):
            self.skipTest("no etc/bulkhead.ini")
        with open(src) as f:
            text = f.read()
        text = re.sub(r"(?m)^data_dir *=.*$", "data_dir = " + self.data, text)
        text = re.sub(r"(?m)^# *plugin_dir *=.*$",
                      "plugin_dir = " + harness.PLUGIN_DIR, text)
        res = self.check(self.write(text))
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_unknown_server_key(self):
        self.assertConfigError(self.good().replace(
            "data_dir", "bogus_key = 1\ndata_dir"), 4, "server", "bogus_key")

    def test_upstream_section_is_checked_without_loading_its_plugin(self):
        # -t and a reload must refuse what a worker would refuse later
        base = self.good() + "\n[upstream.echo]\nurl = http://127.0.0.1:9\n"
        n = base.count("\n")
        self.assertConfigError(base + "timeout_ms = soon\n", n + 1,
                               "upstream.echo", "timeout_ms", "soon")
        self.assertConfigError(base + "breaker_mode = sometimes\n", n + 1,
                               "upstream.echo", "breaker_mode")
        self.assertConfigError(base + "colour = blue\n", n + 1,
                               "upstream.echo", "colour", "unknown key")
        self.assertConfigError(base + "transport = h2\n", n + 1,
                               "upstream.echo", "transport", "auto or curl")
        self.assertConfigError(base + "max_idle = -1\n", n + 1,
                               "upstream.echo", "max_idle", "-1")
        self.assertConfigError(base + "idle_timeout_ms = 5\n", n + 1,
                               "upstream.echo", "idle_timeout_ms", "5")
        self.assertConfigError(base + "max_connections = lots\n", n + 1,
                               "upstream.echo", "max_connections", "lots")
        self.assertConfigError(base + "dns_ttl_ms = 1e3\n", n + 1,
                               "upstream.echo", "dns_ttl_ms", "1e3")
        res = self.check(self.write(
            base + "header.Authorization = @env:BH_TEST_NOT_SET_ANYWHERE\n"))
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("BH_TEST_NOT_SET_ANYWHERE is not set", res.stderr)
        res = self.check(self.write(base + "rate_limit = nowhere\n"))
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("[rate_limit.nowhere]", res.stderr)

    def test_rate_limit_section_is_checked_even_unused(self):
        base = self.good() + "\n[rate_limit.spare]\n"
        n = base.count("\n")
        self.assertConfigError(base + "quota = many\n", n + 1,
                               "rate_limit.spare", "quota", "many")
        self.assertConfigError(base + "rate = 5\n", n + 1,
                               "rate_limit.spare", "rate", "unknown key")
        self.assertConfigError(base + "unit = bytes\n", n + 1,
                               "rate_limit.spare", "unit", "requests or tokens")
        # a token budget is charged by a plugin: no route or upstream counts
        # requests with it
        tokens = "\n[rate_limit.tok]\nunit = tokens\n"
        res = self.check(self.write(self.good() + "rate_limit = tok\n" +
                                    tokens))
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("[rate_limit.tok] counts tokens", res.stderr)
        res = self.check(self.write(
            self.good() + "\n[upstream.echo]\nurl = http://127.0.0.1:9\n"
            "rate_limit = tok\n" + tokens))
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("[rate_limit.tok] counts tokens", res.stderr)
        res = self.check(self.write(self.good() + tokens))
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_timeout_below_minimum(self):
        text = self.good().replace("data_dir",
                                   "header_timeout_ms = 50\ndata_dir")
        self.assertConfigError(text, 4, "server", "header_timeout_ms", "50")

    def test_not_a_number(self):
        text = self.good().replace("data_dir",
                                   "max_body_bytes = 10k\ndata_dir")
        self.assertConfigError(text, 4, "server", "max_body_bytes", "10k")

    def test_bad_listen_address(self):
        text = self.good().replace("listen = 127.0.0.1:0\n",
                                   "listen = 127.0.0.1:99999\n", 1)
        self.assertConfigError(text, 2, "server", "listen")

    def test_bad_trusted_proxies(self):
        for bad in ("10.0.0.0/33", "proxy.example", "::/129"):
            with self.subTest(bad=bad):
                text = self.good().replace(
                    "data_dir", "trusted_proxies = 127.0.0.1, %s\ndata_dir"
                    % bad)
                self.assertConfigError(text, 4, "server", "trusted_proxies",
                                       bad)

    def test_bad_log_format(self):
        text = self.good().replace("data_dir", "log_format = gelf\ndata_dir")
        self.assertConfigError(text, 4, "server", "log_format", "gelf")

    def test_bad_problem_style(self):
        text = self.good().replace("data_dir",
                                   "problem_style = sideways\ndata_dir")
        self.assertConfigError(text, 4, "server", "problem_style",
                               "sideways")

    def test_short_admin_token_is_not_echoed(self):
        text = self.good().replace("data_dir",
                                   "admin_token = tooShort99\ndata_dir")
        res = self.assertConfigError(text, 4, "server", "admin_token")
        self.assertNotIn("tooShort99", res.stderr)

    def test_duplicate_key(self):
        text = self.good() + "mount = /t/other\n"
        self.assertConfigError(text, 9, "plugin.echo", "mount", "line 8")

    def test_plugin_without_mount(self):
        text = self.good() + "\n[plugin.other]\npath = /x.so\n"
        self.assertConfigError(text, 10, "plugin.other", "mount")

    def test_bad_mount(self):
        text = self.good().replace("mount = /t/echo", "mount = t/echo")
        self.assertConfigError(text, 8, "plugin.echo", "mount")

    def test_unknown_section(self):
        text = self.good() + "\n[bogus]\nx = 1\n"
        self.assertConfigError(text, 10, "bogus", None)

    def test_bad_bool(self):
        text = self.good() + "required = maybe\n"
        self.assertConfigError(text, 9, "plugin.echo", "required", "maybe")

    def test_environment_override_error_names_the_variable(self):
        path = self.write(self.good())
        res = self.check(path, env={"BULKHEAD_SERVER_HEADER_TIMEOUT_MS": "5"})
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("BULKHEAD_SERVER_HEADER_TIMEOUT_MS", res.stderr)
        self.assertIn("[server] header_timeout_ms", res.stderr)

    def test_missing_file(self):
        path = os.path.join(self.tmp, "nope.ini")
        res = self.check(path)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(path, res.stderr)

    def test_unknown_argument(self):
        res = run_tool(["--bogus"])
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("usage", res.stderr)

    def test_check_fails_when_a_plugin_fails(self):
        text = self.good() + ("\n[plugin.badabi]\npath = %s\n"
                              "mount = /t/badabi\n" % test_plugin("badabi"))
        res = self.check(self.write(text))
        self.assertNotEqual(res.returncode, 0, res.stderr)
        self.assertIn("badabi", res.stderr)

    def test_daemon_refuses_to_start_on_bad_config(self):
        path = self.write(self.good().replace(
            "data_dir", "bogus_key = 1\ndata_dir"))
        res = run_tool(["-c", path], timeout=10)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("%s:4: [server] bogus_key: " % path, res.stderr)

    def test_list_codes(self):
        text = self.good() + ("\n[plugin.billing]\npath = %s\n"
                              "mount = /v1/billing\n"
                              "\n[upstream.billing]\nurl = %s\n" %
                              (plugin("billing"), harness.DEAD_UPSTREAM))
        res = run_tool(["--list-codes", "-c", self.write(text)])
        self.assertEqual(res.returncode, 0, res.stderr)
        doc = json.loads(res.stdout)  # stdout is the catalogue, nothing else
        codes = [c["code"] for c in doc["codes"]]
        self.assertEqual(len(codes), len(set(codes)))
        for c in doc["codes"]:
            self.assertRegex(c["code"], r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
            self.assertEqual(set(c), {"code", "status", "title", "detail",
                                      "retryable", "owner"}, c)
            prefix = c["code"].split(".")[0]
            if c["owner"] != "core":
                self.assertEqual(prefix, c["owner"], c)
        self.assertIn("request.bad_request", codes)
        self.assertIn("echo.timeout", codes)
        self.assertIn("billing.payment_unavailable", codes)
        self.assertIn("request.field_type", doc["fieldCodes"])


class RouteConflictTest(unittest.TestCase):
    """conflict.so registers GET /t/echo/conflict-target, which echo already
    owns; its mount is nested inside echo's. Refused at load, naming both
    plugins, whichever layer refuses it (config check or route registry);
    echo keeps its route."""

    CONFIG = {
        "plugin.echo": harness.echo_section(),
        "plugin.conflict": {"path": test_plugin("conflict"),
                            "mount": "/t/echo/conflict-target"},
    }

    def test_check_refuses_naming_both(self):
        d = Daemon(self.CONFIG, start=False)
        try:
            res = run_tool(["-t", "-c", d.config_path])
        finally:
            d.stop()
        self.assertNotEqual(res.returncode, 0, res.stderr)
        err = res.stderr + res.stdout
        self.assertIn("conflict", err.replace("conflict-target", ""))
        self.assertIn("echo", err.replace("/t/echo", ""))

    def test_daemon_refuses_the_conflict(self):
        try:
            d = Daemon(self.CONFIG)
        except DaemonError as e:
            # the whole config was refused: the message names both
            msg = str(e)
            self.assertIn("[plugin.conflict]", msg)
            self.assertIn("[plugin.echo]", msg)
            return
        with d:
            # the daemon runs: the conflicting plugin alone is refused, and
            # its status and log line name the other plugin
            st = {p["name"]: p for p in d.admin("/admin/status").json()
                  ["plugins"]}
            self.assertEqual(st["echo"]["state"], "loaded", st)
            self.assertEqual(st["conflict"]["state"], "failed", st)
            self.assertEqual(st["conflict"]["routes"], [])
            self.assertIn("'echo'", st["conflict"]["lastError"])
            self.assertIn("/t/echo/conflict-target",
                          st["conflict"]["lastError"])
            fails = [e for e in d.events("plugin_load_failed")
                     if e.get("plugin") == "conflict"]
            self.assertEqual(len(fails), 1, d.diag())
            self.assertIn("'echo'", fails[0].get("error", ""))
            self.assertEqual(d.events("plugin_load_failed"), fails)
            # echo's other routes are untouched
            self.assertEqual(d.get("/t/echo/ok").status, 200)
            # the contested path never reaches conflict.so's handler: echo
            # serves it, or the refused plugin's mount answers unavailable
            r = d.get("/t/echo/conflict-target")
            if r.status == 200:
                self.assertEqual(r.json(), {"plugin": "echo",
                                            "route": "conflict"})
            else:
                self.assertEqual((r.status, r.code),
                                 (503, "plugin.unavailable"), r)
                self.assertEqual(r.ext.get("plugin"), "conflict", r)

    def test_conflict_within_one_plugin(self):
        cfg = {"plugin.echo": harness.echo_section(),
               "plugin.conflict": {"path": test_plugin("conflict"),
                                   "mount": "/t/conflict",
                                   "route": "/t/conflict/target"}}
        with Daemon(cfg) as d:
            st = {p["name"]: p for p in d.admin("/admin/status").json()
                  ["plugins"]}
            self.assertEqual(st["conflict"]["state"], "failed")
            self.assertIn("conflict", st["conflict"]["lastError"])
            self.assertIn("/t/conflict/target", st["conflict"]["lastError"])
            r = d.get("/t/conflict/target")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.code, "plugin.unavailable")
            self.assertEqual(d.get("/t/echo/ok").status, 200)


if __name__ == "__main__":
    harness.main()
