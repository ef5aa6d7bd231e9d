/*
 * The job queue (core/state/jobq.c): batches in order on its own thread,
 * every job back on the loop exactly once in the order queued, load shed
 * past max_queued, and close running what is queued and answering it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "state/jobq.h"

typedef struct tjob {
  bh_job job;
  int seq;
  int ran;             /* set on the queue's thread */
  pthread_t ran_on;    /* which thread */
  int batch_no, batch; /* the run() it came in, and that batch's size */
} tjob;

typedef struct tstate {
  int started, stopped, runs, done_count, last_done, out_of_order;
  int max_batch_seen;
  pthread_t loop_thread;
  int on_loop; /* every done() ran on the loop thread */
  pthread_mutex_t gate_mu;
  pthread_cond_t gate_cv;
  int gate_closed; /* run() waits while set */
  uv_loop_t *loop;
  int stop_after; /* stop the loop after this many done() */
} tstate;

static void t_start(void *data) {
  ((tstate *)data)->started++;
}

static void t_stop(void *data) {
  ((tstate *)data)->stopped++;
}

static void t_run(bh_job *batch, void *data) {
  tstate *t = data;
  pthread_mutex_lock(&t->gate_mu);
  while (t->gate_closed)
    pthread_cond_wait(&t->gate_cv, &t->gate_mu);
  pthread_mutex_unlock(&t->gate_mu);
  int n = 0;
  for (bh_job *j = batch; j; j = j->next)
    n++;
  t->runs++;
  if (n > t->max_batch_seen) t->max_batch_seen = n;
  for (bh_job *j = batch; j; j = j->next) {
    tjob *tj = (tjob *)(void *)j;
    tj->ran = 1;
    tj->ran_on = pthread_self();
    tj->batch_no = t->runs;
    tj->batch = n;
  }
}

static void t_done(bh_job *job, void *data) {
  tstate *t = data;
  tjob *tj = (tjob *)(void *)job;
  if (!pthread_equal(pthread_self(), t->loop_thread)) t->on_loop = 0;
  if (!tj->ran || pthread_equal(tj->ran_on, t->loop_thread)) t->on_loop = 0;
  if (tj->seq != t->last_done + 1) t->out_of_order++;
  t->last_done = tj->seq;
  t->done_count++;
  free(tj);
  if (t->stop_after && t->done_count == t->stop_after) uv_stop(t->loop);
}

static void t_init(tstate *t, uv_loop_t *loop) {
  memset(t, 0, sizeof(*t));
  t->loop_thread = pthread_self();
  t->on_loop = 1;
  t->loop = loop;
  pthread_mutex_init(&t->gate_mu, NULL);
  pthread_cond_init(&t->gate_cv, NULL);
}

static void t_gate(tstate *t, int closed) {
  pthread_mutex_lock(&t->gate_mu);
  t->gate_closed = closed;
  pthread_cond_broadcast(&t->gate_cv);
  pthread_mutex_unlock(&t->gate_mu);
}

static tjob *t_job(int seq) {
  tjob *j = calloc(1, sizeof(*j));
  j->seq = seq;
  return j;
}

static void t_guard(uv_timer_t *tm) {
  uv_stop(tm->loop); /* the test fails on the counts below */
}

/* 200 jobs, batches of at most 16: all back once, in order, on the loop. */
static void test_order_and_batches(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  tstate t;
  t_init(&t, &loop);
  bh_jobq_def def = {.size = sizeof(def),
                     .name = "t-jobs",
                     .thread_start = t_start,
                     .run = t_run,
                     .done = t_done,
                     .thread_stop = t_stop,
                     .max_batch = 16};
  bh_jobq *q = NULL;
  CHECK_INT(bh__jobq_new(&loop, NULL, &def, &t, &q), 0);
  t_gate(&t, 1); /* let them pile up so batches form */
  for (int i = 1; i <= 200; i++)
    CHECK_INT(bh__jobq_submit(q, &t_job(i)->job), 0);
  t_gate(&t, 0);
  t.stop_after = 200;
  /* the wakeup is unreferenced: a timer keeps the loop running */
  uv_timer_t guard;
  uv_timer_init(&loop, &guard);
  uv_timer_start(&guard, t_guard, 10000, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(t.done_count, 200);
  CHECK_INT(t.out_of_order, 0);
  CHECK(t.on_loop);
  CHECK(t.max_batch_seen > 1);
  CHECK(t.max_batch_seen <= 16);
  CHECK_INT(t.started, 1);
  bh__jobq_close(q);
  CHECK_INT(t.stopped, 1);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0); /* the queue's handle is gone too */
}

/* Past max_queued a submit is refused (-EAGAIN) and never comes back;
 * close runs what is queued and calls done for each before returning. */
static void test_shed_and_close(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  tstate t;
  t_init(&t, &loop);
  bh_jobq_def def = {
      .size = sizeof(def), .run = t_run, .done = t_done, .max_queued = 4};
  bh_jobq *q = NULL;
  CHECK_INT(bh__jobq_new(&loop, NULL, &def, &t, &q), 0);
  t_gate(&t, 1);
  /* the first job may already be taken by the thread (waiting at the
   * gate): the queue then holds the next four */
  int accepted = 0, refused = 0;
  for (int i = 1; i <= 10; i++) {
    tjob *j = t_job(accepted + 1);
    int rc = bh__jobq_submit(q, &j->job);
    if (rc == 0) {
      accepted++;
    } else {
      CHECK_INT(rc, -EAGAIN);
      refused++;
      free(j);
    }
  }
  CHECK(accepted == 4 || accepted == 5);
  CHECK_INT(accepted + refused, 10);
  t_gate(&t, 0);
  bh__jobq_close(q); /* no loop run: close itself answers them */
  CHECK_INT(t.done_count, accepted);
  CHECK_INT(t.out_of_order, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
}

/* No run or done, or a size too small: refused, nothing started. */
static void test_refusals(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  tstate t;
  t_init(&t, &loop);
  bh_jobq *q = NULL;
  bh_jobq_def no_done = {.size = sizeof(no_done), .run = t_run};
  CHECK_INT(bh__jobq_new(&loop, NULL, &no_done, &t, &q), -EINVAL);
  bh_jobq_def small = {.size = 4, .run = t_run, .done = t_done};
  CHECK_INT(bh__jobq_new(&loop, NULL, &small, &t, &q), -EINVAL);
  CHECK(q == NULL);
  CHECK_INT(bh__jobq_submit(NULL, NULL), -EINVAL);
  bh__jobq_close(NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  test_order_and_batches();
  test_shed_and_close();
  test_refusals();
  return check_finish("state/jobq");
}
