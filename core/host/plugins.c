/*
 * The plugin loader: dlopen, descriptor checks, lifecycle, mounts. Every
 * refusal is one log line naming the path and the cause, the plugin's mounts
 * answer plugin.unavailable, and the other plugins load anyway.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "bh_version.h"
#include "config/config.h"
#include "host/host.h"
#include "http/router.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

const char *bh__plugin_state_name(int state) {
  switch (state) {
  case BH__PLUGIN_DISABLED: return "disabled";
  case BH__PLUGIN_FAILED: return "failed";
  case BH__PLUGIN_INITIALIZED: return "initialized";
  case BH__PLUGIN_LOADED: return "loaded";
  case BH__PLUGIN_QUARANTINED: return "quarantined";
  }
  return "unknown";
}

static int bh__mkdirs(const char *path, mode_t mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
    return -ENAMETOOLONG;
  for (char *s = tmp + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -errno;
    *s = '/';
  }
  if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -errno;
  return 0;
}

/* Plugins sit next to the binary in a build tree ("plugins/"), beside it
 * in an installed tree moved elsewhere ("../lib/bulkhead"), else in the
 * directory the build was configured to install them in. */
static void bh__default_plugin_dir(char *out, size_t len) {
  static const char *const rel[] = {"plugins", "../lib/bulkhead",
                                    "../" BH_LIBDIR "/bulkhead"};
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        struct stat st;
        int n2 = snprintf(out, len, "%s/%s", exe, rel[i]);
        if (n2 > 0 && (size_t)n2 < len && stat(out, &st) == 0 &&
            S_ISDIR(st.st_mode))
          return;
      }
    }
  }
  snprintf(out, len, "%s", BH_PLUGIN_INSTALL_DIR);
}

void bh__plugin_dir(const bh__config *cfg, char *out, size_t len) {
  if (cfg->plugin_dir)
    snprintf(out, len, "%s", cfg->plugin_dir);
  else
    bh__default_plugin_dir(out, len);
}

int bh__plugin_path(const bh__plugin_conf *pc, const char *dir, char *out,
                    size_t len) {
  int n = pc->path[0] == '/' ? snprintf(out, len, "%s", pc->path)
                             : snprintf(out, len, "%s/%s", dir, pc->path);
  return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int bh__fail(bh__plugin *p, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fini() when the plugin has one (optional since ABI 1.3). */
static void bh__plugin_fini(bh__plugin *p) {
  if (p->desc->fini == NULL) return;
  int64_t mark = bh__shm_enter(p->shm_index, BH__CB_FINI);
  p->desc->fini(&p->ctx);
  bh__shm_leave(mark);
}

static int bh__fail(bh__plugin *p, const char *reason, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->last_error, sizeof(p->last_error), fmt, ap);
  va_end(ap);
  p->state = BH__PLUGIN_FAILED;
  p->reason = reason;
  bh__logline l;
  bh__log_begin(&l, BH__ERROR, "plugin_load_failed");
  bh__log_str(&l, "plugin", p->name);
  bh__log_str(&l, "path", p->path);
  bh__log_str(&l, "error", p->last_error);
  bh__log_end(&l);
  return -1;
}

static int bh__name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 32 || !(s[0] >= 'a' && s[0] <= 'z')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '_'))
      return 0;
  return 1;
}

static void bh__plugin_close(bh__plugin *p) {
  if (p->dl) dlclose(p->dl);
  p->dl = NULL;
  p->desc = NULL;
}

const char *bh__desc_check(const char *name, const bh_plugin_desc *desc,
                           char *buf, size_t buflen) {
  const char *why = NULL;
  size_t min = offsetof(bh_plugin_desc, store_schema); /* the 1.0 layout */
  if (desc == NULL) {
    snprintf(buf, buflen, "the plugin refused core ABI %d.%d", BH_ABI_MAJOR,
             BH_ABI_MINOR);
    why = buf;
  } else if (desc->size < min) {
    snprintf(buf, buflen, "descriptor is %u bytes, expected at least %zu",
             desc->size, min);
    why = buf;
  } else if (desc->abi_major != BH_ABI_MAJOR) {
    snprintf(buf, buflen, "ABI major %u, core has %d", desc->abi_major,
             BH_ABI_MAJOR);
    why = buf;
  } else if (desc->abi_minor > BH_ABI_MINOR) {
    snprintf(buf, buflen,
             "built for ABI %u.%u, newer than core %d.%d: a core loads "
             "plugins of its own minor or older",
             desc->abi_major, desc->abi_minor, BH_ABI_MAJOR, BH_ABI_MINOR);
    why = buf;
  } else if (desc->init == NULL) {
    /* fini is optional since 1.3 (bh__plugin_fini) */
    why = "missing mandatory callback init";
  } else if (desc->name == NULL || !bh__name_ok(desc->name)) {
    why = "descriptor name is missing or not [a-z][a-z0-9_]{0,31}";
  } else if (strcmp(desc->name, name) != 0) {
    snprintf(buf, buflen,
             "descriptor name '%s' does not match section [plugin.%s]",
             desc->name, name);
    why = buf;
  } else {
    why = bh__desc_schema_why(desc, buf, buflen);
  }
  return why;
}

