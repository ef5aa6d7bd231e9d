/*
 * The route-level rate limit: the bucket key of a request (principal, API
 * key or client address) and the answer. A refusal is 429
 * rate_limit.exceeded whose retryAfterSeconds equals the Retry-After
 * header; every answer of a limited route carries the IETF draft's
 * RateLimit-Policy and RateLimit fields.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "gateway/dispatch.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "obs/telemetry.h"
#include "policy/ratelimit.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/limits.h"

/* The bucket key. API keys are hashed so the secret itself never sits in
 * the table; an anonymous caller falls back to its address. */
static void bh__limit_key(bh_req *req, int kind, char *out, size_t len) {
  const char *v = NULL;
  if (kind == BH__RL_KEY_API_KEY)
    v = bh__req_header(req, "x-api-key");
  else if (kind == BH__RL_KEY_PRINCIPAL)
    v = req->principal_id;
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

int bh__limit_check(bh_req *req) {
  bh__route *rt = req->route;
  if (rt == NULL || rt->limit == NULL) return 0;
  struct bh__limit *l = rt->limit;
  const bh__rl_policy *pol = bh__limit_policy(l);
  char key[96];
  bh__limit_key(req, pol->key, key, sizeof(key));
  bh__rl_result r;
  if (bh__limit_take(l, key, bh__shm_now_ms(), &r) != 0) return 0;
  if (r.allowed) {
    bh__rl_headers(pol, &r, &req->resp_headers);
    return 0;
  }
  /* Retry-After comes from the Problem so header and body agree */
  bh__rl_result shown = r;
  shown.allowed = 1;
  shown.retry_after_s = 0;
  bh__rl_headers(pol, &shown, &req->resp_headers);
  bh__metrics_rate_limited(req->d, pol->name);
  bh__respond_problem(req, "rate_limit.exceeded", NULL, (long)r.retry_after_s,
                      NULL, 0, NULL, 0);
  return -EAGAIN;
}
