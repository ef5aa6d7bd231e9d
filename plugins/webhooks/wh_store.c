/*
 * The store thread: the API's SQLite work, off the event loop.
 *
 * Handlers queue jobs; this thread takes what is queued (up to a batch),
 * runs it in ONE transaction, each job under its own savepoint, commits
 * once, and hands the finished jobs back through the plugin's wakeup. One
 * commit per batch is what lets FULL durability (an fsync per commit)
 * keep up with a burst of events: the disk pays once for many events.
 *
 * A failure of the store itself (file gone, disk full, locked past the
 * busy timeout) fails the whole batch with webhooks.unavailable; the next
 * batch tries again, so the compartment recovers by itself.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh.h"

#define WH_BATCH 64
#define WH_QUEUE_MAX 4096

wh_job *wh_job_new(wh_op op, bh_req *req, const wh_config *cfg) {
  wh_job *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->op = op;
  j->req = req;
  j->cfg = cfg;
  return j;
}

void wh_job_free(wh_job *j) {
  if (j == NULL) return;
  free(j->owner);
  free(j->url);
  free(j->description);
  free(j->type);
  free(j->data);
  free(j->idem_key);
  for (size_t i = 0; i < j->nevents; i++)
    free(j->events[i]);
  free(j->events);
  free(j->body);
  free(j);
}

static int job_writes(const wh_job *j) {
  switch (j->op) {
  case WH_OP_EP_LIST:
  case WH_OP_EP_GET:
  case WH_OP_DLV_LIST:
  case WH_OP_DLV_GET:
  case WH_OP_STREAM_POLL: return 0;
  default: return 1;
  }
}

static void fail_all(wh_job *batch) {
  for (wh_job *j = batch; j; j = j->next) {
    free(j->body);
    j->body = NULL;
    j->code = "webhooks.unavailable";
    j->wake_dispatcher = 0;
  }
}

/* Runs a batch; every job leaves with either body or code set. */
static void run_batch(wh_store *s, wh_job *batch) {
  wh_db *db = &s->db;
  if (wh_db_ensure(db) != 0) {
    wh_set_down(s->wp, &s->wp->store_down, 1, "store");
    fail_all(batch);
    return;
  }
  int writes = 0;
  for (wh_job *j = batch; j; j = j->next)
    writes |= job_writes(j);
  int rc = writes ? wh_db_write_begin(db) : wh_db_exec(db, "BEGIN");
  int locked = writes && rc == SQLITE_OK;
  for (wh_job *j = batch; rc == SQLITE_OK && j; j = j->next) {
    rc = wh_db_exec(db, "SAVEPOINT job");
    if (rc != SQLITE_OK) break;
    int orc = wh_ops_run(db, j);
    if (orc != SQLITE_OK && wh_db_fatal(orc)) {
      rc = orc;
      break;
    }
    if (orc != SQLITE_OK || (j->code == NULL && j->body == NULL)) {
      free(j->body); /* a constraint we did not expect: a bug, not an outage */
      j->body = NULL;
      j->code = "generic.internal";
    }
    /* a refused job (not found, ...) leaves nothing half-written */
    if (j->code) rc = wh_db_exec(db, "ROLLBACK TO job");
    if (rc == SQLITE_OK) rc = wh_db_exec(db, "RELEASE job");
  }
  if (locked) {
    int end = wh_db_write_end(db, rc == SQLITE_OK);
    if (rc == SQLITE_OK) rc = end;
  } else if (rc == SQLITE_OK) {
    rc = wh_db_exec(db, "COMMIT");
  }
  if (rc != SQLITE_OK) {
    if (db->h && !sqlite3_get_autocommit(db->h)) wh_db_exec(db, "ROLLBACK");
    fail_all(batch);
    /* a busy database is still our file; anything else may not be */
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
      wh_db_close(db);
      db->failing = 1;
    }
    wh_set_down(s->wp, &s->wp->store_down, 1, "store");
    return;
  }
  wh_set_down(s->wp, &s->wp->store_down, 0, "store");
}

static void *store_main(void *arg) {
  wh_store *s = arg;
  pthread_setname_np(pthread_self(), "wh-store"); /* for top -H, perf */
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->q_head == NULL && !s->stopping)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->q_head == NULL) { /* stopping, and nothing left to run */
      pthread_mutex_unlock(&s->mu);
      break;
    }
    wh_job *batch = s->q_head, *last = batch;
    size_t n = 1;
    while (last->next && n < WH_BATCH) {
      last = last->next;
      n++;
    }
    s->q_head = last->next;
    if (s->q_head == NULL) s->q_tail = NULL;
    s->queued -= n;
    last->next = NULL;
    pthread_mutex_unlock(&s->mu);

    run_batch(s, batch);
    int kick = 0;
    for (wh_job *j = batch; j; j = j->next)
      kick |= j->wake_dispatcher;

    pthread_mutex_lock(&s->mu);
    if (s->done_tail)
      s->done_tail->next = batch;
    else
      s->done_head = batch;
    s->done_tail = last;
    pthread_mutex_unlock(&s->mu);
    bh_wakeup_send(s->wp->wakeup);
    if (kick && s->wp->disp) wh_dispatch_kick(s->wp->disp);
  }
  wh_db_close(&s->db);
  return NULL;
}

int wh_store_start(wh_store *s, wh_plugin *wp) {
  memset(s, 0, sizeof(*s));
  s->wp = wp;
  s->db.cfg = &wp->cfg;
  s->db.write_mu = &wp->write_mu;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  int rc = pthread_create(&s->thread, NULL, store_main, s);
  if (rc != 0) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    return -rc;
  }
  s->started = 1;
  return 0;
}

int wh_store_submit(wh_store *s, wh_job *j) {
  if (!s->started) return -ESHUTDOWN;
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  if (s->stopping)
    rc = -ESHUTDOWN;
  else if (s->queued >= WH_QUEUE_MAX)
    rc = -EAGAIN; /* shed, do not pile up */
  if (rc == 0) {
    j->next = NULL;
    if (s->q_tail)
      s->q_tail->next = j;
    else
      s->q_head = j;
    s->q_tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

wh_job *wh_store_take_done(wh_store *s) {
  if (!s->started) return NULL;
  pthread_mutex_lock(&s->mu);
  wh_job *j = s->done_head;
  s->done_head = s->done_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  return j;
}

void wh_store_stop(wh_store *s) {
  if (!s->started) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
}

void wh_store_destroy(wh_store *s) {
  if (!s->started) return;
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  s->started = 0;
}
