/*
 * conflict: test plugin mounted at /t/echo/conflict-target, inside echo's
 * /t/echo mount. It registers the route echo already has, so with echo
 * loaded first bh_route_add() returns -EEXIST and init() fails with it.
 */
#include <bulkhead/plugin.h>

static void target_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"conflict\"}");
}

static const bh_route target = {.size = sizeof(bh_route),
                                .method = "GET",
                                .pattern = "/t/echo/conflict-target",
                                .handler = target_get};

static int conflict_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  int rc = bh_route_add(ctx, &target);
  if (rc < 0) bh_log(ctx, BH_LOG_ERROR, "route_add: error %d", rc);
  return rc;
}

static void conflict_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc conflict_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "conflict",
    .version = "0.1.0",
    .init = conflict_init,
    .fini = conflict_fini,
};

BH_PLUGIN_ENTRY(conflict_desc)
