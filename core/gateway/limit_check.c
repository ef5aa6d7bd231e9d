/*
 * The route-level rate limit: the bucket key of a request (principal,
 * verified API key or client address), the address gate before an API-key
 * lookup, and the answer. A refusal is 429 rate_limit.exceeded whose
 * retryAfterSeconds equals the Retry-After header; every answer of a
 * limited route carries the IETF draft's RateLimit-Policy and RateLimit
 * fields. A policy with backend = redis asks the server and the request
 * waits for the answer (at most [redis] timeout_ms, then this instance's
 * buckets decide): the rest of the path runs from the answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gateway/dispatch.h"
#include "host/host.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "identity/auth.h"
#include "obs/telemetry.h"
#include "policy/ratelimit.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/limits.h"

static int bh__limit_refuse(bh_req *req, const bh__rl_policy *pol,
                            const char *key, const bh__rl_result *r) {
  /* Retry-After comes from the Problem so header and body agree */
  bh__rl_result shown = *r;
  shown.allowed = 1;
  shown.retry_after_s = 0;
  char pk[24];
  bh__limit_pk(key, pk, sizeof(pk));
  bh__rl_headers(pol, &shown, pk, &req->resp_headers);
  bh__metrics_rate_limited(req->d, pol->name);
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
      bh__limit_policy(rt->limit)->key != BH__RL_KEY_API_KEY ||
      req->rl_addr_held)
    return 0;
  struct bh__limit *l = rt->limit;
  char key[96];
  snprintf(key, sizeof(key), "a:%s", req->client_addr);
  bh__rl_result r;
  if (bh__limit_take(l, key, bh__shm_now_ms(), &r) != 0) return 0;
  if (!r.allowed) return bh__limit_refuse(req, bh__limit_policy(l), key, &r);
  req->rl_addr_held = 1;
  return 0;
}

/* Allowed: the RateLimit fields go on the answer; refused: the 429. */
static int bh__limit_apply(bh_req *req, const bh__rl_policy *pol,
                           const char *key, const bh__rl_result *r) {
  if (!r->allowed) return bh__limit_refuse(req, pol, key, r);
  char pk[24];
  bh__limit_pk(key, pk, sizeof(pk));
  bh__rl_headers(pol, r, pk, &req->resp_headers);
  return 0;
}

typedef struct bh__limit_pending {
  bh_req *req;
  void (*next)(bh_req *req);
  char key[96];
} bh__limit_pending;

static void bh__limit_decided(void *arg, const bh__rl_result *r) {
  bh__limit_pending *p = arg;
  bh_req *req = p->req;
  /* the client left, or the route's deadline answered meanwhile */
  if (!req->answered && bh__req_live(req) &&
      bh__limit_apply(req, bh__limit_policy(req->route->limit), p->key, r) == 0)
    p->next(req);
  bh__req_unref(req);
  free(p);
}

int bh__limit_check(bh_req *req, void (*next)(bh_req *req)) {
  bh__route *rt = req->route;
  if (rt == NULL || rt->limit == NULL) return 0;
  struct bh__limit *l = rt->limit;
  const bh__rl_policy *pol = bh__limit_policy(l);
  uint64_t now = bh__shm_now_ms();
  if (req->rl_addr_held) {
    char addr[96];
    snprintf(addr, sizeof(addr), "a:%s", req->client_addr);
    req->rl_addr_held = 0;
    bh__limit_give(l, addr, now);
  }
  char key[96];
  bh__limit_key(req, pol->key, key, sizeof(key));
  bh__rl_result r;
  if (pol->backend == BH__RL_BACKEND_REDIS) {
    /* allocated only here: the local path stays allocation-free */
    bh__limit_pending *p = malloc(sizeof(*p));
    if (p) {
      memcpy(p->key, key, sizeof(key));
      p->req = req;
      p->next = next;
      req->refs++;
      int rc = bh__limit_take_async(req->d, l, key, &r, bh__limit_decided, p);
      if (rc == 1) return 1;
      req->refs--;
      free(p);
      if (rc != 0) return 0; /* fail open */
      return bh__limit_apply(req, pol, key, &r);
    }
  }
  if (bh__limit_take(l, key, now, &r) != 0) return 0; /* fail open */
  return bh__limit_apply(req, pol, key, &r);
}
