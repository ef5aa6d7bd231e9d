/*
 * Configuration loader: defaults, a full file, every error class with its
 * exact "FILE:LINE: [section] key:" prefix, environment overrides, free keys
 * and address parsing. Run under ASan to catch leaks on the error paths.
 */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "check.h"

static char tmp_path[256];

/* Writes `text` to a fresh temporary file whose name lands in tmp_path. */
static const char *write_tmp(const char *text) {
  const char *dir = getenv("TMPDIR");
  snprintf(tmp_path, sizeof tmp_path, "%s/bh_config_XXXXXX",
           dir && *dir ? dir : P_tmpdir);
  int fd = mkstemp(tmp_path);
  if (fd < 0) {
    perror("mkstemp");
    exit(2);
  }
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len) {
    perror("write");
    exit(2);
  }
  close(fd);
  return tmp_path;
}

static int load_text(const char *text, bh__config *cfg, char *err,
                     size_t errlen) {
  int rc = bh__config_load(write_tmp(text), cfg, err, errlen);
  unlink(tmp_path);
  return rc;
}

static int is_zeroed(const bh__config *cfg) {
  static const bh__config zero;
  return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* Loads `text`, expects -EINVAL and an error starting "FILE:LINE: rest". */
static void expect_err_at(int srcline, const char *text, int line,
                          const char *rest) {
  bh__config cfg;
  char err[512], want[512];
  int rc = load_text(text, &cfg, err, sizeof err);
  snprintf(want, sizeof want, "%s:%d: %s", tmp_path, line, rest);
  check_count++;
  if (rc != -EINVAL || strncmp(err, want, strlen(want)) != 0 ||
      strchr(err, '\n') || !is_zeroed(&cfg)) {
    check_failures++;
    fprintf(stderr, "%s:%d: rc=%d\n  got:  %s\n  want: %s...\n", __FILE__,
            srcline, rc, err, want);
  }
  bh__config_free(&cfg);
}
#define EXPECT_ERR(text, line, rest) expect_err_at(__LINE__, text, line, rest)

/* Same for an environment-caused error: "ENV VAR: rest". */
static void expect_env_err_at(int srcline, const char *path, const char *want) {
  bh__config cfg;
  char err[512];
  int rc = bh__config_load(path, &cfg, err, sizeof err);
  check_count++;
  if (rc != -EINVAL || strncmp(err, want, strlen(want)) != 0 ||
      !is_zeroed(&cfg)) {
    check_failures++;
    fprintf(stderr, "%s:%d: rc=%d\n  got:  %s\n  want: %s...\n", __FILE__,
            srcline, rc, err, want);
  }
}
#define EXPECT_ENV_ERR(path, want) expect_env_err_at(__LINE__, path, want)

static void test_defaults(void) {
  bh__config cfg;
  char err[256] = "x";
  CHECK_INT(bh__config_load(NULL, &cfg, err, sizeof err), 0);
  CHECK_STR(err, "");
  CHECK_STR(cfg.source, "(embedded default)");
  CHECK_STR(cfg.listen, "127.0.0.1:8080");
  CHECK_STR(cfg.admin_listen, "127.0.0.1:9901");
  CHECK_STR(cfg.data_dir, "./bulkhead-data");
  CHECK(cfg.plugin_dir == NULL);
  CHECK(cfg.admin_token == NULL);
  CHECK_INT(cfg.problem_flat, 0);
  CHECK_INT(cfg.max_header_bytes, 16384);
  CHECK_INT(cfg.max_body_bytes, 1048576);
  CHECK_INT(cfg.header_timeout_ms, 10000);
  CHECK_INT(cfg.body_timeout_ms, 30000);
  CHECK_INT(cfg.keepalive_timeout_ms, 75000);
  CHECK_INT(cfg.handler_timeout_ms, 30000);
  CHECK_INT(cfg.max_connections, 10000);
  CHECK_STR(cfg.log_target, "stdout");
  CHECK_INT(cfg.log_level, BH__INFO);
  CHECK_STR(cfg.login_page, "/login");
  CHECK_INT(cfg.nsections, 8); /* server, auth, 4 plugins, 2 upstreams */
  CHECK_INT(cfg.nplugins, 4);
  static const char *const names[] = {"auth", "billing", "webhooks", "ai"};
  for (size_t i = 0; i < 4 && i < cfg.nplugins; i++) {
    const bh__plugin_conf *p = &cfg.plugins[i];
    char so[32];
    snprintf(so, sizeof so, "%s.so", names[i]);
    CHECK_STR(p->name, names[i]);
    CHECK_STR(p->path, so);
    CHECK_INT(p->enabled, 1);
    CHECK_INT(p->required, 0);
    CHECK(p->section != NULL);
    CHECK(p->section && strcmp(p->section->name + 7, names[i]) == 0);
    CHECK(p->line > 0);
  }
  CHECK_INT(cfg.plugins[0].nmounts, 2);
  CHECK_STR(cfg.plugins[0].mounts[0], "/v1/auth");
  CHECK_STR(cfg.plugins[0].mounts[1], "/v1/api-keys");
  CHECK_STR(cfg.plugins[1].mounts[0], "/v1/billing");
  CHECK_STR(cfg.plugins[2].mounts[0], "/v1/webhooks");
  CHECK_STR(cfg.plugins[3].mounts[0], "/v1/ai");
  CHECK_STR(bh__config_get(&cfg, "server", "listen"), "127.0.0.1:8080");
  CHECK(bh__config_get(&cfg, "server", "nope") == NULL);
  CHECK(bh__config_get(&cfg, "nope", "listen") == NULL);
  CHECK(bh__config_section(&cfg, "plugin.ai") == cfg.plugins[3].section);
  CHECK(bh__config_section(&cfg, "plugin.zz") == NULL);
  bh__config_free(&cfg);
  CHECK(is_zeroed(&cfg));
  bh__config_free(&cfg); /* twice is harmless */
  bh__config_free(NULL);
}

static void test_full_file(void) {
  const char *text = "\xEF\xBB\xBF# full example\r\n"
                     "[server]\r\n"
                     "listen = [::1]:0\r\n"
                     "admin_listen = localhost:9000 ; inline comment\n"
                     "data_dir = /var/lib/bh\n"
                     "plugin_dir = plugins\n"
                     "admin_token = 0123456789abcdef\n"
                     "problem_style = flat\n"
                     "max_header_bytes = 1024\n"
                     "max_body_bytes = 0\n" /* line 10 */
                     "header_timeout_ms = 100\n"
                     "body_timeout_ms = 3600000\n"
                     "keepalive_timeout_ms = 5000\n"
                     "handler_timeout_ms = 2500\n"
                     "max_connections = 1000000\n"
                     "log = bulkhead.log\n"
                     "log_level = debug\n"
                     "login_page = /signin\n"
                     "\n"
                     "[plugin.auth]\n" /* line 20 */
                     "enabled = yes\n"
                     "required = on\n"
                     "path = /opt/auth.so\n"
                     "mount = /v1/auth,\n"
                     "    /v1/api-keys\n"
                     "idp_url = https://idp.example/x?a=b\n"
                     "\n"
                     "[plugin.billing]\n"
                     "enabled = false\n"
                     "\n" /* line 30 */
                     "[plugin.ai_2]\n"
                     "mount = /v1/authx\n"
                     "[upstream.idp]\n"
                     "url: https://idp.example\n"
                     "[rate_limit.login]\n"
                     "burst = 10\n";
  bh__config cfg;
  char err[256];
  CHECK_INT(load_text(text, &cfg, err, sizeof err), 0);
  CHECK_STR(err, "");
  CHECK_STR(cfg.source, tmp_path);
  CHECK_STR(cfg.listen, "[::1]:0");
  CHECK_STR(cfg.admin_listen, "localhost:9000");
  CHECK_STR(cfg.data_dir, "/var/lib/bh");
  CHECK_STR(cfg.plugin_dir, "plugins");
  CHECK_STR(cfg.admin_token, "0123456789abcdef");
  CHECK_INT(cfg.problem_flat, 1);
  CHECK_INT(cfg.max_header_bytes, 1024);
  CHECK_INT(cfg.max_body_bytes, 0);
  CHECK_INT(cfg.header_timeout_ms, 100);
  CHECK_INT(cfg.body_timeout_ms, 3600000);
  CHECK_INT(cfg.keepalive_timeout_ms, 5000);
  CHECK_INT(cfg.handler_timeout_ms, 2500);
  CHECK_INT(cfg.max_connections, 1000000);
  CHECK_STR(cfg.log_target, "bulkhead.log");
  CHECK_INT(cfg.log_level, BH__DEBUG);
  CHECK_STR(cfg.login_page, "/signin");
  CHECK_INT(cfg.nsections, 6);
  CHECK_INT(cfg.nplugins, 3);
  if (cfg.nplugins == 3) {
    const bh__plugin_conf *a = &cfg.plugins[0];
    CHECK_STR(a->name, "auth");
    CHECK_INT(a->enabled, 1);
    CHECK_INT(a->required, 1);
    CHECK_STR(a->path, "/opt/auth.so");
    CHECK_INT(a->nmounts, 2);
    CHECK_STR(a->mounts[1], "/v1/api-keys");
    CHECK_INT(a->line, 20);
    CHECK_INT(cfg.plugins[1].enabled, 0);
    CHECK_INT(cfg.plugins[1].nmounts, 0);
    CHECK_STR(cfg.plugins[1].path, "billing.so");
    CHECK_STR(cfg.plugins[2].name, "ai_2");
    CHECK_STR(cfg.plugins[2].mounts[0], "/v1/authx"); /* no overlap */
    CHECK_INT(a->section->nkv, 5);
    CHECK_STR(a->section->kv[3].key, "mount");
    CHECK_STR(a->section->kv[3].value, "/v1/auth,\n/v1/api-keys");
    CHECK_INT(a->section->kv[3].line, 24);
    CHECK_INT(a->section->kv[4].line, 26);
  }
  const bh__section *srv = bh__config_section(&cfg, "server");
  CHECK(srv && srv->line == 2 && srv->nkv == 16);
  CHECK(srv && srv->kv[0].line == 3 && srv->kv[15].line == 18);
  CHECK_STR(bh__config_get(&cfg, "plugin.auth", "idp_url"),
            "https://idp.example/x?a=b");
  CHECK_STR(bh__config_get(&cfg, "upstream.idp", "url"), "https://idp.example");
  CHECK_STR(bh__config_get(&cfg, "rate_limit.login", "burst"), "10");
  CHECK(bh__config_section(&cfg, "rate_limit.login")->line == 35);
  bh__config_free(&cfg);
}

static void test_file_errors(void) {
  bh__config cfg;
  char err[512], want[512];
  const char *missing = "no-such-dir-bh/bulkhead.ini";
  CHECK_INT(bh__config_load(missing, &cfg, err, sizeof err), -ENOENT);
  snprintf(want, sizeof want, "%s: cannot read: No such file or directory",
           missing);
  CHECK_STR(err, want);
  CHECK(is_zeroed(&cfg));
  CHECK_INT(bh__config_load(".", &cfg, err, sizeof err), -EISDIR);
  CHECK(strstr(err, ".: cannot read: ") == err);
  /* A NULL or tiny err buffer is fine. */
  CHECK_INT(bh__config_load(missing, &cfg, NULL, 0), -ENOENT);
  CHECK_INT(load_text("[nope]\n", &cfg, err, 8), -EINVAL);
  CHECK_INT(strlen(err), 7);
}

static void test_syntax_errors(void) {
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\n[plugin.auth\n", 3,
             "section header without a closing ']'");
  EXPECT_ERR("[server]\n\nlisten\n", 3, "expected 'key = value'");
  EXPECT_ERR("listen = 127.0.0.1:1\n", 1, "listen: key outside of any");
  EXPECT_ERR("[server]\n= 5\n", 2, "[server]: empty key name");
  EXPECT_ERR("[server] junk\n", 1, "text after ']'");
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\n  [plugin.auth]\n", 3,
             "indented line would continue the value of 'listen'");
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\n\n  data_dir = x\n", 4,
             "indented line would continue");
  char big[400];
  snprintf(big, sizeof big, "[server]\n\ndata_dir = %0250d\n", 0);
  EXPECT_ERR(big, 3, "line longer than 198 bytes");
  snprintf(big, sizeof big, "[server]\ndata_dir = %0187d\nnope = 1\n", 0);
  EXPECT_ERR(big, 3, "[server] nope: unknown key"); /* 198 bytes is fine */
  snprintf(big, sizeof big, "[upstream.%060d]\n", 0);
  EXPECT_ERR(big, 1, "section name must be 1 to 49 bytes");
  /* A syntax error before a semantic one wins, and the reverse. */
  EXPECT_ERR("[server]\nbroken\nlisten = 127.0.0.1:1\nlisten = x:1\n", 2,
             "expected 'key = value'");
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\nlisten = x:1\nbroken\n", 3,
             "[server] listen: duplicate key (first set on line 2)");
}

