/*
 * Named rate-limit policies ([rate_limit.NAME]): parsed and checked,
 * created once per daemon (in the shared mapping when there are workers),
 * and taken from by key. Routes are checked against them by the gateway
 * (gateway/limit_check.c, which answers the 429); upstreams use them as a
 * local limit (bh__limit_take_key).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "policy/ratelimit.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/redis.h"
#include "upstream/upstream.h"

#define BH__LIMIT_MAX_KEYS 100000

struct bh__limit {
  bh__rl_policy policy;
  bh__rl_table *table;
  int shared; /* the table lives in the shared mapping */
  struct bh__limit *next;
};

static void *bh__make_table(const bh__allocator *a, void *arg) {
  return bh__rl_table_new_with(arg, BH__LIMIT_MAX_KEYS, a);
}

int bh__limit_take(struct bh__limit *l, const char *key, uint64_t now_ms,
                   bh__rl_result *r) {
  if (l->shared) bh__shm_lock();
  int rc = bh__rl_take(l->table, key, now_ms, r);
  if (l->shared) bh__shm_unlock();
  return rc;
}

static int bh__lnum(const bh__config *cfg, const bh__section *s,
                    const char *key, uint32_t lo, uint32_t hi, uint32_t def,
                    uint32_t *out, char *why, size_t whylen) {
  const char *v = bh__config_get(cfg, s->name, key);
  *out = def;
  if (v == NULL) return 0;
  char *end;
  unsigned long long n = strtoull(v, &end, 10);
  if (end == v || *end || v[0] == '-' || n < lo || n > hi) {
    int line = bh__config_line(s, key);
    snprintf(why, whylen,
             "%s:%d: [%s] %s: expected an integer between %u and %u, got '%s'",
             cfg->source, line, s->name, key, lo, hi, v);
    return -EINVAL;
  }
  *out = (uint32_t)n;
  return 0;
}

int bh__limit_policy_parse(const bh__config *cfg, const char *name,
                           bh__rl_policy *out, char *why, size_t whylen) {
  char sec[96];
  snprintf(sec, sizeof(sec), "rate_limit.%s", name);
  const bh__section *s = bh__config_section(cfg, sec);
  if (s == NULL || strlen(name) >= sizeof(out->name)) {
    snprintf(why, whylen, "rate-limit policy '%s' has no [%s] section", name,
             sec);
    return -ENOENT;
  }
  static const char *const keys[] = {"quota",   "window_s", "burst", "key",
                                     "backend", "unit",     NULL};
  for (size_t i = 0; i < s->nkv; i++) {
    int known = 0;
    for (size_t k = 0; keys[k]; k++)
      known |= strcmp(s->kv[i].key, keys[k]) == 0;
    if (!known) {
      snprintf(why, whylen, "%s:%d: [%s] %s: unknown key", cfg->source,
               s->kv[i].line, sec, s->kv[i].key);
      return -EINVAL;
    }
  }
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s", name);
  const char *key = bh__config_get(cfg, sec, "key");
  out->key = key ? bh__rl_key_parse(key) : BH__RL_KEY_CLIENT;
  if (out->key < 0) {
    snprintf(why, whylen, "[%s] key: expected client, api_key or principal",
             sec);
    return -EINVAL;
  }
  const char *be = bh__config_get(cfg, sec, "backend");
  if (be && strcmp(be, "redis") == 0) {
    out->backend = BH__RL_BACKEND_REDIS;
    if (bh__config_get(cfg, "redis", "url") == NULL) {
      snprintf(why, whylen,
               "%s:%d: [%s] backend: redis needs [redis] url = "
               "redis://host:port",
               cfg->source, bh__config_line(s, "backend"), sec);
      return -EINVAL;
    }
  } else if (be && strcmp(be, "local") != 0) {
    snprintf(why, whylen, "%s:%d: [%s] backend: expected local or redis",
             cfg->source, bh__config_line(s, "backend"), sec);
    return -EINVAL;
  }
  const char *unit = bh__config_get(cfg, sec, "unit");
  out->unit = unit ? bh__rl_unit_parse(unit) : BH__RL_UNIT_REQUESTS;
  if (out->unit < 0) {
    snprintf(why, whylen, "%s:%d: [%s] unit: expected requests or tokens",
             cfg->source, bh__config_line(s, "unit"), sec);
    return -EINVAL;
  }
  if (out->unit == BH__RL_UNIT_TOKENS && out->backend == BH__RL_BACKEND_REDIS) {
    /* token budgets are charged after the call (bh__rl_charge), which the
     * one-round-trip bucket script does not do */
    snprintf(why, whylen,
             "%s:%d: [%s] backend: unit = tokens is counted locally only",
             cfg->source, bh__config_line(s, "backend"), sec);
    return -EINVAL;
  }
  if (bh__lnum(cfg, s, "quota", 1, 10000000, 60, &out->quota, why, whylen) ||
      bh__lnum(cfg, s, "window_s", 1, 86400, 60, &out->window_s, why, whylen) ||
      bh__lnum(cfg, s, "burst", 1, 10000000, out->quota, &out->burst, why,
               whylen))
    return -EINVAL;
  return 0;
}

