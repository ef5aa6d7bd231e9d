/*
 * nofini: test plugin whose descriptor lacks the mandatory fini(). The core
 * refuses it before init(); the /t/nofini/ok route only serves if that check
 * is missing.
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
    .fini = NULL,
};

BH_PLUGIN_ENTRY(nofini_desc)
