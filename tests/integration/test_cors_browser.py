"""CORS in a real browser: Debian's Chromium (headless, driven by
puppeteer-core from npm, installed under the build directory) loads a page
from one loopback origin (a Python http.server) that calls bulkhead on
another: a login through the auth plugin (the simulator as the identity
provider) that sets the session cookies, a cookie request
(credentials: "include"), an explicit refresh, a bearer request, a cookie
POST that needs a preflight, a Problem whose extensions.code and
X-Request-ID the page reads, and a mount whose policy does not list the
page's origin (the browser blocks it). The page writes what it saw to the
DOM; the test asserts on that. Skipped, saying why, without chromium, node
or npm."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import auth_config, start_sim  # noqa: E402
from harness import Daemon, echo_section  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
PUPPETEER = "puppeteer-core@24.43.1"
NPM_DIR = os.path.join(harness.BUILD_DIR, "browser-npm")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def npm_install():
    """puppeteer-core under the build directory, once per build tree."""
    mod = os.path.join(NPM_DIR, "node_modules", "puppeteer-core")
    if os.path.isdir(mod):
        return
    os.makedirs(NPM_DIR, exist_ok=True)
    res = subprocess.run(
        ["npm", "install", "--prefix", NPM_DIR, "--no-audit", "--no-fund",
         "--loglevel=error", PUPPETEER],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=180,
        env=dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1"))
    if res.returncode != 0:
        raise AssertionError("npm install %s failed:\n%s" %
                             (PUPPETEER, res.stdout))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@unittest.skipUnless(CHROMIUM, "chromium is not installed (scripts/deps.sh)")
@unittest.skipUnless(shutil.which("node") and shutil.which("npm"),
                     "node/npm are not installed (scripts/deps.sh)")
class BrowserCorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        npm_install()
        cls.tmp = tempfile.mkdtemp(prefix="bulkhead-browser-")
        shutil.copy(os.path.join(BROWSER_DIR, "cors_page.html"),
                    os.path.join(cls.tmp, "index.html"))
        handler = functools.partial(_Quiet, directory=cls.tmp)
        cls.web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=cls.web.serve_forever, daemon=True).start()
        cls.page_origin = "http://127.0.0.1:%d" % cls.web.server_address[1]
        cls.sim = None
        cls.d = None
        try:
            cls.sim = start_sim()
            cors = {"cors_origins": cls.page_origin,
                    "cors_credentials": True}
            cfg = auth_config(
                cls.sim.url, auth={"csrf_origins": cls.page_origin},
                plugin_auth=cors,
                extra={"plugin.echo": echo_section(
                    cors_origins="http://other.example.test")})
            cfg["plugin.whoami"].update(cors)
            cls.d = Daemon(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d:
                cls.d.stop()
        finally:
            if cls.sim:
                cls.sim.stop()
            cls.web.shutdown()
            cls.web.server_close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_page(self):
        api = "http://127.0.0.1:%d" % self.d.api_port
        url = "%s/index.html?api=%s" % (self.page_origin, api)
        env = dict(os.environ, NODE_PATH=os.path.join(NPM_DIR,
                                                      "node_modules"))
        res = subprocess.run(
            ["node", os.path.join(BROWSER_DIR, "cors_page.js"), CHROMIUM, url,
             "20000"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
            env=env)
        self.assertEqual(res.returncode, 0, "browser run failed:\n%s\n%s" %
                         (res.stderr, self.d.diag(20)))
        return json.loads(res.stdout.strip().splitlines()[-1])

    def test_page_on_another_origin(self):
        doc = self.run_page()
        seen = doc["out"]
        where = json.dumps(doc, indent=1) + self.d.diag(20)

        login = seen["login"]
        self.assertEqual(login.get("status"), 200, where)
        self.assertEqual(login["body"], {
            "user": {"id": "sim_user_alice"}, "tokenType": "Bearer",
            "hasAccess": True, "hasRefresh": True}, where)
        # an exposed header: the page reads the request id
        self.assertTrue(login["requestId"], where)

        # the browser kept the cookies and sent them cross-origin
        self.assertEqual(seen["cookie_me"].get("status"), 200, where)
        self.assertEqual(seen["cookie_me"]["body"]["kind"], "cookie", where)
        self.assertEqual(seen["cookie_me"]["body"]["user"]["id"],
                         "sim_user_alice", where)

        self.assertEqual(seen["refresh"].get("status"), 200, where)
        self.assertEqual(seen["refresh"]["body"], {
            "user": {"id": "sim_user_alice"}, "hasAccess": True,
            "rotated": True}, where)

        # Authorization needs a preflight: answered, then the request
        b = seen["bearer_whoami"]
        self.assertEqual(b.get("status"), 200, where)
        self.assertEqual((b["body"]["kind"], b["body"]["userId"]),
                         ("bearer", "sim_user_alice"), where)

        # JSON POST with cookies: preflight, then the CSRF check passes on
        # the listed origin
        c = seen["cookie_whoami_post"]
        self.assertEqual(c.get("status"), 200, where)
        self.assertEqual((c["body"]["kind"], c["body"]["method"]),
                         ("cookie", "POST"), where)

        # the Problem reached the page whole
        p = seen["problem"]
        self.assertEqual(p.get("status"), 401, where)
        self.assertEqual(p["contentType"], "application/problem+json", where)
        self.assertEqual(p["body"]["extensions"]["code"],
                         "auth.unauthenticated", where)
        self.assertEqual(p["body"]["extensions"]["requestId"],
                         p["requestId"], where)

        # not listed for this origin: the browser refuses to hand it over
        self.assertIn("TypeError", seen["blocked"].get("error", ""), where)

        # the preflights were the core's (204), not the plugins'
        pre = [e for e in self.d.events("request")
               if e.get("method") == "OPTIONS"]
        self.assertTrue(pre, where)
        self.assertEqual(set(e.get("status") for e in pre), {204}, where)


if __name__ == "__main__":
    unittest.main()
