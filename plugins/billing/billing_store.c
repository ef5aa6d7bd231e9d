/*
 * The billing store: the plugin's own SQLite file (never the core's, so a
 * billing disk problem stays in the billing compartment), used from the
 * thread of a core job queue (jobq_new) so no statement ever runs on the
 * event loop.
 *
 * Handlers queue jobs; the queue's thread runs what is queued (up to a
 * batch) in one transaction and the core hands the finished jobs back to
 * the loop. The file is
 * in WAL mode with a busy timeout, so the worker processes sharing it take
 * turns. Migrations (schema/billing, compiled in) run under an immediate
 * transaction; PRAGMA user_version records the last one applied, so every
 * process may run them and only the first does the work.
 *
 * A store failure (file unreadable, disk full, locked past the timeout)
 * fails the batch with status -EIO: the client is told the billing records
 * are unavailable, never that the payment provider is down. The next batch
 * reopens the file, so the compartment recovers by itself.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing.h"
#include "billing_schema.h"

#define BILLING_BATCH 64
#define BILLING_QUEUE_MAX 4096

/* the next job of a batch: bh_job is the first member */
#define NEXT(j) ((billing_job *)(void *)(j)->job.next)
/* Seen event ids are kept this long: far past any timestamp tolerance, so
 * a replay is refused by its id while its signature could still pass. */
#define BILLING_EVENT_RETENTION_S (30 * 86400)

billing_job *billing_job_new(int op, int route, bh_req *req) {
  billing_job *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->op = op;
  j->route = route;
  j->req = req;
  j->quantity = 1;
  return j;
}

void billing_job_free(billing_job *j) {
  if (j == NULL) return;
  free(j->user_id);
  free(j->price_id);
  free(j->idem_key);
  free(j->event_id);
  free(j->event_type);
  free(j->ev_user);
  free(j->ev_customer);
  free(j->ev_subscription);
  free(j->customer_id);
  free(j);
}

/* ---- the database (store thread only) ---------------------------------- */

static int exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int user_version(sqlite3 *db, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

static int migrate(sqlite3 *db) {
  size_t n = sizeof(billing_migrations) / sizeof(billing_migrations[0]);
  int last = billing_migrations[n - 1].version;
  int64_t have = 0;
  int rc = user_version(db, &have);
  if (rc != SQLITE_OK || have == last) return rc;
  if ((rc = exec(db, "BEGIN IMMEDIATE")) != SQLITE_OK) return rc;
  /* another process may have migrated while we waited for the lock */
  rc = user_version(db, &have);
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
    if (billing_migrations[i].version <= have) continue;
    rc = exec(db, billing_migrations[i].sql);
    if (rc == SQLITE_OK) {
      char sql[64];
      snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
               billing_migrations[i].version);
      rc = exec(db, sql);
    }
  }
  if (rc == SQLITE_OK && have > last)
    rc = SQLITE_MISMATCH; /* written by a newer plugin: leave it alone */
  if (rc == SQLITE_OK) rc = exec(db, "COMMIT");
  if (rc != SQLITE_OK) exec(db, "ROLLBACK");
  return rc;
}

static void db_close(billing_store *s) {
  if (s->db) sqlite3_close_v2(s->db);
  s->db = NULL;
}

/* Contention with another process (its write lock, its WAL recovery, its
 * switch to WAL mode): worth another try in a moment. */
static int busy(int rc) {
  rc &= 0xff;
  return rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_PROTOCOL;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int db_open(billing_store *s) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(
      s->cfg->db_path, &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, s->cfg->busy_timeout_ms);
  if (rc == SQLITE_OK) rc = exec(db, "PRAGMA journal_mode = WAL");
  if (rc == SQLITE_OK) rc = exec(db, "PRAGMA synchronous = NORMAL");
  if (rc == SQLITE_OK) rc = migrate(db);
  if (rc != SQLITE_OK) {
    sqlite3_close_v2(db);
    return rc;
  }
  s->db = db;
  return SQLITE_OK;
}

