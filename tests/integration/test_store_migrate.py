"""`bulkhead -t` and `bulkhead migrate` on [store] backend = postgres cover
every store: the identity schema and the schemas the plugins declare in
their descriptor (webhooks bh_webhooks, billing bh_billing, the auth
plugin's magic links bh_auth). One private PostgreSQL (pg_server.py), the
real binary and plugins, a URL that carries a password.

- fresh database: -t exits 0 and notes migrations pending for each of the
  four schemas, and creates nothing;
- migrate: each schema at its build's last version (the numbers read from
  schema/postgres/*), one line each; again: nothing to do; -t: up to date;
- a schema newer than this build: -t and migrate exit 1 naming it;
- PostgreSQL stopped: -t exits 1 with one line, the password nowhere;
- a daemon started after migrate serves a webhooks, a billing and a
  magic-link route without migrating anything again;
- a disabled plugin's schema is neither checked nor created."""

import glob
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import providers_env as P  # noqa: E402
import webhooks_env as W  # noqa: E402
from auth_env import auth_config  # noqa: E402
from harness import Daemon  # noqa: E402
from pg_server import PgServer  # noqa: E402
from test_auth_magic_link import AUTH, magic_keys  # noqa: E402

PASSWORD = "pw-Secr3t-91xq"
# schema -> its folder of schema/postgres
SCHEMAS = {"bh_identity": "core", "bh_webhooks": "webhooks",
           "bh_billing": "billing", "bh_auth": "auth"}


def last_version(folder):
    """The highest NNN of schema/postgres/<folder>/NNN_*.sql."""
    files = glob.glob(os.path.join(harness.SOURCE_DIR, "schema", "postgres",
                                   folder, "*.sql"))
    return max(int(os.path.basename(f).split("_")[0]) for f in files)


def config(disabled=()):
    """auth (magic links on, the IdP and SMTP dead), webhooks, billing; the
    plugins in `disabled` with enabled = false."""
    cfg = auth_config(harness.DEAD_UPSTREAM, auth=AUTH,
                      plugin_auth=magic_keys("smtp://127.0.0.1:9"))
    cfg["plugin.webhooks"] = W.webhooks_section()
    pc = P.config()
    cfg["plugin.billing"] = pc["plugin.billing"]
    cfg["upstream.billing"] = pc["upstream.billing"]
    for name in disabled:
        cfg["plugin." + name]["enabled"] = False
    cfg["store"] = {"backend": "postgres", "url": "@env:TEST_STORE_URL",
                    "pool": "1"}
    return cfg