static void test_structure_errors(void) {
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\n\n[server]\n", 4,
             "[server]: section repeated (first on line 1)");
  EXPECT_ERR("[plugin.auth]\nmount = /a\nfoo = 1\nfoo = 2\n", 4,
             "[plugin.auth] foo: duplicate key (first set on line 3)");
  EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\n[servers]\n", 3,
             "[servers]: unknown section");
  EXPECT_ERR("[upstream.]\n", 1, "[upstream.]: unknown section");
  EXPECT_ERR("[server]\nListen = 127.0.0.1:1\n", 2,
             "[server] Listen: unknown key");
  EXPECT_ERR("[plugin.Auth]\nmount = /a\n", 1,
             "[plugin.Auth]: plugin name must match");
  EXPECT_ERR("[plugin.9x]\nmount = /a\n", 1, "[plugin.9x]: plugin name");
  EXPECT_ERR("[plugin.]\n", 1, "[plugin.]: plugin name");
  EXPECT_ERR("[plugin.a23456789012345678901234567890123]\n", 1,
             "[plugin.a23456789012345678901234567890123]: plugin name");
}

static void test_value_errors(void) {
  EXPECT_ERR("[server]\nheader_timeout_ms = abc\n", 2,
             "[server] header_timeout_ms: expected a duration in "
             "milliseconds between 100 and 3600000, got 'abc'");
  EXPECT_ERR("[server]\nheader_timeout_ms = 99\n", 2,
             "[server] header_timeout_ms: expected a duration");
  EXPECT_ERR("[server]\nbody_timeout_ms = 3600001\n", 2,
             "[server] body_timeout_ms: expected");
  EXPECT_ERR("[server]\nkeepalive_timeout_ms = 10s\n", 2,
             "[server] keepalive_timeout_ms: expected");
  EXPECT_ERR("[server]\nhandler_timeout_ms = -100\n", 2,
             "[server] handler_timeout_ms: expected");
  EXPECT_ERR("[server]\nmax_header_bytes = 1023\n", 2,
             "[server] max_header_bytes: expected a size in bytes between "
             "1024 and 1048576, got '1023'");
  EXPECT_ERR("[server]\nmax_header_bytes = +2048\n", 2,
             "[server] max_header_bytes: expected");
  EXPECT_ERR("[server]\nmax_body_bytes = 1073741825\n", 2,
             "[server] max_body_bytes: expected");
  EXPECT_ERR("[server]\nmax_body_bytes = 99999999999999999999999999\n", 2,
             "[server] max_body_bytes: expected");
  EXPECT_ERR("[server]\nmax_body_bytes = 0x10\n", 2,
             "[server] max_body_bytes: expected");
  EXPECT_ERR("[server]\nmax_connections = 0\n", 2,
             "[server] max_connections: expected");
  EXPECT_ERR("[server]\nmax_connections = 1 000\n", 2,
             "[server] max_connections: expected");
  EXPECT_ERR("[server]\nmax_connections =\n", 2,
             "[server] max_connections: expected");
  EXPECT_ERR("[server]\nlisten = 127.0.0.1\n", 2,
             "[server] listen: expected host:port");
  EXPECT_ERR("[server]\nlisten = example.com:80\n", 2,
             "[server] listen: expected an IP address or localhost to listen "
             "on, got 'example.com:80'");
  EXPECT_ERR("[server]\nadmin_listen = 127.0.0.1:65536\n", 2,
             "[server] admin_listen: expected host:port");
  EXPECT_ERR("[server]\nproblem_style = pretty\n", 2,
             "[server] problem_style: expected nested or flat, got 'pretty'");
  EXPECT_ERR("[server]\nlog_level = verbose\n", 2,
             "[server] log_level: expected debug, info, warn or error");
  EXPECT_ERR("[server]\nlog =\n", 2, "[server] log: must not be empty");
  EXPECT_ERR("[server]\ndata_dir =\n", 2, "[server] data_dir: must not be");
  EXPECT_ERR("[server]\nlogin_page = login\n", 2,
             "[server] login_page: expected a local path");
  EXPECT_ERR("[server]\nlogin_page = //evil.example\n", 2,
             "[server] login_page: expected a local path");
  EXPECT_ERR("[server]\nlogin_page = /\\evil.example\n", 2,
             "[server] login_page: expected a local path");
  EXPECT_ERR("[server]\nlogin_page = /a\n  /b\n", 2,
             "[server] login_page: control character or line break in "
             "'/a?/b'");

  /* The token is a secret: its value never appears in the message. */
  bh__config cfg;
  char err[512];
  CHECK_INT(
      load_text("[server]\nadmin_token = hunter2\n", &cfg, err, sizeof err),
      -EINVAL);
  CHECK(strstr(err, ":2: [server] admin_token: must be at least 16") != NULL);
  CHECK(strstr(err, "hunter2") == NULL);

  EXPECT_ERR("[plugin.auth]\nenabled = maybe\n", 2,
             "[plugin.auth] enabled: expected true/false");
  EXPECT_ERR("[plugin.auth]\nmount = /a\nrequired = 2\n", 3,
             "[plugin.auth] required: expected true/false");
  EXPECT_ERR("[plugin.auth]\nmount = /a\npath =\n", 3,
             "[plugin.auth] path: expected a file name");
  EXPECT_ERR("[plugin.auth]\nmount = /a\nenabled = off\nrequired = yes\n", 4,
             "[plugin.auth] required: a required plugin cannot be disabled");
}

