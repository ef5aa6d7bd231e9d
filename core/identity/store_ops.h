/*
 * The identity store's statements. Each function runs on the store thread
 * (or in the `bulkhead user` command) with the connection, never on an
 * event loop, and keeps its transaction to itself. bh__op_* take either
 * backend's connection (store_conn.c) and run the SQLite statements
 * (store_ops.c, bh__lite_*) or the PostgreSQL ones (store_ops_pg.c,
 * bh__pg_*), which keep the same contract.
 */
#ifndef BH_CORE_STORE_OPS_H
#define BH_CORE_STORE_OPS_H

#include <libpq-fe.h>
#include <sqlite3.h>

#include "identity/store.h"
#include <stddef.h>
#include <stdint.h>

/* Raw credentials: "rt_" + 43 and "bhk_" + 32 base64url characters. */
#define BH__REFRESH_MAX 64
#define BH__APIKEY_MAX 64
#define BH__APIKEY_PREFIX_LEN 12

typedef struct bh__sess {
  char session_id[64];
  char user_id[128];
  char scopes[512];
  char refresh[BH__REFRESH_MAX]; /* the new raw refresh token */
  int64_t refresh_exp;
} bh__sess;

enum bh__refresh_outcome {
  BH__RT_OK = 0,  /* rotated: out has the new token */
  BH__RT_UNKNOWN, /* no such token */
  BH__RT_EXPIRED,
  BH__RT_REVOKED, /* its session was revoked earlier (logout, reuse) */
  BH__RT_REUSED,  /* a spent token again: the session is revoked now */
  BH__RT_GRACE,   /* spent moments ago (a concurrent request): no new token */
  BH__RT_ERROR    /* the database failed */
};

/* New session with its first refresh token. 0 or -EIO. */
int bh__op_session_create(bh__sconn *c, const char *user_id, const char *scopes,
                          int64_t now, int64_t ttl, bh__sess *out);
/* Rotation and reuse detection: enum bh__refresh_outcome. out->user_id,
 * session_id and scopes are set for OK and GRACE. */
int bh__op_session_refresh(bh__sconn *c, const char *token, int64_t now,
                           int64_t ttl, int64_t grace, bh__sess *out);
/* Revokes the session of `token`, or `session_id` when token is NULL. 0
 * (also when nothing matched) or -EIO. sid_out (64 bytes, may be NULL):
 * the session revoked, "" when none. */
int bh__op_session_revoke(bh__sconn *c, const char *token,
                          const char *session_id, const char *reason,
                          int64_t now, char *sid_out);
/* Calls fn for each session revoked at or after `since`. 0 or -EIO. */
int bh__op_revoked_since(bh__sconn *c, int64_t since,
                         void (*fn)(const char *sid, int64_t revoked_at,
                                    void *arg),
                         void *arg);

typedef struct bh__keyrec {
  char id[48];
  char user_id[128];
  char scopes[512];
  char prefix[BH__APIKEY_PREFIX_LEN + 1];
  char key[BH__APIKEY_MAX]; /* create only */
} bh__keyrec;

int bh__op_apikey_create(bh__sconn *c, const char *user_id, const char *name,
                         const char *scopes, int64_t now, bh__keyrec *out);
/* The live key `key`: 0 and out (no raw key), -ENOENT, -EIO. */
int bh__op_apikey_auth(bh__sconn *c, const char *key, int64_t now,
                       bh__keyrec *out);
/* The user's live keys as a malloc'd JSON array, NULL on error. */
char *bh__op_apikey_list(bh__sconn *c, const char *user_id);
int bh__op_apikey_revoke(bh__sconn *c, const char *user_id, const char *id,
                         int64_t now);

typedef struct bh__guard_conf {
  uint32_t max_account; /* failures per account before a lock */
  uint32_t max_address; /* failures per client address */
  uint32_t lockout_s;   /* the counting window and the lock */
} bh__guard_conf;

