/*
 * [upstream.NAME] sections: where an upstream is, how long to wait, how to
 * retry and when to stop calling it. Values may come from the environment
 * (BULKHEAD_UPSTREAM_<NAME>_<KEY>) or, for header values, from "@env:VAR"
 * and "@file:PATH" so secrets never sit in the config file.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/secret.h"
#include "host/plugin-t.h"
#include "policy/ratelimit.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/upstream.h"

typedef struct bh__ucfg {
  const char *section;
  const bh__section *sec;
  const bh__config *cfg;
  char *why;
  size_t whylen;
} bh__ucfg;

static int bh__ufail(bh__ucfg *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bh__ufail(bh__ucfg *c, const char *key, const char *fmt, ...) {
  int line = bh__config_line(c->sec, key);
  int off =
      line ? snprintf(c->why, c->whylen, "%s:%d: [%s] %s: ", c->cfg->source,
                      line, c->section, key)
           : snprintf(c->why, c->whylen, "[%s] %s: ", c->section, key);
  if (off > 0 && (size_t)off < c->whylen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + off, c->whylen - (size_t)off, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static int bh__unum(bh__ucfg *c, const char *key, uint32_t lo, uint32_t hi,
                    uint32_t *out) {
  const char *v = bh__config_get(c->cfg, c->section, key);
  if (v == NULL) return 0;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-' || n < lo || n > hi)
    return bh__ufail(c, key, "expected an integer between %u and %u, got '%s'",
                     lo, hi, v);
  *out = (uint32_t)n;
  return 0;
}

/* "@env:NAME" and "@file:PATH" indirections for secret values
 * (config/secret.c). NULL with the reason set. */
static char *bh__secret(bh__ucfg *c, const char *key, const char *v) {
  char why[256], *out;
  size_t len;
  int rc = bh__secret_resolve(v, &out, &len, why, sizeof(why));
  if (rc == 0) return out;
  if (rc != -ENOMEM) bh__ufail(c, key, "%s", why);
  return NULL;
}

