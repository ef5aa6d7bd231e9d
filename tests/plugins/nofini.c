/*
 * nofini: test plugin without a fini() (optional since ABI 1.3: it owns
 * nothing to free). It loads and serves /t/nofini/ok.
 */
#include <bulkhead/plugin.h>

static void ok_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"nofini\",\"status\":\"ok\"}");
}

static const bh_route ok = {.size = sizeof(bh_route),
                            .method = "GET",
                            .pattern = "/t/nofini/ok",
                            .handler = ok_get};

static int nofini_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  return bh_route_add(ctx, &ok);
}

static const bh_plugin_desc nofini_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "nofini",
    .version = "0.1.0",
    .init = nofini_init,
};

BH_PLUGIN_ENTRY(nofini_desc)
