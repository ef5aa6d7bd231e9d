/*
 * The admin listener: /healthz, /readyz, /metrics, /admin/status,
 * /admin/errors and the POST actions. It runs on its own address so that
 * ops can always see the truth, whatever the API listener is going through.
 *
 * Without admin_token it obeys whoever reaches it, so it may only listen on
 * loopback (config.c refuses the rest) and must not obey a web page either:
 *   - a loopback listener answers only to a loopback Host (localhost,
 *     127.0.0.1, [::1] or its own address, any port; or none, as HTTP/1.0
 *     probes send): a DNS-rebinding page sends its own name -> 403
 *     auth.forbidden;
 *   - an Origin other than the listener's own (http://<Host>), or a
 *     Sec-Fetch-Site other than same-origin / none -> 403 auth.forbidden;
 *   - a POST must say Content-Type: application/json, which no form and no
 *     "simple" cross-site request can -> 415 request.unsupported_media_type.
 */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/reqid.h"
#include "bh_version.h"
#include "config/config.h"
#include "gateway/dispatch.h"
#include "host/host.h"
#include "http/http.h"
#include "http/router.h"
#include "http/validate.h"
#include "identity/auth-t.h"
#include "identity/store.h"
#include "obs/telemetry.h"
#include "proc/admin.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/redis.h"
#include "upstream/upstream.h"

#define BH__ADMIN_BODY_LIMIT 65536

static const bh__admin_ops *bh__ops;

void bh__admin_set_ops(const bh__admin_ops *ops) {
  bh__ops = ops;
}

static void bh__admin_json(bh_req *req, int status, bh__buf *b) {
  if (bh__buf_failed(b)) {
    bh__respond_code(req, "generic.internal");
  } else {
    bh__respond(req, status, "application/json", b->data, b->len,
                "Cache-Control: no-store\r\n");
  }
  bh__buf_free(b);
}

/* Constant-time compare: the token is a secret and the admin port may be
 * reachable by more than ops. */
static int bh__bearer_is(bh_req *req, const char *token) {
  if (token == NULL || token[0] == '\0') return 1;
  const char *auth = bh__req_header(req, "authorization");
  if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  const char *given = auth + 7;
  size_t n = strlen(token);
  unsigned char a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
  crypto_generichash(a, sizeof(a), (const unsigned char *)token, n, NULL, 0);
  crypto_generichash(b, sizeof(b), (const unsigned char *)given, strlen(given),
                     NULL, 0);
  return sodium_memcmp(a, b, sizeof(a)) == 0;
}

static int bh__admin_authorized(bh_req *req) {
  return bh__bearer_is(req, req->d->cfg->admin_token);
}

/* The host part of "host[:port]" / "[v6][:port]" (brackets kept) and
 * whether the rest is empty or ":<digits>". */
static int bh__host_split(const char *v, char *host, size_t len) {
  const char *end = v[0] == '[' ? strchr(v, ']') : v + strcspn(v, ":");
  if (end == NULL) return -EINVAL;
  if (v[0] == '[') end++;
  size_t n = (size_t)(end - v);
  if (n == 0 || n >= len) return -EINVAL;
  memcpy(host, v, n);
  host[n] = '\0';
  if (*end == '\0') return 0;
  if (*end != ':' || end[1] == '\0' || strlen(end + 1) > 5) return -EINVAL;
  for (const char *p = end + 1; *p; p++)
    if (*p < '0' || *p > '9') return -EINVAL;
  return 0;
}

/* No Host at all (HTTP/1.0 probes) is no browser's doing: browsers always
 * send one, and rebinding needs a browser. */
static int bh__host_allowed(const bh_req *req, const char *hostport) {
  char host[96], own[96];
  if (hostport == NULL) return 1;
  if (bh__host_split(hostport, host, sizeof(host)) != 0) return 0;
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
      strcmp(host, "[::1]") == 0)
    return 1;
  return bh__host_split(req->d->admin.address, own, sizeof(own)) == 0 &&
         strcasecmp(host, own) == 0;
}

