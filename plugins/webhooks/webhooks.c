/*
 * webhooks: the endpoint registry and a durable, at-least-once webhook
 * dispatcher (Standard Webhooks signatures), in its own compartment.
 *
 * Ops mount it at /v1/webhooks in [plugin.webhooks]; every key it reads is
 * documented in etc/bulkhead.ini. Its state lives in its own SQLite file
 * (default <data_dir>/plugins/webhooks/webhooks.db), shared by every worker
 * process, so a delivery survives a crash of the process sending it and
 * two processes never send the same attempt at once (wh_dispatch.c).
 *
 * Nothing here blocks the loop: SQLite runs on the plugin's store thread,
 * HTTP deliveries on its dispatcher thread; results come back through the
 * core's wakeup (ABI 1.1). See wh.h for the map of the files.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wh.h"

#define WH_LOG_QUEUE_MAX 256

static const char DEFAULT_SCHEDULE[] = "0, 5s, 5m, 30m, 2h, 5h, 10h, 10h";
static const char DEFAULT_PORTS[] = "80, 443";

/* ---- config ------------------------------------------------------------- */

static int bad_key(bh_ctx *ctx, const char *key, const char *v,
                   const char *want) {
  bh_log(ctx, BH_LOG_ERROR, "[plugin.webhooks] %s = '%.64s': %s", key, v, want);
  return -EINVAL;
}

static int cfg_int(bh_ctx *ctx, const char *key, int64_t def, int64_t lo,
                   int64_t hi, int64_t *out) {
  const char *v = bh_config(ctx, key);
  *out = def;
  if (v == NULL) return 0;
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end != '\0' || n < lo || n > hi) {
    char want[96];
    snprintf(want, sizeof(want), "expected an integer in %lld..%lld",
             (long long)lo, (long long)hi);
    return bad_key(ctx, key, v, want);
  }
  *out = n;
  return 0;
}

static int cfg_bool(bh_ctx *ctx, const char *key, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  const char *v = bh_config(ctx, key);
  *out = 0;
  if (v == NULL) return 0;
  for (size_t i = 0; i < BH_COUNT(yes); i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
    if (strcasecmp(v, no[i]) == 0) return 0;
  }
  return bad_key(ctx, key, v, "expected true or false");
}

/* "0, 5s, 5m, 30m, 2h": waits before each attempt; a bare number is
 * seconds; units ms, s, m, h, d; at most 7 days each. */
static int parse_schedule(bh_ctx *ctx, wh_config *cfg) {
  const char *v = bh_config(ctx, "retry_schedule");
  const char *p = v ? v : DEFAULT_SCHEDULE;
  cfg->nschedule = 0;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    if (*p == '\0') break;
    char *end;
    errno = 0;
    long long n = strtoll(p, &end, 10);
    if (errno || end == p || n < 0 || cfg->nschedule == WH_MAX_SCHEDULE)
      return bad_key(ctx, "retry_schedule", v,
                     "expected 1 to 32 durations such as 0, 500ms, 5s, 5m, 2h");
    int64_t mult = 1000;
    if (strncmp(end, "ms", 2) == 0)
      mult = 1, end += 2;
    else if (*end == 's')
      end++;
    else if (*end == 'm')
      mult = 60000, end++;
    else if (*end == 'h')
      mult = 3600000, end++;
    else if (*end == 'd')
      mult = 86400000, end++;
    if ((*end && *end != ',' && *end != ' ' && *end != '\t') ||
        n > 604800000LL / mult)
      return bad_key(ctx, "retry_schedule", v,
                     "expected durations such as 0, 500ms, 5s, 5m, 2h (at "
                     "most 7d each)");
    cfg->schedule_ms[cfg->nschedule++] = n * mult;
    p = end;
  }
  if (cfg->nschedule == 0)
    return bad_key(ctx, "retry_schedule", v ? v : "", "expected durations");
  return 0;
}