static void test_mount_errors(void) {
  EXPECT_ERR("[plugin.auth]\npath = a.so\n", 1,
             "[plugin.auth] mount: required when the plugin is enabled");
  EXPECT_ERR("[plugin.auth]\nmount = /\n", 2,
             "[plugin.auth] mount: mount '/' would capture every route");
  EXPECT_ERR("[plugin.auth]\nmount = /v1/auth/\n", 2,
             "[plugin.auth] mount: mount '/v1/auth/' must not end with '/'");
  EXPECT_ERR("[plugin.auth]\nmount = v1/auth\n", 2,
             "[plugin.auth] mount: mount 'v1/auth' must be an absolute path");
  EXPECT_ERR("[plugin.auth]\nmount = /v1/../admin\n", 2,
             "[plugin.auth] mount: mount '/v1/../admin' must not contain "
             "'..'");
  EXPECT_ERR("[plugin.auth]\nmount = /v1/*\n", 2,
             "[plugin.auth] mount: mount '/v1/*' must not contain '*'");
  EXPECT_ERR("[plugin.auth]\nmount = /v1//a\n", 2,
             "[plugin.auth] mount: mount '/v1//a' must not contain an empty");
  EXPECT_ERR("[plugin.auth]\nmount = /v1/a b\n", 2,
             "[plugin.auth] mount: mount '/v1/a b' must not contain "
             "whitespace");
  EXPECT_ERR("[plugin.auth]\nmount = /v1/a\n  /v1/b\n", 2,
             "[plugin.auth] mount: mount '/v1/a?/v1/b' must not contain");
  EXPECT_ERR("[plugin.auth]\nmount = /a,,/b\n", 2,
             "[plugin.auth] mount: empty entry in the mount list");
  EXPECT_ERR("[plugin.auth]\nmount = /a,\n", 2,
             "[plugin.auth] mount: empty entry");
  EXPECT_ERR("[plugin.auth]\nmount =\n", 2, "[plugin.auth] mount: empty");
  EXPECT_ERR("[plugin.auth]\nmount = /a, /a\n", 2,
             "[plugin.auth] mount: mount '/a' listed twice");

  /* The same prefix twice across plugins, named on the later one's mount
   * line; nested prefixes are allowed (longest prefix owns the path). */
  EXPECT_ERR("[plugin.a]\nmount = /v1\n[plugin.b]\nmount = /v1\n", 4,
             "[plugin.b] mount: mount '/v1' is already mounted by [plugin.a]: "
             "one plugin per prefix (prefixes may nest)");
  {
    bh__config nested;
    char nerr[512];
    CHECK_INT(load_text("[plugin.auth]\nmount = /v1/auth\n[plugin.sso]\n"
                        "mount = /v1/auth/sso\n",
                        &nested, nerr, sizeof nerr),
              0);
    CHECK_INT(nested.nplugins, 2);
    bh__config_free(&nested);
  }

  /* Not overlaps: a longer segment, or a disabled plugin. */
  bh__config cfg;
  char err[512];
  CHECK_INT(load_text("[plugin.a]\nmount = /v1/auth\n[plugin.b]\n"
                      "mount = /v1/authz, /v1/au\n[plugin.c]\nenabled = 0\n"
                      "mount = /v1/auth\n[plugin.d]\nenabled = no\n",
                      &cfg, err, sizeof err),
            0);
  CHECK_STR(err, "");
  CHECK_INT(cfg.nplugins, 4);
  bh__config_free(&cfg);
}

