/*
 * Named rate-limit policies ([rate_limit.NAME]) applied to routes, keyed by
 * principal, verified API key or client address, and to upstreams as a
 * local limit.
 * A refusal is 429 rate_limit.exceeded whose retryAfterSeconds equals the
 * Retry-After header; every answer of a limited route carries the IETF
 * draft's RateLimit-Policy and RateLimit fields.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "daemon.h"
#include "log.h"
#include "ratelimit.h"
#include "shm.h"
#include "upstream.h"

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

static int bh__rl_take_locked(struct bh__limit *l, const char *key,
                              uint64_t now_ms, bh__rl_result *r) {
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
    int line = 0;
    for (size_t i = 0; i < s->nkv; i++)
      if (strcmp(s->kv[i].key, key) == 0) line = s->kv[i].line;
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
  static const char *const keys[] = {"quota", "window_s", "burst", "key", NULL};
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
  if (bh__lnum(cfg, s, "quota", 1, 10000000, 60, &out->quota, why, whylen) ||
      bh__lnum(cfg, s, "window_s", 1, 86400, 60, &out->window_s, why, whylen) ||
      bh__lnum(cfg, s, "burst", 1, 10000000, out->quota, &out->burst, why,
               whylen))
    return -EINVAL;
  return 0;
}

struct bh__limit *bh__limit_get(bh__daemon *d, const char *name, char *why,
                                size_t whylen) {
  for (struct bh__limit *l = d->limits; l; l = l->next)
    if (strcmp(l->policy.name, name) == 0) return l;
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
  if (bh__rl_take_locked(l, key, now_ms, &r) != 0) return 0; /* fail open */
  if (r.allowed) return 0;
  *wait_s = r.retry_after_s;
  return -EAGAIN;
}

/* The bucket key. key = api_key counts the VERIFIED key (its id, from the
 * session middleware), never the raw header: an unknown value would get a
 * fresh bucket per request, and every one of them could evict somebody's
 * drained bucket. A caller not authenticated by a key -- anonymous, bearer,
 * cookie, or a route without auth -- counts against its address. Ids are
 * hashed so the table holds names of one shape. */
static void bh__limit_key(bh_req *req, int kind, char *out, size_t len) {
  const char *v = NULL;
  if (kind == BH__RL_KEY_API_KEY) {
    const bh_principal *p = bh__auth_principal(req);
    if (p && p->kind == BH_AUTH_API_KEY && p->key_id) v = p->key_id;
  } else if (kind == BH__RL_KEY_PRINCIPAL) {
    v = req->principal_id;
  }
  if (v && v[0]) {
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)v, strlen(v), NULL,
                       0);
    char hex[33];
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    snprintf(out, len, "%c:%s", kind == BH__RL_KEY_API_KEY ? 'k' : 'p', hex);
    return;
  }
  snprintf(out, len, "a:%s", req->client_addr);
}

static int bh__limit_refuse(bh_req *req, struct bh__limit *l,
                            const bh__rl_result *r) {
  /* Retry-After comes from the Problem so header and body agree */
  bh__rl_result shown = *r;
  shown.allowed = 1;
  shown.retry_after_s = 0;
  bh__rl_headers(&l->policy, &shown, &req->resp_headers);
  bh__metrics_rate_limited(req->d, l->policy.name);
  bh__respond_problem(req, "rate_limit.exceeded", NULL, (long)r->retry_after_s,
                      NULL, 0, NULL, 0);
  return -EAGAIN;
}

/* An API key costs a store lookup before it is known to be good: its
 * address pays one token up front, so a flood of invalid keys (each 401
 * after the lookup) is limited like an anonymous caller -- concurrent ones
 * included, as the token is taken before the lookup starts -- and makes no
 * bucket of its own. A valid key gets the token back and pays its own. */
int bh__limit_gate(bh_req *req) {
  bh__route *rt = req->route;
  if (rt == NULL || rt->limit == NULL ||
      rt->limit->policy.key != BH__RL_KEY_API_KEY || req->rl_addr_held)
    return 0;
  struct bh__limit *l = rt->limit;
  char key[96];
  snprintf(key, sizeof(key), "a:%s", req->client_addr);
  bh__rl_result r;
  if (bh__rl_take_locked(l, key, bh__shm_now_ms(), &r) != 0) return 0;
  if (!r.allowed) return bh__limit_refuse(req, l, &r);
  req->rl_addr_held = 1;
  return 0;
}

int bh__limit_check(bh_req *req) {
  bh__route *rt = req->route;
  if (rt == NULL || rt->limit == NULL) return 0;
  struct bh__limit *l = rt->limit;
  uint64_t now = bh__shm_now_ms();
  if (req->rl_addr_held) {
    char addr[96];
    snprintf(addr, sizeof(addr), "a:%s", req->client_addr);
    req->rl_addr_held = 0;
    if (l->shared) bh__shm_lock();
    bh__rl_give(l->table, addr, now);
    if (l->shared) bh__shm_unlock();
  }
  char key[96];
  bh__limit_key(req, l->policy.key, key, sizeof(key));
  bh__rl_result r;
  if (bh__rl_take_locked(l, key, now, &r) != 0) return 0;
  if (!r.allowed) return bh__limit_refuse(req, l, &r);
  bh__rl_headers(&l->policy, &r, &req->resp_headers);
  return 0;
}
