/*
 * The master process: it reads the config, opens the listeners (the API
 * one as an SO_REUSEPORT group, one socket per worker), owns the
 * shared mapping, serves the admin API, and supervises the workers, each a
 * fork with its own loop and its own copy of the plugins. It never runs
 * plugin code, so no plugin can take the admin endpoint or the listeners
 * down with it.
 *
 * A worker that dies on a signal, or stays inside one plugin callback past
 * plugin_hang_ms, is charged to the plugin it was executing (shm.h execution
 * marks); past quarantine_after charges within quarantine_window_s the
 * plugin is quarantined and workers come back without it. Reload starts a
 * new generation of workers and drains the old one; SIGTERM drains all.
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "host/host.h"
#include "http/http.h"
#include "proc/daemon.h"
#include "proc/load.h"
#include "state/shm.h"

#define BH__WATCH_MS 50
#define BH__BACKOFF_MAX_MS 5000
#define BH__YOUNG_MS 2000
#define BH__READY_WAIT_MS 15000

typedef struct bh__wproc {
  int pid; /* 0: free */
  int generation;
  uint64_t started_ms;
  int retiring;    /* an older generation, told to drain */
  int termed;      /* SIGTERM sent */
  int hang_killed; /* killed by us for a hang (already charged) */
  int sock;        /* which of M.fds it accepts from */
} bh__wproc;

static struct {
  bh__daemon *d;
  const char *config_path;
  bh__wproc procs[BH__SHM_WORKERS];
  int nworkers;
  int generation;
  uint64_t backoff_ms;
  uint64_t next_spawn_ms;
  uint64_t reload_started_ms;
  int reloading;
  int reload_pending;  /* SIGHUP during a reload: one more after it */
  int respawn_pending; /* a release during a reload: a new generation after */
  int stopping;
  uint64_t stop_deadline_ms;
  int notified_ready;
  uv_timer_t watch;
  uv_signal_t sig_chld, sig_hup, sig_term, sig_int;
  /* The API listener's SO_REUSEPORT group, one socket per worker, all
   * held here so that a worker's death, a reload or a drain never closes
   * one: connections the kernel queued on a socket wait for the worker
   * that replaces its owner. fds[0] is d->api_fd. */
  int fds[BH__SHM_WORKERS];
  int nfds;
} M;

static const char *bh__sig_name(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGABRT: return "SIGABRT";
  case SIGBUS: return "SIGBUS";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGKILL: return "SIGKILL";
  case SIGTERM: return "SIGTERM";
  default: return "a signal";
  }
}

static const char *bh__cb_name(int cb) {
  static const char *const names[] = {
      "none", "init", "start", "handler", "upstream callback",
      "stop", "fini", "health"};
  return cb >= 0 && cb <= BH__CB_HEALTH ? names[cb] : "callback";
}

