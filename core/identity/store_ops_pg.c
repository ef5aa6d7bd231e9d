/*
 * The identity store's statements on PostgreSQL (see store_ops.h): the
 * same contracts as the SQLite ones in store_ops.c. Credential hashes are
 * stored as hex text. A refresh locks its token's row (FOR UPDATE), so two
 * instances presenting one token at once serialise: one rotates, the other
 * then finds it spent (grace, or reuse). The login guard takes advisory
 * locks on its two keys, always in the same order.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "bulkhead/plugin.h"
#include "identity/store_ops.h"

static void bh__pgop_log(PGconn *db, const PGresult *r, const char *what) {
  /* the message names tables and constraints, never values */
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (m == NULL || *m == '\0') m = db ? PQerrorMessage(db) : "no connection";
  char one[300];
  snprintf(one, sizeof(one), "%s", m);
  for (char *p = one; *p; p++)
    if (*p == '\n') *p = ' ';
  bh__logf(BH__ERROR, "store_failed", "%s: %s", what, one);
}

/* Runs `sql` with text parameters; the result when its status is `want`,
 * else NULL (logged as `what`). */
static PGresult *bh__q(PGconn *db, const char *what, ExecStatusType want,
                       const char *sql, int n, const char *const *vals) {
  if (db == NULL) {
    bh__pgop_log(NULL, NULL, what);
    return NULL;
  }
  PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
  if (r == NULL || PQresultStatus(r) != want) {
    bh__pgop_log(db, r, what);
    PQclear(r);
    return NULL;
  }
  return r;
}

static int bh__cmd(PGconn *db, const char *what, const char *sql, int n,
                   const char *const *vals, long *affected) {
  PGresult *r = bh__q(db, what, PGRES_COMMAND_OK, sql, n, vals);
  if (r == NULL) return -EIO;
  if (affected) *affected = atol(PQcmdTuples(r));
  PQclear(r);
  return 0;
}

static void bh__rollback(PGconn *db) {
  if (db && PQtransactionStatus(db) != PQTRANS_IDLE)
    PQclear(PQexec(db, "ROLLBACK"));
}

static void bh__hexhash(const char *s, char out[65]) {
  unsigned char h[32];
  bh__store_hash(s, strlen(s), h);
  sodium_bin2hex(out, 65, h, sizeof(h));
}

static void bh__num(int64_t v, char out[24]) {
  snprintf(out, 24, "%lld", (long long)v);
}

