/*
 * The identity store's statements on SQLite (see store_ops.h; the
 * PostgreSQL ones are store_ops_pg.c). Statements are prepared per call: these
 * run at login, refresh and key-management rates, not per request (access
 * tokens need no store at all).
 */
#include "identity/store_ops.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "bulkhead/plugin.h"
#include "identity/store.h"

static void bh__op_log(sqlite3 *db, const char *what) {
  /* the message names tables and constraints, never values */
  bh__logf(BH__ERROR, "store_failed", "%s: %s", what, sqlite3_errmsg(db));
}

static int bh__exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static void bh__copy_col(sqlite3_stmt *st, int col, char *out, size_t n) {
  const unsigned char *v = sqlite3_column_text(st, col);
  snprintf(out, n, "%s", v ? (const char *)v : "");
}

/* ---------------------------------------------------------------------- */
/* Sessions and refresh tokens                                             */
/* ---------------------------------------------------------------------- */

static int bh__insert_refresh(sqlite3 *db, const char *session_id, int64_t now,
                              int64_t ttl, bh__sess *out) {
  unsigned char hash[32];
  bh__store_token("rt_", 32, out->refresh, sizeof(out->refresh));
  bh__store_hash(out->refresh, strlen(out->refresh), hash);
  out->refresh_exp = now + ttl;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO refresh_tokens (hash, session_id, "
                              "created_at, expires_at) VALUES (?, ?, ?, ?)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, session_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, out->refresh_exp);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

int bh__lite_session_create(sqlite3 *db, const char *user_id,
                            const char *scopes, int64_t now, int64_t ttl,
                            bh__sess *out) {
  memset(out, 0, sizeof(*out));
  bh__store_id("ses_", out->session_id, sizeof(out->session_id));
  snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
  snprintf(out->scopes, sizeof(out->scopes), "%s", scopes ? scopes : "");
  if (bh__exec(db, "BEGIN IMMEDIATE")) {
    bh__op_log(db, "session create");
    return -EIO;
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO sessions (id, user_id, scopes, "
                              "created_at, last_refresh_at) VALUES "
                              "(?, ?, ?, ?, ?)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, out->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, out->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, out->scopes, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  int ok = rc == SQLITE_DONE &&
           bh__insert_refresh(db, out->session_id, now, ttl, out) == 0 &&
           bh__exec(db, "COMMIT") == 0;
  if (!ok) {
    bh__op_log(db, "session create");
    bh__exec(db, "ROLLBACK");
    sodium_memzero(out->refresh, sizeof(out->refresh));
    return -EIO;
  }
  return 0;
}

static int bh__revoke_session(sqlite3 *db, const char *session_id,
                              const char *reason, int64_t now) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "UPDATE sessions SET revoked_at = ?, "
                              "revoke_reason = ? WHERE id = ? AND "
                              "revoked_at IS NULL",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, session_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

int bh__lite_session_refresh(sqlite3 *db, const char *token, int64_t now,
                             int64_t ttl, int64_t grace, bh__sess *out) {
  memset(out, 0, sizeof(*out));
  unsigned char hash[32];
  bh__store_hash(token, strlen(token), hash);
  if (bh__exec(db, "BEGIN IMMEDIATE")) {
    bh__op_log(db, "refresh");
    return BH__RT_ERROR;
  }
  sqlite3_stmt *st = NULL;
  int outcome = BH__RT_ERROR;
  int rc = sqlite3_prepare_v2(
      db,
      "SELECT r.session_id, r.expires_at, r.rotated_at, s.user_id, "
      "s.scopes, s.revoked_at FROM refresh_tokens r JOIN sessions s ON "
      "s.id = r.session_id WHERE r.hash = ?",
      -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC);
    rc = sqlite3_step(st);
  }
  if (rc == SQLITE_DONE) {
    outcome = BH__RT_UNKNOWN;
  } else if (rc == SQLITE_ROW) {
    bh__copy_col(st, 0, out->session_id, sizeof(out->session_id));
    int64_t expires = sqlite3_column_int64(st, 1);
    int rotated = sqlite3_column_type(st, 2) != SQLITE_NULL;
    int64_t rotated_at = sqlite3_column_int64(st, 2);
    bh__copy_col(st, 3, out->user_id, sizeof(out->user_id));
    bh__copy_col(st, 4, out->scopes, sizeof(out->scopes));
    int revoked = sqlite3_column_type(st, 5) != SQLITE_NULL;
    if (revoked)
      outcome = BH__RT_REVOKED;
    else if (rotated && now - rotated_at < grace)
      outcome = BH__RT_GRACE;
    else if (rotated)
      outcome = BH__RT_REUSED;
    else if (expires <= now)
      outcome = BH__RT_EXPIRED;
    else
      outcome = BH__RT_OK;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (outcome == BH__RT_REUSED &&
      bh__revoke_session(db, out->session_id, "refresh_reuse", now) != 0)
    outcome = BH__RT_ERROR;
  if (outcome == BH__RT_OK) {
    rc = sqlite3_prepare_v2(db,
                            "UPDATE refresh_tokens SET rotated_at = ? WHERE "
                            "hash = ? AND rotated_at IS NULL",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, now);
      sqlite3_bind_blob(st, 2, hash, sizeof(hash), SQLITE_STATIC);
      rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQLITE_DONE ||
        bh__insert_refresh(db, out->session_id, now, ttl, out) != 0)
      outcome = BH__RT_ERROR;
    if (outcome == BH__RT_OK &&
        sqlite3_prepare_v2(db,
                           "UPDATE sessions SET last_refresh_at = ? WHERE "
                           "id = ?",
                           -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, now);
      sqlite3_bind_text(st, 2, out->session_id, -1, SQLITE_STATIC);
      if (sqlite3_step(st) != SQLITE_DONE) outcome = BH__RT_ERROR;
    }
    sqlite3_finalize(st);
  }
  if (outcome == BH__RT_ERROR || bh__exec(db, "COMMIT") != 0) {
    bh__op_log(db, "refresh");
    bh__exec(db, "ROLLBACK");
    sodium_memzero(out->refresh, sizeof(out->refresh));
    return BH__RT_ERROR;
  }
  return outcome;
}

int bh__lite_session_revoke(sqlite3 *db, const char *token,
                            const char *session_id, const char *reason,
                            int64_t now, char *sid_out) {
  char sid[64] = "";
  if (token) {
    unsigned char hash[32];
    bh__store_hash(token, strlen(token), hash);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT session_id FROM refresh_tokens "
                                "WHERE hash = ?",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC);
      rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) bh__copy_col(st, 0, sid, sizeof(sid));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      bh__op_log(db, "revoke");
      return -EIO;
    }
  } else if (session_id) {
    snprintf(sid, sizeof(sid), "%s", session_id);
  }
  if (sid_out) sid_out[0] = '\0'; /* may be session_id: copied above */
  if (sid[0] == '\0') return 0;
  if (bh__revoke_session(db, sid, reason, now) != 0) {
    bh__op_log(db, "revoke");
    return -EIO;
  }
  if (sid_out) snprintf(sid_out, 64, "%s", sid);
  return 0;
}

