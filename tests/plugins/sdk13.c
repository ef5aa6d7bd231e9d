/*
 * sdk13: test plugin of the 1.3 SDK: a route table in one call, no
 * fini(), answers built with the JSON writer, nested body values read
 * with bh_body_get, a secret from its section, and a service called off
 * the loop thread (refused with one log line).
 */
#include <bulkhead/plugin.h>
#include <pthread.h>
#include <string.h>

static const bh_field fields[] = {
    {"name", BH_FIELD_STRING, BH_FIELD_REQUIRED, 0, 64, NULL},
    {"ratio", BH_FIELD_NUMBER, 0, 0, 0, NULL},
    {"on", BH_FIELD_BOOL, 0, 0, 0, NULL},
    {"inner", BH_FIELD_OBJECT, 0, 0, 0, NULL},
    {"items", BH_FIELD_ARRAY, 0, 0, 0, NULL},
};
static const bh_body_shape shape = {fields, BH_COUNT(fields), 0};

/* Writes the value at `ptr` as the writer's next value. */
static void put_value(bh_req *req, bh_json *j, const char *ptr) {
  bh_body_value v;
  if (bh_body_get(req, ptr, &v) != 0) {
    bh_json_str(j, "absent");
    return;
  }
  switch (v.type) {
  case BH_FIELD_STRING: bh_json_strn(j, v.str, v.len); break;
  case BH_FIELD_INT: bh_json_int(j, v.i); break;
  case BH_FIELD_NUMBER: bh_json_int(j, (int64_t)(v.num * 1000)); break;
  case BH_FIELD_BOOL: bh_json_bool(j, v.b); break;
  case BH_FIELD_OBJECT:
  case BH_FIELD_ARRAY: bh_json_uint(j, v.count); break;
  default: bh_json_null(j);
  }
}

static void echo_post(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &shape) != 0) return;
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  static const char *const ptrs[] = {"/name",    "/ratio",      "/on",
                                     "/inner",   "/inner/a~1b", "/inner/deep/0",
                                     "/items",   "/items/1",    "/items/2/k",
                                     "/items/9", "/nothing"};
  for (size_t i = 0; i < BH_COUNT(ptrs); i++) {
    bh_json_key(&j, ptrs[i]);
    put_value(req, &j, ptrs[i]);
  }
  bh_json_karr(&j, "innerKeys");
  for (size_t i = 0;; i++) {
    const char *k = bh_body_key_at(req, "/inner", i);
    if (k == NULL) break;
    bh_json_str(&j, k);
  }
  bh_json_end(&j);
  bh_json_end(&j);
  bh_respond_json(req, 200, &j);
}

static void secret_get(bh_req *req, void *data) {
  (void)data;
  bh_ctx *ctx = bh_req_ctx(req);
  char *s = NULL;
  size_t n = 0;
  int rc = bh_secret_get(ctx, "token", &s, &n);
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kint(&j, "rc", rc);
  bh_json_kuint(&j, "len", n);
  /* a test plugin may compare, never echo, the secret */
  const char *want = bh_config(ctx, "expect");
  bh_json_kbool(&j, "matches", s && want && strcmp(s, want) == 0);
  bh_json_end(&j);
  bh_secret_free(ctx, s, n);
  bh_respond_json(req, 200, &j);
}

static void *off_loop(void *arg) {
  bh_req *req = arg;
  static int rc;
  rc = bh_respond_json(req, 200, "{\"from\":\"thread\"}");
  return &rc;
}

static void thread_get(bh_req *req, void *data) {
  (void)data;
  pthread_t t;
  void *res = NULL;
  if (pthread_create(&t, NULL, off_loop, req) != 0) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  pthread_join(t, &res);
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kint(&j, "offLoop", *(int *)res);
  bh_json_end(&j);
  bh_respond_json(req, 200, &j);
}

/* A writer that fails (too deep) answers generic.internal. */
static void broken_get(bh_req *req, void *data) {
  (void)data;
  bh_json j;
  bh_json_init(&j, 0);
  for (int i = 0; i <= BH_JSON_MAX_DEPTH; i++)
    bh_json_arr(&j);
  bh_respond_json(req, 200, &j);
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/t/sdk13/echo",
     .handler = echo_post},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/sdk13/secret",
     .handler = secret_get},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/sdk13/thread",
     .handler = thread_get},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/sdk13/broken",
     .handler = broken_get},
};

static int sdk13_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  /* the bad route of [plugin.sdk13] bad_route = 1: the load fails */
  if (bh_config(ctx, "bad_route")) {
    static const bh_route bad = {.size = sizeof(bh_route),
                                 .method = "GET",
                                 .pattern = "/t/sdk13/{x}/{x}",
                                 .handler = broken_get};
    return bh_route_add(ctx, &bad);
  }
  return bh_routes_add(ctx, routes, BH_COUNT(routes));
}

static const bh_plugin_desc sdk13_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "sdk13",
    .version = "0.1.0",
    .init = sdk13_init,
};

BH_PLUGIN_ENTRY(sdk13_desc)
