/*
 * The magic-link store on the shared PostgreSQL database ([store] backend
 * = postgres): schema bh_auth through the SDK's store_connect(), migrated
 * from schema/postgres/auth (compiled in). Hashes are stored as lowercase
 * hex text. A rate-limit window is read FOR UPDATE, so two instances
 * counting the same key take turns instead of losing a count.
 *
 * The job queue's thread only. A broken connection fails the job (503)
 * and is reopened by the next one, at most every 500 ms.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_plugin.h"
#include "magic_db.h"
#include "magic_schema_pg.h"

#define MDB_PG_RETRY_MS 500
#define HEX_LEN (2 * MAGIC_HASH_LEN + 1)

static struct {
  PGconn *db;
  int64_t retry_at;
} P;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mdb_pg_close(bh_ctx *ctx) {
  if (P.db) bh_store_disconnect(ctx, P.db);
  P.db = NULL;
}

const bh_store_schema magic_pg_schema = {
    sizeof(bh_store_schema), "bh_auth",
    (const bh_migration *)(const void *)magic_pg_migrations,
    BH_COUNT(magic_pg_migrations)};

int mdb_pg_ensure(bh_ctx *ctx) {
  if (P.db && PQstatus(P.db) == CONNECTION_OK) return 0;
  int64_t now = mono_ms();
  if (now < P.retry_at) return -EAGAIN;
  P.retry_at = now + MDB_PG_RETRY_MS;
  mdb_pg_close(ctx);
  char err[300];
  void *conn = NULL;
  /* NULL: the descriptor's store_schema (magic_pg_schema) */
  int rc = bh_store_connect(ctx, NULL, NULL, 0, &conn, err, sizeof(err));
  if (rc) return rc;
  P.db = conn;
  return 0;
}

int mdb_pg_in_tx(void) {
  return P.db && PQtransactionStatus(P.db) != PQTRANS_IDLE;
}

int mdb_pg_exec(const char *sql) {
  if (P.db == NULL) return -EIO;
  PGresult *r = PQexec(P.db, sql);
  int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok ? 0 : -EIO;
}

static void hex(const unsigned char *h, char out[HEX_LEN]) {
  sodium_bin2hex(out, HEX_LEN, h, MAGIC_HASH_LEN);
}

static int unhex(const char *s, unsigned char out[MAGIC_HASH_LEN]) {
  size_t n = 0;
  return sodium_hex2bin(out, MAGIC_HASH_LEN, s, strlen(s), NULL, &n, NULL) ==
                     0 &&
                 n == MAGIC_HASH_LEN
             ? 0
             : -1;
}

/* One statement: the result when it succeeded (the caller clears it),
 * else NULL. */
static PGresult *q(const char *sql, int n, const char *const *v) {
  if (P.db == NULL) return NULL;
  PGresult *r = PQexecParams(P.db, sql, n, NULL, v, NULL, NULL, 0);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
  PQclear(r);
  return NULL;
}

/* A statement whose rows do not matter: 1 a row, 0 none, -EIO. */
static int q1(const char *sql, int n, const char *const *v) {
  PGresult *r = q(sql, n, v);
  if (r == NULL) return -EIO;
  int rows = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
  PQclear(r);
  return rows;
}

static void num(char out[24], int64_t v) {
  snprintf(out, 24, "%lld", (long long)v);
}

int mdb_pg_limit_get(const unsigned char *key, int64_t *start, int64_t *count) {
  char k[HEX_LEN];
  hex(key, k);
  const char *v[] = {k};
  PGresult *r = q("SELECT window_start, count FROM limits WHERE key = $1 "
                  "FOR UPDATE",
                  1, v);
  if (r == NULL) return -EIO;
  int found = PQntuples(r) > 0;
  if (found) {
    *start = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *count = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  }
  PQclear(r);
  return found;
}

int mdb_pg_limit_put(const unsigned char *key, int64_t start, int64_t count) {
  char k[HEX_LEN], s[24], c[24];
  hex(key, k);
  num(s, start);
  num(c, count);
  const char *v[] = {k, s, c};
  return q1("INSERT INTO limits (key, window_start, count) VALUES ($1, $2, "
            "$3) ON CONFLICT (key) DO UPDATE SET window_start = "
            "excluded.window_start, count = excluded.count",
            3, v) < 0
             ? -EIO
             : 0;
}

int mdb_pg_idp_down(void) {
  return q1("SELECT 1 FROM idp_state WHERE id = 1 AND down <> 0", 0, NULL);
}