/* 0, or answered 403: see the top of the file. */
static int bh__admin_origin_check(bh_req *req) {
  const char *host = bh__req_header(req, "host");
  const char *why = NULL;
  if (bh__addr_is_loopback(req->d->admin.address) &&
      !bh__host_allowed(req, host)) {
    why = "the Host header does not name this loopback admin listener";
  } else {
    const char *origin = bh__req_header(req, "origin");
    const char *site = bh__req_header(req, "sec-fetch-site");
    if (origin && (host == NULL || strncasecmp(origin, "http://", 7) != 0 ||
                   strcasecmp(origin + 7, host) != 0))
      why = "cross-origin requests are refused on the admin listener";
    else if (site && strcmp(site, "same-origin") != 0 &&
             strcmp(site, "none") != 0)
      why = "cross-site requests are refused on the admin listener";
  }
  if (why == NULL) return 0;
  bh__logline l;
  bh__log_begin(&l, BH__WARN, "admin_refused");
  bh__log_str(&l, "requestId", req->id);
  bh__log_str(&l, "path", req->path);
  bh__log_str(&l, "why", why);
  bh__log_end(&l);
  bh__respond_problem(req, "auth.forbidden", why, -1, NULL, 0, NULL, 0);
  return -EPERM;
}

/* 0, or answered 415: the POST actions take JSON only (even an empty
 * body), so no HTML form or simple cross-site request can trigger one. */
static int bh__admin_json_post(bh_req *req) {
  if (bh__is_json(bh__req_header(req, "content-type"))) return 0;
  bh__respond_code(req, "request.unsupported_media_type");
  return -EINVAL;
}

/* Plugins as every process agrees on them: the current config's, with
 * what workers published and what the master decided (quarantine). */
static const bh__shm_plugin *bh__shm_view(const bh__plugin_conf *pc) {
  return bh__shm_plugin_find(pc->name);
}

static int bh__shm_serving(const bh__shm_plugin *s) {
  return s && s->state == BH__PLUGIN_LOADED && !s->quarantined;
}

/* The first-party plugins that keep a store on [store]'s backend (their
 * own file on sqlite, their own schema on postgres): /admin/status and
 * /readyz list them beside the identity store, healthy as their health()
 * last said (a plugin reports a store it cannot reach as unhealthy). */
static const char *const bh__store_plugins[] = {"billing", "webhooks"};

/* "stores":{...}: each store's backend and health. The identity store's
 * health is the last outcome any worker's store thread saw. Under the shm
 * lock. */
static void bh__status_stores(bh__buf *b, const bh__config *cfg) {
  int pg = cfg->auth && cfg->auth->store_backend == BH__STORE_POSTGRES;
  const char *backend = pg ? "postgres" : "sqlite";
  int down = bh__shm_g &&
             __atomic_load_n(&bh__shm_g->identity_store_down, __ATOMIC_RELAXED);
  bh__buf_printf(b,
                 "\"stores\":{\"identity\":{\"backend\":\"%s\","
                 "\"status\":\"%s\"}",
                 backend, down ? "unavailable" : "ok");
  for (size_t k = 0; k < sizeof(bh__store_plugins) / sizeof(char *); k++) {
    for (size_t i = 0; i < cfg->nplugins; i++) {
      const bh__plugin_conf *pc = &cfg->plugins[i];
      if (!pc->enabled || strcmp(pc->name, bh__store_plugins[k]) != 0) continue;
      const bh__shm_plugin *sp = bh__shm_view(pc);
      const char *st = !bh__shm_serving(sp) ? "not_loaded"
                       : sp->healthy == 0   ? "unavailable"
                       : sp->healthy == 1   ? "ok"
                                            : "unknown";
      bh__buf_printf(b, ",\"%s\":{\"backend\":\"%s\",\"status\":\"%s\"}",
                     bh__store_plugins[k], backend, st);
    }
  }
  bh__buf_putc(b, '}');
}

