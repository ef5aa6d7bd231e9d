/*
 * Composite routes as declared: a [composite.NAME] section of the config
 *
 *   route = GET /v1/dashboard
 *   section.apiKeys = GET /v1/api-keys
 *   section.deliveries = GET /v1/webhooks/deliveries?limit=5
 *   timeout_ms = 800          ; per section; default [server]
 * handler_timeout_ms required = apiKeys        ; optional
 *
 * or a plugin's composite_add (host/composites.c keeps its copy). Both go
 * through one parser here; the worker's table is built once its plugins
 * are loaded, since a plugin's composite must lie under its own mount.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "gateway/composite.h"
#include "host/host.h"
#include "http/router.h"
#include "proc/daemon-t.h"

#define BH__COMPOSITE_PREFIX "composite."
#define BH__SECTION_PREFIX "section."
#define BH__COMPOSITE_MAX_SECTIONS 32

static int bh__cfail(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bh__cfail(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, n, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static int bh__composite_name_ok(const char *s) {
  if (s[0] < 'a' || s[0] > 'z') return 0;
  size_t n = 1;
  for (; s[n]; n++)
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
          s[n] == '_'))
      return 0;
  return n <= 32;
}

static int bh__key_ok(const char *s, size_t n) {
  if (n == 0 || n > BH__CSEC_KEY_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return 0;
  return 1;
}

/* "METHOD /target": the method in method (upper-case letters), the target
 * in *target (allocated). literal: a route of our own, so no query and no
 * pattern characters. */
static int bh__parse_target(const char *v, char method[16], char **target,
                            int literal, char *why, size_t n) {
  while (*v == ' ' || *v == '\t')
    v++;
  size_t m = 0;
  while (v[m] >= 'A' && v[m] <= 'Z')
    m++;
  if (m == 0 || m >= 16 || (v[m] != ' ' && v[m] != '\t'))
    return bh__cfail(why, n,
                     "expected \"METHOD /path\" (an upper-case method)");
  memcpy(method, v, m);
  method[m] = '\0';
  const char *t = v + m;
  while (*t == ' ' || *t == '\t')
    t++;
  size_t tl = strlen(t);
  while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
    tl--;
  if (tl == 0 || t[0] != '/' || tl > 2048)
    return bh__cfail(why, n, "the path must start with '/'");
  for (size_t i = 0; i < tl; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c <= 32 || c >= 127 || c == '#' ||
        (literal && strchr("?{}*", c) != NULL))
      return bh__cfail(why, n,
                       literal ? "the route must be a literal path (no space, "
                                 "query, '{', '}' or '*')"
                               : "the target may not hold a space, a control "
                                 "byte or '#'");
  }
  *target = strndup(t, tl);
  return *target ? 0 : -ENOMEM;
}

static void bh__cdef_clear(bh__cdef *c) {
  free(c->name);
  free(c->path);
  for (size_t i = 0; i < c->nsecs; i++)
    free(c->secs[i].target);
  free(c->secs);
  memset(c, 0, sizeof(*c));
}

static int bh__cdef_section(bh__cdef *c, const char *key, size_t keylen,
                            const char *target, char *why, size_t n) {
  if (!bh__key_ok(key, keylen))
    return bh__cfail(why, n, "a section key is 1 to %d of [A-Za-z0-9_]",
                     BH__CSEC_KEY_MAX);
  for (size_t i = 0; i < c->nsecs; i++)
    if (strlen(c->secs[i].key) == keylen &&
        memcmp(c->secs[i].key, key, keylen) == 0)
      return bh__cfail(why, n, "section %.*s is given twice", (int)keylen, key);
  if (c->nsecs >= BH__COMPOSITE_MAX_SECTIONS)
    return bh__cfail(why, n, "more than %d sections",
                     BH__COMPOSITE_MAX_SECTIONS);
  bh__csec_def s;
  memset(&s, 0, sizeof(s));
  memcpy(s.key, key, keylen);
  int rc = bh__parse_target(target, s.method, &s.target, 0, why, n);
  if (rc) return rc;
  bh__csec_def *g = realloc(c->secs, (c->nsecs + 1) * sizeof(*g));
  if (g == NULL) {
    free(s.target);
    return -ENOMEM;
  }
  c->secs = g;
  c->secs[c->nsecs++] = s;
  return 0;
}