int mdb_pg_idp_set(int down, int64_t now) {
  char d[24], n[24];
  num(d, down);
  num(n, now);
  const char *v[] = {d, n};
  return q1("INSERT INTO idp_state (id, down, at) VALUES (1, $1, $2) "
            "ON CONFLICT (id) DO UPDATE SET down = excluded.down, at = "
            "excluded.at WHERE idp_state.down <> excluded.down",
            2, v) < 0
             ? -EIO
             : 0;
}

int mdb_pg_account_get(const unsigned char *email_hash, char *user_id,
                       size_t n) {
  char e[HEX_LEN];
  hex(email_hash, e);
  const char *v[] = {e};
  PGresult *r = q("SELECT user_id FROM accounts WHERE email_hash = $1", 1, v);
  if (r == NULL) return -EIO;
  int found = PQntuples(r) > 0;
  if (found) snprintf(user_id, n, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  return found;
}

int mdb_pg_account_is(const unsigned char *email_hash, const char *user_id) {
  char e[HEX_LEN];
  hex(email_hash, e);
  const char *v[] = {e, user_id};
  return q1("SELECT 1 FROM accounts WHERE email_hash = $1 AND user_id = $2", 2,
            v);
}

int mdb_pg_account_put(const unsigned char *email_hash, const char *user_id,
                       int64_t now) {
  char e[HEX_LEN], t[24];
  hex(email_hash, e);
  num(t, now);
  const char *v[] = {e, user_id, t};
  return q1("INSERT INTO accounts (email_hash, user_id, seen_at) VALUES ($1, "
            "$2, $3) ON CONFLICT (email_hash) DO UPDATE SET user_id = "
            "excluded.user_id, seen_at = excluded.seen_at",
            3, v) < 0
             ? -EIO
             : 0;
}

/* the selector as a string of its own (it is a prefix of the token) */
static int selector_copy(const char *s, size_t n, char out[65]) {
  if (n > 64) return -1;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

int mdb_pg_token_put(const char *selector, size_t sel_len,
                     const magic_token *t) {
  char sel[65], vh[HEX_LEN], eh[HEX_LEN], exp[24];
  if (selector_copy(selector, sel_len, sel)) return -EIO;
  hex(t->verifier, vh);
  hex(t->email_hash, eh);
  num(exp, t->expires_at);
  const char *v[] = {sel, vh, eh, t->user_id, t->redirect, exp};
  return q1("INSERT INTO tokens (selector, verifier, email_hash, user_id, "
            "redirect, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            6, v) < 0
             ? -EIO
             : 0;
}

int mdb_pg_token_get(const char *selector, size_t sel_len, magic_token *t) {
  char sel[65];
  if (selector_copy(selector, sel_len, sel)) return 0;
  const char *v[] = {sel};
  /* FOR UPDATE: two instances verifying one link take turns, and the
   * second finds it spent */
  PGresult *r = q("SELECT verifier, email_hash, user_id, redirect, "
                  "expires_at FROM tokens WHERE selector = $1 FOR UPDATE",
                  1, v);
  if (r == NULL) return -EIO;
  int found = PQntuples(r) > 0 &&
              unhex(PQgetvalue(r, 0, 0), t->verifier) == 0 &&
              unhex(PQgetvalue(r, 0, 1), t->email_hash) == 0;
  if (found) {
    snprintf(t->user_id, sizeof(t->user_id), "%s", PQgetvalue(r, 0, 2));
    snprintf(t->redirect, sizeof(t->redirect), "%s", PQgetvalue(r, 0, 3));
    t->expires_at = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
  }
  PQclear(r);
  return found;
}

int mdb_pg_token_delete(const char *selector, size_t sel_len) {
  char sel[65];
  if (selector_copy(selector, sel_len, sel)) return -EIO;
  const char *v[] = {sel};
  return q1("DELETE FROM tokens WHERE selector = $1", 1, v) < 0 ? -EIO : 0;
}

int mdb_pg_tokens_delete_email(const unsigned char *email_hash) {
  char e[HEX_LEN];
  hex(email_hash, e);
  const char *v[] = {e};
  return q1("DELETE FROM tokens WHERE email_hash = $1", 1, v) < 0 ? -EIO : 0;
}

int mdb_pg_tokens_expire(int64_t before) {
  char b[24];
  num(b, before);
  const char *v[] = {b};
  return q1("DELETE FROM tokens WHERE expires_at < $1", 1, v) < 0 ? -EIO : 0;
}