/* event: BH_LOGIN_CHECK reserves an attempt on both counters in one
 * transaction (-EBUSY with *retry_after while either is locked; the
 * attempt reaching the limit locks and still goes ahead), FAILED counts
 * nothing more, SUCCEEDED forgets the account's count and gives back the
 * address's reservation, RELEASED gives back both. 0 or -EIO. */
int bh__op_login_guard(bh__sconn *c, const char *account, const char *addr,
                       int event, int64_t now, const bh__guard_conf *g,
                       long *retry_after);

/* The embedded identity provider's users. */
int bh__op_user_get(bh__sconn *c, const char *email, char *id, size_t idlen,
                    char *hash, size_t hashlen, int *disabled);
int bh__op_user_add(bh__sconn *c, const char *email, const char *hash,
                    int64_t now, char *id, size_t idlen);
int bh__op_user_set_disabled(bh__sconn *c, const char *email, int disabled);

/* The backends' statements: the same contracts as above. */
int bh__lite_session_create(sqlite3 *db, const char *user_id,
                            const char *scopes, int64_t now, int64_t ttl,
                            bh__sess *out);
int bh__lite_session_refresh(sqlite3 *db, const char *token, int64_t now,
                             int64_t ttl, int64_t grace, bh__sess *out);
int bh__lite_session_revoke(sqlite3 *db, const char *token,
                            const char *session_id, const char *reason,
                            int64_t now, char *sid_out);
int bh__lite_revoked_since(sqlite3 *db, int64_t since,
                           void (*fn)(const char *sid, int64_t revoked_at,
                                      void *arg),
                           void *arg);
int bh__lite_apikey_create(sqlite3 *db, const char *user_id, const char *name,
                           const char *scopes, int64_t now, bh__keyrec *out);
int bh__lite_apikey_auth(sqlite3 *db, const char *key, int64_t now,
                         bh__keyrec *out);
char *bh__lite_apikey_list(sqlite3 *db, const char *user_id);
int bh__lite_apikey_revoke(sqlite3 *db, const char *user_id, const char *id,
                           int64_t now);
int bh__lite_login_guard(sqlite3 *db, const char *account, const char *addr,
                         int event, int64_t now, const bh__guard_conf *g,
                         long *retry_after);
int bh__lite_user_get(sqlite3 *db, const char *email, char *id, size_t idlen,
                      char *hash, size_t hashlen, int *disabled);
int bh__lite_user_add(sqlite3 *db, const char *email, const char *hash,
                      int64_t now, char *id, size_t idlen);
int bh__lite_user_set_disabled(sqlite3 *db, const char *email, int disabled);
int bh__pg_session_create(PGconn *db, const char *user_id, const char *scopes,
                          int64_t now, int64_t ttl, bh__sess *out);
int bh__pg_session_refresh(PGconn *db, const char *token, int64_t now,
                           int64_t ttl, int64_t grace, bh__sess *out);
int bh__pg_session_revoke(PGconn *db, const char *token, const char *session_id,
                          const char *reason, int64_t now, char *sid_out);
int bh__pg_revoked_since(PGconn *db, int64_t since,
                         void (*fn)(const char *sid, int64_t revoked_at,
                                    void *arg),
                         void *arg);
int bh__pg_apikey_create(PGconn *db, const char *user_id, const char *name,
                         const char *scopes, int64_t now, bh__keyrec *out);
int bh__pg_apikey_auth(PGconn *db, const char *key, int64_t now,
                       bh__keyrec *out);
char *bh__pg_apikey_list(PGconn *db, const char *user_id);
int bh__pg_apikey_revoke(PGconn *db, const char *user_id, const char *id,
                         int64_t now);
int bh__pg_login_guard(PGconn *db, const char *account, const char *addr,
                       int event, int64_t now, const bh__guard_conf *g,
                       long *retry_after);
int bh__pg_user_get(PGconn *db, const char *email, char *id, size_t idlen,
                    char *hash, size_t hashlen, int *disabled);
int bh__pg_user_add(PGconn *db, const char *email, const char *hash,
                    int64_t now, char *id, size_t idlen);
int bh__pg_user_set_disabled(PGconn *db, const char *email, int disabled);

#endif
