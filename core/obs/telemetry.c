/*
 * What /metrics shows: request, upstream, retry, breaker and rate-limit
 * series. Label values come only from what the daemon declared (plugin,
 * route pattern, upstream, code, policy), never from client input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "bh_version.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "obs/metrics.h"
#include "obs/process.h"
#include "obs/telemetry.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

/* Series resolved per (plugin, route, status, code) and per (upstream,
 * outcome), so the request path updates its counters without formatting,
 * hashing or locking anything: labels are built once per combination, the
 * first time it is seen. The keys are objects that live as long as the
 * daemon (plugins, routes, upstreams); the code and outcome strings are
 * compared by content. Bounded: when a table is full, the uncached path is
 * taken, which is what every update cost before. */
#define BH__MCACHE_SLOTS 512 /* power of two; about 70 KiB */
#define BH__MCACHE_MAX (BH__MCACHE_SLOTS * 3 / 4)
#define BH__MCACHE_STR 64

typedef struct bh__mentry {
  const void *a, *b; /* plugin, route | upstream, NULL */
  int num;           /* status | -1 */
  int used;
  char str[BH__MCACHE_STR]; /* code | outcome label */
  bh__metrics_ref ref[3];
} bh__mentry;

typedef struct bh__mcache {
  const bh__metrics *m; /* the registry the refs point into */
  size_t n;
  bh__mentry slots[BH__MCACHE_SLOTS];
} bh__mcache;

/* One per process: each worker resolves its own refs (into the shared
 * registry, at the same address in every process). */
static bh__mcache *bh__mc;

