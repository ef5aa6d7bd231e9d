/*
 * The billing store on the shared PostgreSQL database ([store] backend =
 * postgres, through the SDK's store_connect()): the same jobs as the
 * SQLite file of billing_store.c, in the plugin's own schema bh_billing
 * (migrations in schema/postgres/billing). A provider event id taken by
 * any instance is a replay for every other one: the insert that records
 * it is the check (ON CONFLICT DO NOTHING waits for a concurrent insert of
 * the same id to commit, then finds it).
 *
 * Runs on the store's job-queue thread only. A broken connection fails the
 * batch (-EIO: billing.store_unavailable) and is reopened by the next one.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing.h"
#include "billing_schema_pg.h"

#define BILLING_EVENT_RETENTION_S (30 * 86400)
#define BILLING_PG_RETRY_MS 500
#define NEXT(j) ((billing_job *)(void *)(j)->job.next)

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void billing_pg_close(billing_store *s) {
  if (s->pg) bh_store_disconnect(s->ctx, s->pg);
  s->pg = NULL;
}

const bh_store_schema billing_pg_schema = {
    sizeof(bh_store_schema), "bh_billing",
    (const bh_migration *)(const void *)billing_pg_migrations,
    BH_COUNT(billing_pg_migrations)};

int billing_pg_ensure(billing_store *s) {
  PGconn *db = s->pg;
  if (db && PQstatus(db) == CONNECTION_OK) return 0;
  int64_t now = mono_ms();
  if (now < s->pg_retry_at) return -EAGAIN;
  s->pg_retry_at = now + BILLING_PG_RETRY_MS;
  billing_pg_close(s);
  char err[300];
  void *conn = NULL;
  /* NULL: the descriptor's store_schema (billing_pg_schema) */
  int rc = bh_store_connect(s->ctx, NULL, NULL, 0, &conn, err, sizeof(err));
  if (rc) {
    if (!s->pg_failing) bh_log(s->ctx, BH_LOG_ERROR, "billing store: %s", err);
    s->pg_failing = 1;
    return rc;
  }
  if (s->pg_failing)
    bh_log(s->ctx, BH_LOG_INFO, "billing store: PostgreSQL is reachable again");
  s->pg_failing = 0;
  s->pg = conn;
  return 0;
}

/* One statement with text parameters: 1 when it changed or returned a
 * row, 0 when not, -1 when it failed (*bad: the job's own input). */
static int q(PGconn *db, const char *sql, int n, const char *const *v,
             char **first, int *bad) {
  PGresult *r = PQexecParams(db, sql, n, NULL, v, NULL, NULL, 0);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  int rc = -1;
  if (st == PGRES_TUPLES_OK) {
    rc = PQntuples(r) > 0;
    if (rc && first) *first = billing_strdup(PQgetvalue(r, 0, 0));
  } else if (st == PGRES_COMMAND_OK) {
    rc = atol(PQcmdTuples(r)) > 0;
  } else {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* data (22) or constraint (23) errors: this job's input, not an outage */
    *bad =
        state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0);
  }
  PQclear(r);
  return rc;
}

static int op_lookup(PGconn *db, billing_job *j, int *bad) {
  const char *v[] = {j->user_id};
  int rc = q(db, "SELECT customer_id FROM customers WHERE user_id = $1", 1, v,
             &j->customer_id, bad);
  if (rc < 0) return -1;
  j->status = rc == 0 ? -ENOENT : j->customer_id ? 0 : -ENOMEM;
  return 0;
}

static int op_event(PGconn *db, billing_job *j, int *bad) {
  char now[24], old[24];
  snprintf(now, sizeof(now), "%lld", (long long)j->now);
  snprintf(old, sizeof(old), "%lld",
           (long long)(j->now - BILLING_EVENT_RETENTION_S));
  const char *v[] = {j->event_id, j->event_type, now};
  int rc = q(db,
             "INSERT INTO provider_events (event_id, type, received_at) "
             "VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
             3, v, NULL, bad);
  if (rc < 0) return -1;
  if (rc == 0) {
    j->status = -EEXIST; /* taken before, here or on another instance */
    return 0;
  }
  if (j->ev_user && j->ev_customer) {
    const char *c[] = {j->ev_user, j->ev_customer, j->ev_subscription, now};
    rc = q(db,
           "INSERT INTO customers (user_id, customer_id, subscription_id, "
           "created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT "
           "(user_id) DO UPDATE SET customer_id = excluded.customer_id, "
           "subscription_id = coalesce(excluded.subscription_id, "
           "customers.subscription_id), updated_at = excluded.updated_at",
           4, c, NULL, bad);
  } else if (j->ev_customer && strcmp(j->event_type, "customer.deleted") == 0) {
    const char *c[] = {j->ev_customer};
    rc = q(db, "DELETE FROM customers WHERE customer_id = $1", 1, c, NULL, bad);
  }
  if (rc >= 0) {
    const char *p[] = {old};
    rc = q(db, "DELETE FROM provider_events WHERE received_at < $1", 1, p, NULL,
           bad);
  }
  if (rc < 0) return -1;
  j->status = 0;
  return 0;
}

static int cmd(PGconn *db, const char *sql) {
  PGresult *r = PQexec(db, sql);
  int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok ? 0 : -1;
}

static void fail_all(billing_job *batch) {
  for (billing_job *j = batch; j; j = NEXT(j)) {
    j->status = -EIO;
    free(j->customer_id);
    j->customer_id = NULL;
  }
}

int billing_pg_run_batch(billing_store *s, billing_job *batch) {
  if (billing_pg_ensure(s) != 0) {
    fail_all(batch);
    return -EIO;
  }
  PGconn *db = s->pg;
  int rc = cmd(db, "BEGIN");
  for (billing_job *j = batch; rc == 0 && j; j = NEXT(j)) {
    if ((rc = cmd(db, "SAVEPOINT job")) != 0) break;
    int bad = 0;
    int orc = j->op == BILLING_OP_LOOKUP ? op_lookup(db, j, &bad)
                                         : op_event(db, j, &bad);
    if (orc != 0 && bad) {
      j->status = -EIO; /* this job only */
      rc = cmd(db, "ROLLBACK TO job");
    } else if (orc != 0) {
      rc = -1; /* the store itself failed: the whole batch does */
      break;
    }
    if (rc == 0) rc = cmd(db, "RELEASE job");
  }
  if (rc == 0) rc = cmd(db, "COMMIT");
  if (rc != 0) {
    if (PQstatus(db) == CONNECTION_OK) PQclear(PQexec(db, "ROLLBACK"));
    fail_all(batch);
    return -EIO;
  }
  return 0;
}
