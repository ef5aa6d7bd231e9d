"""Plugin SDK 1.3 on the real daemon: a plugin built against the frozen
1.2 header loads and serves; one claiming 1.4 is refused with its one-line
reason; a plugin without fini() loads; the 1.3 helpers (route table,
writer, nested body values, secret service) work end to end; load-time
errors name the plugin, the thing and the rule; a service called off the
loop thread is refused with one line."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, test_plugin  # noqa: E402

SECRET_DIR = None


def sections():
    return {
        "plugin.abi12": {"path": test_plugin("abi12"), "mount": "/t/abi12"},
        "plugin.newminor": {"path": test_plugin("newminor"),
                            "mount": "/t/newminor"},
        "plugin.nofini": {"path": test_plugin("nofini"), "mount": "/t/nofini"},
        "plugin.sdk13": {"path": test_plugin("sdk13"), "mount": "/t/sdk13",
                         "token": "@env:SDK13_TOKEN", "expect": "tok en"},
        "plugin.badmap": {"path": test_plugin("badmap"), "mount": "/t/badmap"},
        "plugin.conflict": {"path": test_plugin("conflict"),
                            "mount": "/t/conflict"},
        "plugin.echo": {"path": test_plugin("echo"), "mount": "/t/echo"},
    }


class SdkTest(DaemonTestCase):
    CONFIG = sections()
    ENV = {"SDK13_TOKEN": "tok en"}

    def status(self):
        doc = self.d.admin("/admin/status").json()
        return {p["name"]: p for p in doc["plugins"]}

    def test_a_1_2_plugin_loads_and_serves(self):
        p = self.status()["abi12"]
        self.assertEqual(p["state"], "loaded", p)
        self.assertEqual(p["abi"], "1.2", p)
        r = self.d.get("/t/abi12/ok/a%20b")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"plugin": "abi12", "abi": "1.2",
                                    "id": "a b"})
        r = self.d.post("/t/abi12/echo", {"name": "x", "count": 2})
        self.assertEqual(r.json(), {"name": "x", "count": 2}, r)
        r = self.d.post("/t/abi12/echo", {"name": "x", "count": 13})
        self.assertProblem(r, 422, "abi12.unlucky")
        r = self.d.post("/t/abi12/echo", {"count": 2})
        self.assertProblem(r, 400, "request.invalid_body")

    def test_a_1_4_plugin_is_refused_with_one_line(self):
        p = self.status()["newminor"]
        self.assertEqual(p["state"], "failed", p)
        want = ("built for ABI 1.4, newer than core 1.3: a core loads "
                "plugins of its own minor or older")
        self.assertEqual(p["lastError"], want, p)
        evs = [e for e in self.d.events("plugin_load_failed")
               if e.get("plugin") == "newminor"]
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["error"], want)
        self.assertProblem(self.d.get("/t/newminor/ok"), 503,
                           "plugin.unavailable")

    def test_fini_is_optional(self):
        self.assertEqual(self.status()["nofini"]["state"], "loaded")
        r = self.d.get("/t/nofini/ok")
        self.assertEqual(r.json(), {"plugin": "nofini", "status": "ok"}, r)
        self.assertEqual(self.status()["sdk13"]["state"], "loaded")

    def test_route_table_registers_every_route(self):
        routes = {(x["method"], x["pattern"])
                  for x in self.status()["sdk13"]["routes"]}
        self.assertEqual(routes, {("POST", "/t/sdk13/echo"),
                                  ("GET", "/t/sdk13/secret"),
                                  ("GET", "/t/sdk13/thread"),
                                  ("GET", "/t/sdk13/broken")})

    def test_nested_values_and_the_writer(self):
        body = {"name": "Zo\u00eb \"q\" </x>", "ratio": 0.25, "on": True,
                "inner": {"a/b": "slash", "deep": [-9007199254740993],
                          "z": None},
                "items": ["s", 12, {"k": False}]}
        r = self.d.post("/t/sdk13/echo", body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        # the writer's escaping: '"' and '<' '>' as the core writes them
        self.assertIn(b'\\"q\\" \\u003c/x\\u003e', r.body)
        self.assertEqual(r.json(), {
            "/name": "Zo\u00eb \"q\" </x>", "/ratio": 250, "/on": True,
            "/inner": 3, "/inner/a~1b": "slash",
            "/inner/deep/0": -9007199254740993, "/items": 3,
            "/items/1": 12, "/items/2/k": False, "/items/9": "absent",
            "/nothing": "absent", "innerKeys": ["a/b", "deep", "z"]})

    def test_a_failed_writer_answers_internal(self):
        r = self.d.get("/t/sdk13/broken")
        self.assertProblem(r, 500, "generic.internal")
        self.d.wait_event(lambda e: e.get("event") == "plugin_log" and
                          "writer failed" in e.get("msg", ""))

    def test_secret_service(self):
        r = self.d.get("/t/sdk13/secret")
        self.assertEqual(r.json(), {"rc": 0, "len": 6, "matches": True}, r)
        self.assertNotIn(b"tok en", r.body)

    def test_a_service_off_the_loop_thread_is_refused(self):
        r = self.d.get("/t/sdk13/thread")
        self.assertEqual(r.json(), {"offLoop": -1}, r)  # -EPERM
        ev = self.d.wait_event(
            lambda e: e.get("event") == "plugin_wrong_thread")
        self.assertEqual(
            ev["msg"], "plugin sdk13: an end call called off the loop thread: "
            "services run on the worker's loop thread only (wakeup_send "
            "excepted; hand results back with a wakeup)")

    def test_load_errors_name_plugin_thing_and_rule(self):
        st = self.status()
        self.assertEqual(st["badmap"]["lastError"],
                         "init failed: plugin badmap: error map row 1: code "
                         "'wrongprefix.thing' must start with 'badmap.'")
        self.assertIn("plugin conflict: route GET /t/echo/conflict-target: "
                      "outside the plugin's mounts (/t/conflict): a route "
                      "lies under a mount of [plugin.conflict]",
                      st["conflict"]["lastError"])
        for name in ("badmap", "conflict"):
            self.assertNotIn("\n", st[name]["lastError"])


class BadPatternTest(DaemonTestCase):
    CONFIG = {"plugin.sdk13": {"path": test_plugin("sdk13"),
                               "mount": "/t/sdk13", "bad_route": "1"},
              "plugin.echo": {"path": test_plugin("echo"),
                              "mount": "/t/echo"}}

    def test_bad_pattern_names_the_rule(self):
        doc = self.d.admin("/admin/status").json()
        p = [x for x in doc["plugins"] if x["name"] == "sdk13"][0]
        self.assertEqual(p["state"], "failed", p)
        self.assertEqual(p["lastError"],
                         "init failed: plugin sdk13: route GET "
                         "/t/sdk13/{x}/{x}: bad pattern: a parameter name "
                         "appears once")


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