static uint64_t bh__mc_hash(const void *a, const void *b, int num,
                            const char *str) {
  uint64_t h = (uint64_t)(uintptr_t)a * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t)(uintptr_t)b + 0x7f4a7c159e3779b9ull + (h << 6) + (h >> 2);
  h ^= (uint64_t)(uint32_t)num * 0xff51afd7ed558ccdull;
  for (const unsigned char *p = (const unsigned char *)str; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* The entry for the key, or NULL when it cannot be cached; `fresh` tells
 * the caller to resolve its refs (the entry is zeroed and keyed). */
static bh__mentry *bh__mc_slot(const bh__metrics *m, const void *a,
                               const void *b, int num, const char *str,
                               int *fresh) {
  *fresh = 0;
  if (bh__mc == NULL || bh__mc->m != m) {
    if (bh__mc == NULL && (bh__mc = calloc(1, sizeof(*bh__mc))) == NULL)
      return NULL;
    memset(bh__mc, 0, sizeof(*bh__mc));
    bh__mc->m = m;
  }
  size_t slen = strlen(str);
  if (slen >= BH__MCACHE_STR) return NULL;
  size_t mask = BH__MCACHE_SLOTS - 1;
  for (size_t i = (size_t)bh__mc_hash(a, b, num, str) & mask;;
       i = (i + 1) & mask) {
    bh__mentry *e = &bh__mc->slots[i];
    if (!e->used) {
      if (bh__mc->n >= BH__MCACHE_MAX) return NULL;
      e->used = 1;
      e->a = a;
      e->b = b;
      e->num = num;
      memcpy(e->str, str, slen + 1);
      bh__mc->n++;
      *fresh = 1;
      return e;
    }
    if (e->a == a && e->b == b && e->num == num && strcmp(e->str, str) == 0)
      return e;
  }
}

/* Undoes the insertion bh__mc_slot just made (its refs could not be
 * resolved): nothing was inserted after it, so no probe chain runs through
 * the slot yet. */
static void bh__mc_forget(bh__mentry *e) {
  memset(e, 0, sizeof(*e));
  bh__mc->n--;
}

void bh__telemetry_free(bh__daemon *d) {
  /* a shared registry belongs to the mapping, not to this process */
  if (d->metrics && !d->metrics_shared) bh__metrics_free(d->metrics);
  d->metrics = NULL;
  free(bh__mc);
  bh__mc = NULL;
}

static void *bh__make_metrics(const bh__allocator *a, void *arg) {
  (void)arg;
  return bh__metrics_new_with(a);
}

/* The registry is shared by every process: each update and the rendering
 * hold the shared lock. */
static void bh__mlock(bh__daemon *d) {
  if (d->metrics_shared) bh__shm_lock();
}
static void bh__munlock(bh__daemon *d) {
  if (d->metrics_shared) bh__shm_unlock();
}

int bh__telemetry_init(bh__daemon *d) {
  /* refs resolved by another daemon of this process (or inherited through
   * fork) are keyed by objects that are not this daemon's */
  free(bh__mc);
  bh__mc = NULL;
  bh__metrics *m;
  if (bh__shm_g) {
    bh__shm_lock();
    m = bh__shm_named_get("metrics", bh__make_metrics, NULL);
    d->metrics_shared = 1;
  } else {
    m = bh__metrics_new();
  }
  if (m == NULL) {
    if (d->metrics_shared) bh__shm_unlock();
    d->metrics_shared = 0;
    return -ENOMEM;
  }
  d->metrics = m;
  bh__metrics_family(m, "bulkhead_requests_total", "counter",
                     "Requests answered, by plugin, route, status and code.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_request_duration_seconds", "histogram",
                     "Time from the first request byte to the answer.", NULL,
                     0);
  bh__metrics_family(m, "bulkhead_upstream_calls_total", "counter",
                     "Upstream calls by final outcome.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_attempts_total", "counter",
                     "Upstream attempts, retries included.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_retries_total", "counter",
                     "Upstream retries scheduled.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_call_duration_seconds", "histogram",
                     "Upstream call time, all attempts and waits.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_state", "gauge",
                     "1 for the breaker's current state.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_transitions_total", "counter",
                     "Breaker state changes.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_failure_ratio", "gauge",
                     "Failed calls / calls in the breaker's window (0-1).",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_fallbacks_total", "counter",
                     "Requests a plugin sent on to its next upstream after a "
                     "retryable failure, by pair.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_rate_limited_total", "counter",
                     "Requests refused by a rate-limit policy.", NULL, 0);
  bh__metrics_family(m, "bulkhead_plugin_up", "gauge",
                     "1 while the plugin serves its routes.", NULL, 0);
  bh__metrics_family(m, "bulkhead_connections", "gauge",
                     "Open client connections.", NULL, 0);
  bh__metrics_family(m, "bulkhead_redis_up", "gauge",
                     "1 while every process checks rate limits with backend "
                     "= redis on the shared server, 0 while any falls back "
                     "to local buckets.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_redis_transitions_total", "counter",
                     "Changes between shared and local-fallback rate limits.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_redis_fallback_checks_total", "counter",
                     "Rate-limit checks of backend = redis decided on local "
                     "buckets.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_redis_timeouts_total", "counter",
                     "Rate-limit checks not answered within [redis] "
                     "timeout_ms.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_auth_token_cache_total", "counter",
                     "Access tokens looked up in the worker's verified-token "
                     "cache, by result (hit, miss).",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_log_lines_dropped_total", "counter",
                     "Log lines dropped because the sink failed or lagged.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_build_info", "gauge",
                     "Always 1; the labels say which build runs.", NULL, 0);
  /* process_*: the names every Prometheus client library uses, summed
   * over the master and its workers (obs/process.c) */
  bh__metrics_family(m, "process_cpu_seconds_total", "counter",
                     "User and system CPU time, master and workers summed.",
                     NULL, 0);
  bh__metrics_family(m, "process_resident_memory_bytes", "gauge",
                     "Resident memory, master and workers summed.", NULL, 0);
  bh__metrics_family(m, "process_open_fds", "gauge",
                     "Open file descriptors, master and workers summed.", NULL,
                     0);
  bh__metrics_family(m, "process_max_fds", "gauge",
                     "The open file descriptor limit of each process.", NULL,
                     0);
  bh__metrics_family(m, "process_start_time_seconds", "gauge",
                     "When the daemon (its master) started, unix seconds.",
                     NULL, 0);
  if (d->metrics_shared) bh__shm_unlock();
  return 0;
}

static void bh__label(bh__buf *b, const char *key, const char *value) {
  if (b->len) bh__buf_putc(b, ',');
  bh__buf_printf(b, "%s=\"", key);
  bh__metrics_label_escape(b, value ? value : "");
  bh__buf_putc(b, '"');
}

/* The request series' labels: `plugin,route,status,code` in `all`, and
 * `plugin` alone in `plugin_only` (which points into all's memory).
 * 0 or -ENOMEM. */
static int bh__request_labels(bh_req *req, bh__buf *l,
                              const char **plugin_only) {
  char status[8];
  snprintf(status, sizeof(status), "%d", req->status);
  bh__label(l, "plugin", req->plugin ? req->plugin->name : "");
  bh__label(l, "route", req->route ? req->route->pattern : "");
  bh__label(l, "status", status);
  bh__label(l, "code", req->code ? req->code : "");
  if (bh__buf_failed(l)) return -ENOMEM;
  size_t cut = l->len;
  bh__label(l, "plugin", req->plugin ? req->plugin->name : "");
  if (bh__buf_failed(l)) return -ENOMEM;
  *plugin_only = l->data + cut + (cut ? 1 : 0);
  l->data[cut] = '\0';
  return 0;
}

void bh__metrics_request(bh_req *req) {
  bh__daemon *d = req->d;
  if (d->metrics == NULL) return;
  double seconds = (double)(bh__now_ns() - req->start_ns) / 1e9;
  int fresh;
  bh__mentry *e = bh__mc_slot(d->metrics, req->plugin, req->route, req->status,
                              req->code ? req->code : "", &fresh);
  if (e && fresh) {
    bh__buf l;
    bh__buf_init(&l);
    const char *plugin_only;
    int ok = 0;
    if (bh__request_labels(req, &l, &plugin_only) == 0) {
      bh__mlock(d);
      ok = bh__metrics_ref_get(d->metrics, "bulkhead_requests_total", l.data,
                               &e->ref[0]) == 0 &&
           bh__metrics_ref_get(d->metrics, "bulkhead_request_duration_seconds",
                               plugin_only, &e->ref[1]) == 0;
      bh__munlock(d);
    }
    bh__buf_free(&l);
    if (!ok) {
      /* out of memory or a full family: the uncached path below counts
       * what it drops, every time, as before */
      bh__mc_forget(e);
      e = NULL;
    }
  }
  if (e) {
    bh__metrics_ref_inc(&e->ref[0], 1);
    bh__metrics_ref_observe(&e->ref[1], seconds);
    return;
  }
  bh__buf l;
  bh__buf_init(&l);
  const char *plugin_only;
  if (bh__request_labels(req, &l, &plugin_only) == 0) {
    bh__mlock(d);
    bh__metrics_inc(d->metrics, "bulkhead_requests_total", l.data, 1);
    bh__metrics_observe(d->metrics, "bulkhead_request_duration_seconds",
                        plugin_only, seconds);
    bh__munlock(d);
  }
  bh__buf_free(&l);
}

static const char *bh__outcome_label(int outcome, uint32_t transport,
                                     int status, char *buf, size_t len) {
  switch (outcome) {
  case BH_OUTCOME_RESPONSE:
    /* by hand: this runs on every upstream call */
    if (status >= 0 && status < 1000 && len >= 8) {
      memcpy(buf, "http_0xx", 9);
      buf[5] = (char)('0' + status / 100);
      return buf;
    }
    snprintf(buf, len, "http_%dxx", status / 100);
    return buf;
  case BH_OUTCOME_TRANSPORT:
    switch (transport) {
    case BH_TRANSPORT_CONNECT: return "connect_error";
    case BH_TRANSPORT_DNS: return "dns_error";
    case BH_TRANSPORT_TLS: return "tls_error";
    case BH_TRANSPORT_TIMEOUT: return "timeout";
    default: return "reset";
    }
  case BH_OUTCOME_BREAKER_OPEN: return "breaker_open";
  case BH_OUTCOME_RATE_LIMITED: return "rate_limited";
  default: return "canceled";
  }
}

void bh__metrics_upstream(bh__daemon *d, const char *upstream, int outcome,
                          uint32_t transport, int status, uint32_t attempts,
                          uint64_t duration_us) {
  if (d->metrics == NULL) return;
  char tmp[24];
  const char *label =
      bh__outcome_label(outcome, transport, status, tmp, sizeof(tmp));
  int fresh;
  bh__mentry *e = bh__mc_slot(d->metrics, upstream, NULL, -1, label, &fresh);
  if (e && fresh) {
    bh__buf l, u_only;
    bh__buf_init(&l);
    bh__buf_init(&u_only);
    bh__label(&l, "upstream", upstream);
    bh__label(&l, "outcome", label);
    bh__label(&u_only, "upstream", upstream);
    int ok = 0;
    if (!bh__buf_failed(&l) && !bh__buf_failed(&u_only)) {
      bh__mlock(d);
      ok = bh__metrics_ref_get(d->metrics, "bulkhead_upstream_calls_total",
                               l.data, &e->ref[0]) == 0 &&
           bh__metrics_ref_get(d->metrics, "bulkhead_upstream_attempts_total",
                               u_only.data, &e->ref[1]) == 0 &&
           bh__metrics_ref_get(d->metrics,
                               "bulkhead_upstream_call_duration_seconds",
                               u_only.data, &e->ref[2]) == 0;
      bh__munlock(d);
    }
    bh__buf_free(&l);
    bh__buf_free(&u_only);
    if (!ok) {
      bh__mc_forget(e);
      e = NULL;
    }
  }
  if (e) {
    bh__metrics_ref_inc(&e->ref[0], 1);
    if (attempts) bh__metrics_ref_inc(&e->ref[1], attempts);
    bh__metrics_ref_observe(&e->ref[2], (double)duration_us / 1e6);
    return;
  }
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "upstream", upstream);
  bh__label(&l, "outcome", label);
  bh__buf u_only;
  bh__buf_init(&u_only);
  bh__label(&u_only, "upstream", upstream);
  bh__mlock(d);
  bh__metrics_inc(d->metrics, "bulkhead_upstream_calls_total",
                  l.data ? l.data : "", 1);
  if (attempts)
    bh__metrics_inc(d->metrics, "bulkhead_upstream_attempts_total",
                    u_only.data ? u_only.data : "", attempts);
  bh__metrics_observe(d->metrics, "bulkhead_upstream_call_duration_seconds",
                      u_only.data ? u_only.data : "",
                      (double)duration_us / 1e6);
  bh__munlock(d);
  bh__buf_free(&u_only);
  bh__buf_free(&l);
}

