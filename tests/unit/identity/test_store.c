/*
 * core/identity/store.c and core/identity/store_ops.c on an in-memory database:
 * migrations all or nothing, refresh rotation and reuse detection, API keys,
 * the failed-login guard.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/plugin.h"
#include "check.h"
#include "identity/store.h"
#include "identity/store_ops.h"

static sqlite3 *fresh(void) {
  sqlite3 *db = NULL;
  CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
  char err[400] = "";
  CHECK_INT(bh__store_migrate(db, bh__core_migrations, bh__core_nmigrations,
                              err, sizeof(err)),
            0);
  if (err[0]) fprintf(stderr, "%s\n", err);
  return db;
}

static int has_table(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db,
                     "SELECT 1 FROM sqlite_master WHERE type='table' AND "
                     "name=?",
                     -1, &st, NULL);
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int r = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  return r;
}

static void test_migrations(void) {
  CHECK(bh__core_nmigrations >= 3);
  sqlite3 *db = fresh();
  int last = bh__core_migrations[bh__core_nmigrations - 1].version;
  CHECK_INT(bh__store_version(db), last);
  CHECK(has_table(db, "sessions") && has_table(db, "api_keys") &&
        has_table(db, "users") && has_table(db, "bh_schema_migrations"));
  char err[400];
  /* idempotent */
  CHECK_INT(bh__store_migrate(db, bh__core_migrations, bh__core_nmigrations,
                              err, sizeof(err)),
            0);
  sqlite3_close(db);

  /* a failing migration: nothing of the batch stays */
  static const bh__migration bad[] = {
      {1, "001_a.sql", "CREATE TABLE a (x);"},
      {2, "002_b.sql", "CREATE TABLE b (x); CREATE TABLE a (y);"},
      {3, "003_c.sql", "CREATE TABLE c (x);"},
  };
  sqlite3_open(":memory:", &db);
  CHECK_INT(bh__store_migrate(db, bad, 3, err, sizeof(err)), -EIO);
  CHECK(strstr(err, "002_b.sql") != NULL);
  CHECK(strstr(err, "already exists") != NULL);
  CHECK_INT(bh__store_version(db), 0);
  CHECK(!has_table(db, "a") && !has_table(db, "b") && !has_table(db, "c"));
  /* the good prefix applies on its own, then the bad step fails alone */
  CHECK_INT(bh__store_migrate(db, bad, 1, err, sizeof(err)), 0);
  CHECK_INT(bh__store_version(db), 1);
  CHECK_INT(bh__store_migrate(db, bad, 3, err, sizeof(err)), -EIO);
  CHECK_INT(bh__store_version(db), 1);
  CHECK(has_table(db, "a") && !has_table(db, "b") && !has_table(db, "c"));
  /* newer than we know */
  sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL);
  CHECK_INT(bh__store_migrate(db, bad, 3, err, sizeof(err)), -EINVAL);
  CHECK(strstr(err, "newer") != NULL);
  sqlite3_close(db);
}

