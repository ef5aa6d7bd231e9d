/*
 * The identity store on PostgreSQL (see store.h): connections, the
 * schema's migrations and reconnecting after a failure. The statements
 * are store_ops_pg.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "identity/store.h"
#include "identity/store_ops.h"

#define BH__PG_RETRY_MS 500

static int64_t bh__pg_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libpq's message on one line (it ends in a newline, may span several). */
static void bh__pg_why(PGconn *db, const PGresult *r, char *out, size_t n) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (m == NULL || *m == '\0') m = db ? PQerrorMessage(db) : "out of memory";
  snprintf(out, n, "%s", m && *m ? m : "unknown error");
  for (char *p = out; *p; p++)
    if (*p == '\n' || *p == '\r') *p = *(p + 1) ? ' ' : '\0';
}

/* A statement that returns no rows; 0 or -EIO with the reason. */
static int bh__pg_cmd(PGconn *db, const char *sql, char *why, size_t n) {
  PGresult *r = PQexec(db, sql);
  int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK ||
                 PQresultStatus(r) == PGRES_TUPLES_OK);
  if (!ok && why) bh__pg_why(db, r, why, n);
  PQclear(r);
  return ok ? 0 : -EIO;
}

int bh__pg_open(const char *url, const char *schema, PGconn **out, char *err,
                size_t errlen) {
  *out = NULL;
  const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
  const char *vals[] = {url, "3", "bulkhead", NULL};
  /* expand_dbname: the url's own settings win over these defaults */
  PGconn *db = PQconnectdbParams(keys, vals, 1);
  if (db == NULL || PQstatus(db) != CONNECTION_OK) {
    char why[300];
    bh__pg_why(db, NULL, why, sizeof(why));
    snprintf(err, errlen, "cannot connect to PostgreSQL: %s", why);
    PQfinish(db);
    return -EIO;
  }
  char sql[200], why[300];
  /* a statement that hangs (a lock held by a stuck instance) fails the
   * job instead of the store thread */
  snprintf(sql, sizeof(sql),
           "SET statement_timeout = 5000; SET lock_timeout = 5000; "
           "SET search_path TO %s",
           schema);
  if (bh__pg_cmd(db, sql, why, sizeof(why))) {
    snprintf(err, errlen, "PostgreSQL session setup: %s", why);
    PQfinish(db);
    return -EIO;
  }
  *out = db;
  return 0;
}

int bh__pg_version(PGconn *db, const char *schema) {
  char sql[300];
  /* two steps: a query naming a table that does not exist fails to plan */
  snprintf(sql, sizeof(sql),
           "SELECT to_regclass('%s.schema_migrations') IS NOT NULL", schema);
  PGresult *r = PQexec(db, sql);
  int v = -1;
  if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    v = strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? 1 : 0;
  PQclear(r);
  if (v != 1) return v;
  snprintf(sql, sizeof(sql),
           "SELECT coalesce(max(version), 0) FROM %s.schema_migrations",
           schema);
  r = PQexec(db, sql);
  v = -1;
  if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    v = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

int bh__pg_migrate(PGconn *db, const char *schema, const bh__migration *m,
                   size_t n, int *from, char *err, size_t errlen) {
  char why[400] = "", sql[400];
  int last = n ? m[n - 1].version : 0;
  if (bh__pg_cmd(db, "BEGIN", why, sizeof(why))) goto fail;
  /* instances starting together take turns here; the second one finds
   * the work done */
  snprintf(sql, sizeof(sql),
           "SELECT pg_advisory_xact_lock(hashtext('bulkhead:%s')); "
           "CREATE SCHEMA IF NOT EXISTS %s; "
           "CREATE TABLE IF NOT EXISTS %s.schema_migrations (version "
           "INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT "
           "NULL)",
           schema, schema, schema);
  if (bh__pg_cmd(db, sql, why, sizeof(why))) goto fail;
  int cur = bh__pg_version(db, schema);
  if (cur < 0) {
    snprintf(why, sizeof(why), "cannot read the schema version");
    goto fail;
  }
  if (from) *from = cur;
  if (cur > last) {
    bh__pg_cmd(db, "ROLLBACK", NULL, 0);
    snprintf(err, errlen,
             "schema %s is at version %d, newer than this bulkhead knows "
             "(%d): refusing to run an older binary on it",
             schema, cur, last);
    return -EINVAL;
  }
  const char *failed = NULL;
  for (size_t i = 0; i < n && !failed; i++) {
    if (m[i].version <= cur) continue;
    if (bh__pg_cmd(db, m[i].sql, why, sizeof(why))) {
      failed = m[i].name;
      break;
    }
    const char *vals[3];
    char ver[16], at[24];
    snprintf(ver, sizeof(ver), "%d", m[i].version);
    snprintf(at, sizeof(at), "%lld", (long long)bh__store_now());
    vals[0] = ver;
    vals[1] = m[i].name;
    vals[2] = at;
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s.schema_migrations VALUES ($1, $2, $3)", schema);
    PGresult *r = PQexecParams(db, sql, 3, NULL, vals, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
      bh__pg_why(db, r, why, sizeof(why));
      failed = m[i].name;
    }
    PQclear(r);
  }
  if (failed) {
    bh__pg_cmd(db, "ROLLBACK", NULL, 0);
    snprintf(err, errlen,
             "migration %s of schema %s failed: %s (nothing applied; the "
             "schema stays at version %d)",
             failed, schema, why, cur);
    return -EIO;
  }
  if (bh__pg_cmd(db, "COMMIT", why, sizeof(why))) goto fail;
  return 0;
fail:
  bh__pg_cmd(db, "ROLLBACK", NULL, 0);
  snprintf(err, errlen, "schema %s: %s", schema, why);
  return -EIO;
}

void bh__pg_incident(bh__sconn *c) {
  c->seen = __atomic_add_fetch(c->incidents, 1, __ATOMIC_ACQ_REL);
}

int bh__pg_ensure(bh__sconn *c) {
  unsigned inc = __atomic_load_n(c->incidents, __ATOMIC_ACQUIRE);
  if (inc != c->seen) {
    /* another connection of the pool found the server gone, or got back
     * to it: this one may hold a socket the server has forgotten (its
     * first statement would fail a request) or wait out its reconnect
     * pause for nothing. One round trip settles it. */
    c->seen = inc;
    c->retry_at = 0;
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK) {
      PGresult *r = PQexec(c->pg, "SELECT 1");
      int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
      PQclear(r);
      if (ok) return 0;
    }
  }
  if (c->pg && PQstatus(c->pg) == CONNECTION_OK) return 0;
  int64_t now = bh__pg_mono_ms();
  if (now < c->retry_at) return -EAGAIN;
  c->retry_at = now + BH__PG_RETRY_MS;
  if (c->pg) PQfinish(c->pg);
  c->pg = NULL;
  char why[400];
  PGconn *db = NULL;
  if (bh__pg_open(c->url, BH__PG_IDENTITY_SCHEMA, &db, why, sizeof(why))) {
    if (c->up)
      bh__logf(BH__ERROR, "store_unavailable", "identity store: %s", why);
    return -EIO;
  }
  c->pg = db;
  bh__pg_incident(c); /* the others may come back now too */
  if (!c->up)
    bh__logf(BH__INFO, "store_available",
             "identity store: PostgreSQL is reachable again");
  return 0;
}