static bh__shm_worker *bh__slot_of(int pid) {
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    if (bh__shm_g->workers[i].pid == pid) return &bh__shm_g->workers[i];
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Charges and quarantine                                                  */
/* ---------------------------------------------------------------------- */

static void bh__charge(int plugin, const char *what) {
  if (plugin < 0 || plugin >= BH__SHM_PLUGINS) return;
  const bh__config *cfg = M.d->cfg;
  bh__shm_lock();
  bh__shm_plugin *p = &bh__shm_g->plugins[plugin];
  uint32_t n = bh__shm_charge(p, bh__shm_now_ms(),
                              (uint64_t)cfg->quarantine_window_s * 1000);
  snprintf(p->last_crash, sizeof(p->last_crash), "%s", what);
  int quarantine = !p->quarantined && n >= cfg->quarantine_after;
  if (quarantine) {
    p->quarantined = 1;
    p->quarantined_at = (uint64_t)time(NULL);
    snprintf(p->quarantine_why, sizeof(p->quarantine_why),
             "%u crashes or hangs within %u s (last: %s)", n,
             cfg->quarantine_window_s, what);
  }
  char name[sizeof(p->name)];
  memcpy(name, p->name, sizeof(name));
  uint32_t total = p->crashes;
  bh__shm_unlock();
  bh__logline l;
  bh__log_begin(&l, BH__ERROR, "plugin_charged");
  bh__log_str(&l, "plugin", name);
  bh__log_str(&l, "what", what);
  bh__log_int(&l, "chargesInWindow", n);
  bh__log_int(&l, "crashes", total);
  bh__log_end(&l);
  if (quarantine)
    bh__logf(BH__ERROR, "plugin_quarantined",
             "plugin %s quarantined: %u crashes or hangs within %u s; "
             "POST /admin/plugins/%s/release to lift",
             name, n, cfg->quarantine_window_s, name);
}

/* ---------------------------------------------------------------------- */
/* Workers                                                                 */
/* ---------------------------------------------------------------------- */

static void bh__master_signals_stop(void) {
  uv_signal_stop(&M.sig_chld);
  uv_signal_stop(&M.sig_hup);
  uv_signal_stop(&M.sig_term);
  uv_signal_stop(&M.sig_int);
}

/* In the child: forget everything of the master's loop that could act on
 * the master's behalf (its signal watchers, its epoll set, the admin
 * sockets), then run as a worker. */
static void bh__worker_child(int generation, pid_t master, int sock) {
  /* A worker outliving its master would keep the listener and its
   * connections with nobody to supervise it: drain and go with it. The
   * getppid check closes the race of the master dying before prctl. */
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != master) _exit(1);
  bh__master_signals_stop();
  bh__daemon *md = M.d;
  for (bh__conn *c = md->conns; c; c = c->next) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) close(fd);
  }
  uv_os_fd_t afd;
  if (md->admin.open && uv_fileno((uv_handle_t *)&md->admin.tcp, &afd) == 0)
    close(afd);
  close(uv_backend_fd(md->loop));
  /* only its own socket of the group: the others are the other workers' */
  for (int s = 0; s < M.nfds; s++)
    if (s != sock) close(M.fds[s]);
  int rc = bh__worker_main(md->cfg, M.fds[sock], generation);
  _exit(rc == 0 ? 0 : 1);
}

/* As many sockets in the group as workers: one without a worker would get
 * its share of the connections and nobody to accept them. */
static void bh__sockets(int n) {
  if (n > BH__SHM_WORKERS) n = BH__SHM_WORKERS;
  if (n < 1) n = 1;
  while (M.nfds < n) {
    int fd = bh__listen_reuseport_fd(M.d->api.address, NULL, 0);
    if (fd < 0) {
      /* the workers share the sockets there are: still served */
      bh__logf(BH__ERROR, "listen_failed", "cannot listen on %s: %s",
               M.d->api.address, uv_strerror(fd));
      return;
    }
    M.fds[M.nfds++] = fd;
  }
  while (M.nfds > n)
    close(M.fds[--M.nfds]);
}

/* The socket a new worker of `generation` takes: the first one no live
 * worker of that generation holds (a crashed worker's goes to its
 * replacement). */
static int bh__free_sock(int generation) {
  for (int s = 0; s < M.nfds; s++) {
    int used = 0;
    for (int i = 0; i < BH__SHM_WORKERS && !used; i++)
      used = M.procs[i].pid && !M.procs[i].retiring &&
             M.procs[i].generation == generation && M.procs[i].sock == s;
    if (!used) return s;
  }
  return 0;
}