static void bh__readyz(bh_req *req) {
  const bh__config *cfg = req->d->cfg;
  bh__buf missing;
  bh__buf_init(&missing);
  bh__shm_lock();
  for (size_t i = 0; i < cfg->nplugins; i++) {
    const bh__plugin_conf *pc = &cfg->plugins[i];
    if (pc->required && !bh__shm_serving(bh__shm_view(pc))) {
      if (missing.len) bh__buf_putc(&missing, ',');
      bh__buf_puts(&missing, pc->name);
    }
  }
  if (missing.len) {
    bh__shm_unlock();
    bh__ext ext[1] = {{"plugins", missing.data}};
    bh__respond_problem(req, "admin.not_ready", NULL, -1, ext, 1, NULL, 0);
  } else {
    bh__buf b;
    bh__buf_init(&b);
    /* a store that is down degrades its routes only: still ready */
    bh__buf_puts(&b, "{\"status\":\"ready\",");
    bh__status_stores(&b, cfg);
    bh__shm_unlock();
    bh__buf_putc(&b, '}');
    bh__admin_json(req, 200, &b);
  }
  bh__buf_free(&missing);
}

static void bh__status_plugin(bh__buf *b, const bh__plugin_conf *pc,
                              const bh__shm_plugin *s) {
  bh__buf_puts(b, "{\"name\":");
  bh__buf_json_str(b, pc->name);
  const char *state = !pc->enabled     ? "disabled"
                      : s == NULL      ? "starting"
                      : s->quarantined ? "quarantined"
                                       : bh__plugin_state_name(s->state);
  bh__buf_printf(b, ",\"state\":\"%s\",\"reason\":", state);
  const char *reason = s && s->quarantined ? "quarantined"
                       : s && s->reason[0] ? s->reason
                       : !pc->enabled      ? "disabled"
                                           : NULL;
  bh__buf_json_str(b, reason);
  bh__buf_puts(b, ",\"version\":");
  bh__buf_json_str(b, s && s->version[0] ? s->version : NULL);
  bh__buf_puts(b, ",\"abi\":");
  bh__buf_json_str(b, s && s->abi[0] ? s->abi : NULL);
  bh__buf_printf(b,
                 ",\"required\":%s,\"path\":", pc->required ? "true" : "false");
  bh__buf_json_str(b, s && s->path[0] ? s->path : NULL);
  bh__buf_puts(b, ",\"mounts\":[");
  for (size_t m = 0; m < pc->nmounts; m++) {
    if (m) bh__buf_putc(b, ',');
    bh__buf_json_str(b, pc->mounts[m]);
  }
  bh__buf_printf(b, "],\"routes\":%s,\"lastError\":",
                 s && s->routes[0] && bh__shm_serving(s) ? s->routes : "[]");
  bh__buf_json_str(b, s && s->last_error[0] ? s->last_error : NULL);
  bh__buf_printf(b, ",\"crashes\":%u,\"quarantined\":%s", s ? s->crashes : 0,
                 s && s->quarantined ? "true" : "false");
  if (s && s->quarantined) {
    bh__buf_printf(b, ",\"quarantinedAt\":%llu,\"quarantineReason\":",
                   (unsigned long long)s->quarantined_at);
    bh__buf_json_str(b, s->quarantine_why);
  }
  if (s && s->last_crash[0]) {
    bh__buf_puts(b, ",\"lastCrash\":");
    bh__buf_json_str(b, s->last_crash);
  }
  if (s && s->healthy >= 0 && bh__shm_serving(s)) {
    bh__buf_printf(b, ",\"healthy\":%s", s->healthy ? "true" : "false");
    if (!s->healthy) {
      bh__buf_puts(b, ",\"healthDetail\":");
      bh__buf_json_str(b, s->health_detail);
    }
  }
  bh__buf_putc(b, '}');
}

/* "redis": where rate limits with backend = redis are decided now:
 * "shared" on the server, or "fallback" while some process uses its local
 * buckets (lock held). The URL is shown without its password. */