void bh__metrics_retry(bh__daemon *d, const char *upstream) {
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "upstream", upstream);
  bh__mlock(d);
  bh__metrics_inc(d->metrics, "bulkhead_upstream_retries_total",
                  l.data ? l.data : "", 1);
  bh__munlock(d);
  bh__buf_free(&l);
}

void bh__metrics_rate_limited(bh__daemon *d, const char *policy) {
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "policy", policy);
  bh__mlock(d);
  bh__metrics_inc(d->metrics, "bulkhead_rate_limited_total",
                  l.data ? l.data : "", 1);
  bh__munlock(d);
  bh__buf_free(&l);
}

/* The [redis] series, sampled from the shared mapping (lock held). */
static void bh__metrics_redis(bh__metrics *m) {
  const bh__shm_redis *s = &bh__shm_g->redis;
  bh__metrics_set(m, "bulkhead_redis_up", "", bh__shm_redis_down() ? 0 : 1);
  bh__metrics_set(m, "bulkhead_redis_transitions_total", "to=\"fallback\"",
                  (double)s->down_total);
  bh__metrics_set(m, "bulkhead_redis_transitions_total", "to=\"shared\"",
                  (double)s->up_total);
  bh__metrics_set(m, "bulkhead_redis_fallback_checks_total", "",
                  (double)s->fallback_total);
  bh__metrics_set(m, "bulkhead_redis_timeouts_total", "",
                  (double)s->timeouts_total);
}

