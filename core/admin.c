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
  bh__buf_puts(&b, "]}");
  bh__admin_json(req, 200, &b);
}

void bh__admin_dispatch(bh_req *req) {
  static const struct {
    const char *path;
    int needs_token;
  } paths[] = {{"/healthz", 0}, {"/readyz", 0}, {"/admin/status", 1},
               {"/admin/errors", 1}};
  const char *path = req->path;
  int found = -1;
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    if (!req->bad_path && strcmp(path, paths[i].path) == 0) found = (int)i;
  if (found < 0) {
    if (!req->bad_path && strncmp(path, "/admin/", 7) == 0 &&
        !bh__admin_authorized(req)) {
      /* do not reveal which admin paths exist without the token */
      bh__buf_puts(&req->resp_headers, "WWW-Authenticate: Bearer\r\n");
      bh__respond_problem(req, "admin.unauthorized", NULL, -1, NULL, 0, NULL,
                          0);
      return;
    }
    bh__respond_problem(req, req->bad_path ? "request.bad_request"
                                           : "route.not_found",
                        NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  if (paths[found].needs_token && !bh__admin_authorized(req)) {
    bh__buf_puts(&req->resp_headers, "WWW-Authenticate: Bearer\r\n");
    bh__respond_problem(req, "admin.unauthorized", NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    bh__buf_puts(&req->resp_headers, "Allow: GET, HEAD\r\n");
    bh__respond_problem(req, "route.method_not_allowed", NULL, -1, NULL, 0,
                        NULL, 0);
    return;
  }
  bh__buf b;
  bh__buf_init(&b);
  switch (found) {
  case 0:
    bh__buf_puts(&b, "{\"status\":\"ok\"}");
    bh__admin_json(req, 200, &b);
    break;
  case 1: bh__readyz(req); break;
  case 2: bh__status(req); break;
  case 3:
    bh__catalogue_json(req->d, &b);
    bh__admin_json(req, 200, &b);
    break;
  }
}
