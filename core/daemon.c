/*
 * Daemon lifecycle on one loop: plugins, listeners, signals, drain.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"

#define BH__DRAIN_TIMEOUT_MS 10000

int bh__daemon_init(bh__daemon *d, bh__config *cfg, uv_loop_t *loop) {
  memset(d, 0, sizeof(*d));
  d->cfg = cfg;
  d->loop = loop;
  d->svc = bh__services();
  bh__http_settings_init(&d->parser_settings);
  d->router = bh__router_new();
  if (d->router == NULL) return -ENOMEM;
  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    int rc = -errno;
    bh__logf(BH__ERROR, "data_dir_failed", "cannot create %s: %s",
             cfg->data_dir, strerror(errno));
    return rc;
  }
  int rc = bh__telemetry_init(d);
  if (rc == 0) rc = bh__client_init(d);
  if (rc) return rc;
  bh__plugins_load(d);
  return 0;
}

static void bh__listener_closed(uv_handle_t *h) { (void)h; }

static void bh__listeners_close(bh__daemon *d) {
  if (d->api.open) {
    d->api.open = 0;
    uv_close((uv_handle_t *)&d->api.tcp, bh__listener_closed);
  }
  if (d->admin.open) {
    d->admin.open = 0;
    uv_close((uv_handle_t *)&d->admin.tcp, bh__listener_closed);
  }
}

static void bh__drain_tick(uv_timer_t *t) {
  bh__daemon *d = t->data;
  bh__conn_close_idle(d);
  uint64_t waited = uv_now(d->loop) - d->drain_started_ms;
  if (d->conns == NULL || waited >= BH__DRAIN_TIMEOUT_MS) {
    if (d->conns)
      bh__logf(BH__WARN, "drain_timeout",
               "closing %zu connections still busy after %d ms", d->nconns,
               BH__DRAIN_TIMEOUT_MS);
    bh__conn_close_all(d);
    bh__client_close(d);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
  }
}

/* Stop accepting, let in-flight requests finish, then stop the loop. A
 * second signal skips the wait. */
static void bh__on_signal(uv_signal_t *s, int signum) {
  bh__daemon *d = s->data;
  if (d->stopping) {
    bh__logf(BH__WARN, "shutdown_now", "second signal %d: exiting", signum);
    bh__conn_close_all(d);
    d->drain_started_ms = 0;
    return;
  }
  d->stopping = 1;
  bh__logf(BH__INFO, "shutdown", "signal %d: draining", signum);
  bh__listeners_close(d);
  bh__plugins_stop(d);
  d->drain_started_ms = uv_now(d->loop);
  uv_timer_init(d->loop, &d->drain_timer);
  d->drain_timer.data = d;
  uv_timer_start(&d->drain_timer, bh__drain_tick, 0, 50);
}

int bh__daemon_listen(bh__daemon *d) {
  int rc = bh__listen(d, &d->api, BH__LISTENER_API, d->cfg->listen);
  if (rc) {
    bh__logf(BH__ERROR, "listen_failed", "cannot listen on %s: %s",
             d->cfg->listen, uv_strerror(rc));
    return rc;
  }
  rc = bh__listen(d, &d->admin, BH__LISTENER_ADMIN, d->cfg->admin_listen);
  if (rc) {
    bh__logf(BH__ERROR, "listen_failed", "cannot listen on %s: %s",
             d->cfg->admin_listen, uv_strerror(rc));
    return rc;
  }
  const bh__listener *ls[2] = {&d->api, &d->admin};
  for (int i = 0; i < 2; i++) {
    bh__logline l;
    bh__log_begin(&l, BH__INFO, "listening");
    bh__log_str(&l, "listener", i == 0 ? "api" : "admin");
    bh__log_str(&l, "address", ls[i]->address);
    bh__log_end(&l);
  }
  return 0;
}

int bh__daemon_run(bh__daemon *d) {
  d->started_ms = uv_now(d->loop);
  uv_signal_init(d->loop, &d->sig_term);
  uv_signal_init(d->loop, &d->sig_int);
  d->sig_term.data = d->sig_int.data = d;
  uv_signal_start(&d->sig_term, bh__on_signal, SIGTERM);
  uv_signal_start(&d->sig_int, bh__on_signal, SIGINT);
  bh__plugins_start(d);
  bh__logf(BH__INFO, "started", "serving on %s, admin on %s", d->api.address,
           d->admin.address);
  return uv_run(d->loop, UV_RUN_DEFAULT);
}

void bh__daemon_free(bh__daemon *d) {
  bh__client_close(d);
  bh__plugins_unload(d);
  bh__upstreams_free(d);
  bh__limits_free(d);
  bh__metrics_free(d->metrics);
  d->metrics = NULL;
  bh__router_free(d->router);
  d->router = NULL;
}