void bh__metrics_fallback(bh__daemon *d, const char *plugin, const char *from,
                          const char *to) {
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "plugin", plugin);
  bh__label(&l, "from", from);
  bh__label(&l, "to", to);
  bh__mlock(d);
  bh__metrics_inc(d->metrics, "bulkhead_upstream_fallbacks_total",
                  l.data ? l.data : "", 1);
  bh__munlock(d);
  bh__buf_free(&l);
}

void bh__metrics_token_cache(bh__daemon *d, int hit) {
  /* two series, resolved once per process and registry: a lookup per
   * authenticated request costs one atomic add */
  static const bh__metrics *resolved_for;
  static bh__metrics_ref refs[2];
  static int ok[2];
  if (d->metrics == NULL) return;
  hit = hit ? 1 : 0;
  if (resolved_for != d->metrics) {
    resolved_for = d->metrics;
    ok[0] = ok[1] = 0;
  }
  if (!ok[hit]) {
    bh__mlock(d);
    ok[hit] = bh__metrics_ref_get(d->metrics, "bulkhead_auth_token_cache_total",
                                  hit ? "result=\"hit\"" : "result=\"miss\"",
                                  &refs[hit]) == 0;
    bh__munlock(d);
    if (!ok[hit]) return;
  }
  bh__metrics_ref_inc(&refs[hit], 1);
}

