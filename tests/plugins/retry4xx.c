/*
 * retry4xx: test plugin whose error map marks a 404 retryable. Only 408,
 * 409, 425 and 429 may be retryable among 4xx, so the core refuses the table
 * and init() returns the error.
 */
#include <bulkhead/plugin.h>

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "retry4xx.not_found",
     .http_status = 404,
     .retryable = 1},
};

static int retry4xx_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  return bh_error_map(ctx, errors, sizeof(errors) / sizeof(errors[0]));
}

static void retry4xx_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc retry4xx_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "retry4xx",
    .version = "0.1.0",
    .init = retry4xx_init,
    .fini = retry4xx_fini,
};

BH_PLUGIN_ENTRY(retry4xx_desc)
