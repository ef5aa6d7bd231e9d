/*
 * minimal: a complete bulkhead plugin. Mounted at /minimal,
 *   GET /minimal/hi/{name}?x=y
 * answers 200 {"hello":"<name>","method":"GET","query":"x=y",
 *              "userAgent":"...","requestId":"..."}.
 * Build: cc -shared $(pkg-config --cflags bulkhead) -o minimal.so minimal.c
 */
#include <bulkhead/plugin.h>

static void hi(bh_req *req, void *data) {
  bh_json j; /* escapes what it is given, so request text is safe */
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kstr(&j, "hello", bh_req_param(req, "name"));
  bh_json_kstr(&j, "method", bh_req_method(req));
  bh_json_kstr(&j, "query", bh_req_query(req));
  bh_json_kstr(&j, "userAgent", bh_req_header(req, "user-agent"));
  bh_json_kstr(&j, "requestId", bh_req_id(req));
  bh_json_end(&j);
  bh_respond_json(req, 200, &j); /* sends it and frees the writer */
}

static const bh_route routes[] = {BH_ROUTE("GET", "/minimal/hi/{name}", hi)};

static int minimal_init(bh_ctx *ctx, const bh_services *svc) {
  return bh_routes_add(ctx, routes, BH_COUNT(routes));
}

BH_PLUGIN("minimal", "1.0.0", minimal_init)
