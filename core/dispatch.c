/*
 * The request path: target parsing, route and mount lookup, limits, plugin
 * state, then the handler under a deadline. Every refusal is a Problem from
 * the catalogue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "daemon.h"
#include "log.h"
#include "shm.h"
#include "upstream.h"

#define BH__ADMIN_BODY_LIMIT 65536

/* "." and ".." segments are refused rather than normalised: a gateway that
 * resolves them differently from the upstream behind it invites route
 * confusion. */
static int bh__path_ok(const char *p) {
  if (p[0] != '/') return 0;
  for (const char *s = p; *s; s++) {
    if (*s == '#') return 0;
    if (s[0] == '/' && s[1] == '.') {
      if (s[2] == '/' || s[2] == '\0') return 0;
      if (s[2] == '.' && (s[3] == '/' || s[3] == '\0')) return 0;
    }
  }
  return 1;
}

int bh__is_json(const char *ct) {
  if (ct == NULL) return 0;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
  return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
         strncasecmp(ct + n - 5, "+json", 5) == 0;
}

int bh__dispatch_head(bh_req *req) {
  bh__daemon *d = req->d;
  char *url = req->raw.data;
  char *q = strchr(url, '?');
  if (q) {
    *q = '\0';
    req->query = q + 1;
  } else {
    req->query = "";
  }
  req->path = url;
  req->bad_path = !bh__path_ok(url);
  const char *expect = bh__req_header(req, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0)
    req->expect_continue = 1;
  if (req->conn->listener->kind == BH__LISTENER_ADMIN) {
    req->body_limit = BH__ADMIN_BODY_LIMIT;
    return 0;
  }
  req->body_limit = d->cfg->max_body_bytes;
  if (req->bad_path) return 0;
  req->match_result = bh__router_match(d->router, req->method, url, &req->match,
                                       req->allow, sizeof(req->allow));
  if (req->match_result == BH__ROUTE_FOUND) {
    req->route = req->match.route;
    req->plugin = req->route->plugin;
    req->body_limit = req->route->max_body_bytes;
  } else {
    req->plugin = bh__plugin_for_path(d, url);
  }
  return 0;
}

/* Loaded here and not quarantined by the master since (another worker may
 * have crashed in it a moment ago). */
static int bh__serving(const bh__plugin *p) {
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

void bh__dispatch(bh_req *req) {
  bh__daemon *d = req->d;
  bh__conn *c = req->conn;
  bh__reqid(bh__req_header(req, "x-request-id"), req->id, sizeof(req->id));
  if (c->listener->kind == BH__LISTENER_ADMIN) {
    bh__admin_dispatch(req);
    return;
  }
  if (req->bad_path) {
    bh__respond_problem(req, "request.bad_request", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  /* The owner of the path decides first: a plugin that is down answers for
   * its whole mount, even where a route of another plugin would match. */
  bh__plugin *owner = bh__plugin_for_path(d, req->path);
  if (owner && !bh__serving(owner)) {
    bh__unavailable(req, owner);
    return;
  }
  if (req->match_result == BH__ROUTE_NOT_FOUND) {
    bh__respond_problem(req, "route.not_found", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  if (req->match_result == BH__ROUTE_METHOD_NOT_ALLOWED) {
    bh__buf_printf(&req->resp_headers, "Allow: %s\r\n", req->allow);
    bh__respond_problem(req, "route.method_not_allowed", NULL, -1, NULL, 0,
                        NULL, 0);
    return;
  }
  bh__route *route = req->route;
  if (!bh__serving(route->plugin)) {
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
  if ((route->flags & BH_ROUTE_AUTH_REQUIRED) && bh__auth_check(req) != 0)
    return;
  bh__dispatch_resume(req);
}

void bh__dispatch_resume(bh_req *req) {
  bh__conn *c = req->conn;
  bh__route *route = req->route;
  if (bh__limit_check(req) != 0) return;
  if (!(route->flags & BH_ROUTE_RAW_BODY) && req->body.len > 0 &&
      !bh__is_json(bh__req_header(req, "content-type"))) {
    bh__respond_problem(req, "request.unsupported_media_type", NULL, -1, NULL,
                        0, NULL, 0);
    return;
  }
  req->plugin_holds = 1;
  req->refs++;
  bh__conn_deadline(c, route->timeout_ms);
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
  bh__respond_problem(req, code, NULL, -1, NULL, 0, NULL, 0);
  /* nobody is waiting for these answers any more */
  bh__calls_cancel(req);
}
