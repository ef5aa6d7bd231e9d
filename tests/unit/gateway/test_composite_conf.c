/*
 * [composite.NAME] at load (gateway/composite_conf.c): a good section
 * passes; each malformed key fails with "FILE:LINE: [composite.NAME] KEY:"
 * and what is wrong; two composites on one route are refused. Run under
 * ASan to catch leaks on the error paths.
 */
#include "gateway/composite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char tmp_path[256];

/* Loads "[composite.dash]\n<body>" (after an empty [server]) and checks
 * it; err gets the first error. */
static int load(const char *body, char *err, size_t errlen) {
  const char *dir = getenv("TMPDIR");
  snprintf(tmp_path, sizeof tmp_path, "%s/bh_composite_XXXXXX",
           dir && *dir ? dir : P_tmpdir);
  int fd = mkstemp(tmp_path);
  if (fd < 0) {
    perror("mkstemp");
    exit(2);
  }
  FILE *f = fdopen(fd, "w");
  fprintf(f, "[server]\n[composite.dash]\n%s", body);
  fclose(f);
  bh__config cfg;
  err[0] = '\0';
  int rc = bh__config_load(tmp_path, &cfg, err, errlen);
  if (rc == 0) {
    rc = bh__composite_conf_check(&cfg, err, errlen);
    bh__config_free(&cfg);
  }
  unlink(tmp_path);
  return rc;
}

static void expect_ok(int srcline, const char *body) {
  char err[512];
  int rc = load(body, err, sizeof err);
  if (rc != 0) fprintf(stderr, "test_composite_conf.c:%d: %s\n", srcline, err);
  CHECK_INT(rc, 0);
}

/* An error on `line` of `section` `key`, saying `what`. */
static void expect_err(int srcline, const char *body, int line,
                       const char *section, const char *key, const char *what) {
  char err[512], want[400];
  int rc = load(body, err, sizeof err);
  snprintf(want, sizeof want, "%s:%d: [%s] %s", tmp_path, line, section, key);
  int ok = rc == -EINVAL && strncmp(err, want, strlen(want)) == 0 &&
           strstr(err, what) != NULL;
  if (!ok)
    fprintf(stderr,
            "test_composite_conf.c:%d: rc %d, got '%s', want '%s...%s'\n",
            srcline, rc, err, want, what);
  CHECK(ok);
}

#define OK(b) expect_ok(__LINE__, b)
#define ERR(b, line, key, what)                                                \
  expect_err(__LINE__, b, line, "composite.dash", key, what)

static const char ROUTE[] = "route = GET /v1/dash\n";

static void test_good(void) {
  OK("route = GET /v1/dash\nsection.a = GET /t/echo/ok\n");
  OK("route = GET /v1/dash\n"
     "section.apiKeys = GET /v1/api-keys\n"
     "section.deliveries = GET /v1/webhooks/deliveries?limit=5&x=%20\n"
     "timeout_ms = 800\nrequired = apiKeys, deliveries\n");
}

static void test_bad(void) {
  ERR("section.a = GET /t/echo/ok\n", 2, "route", "required");
  ERR("route = /v1/dash\nsection.a = GET /x\n", 3, "route", "METHOD");
  ERR("route = GET /v1/{x}\nsection.a = GET /x\n", 3, "route", "literal");
  ERR("route = GET /v1/d?x=1\nsection.a = GET /x\n", 3, "route", "literal");
  ERR(ROUTE, 2, "section.KEY", "at least one section");
  ERR("route = GET /v1/dash\nsection.a = get /x\n", 4, "section.a", "METHOD");
  ERR("route = GET /v1/dash\nsection.a = GET x\n", 4, "section.a", "'/'");
  ERR("route = GET /v1/dash\nsection.a-b = GET /x\n", 4, "section.a-b",
      "[A-Za-z0-9_]");
  ERR("route = GET /v1/dash\nsection.a = GET /x\ntimeout_ms = 0\n", 5,
      "timeout_ms", "milliseconds");
  ERR("route = GET /v1/dash\nsection.a = GET /x\ntimeout_ms = 5s\n", 5,
      "timeout_ms", "milliseconds");
  ERR("route = GET /v1/dash\nsection.a = GET /x\nrequired = a, b\n", 5,
      "required", "b is not a section");
  ERR("route = GET /v1/dash\nsection.a = GET /x\nextra = 1\n", 5, "extra",
      "unknown key");
}

static void test_same_route_twice(void) {
  char err[512];
  int rc = load("route = GET /v1/dash\nsection.a = GET /x\n"
                "[composite.other]\nroute = GET /v1/dash\nsection.b = GET /y\n",
                err, sizeof err);
  CHECK_INT(rc, -EINVAL);
  CHECK(strstr(err, "[composite.other] route") != NULL);
  CHECK(strstr(err, "already [composite.dash]'s") != NULL);
  rc = load("route = GET /v1/dash\nsection.a = GET /x\n"
            "[composite.Bad]\nroute = GET /v1/b\nsection.b = GET /y\n",
            err, sizeof err);
  CHECK_INT(rc, -EINVAL);
  CHECK(strstr(err, "[a-z][a-z0-9_]") != NULL);
}

int main(void) {
  test_good();
  test_bad();
  test_same_route_twice();
  return check_finish("test_composite_conf");
}