int bh__lite_revoked_since(sqlite3 *db, int64_t since,
                           void (*fn)(const char *sid, int64_t revoked_at,
                                      void *arg),
                           void *arg) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT id, revoked_at FROM sessions WHERE "
                              "revoked_at >= ?",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
         arg);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    bh__op_log(db, "revoked sessions");
    return -EIO;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* API keys                                                                */
/* ---------------------------------------------------------------------- */

int bh__lite_apikey_create(sqlite3 *db, const char *user_id, const char *name,
                           const char *scopes, int64_t now, bh__keyrec *out) {
  memset(out, 0, sizeof(*out));
  unsigned char hash[32];
  bh__store_id("key_", out->id, sizeof(out->id));
  bh__store_token("bhk_", 24, out->key, sizeof(out->key));
  memcpy(out->prefix, out->key, BH__APIKEY_PREFIX_LEN);
  out->prefix[BH__APIKEY_PREFIX_LEN] = '\0';
  snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
  snprintf(out->scopes, sizeof(out->scopes), "%s", scopes ? scopes : "");
  bh__store_hash(out->key, strlen(out->key), hash);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO api_keys (id, user_id, name, "
                              "prefix, hash, scopes, created_at) VALUES "
                              "(?, ?, ?, ?, ?, ?, ?)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, out->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, out->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name ? name : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, out->prefix, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_text(st, 6, out->scopes, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    bh__op_log(db, "api key create");
    /* never hand out a key the store does not know */
    sodium_memzero(out->key, sizeof(out->key));
    return -EIO;
  }
  return 0;
}

