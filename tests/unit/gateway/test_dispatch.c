/*
 * core/gateway/dispatch.c and limit_check.c, with the router (http/) and
 * the admin listener's own hooks (proc/admin.c): a daemon initialised in
 * this process with one in-process plugin registered through the same
 * path as a .so (host/routes.c), its listeners on a real loop, and a
 * loopback client. Each refusal of the request path is checked by status
 * and Problem code.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "check.h"
#include "host/host.h"
#include "http/http.h"
#include "loop_client.h"
#include "problem/errmap.h"
#include "proc/daemon.h"
#include "proc/load.h"
#include "state/shm.h"

static uv_loop_t loop;
static bh__daemon d;
static bh__config cfg;
static char dir[] = "/tmp/bh-unit-dispatch-XXXXXX";
static int api_port, admin_port;
static int t_calls;

static void th_param(bh_req *req, void *data) {
  (void)data;
  t_calls++;
  char body[96];
  snprintf(body, sizeof(body), "{\"x\":\"%s\"}", bh_req_param(req, "x"));
  bh_respond_json(req, 200, body);
}

static void th_ok(bh_req *req, void *data) {
  (void)data;
  t_calls++;
  bh_respond_json(req, 200, "{\"ok\":true}");
}

/* answers only after its deadline fired (the answer is then dropped) */
static bh_req *t_silent;
static void th_silent(bh_req *req, void *data) {
  (void)data;
  t_silent = req;
  t_calls++;
}

