/*
 * abi12: a plugin built against the frozen 1.2 header (plugin-1.2.h, a
 * copy of include/bulkhead/plugin.h as 1.2 shipped it), to prove a 1.3
 * core still loads and serves what 1.2 built: routes with parameters, a
 * validated body, its error map, an upstream header read the 1.2 way.
 */
#include "plugin-1.2.h"

#include <stdio.h>
#include <string.h>

static void ok_get(bh_req *req, void *data) {
  (void)data;
  char out[160];
  snprintf(out, sizeof(out),
           "{\"plugin\":\"abi12\",\"abi\":\"%d.%d\",\"id\":\"%s\"}",
           BH_ABI_MAJOR, BH_ABI_MINOR, bh_req_param(req, "id"));
  bh_respond_json(req, 200, out);
}

static const bh_field fields[] = {
    {"name", BH_FIELD_STRING, BH_FIELD_REQUIRED, 1, 32, NULL},
    {"count", BH_FIELD_INT, 0, 0, 100, NULL},
};
static const bh_body_shape shape = {fields, 2, 0};

static void echo_post(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &shape) != 0) return;
  int64_t n = 0;
  bh_body_int(req, "count", &n);
  if (n == 13) {
    bh_problem(req, "abi12.unlucky", NULL);
    return;
  }
  char out[160];
  snprintf(out, sizeof(out), "{\"name\":\"%s\",\"count\":%lld}",
           bh_body_string(req, "name"), (long long)n);
  bh_respond_json(req, 200, out);
}

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "abi12.unlucky",
     .http_status = 422,
     .detail = "Thirteen is refused."},
};

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/abi12/ok/{id}",
     .handler = ok_get},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/t/abi12/echo",
     .handler = echo_post},
};

static int abi12_init(bh_ctx *ctx, const bh_services *svc) {
  int rc = bh_error_map(ctx, errors, 1);
  for (size_t i = 0; rc == 0 && i < 2; i++)
    rc = bh_route_add(ctx, &routes[i]);
  /* a 1.2 plugin sees the 1.3 core's larger table and its own slots */
  if (rc == 0 && (svc->abi_minor < 2 || !BH_SVC_HAS(svc, problem_json)))
    rc = -ENOTSUP;
  return rc;
}

static void abi12_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc abi12_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "abi12",
    .version = "1.2.0",
    .init = abi12_init,
    .fini = abi12_fini,
};

BH_PLUGIN_ENTRY(abi12_desc)