struct bh__limit *bh__limit_find(bh__daemon *d, const char *name) {
  for (struct bh__limit *l = d->limits; l; l = l->next)
    if (strcmp(l->policy.name, name) == 0) return l;
  return NULL;
}

struct bh__limit *bh__limit_get(bh__daemon *d, const char *name, char *why,
                                size_t whylen) {
  struct bh__limit *found = bh__limit_find(d, name);
  if (found) return found;
  bh__rl_policy policy;
  if (bh__limit_policy_parse(d->cfg, name, &policy, why, whylen)) return NULL;
  struct bh__limit *l = calloc(1, sizeof(*l));
  if (l == NULL) return NULL;
  l->policy = policy;
  if (bh__shm_g) {
    /* one bucket per key for the whole daemon, whichever worker serves */
    char oname[64];
    snprintf(oname, sizeof(oname), "rl:%s", name);
    bh__shm_lock();
    l->table = bh__shm_named_get(oname, bh__make_table, &l->policy);
    bh__shm_unlock();
    l->shared = 1;
  } else {
    l->table = bh__rl_table_new(&l->policy, BH__LIMIT_MAX_KEYS);
  }
  if (l->table == NULL) {
    snprintf(why, whylen, "[rate_limit.%s]: cannot create the policy", name);
    free(l);
    return NULL;
  }
  l->next = d->limits;
  d->limits = l;
  return l;
}

void bh__limits_free(bh__daemon *d) {
  while (d->limits) {
    struct bh__limit *l = d->limits;
    d->limits = l->next;
    if (!l->shared) bh__rl_table_free(l->table);
    free(l);
  }
}

int bh__limit_take_key(struct bh__limit *l, const char *key, uint64_t now_ms,
                       uint32_t *wait_s) {
  bh__rl_result r;
  if (bh__limit_take(l, key, now_ms, &r) != 0) return 0; /* fail open */
  if (r.allowed) return 0;
  *wait_s = r.retry_after_s;
  return -EAGAIN;
}

const bh__rl_policy *bh__limit_policy(const struct bh__limit *l) {
  return &l->policy;
}

int bh__limit_charge(struct bh__limit *l, const char *key, uint64_t n,
                     uint64_t now_ms, bh__rl_result *r) {
  if (l->shared) bh__shm_lock();
  int rc = bh__rl_charge(l->table, key, n, now_ms, r);
  if (l->shared) bh__shm_unlock();
  return rc;
}

void bh__limit_give(struct bh__limit *l, const char *key, uint64_t now_ms) {
  if (l->shared) bh__shm_lock();
  bh__rl_give(l->table, key, now_ms);
  if (l->shared) bh__shm_unlock();
}

/* A check on the server: what the answer is given to, and what it falls
 * back to without one. */
typedef struct bh__limit_wait {
  struct bh__limit *l;
  bh__limit_cb cb;
  void *arg;
  char key[];
} bh__limit_wait;

static void bh__limit_local(struct bh__limit *l, const char *key,
                            bh__rl_result *r) {
  if (bh__shm_g) bh__shm_count(&bh__shm_g->redis.fallback_total);
  if (bh__limit_take(l, key, bh__shm_now_ms(), r) != 0) {
    /* fail open, as the local backend does */
    memset(r, 0, sizeof(*r));
    r->allowed = 1;
    r->remaining = l->policy.burst;
  }
}

static void bh__limit_answered(void *arg, int rc, const bh__rl_result *r) {
  bh__limit_wait *w = arg;
  bh__rl_result local;
  if (rc != 0) {
    bh__limit_local(w->l, w->key, &local);
    r = &local;
  }
  w->cb(w->arg, r);
  free(w);
}

int bh__limit_take_async(bh__daemon *d, struct bh__limit *l, const char *key,
                         bh__rl_result *r, bh__limit_cb cb, void *arg) {
  if (l->policy.backend != BH__RL_BACKEND_REDIS)
    return bh__limit_take(l, key, bh__shm_now_ms(), r) ? -EIO : 0;
  if (bh__redis_shared(d->redis)) {
    size_t klen = strlen(key) + 1;
    bh__limit_wait *w = malloc(sizeof(*w) + klen);
    if (w) {
      w->l = l;
      w->cb = cb;
      w->arg = arg;
      memcpy(w->key, key, klen);
      if (bh__redis_take(d->redis, &l->policy, key, bh__limit_answered, w) == 0)
        return 1;
      free(w);
    }
  }
  bh__limit_local(l, key, r);
  return 0;
}
