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
  static const char *const keys[] = {"quota", "window_s", "burst",
                                     "key",   "unit",     NULL};
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
  const char *unit = bh__config_get(cfg, sec, "unit");
  out->unit = unit ? bh__rl_unit_parse(unit) : BH__RL_UNIT_REQUESTS;
  if (out->unit < 0) {
    snprintf(why, whylen, "%s:%d: [%s] unit: expected requests or tokens",
             cfg->source, bh__config_line(s, "unit"), sec);
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
