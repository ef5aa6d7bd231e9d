/*
 * Route registration: the one path by which a route enters the router,
 * for a plugin's own routes (services.c, route_add) and for the routes a
 * proxy prefix expands to (proxy.c). Checks method, pattern and mount,
 * resolves the route's defaults and rate-limit policy, and records the
 * first failure of the plugin's init for the loader to report.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "host/host.h"
#include "http/router.h"
#include "proc/daemon-t.h"
#include "upstream/limits.h"

void bh__reg_fail(bh__plugin *p, const char *fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  /* one line naming the plugin, the thing and the rule */
  if (p->reg_error == NULL) {
    size_t n = strlen(p->name) + strlen(why) + 16;
    p->reg_error = malloc(n);
    if (p->reg_error) snprintf(p->reg_error, n, "plugin %s: %s", p->name, why);
  }
}

static int bh__method_ok(const char *m) {
  size_t n = 0;
  for (; m[n]; n++)
    if (m[n] < 'A' || m[n] > 'Z') return 0;
  return n > 0 && n <= 16;
}

static int bh__under_mount(const bh__plugin *p, const char *pattern) {
  for (size_t i = 0; i < p->conf->nmounts; i++) {
    const char *mt = p->conf->mounts[i];
    size_t n = strlen(mt);
    if (strncmp(pattern, mt, n) == 0 &&
        (pattern[n] == '/' || pattern[n] == '\0'))
      return 1;
  }
  return 0;
}

/* What a plugin can get wrong in a bh_route: 0, or -EINVAL with the
 * reason recorded (bh__reg_fail). */
static int bh__route_check(bh__plugin *p, const bh_route *r) {
  if (r == NULL || r->size < offsetof(bh_route, rate_limit) ||
      r->method == NULL || r->pattern == NULL || r->handler == NULL) {
    bh__reg_fail(p, "route: incomplete bh_route");
    return -EINVAL;
  }
  if (!bh__method_ok(r->method)) {
    bh__reg_fail(p, "route %.16s %.128s: bad method: 1 to 16 letters A-Z",
                 r->method, r->pattern);
    return -EINVAL;
  }
  const char *why = bh__router_pattern_why(r->pattern);
  if (why) {
    bh__reg_fail(p, "route %s %.128s: bad pattern: %s", r->method, r->pattern,
                 why);
    return -EINVAL;
  }
  if (!bh__under_mount(p, r->pattern)) {
    bh__reg_fail(p,
                 "route %s %.128s: outside the plugin's mounts (%s%s): a "
                 "route lies under a mount of [plugin.%s]",
                 r->method, r->pattern,
                 p->conf->nmounts ? p->conf->mounts[0] : "none",
                 p->conf->nmounts > 1 ? ", ..." : "", p->name);
    return -EINVAL;
  }
  return 0;
}

static void bh__route_free(bh__route *rt) {
  free(rt->method);
  free(rt->pattern);
  free(rt->rate_limit);
  free(rt);
}

/* The route's policy: a `routes` line of [plugin.NAME], else the plugin's
 * own, else the mount's rate_limit; retries likewise from the config.
 * Then the policy itself, which must count requests. 0; -EINVAL (the
 * reason recorded); -ENOMEM. */
static int bh__route_policy(bh__plugin *p, const bh_route *r, bh__route *rt) {
  const char *policy = NULL;
  if (r->size >= offsetof(bh_route, rate_limit) + sizeof(r->rate_limit))
    policy = r->rate_limit;
  if (policy == NULL) policy = p->conf->rate_limit;
  rt->retries = p->conf->retries;
  for (size_t i = 0; i < p->conf->nroutes; i++) {
    const bh__route_conf *c = &p->conf->routes[i];
    if (strcmp(c->method, r->method) || strcmp(c->pattern, r->pattern))
      continue;
    if (c->rate_limit) policy = c->rate_limit;
    if (c->retries >= 0) rt->retries = c->retries;
  }
  if (policy) rt->rate_limit = strdup(policy);
  if (rt->rate_limit == NULL) return 0;
  char lwhy[200];
  rt->limit = bh__limit_get(p->d, rt->rate_limit, lwhy, sizeof(lwhy));
  if (rt->limit && bh__limit_policy(rt->limit)->unit == BH__RL_UNIT_TOKENS) {
    /* a route takes one token per request: a token budget would count
     * requests and call them tokens */
    snprintf(lwhy, sizeof(lwhy),
             "[rate_limit.%s] counts tokens (unit = tokens), not requests",
             rt->rate_limit);
    rt->limit = NULL;
  }
  if (rt->limit == NULL) {
    bh__reg_fail(p, "route %s %s: %s", rt->method, rt->pattern, lwhy);
    return -EINVAL;
  }
  return 0;
}

/* Into the router: 0, or the router's error with the reason recorded (a
 * clash names the other plugin's route). */
static int bh__route_insert(bh__plugin *p, bh__route *rt) {
  void *conflict = NULL;
  int rc = bh__router_add(p->d->router, rt->method, rt->pattern, rt, &conflict);
  if (rc == 0) return 0;
  if (rc == -EEXIST && conflict) {
    bh__route *o = conflict;
    bh__reg_fail(p,
                 "route %s %s clashes with plugin '%s' (%s %s): one "
                 "handler per method and path",
                 rt->method, rt->pattern, o->plugin->name, o->method,
                 o->pattern);
  } else {
    bh__reg_fail(p, "route %s %s: %s", rt->method, rt->pattern, strerror(-rc));
  }
  return rc;
}

int bh__route_register(bh__plugin *p, const bh_route *r) {
  bh__daemon *d = p->d;
  int rc = bh__route_check(p, r);
  if (rc) return rc;
  bh__route *rt = calloc(1, sizeof(*rt));
  bh__route **list = realloc(p->routes, (p->nroutes + 1) * sizeof(*list));
  if (rt == NULL || list == NULL) {
    free(rt);
    if (list) p->routes = list;
    return -ENOMEM;
  }
  p->routes = list;
  rt->method = strdup(r->method);
  rt->pattern = strdup(r->pattern);
  rt->handler = r->handler;
  rt->data = r->data;
  rt->flags = r->flags;
  rt->max_body_bytes =
      r->max_body_bytes ? r->max_body_bytes : d->cfg->max_body_bytes;
  rt->timeout_ms = r->timeout_ms ? r->timeout_ms : d->cfg->handler_timeout_ms;
  rt->plugin = p;
  rc = bh__route_policy(p, r, rt);
  if (rc == 0 && (rt->method == NULL || rt->pattern == NULL)) rc = -ENOMEM;
  if (rc == 0) rc = bh__route_insert(p, rt);
  if (rc) {
    bh__route_free(rt);
    return rc;
  }
  p->routes[p->nroutes++] = rt;
  return 0;
}
