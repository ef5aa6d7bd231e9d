/*
 * The admin listener: /healthz, /readyz, /admin/status, /admin/errors. It
 * runs on its own address so that ops can always see the truth, whatever
 * the API listener is going through.
 */
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "bh_version.h"
#include "daemon.h"
#include "log.h"
#include "upstream.h"

static void bh__admin_json(bh_req *req, int status, bh__buf *b) {
  if (bh__buf_failed(b)) {
    bh__respond_problem(req, "generic.internal", NULL, -1, NULL, 0, NULL, 0);
  } else {
    bh__respond(req, status, "application/json", b->data, b->len,
                "Cache-Control: no-store\r\n");
  }
  bh__buf_free(b);
}

/* Constant-time compare: the token is a secret and the admin port may be
 * reachable by more than ops. */
static int bh__admin_authorized(bh_req *req) {
  const char *token = req->d->cfg->admin_token;
  if (token == NULL || token[0] == '\0') return 1;
  const char *auth = bh__req_header(req, "authorization");
  if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  const char *given = auth + 7;
  size_t n = strlen(token);
  unsigned char a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
  crypto_generichash(a, sizeof(a), (const unsigned char *)token, n, NULL, 0);
  crypto_generichash(b, sizeof(b), (const unsigned char *)given,
                     strlen(given), NULL, 0);
  return sodium_memcmp(a, b, sizeof(a)) == 0;
}

static int bh__plugin_serving(const bh__plugin *p) {
  return p->state == BH__PLUGIN_LOADED;
}

static void bh__readyz(bh_req *req) {
  bh__daemon *d = req->d;
  bh__buf missing;
  bh__buf_init(&missing);
  for (size_t i = 0; i < d->nplugins; i++) {
    const bh__plugin *p = &d->plugins[i];
    if (p->conf->required && !bh__plugin_serving(p)) {
      if (missing.len) bh__buf_putc(&missing, ',');
      bh__buf_puts(&missing, p->name);
    }
  }
  if (missing.len) {
    bh__ext ext[1] = {{"plugins", missing.data}};
    bh__respond_problem(req, "admin.not_ready", NULL, -1, ext, 1, NULL, 0);
  } else {
    bh__buf b;
    bh__buf_init(&b);
    bh__buf_puts(&b, "{\"status\":\"ready\"}");
    bh__admin_json(req, 200, &b);
  }
  bh__buf_free(&missing);
}