static int bh__cdef_required(bh__cdef *c, const char *v, char *why, size_t n) {
  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    size_t l = strcspn(v, ", \t");
    if (l == 0) break;
    size_t i = 0;
    while (i < c->nsecs &&
           !(strlen(c->secs[i].key) == l && memcmp(c->secs[i].key, v, l) == 0))
      i++;
    if (i == c->nsecs)
      return bh__cfail(why, n, "%.*s is not a section of this composite",
                       (int)l, v);
    c->secs[i].required = 1;
    v += l;
  }
  return 0;
}

static int bh__cdef_timeout(bh__cdef *c, const char *v, uint32_t dflt,
                            char *why, size_t n) {
  c->timeout_ms = dflt;
  if (v == NULL) return 0;
  char *end;
  unsigned long ms = strtoul(v, &end, 10);
  if (end == v || *end != '\0' || ms < 1 || ms > 3600000)
    return bh__cfail(why, n, "expected milliseconds from 1 to 3600000");
  c->timeout_ms = (uint32_t)ms;
  return 0;
}

static void bh__cdef_route_init(bh__cdef *c) {
  c->route.method = c->method;
  c->route.pattern = c->path;
  c->route.timeout_ms = c->timeout_ms;
  c->route.retries = -1;
  c->route.plugin = NULL;
}

/* [composite.NAME] of cfg into *c. 0, or -EINVAL with the one line. */
static int bh__cdef_from_config(const bh__config *cfg, const bh__section *s,
                                bh__cdef *c, char *err, size_t errlen) {
  char why[400] = "";
  const char *bad = NULL;
  int rc = 0, line = -1;
  const char *name = s->name + strlen(BH__COMPOSITE_PREFIX);
  memset(c, 0, sizeof(*c));
  if (!bh__composite_name_ok(name)) {
    snprintf(err, errlen,
             "%s:%d: [%s]: the name must match [a-z][a-z0-9_]{0,31}",
             cfg->source, s->line, s->name);
    return -EINVAL;
  }
  c->name = strdup(name);
  if (c->name == NULL) return -ENOMEM;
  const char *route = bh__config_get_at(cfg, s->name, "route", &line);
  if (route == NULL) {
    bad = "route";
    rc = bh__cfail(why, sizeof why, "required (\"route = GET /v1/path\")");
  } else if ((rc = bh__parse_target(route, c->method, &c->path, 1, why,
                                    sizeof why)) != 0) {
    bad = "route";
  }
  for (size_t i = 0; rc == 0 && i < s->nkv; i++) {
    const bh__kv *kv = &s->kv[i];
    if (strncmp(kv->key, BH__SECTION_PREFIX, strlen(BH__SECTION_PREFIX)) == 0) {
      const char *k = kv->key + strlen(BH__SECTION_PREFIX);
      rc = bh__cdef_section(c, k, strlen(k), kv->value, why, sizeof why);
    } else if (strcmp(kv->key, "route") && strcmp(kv->key, "timeout_ms") &&
               strcmp(kv->key, "required")) {
      rc = bh__cfail(why, sizeof why,
                     "unknown key (expected route, section.KEY, timeout_ms, "
                     "required)");
    }
    if (rc) bad = kv->key;
  }
  if (rc == 0 && c->nsecs == 0) {
    bad = "section.KEY";
    rc = bh__cfail(why, sizeof why, "a composite needs at least one section");
  }
  if (rc == 0) {
    const char *t = bh__config_get_at(cfg, s->name, "timeout_ms", &line);
    rc = bh__cdef_timeout(c, t, cfg->handler_timeout_ms, why, sizeof why);
    if (rc) bad = "timeout_ms";
  }
  if (rc == 0) {
    const char *r = bh__config_get_at(cfg, s->name, "required", &line);
    rc = bh__cdef_required(c, r, why, sizeof why);
    if (rc) bad = "required";
  }
  if (rc) {
    int l = bad ? bh__config_line(s, bad) : 0;
    snprintf(err, errlen, "%s:%d: [%s] %s: %s", cfg->source, l ? l : s->line,
             s->name, bad ? bad : "", why);
    bh__cdef_clear(c);
    return rc;
  }
  bh__cdef_route_init(c);
  return 0;
}

