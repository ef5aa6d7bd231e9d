/*
 * The PostgreSQL schemas plugins declare in their descriptor
 * (bh_plugin_desc.store_schema), checked by `bulkhead -t` and applied by
 * `bulkhead migrate` with the core's one migration runner
 * (identity/store_pg.c), like the identity schema before them. migrate
 * reads each descriptor without running the plugin: no init, so no
 * secrets resolved, no threads, no upstreams.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "host/host.h"
#include "identity/auth-t.h"
#include "identity/store.h"
#include "proc/daemon-t.h"

static const char *bh__pg_url(const bh__config *cfg) {
  const bh__auth_conf *c = cfg->auth;
  return c && c->store_backend == BH__STORE_POSTGRES ? c->store_url : NULL;
}

/* One plugin's schema on the database at url, in `mode`. */
static int bh__schema_run(const char *url, const char *plugin,
                          const bh_store_schema *s, int mode, char *err,
                          size_t errlen) {
  char who[64], why[512];
  snprintf(who, sizeof(who), "plugin %s", plugin);
  PGconn *db = NULL;
  if (bh__pg_open(url, s->name, &db, why, sizeof(why))) {
    snprintf(err, errlen, "%s: schema %s: %s", who, s->name, why);
    return -EIO;
  }
  /* bh_migration and the core's bh__migration: the same three members */
  int rc = bh__pg_schema_step(
      db, who, s->name, (const bh__migration *)(const void *)s->migrations,
      s->nmigrations, mode, err, errlen);
  PQfinish(db);
  return rc;
}

int bh__plugin_schemas_check(bh__daemon *d, char *err, size_t errlen) {
  const char *url = bh__pg_url(d->cfg);
  int failed = 0;
  for (size_t i = 0; url && i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    const bh_store_schema *s = p->state == BH__PLUGIN_INITIALIZED
                                   ? bh__desc_store_schema(p->desc)
                                   : NULL;
    char why[700];
    if (s && bh__schema_run(url, p->name, s, BH__PG_CHECK, why, sizeof(why))) {
      /* every schema gets its line; the first failure is the summary */
      bh__logf(BH__ERROR, "store_check_failed", "%s", why);
      if (failed++ == 0) snprintf(err, errlen, "%s", why);
    }
  }
  return failed ? -EIO : 0;
}

/* [plugin.NAME]'s .so opened and its descriptor checked, nothing more:
 * 0 and *dl, *desc, or a negative errno with err. */
static int bh__peek(const bh__plugin_conf *pc, const char *dir, void **dl,
                    const bh_plugin_desc **desc, char *err, size_t errlen) {
  char path[PATH_MAX], buf[256];
  *dl = NULL;
  if (bh__plugin_path(pc, dir, path, sizeof(path))) {
    snprintf(err, errlen, "plugin %s: plugin path is too long", pc->name);
    return -ENAMETOOLONG;
  }
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *e = dlerror();
    snprintf(err, errlen, "plugin %s: cannot load %s: %s", pc->name, path,
             e ? e : "unknown");
    return -ENOENT;
  }
  bh_entry_fn entry;
  *(void **)&entry = dlsym(h, BH_ENTRY_SYMBOL);
  const bh_plugin_desc *dsc = entry ? entry(BH_ABI_MAJOR, BH_ABI_MINOR) : NULL;
  const char *why = entry ? bh__desc_check(pc->name, dsc, buf, sizeof(buf))
                          : "no entry symbol " BH_ENTRY_SYMBOL;
  if (why) {
    snprintf(err, errlen, "plugin %s (%s): %s", pc->name, path, why);
    dlclose(h);
    return -EINVAL;
  }
  *dl = h;
  *desc = dsc;
  return 0;
}

int bh__plugin_schemas_migrate(const bh__config *cfg, char *err,
                               size_t errlen) {
  const char *url = bh__pg_url(cfg);
  if (url == NULL) return 0;
  char dir[PATH_MAX];
  bh__plugin_dir(cfg, dir, sizeof(dir));
  for (size_t i = 0; i < cfg->nplugins; i++) {
    const bh__plugin_conf *pc = &cfg->plugins[i];
    if (!pc->enabled) continue; /* its schema waits until it is enabled */
    void *dl = NULL;
    const bh_plugin_desc *desc = NULL;
    int rc = bh__peek(pc, dir, &dl, &desc, err, errlen);
    const bh_store_schema *s = rc ? NULL : bh__desc_store_schema(desc);
    if (s) rc = bh__schema_run(url, pc->name, s, BH__PG_MIGRATE, err, errlen);
    if (dl) dlclose(dl);
    if (rc) return rc;
  }
  return 0;
}