static int bh__spawn(int generation) {
  int idx = -1;
  for (int i = 0; i < BH__SHM_WORKERS && idx < 0; i++)
    if (M.procs[i].pid == 0) idx = i;
  if (idx < 0) return -EAGAIN;
  int sock = bh__free_sock(generation);
  pid_t master = getpid();
  bh__log_fork_prepare();
  pid_t pid = fork();
  if (pid != 0) bh__log_fork_parent();
  if (pid < 0) {
    bh__logf(BH__ERROR, "worker_spawn_failed", "fork: %s", strerror(errno));
    return -errno;
  }
  if (pid == 0) bh__worker_child(generation, master, sock);
  bh__wproc *w = &M.procs[idx];
  memset(w, 0, sizeof(*w));
  w->sock = sock;
  w->pid = pid;
  w->generation = generation;
  w->started_ms = bh__shm_now_ms();
  bh__logline l;
  bh__log_begin(&l, BH__INFO, "worker_started");
  bh__log_int(&l, "pid", pid);
  bh__log_int(&l, "generation", generation);
  bh__log_end(&l);
  return 0;
}

static int bh__live(int generation, int ready_only) {
  int n = 0;
  for (int i = 0; i < BH__SHM_WORKERS; i++) {
    bh__wproc *w = &M.procs[i];
    if (w->pid == 0 || w->generation != generation) continue;
    if (ready_only) {
      bh__shm_worker *s = bh__slot_of(w->pid);
      if (s == NULL || !s->ready) continue;
    }
    n++;
  }
  return n;
}

static void bh__reap(void) {
  for (int i = 0; i < BH__SHM_WORKERS; i++) {
    bh__wproc *w = &M.procs[i];
    if (w->pid == 0) continue;
    int st;
    pid_t r = waitpid(w->pid, &st, WNOHANG);
    if (r != w->pid) continue;
    bh__shm_worker *s = bh__slot_of(w->pid);
    int plugin = s ? s->plugin : -1;
    int cb = s ? s->callback : 0;
    int abnormal = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char what[160];
    if (WIFSIGNALED(st))
      snprintf(what, sizeof(what), "%s in %s", bh__sig_name(WTERMSIG(st)),
               bh__cb_name(cb));
    else
      snprintf(what, sizeof(what), "exit %d in %s",
               WIFEXITED(st) ? WEXITSTATUS(st) : -1, bh__cb_name(cb));
    bh__logline l;
    bh__log_begin(&l, abnormal ? BH__ERROR : BH__INFO, "worker_exited");
    bh__log_int(&l, "pid", w->pid);
    bh__log_int(&l, "generation", w->generation);
    if (WIFSIGNALED(st))
      bh__log_str(&l, "signal", bh__sig_name(WTERMSIG(st)));
    else
      bh__log_int(&l, "status", WEXITSTATUS(st));
    if (abnormal && plugin >= 0)
      bh__log_str(&l, "plugin", bh__shm_g->plugins[plugin].name);
    bh__log_end(&l);
    if (abnormal && plugin >= 0 && !w->hang_killed) bh__charge(plugin, what);
    if (s) {
      __atomic_fetch_add(&bh__shm_g->log_dropped_gone, s->log_dropped,
                         __ATOMIC_RELAXED);
      bh__shm_worker_release(s);
    }
    uint64_t now = bh__shm_now_ms();
    int replace = !M.stopping && !w->retiring && w->generation == M.generation;
    if (replace) {
      /* one that keeps dying young backs off; the others keep serving */
      if (abnormal && now - w->started_ms < BH__YOUNG_MS)
        M.backoff_ms = M.backoff_ms ? M.backoff_ms * 2 : 100;
      else
        M.backoff_ms = 0;
      if (M.backoff_ms > BH__BACKOFF_MAX_MS) M.backoff_ms = BH__BACKOFF_MAX_MS;
      M.next_spawn_ms = now + M.backoff_ms;
    }
    w->pid = 0;
  }
}

