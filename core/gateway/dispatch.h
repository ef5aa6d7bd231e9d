/*
 * The request path of the API listener (dispatch.c): target, route and
 * mount, plugin state, session check, rate limit (limit_check.c), then the
 * handler under its deadline.
 */
#ifndef BH_CORE_GATEWAY_DISPATCH_H
#define BH_CORE_GATEWAY_DISPATCH_H

#include "http/http-t.h"

/* The hooks the API listener is given (proc/daemon.c). */
extern const bh__http_hooks bh__dispatch_hooks;
/* The handler deadline: answers "<plugin>.timeout" and cancels the
 * request's upstream calls. */
void bh__dispatch_deadline(bh_req *req);

/* Loaded here and not quarantined by the master since. */
int bh__plugin_serving(const bh__plugin *p);
/* limit_check.c: 0 allowed (RateLimit headers added); 1 asked the shared
 * backend: next(req) runs once it allowed the request; negative: answered
 * 429 rate_limit.exceeded. */
int bh__limit_check(bh_req *req, void (*next)(bh_req *req));
/* Before an API-key lookup on a route whose policy is key = api_key: one
 * token from the caller's address bucket, given back once the key proves
 * valid. 0, or answered 429 (no lookup is made). The session check's gate
 * (bh__auth_next). */
int bh__limit_gate(bh_req *req);

#endif
