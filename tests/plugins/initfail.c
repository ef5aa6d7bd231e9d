/* initfail: test plugin whose init() fails, so its load fails. */
#include <bulkhead/plugin.h>

#include <errno.h>

static int initfail_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  bh_log(ctx, BH_LOG_ERROR, "initfail: failing init on purpose");
  return -EIO;
}

/* Still called once after the failed init(). */
static void initfail_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc initfail_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "initfail",
    .version = "0.1.0",
    .init = initfail_init,
    .fini = initfail_fini,
};

BH_PLUGIN_ENTRY(initfail_desc)