static void t_plugin(void) {
  static char *mounts[] = {"/t"};
  static bh__section sec = {"plugin.t", 0, NULL, 0};
  static bh__plugin_conf pc = {.name = "t",
                               .enabled = 1,
                               .path = "t.so",
                               .mounts = mounts,
                               .nmounts = 1,
                               .retries = -1,
                               .section = &sec};
  free(d.plugins); /* the loader's empty array */
  d.plugins = calloc(1, sizeof(bh__plugin));
  d.nplugins = 1;
  bh__plugin *p = &d.plugins[0];
  p->d = &d;
  p->conf = &pc;
  p->name = "t";
  p->ctx.svc = d.svc;
  p->ctx.plugin = p;
  p->loop_thread = pthread_self(); /* services check it */
  p->in_init = 1;
  bh_route routes[] = {
      {sizeof(bh_route), "GET", "/t/p/{x}", th_param, NULL, 0, 0, 0, NULL},
      {sizeof(bh_route), "POST", "/t/json", th_ok, NULL, 0, 0, 0, NULL},
      {sizeof(bh_route), "GET", "/t/limited", th_ok, NULL, 0, 0, 0, "tight"},
      {sizeof(bh_route), "GET", "/t/private", th_ok, NULL,
       BH_ROUTE_AUTH_REQUIRED, 0, 0, NULL},
      {sizeof(bh_route), "GET", "/t/silent", th_silent, NULL, 0, 0, 80, NULL},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
    CHECK_INT(bh__route_register(p, &routes[i]), 0);
  /* a route outside the mount, or clashing, is refused with the reason */
  bh_route outside = {
      sizeof(bh_route), "GET", "/other", th_ok, NULL, 0, 0, 0, NULL};
  CHECK(bh__route_register(p, &outside) < 0);
  CHECK(p->reg_error && strstr(p->reg_error, "outside the plugin's mounts"));
  free(p->reg_error);
  p->reg_error = NULL;
  CHECK_INT(bh__errmap_defaults(p), 0);
  p->in_init = 0;
  p->state = BH__PLUGIN_LOADED;
}

static void t_setup(void) {
  if (mkdtemp(dir) == NULL) exit(1);
  char path[128];
  snprintf(path, sizeof(path), "%s/unit.ini", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL) exit(1);
  fprintf(f,
          "[server]\nlisten = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
          "data_dir = %s/data\nlog = off\n\n"
          "[rate_limit.tight]\nquota = 1\nwindow_s = 60\n",
          dir);
  fclose(f);
  char err[512];
  if (bh__load(path, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  bh__log_open("off", BH__ERROR);
  uv_loop_init(&loop);
  if (bh__shm_create((size_t)16 << 20) != 0) exit(1);
  if (bh__daemon_init(&d, &cfg, &loop, BH__ROLE_SINGLE, -1) != 0) exit(1);
  t_plugin();
  if (bh__daemon_listen(&d) != 0) exit(1);
  api_port = tc_port_of(d.api.address);
  admin_port = tc_port_of(d.admin.address);
}

/* One request on a fresh connection; the answer in c. */
static void t_ask(tc_conn *c, int port, const char *request) {
  CHECK_INT(tc_open(c, port), 0);
  tc_send(c, request);
  /* every answer here carries a body: wait for the end of the head and a
   * moment more for the body */
  CHECK(tc_wait(&loop, c, "\r\n\r\n", 1, 0, 3000));
  tc_wait(&loop, c, "}", 1, 0, 200);
}

static int t_status(const tc_conn *c) {
  return strncmp(c->buf, "HTTP/1.1 ", 9) == 0 ? atoi(c->buf + 9) : -1;
}

#define HAS(c, s) (strstr((c).buf, (s)) != NULL)
#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

static void test_routes(void) {
  tc_conn c;
  t_ask(&c, api_port, GET("/t/p/abc"));
  CHECK_INT(t_status(&c), 200);
  CHECK(HAS(c, "{\"x\":\"abc\"}"));
  CHECK(HAS(c, "X-Request-ID: "));
  tc_close(&c);
  t_ask(&c, api_port, GET("/t/nothing"));
  CHECK_INT(t_status(&c), 404);
  CHECK(HAS(c, "\"code\":\"route.not_found\""));
  tc_close(&c);
  t_ask(&c, api_port, "DELETE /t/p/abc HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK_INT(t_status(&c), 405);
  CHECK(HAS(c, "Allow: GET"));
  CHECK(HAS(c, "route.method_not_allowed"));
  tc_close(&c);
  /* dot segments are refused, not normalised */
  t_ask(&c, api_port, GET("/t/x/../p/abc"));
  CHECK_INT(t_status(&c), 400);
  CHECK(HAS(c, "request.bad_request"));
  tc_close(&c);
  /* the API listener has no admin endpoints */
  t_ask(&c, api_port, GET("/healthz"));
  CHECK_INT(t_status(&c), 404);
  tc_close(&c);
}

static void test_body_type(void) {
  tc_conn c;
  t_ask(&c, api_port,
        "POST /t/json HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
        "Content-Length: 2\r\n\r\nhi");
  CHECK_INT(t_status(&c), 415);
  CHECK(HAS(c, "request.unsupported_media_type"));
  tc_close(&c);
  t_ask(&c, api_port,
        "POST /t/json HTTP/1.1\r\nHost: t\r\nContent-Type: application/"
        "problem+json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}");
  CHECK_INT(t_status(&c), 200);
  tc_close(&c);
}

static void test_rate_limit(void) {
  tc_conn c;
  int before = t_calls;
  t_ask(&c, api_port, GET("/t/limited"));
  CHECK_INT(t_status(&c), 200);
  CHECK(HAS(c, "RateLimit-Policy: "));
  tc_close(&c);
  t_ask(&c, api_port, GET("/t/limited"));
  CHECK_INT(t_status(&c), 429);
  CHECK(HAS(c, "\"code\":\"rate_limit.exceeded\""));
  CHECK(HAS(c, "Retry-After: "));
  tc_close(&c);
  CHECK_INT(t_calls - before, 1);
}

static void test_auth_and_deadline(void) {
  tc_conn c;
  int before = t_calls;
  /* no identity configured in this process: fail closed, handler not run */
  t_ask(&c, api_port, GET("/t/private"));
  CHECK_INT(t_status(&c), 401);
  CHECK(HAS(c, "auth.unauthenticated"));
  tc_close(&c);
  CHECK_INT(t_calls, before);
  t_ask(&c, api_port, GET("/t/silent"));
  CHECK_INT(t_status(&c), 504);
  CHECK(HAS(c, "\"code\":\"t.timeout\""));
  tc_close(&c);
  CHECK_INT(t_calls, before + 1);
  /* too late: refused, and the plugin's hold on the request released */
  if (t_silent) CHECK(bh_respond_json(t_silent, 200, "{}") < 0);
  t_silent = NULL;
}

static void test_plugin_down(void) {
  tc_conn c;
  bh__plugin *p = &d.plugins[0];
  p->state = BH__PLUGIN_FAILED;
  p->reason = "init_failed";
  /* the owner of the mount answers for all of it, routes or not */
  t_ask(&c, api_port, GET("/t/p/abc"));
  CHECK_INT(t_status(&c), 503);
  CHECK(HAS(c, "plugin.unavailable"));
  CHECK(HAS(c, "init_failed"));
  tc_close(&c);
  t_ask(&c, api_port, GET("/t/nothing"));
  CHECK_INT(t_status(&c), 503);
  tc_close(&c);
  p->state = BH__PLUGIN_LOADED;
  p->reason = NULL;
}

static void test_admin_hooks(void) {
  tc_conn c;
  t_ask(&c, admin_port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK_INT(t_status(&c), 200);
  CHECK(HAS(c, "{\"status\":\"ok\"}"));
  tc_close(&c);
  /* the admin listener has no API routes */
  t_ask(&c, admin_port, "GET /t/p/abc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK_INT(t_status(&c), 404);
  tc_close(&c);
}

static int t_rm(const char *path, const struct stat *st, int flag,
                struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void t_teardown(void) {
  bh__conn_close_all(&d);
  uv_close((uv_handle_t *)&d.api.tcp, NULL);
  uv_close((uv_handle_t *)&d.admin.tcp, NULL);
  bh__daemon_free(&d);
  bh__loop_close(&loop);
  bh__unload(&cfg);
  bh__shm_destroy();
  bh__log_close();
  nftw(dir, t_rm, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  t_setup();
  test_routes();
  test_body_type();
  test_rate_limit();
  test_auth_and_deadline();
  test_plugin_down();
  test_admin_hooks();
  t_teardown();
  return check_finish("test_dispatch");
}
