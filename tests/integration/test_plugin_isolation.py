"""Plugin isolation: a plugin whose .so is missing, one with a wrong ABI
major, one whose init fails (and the other ways a load can fail) each answer
plugin.unavailable on their own mounts while the other plugins' routes answer
200; /readyz and /admin/status tell the truth."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (DaemonTestCase, echo_section, first_party,  # noqa
                     test_plugin)

MISSING_SO = os.path.join(harness.TEST_PLUGIN_DIR, "no-such-plugin.so")

# name -> (reason, substring expected in lastError)
FAILING = {
    "missing": ("load_failed", "no-such-plugin.so"),
    "badabi": ("load_failed", "ABI major"),
    "newminor": ("load_failed", "newer than core"),
    "noentry": ("load_failed", "entry"),
    "refuse": ("load_failed", "refused"),
    "initfail": ("init_failed", "init"),
    "badmap": ("init_failed", "wrongprefix.thing"),
    "retry4xx": ("init_failed", "retry4xx.not_found"),
    # mounted outside echo's tree, so its route lies outside its own mount
    "conflict": ("init_failed", "outside"),
}

FIRST_PARTY = ("auth", "billing", "webhooks", "ai")


def failing_config(required_missing):
    cfg = {"plugin.echo": echo_section(required=True)}
    for name in FAILING:
        sec = {"path": MISSING_SO if name == "missing" else test_plugin(name),
               "mount": "/t/" + name}
        if name == "missing" and required_missing:
            sec["required"] = True
        cfg["plugin." + name] = sec
    cfg.update(first_party(*FIRST_PARTY))
    cfg["plugin.crashy"] = {"path": test_plugin("crashy"),
                            "mount": "/t/crashy", "enabled": False}
    return cfg


class FailedPluginsTest(DaemonTestCase):
    CONFIG = failing_config(required_missing=True)

    def assertUnavailable(self, r, name, reason):
        doc = self.assertProblem(r, 503, "plugin.unavailable", name)
        self.assertTrue(doc["extensions"]["retryable"], r)
        self.assertEqual(doc["extensions"].get("plugin"), name, r)
        self.assertEqual(doc["extensions"].get("reason"), reason, r)

    def assertServedBy(self, r, name):
        """The first-party plugin's own handler answered: its status
        document, or a Problem from its own error map (its provider is a
        dead loopback address here) -- never the core's unavailable or
        not-found answers."""
        if r.status == 200:
            self.assertEqual(r.json().get("plugin"), name, r)
        else:
            self.assertTrue(r.code.startswith(name + "."), r)

    def test_failed_plugins_answer_unavailable_on_their_mounts(self):
        for name, (reason, _) in FAILING.items():
            for method, path in (("GET", "/t/%s" % name),
                                 ("GET", "/t/%s/ok" % name),
                                 ("POST", "/t/%s/a/b?x=1" % name),
                                 ("DELETE", "/t/%s/anything" % name)):
                with self.subTest(plugin=name, path=path, method=method):
                    r = self.d.request(method, path)
                    self.assertUnavailable(r, name, reason)

    def test_disabled_plugin_answers_unavailable(self):
        r = self.d.get("/t/crashy/ok")
        self.assertUnavailable(r, "crashy", "disabled")

    def test_healthy_plugins_still_serve(self):
        r = self.d.get("/t/echo/ok")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"plugin": "echo", "status": "ok"})
        for name in FIRST_PARTY:
            with self.subTest(plugin=name):
                self.assertServedBy(self.d.get("/v1/%s/status" % name), name)

    def test_echo_route_is_not_taken_over(self):
        # conflict.so registers GET /t/echo/conflict-target, which is outside
        # its own mount: refused, and echo keeps serving its route.
        r = self.d.get("/t/echo/conflict-target")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"plugin": "echo", "route": "conflict"})

    def test_mount_boundary_is_a_path_segment(self):
        # "/t/badabix" is not under the "/t/badabi" mount
        r = self.d.get("/t/badabix/ok")
        self.assertProblem(r, 404, "route.not_found")

    def test_interleaved_on_one_keepalive_connection(self):
        c = self.d.connection()
        try:
            for i in range(3):
                r = self.d.get("/t/initfail/x", conn=c)
                self.assertUnavailable(r, "initfail", "init_failed")
                self.assertFalse(r.closes(), r)
                r = self.d.get("/t/echo/ok", conn=c)
                self.assertEqual(r.status, 200, r)
                r = self.d.get("/t/missing/y", conn=c)
                self.assertUnavailable(r, "missing", "load_failed")
                r = self.d.get("/v1/auth/status", conn=c)
                self.assertServedBy(r, "auth")
        finally:
            c.close()

    def test_readyz_names_the_missing_required_plugin(self):
        r = self.d.admin("/readyz")
        doc = self.assertProblem(r, 503, "admin.not_ready")
        self.assertTrue(doc["extensions"]["retryable"])
        missing = doc["extensions"].get("plugins", "")
        self.assertIn("missing", missing, r)
        self.assertNotIn("echo", missing, r)
        self.assertNotIn("badabi", missing, r)  # not required

    def test_healthz_stays_ok(self):
        r = self.d.admin("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ok"})

    def test_admin_status_tells_the_truth(self):
        r = self.d.admin("/admin/status")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        doc = r.json()
        self.assertEqual(doc["status"], "degraded", doc)
        plugins = {p["name"]: p for p in doc["plugins"]}
        expected = set(FAILING) | set(FIRST_PARTY) | {"echo", "crashy"}
        self.assertEqual(set(plugins), expected)

        echo = plugins["echo"]
        self.assertEqual(echo["state"], "loaded", echo)
        self.assertEqual(echo["version"], "0.1.0", echo)
        # echo is built against this tree's header: the core's own ABI
        abi = harness.run_tool(["--version"]).stdout.split("plugin ABI ")[1]
        self.assertEqual(echo["abi"], abi.strip().rstrip(")"), echo)
        self.assertEqual(echo["mounts"], ["/t/echo"], echo)
        self.assertTrue(echo["required"], echo)
        self.assertIsNone(echo["lastError"], echo)
        routes = {(x["method"], x["pattern"]) for x in echo["routes"]}
        self.assertIn(("GET", "/t/echo/ok"), routes)
        self.assertIn(("POST", "/t/echo/validate"), routes)
        self.assertIn(("GET", "/t/echo/params/{a}/{b}"), routes)
        self.assertEqual(len(routes), 13, routes)

        for name in FIRST_PARTY:
            p = plugins[name]
            self.assertEqual(p["state"], "loaded", p)
            self.assertEqual(p["mounts"], ["/v1/" + name], p)
            self.assertIn(("GET", "/v1/%s/status" % name),
                          {(x["method"], x["pattern"]) for x in p["routes"]})

        for name, (reason, err) in FAILING.items():
            with self.subTest(plugin=name):
                p = plugins[name]
                self.assertEqual(p["state"], "failed", p)
                self.assertEqual(p["reason"], reason, p)
                self.assertEqual(p["mounts"], ["/t/" + name], p)
                self.assertEqual(p["routes"], [], p)
                self.assertIsInstance(p["lastError"], str, p)
                self.assertIn(err, p["lastError"], p)
        self.assertTrue(plugins["missing"]["required"])
        self.assertFalse(plugins["badabi"]["required"])

        crashy = plugins["crashy"]
        self.assertEqual(crashy["state"], "disabled", crashy)
        self.assertEqual(crashy["routes"], [], crashy)

    def test_each_failure_is_logged_once_with_its_cause(self):
        fails = self.d.events("plugin_load_failed")
        by_name = {}
        for ev in fails:
            by_name.setdefault(ev.get("plugin"), []).append(ev)
        self.assertEqual(set(by_name), set(FAILING), fails)
        for name, (_, err) in FAILING.items():
            self.assertEqual(len(by_name[name]), 1, by_name[name])
            ev = by_name[name][0]
            self.assertEqual(ev["level"], "error", ev)
            self.assertIn(err, ev.get("error", ""), ev)
            self.assertTrue(ev.get("path", "").endswith(".so"), ev)


class AllRequiredHealthyTest(DaemonTestCase):
    """Only optional plugins fail: ready, but still degraded."""
    CONFIG = failing_config(required_missing=False)

    def test_readyz_ready(self):
        r = self.d.admin("/readyz")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["status"], "ready", doc)
        self.assertEqual(doc["stores"]["identity"],
                         {"backend": "sqlite", "status": "ok"})
        # the plugins' stores (billing, webhooks), when loaded
        for name, st in doc["stores"].items():
            self.assertIn(name, ("identity", "billing", "webhooks"), doc)
            self.assertEqual(st["backend"], "sqlite", doc)
        self.assertEqual(r.headers.get("cache-control"), "no-store")

    def test_status_degraded(self):
        doc = self.d.admin("/admin/status").json()
        self.assertEqual(doc["status"], "degraded")


class HealthyTest(DaemonTestCase):
    """Every enabled plugin loads (a disabled one does not degrade)."""
    CONFIG = dict({"plugin.echo": echo_section(required=True)},
                  **first_party("billing"))
    CONFIG["plugin.billing"]["required"] = True
    CONFIG["plugin.initfail"] = {"path": test_plugin("initfail"),
                                 "mount": "/t/initfail", "enabled": False}

    def test_status_ok(self):
        doc = self.d.admin("/admin/status").json()
        self.assertEqual(doc["status"], "ok", doc)
        states = {p["name"]: p["state"] for p in doc["plugins"]}
        self.assertEqual(states, {"echo": "loaded", "billing": "loaded",
                                  "initfail": "disabled"})

    def test_readyz_ready(self):
        r = self.d.admin("/readyz")
        self.assertEqual(r.status, 200, r)

    def test_disabled_mount_unavailable(self):
        r = self.d.get("/t/initfail/x")
        doc = self.assertProblem(r, 503, "plugin.unavailable")
        self.assertEqual(doc["extensions"]["plugin"], "initfail")
        self.assertEqual(doc["extensions"]["reason"], "disabled")
        # a disabled plugin is never loaded, so never logs a failure
        self.assertEqual(self.d.events("plugin_load_failed"), [])


if __name__ == "__main__":
    harness.main()
