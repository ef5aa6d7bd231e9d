/*
 * badschema: test plugin whose descriptor declares a store schema that
 * breaks the store_connect rule, so the load must fail before init():
 * BADSCHEMA=order gives migrations out of order, BADSCHEMA=good a valid
 * schema (bh_badschema, one migration: `bulkhead migrate` applies it
 * without calling init(), which aborts), anything else the core's own
 * schema name.
 */
#include <stdlib.h>
#include <string.h>

#include <bulkhead/plugin.h>

static const bh_migration migrations[] = {
    {2, "002_later.sql", "CREATE TABLE later (id INTEGER)"},
    {1, "001_first.sql", "CREATE TABLE first (id INTEGER)"},
};

static const bh_store_schema core_name = {sizeof(bh_store_schema),
                                          "bh_identity", migrations + 1, 1};
static const bh_store_schema valid = {sizeof(bh_store_schema), "bh_badschema",
                                      migrations + 1, 1};
static const bh_store_schema out_of_order = {
    sizeof(bh_store_schema), "bh_badschema", migrations, BH_COUNT(migrations)};

static int badschema_init(bh_ctx *ctx, const bh_services *svc) {
  (void)ctx;
  (void)svc;
  abort(); /* never reached: the load fails first, migrate never inits */
}

static bh_plugin_desc badschema_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "badschema",
    .version = "0.1.0",
    .init = badschema_init,
};

BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry(uint16_t maj,
                                                      uint16_t min) {
  (void)min;
  const char *kind = getenv("BADSCHEMA");
  badschema_desc.store_schema = &core_name;
  if (kind && strcmp(kind, "order") == 0)
    badschema_desc.store_schema = &out_of_order;
  else if (kind && strcmp(kind, "good") == 0)
    badschema_desc.store_schema = &valid;
  return maj == BH_ABI_MAJOR ? &badschema_desc : NULL;
}