int bh__metrics_text(bh__daemon *d, bh__buf *out, int openmetrics) {
  bh__metrics *m = d->metrics;
  if (m == NULL) return -EINVAL;
  uint64_t now = bh__shm_now_ms();
  bh__buf l;
  bh__buf_init(&l);
  /* /proc is read before the lock: the other processes need not wait */
  bh__proc_stats ps;
  bh__proc_sample(&ps);
  bh__mlock(d);
  /* gauges are sampled now, from the state every process shares */
  int64_t conns = bh__shm_g ? bh__shm_g->connections : (int64_t)d->nconns;
  for (int i = 0; bh__shm_g && i < BH__SHM_WORKERS; i++)
    if (bh__shm_g->workers[i].pid) conns += bh__shm_g->workers[i].connections;
  for (int i = 0; bh__shm_g && i < BH__SHM_UPSTREAMS; i++) {
    const bh__shm_upstream *u = &bh__shm_g->upstreams[i];
    if (u->name[0] == '\0') continue;
    static const int states[] = {BH__BREAKER_CLOSED, BH__BREAKER_OPEN,
                                 BH__BREAKER_HALF_OPEN};
    for (size_t k = 0; k < 3; k++) {
      bh__buf_reset(&l);
      bh__label(&l, "upstream", u->name);
      bh__label(&l, "state", bh__breaker_state_name(states[k]));
      bh__metrics_set(m, "bulkhead_breaker_state", l.data ? l.data : "",
                      u->breaker.state == states[k] ? 1 : 0);
    }
    bh__buf_reset(&l);
    bh__label(&l, "upstream", u->name);
    bh__metrics_set(m, "bulkhead_breaker_transitions_total",
                    l.data ? l.data : "", (double)u->breaker.transitions);
    bh__metrics_set(m, "bulkhead_breaker_failure_ratio", l.data ? l.data : "",
                    bh__breaker_failure_ratio(&u->breaker, now));
  }
  for (size_t i = 0; i < d->cfg->nplugins; i++) {
    const bh__plugin_conf *pc = &d->cfg->plugins[i];
    const bh__shm_plugin *sp = bh__shm_g ? bh__shm_plugin_find(pc->name) : NULL;
    bh__buf_reset(&l);
    bh__label(&l, "plugin", pc->name);
    bh__metrics_set(m, "bulkhead_plugin_up", l.data ? l.data : "",
                    sp && sp->state == BH__PLUGIN_LOADED && !sp->quarantined);
  }
  bh__metrics_set(m, "bulkhead_connections", "", (double)conns);
  if (d->cfg->redis && bh__shm_g) bh__metrics_redis(m);
  bh__buf_reset(&l);
  bh__label(&l, "version", BH_VERSION);
  char abi[24];
  snprintf(abi, sizeof(abi), "%d.%d", BH_ABI_MAJOR, BH_ABI_MINOR);
  bh__label(&l, "plugin_abi", abi);
  bh__metrics_set(m, "bulkhead_build_info", l.data ? l.data : "", 1);
  bh__metrics_set(m, "process_cpu_seconds_total", "", ps.cpu_seconds);
  bh__metrics_set(m, "process_resident_memory_bytes", "", ps.resident_bytes);
  bh__metrics_set(m, "process_open_fds", "", ps.open_fds);
  bh__metrics_set(m, "process_max_fds", "", ps.max_fds);
  bh__metrics_set(m, "process_start_time_seconds", "", ps.start_time);
  bh__metrics_set(m, "bulkhead_log_lines_dropped_total", "",
                  (double)bh__shm_log_dropped(bh__log_dropped()));
  int rc =
      openmetrics ? bh__metrics_render_om(m, out) : bh__metrics_render(m, out);
  bh__munlock(d);
  bh__buf_free(&l);
  return rc;
}