static void bh__copy(PGresult *r, int row, int col, char *out, size_t n) {
  snprintf(out, n, "%s",
           PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static int64_t bh__int(PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0
                                  : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---------------------------------------------------------------------- */
/* Sessions and refresh tokens                                             */
/* ---------------------------------------------------------------------- */

static int bh__insert_refresh(PGconn *db, const char *sid, int64_t now,
                              int64_t ttl, bh__sess *out) {
  char hash[65], a[24], b[24];
  bh__store_token("rt_", 32, out->refresh, sizeof(out->refresh));
  bh__hexhash(out->refresh, hash);
  out->refresh_exp = now + ttl;
  bh__num(now, a);
  bh__num(out->refresh_exp, b);
  const char *v[] = {hash, sid, a, b};
  return bh__cmd(db, "refresh token insert",
                 "INSERT INTO refresh_tokens (hash, session_id, created_at, "
                 "expires_at) VALUES ($1, $2, $3, $4)",
                 4, v, NULL);
}

int bh__pg_session_create(PGconn *db, const char *user_id, const char *scopes,
                          int64_t now, int64_t ttl, bh__sess *out) {
  memset(out, 0, sizeof(*out));
  bh__store_id("ses_", out->session_id, sizeof(out->session_id));
  snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
  snprintf(out->scopes, sizeof(out->scopes), "%s", scopes ? scopes : "");
  char t[24];
  bh__num(now, t);
  const char *v[] = {out->session_id, out->user_id, out->scopes, t};
  int ok = bh__cmd(db, "session create", "BEGIN", 0, NULL, NULL) == 0 &&
           bh__cmd(db, "session create",
                   "INSERT INTO sessions (id, user_id, scopes, created_at, "
                   "last_refresh_at) VALUES ($1, $2, $3, $4, $4)",
                   4, v, NULL) == 0 &&
           bh__insert_refresh(db, out->session_id, now, ttl, out) == 0 &&
           bh__cmd(db, "session create", "COMMIT", 0, NULL, NULL) == 0;
  if (!ok) {
    bh__rollback(db);
    sodium_memzero(out->refresh, sizeof(out->refresh));
    return -EIO;
  }
  return 0;
}

static int bh__revoke_session(PGconn *db, const char *sid, const char *reason,
                              int64_t now) {
  char t[24];
  bh__num(now, t);
  const char *v[] = {t, reason, sid};
  return bh__cmd(db, "revoke",
                 "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 "
                 "WHERE id = $3 AND revoked_at IS NULL",
                 3, v, NULL);
}

static int bh__refresh_outcome(PGresult *r, int64_t now, int64_t grace,
                               bh__sess *out) {
  bh__copy(r, 0, 0, out->session_id, sizeof(out->session_id));
  int64_t expires = bh__int(r, 0, 1);
  int rotated = !PQgetisnull(r, 0, 2);
  int64_t rotated_at = bh__int(r, 0, 2);
  bh__copy(r, 0, 3, out->user_id, sizeof(out->user_id));
  bh__copy(r, 0, 4, out->scopes, sizeof(out->scopes));
  if (!PQgetisnull(r, 0, 5)) return BH__RT_REVOKED;
  if (rotated && now - rotated_at < grace) return BH__RT_GRACE;
  if (rotated) return BH__RT_REUSED;
  if (expires <= now) return BH__RT_EXPIRED;
  return BH__RT_OK;
}

int bh__pg_session_refresh(PGconn *db, const char *token, int64_t now,
                           int64_t ttl, int64_t grace, bh__sess *out) {
  memset(out, 0, sizeof(*out));
  char hash[65], t[24];
  bh__hexhash(token, hash);
  bh__num(now, t);
  if (bh__cmd(db, "refresh", "BEGIN", 0, NULL, NULL)) return BH__RT_ERROR;
  const char *v1[] = {hash};
  /* the row lock: another instance refreshing the same token waits for
   * this transaction, then sees the token spent */
  PGresult *r = bh__q(db, "refresh", PGRES_TUPLES_OK,
                      "SELECT r.session_id, r.expires_at, r.rotated_at, "
                      "s.user_id, s.scopes, s.revoked_at FROM refresh_tokens "
                      "r JOIN sessions s ON s.id = r.session_id WHERE r.hash "
                      "= $1 FOR UPDATE OF r, s",
                      1, v1);
  int outcome = BH__RT_ERROR;
  if (r)
    outcome =
        PQntuples(r) ? bh__refresh_outcome(r, now, grace, out) : BH__RT_UNKNOWN;
  PQclear(r);
  if (outcome == BH__RT_REUSED &&
      bh__revoke_session(db, out->session_id, "refresh_reuse", now) != 0)
    outcome = BH__RT_ERROR;
  if (outcome == BH__RT_OK) {
    const char *v2[] = {t, hash};
    const char *v3[] = {t, out->session_id};
    if (bh__cmd(db, "refresh",
                "UPDATE refresh_tokens SET rotated_at = $1 WHERE hash = $2 "
                "AND rotated_at IS NULL",
                2, v2, NULL) ||
        bh__insert_refresh(db, out->session_id, now, ttl, out) ||
        bh__cmd(db, "refresh",
                "UPDATE sessions SET last_refresh_at = $1 WHERE id = $2", 2, v3,
                NULL))
      outcome = BH__RT_ERROR;
  }
  if (outcome == BH__RT_ERROR ||
      bh__cmd(db, "refresh", "COMMIT", 0, NULL, NULL) != 0) {
    bh__rollback(db);
    sodium_memzero(out->refresh, sizeof(out->refresh));
    return BH__RT_ERROR;
  }
  return outcome;
}

int bh__pg_session_revoke(PGconn *db, const char *token, const char *session_id,
                          const char *reason, int64_t now, char *sid_out) {
  char sid[64] = "";
  if (token) {
    char hash[65];
    bh__hexhash(token, hash);
    const char *v[] = {hash};
    PGresult *r =
        bh__q(db, "revoke", PGRES_TUPLES_OK,
              "SELECT session_id FROM refresh_tokens WHERE hash = $1", 1, v);
    if (r == NULL) return -EIO;
    if (PQntuples(r)) bh__copy(r, 0, 0, sid, sizeof(sid));
    PQclear(r);
  } else if (session_id) {
    snprintf(sid, sizeof(sid), "%s", session_id);
  }
  if (sid_out) sid_out[0] = '\0';
  if (sid[0] == '\0') return 0;
  if (bh__revoke_session(db, sid, reason, now) != 0) return -EIO;
  if (sid_out) snprintf(sid_out, 64, "%s", sid);
  return 0;
}

int bh__pg_revoked_since(PGconn *db, int64_t since,
                         void (*fn)(const char *sid, int64_t revoked_at,
                                    void *arg),
                         void *arg) {
  char t[24];
  bh__num(since, t);
  const char *v[] = {t};
  PGresult *r = bh__q(db, "revoked sessions", PGRES_TUPLES_OK,
                      "SELECT id, revoked_at FROM sessions WHERE revoked_at "
                      ">= $1",
                      1, v);
  if (r == NULL) return -EIO;
  for (int i = 0; i < PQntuples(r); i++)
    fn(PQgetvalue(r, i, 0), bh__int(r, i, 1), arg);
  PQclear(r);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* API keys                                                                */
/* ---------------------------------------------------------------------- */

int bh__pg_apikey_create(PGconn *db, const char *user_id, const char *name,
                         const char *scopes, int64_t now, bh__keyrec *out) {
  memset(out, 0, sizeof(*out));
  char hash[65], t[24];
  bh__store_id("key_", out->id, sizeof(out->id));
  bh__store_token("bhk_", 24, out->key, sizeof(out->key));
  memcpy(out->prefix, out->key, BH__APIKEY_PREFIX_LEN);
  out->prefix[BH__APIKEY_PREFIX_LEN] = '\0';
  snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
  snprintf(out->scopes, sizeof(out->scopes), "%s", scopes ? scopes : "");
  bh__hexhash(out->key, hash);
  bh__num(now, t);
  const char *v[] = {
      out->id, out->user_id, name ? name : "", out->prefix, hash, out->scopes,
      t};
  if (bh__cmd(db, "api key create",
              "INSERT INTO api_keys (id, user_id, name, prefix, hash, scopes, "
              "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
              7, v, NULL)) {
    /* never hand out a key the store does not know */
    sodium_memzero(out->key, sizeof(out->key));
    return -EIO;
  }
  return 0;
}

int bh__pg_apikey_auth(PGconn *db, const char *key, int64_t now,
                       bh__keyrec *out) {
  memset(out, 0, sizeof(*out));
  char hash[65], t[24];
  bh__hexhash(key, hash);
  const char *v[] = {hash};
  PGresult *r = bh__q(db, "api key lookup", PGRES_TUPLES_OK,
                      "SELECT id, user_id, scopes, prefix, last_used_at FROM "
                      "api_keys WHERE hash = $1 AND revoked_at IS NULL",
                      1, v);
  if (r == NULL) return -EIO;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return -ENOENT;
  }
  bh__copy(r, 0, 0, out->id, sizeof(out->id));
  bh__copy(r, 0, 1, out->user_id, sizeof(out->user_id));
  bh__copy(r, 0, 2, out->scopes, sizeof(out->scopes));
  bh__copy(r, 0, 3, out->prefix, sizeof(out->prefix));
  int64_t last = bh__int(r, 0, 4);
  PQclear(r);
  /* last use to the minute: one write per key and minute, not per call */
  if (now - last >= 60) {
    bh__num(now, t);
    const char *v2[] = {t, out->id};
    PGresult *u = PQexecParams(db,
                               "UPDATE api_keys SET last_used_at = $1 WHERE "
                               "id = $2",
                               2, NULL, v2, NULL, NULL, 0);
    PQclear(u); /* best effort: a busy store must not refuse the key */
  }
  return 0;
}

char *bh__pg_apikey_list(PGconn *db, const char *user_id) {
  const char *v[] = {user_id};
  PGresult *r = bh__q(db, "api key list", PGRES_TUPLES_OK,
                      "SELECT id, name, prefix, scopes, created_at, "
                      "last_used_at FROM api_keys WHERE user_id = $1 AND "
                      "revoked_at IS NULL ORDER BY created_at, id",
                      1, v);
  if (r == NULL) return NULL;
  json_t *arr = json_array();
  for (int i = 0; arr && i < PQntuples(r); i++) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", PQgetvalue(r, i, 0),
                          "name", PQgetvalue(r, i, 1), "prefix",
                          PQgetvalue(r, i, 2), "scopes", PQgetvalue(r, i, 3),
                          "createdAt", (json_int_t)bh__int(r, i, 4));
    if (o)
      json_object_set_new(o, "lastUsedAt",
                          PQgetisnull(r, i, 5)
                              ? json_null()
                              : json_integer((json_int_t)bh__int(r, i, 5)));
    if (o == NULL || json_array_append_new(arr, o) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  PQclear(r);
  char *out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  return out;
}

int bh__pg_apikey_revoke(PGconn *db, const char *user_id, const char *id,
                         int64_t now) {
  char t[24];
  bh__num(now, t);
  const char *v[] = {t, id, user_id};
  long n = 0;
  if (bh__cmd(db, "api key revoke",
              "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id "
              "= $3 AND revoked_at IS NULL",
              3, v, &n))
    return -EIO;
  return n == 1 ? 0 : -ENOENT;
}

/* ---------------------------------------------------------------------- */
/* Failed sign-ins                                                         */
/* ---------------------------------------------------------------------- */

typedef struct bh__grow {
  int found;
  int64_t failures, window_start, locked_until;
} bh__grow;

static int bh__guard_read(PGconn *db, const char *key, bh__grow *g) {
  memset(g, 0, sizeof(*g));
  const char *v[] = {key};
  PGresult *r = bh__q(db, "login guard", PGRES_TUPLES_OK,
                      "SELECT failures, window_start, locked_until FROM "
                      "login_failures WHERE key = $1",
                      1, v);
  if (r == NULL) return -1;
  if (PQntuples(r)) {
    g->found = 1;
    g->failures = bh__int(r, 0, 0);
    g->window_start = bh__int(r, 0, 1);
    g->locked_until = bh__int(r, 0, 2);
  }
  PQclear(r);
  return 0;
}

static int bh__guard_write(PGconn *db, const char *key, const bh__grow *g) {
  char a[24], b[24], c[24];
  bh__num(g->failures, a);
  bh__num(g->window_start, b);
  bh__num(g->locked_until, c);
  const char *v[] = {key, a, b, c};
  return bh__cmd(db, "login guard",
                 "INSERT INTO login_failures (key, failures, window_start, "
                 "locked_until) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO "
                 "UPDATE SET failures = $2, window_start = $3, locked_until = "
                 "$4",
                 4, v, NULL)
             ? -1
             : 0;
}

/* As store_ops.c: the attempt reaching `max` locks and still goes ahead. */
static void bh__guard_count(bh__grow *g, uint32_t max, uint32_t window,
                            int64_t now) {
  if (!g->found || g->window_start + window <= now) {
    g->failures = 0;
    g->window_start = now;
    g->locked_until = 0;
  }
  g->failures++;
  if (g->failures >= max) g->locked_until = now + window;
}

static int bh__guard_release(PGconn *db, const char *key, uint32_t max) {
  bh__grow g;
  if (bh__guard_read(db, key, &g) != 0) return -1;
  if (!g.found) return 0;
  if (g.failures > 0) g.failures--;
  if (g.failures < max) g.locked_until = 0;
  return bh__guard_write(db, key, &g);
}

int bh__pg_login_guard(PGconn *db, const char *account, const char *addr,
                       int event, int64_t now, const bh__guard_conf *g,
                       long *retry_after) {
  char akey[80], ckey[80], lower[256], hex[65];
  unsigned char h[32];
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
  if (event == BH_LOGIN_FAILED) return 0;
  /* both keys locked for the transaction, account first everywhere, so
   * concurrent attempts on any instance serialise without deadlock */
  const char *v[] = {akey, ckey};
  PGresult *r = NULL;
  int err = bh__cmd(db, "login guard", "BEGIN", 0, NULL, NULL) != 0;
  if (!err) {
    r = bh__q(db, "login guard", PGRES_TUPLES_OK,
              "SELECT pg_advisory_xact_lock(hashtext($1)), "
              "pg_advisory_xact_lock(hashtext($2))",
              2, v);
    err = r == NULL;
    PQclear(r);
  }
  int64_t until = 0;
  if (!err && event == BH_LOGIN_RELEASED) {
    err = bh__guard_release(db, akey, g->max_account) ||
          bh__guard_release(db, ckey, g->max_address);
  } else if (!err && event == BH_LOGIN_SUCCEEDED) {
    const char *d[] = {akey};
    err = bh__cmd(db, "login guard",
                  "DELETE FROM login_failures WHERE key = $1", 1, d, NULL) ||
          bh__guard_release(db, ckey, g->max_address);
  } else if (!err) {
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
  if (err || bh__cmd(db, "login guard", "COMMIT", 0, NULL, NULL) != 0) {
    bh__rollback(db);
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

int bh__pg_user_get(PGconn *db, const char *email, char *id, size_t idlen,
                    char *hash, size_t hashlen, int *disabled) {
  const char *v[] = {email};
  PGresult *r = bh__q(db, "user lookup", PGRES_TUPLES_OK,
                      "SELECT id, password_hash, disabled FROM users WHERE "
                      "lower(email) = lower($1)",
                      1, v);
  if (r == NULL) return -EIO;
  int rc = -ENOENT;
  if (PQntuples(r)) {
    bh__copy(r, 0, 0, id, idlen);
    bh__copy(r, 0, 1, hash, hashlen);
    *disabled = bh__int(r, 0, 2) != 0;
    rc = 0;
  }
  PQclear(r);
  return rc;
}

int bh__pg_user_add(PGconn *db, const char *email, const char *hash,
                    int64_t now, char *id, size_t idlen) {
  bh__store_id("usr_", id, idlen);
  char t[24];
  bh__num(now, t);
  const char *v[] = {id, email, hash, t};
  PGresult *r = PQexecParams(db,
                             "INSERT INTO users (id, email, password_hash, "
                             "created_at) VALUES ($1, $2, $3, $4)",
                             4, NULL, v, NULL, NULL, 0);
  int rc = 0;
  if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    rc = state && strcmp(state, "23505") == 0 ? -EEXIST : -EIO;
  }
  PQclear(r);
  return rc;
}

int bh__pg_user_set_disabled(PGconn *db, const char *email, int disabled) {
  const char *v[] = {disabled ? "1" : "0", email};
  long n = 0;
  if (bh__cmd(db, "user update",
              "UPDATE users SET disabled = $1 WHERE lower(email) = lower($2)",
              2, v, &n))
    return -EIO;
  return n == 1 ? 0 : -ENOENT;
}
