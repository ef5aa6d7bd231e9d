/*
 * The request path of the API listener, reached through its hooks: target
 * parsing, route and mount lookup, plugin state, the session check
 * (identity/), the route's rate limit (limit_check.c), then the handler
 * under a deadline. Every refusal is a Problem from
 * the catalogue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/reqid.h"
#include "config/config.h"
#include "gateway/composite.h"
#include "gateway/cors.h"
#include "gateway/dispatch.h"
#include "host/host.h"
#include "http/http.h"
#include "http/router.h"
#include "identity/auth.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/upstream.h"

static void bh__dispatch_resume(bh_req *req);
static void bh__dispatch_handler(bh_req *req);

/* What the session check continues with, and the rate limit's address
 * gate it runs before an API-key lookup. */
static const bh__auth_next bh__after_auth = {
    .resume = bh__dispatch_resume,
    .gate = bh__limit_gate,
};

/* Headers complete: route, mount and body limit. The body is read next. */
static int bh__dispatch_head(bh_req *req) {
  bh__daemon *d = req->d;
  bh__req_parse_target(req);
  bh__req_client(req);
  char *url = req->raw.data;
  req->body_limit = d->cfg->max_body_bytes;
  if (req->bad_path) {
    bh__cors_head(req);
    return 0;
  }
  req->match_result = bh__router_match(d->router, req->method, url, &req->match,
                                       req->allow, sizeof(req->allow));
  if (req->match_result == BH__ROUTE_FOUND) {
    req->route = req->match.route;
    req->plugin = req->route->plugin;
    req->body_limit = req->route->max_body_bytes;
    /* a proxy route's body goes upstream as it is read, unless a
     * composite (which reads bodies whole) takes the path */
    req->body_stream = bh__proxy_streams_body(req->route) &&
                       !bh__composite_find(d, req->method, req->path);
  } else {
    req->plugin = bh__plugin_for_path(d, url);
  }
  /* now, so every answer from here on (413 included) carries them */
  bh__cors_head(req);
  return 0;
}

/* Loaded here and not quarantined by the master since (another worker may
 * have crashed in it a moment ago). */
int bh__plugin_serving(const bh__plugin *p) {
  return p->state == BH__PLUGIN_LOADED && !(p->shm && p->shm->quarantined);
}

static void bh__unavailable(bh_req *req, bh__plugin *p) {
  const char *reason = p->shm && p->shm->quarantined ? "quarantined"
                       : p->reason                   ? p->reason
                                                     : "unavailable";
  bh__ext ext[2] = {{"plugin", p->name}, {"reason", reason}};
  req->plugin = p;
  bh__respond_problem(req, "plugin.unavailable", NULL, -1, ext, 2, NULL, 0);
}

/* Message complete: refusals, the session check, then the handler. */
static void bh__dispatch(bh_req *req) {
  bh__daemon *d = req->d;
  bh__req_ids(req);
  if (req->bad_path) {
    bh__respond_code(req, "request.bad_request");
    return;
  }
  /* before the plugin's state, the session check and the rate limit: a
   * browser sends a preflight without credentials */
  if (bh__cors_preflight(req)) return;
  /* a composite route is the core's own: its sections meet the plugins'
   * state one by one; a section never nests another composite */
  const bh__cdef *cd = bh__is_section(req)
                           ? NULL
                           : bh__composite_find(d, req->method, req->path);
  if (cd) {
    bh__composite_serve(req, cd);
    return;
  }
  /* The owner of the path decides first: a plugin that is down answers for
   * its whole mount, even where a route of another plugin would match. */
  bh__plugin *owner = bh__plugin_for_path(d, req->path);
  if (owner && !bh__plugin_serving(owner)) {
    bh__unavailable(req, owner);
    return;
  }
  if (req->match_result == BH__ROUTE_NOT_FOUND) {
    bh__respond_code(req, "route.not_found");
    return;
  }
  if (req->match_result == BH__ROUTE_METHOD_NOT_ALLOWED) {
    bh__buf_printf(&req->resp_headers, "Allow: %s\r\n", req->allow);
    bh__respond_code(req, "route.method_not_allowed");
    return;
  }
  bh__route *route = req->route;
  if (!bh__plugin_serving(route->plugin)) {
    bh__unavailable(req, route->plugin);
    return;
  }
  /* decoded parameters steer what plugins build from them (upstream
   * paths, queries, file names): '/', '?', '#', '\', NUL and dot
   * segments never reach a handler */
  int prc = bh__params_decode(req);
  if (prc) {
    bh__respond_problem(
        req, prc == -EINVAL ? "request.bad_request" : "generic.internal",
        prc == -EINVAL ? "A path parameter holds a '/', '\\', '?', '#', NUL "
                         "or dot segment once percent-decoded."
                       : NULL,
        -1, NULL, 0, NULL, 0);
    return;
  }
  /* the session middleware: 0 let in now, 1 decided later (store), < 0
   * already answered (401, 302 to the login page, 403, 503) */
  if (route->flags & BH_ROUTE_AUTH_REQUIRED) {
    /* a composite's section: the composite's one check decided (a silent
     * refresh happens once per composite, not once per section) */
    int arc = bh__section_auth(req);
    if (arc > 0) arc = bh__auth_check(req, &bh__after_auth);
    if (arc != 0) return;
  }
  bh__dispatch_resume(req);
}

/* The rest of bh__dispatch once the session middleware let the caller in
 * (now, or after an asynchronous check: API key, silent refresh). */
static void bh__dispatch_resume(bh_req *req) {
  if (bh__limit_check(req, bh__dispatch_handler) != 0) return;
  bh__dispatch_handler(req);
}

/* The rest once the rate limit let the request through (now, or when the
 * shared backend answered). */
static void bh__dispatch_handler(bh_req *req) {
  bh__route *route = req->route;
  if (!(route->flags & BH_ROUTE_RAW_BODY) && req->body.len > 0 &&
      !bh__is_json(bh__req_header(req, "content-type"))) {
    bh__respond_code(req, "request.unsupported_media_type");
    return;
  }
  req->plugin_holds = 1;
  req->refs++;
  bh__req_deadline(req, route->timeout_ms);
  int64_t mark = bh__shm_enter(route->plugin->shm_index, BH__CB_HANDLER);
  route->handler(req, route->data);
  bh__shm_leave(mark);
}

void bh__dispatch_deadline(bh_req *req) {
  if (req->answered) return;
  bh__plugin *p = req->plugin;
  char code[64];
  snprintf(code, sizeof(code), "%s.timeout", p ? p->name : "generic");
  bh__logline l;
  bh__log_begin(&l, BH__WARN, "handler_timeout");
  bh__log_str(&l, "requestId", req->id);
  if (p) bh__log_str(&l, "plugin", p->name);
  if (req->route) bh__log_str(&l, "route", req->route->pattern);
  bh__log_end(&l);
  bh__respond_code(req, code);
  /* nobody is waiting for these answers any more */
  bh__calls_cancel(req);
}

const bh__http_hooks bh__dispatch_hooks = {
    .on_head = bh__dispatch_head,
    .on_request = bh__dispatch,
    .on_deadline = bh__dispatch_deadline,
};
