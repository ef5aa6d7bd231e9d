/*
 * The [store] section: which backend the durable state lives on.
 *
 *   backend = sqlite | postgres   sqlite (the default): files under
 *                                 data_dir; postgres: one database that
 *                                 every instance shares
 *   url     = postgresql://...    postgres only; "@env:NAME" / "@file:PATH"
 *                                 through config/secret.c
 *   pool    = N                   postgres connections per worker (1..64)
 *
 * Environment overrides as for every section (BULKHEAD_STORE_<KEY>).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/secret.h"
#include "identity/auth.h"
#include "identity/store.h"

static int bh__sfail(const bh__config *cfg, const char *key, int line,
                     char *err, size_t errlen, const char *what) {
  if (err == NULL || errlen == 0) return -EINVAL;
  if (line > 0)
    snprintf(err, errlen, "%s:%d: [store] %s: %s", cfg->source, line, key,
             what);
  else if (line == 0) {
    char var[64];
    if (bh__config_env_name(var, sizeof(var), "store", key) == NULL)
      var[0] = '\0';
    snprintf(err, errlen, "ENV %s: [store] %s: %s", var, key, what);
  } else
    snprintf(err, errlen, "%s: [store] %s: %s", cfg->source, key, what);
  return -EINVAL;
}

int bh__store_conf_load(const bh__config *cfg, bh__auth_conf *c, char *err,
                        size_t errlen) {
  static const char *const keys[] = {"backend", "url", "pool", NULL};
  const bh__section *sec = bh__config_section(cfg, "store");
  for (size_t i = 0; sec && i < sec->nkv; i++) {
    int known = 0;
    for (size_t j = 0; keys[j] && !known; j++)
      known = strcmp(keys[j], sec->kv[i].key) == 0;
    if (!known)
      return bh__sfail(cfg, sec->kv[i].key, sec->kv[i].line, err, errlen,
                       "unknown key (expected backend, url or pool)");
  }
  int line = -1;
  const char *v = bh__config_get_at(cfg, "store", "backend", &line);
  c->store_backend = BH__STORE_SQLITE;
  c->store_pool = 4;
  if (v && strcmp(v, "postgres") == 0)
    c->store_backend = BH__STORE_POSTGRES;
  else if (v && strcmp(v, "sqlite") != 0)
    return bh__sfail(cfg, "backend", line, err, errlen,
                     "expected sqlite or postgres");
  v = bh__config_get_at(cfg, "store", "pool", &line);
  if (v) {
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 1 || n > 64)
      return bh__sfail(cfg, "pool", line, err, errlen,
                       "expected a number between 1 and 64");
    c->store_pool = (uint32_t)n;
  }
  v = bh__config_get_at(cfg, "store", "url", &line);
  if (c->store_backend == BH__STORE_SQLITE) {
    if (v)
      return bh__sfail(cfg, "url", line, err, errlen,
                       "only with backend = postgres (SQLite files live "
                       "under data_dir)");
    return 0;
  }
  if (v == NULL || *v == '\0') {
    bh__config_get_at(cfg, "store", "backend", &line);
    return bh__sfail(cfg, "url", line, err, errlen,
                     "required with backend = postgres "
                     "(postgresql://USER@HOST/DB, or @env:NAME)");
  }
  char why[256];
  int rc =
      bh__secret_resolve(v, &c->store_url, &c->store_url_len, why, sizeof(why));
  if (rc == -ENOMEM) return rc;
  if (rc) return bh__sfail(cfg, "url", line, err, errlen, why);
  if (strncmp(c->store_url, "postgresql://", 13) != 0 &&
      strncmp(c->store_url, "postgres://", 11) != 0) {
    bh__secret_free(c->store_url, c->store_url_len);
    c->store_url = NULL;
    return bh__sfail(cfg, "url", line, err, errlen,
                     "expected a postgresql:// URL");
  }
  return 0;
}