static int load_config(bh_ctx *ctx, wh_config *cfg) {
  int64_t n;
  int rc = 0;
  const char *db = bh_config(ctx, "database");
  const char *dir = bh_data_dir(ctx);
  if (db == NULL) db = "webhooks.db";
  int len =
      db[0] == '/'
          ? snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", db)
          : snprintf(cfg->db_path, sizeof(cfg->db_path), "%s/%s", dir, db);
  if (len <= 0 || (size_t)len >= sizeof(cfg->db_path) || db[0] == '\0')
    return bad_key(ctx, "database", db, "expected a file path");
  rc |= parse_schedule(ctx, cfg);
  rc |= cfg_int(ctx, "retry_jitter_percent", 10, 0, 50, &n);
  cfg->jitter_pct = (int)n;
  rc |= cfg_int(ctx, "retry_after_max_s", 86400, 0, 604800, &n);
  cfg->retry_after_max_ms = n * 1000;
  rc |= cfg_int(ctx, "delivery_timeout_ms", 15000, 100, 600000, &n);
  cfg->timeout_ms = n;
  rc |= cfg_int(ctx, "connect_timeout_ms", 5000, 100, 600000, &n);
  cfg->connect_timeout_ms = n;
  rc |= cfg_int(ctx, "lease_ms", cfg->timeout_ms + 15000, 1100, 86400000, &n);
  cfg->lease_ms = n;
  if (rc == 0 && cfg->lease_ms < cfg->timeout_ms + 1000)
    rc = bad_key(ctx, "lease_ms", bh_config(ctx, "lease_ms"),
                 "must exceed delivery_timeout_ms by at least 1000, or two "
                 "processes could send one attempt at once");
  rc |= cfg_int(ctx, "poll_ms", 1000, 10, 60000, &n);
  cfg->poll_ms = n;
  rc |= cfg_int(ctx, "max_in_flight", 64, 1, 10000, &n);
  cfg->max_in_flight = (int)n;
  rc |= cfg_int(ctx, "max_in_flight_per_endpoint", 8, 1, 10000, &n);
  cfg->max_per_endpoint = (int)n;
  rc |= cfg_int(ctx, "breaker_failures", 5, 1, 1000, &n);
  cfg->breaker_failures = (int)n;
  rc |= cfg_int(ctx, "breaker_open_ms", 60000, 100, 86400000, &n);
  cfg->breaker_open_ms = n;
  rc |= cfg_int(ctx, "rotation_grace_ms", 86400000, 0, 2592000000LL, &n);
  cfg->rotation_grace_ms = n;
  rc |= cfg_int(ctx, "busy_timeout_ms", 5000, 0, 60000, &n);
  cfg->busy_timeout_ms = n;
  rc |= cfg_int(ctx, "max_payload_bytes", 262144, 1024, 16777216, &n);
  cfg->max_payload = (size_t)n;
  rc |= cfg_bool(ctx, "allow_loopback", &cfg->allow_loopback);
  rc |= cfg_bool(ctx, "allow_private", &cfg->allow_private);
  rc |= cfg_bool(ctx, "allow_link_local", &cfg->allow_link_local);
  const char *ports = bh_config(ctx, "allowed_ports");
  if (wh_ports_parse(cfg, ports ? ports : DEFAULT_PORTS) < 0)
    rc |= bad_key(ctx, "allowed_ports", ports,
                  "expected any, or ports and ranges in 1..65535 such as "
                  "80, 443, 8000-8999");
  rc |= cfg_int(ctx, "stream_poll_ms", 500, 10, 60000, &n);
  cfg->stream_poll_ms = n;
  rc |= cfg_int(ctx, "stream_heartbeat_ms", 15000, 50, 3600000, &n);
  cfg->stream_heartbeat_ms = n;
  rc |= cfg_int(ctx, "stream_retry_ms", 3000, 0, 3600000, &n);
  cfg->stream_retry_ms = n;
  rc |= cfg_int(ctx, "stream_max_per_principal", 4, 1, 10000, &n);
  cfg->stream_max_per_principal = (int)n;
  rc |= cfg_int(ctx, "stream_max_total", 256, 1, 100000, &n);
  cfg->stream_max_total = (int)n;
  rc |= cfg_int(ctx, "stream_max_buffer_bytes", 262144, 1024, 67108864, &n);
  cfg->stream_max_buffer = (long)n;
  rc |= cfg_int(ctx, "stream_retention_s", 86400, 60, 2592000, &n);
  cfg->stream_retention_ms = n * 1000;
  const char *sync = bh_config(ctx, "synchronous");
  cfg->sync_full = 1;
  if (sync && strcasecmp(sync, "normal") == 0)
    cfg->sync_full = 0;
  else if (sync && strcasecmp(sync, "full") != 0)
    rc |= bad_key(ctx, "synchronous", sync, "expected full or normal");
  return rc ? -EINVAL : 0;
}

/* ---- logs from the plugin's threads ------------------------------------- */

void wh_log_post(wh_plugin *wp, int level, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = strlen(msg);
  wh_logline *l = malloc(sizeof(*l) + len + 1);
  if (l == NULL) return;
  l->next = NULL;
  l->level = level;
  memcpy(l->msg, msg, len + 1);
  pthread_mutex_lock(&wp->log_mu);
  if (wp->nlogs >= WH_LOG_QUEUE_MAX) {
    free(l);
    l = NULL;
  } else {
    if (wp->logs_tail)
      wp->logs_tail->next = l;
    else
      wp->logs = l;
    wp->logs_tail = l;
    wp->nlogs++;
  }
  pthread_mutex_unlock(&wp->log_mu);
  if (l && wp->wakeup) bh_wakeup_send(wp->wakeup);
}

