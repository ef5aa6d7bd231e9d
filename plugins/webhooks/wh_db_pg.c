/*
 * The webhooks store on the shared PostgreSQL database ([store] backend =
 * postgres): a connection through the SDK's store_connect() in the
 * plugin's own schema bh_webhooks, migrated by the core's runner from
 * schema/postgres/webhooks (compiled in). The store thread and the
 * dispatcher thread each keep one; store_connect only reads the daemon's
 * configuration, which no thread changes under a worker, so the
 * dispatcher's own thread may call it as a job queue's thread does.
 *
 * A broken connection fails what runs on it (webhooks.unavailable) and is
 * reopened by the next use, at most every 100 ms: the compartment comes
 * back by itself when the database does.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <string.h>

#include "wh.h"
#include "wh_schema_pg.h"

#define WH_PG_RETRY_MS 100

void wh_db_pg_close(wh_db *db) {
  if (db->pg) bh_store_disconnect(db->ctx, db->pg);
  db->pg = NULL;
}

const bh_store_schema wh_pg_schema = {
    sizeof(bh_store_schema), "bh_webhooks",
    (const bh_migration *)(const void *)wh_pg_migrations,
    BH_COUNT(wh_pg_migrations)};

int wh_db_pg_ensure(wh_db *db) {
  if (db->pg && PQstatus(db->pg) == CONNECTION_OK) return 0;
  int64_t now = wh_mono_ms();
  if (now < db->retry_at_ms) return -EAGAIN;
  db->retry_at_ms = now + WH_PG_RETRY_MS;
  wh_db_close(db); /* statements of the old connection go with it */
  char err[300];
  void *conn = NULL;
  /* NULL: the descriptor's store_schema (wh_pg_schema) */
  int rc = bh_store_connect(db->ctx, NULL, NULL, 0, &conn, err, sizeof(err));
  if (rc) {
    db->failing = 1;
    return rc;
  }
  db->pg = conn;
  db->failing = 0;
  db->ever_opened = 1;
  return 0;
}

int wh_db_pg_exec(wh_db *db, const char *sql) {
  if (db->pg == NULL) return SQLITE_IOERR;
  if (strcmp(sql, "BEGIN IMMEDIATE") == 0) sql = "BEGIN";
  PGresult *r = PQexec(db->pg, sql);
  int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (ok) return SQLITE_OK;
  return PQstatus(db->pg) == CONNECTION_OK ? SQLITE_ERROR : SQLITE_IOERR;
}

int wh_db_pg_in_tx(wh_db *db) {
  return db->pg && PQtransactionStatus(db->pg) != PQTRANS_IDLE;
}
