"""The third-party path: install the SDK, build examples/hello out of tree
with nothing but the installed header and pkg-config, load it into the
installed daemon, and check it serves while exporting only its entry."""

import glob
import os
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import Daemon


class ExamplePluginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bulkhead-example-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        subprocess.run(["cmake", "--install", harness.BUILD_DIR, "--prefix",
                        cls.prefix], check=True, stdout=subprocess.DEVNULL)
        pcs = glob.glob(os.path.join(cls.prefix, "**", "bulkhead.pc"),
                        recursive=True)
        assert len(pcs) == 1, pcs
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        # a compiler that knows nothing of the source tree
        env.pop("CFLAGS", None)
        build = os.path.join(cls.tmp, "hello-build")
        src = os.path.join(harness.SOURCE_DIR, "examples", "hello")
        subprocess.run(["cmake", "-S", src, "-B", build], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        cls.so = os.path.join(build, "hello.so")
        cls.pkg_cflags = subprocess.run(
            ["pkg-config", "--cflags", "bulkhead"], env=env, check=True,
            capture_output=True, text=True).stdout

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_cflags_point_into_the_install_prefix(self):
        # the .pc file is relocatable: its include dir is where it was put
        inc = [f[2:] for f in self.pkg_cflags.split() if f.startswith("-I")]
        self.assertEqual(len(inc), 1, self.pkg_cflags)
        self.assertTrue(os.path.isfile(
            os.path.join(inc[0], "bulkhead", "plugin.h")), inc)
        self.assertIn("-fvisibility=hidden", self.pkg_cflags)

    def test_only_the_entry_symbol_is_exported(self):
        out = subprocess.run(["nm", "-D", "--defined-only", self.so],
                             check=True, capture_output=True,
                             text=True).stdout
        names = [l.split()[-1] for l in out.splitlines() if l.strip()]
        self.assertEqual(names, ["bulkhead_plugin_entry"])

    def test_installed_daemon_serves_the_example(self):
        installed = os.path.join(self.prefix, "bin", "bulkhead")
        self.assertTrue(os.access(installed, os.X_OK))
        saved = harness.BIN
        harness.BIN = installed
        try:
            with Daemon({"plugin.hello": {"path": self.so,
                                          "mount": "/hello"}}) as d:
                r = d.get("/hello/greet/World")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json(), {"greeting": "Hello, World!"})
                # the example's own error map is in the catalogue
                r = d.get("/hello/greet/" + "x" * 80)
                self.assertEqual(r.status, 400)
                self.assertEqual(r.code, "hello.name_too_long")
                status = d.admin("/admin/status").json()
                hello = [p for p in status["plugins"] if p["name"] == "hello"]
                self.assertEqual(hello[0]["state"], "loaded")
        finally:
            harness.BIN = saved


if __name__ == "__main__":
    unittest.main(verbosity=2)