static void logs_flush(wh_plugin *wp) {
  pthread_mutex_lock(&wp->log_mu);
  wh_logline *l = wp->logs;
  wp->logs = wp->logs_tail = NULL;
  wp->nlogs = 0;
  pthread_mutex_unlock(&wp->log_mu);
  while (l) {
    wh_logline *next = l->next;
    bh_log(wp->ctx, l->level, "%s", l->msg);
    free(l);
    l = next;
  }
}

void wh_set_down(wh_plugin *wp, volatile int *flag, int down, const char *who) {
  if (wh_flag_swap(flag, down) == down) return;
  if (down)
    wh_log_post(wp, BH_LOG_ERROR,
                "%s: the webhooks database is unavailable; API answers "
                "webhooks.unavailable until it is back",
                who);
  else
    wh_log_post(wp, BH_LOG_INFO, "%s: the webhooks database is available", who);
}

/* The loop side of the wakeup: stream ticks and queued log lines (finished
 * store jobs come back through the store's job queue). */
static void on_wakeup(bh_ctx *ctx, void *data) {
  (void)ctx;
  wh_plugin *wp = data;
  wh_streams_tick(wp);
  logs_flush(wp);
}

/* ---- routes and codes --------------------------------------------------- */

static void status_get(bh_req *req, void *data) {
  wh_plugin *wp = data;
  int down = wh_flag_get(&wp->store_down) || wh_flag_get(&wp->disp_down);
  char body[160];
  snprintf(body, sizeof(body),
           "{\"plugin\":\"webhooks\",\"version\":\"" WH_VERSION
           "\",\"status\":\"%s\"}",
           down ? "unavailable" : "ok");
  bh_respond_json(req, 200, body);
}

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "webhooks.unavailable",
     .http_status = 503,
     .detail = "Webhooks are temporarily unavailable.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "webhooks.endpoint_not_found",
     .http_status = 404,
     .detail = "No webhook endpoint with this id exists."},
    {.on = BH_ON_CODE,
     .code = "webhooks.invalid_url",
     .http_status = 400,
     .detail = "The webhook endpoint URL is not valid."},
    {.on = BH_ON_CODE,
     .code = "webhooks.delivery_not_found",
     .http_status = 404,
     .detail = "No webhook delivery with this id exists."},
    {.on = BH_ON_CODE,
     .code = "webhooks.invalid_event_type",
     .http_status = 400,
     .detail = "An event type must be 1 to 128 letters, digits and . _ - : "
               "characters (an endpoint may also subscribe to \"*\")."},
    {.on = BH_ON_CODE,
     .code = "webhooks.too_many_streams",
     .http_status = 429,
     .detail = "Too many delivery streams are open. Try again later.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "webhooks.invalid_query",
     .http_status = 400,
     .detail = "A query parameter is not valid."},
};

#define AUTH BH_ROUTE_AUTH_REQUIRED