class MigrateTest(unittest.TestCase):
    def setUp(self):
        self.pg = PgServer()
        # trust authentication ignores it, but libpq carries it in the URL
        self.url = self.pg.url.replace("bulkhead@", "bulkhead:%s@" % PASSWORD)
        self.env = {"TEST_STORE_URL": self.url}
        self.daemons = []

    def tearDown(self):
        try:
            for d in self.daemons:
                d.kill()
        finally:
            self.pg.destroy()

    def tool(self, disabled=()):
        d = Daemon(config(disabled), start=False, env=self.env)
        self.daemons.append(d)
        return d

    def run_cmd(self, d, *args):
        r = subprocess.run([harness.BIN, "-c", d.config_path] + list(args),
                           env=d.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        out = r.stdout + r.stderr
        self.assertNotIn(PASSWORD, out)
        return r, out

    def version(self, schema):
        """The schema's version as the core's runner records it; 0 when
        the schema or its table does not exist."""
        exists = self.pg.psql("SELECT to_regclass('%s.schema_migrations') "
                              "IS NOT NULL" % schema)
        if exists != "t":
            return 0
        return int(self.pg.psql("SELECT coalesce(max(version), 0) FROM "
                                "%s.schema_migrations" % schema))

    def schemas(self):
        return set(self.pg.psql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bh_%'")
            .split())

    def line_of(self, out, schema):
        lines = [ln for ln in out.splitlines() if ("schema %s " % schema) in ln]
        self.assertEqual(len(lines), 1, "%s: %s" % (schema, out))
        return lines[0]

    def test_check_migrate_check(self):
        d = self.tool()
        r, out = self.run_cmd(d, "-t")
        self.assertEqual(r.returncode, 0, out)
        for schema in SCHEMAS:
            self.assertIn("migration(s) pending", self.line_of(out, schema))
        # -t changed nothing
        self.assertEqual(self.schemas(), set(), out)

        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        for schema, folder in SCHEMAS.items():
            last = last_version(folder)
            self.assertEqual(self.version(schema), last, schema)
            self.assertIn("migrated from version 0 to %d" % last,
                          self.line_of(out, schema))

        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        for schema, folder in SCHEMAS.items():
            self.assertIn("at version %d, nothing to do" % last_version(
                folder), self.line_of(out, schema))

        r, out = self.run_cmd(d, "-t")
        self.assertEqual(r.returncode, 0, out)
        for schema in SCHEMAS:
            self.assertIn("up to date", self.line_of(out, schema))
        self.assertNotIn("pending", out)

    def test_newer_schema_refused(self):
        d = self.tool()
        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        for schema in ("bh_webhooks", "bh_auth"):
            self.pg.psql("UPDATE %s.schema_migrations SET version = 99 WHERE "
                         "version = (SELECT max(version) FROM "
                         "%s.schema_migrations)" % (schema, schema))
            for cmd in ("-t", "migrate"):
                r, out = self.run_cmd(d, cmd)
                self.assertEqual(r.returncode, 1, "%s: %s" % (cmd, out))
                # the exit's one line on stderr names the schema
                self.assertRegex(r.stderr, r"schema %s is at version 99, "
                                 r"newer than this bulkhead knows" % schema)
            self.pg.psql("UPDATE %s.schema_migrations SET version = %d WHERE "
                         "version = 99" % (schema, last_version(
                             SCHEMAS[schema])))

    def test_postgres_down(self):
        d = self.tool()
        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(self.schemas(), set(SCHEMAS), out)
        self.pg.stop()
        for cmd in ("-t", "migrate"):
            r, out = self.run_cmd(d, cmd)
            self.assertEqual(r.returncode, 1, "%s: %s" % (cmd, out))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("cannot connect to PostgreSQL", r.stderr)
            self.assertNotIn(self.url, out)

    def test_daemon_after_migrate_does_not_migrate(self):
        d = self.tool()
        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        before = {s: self.pg.psql("SELECT string_agg(version || ':' || "
                                  "applied_at, ',' ORDER BY version) FROM "
                                  "%s.schema_migrations" % s)
                  for s in SCHEMAS}
        live = Daemon(config(), env=self.env)
        self.daemons.append(live)
        r = W.Api(live).call("GET", "/endpoints")
        self.assertEqual(r.status, 200, "%r%s" % (r, live.diag(20)))
        r = P.post_event(live, P.checkout_event("user_mig", "cus_mig"))
        self.assertEqual(r.status, 200, "%r%s" % (r, live.diag(20)))
        self.assertEqual(r.json(), {"received": True})
        r = live.get("/v1/auth/magic-link/verify?token=" + "x" * 43)
        self.assertEqual((r.status, r.code),
                         (401, "auth.magic_link_invalid"),
                         "%r%s" % (r, live.diag(20)))
        live.stop()
        migrated = [ev for ev in live.events("store_migrated")]
        self.assertEqual(migrated, [], live.diag(40))
        after = {s: self.pg.psql("SELECT string_agg(version || ':' || "
                                 "applied_at, ',' ORDER BY version) FROM "
                                 "%s.schema_migrations" % s)
                 for s in SCHEMAS}
        self.assertEqual(before, after)

    def test_disabled_plugin_left_alone(self):
        d = self.tool(disabled=("billing",))
        r, out = self.run_cmd(d, "-t")
        self.assertEqual(r.returncode, 0, out)
        self.assertNotIn("bh_billing", out)
        r, out = self.run_cmd(d, "migrate")
        self.assertEqual(r.returncode, 0, out)
        self.assertNotIn("bh_billing", out)
        self.assertEqual(self.schemas(),
                         {"bh_identity", "bh_webhooks", "bh_auth"}, out)
        r, out = self.run_cmd(d, "-t")
        self.assertEqual(r.returncode, 0, out)
        self.assertNotIn("bh_billing", out)
        self.assertEqual(self.version("bh_webhooks"),
                         last_version("webhooks"))


class DeclaredSchemaCheckTest(unittest.TestCase):
    """A descriptor's store_schema that breaks the store_connect rule fails
    the load with one line naming the plugin and the rule; migrate stops
    at it too (on postgres)."""

    def check(self, kind, rule):
        so = harness.test_plugin("badschema")
        cfg = {"plugin.badschema": {"path": so, "mount": "/t/bad"},
               "plugin.echo": harness.echo_section()}
        d = Daemon(cfg, start=False)
        r = harness.run_tool(["-t", "-c", d.config_path],
                             env={"BADSCHEMA": kind})
        d.kill()
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        lines = [ln for ln in out.splitlines() if "plugin_load_failed" in ln]
        self.assertEqual(len(lines), 1, out)
        self.assertIn("badschema", lines[0])
        self.assertRegex(lines[0], rule)
        with PgServer() as pg:
            cfg["store"] = {"backend": "postgres", "url": pg.url}
            d = Daemon(cfg, start=False)
            r = harness.run_tool(["migrate", "-c", d.config_path],
                                 env={"BADSCHEMA": kind})
            d.kill()
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("plugin badschema", r.stderr)
            self.assertRegex(r.stderr, rule)
            self.assertNotIn("bh_badschema", pg.psql(
                "SELECT string_agg(nspname, ',') FROM pg_namespace"))

    def test_migrate_never_runs_init(self):
        # a valid schema, an init() that aborts: migrate applies the
        # schema from the descriptor alone
        so = harness.test_plugin("badschema")
        with PgServer() as pg:
            cfg = {"plugin.badschema": {"path": so, "mount": "/t/bad"},
                   "store": {"backend": "postgres", "url": pg.url}}
            d = Daemon(cfg, start=False)
            r = harness.run_tool(["-c", d.config_path, "migrate"],
                                 env={"BADSCHEMA": "good"})
            d.kill()
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("plugin badschema: schema bh_badschema migrated "
                          "from version 0 to 1", r.stdout + r.stderr)
            self.assertEqual(pg.psql("SELECT max(version) FROM "
                                     "bh_badschema.schema_migrations"), "1")

    def test_core_schema_name_refused(self):
        self.check("name", r"store schema name 'bh_identity' is not "
                   r"\[a-z\]\[a-z0-9_\]\{0,62\}")

    def test_migrations_out_of_order_refused(self):
        self.check("order", r"store schema bh_badschema: migration "
                   r"001_first.sql \(version 1\) is not above the one "
                   r"before")


if __name__ == "__main__":
    unittest.main()