/* What is wrong with p's descriptor (bh__desc_check, or a name another
 * plugin took), or NULL. */
static const char *bh__desc_check_in(bh__daemon *d, bh__plugin *p,
                                     const bh_plugin_desc *desc, char *buf,
                                     size_t buflen) {
  const char *why = bh__desc_check(p->name, desc, buf, buflen);
  for (bh__plugin *o = d->plugins; why == NULL && o < p; o++) {
    if (o->desc && strcmp(o->desc->name, desc->name) == 0) {
      snprintf(buf, buflen, "duplicate plugin name '%s' (also %s)", desc->name,
               o->path);
      why = buf;
    }
    /* one schema, one version table: two plugins would take each other's
     * migrations for their own */
    const bh_store_schema *a = bh__desc_store_schema(desc),
                          *b = bh__desc_store_schema(o->desc);
    if (why == NULL && a && b && strcmp(a->name, b->name) == 0) {
      snprintf(buf, buflen, "store schema %s is also plugin %s's", a->name,
               o->name);
      why = buf;
    }
  }
  return why;
}

/* p's data directory, then its init() with registration open; on a
 * failure fini() runs and the library is closed. */
static int bh__plugin_init(bh__daemon *d, bh__plugin *p) {
  const bh_plugin_desc *desc = p->desc;
  char path[PATH_MAX];
  int n =
      snprintf(path, sizeof(path), "%s/plugins/%s", d->cfg->data_dir, p->name);
  int rc = n > 0 && (size_t)n < sizeof(path) ? bh__mkdirs(path, 0700)
                                             : -ENAMETOOLONG;
  if (rc) {
    bh__plugin_close(p);
    return bh__fail(p, "load_failed", "cannot create data directory: %s",
                    strerror(-rc));
  }
  p->data_dir = strdup(path);

  p->in_init = 1;
  int64_t mark = bh__shm_enter(p->shm_index, BH__CB_INIT);
  rc = desc->init(&p->ctx, d->svc);
  bh__shm_leave(mark);
  p->in_init = 0;
  /* a `routes` line that names no route of the plugin is a typo: refuse it
   * rather than leave the route unlimited */
  for (size_t i = 0; rc >= 0 && p->reg_error == NULL && i < p->conf->nroutes;
       i++) {
    const bh__route_conf *rc_ = &p->conf->routes[i];
    int found = 0;
    for (size_t k = 0; k < p->nroutes && !found; k++)
      found = strcmp(p->routes[k]->method, rc_->method) == 0 &&
              strcmp(p->routes[k]->pattern, rc_->pattern) == 0;
    if (!found)
      bh__reg_fail(p,
                   "%s:%d: [plugin.%s] routes: %s %s is not a route of the "
                   "plugin",
                   d->cfg->source, rc_->line, p->name, rc_->method,
                   rc_->pattern);
  }
  if (rc >= 0 && p->reg_error == NULL) rc = bh__errmap_defaults(p);
  if (rc < 0 || p->reg_error) {
    bh__plugin_fini(p);
    bh__plugin_close(p);
    if (p->reg_error)
      return bh__fail(p, "init_failed", "init failed: %s", p->reg_error);
    return bh__fail(p, "init_failed", "init failed: %s (%d)", strerror(-rc),
                    rc);
  }
  return 0;
}

