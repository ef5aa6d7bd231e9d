/*
 * badmap: test plugin whose error map has a code outside its "badmap."
 * prefix. The core refuses the whole table with -EINVAL and init() returns
 * that, so the load fails.
 */
#include <bulkhead/plugin.h>

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE, .code = "badmap.fine", .http_status = 400},
    {.on = BH_ON_CODE, .code = "wrongprefix.thing", .http_status = 400},
};

static int badmap_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  return bh_error_map(ctx, errors, sizeof(errors) / sizeof(errors[0]));
}

static void badmap_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc badmap_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "badmap",
    .version = "0.1.0",
    .init = badmap_init,
    .fini = badmap_fini,
};

BH_PLUGIN_ENTRY(badmap_desc)