static void test_refresh(void) {
  sqlite3 *db = fresh();
  bh__sess s0, s1, s2, x;
  CHECK_INT(bh__lite_session_create(db, "u1", "read", 1000, 100, &s0), 0);
  CHECK(strncmp(s0.session_id, "ses_", 4) == 0);
  CHECK(strncmp(s0.refresh, "rt_", 3) == 0);
  CHECK_INT(s0.refresh_exp, 1100);
  /* rotation */
  CHECK_INT(bh__lite_session_refresh(db, s0.refresh, 1010, 100, 0, &s1),
            BH__RT_OK);
  CHECK_STR(s1.session_id, s0.session_id);
  CHECK_STR(s1.user_id, "u1");
  CHECK_STR(s1.scopes, "read");
  CHECK(strcmp(s1.refresh, s0.refresh) != 0);
  CHECK_INT(s1.refresh_exp, 1110);
  /* within the grace: let through, nothing new, nothing revoked */
  CHECK_INT(bh__lite_session_refresh(db, s0.refresh, 1012, 100, 5, &x),
            BH__RT_GRACE);
  CHECK_STR(x.user_id, "u1");
  CHECK_STR(x.refresh, "");
  CHECK_INT(bh__lite_session_refresh(db, s1.refresh, 1013, 100, 5, &s2),
            BH__RT_OK);
  /* reuse after the grace revokes the family, the newest token with it */
  CHECK_INT(bh__lite_session_refresh(db, s0.refresh, 1100, 100, 5, &x),
            BH__RT_REUSED);
  CHECK_INT(bh__lite_session_refresh(db, s2.refresh, 1101, 100, 5, &x),
            BH__RT_REVOKED);
  CHECK_INT(bh__lite_session_refresh(db, "rt_unknown", 1101, 100, 5, &x),
            BH__RT_UNKNOWN);
  /* expiry */
  bh__sess e;
  CHECK_INT(bh__lite_session_create(db, "u2", NULL, 2000, 10, &e), 0);
  CHECK_INT(bh__lite_session_refresh(db, e.refresh, 2010, 10, 0, &x),
            BH__RT_EXPIRED);
  /* logout by token, by session id; idempotent */
  bh__sess l;
  CHECK_INT(bh__lite_session_create(db, "u3", NULL, 3000, 100, &l), 0);
  CHECK_INT(bh__lite_session_revoke(db, l.refresh, NULL, "logout", 3001, NULL),
            0);
  CHECK_INT(bh__lite_session_refresh(db, l.refresh, 3002, 100, 0, &x),
            BH__RT_REVOKED);
  CHECK_INT(bh__lite_session_revoke(db, l.refresh, NULL, "logout", 3003, NULL),
            0);
  CHECK_INT(
      bh__lite_session_revoke(db, "rt_nothing", NULL, "logout", 3003, NULL), 0);
  CHECK_INT(bh__lite_session_create(db, "u4", NULL, 3000, 100, &l), 0);
  CHECK_INT(
      bh__lite_session_revoke(db, NULL, l.session_id, "logout", 3001, NULL), 0);
  CHECK_INT(bh__lite_session_refresh(db, l.refresh, 3002, 100, 0, &x),
            BH__RT_REVOKED);
  /* only hashes are stored */
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM refresh_tokens WHERE hash = ?",
                     -1, &st, NULL);
  sqlite3_bind_text(st, 1, s0.refresh, -1, SQLITE_STATIC);
  sqlite3_step(st);
  CHECK_INT(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void test_api_keys(void) {
  sqlite3 *db = fresh();
  bh__keyrec k, a;
  CHECK_INT(bh__lite_apikey_create(db, "u1", "ci", "read write", 100, &k), 0);
  CHECK(strncmp(k.key, "bhk_", 4) == 0);
  CHECK(strncmp(k.id, "key_", 4) == 0);
  CHECK_INT(strlen(k.prefix), BH__APIKEY_PREFIX_LEN);
  CHECK(strncmp(k.key, k.prefix, BH__APIKEY_PREFIX_LEN) == 0);
  CHECK_INT(bh__lite_apikey_auth(db, k.key, 200, &a), 0);
  CHECK_STR(a.user_id, "u1");
  CHECK_STR(a.id, k.id);
  CHECK_STR(a.scopes, "read write");
  CHECK_STR(a.key, "");
  CHECK_INT(bh__lite_apikey_auth(db, "bhk_nope", 200, &a), -ENOENT);
  char *list = bh__lite_apikey_list(db, "u1");
  CHECK(list && strstr(list, k.id) && strstr(list, k.prefix) &&
        !strstr(list, k.key) && strstr(list, "\"lastUsedAt\":200"));
  free(list);
  list = bh__lite_apikey_list(db, "u2");
  CHECK_STR(list, "[]");
  free(list);
  CHECK_INT(bh__lite_apikey_revoke(db, "u2", k.id, 300), -ENOENT);
  CHECK_INT(bh__lite_apikey_revoke(db, "u1", k.id, 300), 0);
  CHECK_INT(bh__lite_apikey_revoke(db, "u1", k.id, 300), -ENOENT);
  CHECK_INT(bh__lite_apikey_auth(db, k.key, 400, &a), -ENOENT);
  sqlite3_exec(db, "DROP TABLE api_keys", NULL, NULL, NULL);
  CHECK_INT(bh__lite_apikey_create(db, "u1", "ci", NULL, 100, &k), -EIO);
  CHECK_STR(k.key, ""); /* never a key the store does not know */
  sqlite3_close(db);
}

#define GUARD(acct, addr, ev, now)                                             \
  bh__lite_login_guard(db, acct, addr, BH_LOGIN_##ev, now, &g, &ra)

static void test_login_guard(void) {
  sqlite3 *db = fresh();
  bh__guard_conf g = {3, 5, 60};
  long ra;
  /* CHECK reserves the attempt before the password is verified: the
   * third reservation starts the lock and still goes ahead, the fourth is
   * refused although no failure was reported yet (concurrent attempts) */
  CHECK_INT(GUARD("A@x", "1.2.3.4", CHECK, 100), 0);
  CHECK_INT(GUARD("a@x", "1.2.3.4", CHECK, 100), 0);
  CHECK_INT(GUARD("a@X", "1.2.3.4", CHECK, 101), 0);
  CHECK_INT(GUARD("a@x", "1.2.3.4", CHECK, 102), -EBUSY);
  CHECK_INT(ra, 59);
  /* FAILED counts nothing more: the reservation was the count */
  CHECK_INT(GUARD("a@x", "1.2.3.4", FAILED, 102), 0);
  CHECK_INT(GUARD("a@x", "9.9.9.9", CHECK, 130), -EBUSY);
  CHECK_INT(ra, 31);
  CHECK_INT(GUARD("b@x", "9.9.9.9", CHECK, 130), 0);
  CHECK_INT(GUARD("a@x", "9.9.9.9", CHECK, 161), 0);
  /* the address: 5 attempts over any accounts */
  for (int i = 0; i < 5; i++) {
    char acct[16];
    snprintf(acct, sizeof(acct), "c%d@x", i);
    CHECK_INT(GUARD(acct, "5.5.5.5", CHECK, 200), 0);
  }
  CHECK_INT(GUARD("d@x", "5.5.5.5", CHECK, 201), -EBUSY);
  /* a refusal by the address reserves nothing on the account */
  CHECK_INT(GUARD("d@x", "6.6.6.6", CHECK, 201), 0);
  CHECK_INT(GUARD("d@x", "6.6.6.6", CHECK, 201), 0);
  CHECK_INT(GUARD("d@x", "6.6.6.6", CHECK, 201), 0);
  CHECK_INT(GUARD("d@x", "6.6.6.6", CHECK, 201), -EBUSY);
  /* a success forgets the account's failures and gives back the
   * address's reservation, not its failures */
  CHECK_INT(GUARD("f@x", "7.7.7.7", CHECK, 300), 0);
  CHECK_INT(GUARD("f@x", "7.7.7.7", CHECK, 300), 0);
  CHECK_INT(GUARD("f@x", "7.7.7.7", CHECK, 300), 0); /* locks the account */
  CHECK_INT(GUARD("f@x", "7.7.7.7", SUCCEEDED, 301), 0);
  CHECK_INT(GUARD("f@x", "7.7.7.7", CHECK, 302), 0);
  CHECK_INT(GUARD("g@x", "7.7.7.7", CHECK, 302), 0);
  /* 7.7.7.7 holds 2 after the release: f, g and h make 5, h locks */
  CHECK_INT(GUARD("h@x", "7.7.7.7", CHECK, 302), 0);
  CHECK_INT(GUARD("i@x", "7.7.7.7", CHECK, 302), -EBUSY);
  /* a success releases a lock its own reservation caused */
  CHECK_INT(GUARD("h@x", "7.7.7.7", SUCCEEDED, 303), 0);
  CHECK_INT(GUARD("i@x", "7.7.7.7", CHECK, 303), 0);
  /* the window passes: counting starts again */
  CHECK_INT(GUARD("i@x", "7.7.7.7", CHECK, 304), -EBUSY);
  CHECK_INT(GUARD("i@x", "7.7.7.7", CHECK, 363), 0);
  /* the account is stored hashed */
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db,
                     "SELECT count(*) FROM login_failures WHERE key LIKE "
                     "'%@%'",
                     -1, &st, NULL);
  sqlite3_step(st);
  CHECK_INT(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void test_users(void) {
  sqlite3 *db = fresh();
  char id[64], id2[64], hash[256];
  int disabled = -1;
  CHECK_INT(bh__lite_user_add(db, "Dave@example.com", "$argon2id$x", 1, id,
                              sizeof(id)),
            0);
  CHECK(strncmp(id, "usr_", 4) == 0);
  CHECK_INT(bh__lite_user_add(db, "dave@EXAMPLE.com", "$argon2id$y", 1, id2,
                              sizeof(id2)),
            -EEXIST);
  CHECK_INT(bh__lite_user_get(db, "dave@example.com", id2, sizeof(id2), hash,
                              sizeof(hash), &disabled),
            0);
  CHECK_STR(id2, id);
  CHECK_STR(hash, "$argon2id$x");
  CHECK_INT(disabled, 0);
  CHECK_INT(bh__lite_user_set_disabled(db, "DAVE@example.com", 1), 0);
  CHECK_INT(bh__lite_user_get(db, "dave@example.com", id2, sizeof(id2), hash,
                              sizeof(hash), &disabled),
            0);
  CHECK_INT(disabled, 1);
  CHECK_INT(bh__lite_user_get(db, "nobody@example.com", id2, sizeof(id2), hash,
                              sizeof(hash), &disabled),
            -ENOENT);
  CHECK_INT(bh__lite_user_set_disabled(db, "nobody@example.com", 1), -ENOENT);
  sqlite3_close(db);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  test_migrations();
  test_refresh();
  test_api_keys();
  test_login_guard();
  test_users();
  return check_finish("test_store");
}
