/*
 * The job queue (see jobq.h): a mutex, a condition for the thread, and a
 * uv_async_t for the loop.
 */
#include "state/jobq.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BH__JOBQ_MAX_QUEUED 4096

struct bh_jobq {
  bh_handle_head head; /* first: the SDK's wrappers read the table here */
  uv_async_t async;    /* loop side: finished jobs are waiting */
  bh_jobq_def def;
  void *data;
  char name[16];
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bh_job *queue, *queue_tail; /* to run */
  bh_job *done, *done_tail;   /* ran, waiting for the loop */
  size_t queued;
  int stopping;
  int started;
};

/* Up to max_batch jobs off the front of the queue, cut into a list of
 * their own; *last is its tail. Called with the lock held. */
static bh_job *bh__jobq_take(bh_jobq *q, bh_job **last) {
  bh_job *batch = q->queue, *l = batch;
  size_t n = 1;
  while (l->next && n < q->def.max_batch) {
    l = l->next;
    n++;
  }
  q->queue = l->next;
  if (q->queue == NULL) q->queue_tail = NULL;
  q->queued -= n;
  l->next = NULL;
  *last = l;
  return batch;
}

static void *bh__jobq_main(void *arg) {
  bh_jobq *q = arg;
  pthread_setname_np(pthread_self(), q->name);
  if (q->def.thread_start) q->def.thread_start(q->data);
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->queue == NULL && !q->stopping)
      pthread_cond_wait(&q->cv, &q->mu);
    if (q->queue == NULL) break; /* stopping and drained */
    bh_job *last = NULL;
    bh_job *batch = bh__jobq_take(q, &last);
    pthread_mutex_unlock(&q->mu);
    q->def.run(batch, q->data);
    pthread_mutex_lock(&q->mu);
    int was_empty = q->done == NULL;
    if (q->done_tail)
      q->done_tail->next = batch;
    else
      q->done = batch;
    q->done_tail = last;
    /* wake the loop only when the list becomes non-empty: it takes the
     * whole list at once */
    if (was_empty) uv_async_send(&q->async);
  }
  pthread_mutex_unlock(&q->mu);
  if (q->def.thread_stop) q->def.thread_stop(q->data);
  return NULL;
}

static void bh__jobq_run_done(bh_jobq *q) {
  pthread_mutex_lock(&q->mu);
  bh_job *j = q->done;
  q->done = q->done_tail = NULL;
  pthread_mutex_unlock(&q->mu);
  while (j) {
    bh_job *next = j->next;
    j->next = NULL;
    q->def.done(j, q->data); /* may free j */
    j = next;
  }
}

static void bh__jobq_on_async(uv_async_t *a) {
  bh__jobq_run_done(a->data);
}

static void bh__jobq_free(uv_handle_t *h) {
  bh_jobq *q = h->data;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q);
}

int bh__jobq_new(uv_loop_t *loop, const bh_services *svc,
                 const bh_jobq_def *def, void *data, bh_jobq **out) {
  if (loop == NULL || def == NULL || out == NULL ||
      def->size < offsetof(bh_jobq_def, thread_stop))
    return -EINVAL;
  bh_jobq *q = calloc(1, sizeof(*q));
  if (q == NULL) return -ENOMEM;
  memcpy(&q->def, def, def->size < sizeof(q->def) ? def->size : sizeof(q->def));
  q->def.size = sizeof(q->def);
  if (q->def.run == NULL || q->def.done == NULL) {
    free(q);
    return -EINVAL;
  }
  if (q->def.max_batch == 0) q->def.max_batch = 1;
  if (q->def.max_queued == 0) q->def.max_queued = BH__JOBQ_MAX_QUEUED;
  snprintf(q->name, sizeof(q->name), "%s", def->name ? def->name : "jobs");
  q->def.name = q->name;
  q->head.svc = svc;
  q->data = data;
  int rc = uv_async_init(loop, &q->async, bh__jobq_on_async);
  if (rc) {
    free(q);
    return rc;
  }
  q->async.data = q;
  uv_unref((uv_handle_t *)&q->async);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  if ((rc = pthread_create(&q->thread, NULL, bh__jobq_main, q)) != 0) {
    uv_close((uv_handle_t *)&q->async, bh__jobq_free);
    return -rc;
  }
  q->started = 1;
  *out = q;
  return 0;
}

int bh__jobq_submit(bh_jobq *q, bh_job *job) {
  if (q == NULL || job == NULL) return -EINVAL;
  int rc = 0;
  pthread_mutex_lock(&q->mu);
  if (q->stopping)
    rc = -ESHUTDOWN;
  else if (q->queued >= q->def.max_queued)
    rc = -EAGAIN;
  if (rc == 0) {
    job->next = NULL;
    if (q->queue_tail)
      q->queue_tail->next = job;
    else
      q->queue = job;
    q->queue_tail = job;
    q->queued++;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

void *bh__jobq_data(bh_jobq *q) {
  return q->data;
}

void bh__jobq_close(bh_jobq *q) {
  if (q == NULL) return;
  pthread_mutex_lock(&q->mu);
  q->stopping = 1;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  if (q->started) pthread_join(q->thread, NULL);
  q->started = 0;
  /* jobs that finished after the loop last ran: their done still runs,
   * so every request they hold is answered or released */
  bh__jobq_run_done(q);
  uv_close((uv_handle_t *)&q->async, bh__jobq_free);
}
