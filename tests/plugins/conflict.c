/*
 * conflict: test plugin whose route registration conflicts, so init() gets
 * -EEXIST from bh_route_add() and returns it: the load fails and the log
 * names both owners.
 *
 * It registers GET <route> twice, <route> being its free config key "route"
 * (default /t/echo/conflict-target). Where the core lets it share a route
 * with echo (mount /t/echo/conflict-target, nested in echo's /t/echo), the
 * first call already conflicts with echo's route; anywhere else (mount
 * /t/conflict, route = /t/conflict/target) the second conflicts with the
 * first.
 */
#include <bulkhead/plugin.h>

static void target_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"conflict\"}");
}

static int conflict_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  const char *pattern = bh_config(ctx, "route");
  bh_route r = {.size = sizeof(bh_route),
                .method = "GET",
                .pattern = pattern ? pattern : "/t/echo/conflict-target",
                .handler = target_get};
  int rc = bh_route_add(ctx, &r);
  if (rc == 0) rc = bh_route_add(ctx, &r);
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