/* Opens (and migrates) the file unless open. Every worker process does this
 * at about the same moment on a fresh file, and a few steps (switching to
 * WAL, the first recovery) answer SQLITE_BUSY without waiting: retry those
 * for up to the busy timeout. */
static int db_ensure(billing_store *s) {
  if (s->db) return SQLITE_OK;
  long waited = 0;
  for (;;) {
    int rc = db_open(s);
    if (rc == SQLITE_OK || !busy(rc) || waited >= s->cfg->busy_timeout_ms)
      return rc;
    pause_ms(10);
    waited += 10;
  }
}

static char *column_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? billing_strdup((const char *)t) : NULL;
}

static int op_lookup(sqlite3 *db, billing_job *j) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      db, "SELECT customer_id FROM customers WHERE user_id = ?1", -1, &st,
      NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, j->user_id, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      j->customer_id = column_dup(st, 0);
      j->status = j->customer_id ? 0 : -ENOMEM;
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      j->status = -ENOENT;
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

/* One statement with up to four text parameters (NULL binds NULL) and an
 * integer as ?5. */
static int run(sqlite3 *db, const char *sql, const char *a, const char *b,
               const char *c, const char *d, int64_t n) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  const char *v[4] = {a, b, c, d};
  int np = rc == SQLITE_OK ? sqlite3_bind_parameter_count(st) : 0;
  for (int i = 0; rc == SQLITE_OK && i < 4 && i < np; i++)
    rc = v[i] ? sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC)
              : sqlite3_bind_null(st, i + 1);
  if (rc == SQLITE_OK && np >= 5) rc = sqlite3_bind_int64(st, 5, n);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) rc = SQLITE_OK;
  sqlite3_finalize(st);
  return rc;
}

static int op_event(sqlite3 *db, billing_job *j) {
  int rc = run(db,
               "INSERT INTO provider_events (event_id, type, received_at) "
               "VALUES (?1, ?2, ?5) ON CONFLICT (event_id) DO NOTHING",
               j->event_id, j->event_type, NULL, NULL, j->now);
  if (rc != SQLITE_OK) return rc;
  if (sqlite3_changes(db) == 0) {
    j->status = -EEXIST;
    return SQLITE_OK;
  }
  if (j->ev_user && j->ev_customer) {
    /* a completed checkout: this user's customer from now on */
    rc = run(db,
             "INSERT INTO customers (user_id, customer_id, subscription_id, "
             "created_at, updated_at) VALUES (?1, ?2, ?3, ?5, ?5) "
             "ON CONFLICT (user_id) DO UPDATE SET customer_id = "
             "excluded.customer_id, subscription_id = "
             "coalesce(excluded.subscription_id, subscription_id), "
             "updated_at = excluded.updated_at",
             j->ev_user, j->ev_customer, j->ev_subscription, NULL, j->now);
  } else if (j->ev_customer && strcmp(j->event_type, "customer.deleted") == 0) {
    /* the provider no longer has a billing record for these users */
    rc = run(db, "DELETE FROM customers WHERE customer_id = ?1", j->ev_customer,
             NULL, NULL, NULL, 0);
  }
  if (rc == SQLITE_OK)
    rc = run(db, "DELETE FROM provider_events WHERE received_at < ?5", NULL,
             NULL, NULL, NULL, j->now - BILLING_EVENT_RETENTION_S);
  j->status = 0;
  return rc;
}

static int job_writes(const billing_job *j) {
  return j->op == BILLING_OP_EVENT;
}

static void fail_all(billing_job *batch) {
  for (billing_job *j = batch; j; j = NEXT(j)) {
    j->status = -EIO;
    free(j->customer_id);
    j->customer_id = NULL;
  }
}

/* Runs a batch once; every job leaves with its status set. Returns 0,
 * -EAGAIN when contention failed it (nothing was written), or -EIO. */