static void test_env(void) {
  bh__config cfg;
  char err[512];
  setenv("BULKHEAD_SERVER_LISTEN", "0.0.0.0:9000", 1);
  setenv("BULKHEAD_SERVER_ADMIN_TOKEN", "abcdefghijklmnopqrstuvwxyz", 1);
  setenv("BULKHEAD_SERVER_MAX_BODY_BYTES", "2048", 1);
  setenv("BULKHEAD_PLUGIN_AI_MOUNT", "/v2/ai, /v2/draft", 1);
  setenv("BULKHEAD_PLUGIN_BILLING_ENABLED", "false", 1);
  setenv("BULKHEAD_PLUGIN_BILLING_SECRET_KEY", "sk_test_1", 1);
  CHECK_INT(bh__config_load(NULL, &cfg, err, sizeof err), 0);
  CHECK_STR(err, "");
  CHECK_STR(cfg.listen, "0.0.0.0:9000");
  CHECK_STR(cfg.admin_token, "abcdefghijklmnopqrstuvwxyz");
  CHECK_INT(cfg.max_body_bytes, 2048);
  CHECK_INT(cfg.plugins[1].enabled, 0);
  CHECK_INT(cfg.plugins[3].nmounts, 2);
  CHECK_STR(cfg.plugins[3].mounts[1], "/v2/draft");
  /* Applied values are stored as line-0 keys of their section. */
  const bh__section *srv = bh__config_section(&cfg, "server");
  for (size_t i = 0; srv && i < srv->nkv; i++)
    if (strcmp(srv->kv[i].key, "listen") == 0 ||
        strcmp(srv->kv[i].key, "admin_token") == 0)
      CHECK_INT(srv->kv[i].line, 0);
  CHECK_STR(bh__config_get(&cfg, "server", "admin_token"),
            "abcdefghijklmnopqrstuvwxyz");
  /* Free keys: looked up in the environment at call time. */
  CHECK_STR(bh__config_get(&cfg, "plugin.billing", "secret_key"), "sk_test_1");
  setenv("BULKHEAD_PLUGIN_BILLING_SECRET_KEY", "sk_test_2", 1);
  CHECK_STR(bh__config_get(&cfg, "plugin.billing", "secret_key"), "sk_test_2");
  unsetenv("BULKHEAD_PLUGIN_BILLING_SECRET_KEY");
  CHECK(bh__config_get(&cfg, "plugin.billing", "secret_key") == NULL);
  setenv("BULKHEAD_UPSTREAM_IDP_URL", "https://idp", 1);
  CHECK_STR(bh__config_get(&cfg, "upstream.idp", "url"), "https://idp");
  unsetenv("BULKHEAD_UPSTREAM_IDP_URL");
  bh__config_free(&cfg);
  unsetenv("BULKHEAD_SERVER_LISTEN");
  unsetenv("BULKHEAD_SERVER_ADMIN_TOKEN");
  unsetenv("BULKHEAD_SERVER_MAX_BODY_BYTES");
  unsetenv("BULKHEAD_PLUGIN_AI_MOUNT");
  unsetenv("BULKHEAD_PLUGIN_BILLING_ENABLED");

  /* An override wins over the file and may enable a disabled plugin. */
  const char *path = write_tmp("[server]\nlisten = 127.0.0.1:1\n"
                               "[plugin.x_y]\nenabled = off\nk = file\n");
  setenv("BULKHEAD_PLUGIN_X_Y_ENABLED", "1", 1);
  setenv("BULKHEAD_PLUGIN_X_Y_MOUNT", "/v1/xy", 1);
  setenv("BULKHEAD_PLUGIN_X_Y_K", "env", 1);
  CHECK_INT(bh__config_load(path, &cfg, err, sizeof err), 0);
  CHECK_STR(err, "");
  CHECK_INT(cfg.nplugins, 1);
  CHECK_INT(cfg.plugins[0].enabled, 1);
  CHECK_STR(cfg.plugins[0].mounts[0], "/v1/xy");
  CHECK_STR(bh__config_get(&cfg, "plugin.x_y", "k"), "env");
  CHECK_INT(cfg.plugins[0].section->nkv, 3);
  bh__config_free(&cfg);
  unsetenv("BULKHEAD_PLUGIN_X_Y_K");

  /* Invalid overrides name the variable instead of a line. */
  setenv("BULKHEAD_PLUGIN_X_Y_MOUNT", "/", 1);
  EXPECT_ENV_ERR(path, "ENV BULKHEAD_PLUGIN_X_Y_MOUNT: [plugin.x_y] mount: "
                       "mount '/' would capture every route");
  unsetenv("BULKHEAD_PLUGIN_X_Y_MOUNT");
  char want[512];
  snprintf(want, sizeof want,
           "%s:3: [plugin.x_y] mount: required when the plugin is enabled",
           path);
  EXPECT_ENV_ERR(path, want);
  unsetenv("BULKHEAD_PLUGIN_X_Y_ENABLED");
  setenv("BULKHEAD_SERVER_LISTEN", "nowhere", 1);
  EXPECT_ENV_ERR(path, "ENV BULKHEAD_SERVER_LISTEN: [server] listen: "
                       "expected host:port or [ipv6]:port with a port "
                       "between 0 and 65535, got 'nowhere'");
  EXPECT_ENV_ERR(NULL, "ENV BULKHEAD_SERVER_LISTEN: [server] listen:");
  setenv("BULKHEAD_SERVER_LISTEN", "a:1\nb", 1);
  EXPECT_ENV_ERR(NULL, "ENV BULKHEAD_SERVER_LISTEN: [server] listen: control "
                       "character or line break in 'a:1?b'");
  unsetenv("BULKHEAD_SERVER_LISTEN");
  setenv("BULKHEAD_SERVER_HANDLER_TIMEOUT_MS", "5m", 1);
  EXPECT_ENV_ERR(path, "ENV BULKHEAD_SERVER_HANDLER_TIMEOUT_MS: [server] "
                       "handler_timeout_ms: expected a duration in "
                       "milliseconds between 100 and 3600000, got '5m'");
  unsetenv("BULKHEAD_SERVER_HANDLER_TIMEOUT_MS");
  /* An override for a section the file lacks creates [server] only. */
  const char *p2 = write_tmp("[upstream.idp]\nurl = http://x\n");
  setenv("BULKHEAD_SERVER_DATA_DIR", "/srv/bh", 1);
  setenv("BULKHEAD_PLUGIN_GHOST_MOUNT", "/ghost", 1);
  CHECK_INT(bh__config_load(p2, &cfg, err, sizeof err), 0);
  CHECK_STR(cfg.data_dir, "/srv/bh");
  CHECK_INT(cfg.nplugins, 0);
  CHECK(bh__config_section(&cfg, "server") != NULL);
  CHECK(bh__config_section(&cfg, "plugin.ghost") == NULL);
  bh__config_free(&cfg);
  unsetenv("BULKHEAD_SERVER_DATA_DIR");
  unsetenv("BULKHEAD_PLUGIN_GHOST_MOUNT");
  unlink(p2);
  unlink(path);
}

