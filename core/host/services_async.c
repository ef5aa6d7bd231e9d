/*
 * The services that reach the loop from a plugin's own threads
 * (include/bulkhead/plugin.h): wakeups (ABI 1.1) and job queues (ABI 1.3),
 * each callback charged to the plugin like a handler.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/reqid.h"
#include "config/config.h"
#include "host/host.h"
#include "host/services.h"
#include "http/http.h"
#include "http/validate.h"
#include "identity/auth.h"
#include "obs/telemetry.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "state/jobq.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/upstream.h"

/* --- wakeups (ABI 1.1) ------------------------------------------------ */

struct bh_wakeup {
  const bh_services *svc; /* bh_handle_head: must stay first */
  uv_async_t async;
  bh__plugin *plugin;
  bh_wakeup_fn cb;
  void *data;
  int closed;
};

static void bh__wakeup_run(uv_async_t *a) {
  bh_wakeup *w = a->data;
  if (w->closed) return;
  bh__plugin *p = w->plugin;
  /* plugin code on the loop: a crash or hang in it is charged to p */
  int64_t mark = bh__shm_enter(p->shm_index, BH__CB_HANDLER);
  w->cb(&p->ctx, w->data);
  bh__shm_leave(mark);
}

static void bh__wakeup_free(uv_handle_t *h) {
  free(h->data);
}

int bh__svc_wakeup_new(bh_ctx *ctx, bh_wakeup_fn cb, void *data,
                       bh_wakeup **out) {
  BH__ON_LOOP(ctx ? ctx->plugin : NULL, "wakeup_new");
  if (ctx == NULL || cb == NULL || out == NULL) return -EINVAL;
  bh__plugin *p = bh__svc_plugin(ctx);
  bh_wakeup *w = calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  w->svc = p->d->svc;
  w->plugin = p;
  w->cb = cb;
  w->data = data;
  int rc = uv_async_init(p->d->loop, &w->async, bh__wakeup_run);
  if (rc) {
    free(w);
    return rc;
  }
  w->async.data = w;
  /* like a signal watcher: never what keeps a draining worker running */
  uv_unref((uv_handle_t *)&w->async);
  *out = w;
  return 0;
}

int bh__svc_wakeup_send(bh_wakeup *w) {
  if (w == NULL) return -EINVAL;
  return uv_async_send(&w->async);
}

void bh__svc_wakeup_close(bh_wakeup *w) {
  if (w == NULL || w->closed) return;
  w->closed = 1;
  uv_close((uv_handle_t *)&w->async, bh__wakeup_free);
}

/* --- job queues (ABI 1.3 (store)) ----------------------------------- */

/* A plugin's queue: state/jobq.c's, with done() charged to the plugin the
 * way a wakeup callback is. Freed by jobq_close(). */
typedef struct bh__pjobq {
  bh__plugin *plugin;
  bh_jobq_def def; /* the plugin's, copied */
  void *data;
} bh__pjobq;

static void bh__pjobq_start(void *arg) {
  bh__pjobq *w = arg;
  if (w->def.thread_start) w->def.thread_start(w->data);
}

static void bh__pjobq_run(bh_job *batch, void *arg) {
  bh__pjobq *w = arg;
  w->def.run(batch, w->data);
}

static void bh__pjobq_done(bh_job *job, void *arg) {
  bh__pjobq *w = arg;
  int64_t mark = bh__shm_enter(w->plugin->shm_index, BH__CB_HANDLER);
  w->def.done(job, w->data);
  bh__shm_leave(mark);
}

static void bh__pjobq_stop(void *arg) {
  bh__pjobq *w = arg;
  if (w->def.thread_stop) w->def.thread_stop(w->data);
}

int bh__svc_jobq_new(bh_ctx *ctx, const bh_jobq_def *def, void *data,
                     bh_jobq **out) {
  if (ctx == NULL || def == NULL || out == NULL ||
      def->size < offsetof(bh_jobq_def, thread_stop))
    return -EINVAL;
  bh__plugin *p = bh__svc_plugin(ctx);
  bh__pjobq *w = calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  memcpy(&w->def, def, def->size < sizeof(w->def) ? def->size : sizeof(w->def));
  if (w->def.run == NULL || w->def.done == NULL) {
    free(w);
    return -EINVAL;
  }
  w->plugin = p;
  w->data = data;
  char name[16];
  snprintf(name, sizeof(name), "%.10s-jobs", p->name);
  bh_jobq_def core = w->def;
  core.size = sizeof(core);
  core.name = def->name ? def->name : name;
  core.thread_start = bh__pjobq_start;
  core.run = bh__pjobq_run;
  core.done = bh__pjobq_done;
  core.thread_stop = bh__pjobq_stop;
  w->def.name = NULL; /* borrowed from the plugin: not kept */
  int rc = bh__jobq_new(p->d->loop, p->d->svc, &core, w, out);
  if (rc) free(w);
  return rc;
}

int bh__svc_jobq_submit(bh_jobq *q, bh_job *job) {
  return bh__jobq_submit(q, job);
}

void bh__svc_jobq_close(bh_jobq *q) {
  if (q == NULL) return;
  bh__pjobq *w = bh__jobq_data(q);
  bh__jobq_close(q);
  free(w);
}
