/*
 * The magic-link store on SQLite: the auth plugin's own file (magic_link
 * database under its data directory), in WAL mode with a busy timeout so
 * the worker processes sharing it take turns; and the switch to
 * magic_db_pg.c when [store] backend = postgres. The job queue's thread
 * only.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "auth_plugin.h"
#include "magic_db.h"

static struct {
  bh_ctx *ctx;
  int postgres;
  sqlite3 *db;
} D;

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS accounts (email_hash BLOB PRIMARY KEY, "
    "  user_id TEXT NOT NULL, seen_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tokens (selector TEXT PRIMARY KEY, "
    "  verifier BLOB NOT NULL, email_hash BLOB NOT NULL, "
    "  user_id TEXT NOT NULL, redirect TEXT NOT NULL, "
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS tokens_by_email ON tokens(email_hash);"
    "CREATE TABLE IF NOT EXISTS limits (key BLOB PRIMARY KEY, "
    "  window_start INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS idp_state (id INTEGER PRIMARY KEY "
    "  CHECK (id = 1), down INTEGER NOT NULL, at INTEGER NOT NULL);"
    "PRAGMA user_version = 1;";

void mdb_init(bh_ctx *ctx) {
  bh_store_info info = {.size = sizeof(info)};
  D.ctx = ctx;
  D.postgres = BH_SVC_HAS(BH__SVC(ctx), store_info) &&
               BH_SVC_HAS(BH__SVC(ctx), store_connect) &&
               bh_store_info_get(ctx, &info) == 0 &&
               strcmp(info.backend, "postgres") == 0;
}

const char *mdb_name(void) {
  return D.postgres ? "PostgreSQL schema bh_auth" : auth_g.magic.db_path;
}

int mdb_ensure(void) {
  if (D.postgres) return mdb_pg_ensure(D.ctx);
  if (D.db) return 0;
  sqlite3 *h = NULL;
  int rc = sqlite3_open_v2(
      auth_g.magic.db_path, &h,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(h, 5000);
    rc = sqlite3_exec(h,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = "
                      "NORMAL;",
                      NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(h, SCHEMA, NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    sqlite3_close(h);
    return -EIO;
  }
  D.db = h;
  return 0;
}

void mdb_close(void) {
  if (D.db) sqlite3_close(D.db);
  D.db = NULL;
  mdb_pg_close(D.ctx);
}

static int exec1(const char *sql) {
  if (D.postgres) return mdb_pg_exec(sql);
  return sqlite3_exec(D.db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

int mdb_begin(void) {
  return exec1(D.postgres ? "BEGIN" : "BEGIN IMMEDIATE");
}

int mdb_commit(void) {
  return exec1("COMMIT");
}

void mdb_rollback(void) {
  int open =
      D.postgres ? mdb_pg_in_tx() : D.db && !sqlite3_get_autocommit(D.db);
  if (open) exec1("ROLLBACK");
}

static sqlite3_stmt *prep(const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(D.db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
  return st;
}

/* Steps a statement once and finalizes it: 1 a row, 0 done, -EIO. */
static int step1(sqlite3_stmt *st) {
  if (st == NULL) return -EIO;
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

static void blob(sqlite3_stmt *st, int i, const unsigned char *h) {
  if (st) sqlite3_bind_blob(st, i, h, MAGIC_HASH_LEN, SQLITE_STATIC);
}

int mdb_limit_get(const unsigned char *key, int64_t *start, int64_t *count) {
  if (D.postgres) return mdb_pg_limit_get(key, start, count);
  sqlite3_stmt *st =
      prep("SELECT window_start, count FROM limits WHERE key = ?1");
  if (st == NULL) return -EIO;
  blob(st, 1, key);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *start = sqlite3_column_int64(st, 0);
    *count = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int mdb_limit_put(const unsigned char *key, int64_t start, int64_t count) {
  if (D.postgres) return mdb_pg_limit_put(key, start, count);
  sqlite3_stmt *st =
      prep("INSERT INTO limits (key, window_start, count) VALUES (?1,?2,?3) "
           "ON CONFLICT (key) DO UPDATE SET window_start = excluded."
           "window_start, count = excluded.count");
  blob(st, 1, key);
  if (st) sqlite3_bind_int64(st, 2, start);
  if (st) sqlite3_bind_int64(st, 3, count);
  return step1(st) < 0 ? -EIO : 0;
}

int mdb_idp_down(void) {
  if (D.postgres) return mdb_pg_idp_down();
  sqlite3_stmt *st = prep("SELECT down FROM idp_state WHERE id = 1");
  if (st == NULL) return -EIO;
  int rc = sqlite3_step(st);
  int down = rc == SQLITE_ROW && sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? down : -EIO;
}

int mdb_idp_set(int down, int64_t now) {
  if (D.postgres) return mdb_pg_idp_set(down, now);
  sqlite3_stmt *st = prep(
      "INSERT INTO idp_state (id, down, at) VALUES (1, ?1, ?2) "
      "ON CONFLICT (id) DO UPDATE SET down = excluded.down, at = excluded.at "
      "WHERE down <> excluded.down");
  if (st) sqlite3_bind_int(st, 1, down);
  if (st) sqlite3_bind_int64(st, 2, now);
  return step1(st) < 0 ? -EIO : 0;
}

int mdb_account_get(const unsigned char *email_hash, char *user_id, size_t n) {
  if (D.postgres) return mdb_pg_account_get(email_hash, user_id, n);
  sqlite3_stmt *st = prep("SELECT user_id FROM accounts WHERE email_hash=?1");
  if (st == NULL) return -EIO;
  blob(st, 1, email_hash);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    snprintf(user_id, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int mdb_account_is(const unsigned char *email_hash, const char *user_id) {
  if (D.postgres) return mdb_pg_account_is(email_hash, user_id);
  sqlite3_stmt *st = prep("SELECT 1 FROM accounts WHERE email_hash = ?1 "
                          "AND user_id = ?2");
  blob(st, 1, email_hash);
  if (st) sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
  return step1(st);
}

int mdb_account_put(const unsigned char *email_hash, const char *user_id,
                    int64_t now) {
  if (D.postgres) return mdb_pg_account_put(email_hash, user_id, now);
  sqlite3_stmt *st = prep(
      "INSERT INTO accounts (email_hash, user_id, seen_at) VALUES (?1,?2,?3) "
      "ON CONFLICT (email_hash) DO UPDATE SET user_id = excluded.user_id, "
      "seen_at = excluded.seen_at");
  blob(st, 1, email_hash);
  if (st) sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
  if (st) sqlite3_bind_int64(st, 3, now);
  return step1(st) < 0 ? -EIO : 0;
}

int mdb_token_put(const char *selector, size_t sel_len, const magic_token *t) {
  if (D.postgres) return mdb_pg_token_put(selector, sel_len, t);
  sqlite3_stmt *st =
      prep("INSERT INTO tokens (selector, verifier, email_hash, user_id, "
           "redirect, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (st) {
    sqlite3_bind_text(st, 1, selector, (int)sel_len, SQLITE_STATIC);
    blob(st, 2, t->verifier);
    blob(st, 3, t->email_hash);
    sqlite3_bind_text(st, 4, t->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, t->redirect, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, t->expires_at);
  }
  return step1(st) == 0 ? 0 : -EIO;
}

int mdb_token_get(const char *selector, size_t sel_len, magic_token *t) {
  if (D.postgres) return mdb_pg_token_get(selector, sel_len, t);
  sqlite3_stmt *st = prep("SELECT verifier, email_hash, user_id, redirect, "
                          "expires_at FROM tokens WHERE selector = ?1");
  if (st == NULL) return -EIO;
  sqlite3_bind_text(st, 1, selector, (int)sel_len, SQLITE_STATIC);
  int rc = sqlite3_step(st), found = 0;
  if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == MAGIC_HASH_LEN &&
      sqlite3_column_bytes(st, 1) == MAGIC_HASH_LEN) {
    memcpy(t->verifier, sqlite3_column_blob(st, 0), MAGIC_HASH_LEN);
    memcpy(t->email_hash, sqlite3_column_blob(st, 1), MAGIC_HASH_LEN);
    snprintf(t->user_id, sizeof(t->user_id), "%s",
             (const char *)sqlite3_column_text(st, 2));
    snprintf(t->redirect, sizeof(t->redirect), "%s",
             (const char *)sqlite3_column_text(st, 3));
    t->expires_at = sqlite3_column_int64(st, 4);
    found = 1;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -EIO;
}

int mdb_token_delete(const char *selector, size_t sel_len) {
  if (D.postgres) return mdb_pg_token_delete(selector, sel_len);
  sqlite3_stmt *st = prep("DELETE FROM tokens WHERE selector = ?1");
  if (st) sqlite3_bind_text(st, 1, selector, (int)sel_len, SQLITE_STATIC);
  return step1(st) < 0 ? -EIO : 0;
}

int mdb_tokens_delete_email(const unsigned char *email_hash) {
  if (D.postgres) return mdb_pg_tokens_delete_email(email_hash);
  sqlite3_stmt *st = prep("DELETE FROM tokens WHERE email_hash = ?1");
  blob(st, 1, email_hash);
  return step1(st) < 0 ? -EIO : 0;
}

int mdb_tokens_expire(int64_t before) {
  if (D.postgres) return mdb_pg_tokens_expire(before);
  sqlite3_stmt *st = prep("DELETE FROM tokens WHERE expires_at < ?1");
  if (st) sqlite3_bind_int64(st, 1, before);
  return step1(st) < 0 ? -EIO : 0;
}