static void test_parse_addr(void) {
  char host[64];
  int port = -1;
  CHECK_INT(bh__config_parse_addr("127.0.0.1:8080", host, sizeof host, &port),
            0);
  CHECK_STR(host, "127.0.0.1");
  CHECK_INT(port, 8080);
  CHECK_INT(bh__config_parse_addr("[::1]:0", host, sizeof host, &port), 0);
  CHECK_STR(host, "::1");
  CHECK_INT(port, 0);
  CHECK_INT(bh__config_parse_addr("localhost:80", host, sizeof host, &port), 0);
  CHECK_STR(host, "localhost");
  CHECK_INT(port, 80);
  CHECK_INT(
      bh__config_parse_addr("[2001:db8::2]:65535", host, sizeof host, &port),
      0);
  CHECK_INT(port, 65535);
  CHECK_INT(bh__config_parse_addr("a.b-c:1", NULL, 0, NULL), 0);
  static const char *const bad[] = {
      "127.0.0.1",
      "127.0.0.1:",
      ":8080",
      "localhost:65536",
      "host:-1",
      "host:+1",
      "host:80x",
      "host: 80",
      "::1:80",
      "[::1]",
      "[::1]80",
      "[]:80",
      "[zz]:80",
      "ho st:80",
      "host:000080",
      "[::1]:99999999999",
      "host:80/x",
      "host:0x50",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = bh__config_parse_addr(bad[i], host, sizeof host, &port);
    if (rc != -EINVAL) fprintf(stderr, "accepted bad address '%s'\n", bad[i]);
    CHECK_INT(rc, -EINVAL);
  }
  CHECK_INT(bh__config_parse_addr(NULL, host, sizeof host, &port), -EINVAL);
  /* The host must fit the caller's buffer. */
  CHECK_INT(bh__config_parse_addr("localhost:80", host, 9, &port), -EINVAL);
  CHECK_INT(bh__config_parse_addr("localhost:80", host, 10, &port), 0);
}