/* A plugin's composite_add copy into *c. */
static int bh__cdef_from_plugin(const bh__config *cfg, const bh__pcomposite *p,
                                bh__cdef *c, char *why, size_t n) {
  memset(c, 0, sizeof(*c));
  if (!bh__composite_name_ok(p->name))
    return bh__cfail(why, n, "the name must match [a-z][a-z0-9_]{0,31}");
  c->name = strdup(p->name);
  if (c->name == NULL) return -ENOMEM;
  int rc = bh__parse_target(p->route, c->method, &c->path, 1, why, n);
  for (size_t i = 0; rc == 0 && i < p->nsections; i++) {
    const char *line = p->sections[i];
    size_t kl = strcspn(line, " \t=");
    const char *eq = line + kl;
    while (*eq == ' ' || *eq == '\t')
      eq++;
    if (*eq != '=')
      rc = bh__cfail(why, n, "section %zu: expected \"KEY = METHOD /path\"", i);
    else
      rc = bh__cdef_section(c, line, kl, eq + 1, why, n);
  }
  if (rc == 0) {
    char t[16];
    snprintf(t, sizeof t, "%u", p->timeout_ms);
    rc = bh__cdef_timeout(c, p->timeout_ms ? t : NULL, cfg->handler_timeout_ms,
                          why, n);
  }
  if (rc == 0) rc = bh__cdef_required(c, p->required, why, n);
  if (rc) {
    bh__cdef_clear(c);
    return rc;
  }
  bh__cdef_route_init(c);
  return 0;
}

int bh__composite_conf_check(const bh__config *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->nsections; i++) {
    const bh__section *s = &cfg->sections[i];
    if (strncmp(s->name, BH__COMPOSITE_PREFIX, strlen(BH__COMPOSITE_PREFIX)))
      continue;
    bh__cdef c;
    int rc = bh__cdef_from_config(cfg, s, &c, err, errlen);
    if (rc) return rc;
    for (size_t j = 0; j < i; j++) {
      const bh__section *o = &cfg->sections[j];
      const char *r1 = bh__config_get(cfg, o->name, "route");
      char m[16];
      char *path = NULL;
      char why[8];
      if (strncmp(o->name, BH__COMPOSITE_PREFIX,
                  strlen(BH__COMPOSITE_PREFIX)) ||
          r1 == NULL || bh__parse_target(r1, m, &path, 1, why, sizeof why))
        continue;
      int same = strcmp(m, c.method) == 0 && strcmp(path, c.path) == 0;
      free(path);
      if (same) {
        snprintf(err, errlen, "%s:%d: [%s] route: %s %s is already [%s]'s",
                 cfg->source, bh__config_line(s, "route"), s->name, c.method,
                 c.path, o->name);
        bh__cdef_clear(&c);
        return -EINVAL;
      }
    }
    bh__cdef_clear(&c);
  }
  return 0;
}

/* A second composite of one name or route is left out. */
static int bh__cdef_clash(const bh__composites *t, const bh__cdef *c) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->defs[i].name, c->name) == 0 ||
        (strcmp(t->defs[i].method, c->method) == 0 &&
         strcmp(t->defs[i].path, c->path) == 0))
      return 1;
  return 0;
}

