/*
 * The store slots of the services table (ABI 1.3 (store)): which backend
 * [store] names, and connections to the shared PostgreSQL database for
 * plugins, each in its own schema, migrated with the core's one migration
 * runner (identity/store_pg.c). Called on plugins' job-queue threads: they
 * read only the configuration, which does not change under a worker.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "host/host.h"
#include "host/plugin-t.h"
#include "identity/auth-t.h"
#include "identity/store.h"
#include "proc/daemon-t.h"

static const bh__auth_conf *bh__store_conf_of(bh_ctx *ctx) {
  const bh__config *cfg = ctx && ctx->plugin ? ctx->plugin->d->cfg : NULL;
  return cfg ? cfg->auth : NULL;
}

int bh__svc_store_info(bh_ctx *ctx, bh_store_info *out) {
  if (out == NULL || out->size < offsetof(bh_store_info, pool)) return -EINVAL;
  const bh__auth_conf *c = bh__store_conf_of(ctx);
  int pg = c && c->store_backend == BH__STORE_POSTGRES;
  out->backend = pg ? "postgres" : "sqlite";
  if (out->size >= offsetof(bh_store_info, pool) + sizeof(out->pool))
    out->pool = pg ? c->store_pool : 1;
  return 0;
}

static int bh__schema_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z') return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '_'))
      return 0;
  /* the core's own schema is not a plugin's */
  return strcmp(s, BH__PG_IDENTITY_SCHEMA) != 0;
}

int bh__svc_store_connect(bh_ctx *ctx, const char *schema,
                          const bh_migration *m, size_t n, void **conn,
                          char *err, size_t errlen) {
  if (conn == NULL) return -EINVAL;
  *conn = NULL;
  const bh__auth_conf *c = bh__store_conf_of(ctx);
  if (c == NULL || c->store_backend != BH__STORE_POSTGRES) return -ENOTSUP;
  if (!bh__schema_ok(schema) || m == NULL || n == 0) {
    if (err && errlen) snprintf(err, errlen, "bad schema name or migrations");
    return -EINVAL;
  }
  char why[512];
  PGconn *db = NULL;
  int rc = bh__pg_open(c->store_url, schema, &db, why, sizeof(why));
  /* bh_migration and the core's bh__migration: the same three members */
  if (rc == 0)
    rc = bh__pg_migrate(db, schema, (const bh__migration *)(const void *)m, n,
                        why, sizeof(why));
  if (rc) {
    if (err && errlen) snprintf(err, errlen, "%s", why);
    if (db) PQfinish(db);
    return rc;
  }
  *conn = db;
  return 0;
}

void bh__svc_store_disconnect(bh_ctx *ctx, void *conn) {
  (void)ctx;
  if (conn) PQfinish(conn);
}