static void bh__status_redis(bh__buf *b, const bh__config *cfg) {
  if (cfg->redis == NULL) return;
  const bh__shm_redis *s = &bh__shm_g->redis;
  int down = bh__shm_redis_down();
  bh__buf_puts(b, ",\"redis\":{\"url\":");
  bh__buf_json_str(b, cfg->redis->shown);
  bh__buf_printf(
      b,
      ",\"state\":\"%s\",\"processesInFallback\":%d,"
      "\"timeoutMs\":%u,\"transitions\":{\"fallback\":%llu,"
      "\"shared\":%llu},\"fallbackChecks\":%llu,\"timeouts\":%llu,"
      "\"lastError\":",
      down ? "fallback" : "shared", down, (unsigned)cfg->redis->timeout_ms,
      (unsigned long long)s->down_total, (unsigned long long)s->up_total,
      (unsigned long long)s->fallback_total,
      (unsigned long long)s->timeouts_total);
  bh__buf_json_str(b, s->last_error[0] ? s->last_error : NULL);
  if (s->changed_ms)
    bh__buf_printf(b, ",\"changedAt\":%llu",
                   (unsigned long long)(s->changed_ms / 1000));
  bh__buf_putc(b, '}');
}

static void bh__status(bh_req *req) {
  bh__daemon *d = req->d;
  const bh__config *cfg = d->cfg;
  uint64_t now = bh__shm_now_ms();
  bh__buf b;
  bh__buf_init(&b);
  bh__shm_lock();
  int degraded = 0;
  for (size_t i = 0; i < cfg->nplugins; i++)
    if (cfg->plugins[i].enabled &&
        !bh__shm_serving(bh__shm_view(&cfg->plugins[i])))
      degraded = 1;
  bh__buf_printf(
      &b,
      "{\"status\":\"%s\",\"version\":\"%s\",\"abi\":\"%d.%d\","
      "\"uptimeSeconds\":%llu,\"listeners\":{\"api\":",
      degraded ? "degraded" : "ok", BH_VERSION, BH_ABI_MAJOR, BH_ABI_MINOR,
      (unsigned long long)((uv_now(d->loop) - d->started_ms) / 1000));
  bh__buf_json_str(&b, d->api.address);
  bh__buf_puts(&b, ",\"admin\":");
  bh__buf_json_str(&b, d->admin.address);
  int64_t conns = bh__shm_g->connections;
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    if (bh__shm_g->workers[i].pid) conns += bh__shm_g->workers[i].connections;
  bh__buf_printf(
      &b,
      "},\"generation\":%d,\"reloading\":%s,"
      "\"connections\":%lld,"
      "\"requestsTotal\":%llu,\"logLinesDropped\":%llu,"
      "\"workers\":[",
      bh__shm_g->generation,
      bh__ops && bh__ops->reloading && bh__ops->reloading() ? "true" : "false",
      (long long)conns, (unsigned long long)bh__shm_requests_total(),
      (unsigned long long)bh__shm_log_dropped(bh__log_dropped()));
  int first = 1;
  for (int i = 0; i < BH__SHM_WORKERS; i++) {
    const bh__shm_worker *w = &bh__shm_g->workers[i];
    if (w->pid == 0) continue;
    bh__buf_printf(&b,
                   "%s{\"pid\":%d,\"generation\":%d,\"ready\":%s,"
                   "\"draining\":%s,\"uptimeSeconds\":%llu}",
                   first ? "" : ",", w->pid, w->generation,
                   w->ready ? "true" : "false", w->draining ? "true" : "false",
                   (unsigned long long)(now > w->started_ms
                                            ? (now - w->started_ms) / 1000
                                            : 0));
    first = 0;
  }
  bh__buf_puts(&b, "],");
  bh__status_stores(&b, cfg);
  bh__buf_puts(&b, ",\"plugins\":[");
  for (size_t i = 0; i < cfg->nplugins; i++) {
    if (i) bh__buf_putc(&b, ',');
    bh__status_plugin(&b, &cfg->plugins[i], bh__shm_view(&cfg->plugins[i]));
  }
  bh__buf_puts(&b, "],\"upstreams\":[");
  first = 1;
  for (int i = 0; i < BH__SHM_UPSTREAMS; i++) {
    const bh__shm_upstream *u = &bh__shm_g->upstreams[i];
    if (u->name[0] == '\0') continue;
    const bh__breaker *br = &u->breaker;
    uint32_t calls, fail, slow;
    bh__breaker_stats(br, now, &calls, &fail, &slow);
    if (!first) bh__buf_putc(&b, ',');
    first = 0;
    bh__buf_puts(&b, "{\"name\":");
    bh__buf_json_str(&b, u->name);
    bh__buf_puts(&b, ",\"plugin\":");
    bh__buf_json_str(&b, u->plugin);
    bh__buf_printf(
        &b,
        ",\"breaker\":{\"state\":\"%s\",\"mode\":\"%s\","
        "\"calls\":%u,\"failureRate\":%u,\"slowRate\":%u,"
        "\"transitions\":%llu,\"secondsSinceTransition\":%llu},"
        "\"lastError\":",
        bh__breaker_state_name(br->state), bh__breaker_mode_name(br->mode),
        calls, fail, slow, (unsigned long long)br->transitions,
        (unsigned long long)(br->transition_ms && now > br->transition_ms
                                 ? (now - br->transition_ms) / 1000
                                 : 0));
    bh__buf_json_str(&b, u->last_error[0] ? u->last_error : NULL);
    if (u->last_error_ms)
      bh__buf_printf(&b, ",\"lastErrorAt\":%llu",
                     (unsigned long long)(u->last_error_ms / 1000));
    bh__buf_putc(&b, '}');
  }
  bh__buf_putc(&b, ']');
  bh__status_redis(&b, cfg);
  bh__shm_unlock();
  bh__buf_putc(&b, '}');
  bh__admin_json(req, 200, &b);
}

