"""The Debian package and the installed tree.

Builds the .deb from this build tree (cpack -G DEB into a scratch
directory), unpacks it into a scratch root (dpkg -x) and checks what an
operator gets: every file in place, the binary running from there with the
installed example config and the installed plugins, the daemon serving and
reloading from the installed tree under W^X (MemoryDenyWriteExecute's
kernel twin, prctl PR_SET_MDWE, where the kernel has it), the systemd unit
naming the package's paths and passing `systemd-analyze verify`, its
`systemd-analyze security` exposure at most 3.0, the man page rendering
and lint-clean. Also `cmake --install` into a staging directory: the unit
follows the prefix, and an edited config is kept on a re-install.

Environment (set by tests/CMakeLists.txt): BULKHEAD_BUILD_DIR,
BULKHEAD_SOURCE_DIR, BULKHEAD_CPACK, BULKHEAD_CMAKE, BULKHEAD_VERSION,
BULKHEAD_SANITIZE.
"""

import glob
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402

BUILD = os.environ.get("BULKHEAD_BUILD_DIR") or harness.BUILD_DIR
SOURCE = os.environ.get("BULKHEAD_SOURCE_DIR") or harness.SOURCE_DIR
CPACK = os.environ.get("BULKHEAD_CPACK") or "cpack"
CMAKE = os.environ.get("BULKHEAD_CMAKE") or "cmake"
VERSION = os.environ.get("BULKHEAD_VERSION")
PLUGINS = ("auth", "billing", "webhooks", "ai")
EXPOSURE_MAX = 3.0