int bh__lite_apikey_auth(sqlite3 *db, const char *key, int64_t now,
                         bh__keyrec *out) {
  memset(out, 0, sizeof(*out));
  unsigned char hash[32];
  bh__store_hash(key, strlen(key), hash);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT id, user_id, scopes, prefix, "
                              "last_used_at FROM api_keys WHERE hash = ? "
                              "AND revoked_at IS NULL",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC);
    rc = sqlite3_step(st);
  }
  int64_t last = 0;
  if (rc == SQLITE_ROW) {
    bh__copy_col(st, 0, out->id, sizeof(out->id));
    bh__copy_col(st, 1, out->user_id, sizeof(out->user_id));
    bh__copy_col(st, 2, out->scopes, sizeof(out->scopes));
    bh__copy_col(st, 3, out->prefix, sizeof(out->prefix));
    last = sqlite3_column_int64(st, 4);
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return -ENOENT;
  if (rc != SQLITE_ROW) {
    bh__op_log(db, "api key lookup");
    return -EIO;
  }
  /* last use to the minute: one write per key and minute, not per call */
  if (now - last >= 60 &&
      sqlite3_prepare_v2(db,
                         "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, out->id, -1, SQLITE_STATIC);
    sqlite3_step(st); /* best effort: a busy store must not refuse the key */
    sqlite3_finalize(st);
  }
  return 0;
}

char *bh__lite_apikey_list(sqlite3 *db, const char *user_id) {
  sqlite3_stmt *st = NULL;
  json_t *arr = json_array();
  int rc = sqlite3_prepare_v2(db,
                              "SELECT id, name, prefix, scopes, created_at, "
                              "last_used_at FROM api_keys WHERE user_id = ? "
                              "AND revoked_at IS NULL ORDER BY created_at, id",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, user_id, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && arr) {
      json_t *o = json_pack(
          "{s:s,s:s,s:s,s:s,s:I}", "id", sqlite3_column_text(st, 0), "name",
          sqlite3_column_text(st, 1), "prefix", sqlite3_column_text(st, 2),
          "scopes", sqlite3_column_text(st, 3), "createdAt",
          (json_int_t)sqlite3_column_int64(st, 4));
      if (o && sqlite3_column_type(st, 5) != SQLITE_NULL)
        json_object_set_new(o, "lastUsedAt",
                            json_integer(sqlite3_column_int64(st, 5)));
      else if (o)
        json_object_set_new(o, "lastUsedAt", json_null());
      if (o == NULL || json_array_append_new(arr, o) != 0) rc = SQLITE_NOMEM;
    }
  }
  sqlite3_finalize(st);
  char *out = NULL;
  if (rc == SQLITE_DONE && arr)
    out = json_dumps(arr, JSON_COMPACT);
  else
    bh__op_log(db, "api key list");
  json_decref(arr);
  return out;
}

int bh__lite_apikey_revoke(sqlite3 *db, const char *user_id, const char *id,
                           int64_t now) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "UPDATE api_keys SET revoked_at = ? WHERE id = ? "
                              "AND user_id = ? AND revoked_at IS NULL",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, user_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    bh__op_log(db, "api key revoke");
    return -EIO;
  }
  return sqlite3_changes(db) == 1 ? 0 : -ENOENT;
}

/* ---------------------------------------------------------------------- */
/* Failed sign-ins                                                         */
/* ---------------------------------------------------------------------- */

/* A counter row: attempts reserved within the window (failed ones and
 * ones still being verified), when the window began, the lock. */
typedef struct bh__grow {
  int found;
  int64_t failures, window_start, locked_until;
} bh__grow;