static int add_routes(bh_ctx *ctx, wh_plugin *wp) {
  const bh_route routes[] = {
      {sizeof(bh_route), "POST", "/v1/webhooks/endpoints", wh_endpoints_post,
       wp, AUTH, 32768, 0, NULL},
      {sizeof(bh_route), "GET", "/v1/webhooks/endpoints", wh_endpoints_list, wp,
       AUTH, 0, 0, NULL},
      {sizeof(bh_route), "GET", "/v1/webhooks/endpoints/{id}", wh_endpoint_get,
       wp, AUTH, 0, 0, NULL},
      {sizeof(bh_route), "PATCH", "/v1/webhooks/endpoints/{id}",
       wh_endpoint_patch, wp, AUTH, 32768, 0, NULL},
      {sizeof(bh_route), "DELETE", "/v1/webhooks/endpoints/{id}",
       wh_endpoint_delete, wp, AUTH, 0, 0, NULL},
      {sizeof(bh_route), "POST", "/v1/webhooks/endpoints/{id}/rotate-secret",
       wh_endpoint_rotate, wp, AUTH, 1024, 0, NULL},
      {sizeof(bh_route), "POST", "/v1/webhooks/events", wh_events_post, wp,
       AUTH, wp->cfg.max_payload, 0, NULL},
      {sizeof(bh_route), "GET", "/v1/webhooks/deliveries", wh_deliveries_list,
       wp, AUTH, 0, 0, NULL},
      /* before {id}: a literal segment is the more specific */
      {sizeof(bh_route), "GET", "/v1/webhooks/deliveries/stream",
       wh_deliveries_stream, wp, AUTH, 0, 0, NULL},
      {sizeof(bh_route), "GET", "/v1/webhooks/deliveries/{id}", wh_delivery_get,
       wp, AUTH, 0, 0, NULL},
      {sizeof(bh_route), "POST", "/v1/webhooks/deliveries/{id}/retry",
       wh_delivery_retry, wp, AUTH, 1024, 0, NULL},
      /* what the compartment knows about itself, no secrets: open */
      {sizeof(bh_route), "GET", "/v1/webhooks/status", status_get, wp, 0, 0, 0,
       NULL},
  };
  /* built for 1.3: a core that loads it has the streaming slots (1.2) */
  int rc = bh_routes_add(ctx, routes, BH_COUNT(routes));
  return rc < 0 ? rc : (int)BH_COUNT(routes);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int webhooks_init(bh_ctx *ctx, const bh_services *svc) {
  if (!BH_SVC_HAS(svc, wakeup_new) || !BH_SVC_HAS(svc, problem_field) ||
      !BH_SVC_HAS(svc, jobq_new)) {
    bh_log(ctx, BH_LOG_ERROR,
           "this core lacks the ABI 1.3 services the "
           "webhooks plugin needs");
    return -ENOTSUP;
  }
  if (sodium_init() < 0) return -EIO;
  wh_plugin *wp = calloc(1, sizeof(*wp));
  if (wp == NULL) return -ENOMEM;
  wp->ctx = ctx;
  pthread_mutex_init(&wp->log_mu, NULL);
  pthread_mutex_init(&wp->write_mu, NULL);
  bh_set_data(ctx, wp); /* fini frees it, whatever happens next */
  int rc = load_config(ctx, &wp->cfg);
  if (rc < 0) return rc;
  if ((rc = bh_error_map(ctx, errors, BH_COUNT(errors))) < 0) return rc;
  if ((rc = add_routes(ctx, wp)) < 0) return rc;
  bh_store_info info = {.size = sizeof(info)};
  wp->postgres = BH_SVC_HAS(svc, store_info) &&
                 BH_SVC_HAS(svc, store_connect) &&
                 bh_store_info_get(ctx, &info) == 0 &&
                 strcmp(info.backend, "postgres") == 0;
  /* on postgres every instance shares the outbox: an event accepted here
   * is delivered by whichever instance claims it first */
  bh_log(ctx, BH_LOG_INFO,
         "webhooks %s ready: %d routes, %d attempts per delivery, "
         "store %s",
         WH_VERSION, rc, wp->cfg.nschedule,
         wp->postgres ? "postgres (schema bh_webhooks)" : wp->cfg.db_path);
  return 0;
}

/* Threads start here, in the worker that serves (never in the master,
 * never for `bulkhead -t`), after any fork. */
static int webhooks_start(bh_ctx *ctx) {
  wh_plugin *wp = bh_data(ctx);
  int rc = bh_wakeup_new(ctx, on_wakeup, wp, &wp->wakeup);
  if (rc < 0) return rc;
  /* the dispatcher first: the store thread kicks it */
  if ((rc = wh_dispatch_start(&wp->disp, wp)) < 0) return rc;
  if ((rc = wh_store_start(&wp->store, wp)) < 0) return rc;
  return wh_streams_start(wp);
}

static void webhooks_stop(bh_ctx *ctx) {
  wh_plugin *wp = bh_data(ctx);
  /* deliveries stop at once; API requests still in flight are answered */
  if (wp && wp->disp) wh_dispatch_signal_stop(wp->disp);
  /* live streams end now, cleanly, so the drain does not wait for them */
  if (wp) wh_streams_stop(wp);
}

static void webhooks_fini(bh_ctx *ctx) {
  wh_plugin *wp = bh_data(ctx);
  if (wp == NULL) return;
  /* each step copes with what start() did not get to */
  wh_streams_stop(wp); /* before the last jobs come back */
  /* before the dispatcher: it may still kick it; it answers requests
   * still parked on their jobs */
  wh_store_stop(&wp->store);
  wh_dispatch_stop(wp->disp);
  wp->disp = NULL;
  wh_streams_free(wp);
  logs_flush(wp);
  if (wp->wakeup) bh_wakeup_close(wp->wakeup);
  pthread_mutex_destroy(&wp->log_mu);
  pthread_mutex_destroy(&wp->write_mu);
  free(wp);
  bh_set_data(ctx, NULL);
}

static int webhooks_health(bh_ctx *ctx, const char **why) {
  wh_plugin *wp = bh_data(ctx);
  if (wp && (wh_flag_get(&wp->store_down) || wh_flag_get(&wp->disp_down))) {
    *why = "the webhooks database is unavailable";
    return -EIO;
  }
  return 0;
}

static const bh_plugin_desc webhooks_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "webhooks",
    .version = WH_VERSION,
    .init = webhooks_init,
    .start = webhooks_start,
    .stop = webhooks_stop,
    .fini = webhooks_fini,
    .health = webhooks_health,
    .store_schema = &wh_pg_schema,
};

BH_PLUGIN_ENTRY(webhooks_desc)
