/* core/host/services.c seen from a plugin: bh_routes_add (the route table
 * helper) over the real route registration, and secret_get / secret_free
 * (the core's "@env:" / "@file:" resolver as a service). */
#include <bulkhead/plugin.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "host/host.h"
#include "http/router.h"
#include "proc/daemon-t.h"

static char dir[] = "/tmp/bh-unit-services-XXXXXX";
static char cfg_path[256];
static char secret_path[256];

static void h(bh_req *req, void *data) {
  (void)req;
  (void)data;
}

/* A daemon of one plugin "t" mounted at /t, in init(). */
static void setup(bh__daemon *d, bh__config *cfg, bh__plugin *p) {
  FILE *f = fopen(secret_path, "wb");
  fputs("s3cret\r\n", f);
  fclose(f);
  f = fopen(cfg_path, "w");
  fprintf(f,
          "[server]\ndata_dir = %s\n"
          "[plugin.t]\npath = t.so\nmount = /t\n"
          "literal = plain value\n"
          "env = @env:BH_UNIT_SECRET\n"
          "unset = @env:BH_UNIT_SECRET_UNSET\n"
          "file = @file:%s\n"
          "nofile = @file:%s/missing\n",
          dir, secret_path, dir);
  fclose(f);
  char err[256];
  int rc = bh__config_load(cfg_path, cfg, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "config: %s\n", err);
    exit(1);
  }
  memset(d, 0, sizeof(*d));
  d->cfg = cfg;
  d->svc = bh__services();
  d->router = bh__router_new();
  memset(p, 0, sizeof(*p));
  p->d = d;
  p->conf = &cfg->plugins[0];
  p->name = cfg->plugins[0].name;
  p->ctx.svc = d->svc;
  p->ctx.plugin = p;
  p->loop_thread = pthread_self();
  p->shm_index = -1;
  p->in_init = 1;
}

static void teardown(bh__daemon *d, bh__config *cfg, bh__plugin *p) {
  for (size_t i = 0; i < p->nroutes; i++) {
    free(p->routes[i]->method);
    free(p->routes[i]->pattern);
    free(p->routes[i]->rate_limit);
    free(p->routes[i]);
  }
  free(p->routes);
  free(p->reg_error);
  bh__router_free(d->router);
  bh__config_free(cfg);
}

#define R(m, pat)                                                              \
  { .size = sizeof(bh_route), .method = m, .pattern = pat, .handler = h }

static void test_route_table(void) {
  bh__daemon d;
  bh__config cfg;
  bh__plugin p;
  setup(&d, &cfg, &p);
  static const bh_route ok[] = {R("GET", "/t/items"), R("GET", "/t/items/{id}"),
                                R("POST", "/t/items"), R("DELETE", "/t/x/*")};
  CHECK_INT(bh_routes_add(&p.ctx, ok, BH_COUNT(ok)), 0);
  CHECK_INT(p.nroutes, 4);
  CHECK_STR(p.routes[1]->pattern, "/t/items/{id}");
  CHECK_STR(p.routes[2]->method, "POST");
  CHECK(p.reg_error == NULL);
  /* the first failure stops the table and is the one reported */
  static const bh_route bad[] = {R("GET", "/t/a"), R("GET", "/t/b/{id"),
                                 R("GET", "/elsewhere"), R("GET", "/t/c")};
  CHECK_INT(bh_routes_add(&p.ctx, bad, BH_COUNT(bad)), -EINVAL);
  CHECK_INT(p.nroutes, 5);
  CHECK_STR(p.reg_error,
            "plugin t: route GET /t/b/{id: bad pattern: a parameter segment "
            "is {name}, name [A-Za-z_][A-Za-z0-9_]*");
  teardown(&d, &cfg, &p);

  setup(&d, &cfg, &p);
  static const bh_route out[] = {R("GET", "/elsewhere")};
  CHECK_INT(bh_routes_add(&p.ctx, out, 1), -EINVAL);
  CHECK_STR(p.reg_error, "plugin t: route GET /elsewhere: outside the "
                         "plugin's mounts (/t): a route lies under a mount "
                         "of [plugin.t]");
  teardown(&d, &cfg, &p);

  setup(&d, &cfg, &p);
  static const bh_route twice[] = {R("GET", "/t/{a}"), R("GET", "/t/{b}")};
  CHECK_INT(bh_routes_add(&p.ctx, twice, 2), -EEXIST);
  CHECK(p.reg_error && strstr(p.reg_error, "plugin t: route GET /t/{b} "
                                           "clashes with plugin 't'"));
  teardown(&d, &cfg, &p);

  setup(&d, &cfg, &p);
  static const bh_route meth[] = {R("get", "/t/x")};
  CHECK_INT(bh_routes_add(&p.ctx, meth, 1), -EINVAL);
  CHECK_STR(p.reg_error,
            "plugin t: route get /t/x: bad method: 1 to 16 letters A-Z");
  /* outside init() registration is refused */
  p.in_init = 0;
  CHECK_INT(bh_routes_add(&p.ctx, ok, BH_COUNT(ok)), -EPERM);
  CHECK_INT(bh_routes_add(&p.ctx, ok, 0), 0);
  teardown(&d, &cfg, &p);
}

