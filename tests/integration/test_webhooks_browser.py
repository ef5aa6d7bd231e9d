"""A real browser's EventSource against GET /v1/webhooks/deliveries/stream:
Debian's chromium, headless, opens a page served by this test (through a
small same-origin proxy to the daemon, as a portal would be served) that
authenticates with the __session cookie only and writes every event id
and change it receives into the DOM; --dump-dom gives the DOM back.

The proxy cuts the first stream right after its first event: the
browser reconnects by itself (after the stream's retry:) with the
Last-Event-ID header, and the ids must run on without a gap or a repeat. Skipped when chromium is not installed (scripts/deps.sh installs
it)."""

import http.client
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon  # noqa: E402
import webhooks_env as W  # noqa: E402
from auth_tokens import TEST_SECRET, mint_access_token  # noqa: E402

CHROMIUM = shutil.which("chromium")

PAGE = """<!doctype html><html><body><div id="out"></div><script>
const out = [];
function show() { document.getElementById("out").textContent = out.join(","); }
const es = new EventSource("/v1/webhooks/deliveries/stream?endpoint=%(ep)s");
es.addEventListener("delivery", function (e) {
  out.push(e.lastEventId + ":" + JSON.parse(e.data).change);
  show();
  if (JSON.parse(e.data).change === "succeeded") es.close();
});
</script><script src="/wait"></script></body></html>
"""


class Proxy(object):
    """Serves the page and /wait, and forwards /v1/ to the daemon as it
    arrives (one connection per request, Connection: close)."""

    def __init__(self, daemon_port, page, token):
        proxy = self
        self.done = threading.Event()
        self.cookies = []
        self.last_ids = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/":
                    body = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Set-Cookie",
                                     "__session=%s; Path=/" % token)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path == "/wait":  # holds the page's load event
                    proxy.done.wait(8)
                    time.sleep(0.2)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/javascript")
                    self.end_headers()
                    self.wfile.write(b"//")
                    return
                if not self.path.startswith("/v1/"):
                    self.send_response(404)
                    self.end_headers()
                    return
                proxy.cookies.append(self.headers.get("Cookie"))
                proxy.last_ids.append(self.headers.get("Last-Event-ID"))
                first = len(proxy.last_ids) == 1
                c = http.client.HTTPConnection("127.0.0.1", daemon_port,
                                               timeout=10)
                hdrs = dict((k, v) for k, v in self.headers.items()
                            if k.lower() in ("cookie", "accept",
                                             "last-event-id", "user-agent"))
                c.request("GET", self.path, headers=hdrs)
                r = c.getresponse()
                self.send_response(r.status)
                self.send_header("Content-Type",
                                 r.getheader("Content-Type", ""))
                self.end_headers()
                buf = b""
                try:
                    while True:
                        b = r.read1(65536)
                        if not b:
                            break
                        if first:  # pass the first event on, then cut
                            buf += b
                            at = buf.find(b"\n\n", buf.find(b"id: "))
                            if buf.find(b"id: ") >= 0 and at >= 0:
                                self.wfile.write(buf[:at + 2])
                                self.wfile.flush()
                                break
                            continue
                        self.wfile.write(b)
                        self.wfile.flush()
                        if b"succeeded" in b:
                            proxy.done.set()
                except OSError:
                    pass
                finally:
                    c.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@unittest.skipIf(CHROMIUM is None, "chromium is not installed")
class BrowserTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.deaths = []
        cls.sim = W.start_sim()
        cls.CONFIG = W.config(stream_poll_ms=50, stream_heartbeat_ms=500,
                              stream_retry_ms=300)
        cls.d = Daemon(cls.CONFIG)

    @classmethod
    def tearDownClass(cls):
        try:
            super(BrowserTest, cls).tearDownClass()
        finally:
            cls.sim.stop()

    def test_event_source_with_cookies_resumes_exactly(self):
        api = W.Api(self.d)
        self.sim.set_behavior(path="/hooks/browser", status=500, times=1)
        ep = api.create(self.sim.url + "/hooks/browser", ["b.t"])
        api.event_id("b.t", {})
        self.assertIsNotNone(W.wait_for(lambda: api.all_deliveries(
            "?endpoint=%s&status=succeeded" % ep["id"]), timeout=8))
        tok = mint_access_token(TEST_SECRET, "user_wh",
                                iat=int(time.time()) - 60)
        proxy = Proxy(self.d.port(), PAGE % {"ep": ep["id"]}, tok)
        prof = tempfile.mkdtemp(prefix="bulkhead-chromium-")
        try:
            out = subprocess.run(
                [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox",
                 "--no-first-run", "--user-data-dir=" + prof,
                 "--timeout=15000", "--dump-dom",
                 "http://127.0.0.1:%d/" % proxy.port],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                timeout=60, universal_newlines=True).stdout
        finally:
            proxy.stop()
            shutil.rmtree(prof, ignore_errors=True)
        start = out.find('<div id="out">')
        self.assertGreaterEqual(start, 0, out[:500])
        text = out[start + len('<div id="out">'):out.find("</div>", start)]
        got = [x.split(":") for x in text.split(",") if x]
        self.assertEqual([c for _, c in got],
                         ["queued", "attempting", "retrying", "attempting",
                          "succeeded"], text)
        ids = [int(i) for i, _ in got]
        self.assertEqual(ids, sorted(set(ids)), text)
        # the browser's own reconnect said where it left off
        self.assertEqual(proxy.last_ids[:2], [None, str(ids[0])])
        # every request of the page carried the session cookie, no header
        self.assertTrue(proxy.cookies and all(
            c and "__session=" in c for c in proxy.cookies), proxy.cookies)


if __name__ == "__main__":
    harness.main()
