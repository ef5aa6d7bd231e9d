/*
 * One job queue with a thread of its own and a wakeup of the loop: the
 * way blocking store work (SQLite, later a database client) runs off the
 * event loop, for the core's identity store and, through the services
 * table (jobq_new, ABI 1.3), for every plugin that keeps a store.
 *
 * The loop queues bh_job nodes (embedded in the caller's own jobs); the
 * thread takes up to max_batch of them at a time and runs them with
 * def->run; the finished ones go back on a done list, and the loop is
 * woken (once per non-empty list: sends coalesce) to call def->done on
 * each, in the order queued. The types are the SDK's (bulkhead/plugin.h).
 */
#ifndef BH_CORE_JOBQ_H
#define BH_CORE_JOBQ_H

#include <uv.h>

#include "bulkhead/plugin.h"

/* Starts a queue on `loop`: `def` copied (its first def->size bytes: an
 * older plugin's shorter struct reads as zeroes past its end), `data`
 * borrowed until bh__jobq_close(), `svc` the table the SDK wrappers reach
 * through the queue (NULL for the core's own queues). The wakeup is
 * unreferenced: a queue never keeps a loop alive. 0 and *out, or -EINVAL
 * (no run / done, a size too small), -ENOMEM, a libuv error, or the
 * negative errno of pthread_create. */
int bh__jobq_new(uv_loop_t *loop, const bh_services *svc,
                 const bh_jobq_def *def, void *data, bh_jobq **out);
/* Queues `job` (the caller's until done runs with it). Any thread.
 * 0; -EAGAIN full (max_queued waiting); -ESHUTDOWN closing; -EINVAL. */
int bh__jobq_submit(bh_jobq *q, bh_job *job);
/* The `data` the queue was started with. */
void *bh__jobq_data(bh_jobq *q);
/* Loop thread: refuses new jobs, lets the thread run what is queued and
 * joins it, runs done for every job that came back (on the caller's
 * thread, so nothing a job holds leaks), and frees the queue once the loop
 * closes its handle. NULL is a no-op. */
void bh__jobq_close(bh_jobq *q);

#endif
