/*
 * Daemon lifecycle on one loop, in each of its roles: a single process
 * (workers = 0), the master (admin listener, supervision; see master.c), or
 * a worker (the API listener and the plugins).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/log.h"
#include "base/reqid.h"
#include "gateway/composite.h"
#include "gateway/dispatch.h"
#include "host/host.h"
#include "http/http.h"
#include "http/router.h"
#include "identity/auth.h"
#include "obs/metrics.h"
#include "obs/telemetry.h"
#include "proc/admin.h"
#include "proc/daemon.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/redis.h"
#include "upstream/upstream.h"

#define BH__HEARTBEAT_MS 100
#define BH__HEALTH_EVERY 10 /* heartbeats between health() calls */
/* While draining, an idle keep-alive connection is closed only after this
 * long without a request (at most half the drain timeout): a client about to
 * send gets its answer (with Connection: close) instead of a closed
 * connection. Closing an idle connection always races with a client that
 * sends at that instant; the grace makes that need a client idle this long
 * and then sending within the same millisecond. */
#define BH__DRAIN_IDLE_GRACE_MS 1000

int bh__workers_count(const bh__config *cfg) {
  if (cfg->workers >= 0) return cfg->workers;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

int bh__daemon_init(bh__daemon *d, bh__config *cfg, uv_loop_t *loop, int role,
                    int api_fd) {
  memset(d, 0, sizeof(*d));
  d->cfg = cfg;
  d->loop = loop;
  d->role = role;
  d->api_fd = api_fd;
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
  if (rc) return rc;
  if (role == BH__ROLE_MASTER) return 0; /* no plugin code in the master */
  if ((rc = bh__client_init(d)) != 0) return rc;
  bh__auth_start(d); /* keys and the identity store's thread */
  bh__plugins_load(d);
  bh__plugins_publish(d);
  /* once the plugins registered theirs (under their own mounts) */
  if ((rc = bh__composites_build(d)) != 0) return rc;
  return 0;
}

/* The master's first API socket: bound and listening with SO_REUSEPORT,
 * never accepted on by the master itself; master.c opens one more per
 * worker at the same address and each worker accepts from its own. */
static int bh__bind_fd(bh__daemon *d) {
  int fd = bh__listen_reuseport_fd(d->cfg->listen, d->api.address,
                                   sizeof(d->api.address));
  if (fd < 0) return fd;
  d->api_fd = fd;
  return 0;
}

static int bh__listen_inherited(bh__daemon *d) {
  bh__listener *l = &d->api;
  l->d = d;
  l->kind = BH__LISTENER_API;
  l->hooks = &bh__dispatch_hooks;
  int rc = uv_tcp_init(d->loop, &l->tcp);
  if (rc) return rc;
  l->tcp.data = l;
  l->open = 1;
  if ((rc = uv_tcp_open(&l->tcp, d->api_fd)) != 0) return rc;
  return bh__listen_start(l);
}

int bh__daemon_listen(bh__daemon *d) {
  int rc = 0;
  const char *what = d->cfg->listen;
  if (d->role == BH__ROLE_WORKER)
    rc = bh__listen_inherited(d);
  else if (d->role == BH__ROLE_MASTER)
    rc = bh__bind_fd(d);
  else
    rc = bh__listen(d, &d->api, BH__LISTENER_API, d->cfg->listen,
                    &bh__dispatch_hooks);
  if (rc == 0 && d->role != BH__ROLE_WORKER) {
    what = d->cfg->admin_listen;
    rc = bh__listen(d, &d->admin, BH__LISTENER_ADMIN, d->cfg->admin_listen,
                    &bh__admin_hooks);
  }
  if (rc) {
    bh__logf(BH__ERROR, "listen_failed", "cannot listen on %s: %s", what,
             uv_strerror(rc));
    return rc;
  }
  /* the master announces its listeners once its workers serve */
  if (d->role == BH__ROLE_SINGLE) bh__daemon_announce(d);
  return 0;
}

void bh__daemon_announce(bh__daemon *d) {
  const bh__listener *ls[2] = {&d->api, &d->admin};
  for (int i = 0; i < 2; i++) {
    bh__logline l;
    bh__log_begin(&l, BH__INFO, "listening");
    bh__log_str(&l, "listener", i == 0 ? "api" : "admin");
    bh__log_str(&l, "address", ls[i]->address);
    bh__log_end(&l);
  }
}

static void bh__listener_closed(uv_handle_t *h) {
  (void)h;
}

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
  uint64_t now = uv_now(d->loop);
  uint64_t grace = d->cfg->drain_timeout_ms / 2;
  if (grace > BH__DRAIN_IDLE_GRACE_MS) grace = BH__DRAIN_IDLE_GRACE_MS;
  bh__conn_close_idle_since(d, now, grace);
  uint64_t waited = now - d->drain_started_ms;
  if (d->conns == NULL || waited >= d->cfg->drain_timeout_ms) {
    if (d->conns)
      bh__logf(BH__WARN, "drain_timeout",
               "closing %zu connections still busy after %u ms", d->nconns,
               d->cfg->drain_timeout_ms);
    bh__conn_close_all(d);
    bh__client_close(d);
    bh__redis_stop(d);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    if (d->role == BH__ROLE_SINGLE) uv_close((uv_handle_t *)&d->sig_int, NULL);
    if (d->role == BH__ROLE_WORKER) {
      uv_timer_stop(&d->heartbeat);
      uv_close((uv_handle_t *)&d->heartbeat, NULL);
    }
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
  if (bh__shm_self) bh__shm_self->draining = 1;
  bh__logf(BH__INFO, "shutdown", "signal %d: draining", signum);
  bh__listeners_close(d);
  bh__plugins_stop(d);
  d->drain_started_ms = uv_now(d->loop);
  uv_timer_init(d->loop, &d->drain_timer);
  d->drain_timer.data = d;
  uv_timer_start(&d->drain_timer, bh__drain_tick, 0, 50);
}

/* Tells the master this loop still turns, and publishes plugin health. */
static void bh__heartbeat(uv_timer_t *t) {
  bh__daemon *d = t->data;
  if (bh__shm_self) bh__shm_self->heartbeat_ms = bh__shm_now_ms();
  if (++d->beats % BH__HEALTH_EVERY != 0 || bh__shm_g == NULL) return;
  for (size_t i = 0; i < d->nplugins; i++) {
    bh__plugin *p = &d->plugins[i];
    if (p->state != BH__PLUGIN_LOADED || p->desc->health == NULL || !p->shm)
      continue;
    const char *why = NULL;
    int64_t mark = bh__shm_enter(p->shm_index, BH__CB_HEALTH);
    int h = p->desc->health(&p->ctx, &why);
    bh__shm_leave(mark);
    p->shm->healthy = h == 0;
    snprintf(p->shm->health_detail, sizeof(p->shm->health_detail), "%s",
             h == 0 || why == NULL ? "" : why);
  }
}

int bh__daemon_run(bh__daemon *d) {
  d->started_ms = uv_now(d->loop);
  uv_signal_init(d->loop, &d->sig_term);
  d->sig_term.data = d;
  uv_signal_start(&d->sig_term, bh__on_signal, SIGTERM);
  if (d->role == BH__ROLE_SINGLE) {
    uv_signal_init(d->loop, &d->sig_int);
    d->sig_int.data = d;
    uv_signal_start(&d->sig_int, bh__on_signal, SIGINT);
  }
  /* the processes that serve requests; `-t` never connects */
  if (d->role != BH__ROLE_MASTER && bh__redis_start(d, d->cfg->redis) != 0)
    bh__logf(BH__ERROR, "redis_failed",
             "cannot start the redis client: out of memory; rate limits "
             "with backend = redis use local buckets");
  bh__plugins_start(d);
  bh__plugins_publish(d);
  if (d->role == BH__ROLE_WORKER) {
    uv_timer_init(d->loop, &d->heartbeat);
    d->heartbeat.data = d;
    uv_timer_start(&d->heartbeat, bh__heartbeat, 0, BH__HEARTBEAT_MS);
    if (bh__shm_self) bh__shm_self->ready = 1;
  } else {
    bh__sd_notify("READY=1");
    bh__logf(BH__INFO, "started", "serving on %s, admin on %s", d->api.address,
             d->admin.address);
  }
  return uv_run(d->loop, UV_RUN_DEFAULT);
}

void bh__daemon_free(bh__daemon *d) {
  bh__client_close(d);
  bh__redis_stop(d);
  bh__auth_stop(d); /* its last callbacks may still reach a plugin */
  bh__composites_free(d);
  bh__plugins_unload(d);
  bh__upstreams_free(d);
  bh__limits_free(d);
  bh__telemetry_free(d);
  bh__router_free(d->router);
  d->router = NULL;
  bh__admin_free();
  bh__req_spares_free(); /* no request is left once the daemon is */
}

static void bh__close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void bh__loop_close(uv_loop_t *loop) {
  uv_walk(loop, bh__close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
}

int bh__worker_main(bh__config *cfg, int api_fd, int generation) {
  /* a Ctrl-C reaches the whole process group: the master decides */
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  bh__log_after_fork();
  bh__reqid_reseed();
  randombytes_stir();
  bh__shm_self = bh__shm_worker_claim(getpid(), generation);
  if (bh__shm_self == NULL) {
    bh__logf(BH__ERROR, "worker_failed", "no free worker slot");
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  bh__daemon d;
  int rc = bh__daemon_init(&d, cfg, &loop, BH__ROLE_WORKER, api_fd);
  if (rc == 0) rc = bh__daemon_listen(&d);
  if (rc == 0) rc = bh__daemon_run(&d);
  bh__daemon_free(&d);
  bh__loop_close(&loop);
  bh__logf(BH__INFO, "worker_stopped", "worker %d exits", getpid());
  bh__log_close();
  return rc ? 1 : 0;
}

/* systemd's readiness protocol through libsystemd: a no-op when not
 * started by systemd ($NOTIFY_SOCKET unset). */
void bh__sd_notify(const char *state) {
  (void)sd_notify(0, state);
}