def run(args, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("universal_newlines", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(args, stdin=subprocess.DEVNULL, **kw)


def clean_env(**extra):
    env = dict((k, v) for k, v in os.environ.items()
               if not k.startswith("BULKHEAD_"))
    env.update(extra)
    return env


def exec_lines(unit):
    """(key, path, rest) of every Exec*= line, the path without systemd's
    prefix characters (-@:+!)."""
    out = []
    for line in unit.splitlines():
        m = re.match(r"^(Exec\w+)=([-@:+!]*)(\S+)(.*)$", line)
        if m:
            out.append((m.group(1), m.group(3), m.group(4)))
    return out


class DebTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bulkhead-deb-")
        out = os.path.join(cls.tmp, "out")
        # the package of the tree ctest runs in, built out of it: cpack's
        # staging and the .deb stay in the scratch directory
        r = run([CPACK, "-G", "DEB", "--config",
                 os.path.join(BUILD, "CPackConfig.cmake"), "-B", out],
                cwd=cls.tmp, timeout=300)
        if r.returncode != 0:
            raise AssertionError("cpack failed (%d):\n%s" %
                                 (r.returncode, r.stdout))
        debs = glob.glob(os.path.join(out, "*.deb"))
        if len(debs) != 1:
            raise AssertionError("expected one .deb in %s, got %s\n%s" %
                                 (out, debs, r.stdout))
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        r = run(["dpkg", "-x", cls.deb, cls.root])
        if r.returncode != 0:
            raise AssertionError("dpkg -x failed:\n" + r.stdout)
        cls.control = os.path.join(cls.tmp, "control")
        r = run(["dpkg-deb", "-e", cls.deb, cls.control])
        if r.returncode != 0:
            raise AssertionError("dpkg-deb -e failed:\n" + r.stdout)
        cls.unit_path = os.path.join(cls.root,
                                     "usr/lib/systemd/system/bulkhead.service")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def at(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def plugin_dir(self):
        dirs = [d for d in glob.glob(self.at("usr/lib/**/bulkhead"),
                                     recursive=True) if os.path.isdir(d)]
        self.assertEqual(len(dirs), 1, dirs)
        return dirs[0]

    def unit(self):
        with open(self.unit_path) as f:
            return f.read()

    # -- the package --------------------------------------------------------

    def test_control(self):
        r = run(["dpkg-deb", "-f", self.deb, "Package", "Version",
                 "Architecture", "Depends"])
        self.assertEqual(r.returncode, 0, r.stdout)
        fields = dict(l.split(": ", 1) for l in r.stdout.splitlines()
                      if ": " in l)
        self.assertEqual(fields.get("Package"), "bulkhead", r.stdout)
        if VERSION:
            self.assertEqual(fields.get("Version"), VERSION, r.stdout)
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(fields.get("Architecture"), arch, r.stdout)
        # library dependencies found by dpkg-shlibdeps
        for lib in ("libuv1", "libsqlite3-0", "libjansson4", "libsystemd0"):
            self.assertIn(lib, fields.get("Depends", ""), r.stdout)
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/bulkhead/bulkhead.ini"])
        for s in ("postinst", "prerm", "postrm"):
            p = os.path.join(self.control, s)
            self.assertTrue(os.access(p, os.X_OK), s)
            self.assertEqual(run(["sh", "-n", p]).returncode, 0, s)

    def test_files(self):
        for p in ("usr/bin/bulkhead",):
            self.assertTrue(os.access(self.at(p), os.X_OK), p)
        pdir = self.plugin_dir()
        for name in PLUGINS:
            self.assertTrue(os.path.isfile(os.path.join(pdir, name + ".so")),
                            name)
        for p in ("usr/include/bulkhead/plugin.h",
                  "usr/include/bulkhead/json.h",
                  "usr/share/bulkhead/cmake/embed_schema.cmake",
                  "usr/lib/systemd/system/bulkhead.service",
                  "etc/bulkhead/bulkhead.ini",
                  "usr/share/man/man8/bulkhead.8.gz",
                  "usr/share/doc/bulkhead/README.md",
                  "usr/share/doc/bulkhead/PLUGINS.md",
                  "usr/share/doc/bulkhead/examples/bulkhead.ini"):
            self.assertTrue(os.path.isfile(self.at(p)), p)
        pcs = glob.glob(self.at("usr/lib/**/pkgconfig/bulkhead.pc"),
                        recursive=True)
        self.assertEqual(len(pcs), 1, pcs)
        # the installed config is the documented example, readable by the
        # service's dynamic user
        with open(self.at("etc/bulkhead/bulkhead.ini")) as f, \
                open(os.path.join(SOURCE, "etc/bulkhead.ini")) as g:
            self.assertEqual(f.read(), g.read())
        self.assertEqual(os.stat(self.at("etc/bulkhead/bulkhead.ini")).st_mode
                         & 0o777, 0o644)
        # nothing of the build tree or of /usr/local in the package
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        self.assertNotIn("/usr/local", listing)
        self.assertNotIn("test-plugins", listing)
        self.assertNotIn("bulkhead-sim", listing)

    def test_pkg_config_relocatable(self):
        if not shutil.which("pkg-config"):
            self.skipTest("no pkg-config")
        pc_dir = os.path.dirname(glob.glob(
            self.at("usr/lib/**/pkgconfig/bulkhead.pc"), recursive=True)[0])
        r = run(["pkg-config", "--cflags", "bulkhead"],
                env=clean_env(PKG_CONFIG_PATH=pc_dir, PKG_CONFIG_LIBDIR=pc_dir))
        self.assertEqual(r.returncode, 0, r.stdout)
        incs = [os.path.realpath(a[2:]) for a in r.stdout.split()
                if a.startswith("-I")]
        # the .pc finds its prefix from where it lies: the scratch root
        self.assertEqual(incs, [os.path.realpath(self.at("usr/include"))],
                         r.stdout)

    # -- the binary from the package ----------------------------------------

    def test_version(self):
        r = run([self.at("usr/bin/bulkhead"), "--version"], env=clean_env())
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertTrue(r.stdout.startswith("bulkhead %s " % (VERSION or "")),
                        r.stdout)

    def check_config(self, env):
        data = tempfile.mkdtemp(dir=self.tmp)
        env = clean_env(BULKHEAD_SERVER_DATA_DIR=os.path.join(data, "d"),
                        **env)
        r = run([self.at("usr/bin/bulkhead"), "-t", "-c",
                 self.at("etc/bulkhead/bulkhead.ini")], env=env, cwd=data)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("configuration OK, %d plugin(s)" % len(PLUGINS),
                      r.stdout)
        loaded = {}
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                ev = json.loads(line)
                if ev.get("event") == "plugin_initialized":
                    loaded[ev["plugin"]] = os.path.realpath(ev["path"])
        self.assertEqual(sorted(loaded), sorted(PLUGINS), r.stdout)
        for name, path in loaded.items():
            self.assertEqual(os.path.dirname(path),
                             os.path.realpath(self.plugin_dir()), name)

    def test_check_installed_config(self):
        # the plugins found from the binary's own place, as on a real host
        self.check_config({})
        # and through plugin_dir, set to the scratch root's
        self.check_config({"BULKHEAD_SERVER_PLUGIN_DIR": self.plugin_dir()})

    def test_daemon_serves_and_reloads_from_the_package(self):
        wrapper = os.path.join(self.tmp, "bulkhead-mdwe")
        with open(wrapper, "w") as f:
            f.write(MDWE_WRAPPER % {"python": sys.executable,
                                    "bin": self.at("usr/bin/bulkhead")})
        os.chmod(wrapper, 0o755)
        mdwe = run([sys.executable, wrapper, "--mdwe-probe"])
        if mdwe.returncode != 0:
            print("note: no PR_SET_MDWE here (%s); the daemon runs without "
                  "W^X" % mdwe.stdout.strip())
        saved = harness.BIN
        harness.BIN = wrapper
        try:
            d = harness.Daemon("", start=False,
                               args=["--listen", "127.0.0.1:0",
                                     "--admin-listen", "127.0.0.1:0"],
                               env={"BULKHEAD_SERVER_DATA_DIR":
                                    os.path.join(self.tmp, "state")})
            d.config_path = self.at("etc/bulkhead/bulkhead.ini")
            d.start()
        finally:
            harness.BIN = saved
        try:
            r = d.request("GET", "/readyz", admin=True)
            self.assertEqual(r.status, 200, d.diag())
            if mdwe.returncode == 0:
                self.assertIn("mdwe=on", d.stderr, d.diag())
            # every packaged plugin initialised in the daemon, from the
            # package's plugin directory
            inited = d.events("plugin_initialized")
            self.assertEqual(sorted(e["plugin"] for e in inited),
                             sorted(PLUGINS), d.diag())
            for e in inited:
                self.assertEqual(os.path.dirname(os.path.realpath(e["path"])),
                                 os.path.realpath(self.plugin_dir()), e)
            # a route of a packaged plugin answers (a Problem: no session)
            r = d.get("/v1/webhooks/endpoints")
            self.assertEqual(r.status, 401, d.diag())
            # SIGHUP (the unit's ExecReload) re-reads the installed config
            # and a new generation of workers serves
            os.kill(d.proc.pid, signal.SIGHUP)
            self.assertIsNotNone(d.wait_event(
                lambda e: e.get("event") == "reload", timeout=10), d.diag())
            deadline = time.monotonic() + 20
            while True:
                st = d.request("GET", "/admin/status", admin=True).json()
                if st.get("generation") == 2 and not st.get("reloading"):
                    break
                self.assertLess(time.monotonic(), deadline,
                                "%r%s" % (st, d.diag()))
                time.sleep(0.1)
            self.assertEqual(d.get("/v1/webhooks/endpoints").status, 401,
                             d.diag())
        finally:
            d.stop()
        self.assertEqual(d.returncode, 0, d.diag())

    # -- the unit -----------------------------------------------------------

    def test_unit_names_the_package_paths(self):
        unit = self.unit()
        self.assertNotIn("/usr/local", unit)
        self.assertIn("Type=notify", unit)
        self.assertIn("StateDirectory=bulkhead", unit)
        self.assertIn("BULKHEAD_SERVER_DATA_DIR=%S/bulkhead", unit)
        execs = exec_lines(unit)
        keys = [k for k, _, _ in execs]
        for k in ("ExecStart", "ExecStartPre", "ExecReload"):
            self.assertIn(k, keys)
        for k, path, rest in execs:
            if path.endswith("/bulkhead"):
                self.assertEqual(path, "/usr/bin/bulkhead", k)
                self.assertIn("-c /etc/bulkhead/bulkhead.ini", rest, k)
                self.assertTrue(os.access(self.at(path), os.X_OK), path)
        self.assertTrue(any("HUP" in rest for k, _, rest in execs
                            if k == "ExecReload"), execs)

    def test_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.fail("systemd-analyze missing (scripts/deps.sh installs "
                      "systemd)")
        # verify checks that each command exists on this host: point the
        # package's own commands into the scratch root (after the test
        # above made sure they name /usr/bin/bulkhead), keep the rest
        unit = self.unit()
        for _, path, _ in exec_lines(unit):
            if path.startswith("/usr/bin/bulkhead"):
                unit = unit.replace("=" + path + " ", "=" + self.at(path) + " ")
        vdir = os.path.join(self.tmp, "verify")
        os.makedirs(vdir, exist_ok=True)
        vunit = os.path.join(vdir, "bulkhead.service")
        with open(vunit, "w") as f:
            f.write(unit)
        # Documentation=man:bulkhead(8) is looked up with man(1): in the
        # scratch root's man pages
        r = run(["systemd-analyze", "verify", vunit], cwd=vdir,
                env=clean_env(MANPATH=self.at("usr/share/man"),
                              SYSTEMD_LOG_LEVEL="notice"))
        self.assertEqual(r.returncode, 0, r.stdout)
        # any warning (an unknown or misspelt setting) fails as well
        self.assertEqual(r.stdout.strip(), "", r.stdout)

    def test_systemd_analyze_security(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze missing")
        r = run(["systemd-analyze", "security", "--offline=yes",
                 "--no-pager", self.unit_path],
                env=clean_env(SYSTEMD_COLORS="0"))
        if r.returncode != 0 and re.search(r"unrecognized option|Unknown "
                                           r"option|--offline", r.stdout):
            print("SKIP security: this systemd-analyze cannot rate a unit "
                  "file offline: " + r.stdout.strip().splitlines()[-1])
            self.skipTest("systemd-analyze security --offline unsupported")
        self.assertEqual(r.returncode, 0, r.stdout)
        m = re.search(r"Overall exposure level for bulkhead\.service: "
                      r"([0-9.]+) (\w+)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        print("exposure: %s %s" % (m.group(1), m.group(2)))
        self.assertLessEqual(float(m.group(1)), EXPOSURE_MAX, r.stdout)
        self.assertEqual(m.group(2), "OK", r.stdout)

    # -- the man page --------------------------------------------------------

    def test_man_page(self):
        page = self.at("usr/share/man/man8/bulkhead.8.gz")
        with gzip.open(page, "rt") as f:
            text = f.read()
        self.assertIn(".Dt BULKHEAD 8", text)
        if shutil.which("mandoc"):
            r = run(["mandoc", "-T", "lint", "-W", "warning", page])
            self.assertEqual(r.returncode, 0, r.stdout)
        else:
            print("note: no mandoc, lint skipped")
        r = run(["man", "-l", page], env=clean_env(MANWIDTH="80",
                                                   MAN_KEEP_FORMATTING=""))
        self.assertEqual(r.returncode, 0, r.stdout)
        for word in ("SYNOPSIS", "bulkhead -t", "SIGHUP",
                     "/etc/bulkhead/bulkhead.ini"):
            self.assertIn(word, r.stdout)


class CmakeInstallTest(unittest.TestCase):
    """cmake --install puts the unit and the example config in place, with
    the paths of the prefix it installs to."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-inst-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def install(self, prefix):
        r = run([CMAKE, "--install", BUILD, "--prefix", prefix],
                env=dict(os.environ, DESTDIR=self.tmp))
        self.assertEqual(r.returncode, 0, r.stdout)
        return r.stdout

    def test_unit_and_config_follow_the_prefix(self):
        self.install("/opt/bh")
        unit = os.path.join(self.tmp, "opt/bh/lib/systemd/system/"
                            "bulkhead.service")
        with open(unit) as f:
            text = f.read()
        execs = dict((k, (p, rest)) for k, p, rest in exec_lines(text))
        self.assertEqual(execs["ExecStart"][0], "/opt/bh/bin/bulkhead")
        self.assertIn("-c /etc/opt/bh/bulkhead/bulkhead.ini",
                      execs["ExecStart"][1])
        self.assertTrue(os.path.isfile(os.path.join(
            self.tmp, "etc/opt/bh/bulkhead/bulkhead.ini")))
        self.assertTrue(os.access(os.path.join(self.tmp, "opt/bh/bin/bulkhead"),
                                  os.X_OK))

    def test_reinstall_keeps_an_edited_config(self):
        self.install("/usr/local")
        ini = os.path.join(self.tmp, "usr/local/etc/bulkhead/bulkhead.ini")
        with open(os.path.join(self.tmp, "usr/local/lib/systemd/system/"
                               "bulkhead.service")) as f:
            self.assertIn("ExecStart=/usr/local/bin/bulkhead -c "
                          "/usr/local/etc/bulkhead/bulkhead.ini\n", f.read())
        with open(ini, "a") as f:
            f.write("# edited by the operator\n")
        out = self.install("/usr/local")
        with open(ini) as f:
            self.assertTrue(f.read().endswith("# edited by the operator\n"))
        self.assertTrue(os.path.isfile(ini + ".new"), out)
        self.assertIn("Keeping", out)


# Runs the daemon with PR_SET_MDWE (Linux 6.3+), what systemd's
# MemoryDenyWriteExecute= enforces with seccomp: no mapping both writable
# and executable, none made executable later. Kept across execve.
MDWE_WRAPPER = """#!%(python)s
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    err = os.strerror(ctypes.get_errno())
    if sys.argv[1:] == ["--mdwe-probe"]:
        print(err)
        sys.exit(1)
elif sys.argv[1:] == ["--mdwe-probe"]:
    sys.exit(0)
else:
    sys.stderr.write("mdwe=on\\n")
    sys.stderr.flush()
os.execv("%(bin)s", ["%(bin)s"] + sys.argv[1:])
"""


if __name__ == "__main__":
    unittest.main(verbosity=2)