/* POST /admin/upstreams/{name}/breaker {"state": "..."}: ops overrides. */
static void bh__breaker_override(bh_req *req, const char *name) {
  static const char *const modes[] = {"closed",   "auto",         "forced_open",
                                      "disabled", "metrics_only", NULL};
  static const bh_field fields[] = {
      {"state", BH_FIELD_STRING, BH_FIELD_REQUIRED, 1, 32, modes}};
  static const bh_body_shape shape = {fields, 1, 0};
  bh__shm_upstream *u = NULL;
  if (bh__admin_json_post(req) != 0) return;
  bh__shm_lock();
  for (int i = 0; i < BH__SHM_UPSTREAMS && u == NULL; i++)
    if (strcmp(bh__shm_g->upstreams[i].name, name) == 0)
      u = &bh__shm_g->upstreams[i];
  bh__shm_unlock();
  if (u == NULL) {
    bh__respond_code(req, "admin.upstream_not_found");
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
  bh__shm_lock();
  bh__breaker_set_mode(&u->breaker, mode, bh__shm_now_ms());
  int st = u->breaker.state, md = u->breaker.mode;
  bh__shm_unlock();
  bh__logline l;
  bh__log_begin(&l, BH__WARN, "breaker_override");
  bh__log_str(&l, "upstream", u->name);
  bh__log_str(&l, "mode", bh__breaker_mode_name(md));
  bh__log_str(&l, "state", bh__breaker_state_name(st));
  bh__log_end(&l);
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "{\"upstream\":");
  bh__buf_json_str(&b, u->name);
  bh__buf_printf(&b, ",\"state\":\"%s\",\"mode\":\"%s\"}",
                 bh__breaker_state_name(st), bh__breaker_mode_name(md));
  bh__admin_json(req, 200, &b);
}

static void bh__admin_unauthorized(bh_req *req) {
  bh__buf_puts(&req->resp_headers, "WWW-Authenticate: Bearer\r\n");
  bh__respond_code(req, "admin.unauthorized");
}

/* Whether Accept asks for OpenMetrics text (as Prometheus sends it:
 * "application/openmetrics-text;version=1.0.0,text/plain;q=0.5,...") with
 * a q above 0; anything else gets the 0.0.4 text format. */
static int bh__wants_openmetrics(const char *accept) {
  static const char om[] = "application/openmetrics-text";
  for (const char *s = accept; s && *s;) {
    s += strspn(s, " \t,");
    size_t n = strcspn(s, ",");
    if (n >= sizeof(om) - 1 && strncasecmp(s, om, sizeof(om) - 1) == 0) {
      const char *q = NULL;
      for (const char *p = s; p < s + n; p++)
        if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=' &&
            (p == s || p[-1] == ';' || p[-1] == ' '))
          q = p + 2;
      if (q == NULL || strtod(q, NULL) > 0) return 1;
    }
    s += n;
  }
  return 0;
}