static int bh__uname_ok(const char *plugin, const char *name) {
  size_t n = strlen(plugin);
  if (strncmp(name, plugin, n) != 0) return 0;
  if (name[n] != '\0' && name[n] != '_') return 0;
  if (strlen(name) > 48) return 0;
  for (const char *s = name; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  return 1;
}

static const char *const bh__ukeys[] = {"url",
                                        "connect_timeout_ms",
                                        "timeout_ms",
                                        "max_response_bytes",
                                        "tls_verify",
                                        "ca_file",
                                        "retries",
                                        "retry_base_ms",
                                        "retry_cap_ms",
                                        "retry_budget_percent",
                                        "retry_budget_min",
                                        "retry_after_max_s",
                                        "breaker_window_ms",
                                        "breaker_min_calls",
                                        "breaker_failure_rate",
                                        "breaker_slow_rate",
                                        "breaker_slow_call_ms",
                                        "breaker_open_ms",
                                        "breaker_half_open_calls",
                                        "breaker_mode",
                                        "rate_limit",
                                        "forward_credentials",
                                        "transport",
                                        "max_idle",
                                        "idle_timeout_ms",
                                        "max_connections",
                                        "dns_ttl_ms",
                                        NULL};

static int bh__ukey_known(const char *k) {
  if (strncmp(k, "header.", 7) == 0) return k[7] != '\0';
  for (size_t i = 0; bh__ukeys[i]; i++)
    if (strcmp(k, bh__ukeys[i]) == 0) return 1;
  return 0;
}

void bh__upstream_free_one(struct bh_upstream *u) {
  free(u->name);
  free(u->base_url);
  free(u->ca_file);
  for (size_t i = 0; i < u->nheaders; i++)
    free(u->headers[i]);
  free(u->headers);
  if (u->owns_state) {
    free(u->breaker);
    free(u->budget);
  }
  free(u);
}

/* The numeric and enumerated keys of one [upstream.NAME] section, checked
 * and defaulted; shared by the loader and the config check. */
typedef struct bh__uvals {
  uint32_t connect_timeout_ms, timeout_ms, maxresp, tls, mode;
  uint32_t max_idle, idle_timeout_ms, max_connections, dns_ttl_ms;
  int fwd_creds, transport_curl;
  bh__retry_cfg retry;
  bh__breaker_cfg bc;
} bh__uvals;

static int bh__uparse(bh__ucfg *c, bh__uvals *v) {
  for (size_t i = 0; c->sec && i < c->sec->nkv; i++)
    if (!bh__ukey_known(c->sec->kv[i].key))
      return bh__ufail(c, c->sec->kv[i].key, "unknown key");
  const char *url = bh__config_get(c->cfg, c->section, "url");
  if (url && strncmp(url, "http://", 7) != 0 &&
      strncmp(url, "https://", 8) != 0)
    return bh__ufail(c, "url", "must start with http:// or https://");
  v->maxresp = 8u << 20;
  v->tls = 1;
  v->max_idle = 128;
  v->idle_timeout_ms = 30000;
  v->max_connections = 256;
  v->dns_ttl_ms = 30000;
  v->mode = 0;
  memset(&v->bc, 0, sizeof(v->bc));
  bh__retry_cfg_defaults(&v->retry);
  int rc;
  if ((rc = bh__unum(c, "connect_timeout_ms", 1, 600000,
                     &v->connect_timeout_ms)) ||
      (rc = bh__unum(c, "timeout_ms", 1, 3600000, &v->timeout_ms)) ||
      (rc = bh__unum(c, "max_response_bytes", 1024, 1u << 30, &v->maxresp)) ||
      (rc = bh__unum(c, "tls_verify", 0, 1, &v->tls)) ||
      (rc = bh__unum(c, "retries", 0, 10, &v->retry.max_retries)) ||
      (rc = bh__unum(c, "retry_base_ms", 1, 600000, &v->retry.base_ms)) ||
      (rc = bh__unum(c, "retry_cap_ms", 1, 600000, &v->retry.cap_ms)) ||
      (rc =
           bh__unum(c, "retry_budget_percent", 0, 100, &v->retry.budget_pct)) ||
      (rc =
           bh__unum(c, "retry_budget_min", 0, 1000000, &v->retry.budget_min)) ||
      (rc = bh__unum(c, "retry_after_max_s", 0, 3600,
                     &v->retry.max_retry_after_s)) ||
      (rc = bh__unum(c, "breaker_window_ms", 100, 3600000, &v->bc.window_ms)) ||
      (rc = bh__unum(c, "breaker_min_calls", 1, 1000000, &v->bc.min_calls)) ||
      (rc = bh__unum(c, "breaker_failure_rate", 1, 100,
                     &v->bc.failure_rate_pct)) ||
      (rc = bh__unum(c, "breaker_slow_rate", 1, 100, &v->bc.slow_rate_pct)) ||
      (rc = bh__unum(c, "breaker_slow_call_ms", 1, 3600000,
                     &v->bc.slow_call_ms)) ||
      (rc = bh__unum(c, "breaker_open_ms", 1, 3600000, &v->bc.open_ms)) ||
      (rc = bh__unum(c, "breaker_half_open_calls", 1, 1000,
                     &v->bc.half_open_calls)) ||
      (rc = bh__unum(c, "max_idle", 0, 65535, &v->max_idle)) ||
      (rc =
           bh__unum(c, "idle_timeout_ms", 100, 3600000, &v->idle_timeout_ms)) ||
      (rc = bh__unum(c, "max_connections", 0, 65535, &v->max_connections)) ||
      (rc = bh__unum(c, "dns_ttl_ms", 0, 86400000, &v->dns_ttl_ms)))
    return rc;
  const char *tr = bh__config_get(c->cfg, c->section, "transport");
  v->transport_curl = 0;
  if (tr && strcmp(tr, "curl") == 0)
    v->transport_curl = 1;
  else if (tr && strcmp(tr, "auto") != 0)
    return bh__ufail(c, "transport", "expected auto or curl, got '%s'", tr);
  const char *ms = bh__config_get(c->cfg, c->section, "breaker_mode");
  if (ms) {
    int m = bh__breaker_mode_parse(ms);
    if (m < 0)
      return bh__ufail(c, "breaker_mode",
                       "expected auto, forced_open, disabled or metrics_only");
    v->mode = (uint32_t)m;
  }
  const char *fc = bh__config_get(c->cfg, c->section, "forward_credentials");
  v->fwd_creds = 0;
  if (fc && (v->fwd_creds = bh__config_bool(fc)) < 0)
    return bh__ufail(c, "forward_credentials",
                     "expected true/false, yes/no, on/off or 1/0, got '%s'",
                     fc);
  /* checked here so that `-t` and a reload refuse a CA file a worker could
   * not read: libcurl would only say so at the first call */
  const char *ca = bh__config_get(c->cfg, c->section, "ca_file");
  if (ca && (ca[0] == '\0' || access(ca, R_OK) != 0))
    return bh__ufail(c, "ca_file", "cannot read '%s': %s", ca,
                     ca[0] ? strerror(errno) : "empty path");
  return 0;
}

/* A header key's value, secrets resolved: "Name: value", or NULL (why set;
 * errno ENOMEM or EINVAL). */
static char *bh__uheader(bh__ucfg *c, const char *k) {
  const char *v = bh__config_get(c->cfg, c->section, k);
  char *val = bh__secret(c, k, v ? v : "");
  if (val == NULL) {
    errno = EINVAL;
    return NULL;
  }
  if (strpbrk(val, "\r\n")) {
    free(val);
    bh__ufail(c, k, "value contains a line break");
    errno = EINVAL;
    return NULL;
  }
  size_t n = strlen(k + 7) + strlen(val) + 3;
  char *h = malloc(n);
  if (h) snprintf(h, n, "%s: %s", k + 7, val);
  sodium_memzero(val, strlen(val));
  free(val);
  if (h == NULL) errno = ENOMEM;
  return h;
}

int bh__upstream_config_check(const bh__config *cfg, const bh__section *s,
                              char *why, size_t whylen) {
  bh__ucfg c = {s->name, s, cfg, why, whylen};
  bh__uvals v;
  memset(&v, 0, sizeof(v));
  int rc = bh__uparse(&c, &v);
  if (rc) return rc;
  const char *rl = bh__config_get(cfg, s->name, "rate_limit");
  if (rl) {
    bh__rl_policy pol;
    char lwhy[240];
    if (bh__limit_policy_parse(cfg, rl, &pol, lwhy, sizeof(lwhy)))
      return bh__ufail(&c, "rate_limit", "%s", lwhy);
    if (pol.unit == BH__RL_UNIT_TOKENS)
      return bh__ufail(&c, "rate_limit",
                       "[rate_limit.%s] counts tokens (unit = tokens), not "
                       "calls: a plugin's token budget names it",
                       rl);
  }
  for (size_t i = 0; i < s->nkv; i++) {
    if (strncmp(s->kv[i].key, "header.", 7) != 0) continue;
    char *h = bh__uheader(&c, s->kv[i].key);
    if (h == NULL) return errno == ENOMEM ? -ENOMEM : -EINVAL;
    sodium_memzero(h, strlen(h));
    free(h);
  }
  return 0;
}

int bh__upstream_new(bh__daemon *d, bh__plugin *p, const bh_upstream_def *def,
                     struct bh_upstream **out, char *why, size_t whylen) {
  char section[96];
  if (def == NULL ||
      def->size < offsetof(bh_upstream_def, connect_timeout_ms) ||
      def->name == NULL || !bh__uname_ok(p->name, def->name)) {
    snprintf(why, whylen, "upstream name must be '%s' or '%s_<suffix>'",
             p->name, p->name);
    return -EINVAL;
  }
  if (bh__upstream_find(d, def->name)) {
    snprintf(why, whylen, "upstream '%s' is registered twice", def->name);
    return -EEXIST;
  }
  snprintf(section, sizeof(section), "upstream.%s", def->name);
  bh__ucfg c = {section, bh__config_section(d->cfg, section), d->cfg, why,
                whylen};
  bh__uvals v;
  memset(&v, 0, sizeof(v));
  v.connect_timeout_ms =
      def->connect_timeout_ms ? def->connect_timeout_ms : 2000;
  v.timeout_ms =
      def->size >= offsetof(bh_upstream_def, timeout_ms) + sizeof(uint32_t) &&
              def->timeout_ms
          ? def->timeout_ms
          : 10000;
  int rc = bh__uparse(&c, &v);
  if (rc) return rc;
  const char *url = bh__config_get(d->cfg, section, "url");
  if (url == NULL) url = def->default_url;
  if (url == NULL) return bh__ufail(&c, "url", "no url configured");
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    return bh__ufail(&c, "url", "must start with http:// or https://");

  struct bh_upstream *u = calloc(1, sizeof(*u));
  if (u == NULL) return -ENOMEM;
  u->plugin = p;
  u->name = strdup(def->name);
  int created = 1;
  if (bh__shm_g) {
    /* breaker and budget are shared by every worker: one upstream, one
     * verdict */
    bh__shm_lock();
    u->shared = bh__shm_upstream_slot(def->name, p->name, &created);
    bh__shm_unlock();
  }
  if (u->shared) {
    u->breaker = &u->shared->breaker;
    u->budget = &u->shared->budget;
  } else {
    u->owns_state = 1;
    u->breaker = calloc(1, sizeof(*u->breaker));
    u->budget = calloc(1, sizeof(*u->budget));
  }
  rc = -ENOMEM;
  if (!u->name || !u->breaker || !u->budget) goto fail;
  u->base_url = strdup(url);
  if (u->base_url == NULL) goto fail;
  size_t ul = strlen(u->base_url);
  while (ul > 8 && u->base_url[ul - 1] == '/')
    u->base_url[--ul] = '\0';
  u->connect_timeout_ms = v.connect_timeout_ms;
  u->timeout_ms = v.timeout_ms;
  u->retry = v.retry;
  bh__breaker_cfg bc = v.bc;
  uint32_t mode = v.mode;
  const char *rl = bh__config_get(d->cfg, section, "rate_limit");
  if (rl) {
    char lwhy[200];
    u->limit = bh__limit_get(d, rl, lwhy, sizeof(lwhy));
    if (u->limit && bh__limit_policy(u->limit)->unit == BH__RL_UNIT_TOKENS) {
      snprintf(lwhy, sizeof(lwhy), "[rate_limit.%s] counts tokens, not calls",
               rl);
      u->limit = NULL;
    }
    if (u->limit == NULL) {
      rc = bh__ufail(&c, "rate_limit", "%s", lwhy);
      goto fail;
    }
  }
  u->max_response_bytes = v.maxresp;
  u->tls_verify = (int)v.tls;
  const char *ca = bh__config_get(d->cfg, section, "ca_file");
  if (ca && (u->ca_file = strdup(ca)) == NULL) goto fail;
  u->forward_credentials = v.fwd_creds;
  u->transport_curl = v.transport_curl;
  u->max_idle = v.max_idle;
  u->idle_timeout_ms = v.idle_timeout_ms;
  u->max_connections = v.max_connections;
  u->dns_ttl_ms = v.dns_ttl_ms;
  bh__breaker_cfg_defaults(&bc);
  if (bh__shm_g) bh__shm_lock();
  if (created) {
    bh__breaker_init(u->breaker, &bc);
    if (mode) bh__breaker_set_mode(u->breaker, (int)mode, uv_now(d->loop));
  } else {
    /* a restarted worker or a reload: keep the shared state, take the
     * thresholds of this config */
    u->breaker->cfg = bc;
  }
  if (bh__shm_g) bh__shm_unlock();

  for (size_t i = 0; c.sec && i < c.sec->nkv; i++) {
    const char *k = c.sec->kv[i].key;
    if (strncmp(k, "header.", 7) != 0) continue;
    char **list = realloc(u->headers, (u->nheaders + 1) * sizeof(char *));
    if (list == NULL) goto fail;
    u->headers = list;
    char *h = bh__uheader(&c, k);
    if (h == NULL) {
      rc = errno == ENOMEM ? -ENOMEM : -EINVAL;
      goto fail;
    }
    u->headers[u->nheaders++] = h;
  }
  u->next = d->upstreams;
  d->upstreams = u;
  *out = u;
  return 0;
fail:
  if (rc == -ENOMEM) snprintf(why, whylen, "out of memory");
  bh__upstream_free_one(u);
  return rc;
}

struct bh_upstream *bh__upstream_find(bh__daemon *d, const char *name) {
  for (struct bh_upstream *u = d->upstreams; u; u = u->next)
    if (strcmp(u->name, name) == 0) return u;
  return NULL;
}

void bh__upstreams_free(bh__daemon *d) {
  while (d->upstreams) {
    struct bh_upstream *u = d->upstreams;
    d->upstreams = u->next;
    bh__upstream_free_one(u);
  }
}
