/*
 * The core's identity store, on the backend [store] names:
 *  - SQLite (the default): one file (WAL, busy timeout, foreign keys) with
 *    its schema migrations, one connection and job-queue thread per
 *    worker; WAL lets workers read concurrently and the busy timeout
 *    serialises their writes;
 *  - PostgreSQL: one database every instance shares, the tables in schema
 *    bh_identity with migrations of their own, `pool` connections per
 *    worker, each on a job queue (state/jobq.c) of its own.
 * No statement ever runs on an event loop. The master (or the single
 * process) migrates before any worker opens the store.
 *
 * Jobs: the caller embeds a bh__sjob in its own struct, fills work (runs
 * on a store thread with the connection) and done (runs on the loop
 * thread afterwards), and submits it. On SQLite jobs run one at a time, in
 * order; on PostgreSQL they go round-robin to the pool's connections, so
 * two jobs may run at once (each is its own transaction).
 */
#ifndef BH_CORE_STORE_H
#define BH_CORE_STORE_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bulkhead/plugin.h"

typedef struct bh__migration {
  int version;      /* the file's leading number: 1, 2, ... ascending */
  const char *name; /* "001_sessions.sql" */
  const char *sql;
} bh__migration;

/* the files of schema/core, embedded at build time (bh_schema_core.c) */
extern const bh__migration bh__core_migrations[];
extern const size_t bh__core_nmigrations;

/* Opens (creating) `path` with mode 0600 and the pragmas above, then
 * applies the pending migrations. 0 and *out, or a negative errno with one
 * line in err (the file, the migration, SQLite's message). */
int bh__store_open(const char *path, const bh__migration *m, size_t n,
                   sqlite3 **out, char *err, size_t errlen);
/* Applies every migration newer than PRAGMA user_version in ONE
 * transaction: all of them or none (a failure rolls back and the file
 * stays at its old version). A file newer than the last migration is
 * refused. 0, or -EINVAL / -EIO with the reason in err. */
int bh__store_migrate(sqlite3 *db, const bh__migration *m, size_t n, char *err,
                      size_t errlen);
/* PRAGMA user_version, or a negative value on error. */
int bh__store_version(sqlite3 *db);

/* [store] backend */
enum bh__store_backend { BH__STORE_SQLITE = 0, BH__STORE_POSTGRES = 1 };

/* One connection of either backend, as the statements (store_ops.h) take
 * it. A PostgreSQL one reconnects by itself (store_pg.c). */
typedef struct bh__sconn {
  int backend;
  sqlite3 *lite;
  PGconn *pg;
  const char *url;  /* postgres: borrowed from the store */
  int64_t retry_at; /* postgres: no reconnect before (monotonic ms) */
  int up;           /* the last job found it usable */
  /* postgres: the pool's count of incidents (a connection found broken,
   * or reopened), shared by every connection of the store, and the count
   * this one last acted on: see bh__pg_ensure */
  unsigned *incidents;
  unsigned seen;
} bh__sconn;

typedef struct bh__sjob bh__sjob;
struct bh__sjob {
  bh_job job;                              /* first: the queue's node */
  void (*work)(bh__sconn *c, bh__sjob *j); /* store thread */
  void (*done)(bh__sjob *j);               /* loop thread, after work */
};

typedef struct bh__store bh__store;

/* Starts the thread for `db` (owned by the store from now on) and the
 * loop-side wakeup (unreferenced: it never keeps a loop alive). */
int bh__store_start(uv_loop_t *loop, sqlite3 *db, bh__store **out);
/* The PostgreSQL store at `url` (copied): `pool` connections, each with a
 * job queue of its own (jobs go round-robin). The connections open on
 * their threads, and reopen after a failure, so a database that is down
 * at start or goes away later only fails the jobs in between (status
 * -EIO: the callers answer auth.session_store_unavailable). */
int bh__store_start_pg(uv_loop_t *loop, const char *url, uint32_t pool,
                       bh__store **out);

/* PostgreSQL (store_pg.c). The identity tables live in their own schema,
 * bh_identity, with its version in bh_identity.schema_migrations. */
#define BH__PG_IDENTITY_SCHEMA "bh_identity"
extern const bh__migration bh__core_pg_migrations[];
extern const size_t bh__core_pg_nmigrations;
/* Connects (connect_timeout 3 s unless the url says otherwise, a
 * statement_timeout of 5 s, search_path = `schema`). 0 and *out, or -EIO
 * with libpq's one-line reason in err (never the url: it may hold a
 * password). */
int bh__pg_open(const char *url, const char *schema, PGconn **out, char *err,
                size_t errlen);
/* Applies the migrations newer than the schema's version in ONE
 * transaction under an advisory lock (instances starting together take
 * turns; the second finds the work done): all or none. A schema newer
 * than the last migration is refused. 0 (*from, when not NULL: the
 * version found under the lock), -EINVAL or -EIO with err. */
int bh__pg_migrate(PGconn *db, const char *schema, const bh__migration *m,
                   size_t n, int *from, char *err, size_t errlen);
/* The schema's version: 0 when not created yet, negative on error. */
int bh__pg_version(PGconn *db, const char *schema);
/* What to do with a schema: BH__PG_CHECK (`bulkhead -t`: read its
 * version, log whether migrations are pending), BH__PG_MIGRATE (`bulkhead
 * migrate`: apply them, log one line either way) or BH__PG_CONNECT
 * (start-up, a plugin's store_connect: apply them, log only when some
 * were). */
enum { BH__PG_CHECK = 0, BH__PG_MIGRATE = 1, BH__PG_CONNECT = 2 };
/* One schema on db (connected by bh__pg_open) in `mode`; `who` names the
 * store in the log line and in err ("identity store", "plugin
 * webhooks"). A schema newer than m is -EINVAL in every mode. 0 or a
 * negative errno with one line in err. */
int bh__pg_schema_step(PGconn *db, const char *who, const char *schema,
                       const bh__migration *m, size_t n, int mode, char *err,
                       size_t errlen);
/* Before the workers: connects to `url`, then the identity schema in
 * `mode` (bh__pg_schema_step), then, with `fn`, calls it for each session
 * revoked since `since`. 0 or a negative errno with one line in err. */
int bh__pg_prepare(const char *url, int mode, int64_t since,
                   void (*fn)(const char *sid, int64_t at, void *arg),
                   void *arg, char *err, size_t errlen);
/* Reopens c->pg when it is broken (at most every 500 ms); 0 when usable. */
int bh__pg_ensure(bh__sconn *c);
/* c's connection broke under a statement: tells the pool's others. */
void bh__pg_incident(bh__sconn *c);
/* Queues `j`; 0, or -ESHUTDOWN once stopping (then `done` never runs). */
int bh__store_submit(bh__store *s, bh__sjob *j);
/* Lets the thread finish the queued jobs, joins it, runs the pending done
 * callbacks on the caller's (loop) thread, closes the connection and
 * frees the store (after the loop closes its handle). */
void bh__store_stop(bh__store *s);

/* Helpers for job code. */
/* Random id "<prefix><22 base64url chars>" (16 random bytes). */
void bh__store_id(const char *prefix, char *out, size_t outlen);
/* prefix + nbytes (at most 32) random bytes, base64url: refresh tokens and
 * API keys, the same on every backend. */
void bh__store_token(const char *prefix, size_t nbytes, char *out,
                     size_t outlen);
/* SHA-256 of a credential, as stored. */
void bh__store_hash(const char *s, size_t n, unsigned char out[32]);
int64_t bh__store_now(void);

#endif
