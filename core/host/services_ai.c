/*
 * The ABI 1.3 (ai) slots of the services table: a plugin that tries its
 * upstreams in turn (LLM provider fallback) says so, so the access log and
 * /metrics count each (from, to) pair; and token budgets, rate-limit
 * policies of unit = tokens charged after the fact with what the provider
 * reports it used.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "host/host.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "obs/telemetry.h"
#include "policy/ratelimit.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/upstream.h"

int bh__svc_upstream_fallback(bh_req *r, struct bh_upstream *from,
                              struct bh_upstream *to) {
  if (r == NULL || from == NULL || to == NULL || r->plugin == NULL ||
      from->plugin != r->plugin || to->plugin != r->plugin)
    return -EINVAL;
  /* truncated past the buffer: the metric still counts every pair */
  size_t n = strlen(r->fallbacks);
  snprintf(r->fallbacks + n, sizeof(r->fallbacks) - n, "%s%s>%s", n ? "," : "",
           from->name, to->name);
  bh__metrics_fallback(r->d, r->plugin->name, from->name, to->name);
  /* a Problem the plugin rendered for the failed attempt (problem_json)
   * is not the answer's code: the next upstream's outcome decides it */
  r->code = NULL;
  return 0;
}

int bh__svc_budget_add(bh_ctx *ctx, const char *policy) {
  bh__plugin *p = ctx->plugin;
  if (!p->in_init) return -EPERM;
  char why[240];
  if (policy == NULL || policy[0] == '\0') {
    bh__reg_fail(p, "token budget: no policy name");
    return -EINVAL;
  }
  struct bh__limit *l = bh__limit_get(p->d, policy, why, sizeof(why));
  if (l == NULL) {
    char sec[96];
    snprintf(sec, sizeof(sec), "rate_limit.%s", policy);
    bh__reg_fail(p, "token budget: %s", why);
    return bh__config_section(p->d->cfg, sec) ? -EINVAL : -ENOENT;
  }
  if (bh__limit_policy(l)->unit != BH__RL_UNIT_TOKENS) {
    bh__reg_fail(p,
                 "token budget: [rate_limit.%s] counts requests; set unit = "
                 "tokens",
                 policy);
    return -EINVAL;
  }
  return 0;
}

int bh__svc_budget_charge(bh_req *r, const char *policy, uint64_t tokens,
                          uint32_t flags, long *retry_after_s) {
  if (retry_after_s) *retry_after_s = -1;
  if (r == NULL || policy == NULL) return -EINVAL;
  struct bh__limit *l = bh__limit_find(r->d, policy);
  if (l == NULL || bh__limit_policy(l)->unit != BH__RL_UNIT_TOKENS)
    return -ENOENT;
  if ((flags & BH_BUDGET_HEADERS) && (!r->plugin_holds || r->answered))
    return -EALREADY;
  const bh__rl_policy *pol = bh__limit_policy(l);
  char key[96];
  bh__limit_key(r, pol->key, key, sizeof(key));
  bh__rl_result res;
  int rc = bh__limit_charge(l, key, tokens, bh__shm_now_ms(), &res);
  if (rc) return rc;
  if (flags & BH_BUDGET_HEADERS) {
    /* the Problem of a refusal writes Retry-After itself */
    bh__rl_result shown = res;
    shown.allowed = 1;
    char pk[24];
    bh__limit_pk(key, pk, sizeof(pk));
    bh__rl_headers(pol, &shown, pk, &r->resp_headers);
    if (bh__buf_failed(&r->resp_headers)) return -ENOMEM;
  }
  if (tokens == 0 && !res.allowed) {
    if (retry_after_s) *retry_after_s = (long)res.retry_after_s;
    bh__metrics_rate_limited(r->d, pol->name);
    return -EAGAIN;
  }
  return 0;
}