static void bh__status(bh_req *req) {
  bh__daemon *d = req->d;
  int degraded = 0;
  for (size_t i = 0; i < d->nplugins; i++)
    if (d->plugins[i].conf->enabled && !bh__plugin_serving(&d->plugins[i]))
      degraded = 1;
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_printf(&b,
                 "{\"status\":\"%s\",\"version\":\"%s\",\"abi\":\"%d.%d\","
                 "\"uptimeSeconds\":%llu,\"listeners\":{\"api\":",
                 degraded ? "degraded" : "ok", BH_VERSION, BH_ABI_MAJOR,
                 BH_ABI_MINOR,
                 (unsigned long long)((uv_now(d->loop) - d->started_ms) /
                                      1000));
  bh__buf_json_str(&b, d->api.address);
  bh__buf_puts(&b, ",\"admin\":");
  bh__buf_json_str(&b, d->admin.address);
  bh__buf_printf(&b,
                 "},\"connections\":%zu,\"requestsTotal\":%llu,"
                 "\"logLinesDropped\":%llu,\"plugins\":[",
                 d->nconns, (unsigned long long)d->requests_total,
                 (unsigned long long)bh__log_dropped());
  for (size_t i = 0; i < d->nplugins; i++) {
    const bh__plugin *p = &d->plugins[i];
    if (i) bh__buf_putc(&b, ',');
    bh__buf_puts(&b, "{\"name\":");
    bh__buf_json_str(&b, p->name);
    bh__buf_printf(&b, ",\"state\":\"%s\",\"reason\":",
                   bh__plugin_state_name(p->state));
    bh__buf_json_str(&b, p->reason);
    bh__buf_puts(&b, ",\"version\":");
    bh__buf_json_str(&b, p->desc ? p->desc->version : NULL);
    if (p->desc)
      bh__buf_printf(&b, ",\"abi\":\"%u.%u\"", p->desc->abi_major,
                     p->desc->abi_minor);
    else
      bh__buf_puts(&b, ",\"abi\":null");
    bh__buf_printf(&b, ",\"required\":%s,\"path\":",
                   p->conf->required ? "true" : "false");
    bh__buf_json_str(&b, p->path);
    bh__buf_puts(&b, ",\"mounts\":[");
    for (size_t m = 0; m < p->conf->nmounts; m++) {
      if (m) bh__buf_putc(&b, ',');
      bh__buf_json_str(&b, p->conf->mounts[m]);
    }
    bh__buf_puts(&b, "],\"routes\":[");
    for (size_t r = 0; bh__plugin_serving(p) && r < p->nroutes; r++) {
      if (r) bh__buf_putc(&b, ',');
      bh__buf_puts(&b, "{\"method\":");
      bh__buf_json_str(&b, p->routes[r]->method);
      bh__buf_puts(&b, ",\"pattern\":");
      bh__buf_json_str(&b, p->routes[r]->pattern);
      bh__buf_putc(&b, '}');
    }
    bh__buf_puts(&b, "],\"lastError\":");
    bh__buf_json_str(&b, p->last_error[0] ? p->last_error : NULL);
    if (bh__plugin_serving(p) && p->desc->health) {
      const char *why = NULL;
      int h = p->desc->health((bh_ctx *)&p->ctx, &why);
      bh__buf_printf(&b, ",\"healthy\":%s", h == 0 ? "true" : "false");
      if (h != 0) {
        bh__buf_puts(&b, ",\"healthDetail\":");
        bh__buf_json_str(&b, why);
      }
    }
    bh__buf_putc(&b, '}');
  }
  bh__buf_puts(&b, "],\"upstreams\":[");
  uint64_t now = uv_now(d->loop);
  for (struct bh_upstream *u = d->upstreams; u; u = u->next) {
    const bh__breaker *br = u->breaker;
    uint32_t calls, fail, slow;
    bh__breaker_stats(br, now, &calls, &fail, &slow);
    if (u != d->upstreams) bh__buf_putc(&b, ',');
    bh__buf_puts(&b, "{\"name\":");
    bh__buf_json_str(&b, u->name);
    bh__buf_puts(&b, ",\"plugin\":");
    bh__buf_json_str(&b, u->plugin->name);
    bh__buf_printf(&b,
                   ",\"breaker\":{\"state\":\"%s\",\"mode\":\"%s\","
                   "\"calls\":%u,\"failureRate\":%u,\"slowRate\":%u,"
                   "\"transitions\":%llu,\"secondsSinceTransition\":%llu},"
                   "\"lastError\":",
                   bh__breaker_state_name(br->state),
                   bh__breaker_mode_name(br->mode), calls, fail, slow,
                   (unsigned long long)br->transitions,
                   (unsigned long long)(br->transition_ms && now > br->transition_ms
                                            ? (now - br->transition_ms) / 1000
                                            : 0));
    bh__buf_json_str(&b, u->last_error[0] ? u->last_error : NULL);
    if (u->last_error_ms)
      bh__buf_printf(&b, ",\"lastErrorAt\":%llu",
                     (unsigned long long)(u->last_error_ms / 1000));
    bh__buf_putc(&b, '}');
  }
  bh__buf_puts(&b, "]}");
  bh__admin_json(req, 200, &b);
}

/* POST /admin/upstreams/{name}/breaker {"state": "..."}: ops overrides. */
static void bh__breaker_override(bh_req *req, const char *name) {
  static const char *const modes[] = {"closed", "auto", "forced_open",
                                      "disabled", "metrics_only", NULL};
  static const bh_field fields[] = {
      {"state", BH_FIELD_STRING, BH_FIELD_REQUIRED, 1, 32, modes}};
  static const bh_body_shape shape = {fields, 1, 0};
  bh__daemon *d = req->d;
  struct bh_upstream *u = bh__upstream_find(d, name);
  if (u == NULL) {
    bh__respond_problem(req, "admin.upstream_not_found", NULL, -1, NULL, 0,
                        NULL, 0);
    return;
  }
  bh__body_result res;
  memset(&res, 0, sizeof(res));
  if (bh__body_validate(req->body.data ? req->body.data : "", req->body.len,
                        &shape, &res) != 0) {
    bh__respond_problem(req, "request.invalid_body", res.detail, -1, NULL, 0,
                        res.errors, res.nerrors);
    bh__field_errors_free(res.errors, res.nerrors);
    return;
  }
  int mode = bh__breaker_mode_parse(bh__body_string(res.body, "state"));
  bh__body_free(res.body);
  bh__breaker_set_mode(u->breaker, mode, uv_now(d->loop));
  bh__logline l;
  bh__log_begin(&l, BH__WARN, "breaker_override");
  bh__log_str(&l, "upstream", u->name);
  bh__log_str(&l, "mode", bh__breaker_mode_name(u->breaker->mode));
  bh__log_str(&l, "state", bh__breaker_state_name(u->breaker->state));
  bh__log_end(&l);
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "{\"upstream\":");
  bh__buf_json_str(&b, u->name);
  bh__buf_printf(&b, ",\"state\":\"%s\",\"mode\":\"%s\"}",
                 bh__breaker_state_name(u->breaker->state),
                 bh__breaker_mode_name(u->breaker->mode));
  bh__admin_json(req, 200, &b);
}