static void bh__hang_check(void) {
  uint64_t now = bh__shm_now_ms();
  uint64_t limit = M.d->cfg->plugin_hang_ms;
  for (int i = 0; i < BH__SHM_WORKERS; i++) {
    bh__wproc *w = &M.procs[i];
    if (w->pid == 0 || w->hang_killed) continue;
    bh__shm_worker *s = bh__slot_of(w->pid);
    if (s == NULL) continue;
    /* The worker writes its mark while we read it, and after we read the
     * clock: a mark newer than `now` must not wrap into a huge age, and
     * the two reads of enter_ms around the plugin read show that the mark
     * did not change between them. */
    uint64_t t0 = s->enter_ms;
    int plugin = s->plugin;
    uint64_t t1 = s->enter_ms;
    uint64_t hb = s->heartbeat_ms;
    if (plugin >= 0 && t0 == t1 && t0 < now && now - t0 > limit) {
      char what[160];
      snprintf(what, sizeof(what), "hang in %s (over %llu ms)",
               bh__cb_name(s->callback), (unsigned long long)limit);
      w->hang_killed = 1;
      kill(w->pid, SIGKILL);
      bh__charge(plugin, what);
    } else if (plugin < 0 && s->ready && hb < now &&
               now - hb > (limit > 5000 ? limit * 2 : 10000)) {
      /* stuck outside any plugin: the core's fault, nobody is charged */
      w->hang_killed = 1;
      bh__logf(BH__ERROR, "worker_stuck", "worker %d missed its heartbeat",
               w->pid);
      kill(w->pid, SIGKILL);
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Reload, release, stop                                                   */
/* ---------------------------------------------------------------------- */

static void bh__new_generation(void) {
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    if (M.procs[i].pid) M.procs[i].retiring = 1;
  M.generation++;
  bh__shm_g->generation = M.generation;
  M.reloading = 1;
  M.reload_started_ms = bh__shm_now_ms();
  M.backoff_ms = 0;
  bh__sd_notify("RELOADING=1");
  for (int i = 0; i < M.nworkers; i++)
    bh__spawn(M.generation);
}

int bh__master_reloading(void) {
  return M.d != NULL && M.reloading;
}

/* One reload at a time: until the new generation serves (or the ready wait
 * ends) another one answers -EBUSY, so N requests make one generation and
 * never a pile of half-started ones. */
int bh__master_reload(char *err, size_t errlen) {
  if (M.d == NULL) {
    snprintf(err, errlen, "reload needs worker processes (workers >= 1)");
    return -ENOTSUP;
  }
  if (M.stopping) {
    snprintf(err, errlen, "the daemon is stopping");
    return -ESHUTDOWN;
  }
  if (M.reloading) {
    snprintf(err, errlen, "generation %d is still starting", M.generation);
    return -EBUSY;
  }
  bh__config *cfg = calloc(1, sizeof(*cfg));
  if (cfg == NULL) return -ENOMEM;
  int rc = bh__load(M.config_path, cfg, err, errlen);
  if (rc != 0) {
    free(cfg);
    bh__logf(BH__ERROR, "reload_refused", "%s; the running config stays", err);
    return rc;
  }
  bh__config *old = M.d->cfg;
  if (strcmp(cfg->listen, old->listen) != 0 ||
      strcmp(cfg->admin_listen, old->admin_listen) != 0)
    bh__logf(BH__WARN, "reload_listen_kept",
             "listener addresses change only on restart; keeping %s and %s",
             old->listen, old->admin_listen);
  /* the listeners stay: so do their addresses in the config */
  free(cfg->listen);
  free(cfg->admin_listen);
  cfg->listen = strdup(old->listen);
  cfg->admin_listen = strdup(old->admin_listen);
  /* the token may not go while the listener that needs it stays */
  if (cfg->listen == NULL || cfg->admin_listen == NULL ||
      (rc = bh__config_admin_check(cfg, err, errlen)) != 0) {
    if (rc == 0) rc = -ENOMEM;
    bh__unload(cfg);
    free(cfg);
    bh__logf(BH__ERROR, "reload_refused", "%s; the running config stays", err);
    return rc;
  }
  M.d->cfg = cfg;
  M.nworkers = bh__workers_count(cfg);
  bh__sockets(M.nworkers);
  bh__unload(old);
  free(old);
  bh__logf(BH__INFO, "reload", "config %s: generation %d", cfg->source,
           M.generation + 1);
  bh__new_generation();
  return 0;
}

int bh__master_release(const char *name, char *err, size_t errlen) {
  if (M.d == NULL) {
    snprintf(err, errlen, "quarantine needs worker processes (workers >= 1)");
    return -ENOTSUP;
  }
  bh__shm_lock();
  bh__shm_plugin *p = bh__shm_plugin_find(name);
  int was = p ? p->quarantined : 0;
  if (p) {
    p->quarantined = 0;
    p->quarantined_at = 0;
    p->quarantine_why[0] = '\0';
    memset(p->charges, 0, sizeof(p->charges));
  }
  bh__shm_unlock();
  if (p == NULL) {
    snprintf(err, errlen, "no plugin named %s", name);
    return -ENOENT;
  }
  bh__logf(BH__WARN, "plugin_released", "plugin %s released by ops%s", name,
           was ? "" : " (it was not quarantined)");
  /* workers started without it: a new generation loads it again (after
   * the one starting now, if any: one generation starts at a time) */
  if (was && !M.stopping) {
    if (M.reloading)
      M.respawn_pending = 1;
    else
      bh__new_generation();
  }
  return 0;
}

static void bh__stop_workers(int sig) {
  for (int i = 0; i < BH__SHM_WORKERS; i++) {
    bh__wproc *w = &M.procs[i];
    if (w->pid && !(sig == SIGTERM && w->termed)) {
      kill(w->pid, sig);
      if (sig == SIGTERM) w->termed = 1;
    }
  }
}

static void bh__master_finish(void) {
  uv_timer_stop(&M.watch);
  uv_close((uv_handle_t *)&M.watch, NULL);
  uv_close((uv_handle_t *)&M.sig_chld, NULL);
  uv_close((uv_handle_t *)&M.sig_hup, NULL);
  uv_close((uv_handle_t *)&M.sig_term, NULL);
  uv_close((uv_handle_t *)&M.sig_int, NULL);
  bh__conn_close_all(M.d);
  if (M.d->admin.open) {
    M.d->admin.open = 0;
    uv_close((uv_handle_t *)&M.d->admin.tcp, NULL);
  }
}

/* ---------------------------------------------------------------------- */
/* The loop                                                                */
/* ---------------------------------------------------------------------- */

static void bh__watch(uv_timer_t *t) {
  (void)t;
  bh__reap();
  uint64_t now = bh__shm_now_ms();
  if (M.stopping) {
    int any = 0;
    for (int i = 0; i < BH__SHM_WORKERS; i++)
      any |= M.procs[i].pid != 0;
    if (!any) {
      bh__master_finish();
      return;
    }
    if (now >= M.stop_deadline_ms) {
      bh__logf(BH__WARN, "drain_timeout", "killing workers still draining");
      bh__stop_workers(SIGKILL);
      M.stop_deadline_ms = now + 60000;
    }
    return;
  }
  bh__hang_check();
  if (bh__live(M.generation, 0) < M.nworkers && now >= M.next_spawn_ms)
    bh__spawn(M.generation);
  int ready = bh__live(M.generation, 1);
  if (M.reloading &&
      (ready >= M.nworkers || now - M.reload_started_ms > BH__READY_WAIT_MS)) {
    /* the new generation serves: the old one finishes what it has */
    for (int i = 0; i < BH__SHM_WORKERS; i++)
      if (M.procs[i].pid && M.procs[i].retiring && !M.procs[i].termed) {
        kill(M.procs[i].pid, SIGTERM);
        M.procs[i].termed = 1;
      }
    M.reloading = 0;
    bh__sd_notify("READY=1");
    if (M.reload_pending) {
      /* the SIGHUPs that came meanwhile, all at once: the file may have
       * changed again since this generation read it */
      char err[512];
      int respawn = M.respawn_pending;
      M.reload_pending = 0;
      M.respawn_pending = 0;
      if (bh__master_reload(err, sizeof(err)) != 0 && respawn)
        bh__new_generation();
    } else if (M.respawn_pending) {
      M.respawn_pending = 0;
      bh__new_generation();
    }
  }
  if (!M.notified_ready && ready >= M.nworkers) {
    M.notified_ready = 1;
    bh__daemon_announce(M.d);
    bh__logf(BH__INFO, "ready", "%d worker(s) serving", ready);
    bh__sd_notify("READY=1");
  }
}

static void bh__on_master_signal(uv_signal_t *s, int signum) {
  (void)s;
  if (signum == SIGCHLD) {
    bh__reap();
    return;
  }
  if (signum == SIGHUP) {
    char err[512];
    if (M.reloading && !M.stopping) {
      M.reload_pending = 1;
      bh__logf(BH__INFO, "reload_deferred",
               "SIGHUP during the start of generation %d: one more reload "
               "after it",
               M.generation);
      return;
    }
    bh__master_reload(err, sizeof(err));
    return;
  }
  if (M.stopping) {
    bh__logf(BH__WARN, "shutdown_now", "second signal: stopping workers now");
    bh__stop_workers(SIGKILL);
    M.stop_deadline_ms = bh__shm_now_ms();
    return;
  }
  M.stopping = 1;
  M.d->stopping = 1;
  bh__sd_notify("STOPPING=1");
  bh__logf(BH__INFO, "shutdown", "signal %d: draining workers", signum);
  if (M.d->admin.open) {
    M.d->admin.open = 0;
    uv_close((uv_handle_t *)&M.d->admin.tcp, NULL);
  }
  bh__conn_close_idle(M.d);
  /* No worker will be spawned again: once the workers close their copies
   * the kernel refuses new connections instead of queueing them for
   * nobody. */
  while (M.nfds > 0)
    close(M.fds[--M.nfds]);
  M.d->api_fd = -1;
  bh__stop_workers(SIGTERM);
  M.stop_deadline_ms = bh__shm_now_ms() + M.d->cfg->drain_timeout_ms + 2000;
}

int bh__master_run(bh__daemon *d, const char *config_path) {
  memset(&M, 0, sizeof(M));
  M.d = d;
  M.config_path = config_path;
  M.nworkers = bh__workers_count(d->cfg);
  M.fds[0] = d->api_fd;
  M.nfds = 1;
  bh__sockets(M.nworkers);
  M.generation = 1;
  bh__shm_g->generation = 1;
  bh__shm_g->master_pid = getpid();
  d->started_ms = uv_now(d->loop);
  uv_signal_init(d->loop, &M.sig_chld);
  uv_signal_init(d->loop, &M.sig_hup);
  uv_signal_init(d->loop, &M.sig_term);
  uv_signal_init(d->loop, &M.sig_int);
  uv_signal_start(&M.sig_chld, bh__on_master_signal, SIGCHLD);
  uv_signal_start(&M.sig_hup, bh__on_master_signal, SIGHUP);
  uv_signal_start(&M.sig_term, bh__on_master_signal, SIGTERM);
  uv_signal_start(&M.sig_int, bh__on_master_signal, SIGINT);
  uv_timer_init(d->loop, &M.watch);
  uv_timer_start(&M.watch, bh__watch, BH__WATCH_MS, BH__WATCH_MS);
  bh__logf(BH__INFO, "started",
           "master %d: %d worker(s), serving on %s, admin on %s", getpid(),
           M.nworkers, d->api.address, d->admin.address);
  for (int i = 0; i < M.nworkers; i++)
    bh__spawn(M.generation);
  int rc = uv_run(d->loop, UV_RUN_DEFAULT);
  M.d = NULL;
  return rc;
}
