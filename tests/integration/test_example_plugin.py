"""The third-party path: install the SDK, build examples/hello (CMake) and
examples/minimal (make, the plugin docs/PLUGINS.md opens with) out of tree
with nothing but the installed headers and pkg-config, load them into the
installed daemon, and check they serve while exporting only their entry."""

import glob
import os
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import Daemon
from upstream_env import start_sim


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
        # the plugin of docs/PLUGINS.md, with make and pkg-config alone
        minimal = os.path.join(cls.tmp, "minimal")
        shutil.copytree(os.path.join(harness.SOURCE_DIR, "examples",
                                     "minimal"), minimal)
        subprocess.run(["make", "-C", minimal], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        cls.minimal_so = os.path.join(minimal, "minimal.so")
        cls.pc_env = env
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

    def test_the_schema_function_is_installed_for_plugins(self):
        cmakedir = subprocess.run(
            ["pkg-config", "--variable=cmakedir", "bulkhead"],
            env=self.pc_env, check=True, capture_output=True,
            text=True).stdout.strip()
        self.assertTrue(os.path.realpath(cmakedir).startswith(
            os.path.realpath(self.prefix)), cmakedir)
        with open(os.path.join(cmakedir, "embed_schema.cmake")) as f:
            self.assertIn("function(bh_embed_schema)", f.read())

    def test_only_the_entry_symbol_is_exported(self):
        for so in (self.so, self.minimal_so):
            out = subprocess.run(["nm", "-D", "--defined-only", so],
                                 check=True, capture_output=True,
                                 text=True).stdout
            names = [l.split()[-1] for l in out.splitlines() if l.strip()]
            self.assertEqual(names, ["bulkhead_plugin_entry"], so)

    def test_examples_stay_short(self):
        """hello at most 60 lines of code, minimal (the plugin
        docs/PLUGINS.md opens with, verbatim) at most 40."""
        def code_lines(path):
            with open(path) as f:
                return [l for l in f if l.strip() and not
                        l.strip().startswith(("/*", "*", "//"))]
        ex = os.path.join(harness.SOURCE_DIR, "examples")
        self.assertLessEqual(len(code_lines(os.path.join(
            ex, "hello", "hello.c"))), 60)
        minimal = os.path.join(ex, "minimal", "minimal.c")
        self.assertLessEqual(len(code_lines(minimal)), 40)
        with open(minimal) as f, open(os.path.join(
                harness.SOURCE_DIR, "docs", "PLUGINS.md")) as g:
            self.assertIn(f.read(), g.read())

    def test_installed_daemon_serves_the_examples(self):
        installed = os.path.join(self.prefix, "bin", "bulkhead")
        self.assertTrue(os.access(installed, os.X_OK))
        saved = harness.BIN
        harness.BIN = installed
        try:
            with start_sim() as sim, Daemon({
                    "plugin.hello": {"path": self.so, "mount": "/hello"},
                    "plugin.minimal": {"path": self.minimal_so,
                                       "mount": "/minimal"},
                    "upstream.hello": {"url": sim.url, "retries": 0}}) as d:
                self.check_minimal(d)
                self.check_hello(d, sim)
                status = d.admin("/admin/status").json()
                for name in ("hello", "minimal"):
                    p = [p for p in status["plugins"] if p["name"] == name]
                    self.assertEqual(p[0]["state"], "loaded", p)
        finally:
            harness.BIN = saved

    def check_minimal(self, d):
        r = d.get("/minimal/hi/%22Zo%C3%AB%22%3C?x=1",
                  headers={"User-Agent": "t\"1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        doc = r.json()
        self.assertEqual(doc["hello"], "\"Zo\u00eb\"<")
        self.assertEqual(doc["method"], "GET")
        self.assertEqual(doc["query"], "x=1")
        self.assertEqual(doc["userAgent"], "t\"1")
        self.assertEqual(doc["requestId"], r.headers.get("x-request-id"))
        # escaped by the writer: the '<' never reaches the body as is
        self.assertNotIn(b"<", r.body)

    def check_hello(self, d, sim):
        r = d.post("/hello/echo", {"message": "h\u00e9\n"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"message": "h\u00e9\n", "length": 4})
        r = d.post("/hello/echo", {"msg": "hi"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.code, "request.invalid_body")
        sim.set_behavior(path="/quotes/life", status=200,
                         body="Be \"kind\".", headers={"X-Author": "Anon"})
        r = d.get("/hello/quote/life")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"topic": "life", "quote": "Be \"kind\".",
                                    "author": "Anon"})
        # the parameter reaches the upstream encoded, as one segment
        r = d.get("/hello/quote/a%20b%25c")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["topic"], "a b%c")
        self.assertEqual(sim.count("/quotes/a%20b%25c"), 1)
        # through the error map: the row for 404
        sim.set_behavior(path="/quotes/nope", status=404)
        r = d.get("/hello/quote/nope")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.code, "hello.no_such_topic")
        # a 5xx no row matches gets the core's default
        sim.set_behavior(path="/quotes/down", status=503)
        r = d.get("/hello/quote/down")
        self.assertEqual(r.code, "hello.upstream_unavailable", r)
        # the example's catalogue is in the daemon's
        codes = {c["code"] for c in d.admin("/admin/errors").json()["codes"]}
        self.assertIn("hello.no_such_topic", codes)


if __name__ == "__main__":
    unittest.main(verbosity=2)