/* The migrations of m newer than version v. */
static int bh__pg_pending(const bh__migration *m, size_t n, int v) {
  int k = 0;
  for (size_t i = 0; i < n; i++)
    k += m[i].version > v;
  return k;
}

int bh__pg_schema_step(PGconn *db, const char *who, const char *schema,
                       const bh__migration *m, size_t n, int mode, char *err,
                       size_t errlen) {
  int last = n ? m[n - 1].version : 0;
  int v = bh__pg_version(db, schema);
  if (v < 0) {
    snprintf(err, errlen, "%s: cannot read the version of schema %s", who,
             schema);
    return -EIO;
  }
  if (v > last) {
    snprintf(err, errlen,
             "%s: schema %s is at version %d, newer than this bulkhead knows "
             "(%d)",
             who, schema, v, last);
    return -EINVAL;
  }
  if (mode == BH__PG_CHECK) {
    if (v < last)
      bh__logf(BH__INFO, "store_pending",
               "%s: schema %s at version %d, %d migration(s) pending "
               "(applied at start or by bulkhead migrate)",
               who, schema, v, bh__pg_pending(m, n, v));
    else
      bh__logf(BH__INFO, "store_current",
               "%s: schema %s at version %d, up "
               "to date",
               who, schema, v);
    return 0;
  }
  /* up to date: no transaction, no lock (the runner rereads the version
   * under its lock anyway when there is work) */
  int from = v;
  if (v < last) {
    char why[512];
    int rc = bh__pg_migrate(db, schema, m, n, &from, why, sizeof(why));
    if (rc) {
      snprintf(err, errlen, "%s: %s", who, why);
      return rc;
    }
  }
  if (from < last)
    bh__logf(BH__INFO, "store_migrated",
             "%s: schema %s migrated from version %d to %d", who, schema, from,
             last);
  else if (mode == BH__PG_MIGRATE)
    bh__logf(BH__INFO, "store_current",
             "%s: schema %s at version %d, nothing to do", who, schema, last);
  return 0;
}

int bh__pg_prepare(const char *url, int mode, int64_t since,
                   void (*fn)(const char *sid, int64_t at, void *arg),
                   void *arg, char *err, size_t errlen) {
  PGconn *db = NULL;
  char why[512];
  if (bh__pg_open(url, BH__PG_IDENTITY_SCHEMA, &db, why, sizeof(why))) {
    snprintf(err, errlen, "identity store: %s", why);
    return -EIO;
  }
  int rc = bh__pg_schema_step(db, "identity store", BH__PG_IDENTITY_SCHEMA,
                              bh__core_pg_migrations, bh__core_pg_nmigrations,
                              mode, err, errlen);
  if (rc == 0 && mode == BH__PG_CONNECT)
    bh__logf(BH__INFO, "store_ready",
             "identity store on PostgreSQL, schema " BH__PG_IDENTITY_SCHEMA
             " at version %d",
             bh__core_pg_migrations[bh__core_pg_nmigrations - 1].version);
  if (rc == 0 && fn && bh__pg_revoked_since(db, since, fn, arg) != 0) {
    snprintf(err, errlen, "identity store: cannot read revoked sessions");
    rc = -EIO;
  }
  PQfinish(db);
  return rc;
}