/* metrics_token (off by default) keeps scrapes open to the scraper only */
static void bh__metrics_endpoint(bh_req *req) {
  if (!bh__bearer_is(req, req->d->cfg->metrics_token)) {
    bh__admin_unauthorized(req);
    return;
  }
  bh__buf b;
  bh__buf_init(&b);
  int om = bh__wants_openmetrics(bh__req_header(req, "accept"));
  if (bh__metrics_text(req->d, &b, om) != 0 || bh__buf_failed(&b)) {
    bh__buf_free(&b);
    bh__respond_code(req, "generic.internal");
    return;
  }
  bh__respond(req, 200,
              om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                 : "text/plain; version=0.0.4; charset=utf-8",
              b.data, b.len, "Cache-Control: no-store\r\nVary: Accept\r\n");
  bh__buf_free(&b);
}

static void bh__admin_method(bh_req *req, const char *allow) {
  bh__buf_printf(&req->resp_headers, "Allow: %s\r\n", allow);
  bh__respond_code(req, "route.method_not_allowed");
}

/* GET /admin/errors: the catalogue workers published (the master loads no
 * plugin), else this process's own. */
static void bh__admin_errors(bh_req *req) {
  bh__buf b;
  bh__buf_init(&b);
  bh__shm_lock();
  if (bh__shm_g->catalogue_len)
    bh__buf_append(&b, bh__shm_g->catalogue, bh__shm_g->catalogue_len);
  bh__shm_unlock();
  if (b.len == 0) bh__catalogue_json(req->d, &b);
  bh__admin_json(req, 200, &b);
}

/* POST /admin/reload */
static void bh__admin_reload(bh_req *req) {
  if (strcmp(req->method, "POST") != 0) {
    bh__admin_method(req, "POST");
    return;
  }
  if (bh__admin_json_post(req) != 0) return;
  char err[512] = "";
  int rc = bh__ops ? bh__ops->reload(err, sizeof(err)) : -ENOTSUP;
  if (rc != 0) {
    /* one reload at a time: the caller retries once this one is done */
    bh__respond_problem(req,
                        rc == -ENOTSUP ? "admin.workers_required"
                        : rc == -EBUSY ? "admin.reload_in_progress"
                                       : "admin.reload_refused",
                        err[0] ? err : NULL, rc == -EBUSY ? 1 : -1, NULL, 0,
                        NULL, 0);
    return;
  }
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_printf(&b, "{\"status\":\"reloading\",\"generation\":%d}",
                 bh__shm_g->generation);
  bh__admin_json(req, 202, &b);
}

/* POST /admin/plugins/NAME/release */
static void bh__admin_release(bh_req *req, const char *name) {
  if (strcmp(req->method, "POST") != 0) {
    bh__admin_method(req, "POST");
    return;
  }
  if (bh__admin_json_post(req) != 0) return;
  char err[256] = "";
  int rc = bh__ops ? bh__ops->release(name, err, sizeof(err)) : -ENOTSUP;
  if (rc != 0) {
    bh__respond_problem(req,
                        rc == -ENOTSUP ? "admin.workers_required"
                                       : "admin.plugin_not_found",
                        NULL, -1, NULL, 0, NULL, 0);
    return;
  }
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "{\"plugin\":");
  bh__buf_json_str(&b, name);
  bh__buf_puts(&b, ",\"status\":\"released\"}");
  bh__admin_json(req, 200, &b);
}

static void bh__admin_healthz(bh_req *req, const char *name) {
  (void)name;
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "{\"status\":\"ok\"}");
  bh__admin_json(req, 200, &b);
}

static void bh__admin_readyz(bh_req *req, const char *name) {
  (void)name;
  bh__readyz(req);
}

static void bh__admin_metrics(bh_req *req, const char *name) {
  (void)name;
  bh__metrics_endpoint(req);
}

static void bh__admin_status(bh_req *req, const char *name) {
  (void)name;
  bh__status(req);
}

static void bh__admin_errors_ep(bh_req *req, const char *name) {
  (void)name;
  bh__admin_errors(req);
}

static void bh__admin_reload_ep(bh_req *req, const char *name) {
  (void)name;
  bh__admin_reload(req);
}

