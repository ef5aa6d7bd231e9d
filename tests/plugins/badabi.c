/*
 * badabi: test plugin built for the next ABI major. Its hand-written entry
 * returns the descriptor whatever core it is offered, so the core's own
 * major check must refuse it. The /t/badabi/ok route only serves if that
 * check is missing.
 */
#include <bulkhead/plugin.h>

static void ok_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"badabi\",\"status\":\"ok\"}");
}

static const bh_route ok = {.size = sizeof(bh_route),
                            .method = "GET",
                            .pattern = "/t/badabi/ok",
                            .handler = ok_get};

static int badabi_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  return bh_route_add(ctx, &ok);
}

static void badabi_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc badabi_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR + 1,
    .abi_minor = BH_ABI_MINOR,
    .name = "badabi",
    .version = "0.1.0",
    .init = badabi_init,
    .fini = badabi_fini,
};

BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry(uint16_t maj,
                                                      uint16_t min) {
  (void)maj;
  (void)min;
  return &badabi_desc;
}
