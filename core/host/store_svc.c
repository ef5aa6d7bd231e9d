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

const char *bh__store_schema_why(const char *name, const bh_migration *m,
                                 size_t n, char *buf, size_t buflen) {
  if (!bh__schema_ok(name)) {
    snprintf(buf, buflen,
             "store schema name '%s' is not [a-z][a-z0-9_]{0,62} (and not "
             "the core's " BH__PG_IDENTITY_SCHEMA ")",
             name ? name : "(null)");
    return buf;
  }
  if (m == NULL || n == 0) {
    snprintf(buf, buflen, "store schema %s has no migrations", name);
    return buf;
  }
  for (size_t i = 0; i < n; i++) {
    if (m[i].name == NULL || m[i].sql == NULL) {
      snprintf(buf, buflen, "store schema %s: migration %zu has no name or SQL",
               name, i);
      return buf;
    }
    if (m[i].version <= (i ? m[i - 1].version : 0)) {
      snprintf(buf, buflen,
               "store schema %s: migration %s (version %d) is not above the "
               "one before: versions must ascend from 1",
               name, m[i].name, m[i].version);
      return buf;
    }
  }
  return NULL;
}

const bh_store_schema *bh__desc_store_schema(const bh_plugin_desc *desc) {
  size_t end = offsetof(bh_plugin_desc, store_schema) + sizeof(void *);
  return desc && desc->size >= end ? desc->store_schema : NULL;
}

const char *bh__desc_schema_why(const bh_plugin_desc *desc, char *buf,
                                size_t buflen) {
  const bh_store_schema *s = bh__desc_store_schema(desc);
  if (s == NULL) return NULL;
  if (s->size < offsetof(bh_store_schema, nmigrations) + sizeof(size_t)) {
    snprintf(buf, buflen, "store_schema is %u bytes, expected at least %zu",
             s->size, offsetof(bh_store_schema, nmigrations) + sizeof(size_t));
    return buf;
  }
  return bh__store_schema_why(s->name, s->migrations, s->nmigrations, buf,
                              buflen);
}

int bh__svc_store_connect(bh_ctx *ctx, const char *schema,
                          const bh_migration *m, size_t n, void **conn,
                          char *err, size_t errlen) {
  if (conn == NULL) return -EINVAL;
  *conn = NULL;
  const bh__auth_conf *c = bh__store_conf_of(ctx);
  if (c == NULL || c->store_backend != BH__STORE_POSTGRES) return -ENOTSUP;
  /* the declared schema, named once in the descriptor (checked at load) */
  const bh_store_schema *decl = bh__desc_store_schema(ctx->plugin->desc);
  if (decl && m == NULL &&
      (schema == NULL || strcmp(schema, decl->name) == 0)) {
    schema = decl->name;
    m = decl->migrations;
    n = decl->nmigrations;
  }
  char why[512];
  if (bh__store_schema_why(schema, m, n, why, sizeof(why))) {
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return -EINVAL;
  }
  char who[64];
  snprintf(who, sizeof(who), "plugin %s", ctx->plugin->name);
  PGconn *db = NULL;
  int rc = bh__pg_open(c->store_url, schema, &db, why, sizeof(why));
  /* bh_migration and the core's bh__migration: the same three members */
  if (rc == 0)
    rc = bh__pg_schema_step(db, who, schema,
                            (const bh__migration *)(const void *)m, n,
                            BH__PG_CONNECT, why, sizeof(why));
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