/* The admin API's routes, served through the core's router (GET also
 * answers HEAD; a known path with another method is 405 with Allow).
 * Everything under /admin/ needs the token, checked before the path is
 * matched, so its absence reveals nothing; probes and scrapes stay open. */
typedef struct bh__admin_route {
  const char *method, *pattern;
  void (*fn)(bh_req *req, const char *name); /* name: the {name} segment */
} bh__admin_route;

static const bh__admin_route bh__admin_routes[] = {
    {"GET", "/healthz", bh__admin_healthz},
    {"GET", "/readyz", bh__admin_readyz},
    {"GET", "/metrics", bh__admin_metrics},
    {"GET", "/admin/status", bh__admin_status},
    {"GET", "/admin/errors", bh__admin_errors_ep},
    {"POST", "/admin/reload", bh__admin_reload_ep},
    {"POST", "/admin/plugins/{name}/release", bh__admin_release},
    {"POST", "/admin/upstreams/{name}/breaker", bh__breaker_override},
};

static bh__router *bh__admin_router;

/* Built once per process, on the first admin request. */
static bh__router *bh__admin_router_get(void) {
  if (bh__admin_router) return bh__admin_router;
  bh__router *r = bh__router_new();
  if (r == NULL) return NULL;
  for (size_t i = 0; i < sizeof(bh__admin_routes) / sizeof(bh__admin_routes[0]);
       i++) {
    const bh__admin_route *rt = &bh__admin_routes[i];
    if (bh__router_add(r, rt->method, rt->pattern, (void *)rt, NULL) != 0) {
      bh__router_free(r);
      return NULL;
    }
  }
  return bh__admin_router = r;
}

void bh__admin_free(void) {
  bh__router_free(bh__admin_router);
  bh__admin_router = NULL;
}

/* A plugin or upstream name as the admin paths carry it: at most 63 bytes
 * (a longer one names nothing). */
static int bh__admin_name_ok(const char *path) {
  static const char *const prefixes[] = {"/admin/plugins/",
                                         "/admin/upstreams/"};
  for (size_t i = 0; i < 2; i++) {
    size_t pl = strlen(prefixes[i]);
    if (strncmp(path, prefixes[i], pl) == 0)
      return strcspn(path + pl, "/") < 64;
  }
  return 1;
}

static void bh__admin_dispatch(bh_req *req) {
  const char *path = req->path;
  if (req->bad_path) {
    bh__respond_code(req, "request.bad_request");
    return;
  }
  if (bh__admin_origin_check(req) != 0) return;
  if (strncmp(path, "/admin/", 7) == 0 && !bh__admin_authorized(req)) {
    bh__admin_unauthorized(req);
    return;
  }
  bh__router *r = bh__admin_router_get();
  if (r == NULL) {
    bh__respond_code(req, "generic.internal");
    return;
  }
  bh__match m;
  char allow[96];
  int found = bh__router_match(r, req->method, path, &m, allow, sizeof(allow));
  if (found == BH__ROUTE_NOT_FOUND || !bh__admin_name_ok(path)) {
    bh__respond_code(req, "route.not_found");
  } else if (found == BH__ROUTE_METHOD_NOT_ALLOWED) {
    bh__admin_method(req, allow);
  } else {
    const bh__admin_route *rt = m.route;
    char name[64] = "";
    if (m.nparams == 1 && m.params[0].len < sizeof(name)) {
      memcpy(name, path + m.params[0].off, m.params[0].len);
      name[m.params[0].len] = '\0';
    }
    rt->fn(req, name);
  }
}

/* Headers complete: the target, and the admin API's own body limit. */
static int bh__admin_head(bh_req *req) {
  bh__req_parse_target(req);
  req->body_limit = BH__ADMIN_BODY_LIMIT;
  return 0;
}

static void bh__admin_request(bh_req *req) {
  bh__req_ids(req);
  bh__admin_dispatch(req);
}

/* No admin endpoint arms a deadline; should one ever, it is answered like
 * any other (generic.timeout). */
const bh__http_hooks bh__admin_hooks = {
    .on_head = bh__admin_head,
    .on_request = bh__admin_request,
    .on_deadline = bh__dispatch_deadline,
};