static void test_secret(void) {
  bh__daemon d;
  bh__config cfg;
  bh__plugin p;
  setup(&d, &cfg, &p);
  setenv("BH_UNIT_SECRET", " spaced value\n", 1);
  unsetenv("BH_UNIT_SECRET_UNSET");
  const bh_services *svc = bh__services();
  CHECK(BH_SVC_HAS(svc, secret_get));
  char *s = NULL;
  size_t n = 0;
  CHECK_INT(bh_secret_get(&p.ctx, "literal", &s, &n), 0);
  CHECK_STR(s, "plain value");
  CHECK_INT(n, 11);
  bh_secret_free(&p.ctx, s, n);
  /* the environment value exactly: no trimming */
  CHECK_INT(bh_secret_get(&p.ctx, "env", &s, &n), 0);
  CHECK_STR(s, " spaced value\n");
  bh_secret_free(&p.ctx, s, n);
  /* a file loses one line break (CRLF here) and nothing else */
  CHECK_INT(bh_secret_get(&p.ctx, "file", &s, &n), 0);
  CHECK_STR(s, "s3cret");
  CHECK_INT(n, 6);
  bh_secret_free(&p.ctx, s, n);
  /* an absent key, an unset variable, a missing file */
  s = (char *)"untouched";
  CHECK_INT(bh_secret_get(&p.ctx, "absent", &s, &n), -ENOENT);
  CHECK(s == NULL);
  CHECK_INT(bh_secret_get(&p.ctx, "unset", &s, &n), -ENOENT);
  CHECK(s == NULL);
  CHECK_INT(bh_secret_get(&p.ctx, "nofile", &s, &n), -ENOENT);
  CHECK(s == NULL);
  CHECK_INT(bh_secret_get(&p.ctx, NULL, &s, &n), -EINVAL);
  bh_secret_free(&p.ctx, NULL, 0);
  /* the override BULKHEAD_PLUGIN_T_<KEY> applies as to config_get */
  setenv("BULKHEAD_PLUGIN_T_LITERAL", "@env:BH_UNIT_SECRET", 1);
  CHECK_INT(bh_secret_get(&p.ctx, "literal", &s, &n), 0);
  CHECK_STR(s, " spaced value\n");
  bh_secret_free(&p.ctx, s, n);
  unsetenv("BULKHEAD_PLUGIN_T_LITERAL");
  teardown(&d, &cfg, &p);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 2;
  snprintf(cfg_path, sizeof(cfg_path), "%s/bulkhead.ini", dir);
  snprintf(secret_path, sizeof(secret_path), "%s/secret", dir);
  test_route_table();
  test_secret();
  unlink(cfg_path);
  unlink(secret_path);
  rmdir(dir);
  return check_finish("test_services");
}