static int bh__plugin_load(bh__daemon *d, bh__plugin *p, const char *dir) {
  const bh__plugin_conf *pc = p->conf;
  char path[PATH_MAX];
  int bad = bh__plugin_path(pc, dir, path, sizeof(path));
  p->path = strdup(path);
  if (bad) return bh__fail(p, "load_failed", "plugin path is too long");
  if (!pc->enabled) {
    p->state = BH__PLUGIN_DISABLED;
    p->reason = "disabled";
    bh__logf(BH__INFO, "plugin_disabled", "plugin %s is disabled in config",
             p->name);
    return 0;
  }
  if (p->shm && p->shm->quarantined) {
    /* its code does not run again until ops release it */
    p->state = BH__PLUGIN_QUARANTINED;
    p->reason = "quarantined";
    snprintf(p->last_error, sizeof(p->last_error), "%s",
             p->shm->quarantine_why);
    bh__logf(BH__WARN, "plugin_quarantined",
             "plugin %s stays unloaded: quarantined", p->name);
    return 0;
  }
  dlerror();
  p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (p->dl == NULL) {
    const char *e = dlerror();
    return bh__fail(p, "load_failed", "cannot load: %s", e ? e : "unknown");
  }
  bh_entry_fn entry;
  *(void **)&entry = dlsym(p->dl, BH_ENTRY_SYMBOL);
  if (entry == NULL) {
    bh__plugin_close(p);
    return bh__fail(p, "load_failed", "no entry symbol %s", BH_ENTRY_SYMBOL);
  }
  const bh_plugin_desc *desc = entry(BH_ABI_MAJOR, BH_ABI_MINOR);
  char buf[256];
  const char *why = bh__desc_check_in(d, p, desc, buf, sizeof(buf));
  if (why) {
    bh__plugin_close(p);
    return bh__fail(p, "load_failed", "%s", why);
  }
  p->desc = desc;

  int rc = bh__plugin_init(d, p);
  if (rc) return rc;
  p->state = BH__PLUGIN_INITIALIZED;
  bh__logline l;
  bh__log_begin(&l, BH__INFO, "plugin_initialized");
  bh__log_str(&l, "plugin", p->name);
  bh__log_str(&l, "version", desc->version ? desc->version : "");
  bh__log_str(&l, "path", p->path);
  bh__log_int(&l, "routes", (int64_t)p->nroutes);
  bh__log_end(&l);
  return 0;
}

int bh__plugins_load(bh__daemon *d) {
  bh__config *cfg = d->cfg;
  char dir[PATH_MAX];
  bh__plugin_dir(cfg, dir, sizeof(dir));
  d->plugins = calloc(cfg->nplugins ? cfg->nplugins : 1, sizeof(*d->plugins));
  if (d->plugins == NULL) return -ENOMEM;
  d->nplugins = cfg->nplugins;
  int failed = 0;
  for (size_t i = 0; i < cfg->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    p->d = d;
    p->conf = &cfg->plugins[i];
    p->name = cfg->plugins[i].name;
    p->ctx.svc = d->svc;
    p->ctx.plugin = p;
    p->loop_thread = pthread_self(); /* the loop runs where plugins load */
    p->shm_index = -1;
    if (bh__shm_g) {
      bh__shm_lock();
      p->shm = bh__shm_plugin_slot(p->name);
      p->shm_index = bh__shm_plugin_index(p->shm);
      bh__shm_unlock();
    }
    if (bh__plugin_load(d, p, dir) != 0) failed++;
  }
  return failed;
}

int bh__plugins_start(bh__daemon *d) {
  int failed = 0;
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    if (p->state != BH__PLUGIN_INITIALIZED) continue;
    int64_t mark = bh__shm_enter(p->shm_index, BH__CB_START);
    int rc = p->desc->start ? p->desc->start(&p->ctx) : 0;
    bh__shm_leave(mark);
    if (rc < 0) {
      mark = bh__shm_enter(p->shm_index, BH__CB_STOP);
      if (p->desc->stop) p->desc->stop(&p->ctx);
      bh__shm_leave(mark);
      bh__plugin_fini(p);
      bh__plugin_close(p);
      bh__fail(p, "start_failed", "start failed: %s (%d)", strerror(-rc), rc);
      failed++;
      continue;
    }
    p->state = BH__PLUGIN_LOADED;
    p->reason = NULL;
  }
  return failed;
}

void bh__plugins_stop(bh__daemon *d) {
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    if (p->state == BH__PLUGIN_LOADED && p->desc->stop) {
      int64_t mark = bh__shm_enter(p->shm_index, BH__CB_STOP);
      p->desc->stop(&p->ctx);
      bh__shm_leave(mark);
    }
  }
}

void bh__plugins_unload(bh__daemon *d) {
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    if (p->desc &&
        (p->state == BH__PLUGIN_LOADED || p->state == BH__PLUGIN_INITIALIZED ||
         p->state == BH__PLUGIN_QUARANTINED))
      bh__plugin_fini(p);
    bh__plugin_close(p);
    for (size_t j = 0; j < p->nroutes; j++) {
      bh__route *r = p->routes[j];
      free(r->method);
      free(r->pattern);
      free(r->rate_limit);
      free(r);
    }
    free(p->routes);
    for (size_t j = 0; j < p->nproxies; j++)
      free(p->proxies[j]);
    free(p->proxies);
    bh__plugin_composites_free(p);
    bh__errmap_free(p);
    free(p->reg_error);
    free(p->path);
    free(p->data_dir);
  }
  free(d->plugins);
  d->plugins = NULL;
  d->nplugins = 0;
}

