/*
 * noentry: test plugin without the entry symbol. It exports a look-alike,
 * bulkhead_plugin_entry_v0, which the core must not pick up.
 */
#include <bulkhead/plugin.h>

static int noentry_init(bh_ctx *ctx, const bh_services *svc) {
  (void)ctx;
  (void)svc;
  return 0;
}

static void noentry_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc noentry_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "noentry",
    .version = "0.1.0",
    .init = noentry_init,
    .fini = noentry_fini,
};

BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry_v0(uint16_t maj,
                                                         uint16_t min) {
  (void)min;
  return maj == BH_ABI_MAJOR ? &noentry_desc : NULL;
}
