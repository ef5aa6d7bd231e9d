/*
 * CORS policies at load (gateway/cors.c): off unless some mount has
 * cors_origins; the origin, header-list and max-age rules with their
 * "FILE:LINE: [section] key:" prefix; '*' with credentials refused where
 * the two meet (a mount's credentials over [server]'s '*'); an override
 * from the environment named by its variable. Run under ASan to catch
 * leaks on the error paths.
 */
#include "gateway/cors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char tmp_path[256];

/* Loads "[server]\n<server>[plugin.echo]\nmount = /t/echo\n<echo>" and
 * its CORS policies; err gets the first error. */
static int load(const char *server, const char *echo, bh__cors_conf **out,
                char *err, size_t errlen) {
  const char *dir = getenv("TMPDIR");
  snprintf(tmp_path, sizeof tmp_path, "%s/bh_cors_XXXXXX",
           dir && *dir ? dir : P_tmpdir);
  int fd = mkstemp(tmp_path);
  if (fd < 0) {
    perror("mkstemp");
    exit(2);
  }
  FILE *f = fdopen(fd, "w");
  fprintf(f, "[server]\n%s[plugin.echo]\nmount = /t/echo\n%s", server, echo);
  fclose(f);
  bh__config cfg;
  err[0] = '\0';
  int rc = bh__config_load(tmp_path, &cfg, err, errlen);
  if (rc == 0) {
    rc = bh__cors_conf_load(&cfg, out, err, errlen);
    bh__config_free(&cfg);
  }
  unlink(tmp_path);
  return rc;
}

static void expect_ok(int srcline, const char *server, const char *echo,
                      int on) {
  char err[512];
  bh__cors_conf *c = (bh__cors_conf *)1;
  int rc = load(server, echo, &c, err, sizeof err);
  if (rc != 0 || (c != NULL) != on)
    fprintf(stderr, "test_cors.c:%d: rc %d, conf %p: %s\n", srcline, rc,
            (void *)c, err);
  CHECK_INT(rc, 0);
  CHECK_INT(c != NULL, on);
  bh__cors_conf_free(c);
}

/* An error on `line` of [section] `key`, saying `what`. */
static void expect_err(int srcline, const char *server, const char *echo,
                       int line, const char *section, const char *key,
                       const char *what) {
  char err[512], want[400];
  bh__cors_conf *c = (bh__cors_conf *)1;
  int rc = load(server, echo, &c, err, sizeof err);
  snprintf(want, sizeof want, "%s:%d: [%s] %s: ", tmp_path, line, section, key);
  int ok = rc == -EINVAL && c == NULL &&
           strncmp(err, want, strlen(want)) == 0 && strstr(err, what) != NULL;
  if (!ok)
    fprintf(stderr, "test_cors.c:%d: rc %d, got '%s', want '%s...%s'\n",
            srcline, rc, err, want, what);
  CHECK(ok);
}

#define OK(s, e, on) expect_ok(__LINE__, s, e, on)
#define ERR(s, e, line, sec, key, what)                                        \
  expect_err(__LINE__, s, e, line, sec, key, what)

static const char ORIGINS[] = "exact origins";

static void test_off_and_on(void) {
  OK("", "", 0);
  /* headers or credentials alone turn nothing on */
  OK("cors_headers = X-A\ncors_credentials = true\n", "", 0);
  OK("cors_origins = https://portal.example.com\n", "", 1);
  OK("", "cors_origins = http://127.0.0.1:8080\n", 1);
  /* [server] on, the mount off ("cors_origins =" empty) */
  OK("cors_origins = https://a.example\n", "cors_origins =\n", 1);
  OK("cors_origins = *\n", "", 1);
  OK("cors_origins = HTTPS://A.Example, http://[::1]:65535\n"
     "cors_credentials = on\ncors_max_age = 86400\n",
     "cors_expose =\ncors_headers = X-A,X-B , Content-Type\n", 1);
}

static void test_origins(void) {
  static const char *const bad[] = {
      "a.example",
      "ftp://a.example",
      "https://",
      "https://a.example/",
      "https://a.example/app",
      "https://a.example:0",
      "https://a.example:65536",
      "https://a.example:",
      "https://u@a.example",
      "https://a.example?x",
      "null",
      "https://[]",
      "https://a_b.example",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char line[128];
    snprintf(line, sizeof line, "cors_origins = https://ok.example, %s\n",
             bad[i]);
    ERR(line, "", 2, "server", "cors_origins", ORIGINS);
  }
  ERR("cors_origins = *, https://a.example\n", "", 2, "server", "cors_origins",
      ORIGINS);
  ERR("", "cors_origins = https://a.example/x\n", 4, "plugin.echo",
      "cors_origins", ORIGINS);
}

static void test_wildcard_and_credentials(void) {
  ERR("cors_origins = *\ncors_credentials = true\n", "", 3, "server",
      "cors_credentials", "exact origins instead");
  /* the mount's credentials meet [server]'s '*' */
  ERR("cors_origins = *\n", "cors_credentials = yes\n", 5, "plugin.echo",
      "cors_credentials", "exact origins instead");
  /* the mount's '*' meets [server]'s credentials */
  ERR("cors_credentials = true\n", "cors_origins = *\n", 5, "plugin.echo",
      "cors_origins", "exact origins instead");
  /* the mount lists origins: [server]'s credentials are fine there */
  OK("cors_credentials = true\n", "cors_origins = https://a.example\n", 1);
  ERR("", "cors_credentials = maybe\n", 4, "plugin.echo", "cors_credentials",
      "true/false");
}

static void test_lists_and_age(void) {
  ERR("cors_headers = X-A, Bad:Name\n", "", 2, "server", "cors_headers",
      "header names");
  ERR("", "cors_expose = *\n", 4, "plugin.echo", "cors_expose", "header names");
  ERR("", "cors_max_age = 86401\n", 4, "plugin.echo", "cors_max_age",
      "between 0 and 86400");
  ERR("cors_max_age = -1\n", "", 2, "server", "cors_max_age", "between 0");
  ERR("cors_max_age = 10s\n", "", 2, "server", "cors_max_age", "between 0");
  ERR("cors_max_age =\n", "", 2, "server", "cors_max_age", "between 0");
}

static void test_env(void) {
  char err[512];
  bh__cors_conf *c = NULL;
  setenv("BULKHEAD_PLUGIN_ECHO_CORS_ORIGINS", "https://a.example/path", 1);
  CHECK_INT(load("", "", &c, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "ENV BULKHEAD_PLUGIN_ECHO_CORS_ORIGINS: [plugin.echo] "
                    "cors_origins: ") == err);
  setenv("BULKHEAD_PLUGIN_ECHO_CORS_ORIGINS", "https://a.example", 1);
  CHECK_INT(load("", "", &c, err, sizeof err), 0);
  CHECK(c != NULL);
  bh__cors_conf_free(c);
  unsetenv("BULKHEAD_PLUGIN_ECHO_CORS_ORIGINS");
}

int main(void) {
  test_off_and_on();
  test_origins();
  test_wildcard_and_credentials();
  test_lists_and_age();
  test_env();
  return check_finish("test_cors");
}