bh__plugin *bh__plugin_for_path(bh__daemon *d, const char *path) {
  bh__plugin *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    for (size_t m = 0; m < p->conf->nmounts; m++) {
      const char *mt = p->conf->mounts[m];
      size_t n = strlen(mt);
      if (n > best_len && strncmp(path, mt, n) == 0 &&
          (path[n] == '/' || path[n] == '\0')) {
        best = p;
        best_len = n;
      }
    }
  }
  return best;
}

static void bh__code_json(bh__buf *b, const bh__code *c, const char *owner) {
  bh__buf_puts(b, "{\"code\":");
  bh__buf_json_str(b, c->code);
  bh__buf_printf(b, ",\"status\":%d,\"title\":", c->status);
  bh__buf_json_str(b, c->title ? c->title : bh__status_reason(c->status));
  bh__buf_puts(b, ",\"detail\":");
  bh__buf_json_str(b, c->detail);
  bh__buf_printf(
      b, ",\"retryable\":%s,\"owner\":", c->retryable ? "true" : "false");
  bh__buf_json_str(b, owner);
  bh__buf_putc(b, '}');
}

int bh__catalogue_json(bh__daemon *d, bh__buf *b) {
  size_t n;
  const bh__code *core = bh__problem_core_codes(&n);
  bh__buf_puts(b, "{\"codes\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) bh__buf_putc(b, ',');
    bh__code_json(b, &core[i], "core");
  }
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    for (size_t j = 0; j < p->ncodes; j++) {
      bh__buf_putc(b, ',');
      bh__code_json(b, &p->codes[j], p->name);
    }
  }
  bh__buf_puts(b, "],\"fieldCodes\":[");
  for (size_t i = 0; bh__field_error_codes[i]; i++) {
    if (i) bh__buf_putc(b, ',');
    bh__buf_json_str(b, bh__field_error_codes[i]);
  }
  bh__buf_puts(b, "]}");
  return bh__buf_failed(b) ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------------- */
/* What ops see                                                            */
/* ---------------------------------------------------------------------- */

static void bh__publish_one(bh__plugin *p) {
  bh__shm_plugin *s = p->shm;
  s->state = p->state;
  s->required = p->conf->required;
  snprintf(s->reason, sizeof(s->reason), "%s", p->reason ? p->reason : "");
  snprintf(s->version, sizeof(s->version), "%s",
           p->desc && p->desc->version ? p->desc->version : "");
  if (p->desc)
    snprintf(s->abi, sizeof(s->abi), "%u.%u", p->desc->abi_major,
             p->desc->abi_minor);
  else
    s->abi[0] = '\0';
  snprintf(s->path, sizeof(s->path), "%s", p->path ? p->path : "");
  snprintf(s->last_error, sizeof(s->last_error), "%s", p->last_error);
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_putc(&b, '[');
  for (size_t m = 0; m < p->conf->nmounts; m++) {
    if (m) bh__buf_putc(&b, ',');
    bh__buf_json_str(&b, p->conf->mounts[m]);
  }
  bh__buf_putc(&b, ']');
  snprintf(s->mounts, sizeof(s->mounts), "%s",
           b.len < sizeof(s->mounts) ? b.data : "[]");
  bh__buf_reset(&b);
  bh__buf_putc(&b, '[');
  for (size_t r = 0; p->state == BH__PLUGIN_LOADED && r < p->nroutes; r++) {
    if (r) bh__buf_putc(&b, ',');
    bh__buf_puts(&b, "{\"method\":");
    bh__buf_json_str(&b, p->routes[r]->method);
    bh__buf_puts(&b, ",\"pattern\":");
    bh__buf_json_str(&b, p->routes[r]->pattern);
    bh__buf_putc(&b, '}');
  }
  bh__buf_putc(&b, ']');
  snprintf(s->routes, sizeof(s->routes), "%s",
           b.len < sizeof(s->routes) ? b.data : "[]");
  bh__buf_free(&b);
}

void bh__plugins_publish(bh__daemon *d) {
  if (bh__shm_g == NULL) return;
  /* A worker of a generation already replaced (a reload, a release) must
   * not overwrite what the new one published: ops would see a stale
   * state, such as "quarantined" after a release. */
  if (bh__shm_self && bh__shm_self->generation < bh__shm_g->generation) return;
  bh__buf cat;
  bh__buf_init(&cat);
  bh__catalogue_json(d, &cat);
  bh__shm_lock();
  for (size_t i = 0; i < d->nplugins; i++)
    if (d->plugins[i].shm) bh__publish_one(&d->plugins[i]);
  if (!bh__buf_failed(&cat) && cat.len < sizeof(bh__shm_g->catalogue)) {
    memcpy(bh__shm_g->catalogue, cat.data, cat.len);
    bh__shm_g->catalogue_len = cat.len;
  }
  bh__shm_unlock();
  bh__buf_free(&cat);
}