static int bh__guard_read(sqlite3 *db, const char *key, bh__grow *r) {
  sqlite3_stmt *st = NULL;
  memset(r, 0, sizeof(*r));
  int rc = sqlite3_prepare_v2(db,
                              "SELECT failures, window_start, locked_until "
                              "FROM login_failures WHERE key = ?",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
  }
  if (rc == SQLITE_ROW) {
    r->found = 1;
    r->failures = sqlite3_column_int64(st, 0);
    r->window_start = sqlite3_column_int64(st, 1);
    r->locked_until = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int bh__guard_write(sqlite3 *db, const char *key, const bh__grow *r) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      db,
      "INSERT INTO login_failures (key, failures, window_start, locked_until)"
      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO UPDATE SET "
      "failures = ?2, window_start = ?3, locked_until = ?4",
      -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->failures);
    sqlite3_bind_int64(st, 3, r->window_start);
    sqlite3_bind_int64(st, 4, r->locked_until);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* The reservation of one attempt against r (not written): the attempt
 * that reaches `max` starts the lock and still goes ahead, every later
 * one is refused, so at most `max` passwords are ever verified per window
 * however many arrive at once. */
static void bh__guard_count(bh__grow *r, uint32_t max, uint32_t window,
                            int64_t now) {
  if (!r->found || r->window_start + window <= now) {
    r->failures = 0;
    r->window_start = now;
    r->locked_until = 0;
  }
  r->failures++;
  if (r->failures >= max) r->locked_until = now + window;
}

/* Gives back one reservation (a sign-in that succeeded was no failure);
 * a lock that only that reservation caused ends. */
static int bh__guard_release(sqlite3 *db, const char *key, uint32_t max) {
  bh__grow r;
  if (bh__guard_read(db, key, &r) != 0) return -1;
  if (!r.found) return 0;
  if (r.failures > 0) r.failures--;
  if (r.failures < max) r.locked_until = 0;
  return bh__guard_write(db, key, &r);
}

static int bh__guard_delete(sqlite3 *db, const char *key) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "DELETE FROM login_failures WHERE key = ?",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

int bh__lite_login_guard(sqlite3 *db, const char *account, const char *addr,
                         int event, int64_t now, const bh__guard_conf *g,
                         long *retry_after) {
  char akey[80], ckey[80];
  unsigned char h[32];
  char hex[65];
  /* the account name (an email) is stored only as a hash */
  char lower[256];
  size_t n = 0;
  for (; account && account[n] && n + 1 < sizeof(lower); n++)
    lower[n] = account[n] >= 'A' && account[n] <= 'Z' ? (char)(account[n] + 32)
                                                      : account[n];
  lower[n] = '\0';
  bh__store_hash(lower, n, h);
  sodium_bin2hex(hex, sizeof(hex), h, 16);
  snprintf(akey, sizeof(akey), "acct:%s", hex);
  snprintf(ckey, sizeof(ckey), "addr:%.64s", addr ? addr : "");
  *retry_after = -1;
  /* FAILED: the attempt was counted when CHECK reserved it */
  if (event == BH_LOGIN_FAILED) return 0;
  if (bh__exec(db, "BEGIN IMMEDIATE")) {
    bh__op_log(db, "login guard");
    return -EIO;
  }
  int err = 0;
  int64_t until = 0;
  if (event == BH_LOGIN_RELEASED) {
    err = bh__guard_release(db, akey, g->max_account) ||
          bh__guard_release(db, ckey, g->max_address);
  } else if (event == BH_LOGIN_SUCCEEDED) {
    /* the account's failures are forgotten; the address keeps its
     * failures but not this attempt's reservation */
    err = bh__guard_delete(db, akey) ||
          bh__guard_release(db, ckey, g->max_address);
  } else {
    /* CHECK reserves the attempt on both counters in this one
     * transaction, before any password is verified: concurrent attempts
     * cannot all pass a check made before the first of them failed */
    bh__grow a, c;
    err = bh__guard_read(db, akey, &a) || bh__guard_read(db, ckey, &c);
    if (!err) {
      if (a.found && a.locked_until > now) until = a.locked_until;
      if (c.found && c.locked_until > until) until = c.locked_until;
      if (until <= now) {
        bh__guard_count(&a, g->max_account, g->lockout_s, now);
        bh__guard_count(&c, g->max_address, g->lockout_s, now);
        err = bh__guard_write(db, akey, &a) || bh__guard_write(db, ckey, &c);
      }
    }
  }
  if (err || bh__exec(db, "COMMIT") != 0) {
    bh__op_log(db, "login guard");
    bh__exec(db, "ROLLBACK");
    return -EIO;
  }
  if (until > now) {
    *retry_after = (long)(until - now);
    return -EBUSY;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Local users                                                             */
/* ---------------------------------------------------------------------- */

int bh__lite_user_get(sqlite3 *db, const char *email, char *id, size_t idlen,
                      char *hash, size_t hashlen, int *disabled) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT id, password_hash, disabled FROM users "
                              "WHERE email = ?",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, email, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
  }
  if (rc == SQLITE_ROW) {
    bh__copy_col(st, 0, id, idlen);
    bh__copy_col(st, 1, hash, hashlen);
    *disabled = sqlite3_column_int(st, 2) != 0;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_ROW) return 0;
  if (rc == SQLITE_DONE) return -ENOENT;
  bh__op_log(db, "user lookup");
  return -EIO;
}

int bh__lite_user_add(sqlite3 *db, const char *email, const char *hash,
                      int64_t now, char *id, size_t idlen) {
  bh__store_id("usr_", id, idlen);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO users (id, email, password_hash, "
                              "created_at) VALUES (?, ?, ?, ?)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, email, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, now);
    rc = sqlite3_step(st);
  }
  int ext = sqlite3_extended_errcode(db);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return 0;
  return ext == SQLITE_CONSTRAINT_UNIQUE ? -EEXIST : -EIO;
}

int bh__lite_user_set_disabled(sqlite3 *db, const char *email, int disabled) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      db, "UPDATE users SET disabled = ? WHERE email = ?", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int(st, 1, disabled ? 1 : 0);
    sqlite3_bind_text(st, 2, email, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return -EIO;
  return sqlite3_changes(db) == 1 ? 0 : -ENOENT;
}