static void bh__metrics_endpoint(bh_req *req) {
  bh__buf b;
  bh__buf_init(&b);
  if (bh__metrics_text(req->d, &b) != 0 || bh__buf_failed(&b)) {
    bh__buf_free(&b);
    bh__respond_problem(req, "generic.internal", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  bh__respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data,
              b.len, "Cache-Control: no-store\r\n");
  bh__buf_free(&b);
}

static void bh__admin_unauthorized(bh_req *req) {
  bh__buf_puts(&req->resp_headers, "WWW-Authenticate: Bearer\r\n");
  bh__respond_problem(req, "admin.unauthorized", NULL, -1, NULL, 0, NULL, 0);
}

static void bh__admin_method(bh_req *req, const char *allow) {
  bh__buf_printf(&req->resp_headers, "Allow: %s\r\n", allow);
  bh__respond_problem(req, "route.method_not_allowed", NULL, -1, NULL, 0, NULL,
                      0);
}

static int bh__is_get(const bh_req *req) {
  return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

void bh__admin_dispatch(bh_req *req) {
  const char *path = req->path;
  if (req->bad_path) {
    bh__respond_problem(req, "request.bad_request", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  /* probes and scrapes stay open; everything under /admin/ needs the token
   * (checked before the path, so its absence reveals nothing) */
  if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
      strcmp(path, "/metrics") == 0) {
    if (!bh__is_get(req)) {
      bh__admin_method(req, "GET, HEAD");
    } else if (path[1] == 'h') {
      bh__buf b;
      bh__buf_init(&b);
      bh__buf_puts(&b, "{\"status\":\"ok\"}");
      bh__admin_json(req, 200, &b);
    } else if (path[1] == 'r') {
      bh__readyz(req);
    } else {
      bh__metrics_endpoint(req);
    }
    return;
  }
  if (strncmp(path, "/admin/", 7) != 0) {
    bh__respond_problem(req, "route.not_found", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  if (!bh__admin_authorized(req)) {
    bh__admin_unauthorized(req);
    return;
  }
  if (strcmp(path, "/admin/status") == 0 || strcmp(path, "/admin/errors") == 0) {
    if (!bh__is_get(req)) {
      bh__admin_method(req, "GET, HEAD");
    } else if (path[7] == 's') {
      bh__status(req);
    } else {
      bh__buf b;
      bh__buf_init(&b);
      bh__catalogue_json(req->d, &b);
      bh__admin_json(req, 200, &b);
    }
    return;
  }
  static const char up[] = "/admin/upstreams/";
  const char *tail = "/breaker";
  size_t pl = strlen(path), ul = sizeof(up) - 1, tl = strlen(tail);
  if (pl > ul + tl && strncmp(path, up, ul) == 0 &&
      strcmp(path + pl - tl, tail) == 0) {
    char name[64];
    size_t nl = pl - ul - tl;
    if (nl >= sizeof(name) || memchr(path + ul, '/', nl)) {
      bh__respond_problem(req, "route.not_found", NULL, -1, NULL, 0, NULL, 0);
      return;
    }
    memcpy(name, path + ul, nl);
    name[nl] = '\0';
    if (strcmp(req->method, "POST") != 0) bh__admin_method(req, "POST");
    else bh__breaker_override(req, name);
    return;
  }
  bh__respond_problem(req, "route.not_found", NULL, -1, NULL, 0, NULL, 0);
}
