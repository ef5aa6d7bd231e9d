/*
 * What /metrics shows: request, upstream, retry, breaker and rate-limit
 * series. Label values come only from what the daemon declared (plugin,
 * route pattern, upstream, code, policy), never from client input.
 */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"

int bh__telemetry_init(bh__daemon *d) {
  bh__metrics *m = bh__metrics_new();
  if (m == NULL) return -ENOMEM;
  d->metrics = m;
  bh__metrics_family(m, "bulkhead_requests_total", "counter",
                     "Requests answered, by plugin, route, status and code.",
                     NULL, 0);
  bh__metrics_family(m, "bulkhead_request_duration_seconds", "histogram",
                     "Time from the first request byte to the answer.", NULL,
                     0);
  bh__metrics_family(m, "bulkhead_upstream_calls_total", "counter",
                     "Upstream calls by final outcome.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_attempts_total", "counter",
                     "Upstream attempts, retries included.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_retries_total", "counter",
                     "Upstream retries scheduled.", NULL, 0);
  bh__metrics_family(m, "bulkhead_upstream_call_duration_seconds", "histogram",
                     "Upstream call time, all attempts and waits.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_state", "gauge",
                     "1 for the breaker's current state.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_transitions_total", "counter",
                     "Breaker state changes.", NULL, 0);
  bh__metrics_family(m, "bulkhead_breaker_failure_rate", "gauge",
                     "Failure percentage in the breaker's window.", NULL, 0);
  bh__metrics_family(m, "bulkhead_rate_limited_total", "counter",
                     "Requests refused by a rate-limit policy.", NULL, 0);
  bh__metrics_family(m, "bulkhead_plugin_up", "gauge",
                     "1 while the plugin serves its routes.", NULL, 0);
  bh__metrics_family(m, "bulkhead_connections", "gauge",
                     "Open client connections.", NULL, 0);
  bh__metrics_family(m, "bulkhead_log_lines_dropped_total", "counter",
                     "Log lines dropped because the sink failed or lagged.",
                     NULL, 0);
  return 0;
}

static void bh__label(bh__buf *b, const char *key, const char *value) {
  if (b->len) bh__buf_putc(b, ',');
  bh__buf_printf(b, "%s=\"", key);
  bh__metrics_label_escape(b, value ? value : "");
  bh__buf_putc(b, '"');
}

void bh__metrics_request(bh_req *req) {
  bh__daemon *d = req->d;
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  char status[8];
  snprintf(status, sizeof(status), "%d", req->status);
  bh__label(&l, "plugin", req->plugin ? req->plugin->name : "");
  bh__label(&l, "route", req->route ? req->route->pattern : "");
  bh__label(&l, "status", status);
  bh__label(&l, "code", req->code ? req->code : "");
  if (!bh__buf_failed(&l)) {
    bh__metrics_inc(d->metrics, "bulkhead_requests_total", l.data, 1);
    bh__buf_reset(&l);
    bh__label(&l, "plugin", req->plugin ? req->plugin->name : "");
    bh__metrics_observe(d->metrics, "bulkhead_request_duration_seconds",
                        l.data ? l.data : "",
                        (double)(bh__now_ns() - req->start_ns) / 1e9);
  }
  bh__buf_free(&l);
}

static const char *bh__outcome_label(int outcome, uint32_t transport,
                                     int status, char *buf, size_t len) {
  switch (outcome) {
  case BH_OUTCOME_RESPONSE:
    snprintf(buf, len, "http_%dxx", status / 100);
    return buf;
  case BH_OUTCOME_TRANSPORT:
    switch (transport) {
    case BH_TRANSPORT_CONNECT: return "connect_error";
    case BH_TRANSPORT_DNS: return "dns_error";
    case BH_TRANSPORT_TLS: return "tls_error";
    case BH_TRANSPORT_TIMEOUT: return "timeout";
    default: return "reset";
    }
  case BH_OUTCOME_BREAKER_OPEN: return "breaker_open";
  case BH_OUTCOME_RATE_LIMITED: return "rate_limited";
  default: return "canceled";
  }
}

void bh__metrics_upstream(bh__daemon *d, struct bh_upstream *u, int outcome,
                          uint32_t transport, int status, uint32_t attempts,
                          uint64_t duration_ms) {
  if (d->metrics == NULL) return;
  char tmp[24];
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "upstream", u->name);
  bh__label(&l, "outcome",
            bh__outcome_label(outcome, transport, status, tmp, sizeof(tmp)));
  bh__metrics_inc(d->metrics, "bulkhead_upstream_calls_total",
                  l.data ? l.data : "", 1);
  bh__buf_reset(&l);
  bh__label(&l, "upstream", u->name);
  if (attempts)
    bh__metrics_inc(d->metrics, "bulkhead_upstream_attempts_total",
                    l.data ? l.data : "", attempts);
  bh__metrics_observe(d->metrics, "bulkhead_upstream_call_duration_seconds",
                      l.data ? l.data : "", (double)duration_ms / 1000.0);
  bh__buf_free(&l);
}

void bh__metrics_retry(bh__daemon *d, struct bh_upstream *u) {
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "upstream", u->name);
  bh__metrics_inc(d->metrics, "bulkhead_upstream_retries_total",
                  l.data ? l.data : "", 1);
  bh__buf_free(&l);
}

void bh__metrics_rate_limited(bh__daemon *d, const char *policy) {
  if (d->metrics == NULL) return;
  bh__buf l;
  bh__buf_init(&l);
  bh__label(&l, "policy", policy);
  bh__metrics_inc(d->metrics, "bulkhead_rate_limited_total",
                  l.data ? l.data : "", 1);
  bh__buf_free(&l);
}

int bh__metrics_text(bh__daemon *d, bh__buf *out) {
  bh__metrics *m = d->metrics;
  if (m == NULL) return -EINVAL;
  uint64_t now = uv_now(d->loop);
  bh__buf l;
  bh__buf_init(&l);
  /* gauges are sampled now rather than maintained on every change */
  for (struct bh_upstream *u = d->upstreams; u; u = u->next) {
    static const int states[] = {BH__BREAKER_CLOSED, BH__BREAKER_OPEN,
                                 BH__BREAKER_HALF_OPEN};
    for (size_t i = 0; i < 3; i++) {
      bh__buf_reset(&l);
      bh__label(&l, "upstream", u->name);
      bh__label(&l, "state", bh__breaker_state_name(states[i]));
      bh__metrics_set(m, "bulkhead_breaker_state", l.data ? l.data : "",
                      u->breaker->state == states[i] ? 1 : 0);
    }
    bh__buf_reset(&l);
    bh__label(&l, "upstream", u->name);
    bh__metrics_set(m, "bulkhead_breaker_transitions_total",
                    l.data ? l.data : "", (double)u->breaker->transitions);
    uint32_t calls, fail, slow;
    bh__breaker_stats(u->breaker, now, &calls, &fail, &slow);
    bh__metrics_set(m, "bulkhead_breaker_failure_rate", l.data ? l.data : "",
                    fail);
  }
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__buf_reset(&l);
    bh__label(&l, "plugin", d->plugins[i].name);
    bh__metrics_set(m, "bulkhead_plugin_up", l.data ? l.data : "",
                    d->plugins[i].state == BH__PLUGIN_LOADED);
  }
  bh__metrics_set(m, "bulkhead_connections", "", (double)d->nconns);
  bh__metrics_set(m, "bulkhead_log_lines_dropped_total", "",
                  (double)bh__log_dropped());
  bh__buf_free(&l);
  return bh__metrics_render(m, out);
}
