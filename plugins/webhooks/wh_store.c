/*
 * The store: the API's SQLite work, off the event loop, on the thread of a
 * core job queue (jobq_new).
 *
 * Handlers queue jobs; the queue's thread takes what is queued (up to a
 * batch), runs it in ONE transaction, each job under its own savepoint,
 * commits once, and the core hands the finished jobs back to the loop. One
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

/* the next job of a batch: bh_job is the first member */
#define NEXT(j) ((wh_job *)(void *)(j)->job.next)

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
  for (wh_job *j = batch; j; j = NEXT(j)) {
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
  for (wh_job *j = batch; j; j = NEXT(j))
    writes |= job_writes(j);
  int rc = writes ? wh_db_write_begin(db) : wh_db_exec(db, "BEGIN");
  int locked = writes && rc == SQLITE_OK;
  for (wh_job *j = batch; rc == SQLITE_OK && j; j = NEXT(j)) {
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
    if (wh_db_in_tx(db)) wh_db_exec(db, "ROLLBACK");
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

/* ---- the queue's callbacks -------------------------------------------- */

static void store_run(bh_job *batch, void *data) {
  wh_store *s = data;
  wh_job *first = (wh_job *)(void *)batch;
  run_batch(s, first);
  int kick = 0;
  for (wh_job *j = first; j; j = NEXT(j))
    kick |= j->wake_dispatcher;
  if (kick && s->wp->disp) wh_dispatch_kick(s->wp->disp);
}

static void store_done(bh_job *job, void *data) {
  wh_store *s = data;
  wh_api_job_done(s->wp, (wh_job *)(void *)job);
}

static void store_thread_stop(void *data) {
  wh_store *s = data;
  wh_db_close(&s->db);
}

int wh_store_start(wh_store *s, wh_plugin *wp) {
  memset(s, 0, sizeof(*s));
  s->wp = wp;
  s->db.cfg = &wp->cfg;
  s->db.write_mu = wp->postgres ? NULL : &wp->write_mu;
  s->db.ctx = wp->ctx;
  s->db.postgres = wp->postgres;
  bh_jobq_def def = {.size = sizeof(def),
                     .name = "wh-store",
                     .run = store_run,
                     .done = store_done,
                     .thread_stop = store_thread_stop,
                     .max_batch = WH_BATCH,
                     .max_queued = WH_QUEUE_MAX};
  return bh_jobq_new(wp->ctx, &def, s, &s->q);
}

int wh_store_submit(wh_store *s, wh_job *j) {
  if (s->q == NULL) return -ESHUTDOWN;
  return bh_jobq_submit(s->q, &j->job);
}

void wh_store_stop(wh_store *s) {
  if (s->q) bh_jobq_close(s->q);
  s->q = NULL;
}