static void bh__cdef_add(bh__daemon *d, bh__composites *t, bh__cdef *c) {
  if (bh__cdef_clash(t, c)) {
    bh__logf(BH__ERROR, "composite_refused",
             "composite %s (%s %s): its name or route is already a "
             "composite's; not served",
             c->name, c->method, c->path);
    bh__cdef_clear(c);
    return;
  }
  bh__match mt;
  char allow[96];
  if (bh__router_match(d->router, c->method, c->path, &mt, allow,
                       sizeof allow) == BH__ROUTE_FOUND) {
    const bh__route *r = mt.route;
    bh__logf(BH__WARN, "composite_shadows_route",
             "composite %s answers %s %s, which is also a route of plugin %s: "
             "the composite wins",
             c->name, c->method, c->path,
             r && r->plugin ? r->plugin->name : "?");
  }
  t->defs[t->n] = *c;
  /* the route points into the entry: set up where it lives */
  bh__cdef_route_init(&t->defs[t->n++]);
}

int bh__composites_build(bh__daemon *d) {
  const bh__config *cfg = d->cfg;
  size_t cap = 0;
  for (size_t i = 0; i < cfg->nsections; i++)
    cap += strncmp(cfg->sections[i].name, BH__COMPOSITE_PREFIX,
                   strlen(BH__COMPOSITE_PREFIX)) == 0;
  for (size_t i = 0; i < d->nplugins; i++)
    cap += d->plugins[i].ncomposites;
  if (cap == 0) return 0;
  bh__composites *t = calloc(1, sizeof(*t));
  if (t) t->defs = calloc(cap, sizeof(bh__cdef));
  if (t == NULL || t->defs == NULL) {
    free(t);
    return -ENOMEM;
  }
  char why[512];
  for (size_t i = 0; i < cfg->nsections; i++) {
    const bh__section *s = &cfg->sections[i];
    bh__cdef c;
    if (strncmp(s->name, BH__COMPOSITE_PREFIX, strlen(BH__COMPOSITE_PREFIX)))
      continue;
    if (bh__cdef_from_config(cfg, s, &c, why, sizeof why) == 0)
      bh__cdef_add(d, t, &c);
    else
      bh__logf(BH__ERROR, "composite_refused", "%s", why);
  }
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    for (size_t j = 0; j < p->ncomposites; j++) {
      bh__cdef c;
      if (bh__cdef_from_plugin(cfg, &p->composites[j], &c, why, sizeof why)) {
        bh__logf(BH__ERROR, "composite_refused", "plugin %s composite %s: %s",
                 p->name, p->composites[j].name, why);
        continue;
      }
      if (bh__plugin_for_path(d, c.path) != p) {
        bh__logf(BH__ERROR, "composite_refused",
                 "plugin %s composite %s: %s is not under its mount", p->name,
                 c.name, c.path);
        bh__cdef_clear(&c);
        continue;
      }
      c.plugin = p;
      bh__cdef_add(d, t, &c);
    }
  }
  d->composites = t;
  return 0;
}

void bh__composites_free(bh__daemon *d) {
  bh__composites *t = d->composites;
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++)
    bh__cdef_clear(&t->defs[i]);
  free(t->defs);
  free(t);
  d->composites = NULL;
}

const bh__cdef *bh__composite_find(bh__daemon *d, const char *method,
                                   const char *path) {
  const bh__composites *t = d->composites;
  for (size_t i = 0; t && i < t->n; i++)
    if (strcmp(t->defs[i].path, path) == 0 &&
        strcmp(t->defs[i].method, method) == 0)
      return &t->defs[i];
  return NULL;
}

const char *bh__composite_method(bh__daemon *d, const char *path) {
  const bh__composites *t = d->composites;
  for (size_t i = 0; t && i < t->n; i++)
    if (strcmp(t->defs[i].path, path) == 0) return t->defs[i].method;
  return NULL;
}
