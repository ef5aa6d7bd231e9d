/*
 * newminor: test plugin claiming the ABI minor after the core's (1.4 on a
 * 1.3 core). Such a plugin may call service slots this core lacks, so the
 * core refuses it.
 * The /t/newminor/ok route only serves if that check is missing.
 */
#include <bulkhead/plugin.h>

static void ok_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"newminor\",\"status\":\"ok\"}");
}

static const bh_route ok = {.size = sizeof(bh_route),
                            .method = "GET",
                            .pattern = "/t/newminor/ok",
                            .handler = ok_get};

static int newminor_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  return bh_route_add(ctx, &ok);
}

static void newminor_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc newminor_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR + 1,
    .name = "newminor",
    .version = "0.1.0",
    .init = newminor_init,
    .fini = newminor_fini,
};

BH_PLUGIN_ENTRY(newminor_desc)
