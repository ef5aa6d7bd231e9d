/*
 * The webhooks database: its own SQLite file (never the core's), in WAL
 * mode so readers never wait for the writer, with a busy timeout so the
 * worker processes sharing it take turns instead of failing.
 *
 * Migrations are the files of schema/webhooks/, compiled in (wh_schema.h is
 * generated from them by the build), applied in order under an immediate
 * transaction; PRAGMA user_version records the last one applied, so every
 * process may run them at start and only the first does the work.
 *
 * The file is watched: every use first checks that the path still names
 * the file the connection has open. A file deleted or moved away, or a
 * directory replaced, makes the store unavailable (answers are
 * webhooks.unavailable) until the file is back, instead of writing into a
 * file nobody will ever read again.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wh.h"
#include "wh_schema.h"

#define WH_REOPEN_EVERY_MS 100

int wh_db_exec(wh_db *db, const char *sql) {
  if (db->postgres) return wh_db_pg_exec(db, sql);
  return sqlite3_exec(db->h, sql, NULL, NULL, NULL);
}

int wh_db_in_tx(wh_db *db) {
  if (db->postgres) return wh_db_pg_in_tx(db);
  return db->h && !sqlite3_get_autocommit(db->h);
}

int64_t wh_db_changes(wh_db *db) {
  return db->postgres ? db->pg_changes : sqlite3_changes(db->h);
}

/* SQLite's own busy timeout sleeps up to 100 ms between tries; the lock
 * is usually held for a millisecond, so poll finely instead, up to
 * busy_timeout_ms in all. */
static int on_busy(void *arg, int count) {
  wh_db *db = arg;
  int64_t now = wh_mono_ms();
  if (count == 0) db->busy_since = now;
  if (now - db->busy_since >= db->cfg->busy_timeout_ms) return 0;
  usleep(count < 50 ? 250 : 2000);
  return 1;
}

int wh_db_write_begin(wh_db *db) {
  /* PostgreSQL: row locks order the writers, of every instance */
  if (db->postgres) return wh_db_exec(db, "BEGIN");
  if (db->write_mu) pthread_mutex_lock(db->write_mu);
  int rc = wh_db_exec(db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK && db->write_mu) pthread_mutex_unlock(db->write_mu);
  return rc;
}

int wh_db_write_end(wh_db *db, int commit) {
  if (db->postgres) {
    int rc = commit ? wh_db_exec(db, "COMMIT") : SQLITE_ABORT;
    if (rc != SQLITE_OK && wh_db_in_tx(db)) wh_db_exec(db, "ROLLBACK");
    return rc;
  }
  int rc = commit ? wh_db_exec(db, "COMMIT") : SQLITE_ABORT;
  if (rc != SQLITE_OK && db->h && !sqlite3_get_autocommit(db->h))
    wh_db_exec(db, "ROLLBACK");
  if (db->write_mu) pthread_mutex_unlock(db->write_mu);
  return rc;
}

static int pragma_int(sqlite3 *h, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

static int migrate(wh_db *db) {
  size_t n = sizeof(wh_migrations) / sizeof(wh_migrations[0]);
  int64_t have = 0;
  int rc = pragma_int(db->h, "PRAGMA user_version", &have);
  if (rc != SQLITE_OK) return rc;
  if (have == wh_migrations[n - 1].version) return SQLITE_OK;
  rc = wh_db_write_begin(db);
  if (rc != SQLITE_OK) return rc;
  /* another process may have migrated while we waited for the lock */
  rc = pragma_int(db->h, "PRAGMA user_version", &have);
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
    if (wh_migrations[i].version <= have) continue;
    rc = wh_db_exec(db, wh_migrations[i].sql);
    if (rc == SQLITE_OK) {
      char sql[64];
      snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
               wh_migrations[i].version);
      rc = wh_db_exec(db, sql);
    }
  }
  if (rc == SQLITE_OK && have > wh_migrations[n - 1].version)
    rc = SQLITE_MISMATCH; /* written by a newer plugin: do not touch it */
  int end = wh_db_write_end(db, rc == SQLITE_OK);
  return rc == SQLITE_OK ? end : rc;
}

int wh_db_open(wh_db *db, const wh_config *cfg, int create) {
  db->cfg = cfg;
  db->h = NULL;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
              (create ? SQLITE_OPEN_CREATE : 0);
  sqlite3 *h = NULL;
  int rc = sqlite3_open_v2(cfg->db_path, &h, flags, NULL);
  if (rc != SQLITE_OK) {
    sqlite3_close(h);
    db->failing = 1;
    return -EIO;
  }
  db->h = h;
  sqlite3_busy_handler(h, on_busy, db);
  sqlite3_extended_result_codes(h, 0);
  char sql[128];
  int64_t ignored;
  rc = pragma_int(h, "PRAGMA journal_mode = WAL", &ignored);
  if (rc == SQLITE_OK) {
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous = %s; PRAGMA foreign_keys = ON",
             cfg->sync_full && !db->relaxed ? "FULL" : "NORMAL");
    rc = wh_db_exec(db, sql);
  }
  if (rc == SQLITE_OK) rc = migrate(db);
  struct stat st;
  if (rc == SQLITE_OK && stat(cfg->db_path, &st) != 0) rc = SQLITE_CANTOPEN;
  if (rc != SQLITE_OK) {
    sqlite3_close(h);
    db->h = NULL;
    db->failing = 1;
    return rc == SQLITE_MISMATCH ? -EPROTO : -EIO;
  }
  db->dev = st.st_dev;
  db->ino = st.st_ino;
  db->failing = 0;
  db->ever_opened = 1;
  return 0;
}

wh_stmt *wh_db_stmt(wh_db *db, const char *sql, int *rc) {
  int n = (int)(sizeof(db->cache) / sizeof(db->cache[0]));
  for (int i = 0; i < db->ncache; i++) {
    if (db->cache[i].sql != sql) continue;
    wh_unbind(db->cache[i].st);
    return db->cache[i].st;
  }
  if (db->ncache == n) { /* sized for every query the plugin has */
    *rc = SQLITE_INTERNAL;
    return NULL;
  }
  wh_stmt *st = wh_stmt_new(db, sql, rc);
  if (st == NULL) return NULL;
  db->cache[db->ncache].sql = sql;
  db->cache[db->ncache].st = st;
  db->ncache++;
  return st;
}

void wh_db_close(wh_db *db) {
  for (int i = 0; i < db->ncache; i++)
    wh_stmt_free(db->cache[i].st);
  db->ncache = 0;
  if (db->h) sqlite3_close_v2(db->h);
  db->h = NULL;
  wh_db_pg_close(db);
}

int wh_db_ensure(wh_db *db) {
  if (db->postgres) return wh_db_pg_ensure(db);
  if (db->h) {
    struct stat st;
    if (stat(db->cfg->db_path, &st) == 0 && st.st_dev == db->dev &&
        st.st_ino == db->ino)
      return 0;
    wh_db_close(db);
    db->failing = 1;
    db->retry_at_ms = 0;
  }
  int64_t now = wh_mono_ms();
  if (now < db->retry_at_ms) return -EAGAIN;
  db->retry_at_ms = now + WH_REOPEN_EVERY_MS;
  /* never create it again: a missing file means it was taken away */
  return wh_db_open(db, db->cfg, !db->ever_opened);
}

int wh_db_fatal(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
  case SQLITE_CONSTRAINT: return 0;
  default: return 1;
  }
}