static int run_batch_once(billing_store *s, billing_job *batch) {
  int erc = db_ensure(s);
  if (erc != SQLITE_OK) {
    fail_all(batch);
    return busy(erc) ? -EAGAIN : -EIO;
  }
  int writes = 0;
  for (billing_job *j = batch; j; j = NEXT(j))
    writes |= job_writes(j);
  int rc = exec(s->db, writes ? "BEGIN IMMEDIATE" : "BEGIN");
  for (billing_job *j = batch; rc == SQLITE_OK && j; j = NEXT(j)) {
    rc = exec(s->db, "SAVEPOINT job");
    if (rc != SQLITE_OK) break;
    int orc =
        j->op == BILLING_OP_LOOKUP ? op_lookup(s->db, j) : op_event(s->db, j);
    if (orc != SQLITE_OK) {
      int prim = orc & 0xff;
      if (prim == SQLITE_CONSTRAINT || prim == SQLITE_MISMATCH ||
          prim == SQLITE_TOOBIG) {
        j->status = -EIO; /* this job only */
        rc = exec(s->db, "ROLLBACK TO job");
      } else {
        rc = orc; /* the store itself failed: the whole batch does */
        break;
      }
    }
    if (rc == SQLITE_OK) rc = exec(s->db, "RELEASE job");
  }
  if (rc == SQLITE_OK) rc = exec(s->db, "COMMIT");
  if (rc != SQLITE_OK) {
    if (!sqlite3_get_autocommit(s->db)) exec(s->db, "ROLLBACK");
    fail_all(batch);
    /* a busy database is still our file; anything else may not be */
    if (busy(rc)) return -EAGAIN;
    db_close(s);
    return -EIO;
  }
  return 0;
}

static int run_batch(billing_store *s, billing_job *batch) {
  int rc = run_batch_once(s, batch);
  for (int i = 0; rc == -EAGAIN && i < 3; i++) {
    pause_ms(10); /* the store thread may wait: nothing else runs on it */
    for (billing_job *j = batch; j; j = NEXT(j))
      j->status = 0;
    rc = run_batch_once(s, batch);
  }
  return rc;
}

/* ---- the queue's callbacks -------------------------------------------- */

static void store_thread_start(void *data) {
  billing_store *s = data;
  if (s->postgres) {
    atomic_store(&s->down, billing_pg_ensure(s) != 0);
    return;
  }
  /* open (and migrate) now: a broken path shows in health before the
   * first request needs the file */
  atomic_store(&s->down, db_ensure(s) != SQLITE_OK);
}

static void store_run(bh_job *batch, void *data) {
  billing_store *s = data;
  billing_job *first = (billing_job *)(void *)batch;
  int rc = s->postgres ? billing_pg_run_batch(s, first) : run_batch(s, first);
  atomic_store(&s->down, rc != 0);
}

static void store_thread_stop(void *data) {
  db_close(data);
  billing_pg_close(data);
}

int billing_store_start(billing_store *s, const billing_config *cfg,
                        bh_ctx *ctx, void (*done)(bh_job *, void *),
                        void *owner) {
  memset(s, 0, sizeof(*s));
  s->cfg = cfg;
  s->owner = owner;
  s->ctx = ctx;
  bh_store_info info = {.size = sizeof(info)};
  if (BH_SVC_HAS(BH__SVC(ctx), store_info) &&
      bh_store_info_get(ctx, &info) == 0)
    s->postgres = strcmp(info.backend, "postgres") == 0;
  bh_jobq_def def = {.size = sizeof(def),
                     .name = "billing-store",
                     .thread_start = store_thread_start,
                     .run = store_run,
                     .done = done,
                     .thread_stop = store_thread_stop,
                     .max_batch = BILLING_BATCH,
                     .max_queued = BILLING_QUEUE_MAX};
  return bh_jobq_new(ctx, &def, s, &s->q);
}

int billing_store_submit(billing_store *s, billing_job *j) {
  if (s->q == NULL) return -ESHUTDOWN;
  return bh_jobq_submit(s->q, &j->job);
}

int billing_store_down(billing_store *s) {
  return s->q != NULL && atomic_load(&s->down);
}

void billing_store_stop(billing_store *s) {
  if (s->q) bh_jobq_close(s->q);
  s->q = NULL;
}
