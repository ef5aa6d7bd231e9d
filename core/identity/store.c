/*
 * The identity store's file, migrations and thread (see store.h).
 * The thread is a job queue of state/jobq.c.
 */
#include "identity/store.h"

#include "state/jobq.h"
#include "state/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A writer in another worker holds the lock for milliseconds; a statement
 * waits this long before it fails (and its caller answers 503). */
#define BH__STORE_BUSY_MS 5000

struct bh__store {
  int backend;
  char *url;          /* postgres */
  uint32_t n, next;   /* connections; the next one to get a job */
  unsigned incidents; /* bh__sconn.incidents of every connection */
  bh_jobq **q;        /* one queue (and thread) per connection */
  bh__sconn conn[];   /* each queue's, touched by its thread only */
};

/* Not time(NULL): that reads the coarse clock, which can lag the precise
 * one by a tick at a second boundary, and a token minted elsewhere in that
 * millisecond would then look issued in the future. */
int64_t bh__store_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec;
}

void bh__store_token(const char *prefix, size_t nbytes, char *out,
                     size_t outlen) {
  unsigned char raw[32];
  char b64[sodium_base64_ENCODED_LEN(32,
                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  if (nbytes > sizeof(raw)) nbytes = sizeof(raw);
  randombytes_buf(raw, nbytes);
  sodium_bin2base64(b64, sizeof(b64), raw, nbytes,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  snprintf(out, outlen, "%s%s", prefix, b64);
  sodium_memzero(raw, sizeof(raw));
}

void bh__store_id(const char *prefix, char *out, size_t outlen) {
  bh__store_token(prefix, 16, out, outlen);
}

void bh__store_hash(const char *s, size_t n, unsigned char out[32]) {
  crypto_hash_sha256(out, (const unsigned char *)s, n);
}

/* ---------------------------------------------------------------------- */
/* File and migrations                                                     */
/* ---------------------------------------------------------------------- */

int bh__store_version(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int v = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) ==
          SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

int bh__store_migrate(sqlite3 *db, const bh__migration *m, size_t n, char *err,
                      size_t errlen) {
  int cur = bh__store_version(db);
  if (cur < 0) {
    snprintf(err, errlen, "cannot read the schema version: %s",
             sqlite3_errmsg(db));
    return -EIO;
  }
  int last = n ? m[n - 1].version : 0;
  if (cur > last) {
    snprintf(err, errlen,
             "the database is at schema version %d, newer than this "
             "bulkhead knows (%d): refusing to run an older binary on it",
             cur, last);
    return -EINVAL;
  }
  if (cur == last) return 0;
  char *msg = NULL;
  /* IMMEDIATE: a second process migrating at the same time waits for us
   * (busy timeout), then finds the work done */
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot start the migration: %s",
             msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -EIO;
  }
  cur = bh__store_version(db); /* another process may have won the race */
  int rc = 0;
  const char *failed = NULL;
  if (sqlite3_exec(db,
                   "CREATE TABLE IF NOT EXISTS bh_schema_migrations ("
                   "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at INTEGER NOT NULL)",
                   NULL, NULL, &msg) != SQLITE_OK)
    failed = "bh_schema_migrations";
  for (size_t i = 0; !failed && i < n; i++) {
    if (m[i].version <= cur) continue;
    if (sqlite3_exec(db, m[i].sql, NULL, NULL, &msg) != SQLITE_OK) {
      failed = m[i].name;
      break;
    }
    char ins[200];
    snprintf(ins, sizeof(ins),
             "INSERT INTO bh_schema_migrations VALUES (%d, '%s', %lld)",
             m[i].version, m[i].name, (long long)bh__store_now());
    if (strchr(m[i].name, '\'') ||
        sqlite3_exec(db, ins, NULL, NULL, &msg) != SQLITE_OK)
      failed = m[i].name;
  }
  if (!failed) {
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", last);
    if (sqlite3_exec(db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
      failed = "commit";
  }
  if (failed) {
    snprintf(err, errlen,
             "migration schema/core/%s failed: %s (nothing applied; the "
             "file stays at schema version %d)",
             failed, msg ? msg : sqlite3_errmsg(db), cur);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    rc = -EIO;
  }
  sqlite3_free(msg);
  return rc;
}

int bh__store_open(const char *path, const bh__migration *m, size_t n,
                   sqlite3 **out, char *err, size_t errlen) {
  *out = NULL;
  /* created 0600 before SQLite touches it: it holds credential hashes */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  close(fd);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
  char *msg = NULL;
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, BH__STORE_BUSY_MS);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                      " PRAGMA foreign_keys = ON;",
                      NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path,
             msg  ? msg
             : db ? sqlite3_errmsg(db)
                  : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close_v2(db);
    return -EIO;
  }
  char why[400];
  rc = bh__store_migrate(db, m, n, why, sizeof(why));
  if (rc) {
    snprintf(err, errlen, "%s: %s", path, why);
    sqlite3_close_v2(db);
    return rc;
  }
  *out = db;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The threads: job queues of state/jobq.c                                 */
/* ---------------------------------------------------------------------- */

static void bh__store_run(bh_job *batch, void *data) {
  bh__sconn *c = data;
  int up = c->backend != BH__STORE_POSTGRES || bh__pg_ensure(c) == 0;
  for (bh_job *j = batch; j; j = j->next) {
    bh__sjob *sj = (bh__sjob *)(void *)j; /* the first member */
    sj->work(c, sj);
  }
  /* a statement that failed on a connection that broke under it */
  if (c->backend == BH__STORE_POSTGRES && up) {
    up = c->pg && PQstatus(c->pg) == CONNECTION_OK;
    if (!up) bh__pg_incident(c);
  }
  __atomic_store_n(&c->up, up, __ATOMIC_RELAXED);
  /* written only when it changes: a store, even of the same value, takes
   * the line from every other worker's cache */
  if (bh__shm_g &&
      __atomic_load_n(&bh__shm_g->identity_store_down, __ATOMIC_RELAXED) != !up)
    __atomic_store_n(&bh__shm_g->identity_store_down, !up, __ATOMIC_RELAXED);
}

static void bh__store_done(bh_job *j, void *data) {
  (void)data;
  bh__sjob *sj = (bh__sjob *)(void *)j;
  sj->done(sj); /* may free it */
}

static void bh__store_thread_stop(void *data) {
  bh__sconn *c = data;
  if (c->pg) PQfinish(c->pg);
  c->pg = NULL;
}

static int bh__store_queues(uv_loop_t *loop, bh__store *s) {
  /* one job at a time per connection: each job is its own transaction */
  bh_jobq_def def = {.size = sizeof(def),
                     .name = "bh-store",
                     .run = bh__store_run,
                     .done = bh__store_done,
                     .thread_stop = bh__store_thread_stop,
                     .max_batch = 1,
                     .max_queued = UINT32_MAX};
  for (uint32_t i = 0; i < s->n; i++) {
    int rc = bh__jobq_new(loop, NULL, &def, &s->conn[i], &s->q[i]);
    if (rc) return rc;
  }
  return 0;
}

static void bh__store_free(bh__store *s) {
  for (uint32_t i = 0; i < s->n; i++)
    bh__jobq_close(s->q[i]);
  for (uint32_t i = 0; i < s->n; i++)
    if (s->conn[i].lite) sqlite3_close_v2(s->conn[i].lite);
  /* a queue that never started leaves its connection open */
  for (uint32_t i = 0; i < s->n; i++)
    if (s->conn[i].pg) PQfinish(s->conn[i].pg);
  free(s->q);
  free(s->url);
  free(s);
}

static bh__store *bh__store_alloc(uint32_t n) {
  bh__store *s = calloc(1, sizeof(*s) + n * sizeof(s->conn[0]));
  if (s == NULL) return NULL;
  s->q = calloc(n, sizeof(*s->q));
  if (s->q == NULL) {
    free(s);
    return NULL;
  }
  s->n = n;
  return s;
}

int bh__store_start(uv_loop_t *loop, sqlite3 *db, bh__store **out) {
  bh__store *s = bh__store_alloc(1);
  if (s == NULL) {
    sqlite3_close_v2(db);
    return -ENOMEM;
  }
  s->conn[0].backend = BH__STORE_SQLITE;
  s->conn[0].lite = db;
  s->conn[0].up = 1;
  int rc = bh__store_queues(loop, s);
  if (rc) {
    bh__store_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int bh__store_start_pg(uv_loop_t *loop, const char *url, uint32_t pool,
                       bh__store **out) {
  if (pool == 0) pool = 1;
  bh__store *s = bh__store_alloc(pool);
  if (s == NULL || (s->url = strdup(url)) == NULL) {
    if (s) bh__store_free(s);
    return -ENOMEM;
  }
  s->backend = BH__STORE_POSTGRES;
  for (uint32_t i = 0; i < pool; i++) {
    s->conn[i].backend = BH__STORE_POSTGRES;
    s->conn[i].url = s->url;
    s->conn[i].incidents = &s->incidents;
    s->conn[i].up = 1; /* until a job finds otherwise */
  }
  int rc = bh__store_queues(loop, s);
  if (rc) {
    bh__store_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int bh__store_submit(bh__store *s, bh__sjob *j) {
  if (s == NULL || j == NULL || j->work == NULL || j->done == NULL)
    return -EINVAL;
  uint32_t i = s->next++ % s->n;
  return bh__jobq_submit(s->q[i], &j->job);
}

void bh__store_stop(bh__store *s) {
  if (s == NULL) return;
  /* the queued jobs run, then their callbacks on this thread, so nothing
   * they own leaks and every request they hold is released */
  bh__store_free(s);
}
