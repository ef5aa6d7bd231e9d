/*
 * The magic-link store (magic.c's jobs, the job queue's thread only): the
 * auth plugin's own SQLite file (magic_db.c), or with [store] backend =
 * postgres the shared database, schema bh_auth (magic_db_pg.c), so a link
 * sent by one instance opens on every other and the rate limits and the
 * accounts seen signing in are the cluster's.
 *
 * Hashes are MAGIC_HASH_LEN bytes. Every call returns 0 (or 1: found),
 * or -EIO when the store failed.
 */
#ifndef MAGIC_DB_H
#define MAGIC_DB_H

#include <stddef.h>
#include <stdint.h>

#include <bulkhead/plugin.h>

#define MAGIC_HASH_LEN 32

typedef struct magic_token {
  unsigned char verifier[MAGIC_HASH_LEN];
  unsigned char email_hash[MAGIC_HASH_LEN];
  char user_id[128];
  char redirect[1024];
  int64_t expires_at;
} magic_token;

/* Chooses the backend (loop thread, before the queue starts). */
void mdb_init(bh_ctx *ctx);
const char *mdb_name(void); /* for a log line: the file or the schema */
int mdb_ensure(void);       /* open / connect (and migrate) unless open */
void mdb_close(void);
int mdb_begin(void); /* a write transaction */
int mdb_commit(void);
void mdb_rollback(void); /* when one is open */
/* the fixed window of `key`: 1 and *start, *count, or 0 when none */
int mdb_limit_get(const unsigned char *key, int64_t *start, int64_t *count);
int mdb_limit_put(const unsigned char *key, int64_t start, int64_t count);
int mdb_idp_down(void); /* 1 down, 0 up or unknown, -EIO */
int mdb_idp_set(int down, int64_t now);
int mdb_account_get(const unsigned char *email_hash, char *user_id, size_t n);
int mdb_account_is(const unsigned char *email_hash, const char *user_id);
int mdb_account_put(const unsigned char *email_hash, const char *user_id,
                    int64_t now);
/* selector: its first sel_len bytes */
int mdb_token_put(const char *selector, size_t sel_len, const magic_token *t);
int mdb_token_get(const char *selector, size_t sel_len, magic_token *t);
int mdb_token_delete(const char *selector, size_t sel_len);
int mdb_tokens_delete_email(const unsigned char *email_hash);
int mdb_tokens_expire(int64_t before);

/* magic_db_pg.c: the same, on PostgreSQL, in schema bh_auth (declared in
 * the descriptor: magic_pg_schema, auth_plugin.h) */
int mdb_pg_ensure(bh_ctx *ctx);
void mdb_pg_close(bh_ctx *ctx);
int mdb_pg_exec(const char *sql);
int mdb_pg_limit_get(const unsigned char *key, int64_t *start, int64_t *count);
int mdb_pg_limit_put(const unsigned char *key, int64_t start, int64_t count);
int mdb_pg_idp_down(void);
int mdb_pg_idp_set(int down, int64_t now);
int mdb_pg_account_get(const unsigned char *email_hash, char *user_id,
                       size_t n);
int mdb_pg_account_is(const unsigned char *email_hash, const char *user_id);
int mdb_pg_account_put(const unsigned char *email_hash, const char *user_id,
                       int64_t now);
int mdb_pg_token_put(const char *selector, size_t sel_len,
                     const magic_token *t);
int mdb_pg_token_get(const char *selector, size_t sel_len, magic_token *t);
int mdb_pg_token_delete(const char *selector, size_t sel_len);
int mdb_pg_tokens_delete_email(const unsigned char *email_hash);
int mdb_pg_tokens_expire(int64_t before);
int mdb_pg_in_tx(void);

#endif