/* The shipped example must load as is. */
static void test_example_file(void) {
  const char *dir = getenv("BULKHEAD_SOURCE_DIR");
  if (!dir || !*dir) {
    printf("note: BULKHEAD_SOURCE_DIR unset, etc/bulkhead.ini not checked\n");
    return;
  }
  char path[1024], err[512];
  snprintf(path, sizeof path, "%s/etc/bulkhead.ini", dir);
  bh__config cfg;
  CHECK_INT(bh__config_load(path, &cfg, err, sizeof err), 0);
  if (err[0]) fprintf(stderr, "%s\n", err);
  /* It documents the defaults: it must load to the embedded default. */
  bh__config def;
  CHECK_INT(bh__config_load(NULL, &def, err, sizeof err), 0);
  CHECK_STR(cfg.listen, def.listen);
  CHECK_STR(cfg.admin_listen, def.admin_listen);
  CHECK_STR(cfg.data_dir, def.data_dir);
  CHECK(cfg.plugin_dir == NULL && cfg.admin_token == NULL);
  CHECK_INT(cfg.problem_flat, def.problem_flat);
  CHECK_INT(cfg.max_header_bytes, def.max_header_bytes);
  CHECK_INT(cfg.max_body_bytes, def.max_body_bytes);
  CHECK_INT(cfg.header_timeout_ms, def.header_timeout_ms);
  CHECK_INT(cfg.body_timeout_ms, def.body_timeout_ms);
  CHECK_INT(cfg.keepalive_timeout_ms, def.keepalive_timeout_ms);
  CHECK_INT(cfg.handler_timeout_ms, def.handler_timeout_ms);
  CHECK_INT(cfg.max_connections, def.max_connections);
  CHECK_STR(cfg.log_target, def.log_target);
  CHECK_INT(cfg.log_level, def.log_level);
  CHECK_STR(cfg.login_page, def.login_page);
  CHECK_INT(cfg.nplugins, def.nplugins);
  for (size_t i = 0; i < cfg.nplugins && i < def.nplugins; i++) {
    const bh__plugin_conf *a = &cfg.plugins[i], *b = &def.plugins[i];
    CHECK_STR(a->name, b->name);
    CHECK_STR(a->path, b->path);
    CHECK_INT(a->enabled, b->enabled);
    CHECK_INT(a->required, b->required);
    CHECK_INT(a->nmounts, b->nmounts);
    for (size_t j = 0; j < a->nmounts && j < b->nmounts; j++)
      CHECK_STR(a->mounts[j], b->mounts[j]);
  }
  bh__config_free(&def);
  bh__config_free(&cfg);
}

int main(void) {
  /* Overrides from the caller's shell would skew every expectation. */
  extern char **environ;
  for (size_t i = 0; environ[i];) {
    if (strncmp(environ[i], "BULKHEAD_", 9) == 0 &&
        strncmp(environ[i], "BULKHEAD_SOURCE_DIR=", 20) != 0) {
      char name[256];
      size_t n = strcspn(environ[i], "=");
      snprintf(name, sizeof name, "%.*s", (int)n, environ[i]);
      unsetenv(name);
      continue;
    }
    i++;
  }
  test_defaults();
  test_full_file();
  test_file_errors();
  test_syntax_errors();
  test_structure_errors();
  test_value_errors();
  test_mount_errors();
  test_env();
  test_parse_addr();
  test_example_file();
  return check_finish("test_config");
}
