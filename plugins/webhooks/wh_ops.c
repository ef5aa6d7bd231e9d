/*
 * The SQL behind every API operation, run by the store thread inside the
 * batch's transaction (wh_store.c), and the JSON the API answers with.
 *
 * Each operation returns SQLITE_OK with either j->body (+ j->status) or
 * j->code set, or a SQLite error code when the store itself failed. Every
 * statement is a static string, prepared once per connection.
 *
 * Every statement is scoped to j->owner (wh_api.c), by the owner column
 * of each table (a delivery's is its endpoint's, copied). A row of another
 * owner is simply not found, so it answers exactly as a missing id; rows
 * with no owner (written before schema version 2) match nobody.
 *
 * The JSON is built with the SDK's writer (header only, so it runs on
 * the store thread without calling the core).
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh.h"

#define EP_COLS                                                                \
  "seq, id, url, description, events, enabled, disabled_reason, "              \
  "old_secret_until, breaker_failures, breaker_open_until, created_at, "       \
  "updated_at"

#define DLV_COLS                                                               \
  "d.seq, d.id, d.event_id, ev.type, d.endpoint_id, d.state, d.attempts, "     \
  "d.next_at, d.lease_until, d.last_status, d.last_error, d.created_at, "      \
  "d.updated_at, d.completed_at"
#define DLV_FROM " FROM deliveries d JOIN events ev ON ev.id = d.event_id "

#define STEP_ERR(rc) ((rc) != SQLITE_ROW && (rc) != SQLITE_DONE)

/* ---- small helpers ------------------------------------------------------ */

static void bind_text(wh_stmt *st, int i, const char *s) {
  if (s)
    wh_bind_text(st, i, s);
  else
    wh_bind_text(st, i, NULL);
}

static const char *col_text(wh_stmt *st, int i) {
  const unsigned char *t = wh_col_text(st, i);
  return t ? (const char *)t : "";
}

/* key: value writers of the row's columns (NULL columns write null) */
static void ktime(bh_json *w, const char *k, int64_t ms) {
  char buf[40];
  wh_time_str(ms, buf, sizeof(buf));
  bh_json_kstr(w, k, buf);
}

static int col_null(wh_stmt *st, int i) {
  return wh_col_type(st, i) == SQLITE_NULL;
}

static void ktime_col(bh_json *w, const char *k, wh_stmt *st, int i) {
  if (col_null(st, i))
    bh_json_knull(w, k);
  else
    ktime(w, k, wh_col_int64(st, i));
}

static void kint_col(bh_json *w, const char *k, wh_stmt *st, int i) {
  if (col_null(st, i))
    bh_json_knull(w, k);
  else
    bh_json_kint(w, k, wh_col_int64(st, i));
}

static void ktext_col(bh_json *w, const char *k, wh_stmt *st, int i) {
  bh_json_kstr(w, k, col_null(st, i) ? NULL : col_text(st, i));
}

/* Hands what `w` built to the job as its answer (w's text is taken). */
static int answer(wh_job *j, int status, bh_json *w) {
  if (bh_json_done(w, NULL) == NULL) {
    int nomem = bh_json_error(w) == -ENOMEM;
    bh_json_free(w);
    return nomem ? SQLITE_NOMEM : SQLITE_ERROR;
  }
  j->body = w->buf; /* malloc'd: freed with the job */
  w->buf = NULL;
  j->status = status;
  return SQLITE_OK;
}

static int refuse(wh_job *j, const char *code) {
  j->code = code;
  return SQLITE_OK;
}

/* ---- endpoints ---------------------------------------------------------- */

/* The endpoint of row `st` as an object; `secret` (when not NULL) last. */
static void endpoint_put(bh_json *w, const wh_config *cfg, wh_stmt *st,
                         const char *secret) {
  int64_t now = wh_now_ms();
  int64_t fails = wh_col_int64(st, 8);
  int64_t open_until = wh_col_int64(st, 9);
  const char *breaker = fails < cfg->breaker_failures ? "closed"
                        : open_until > now            ? "open"
                                                      : "half_open";
  const char *events = col_text(st, 4); /* events_text() wrote it */
  bh_json_obj(w);
  bh_json_kstr(w, "id", col_text(st, 1));
  bh_json_kstr(w, "url", col_text(st, 2));
  bh_json_kstr(w, "description", col_text(st, 3));
  bh_json_kraw(w, "events", events[0] == '[' ? events : "[]");
  bh_json_kbool(w, "enabled", wh_col_int(st, 5));
  ktext_col(w, "disabledReason", st, 6);
  bh_json_kobj(w, "breaker");
  bh_json_kstr(w, "state", breaker);
  bh_json_kint(w, "consecutiveFailures", fails);
  bh_json_end(w);
  ktime(w, "createdAt", wh_col_int64(st, 10));
  ktime(w, "updatedAt", wh_col_int64(st, 11));
  int64_t old_until = wh_col_int64(st, 7);
  if (old_until > now) {
    ktime(w, "previousSecretExpiresAt", old_until);
  }
  if (secret) bh_json_kstr(w, "secret", secret);
  bh_json_end(w);
}

static void endpoint_row(bh_json *w, const wh_config *cfg, wh_stmt *st) {
  endpoint_put(w, cfg, st, NULL);
}

static const char SQL_EP_BY_ID[] =
    "SELECT " EP_COLS " FROM endpoints WHERE id = ?1 AND owner = ?2";

/* Answers the endpoint `id` (status), or webhooks.endpoint_not_found. */
static int endpoint_answer(wh_db *db, wh_job *j, const char *id, int status,
                           const char *secret) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_BY_ID, &rc);
  if (st == NULL) return rc;
  bind_text(st, 1, id);
  bind_text(st, 2, j->owner);
  rc = wh_step(st);
  if (rc == SQLITE_DONE) return refuse(j, "webhooks.endpoint_not_found");
  if (rc != SQLITE_ROW) return rc;
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_sensitive(&w); /* a new secret is shown once */
  endpoint_put(&w, j->cfg, st, secret);
  wh_reset(st);
  return answer(j, status, &w);
}

static const char SQL_SUB_DEL[] =
    "DELETE FROM endpoint_events WHERE endpoint_id = ?1";
static const char SQL_SUB_ADD[] =
    "INSERT OR IGNORE INTO endpoint_events (event_type, endpoint_id) "
    "VALUES (?1, ?2)";

static int subscriptions_set(wh_db *db, wh_job *j, const char *id) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_SUB_DEL, &rc);
  if (st == NULL) return rc;
  bind_text(st, 1, id);
  if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  for (size_t i = 0; i < j->nevents; i++) {
    if ((st = wh_db_stmt(db, SQL_SUB_ADD, &rc)) == NULL) return rc;
    bind_text(st, 1, j->events[i]);
    bind_text(st, 2, id);
    if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  }
  return SQLITE_OK;
}

static char *events_text(const wh_job *j) {
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_arr(&w);
  for (size_t i = 0; i < j->nevents; i++)
    bh_json_str(&w, j->events[i]);
  bh_json_end(&w);
  if (bh_json_done(&w, NULL) == NULL) {
    bh_json_free(&w);
    return NULL;
  }
  return w.buf; /* the caller frees it */
}

static const char SQL_EP_INSERT[] =
    "INSERT INTO endpoints (id, url, description, events, secret, "
    "created_at, updated_at, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)";

static int ep_create(wh_db *db, wh_job *j) {
  char id[WH_ID_MAX], secret[96];
  wh_new_id(id, sizeof(id), "ep");
  wh_secret_new(secret, sizeof(secret));
  char *events = events_text(j);
  if (events == NULL) return SQLITE_NOMEM;
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_INSERT, &rc);
  if (st) {
    bind_text(st, 1, id);
    bind_text(st, 2, j->url);
    bind_text(st, 3, j->description ? j->description : "");
    bind_text(st, 4, events);
    bind_text(st, 5, secret);
    wh_bind_int64(st, 6, wh_now_ms());
    bind_text(st, 7, j->owner);
    rc = wh_step(st);
    if (rc == SQLITE_DONE) rc = subscriptions_set(db, j, id);
    if (rc == SQLITE_OK) rc = endpoint_answer(db, j, id, 201, secret);
  }
  free(events);
  memset(secret, 0, sizeof(secret));
  return rc;
}

static const char SQL_EP_LIST[] =
    "SELECT " EP_COLS " FROM endpoints "
    "WHERE owner = ?3 AND seq < ?1 ORDER BY seq DESC LIMIT ?2";

/* {"data": [...], "nextCursor": "..." | null}: rows newest first, one more
 * than the page asked to learn whether another page follows. */
static int page_answer(wh_job *j, wh_stmt *st,
                       void (*row)(bh_json *, const wh_config *, wh_stmt *)) {
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_obj(&w);
  bh_json_karr(&w, "data");
  int64_t last = 0, n = 0;
  int more = 0, rc;
  while ((rc = wh_step(st)) == SQLITE_ROW) {
    if (n == j->limit) {
      more = 1;
      break;
    }
    last = wh_col_int64(st, 0);
    row(&w, j->cfg, st);
    n++;
  }
  wh_reset(st);
  if (STEP_ERR(rc)) {
    bh_json_free(&w);
    return rc;
  }
  bh_json_end(&w);
  char cursor[24];
  snprintf(cursor, sizeof(cursor), "%lld", (long long)last);
  bh_json_kstr(&w, "nextCursor", more ? cursor : NULL);
  bh_json_end(&w);
  return answer(j, 200, &w);
}

static int ep_list(wh_db *db, wh_job *j) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_LIST, &rc);
  if (st == NULL) return rc;
  wh_bind_int64(st, 1, j->cursor > 0 ? j->cursor : INT64_MAX);
  wh_bind_int64(st, 2, j->limit + 1);
  bind_text(st, 3, j->owner);
  return page_answer(j, st, endpoint_row);
}

static const char SQL_EP_PATCH[] =
    "UPDATE endpoints SET "
    "url = CASE WHEN ?2 THEN ?3 ELSE url END, "
    "description = CASE WHEN ?4 THEN ?5 ELSE description END, "
    "events = CASE WHEN ?6 THEN ?7 ELSE events END, "
    "enabled = CASE WHEN ?8 THEN ?9 ELSE enabled END, "
    "disabled_reason = CASE WHEN ?8 THEN (CASE WHEN ?9 THEN NULL "
    "  ELSE 'manual' END) ELSE disabled_reason END, "
    /* enabling again starts with a closed breaker */
    "breaker_failures = CASE WHEN ?8 AND ?9 THEN 0 ELSE breaker_failures END, "
    "breaker_open_until = CASE WHEN ?8 AND ?9 THEN 0 "
    "  ELSE breaker_open_until END, "
    "updated_at = ?10 WHERE id = ?1 AND owner = ?11";

static int ep_patch(wh_db *db, wh_job *j) {
  char *events = j->set_events ? events_text(j) : NULL;
  if (j->set_events && events == NULL) return SQLITE_NOMEM;
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_PATCH, &rc);
  if (st) {
    bind_text(st, 1, j->id);
    wh_bind_int(st, 2, j->set_url);
    bind_text(st, 3, j->url);
    wh_bind_int(st, 4, j->set_description);
    bind_text(st, 5, j->description ? j->description : "");
    wh_bind_int(st, 6, j->set_events);
    bind_text(st, 7, events);
    wh_bind_int(st, 8, j->set_enabled);
    wh_bind_int(st, 9, j->enabled);
    wh_bind_int64(st, 10, wh_now_ms());
    bind_text(st, 11, j->owner);
    rc = wh_step(st);
    if (rc == SQLITE_DONE && wh_db_changes(db) == 0) {
      rc = refuse(j, "webhooks.endpoint_not_found");
    } else if (rc == SQLITE_DONE) {
      rc = j->set_events ? subscriptions_set(db, j, j->id) : SQLITE_OK;
      if (rc == SQLITE_OK) rc = endpoint_answer(db, j, j->id, 200, NULL);
      j->wake_dispatcher = j->set_enabled && j->enabled;
    }
  }
  free(events);
  return rc;
}

static const char SQL_EP_DELETE[] =
    "DELETE FROM endpoints WHERE id = ?1 AND owner = ?2";

static int ep_delete(wh_db *db, wh_job *j) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_DELETE, &rc);
  if (st == NULL) return rc;
  bind_text(st, 1, j->id);
  bind_text(st, 2, j->owner);
  if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  if (wh_db_changes(db) == 0) return refuse(j, "webhooks.endpoint_not_found");
  j->status = 204;
  j->body = strdup("");
  return j->body ? SQLITE_OK : SQLITE_NOMEM;
}

static const char SQL_EP_ROTATE[] =
    "UPDATE endpoints SET old_secret = secret, old_secret_until = ?2, "
    "secret = ?3, updated_at = ?4 WHERE id = ?1 AND owner = ?5";

static int ep_rotate(wh_db *db, wh_job *j) {
  char secret[96];
  wh_secret_new(secret, sizeof(secret));
  int64_t now = wh_now_ms();
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_EP_ROTATE, &rc);
  if (st) {
    bind_text(st, 1, j->id);
    wh_bind_int64(st, 2, now + j->cfg->rotation_grace_ms);
    bind_text(st, 3, secret);
    wh_bind_int64(st, 4, now);
    bind_text(st, 5, j->owner);
    rc = wh_step(st);
    if (rc == SQLITE_DONE && wh_db_changes(db) == 0)
      rc = refuse(j, "webhooks.endpoint_not_found");
    else if (rc == SQLITE_DONE)
      rc = endpoint_answer(db, j, j->id, 200, secret);
  }
  memset(secret, 0, sizeof(secret));
  return rc;
}

/* ---- events ------------------------------------------------------------- */

/* Idempotency keys are the owner's: another owner's key is not seen. */
static const char SQL_EVENT_BY_KEY[] =
    "SELECT id, type, deliveries, created_at FROM events "
    "WHERE owner = ?2 AND owner_idempotency_key = ?1";
static const char SQL_EVENT_INSERT[] =
    "INSERT INTO events (id, type, payload, owner_idempotency_key, "
    "created_at, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/* The fan-out: the event's owner's enabled, subscribed endpoints only. */
static const char SQL_FANOUT[] =
    "INSERT INTO deliveries (id, event_id, endpoint_id, next_at, "
    "created_at, updated_at, owner) "
    "SELECT 'dlv_' || lower(hex(randomblob(12))), ?1, e.id, ?4, ?2, ?2, ?5 "
    "FROM endpoints e WHERE e.enabled = 1 AND e.owner = ?5 AND e.id IN "
    "(SELECT endpoint_id FROM endpoint_events WHERE event_type IN (?3, '*'))";
static const char SQL_EVENT_COUNT[] =
    "UPDATE events SET deliveries = ?2 WHERE id = ?1";

static int event_answer(wh_job *j, const char *id, const char *type, int64_t n,
                        int64_t created) {
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_obj(&w);
  bh_json_kstr(&w, "id", id);
  bh_json_kstr(&w, "type", type);
  bh_json_kint(&w, "deliveries", n);
  ktime(&w, "createdAt", created);
  bh_json_end(&w);
  return answer(j, 202, &w);
}

/* The body every delivery of the event sends, in the Standard Webhooks
 * shape: {"type", "timestamp", "data"}. */
static char *payload_text(const wh_job *j, int64_t now) {
  char ts[40];
  wh_time_str(now, ts, sizeof(ts));
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_obj(&w);
  bh_json_kstr(&w, "type", j->type);
  bh_json_kstr(&w, "timestamp", ts);
  /* the request's "data" exactly as the client sent it (bh_body_json) */
  bh_json_kraw(&w, "data", j->data);
  bh_json_end(&w);
  if (bh_json_done(&w, NULL) == NULL) {
    bh_json_free(&w);
    return NULL;
  }
  return w.buf; /* the caller frees it */
}

static int event_create(wh_db *db, wh_job *j, int again) {
  int rc;
  wh_stmt *st;
  if (j->idem_key) {
    if ((st = wh_db_stmt(db, SQL_EVENT_BY_KEY, &rc)) == NULL) return rc;
    bind_text(st, 1, j->idem_key);
    bind_text(st, 2, j->owner);
    rc = wh_step(st);
    if (rc == SQLITE_ROW) {
      j->replayed = 1;
      char id[WH_ID_MAX], type[256];
      snprintf(id, sizeof(id), "%s", col_text(st, 0));
      snprintf(type, sizeof(type), "%s", col_text(st, 1));
      int64_t n = wh_col_int64(st, 2), at = wh_col_int64(st, 3);
      wh_reset(st);
      return event_answer(j, id, type, n, at);
    }
    wh_reset(st);
    if (rc != SQLITE_DONE) return rc;
  }
  char id[WH_ID_MAX];
  wh_new_id(id, sizeof(id), "evt");
  int64_t now = wh_now_ms();
  char *payload = payload_text(j, now);
  if (payload == NULL) return SQLITE_NOMEM;
  if ((st = wh_db_stmt(db, SQL_EVENT_INSERT, &rc)) == NULL) {
    free(payload);
    return rc;
  }
  bind_text(st, 1, id);
  bind_text(st, 2, j->type);
  bind_text(st, 3, payload);
  bind_text(st, 4, j->idem_key);
  wh_bind_int64(st, 5, now);
  bind_text(st, 6, j->owner);
  rc = wh_step(st);
  free(payload);
  if (rc == SQLITE_CONSTRAINT && j->idem_key && !again) {
    /* The same key accepted at this very moment by another instance on the
     * shared database: the unique index waited for its commit, so a new
     * look finds its event, answered as a replay. (On SQLite, writers are
     * serialised and the first look already sees it.) */
    wh_reset(st);
    if ((rc = wh_db_exec(db, "ROLLBACK TO job")) != SQLITE_OK) return rc;
    return event_create(db, j, 1);
  }
  if (rc != SQLITE_DONE) return rc;
  if ((st = wh_db_stmt(db, SQL_FANOUT, &rc)) == NULL) return rc;
  bind_text(st, 1, id);
  wh_bind_int64(st, 2, now);
  bind_text(st, 3, j->type);
  wh_bind_int64(st, 4, now + j->cfg->schedule_ms[0]); /* 1st wait */
  bind_text(st, 5, j->owner);
  if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  int64_t n = wh_db_changes(db);
  if ((st = wh_db_stmt(db, SQL_EVENT_COUNT, &rc)) == NULL) return rc;
  bind_text(st, 1, id);
  wh_bind_int64(st, 2, n);
  if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  j->wake_dispatcher = n > 0;
  return event_answer(j, id, j->type, n, now);
}

/* ---- deliveries --------------------------------------------------------- */

/* The members of the delivery of row `st` (the caller opens and closes
 * the object). in_flight < 0: from the lease and the clock. */
static void delivery_members(bh_json *w, wh_stmt *st, int in_flight) {
  const char *state = col_text(st, 5);
  int pending = strcmp(state, "pending") == 0;
  if (in_flight < 0) in_flight = pending && wh_col_int64(st, 8) > wh_now_ms();
  bh_json_kstr(w, "id", col_text(st, 1));
  bh_json_kstr(w, "eventId", col_text(st, 2));
  bh_json_kstr(w, "eventType", col_text(st, 3));
  bh_json_kstr(w, "endpointId", col_text(st, 4));
  bh_json_kstr(w, "status", state);
  bh_json_kint(w, "attemptCount", wh_col_int64(st, 6));
  if (pending)
    ktime(w, "nextAttemptAt", wh_col_int64(st, 7));
  else
    bh_json_knull(w, "nextAttemptAt");
  bh_json_kbool(w, "inFlight", in_flight);
  kint_col(w, "lastStatusCode", st, 9);
  ktext_col(w, "lastError", st, 10);
  ktime(w, "createdAt", wh_col_int64(st, 11));
  ktime(w, "updatedAt", wh_col_int64(st, 12));
  ktime_col(w, "completedAt", st, 13);
}

static void delivery_row(bh_json *w, const wh_config *cfg, wh_stmt *st) {
  (void)cfg;
  bh_json_obj(w);
  delivery_members(w, st, -1);
  bh_json_end(w);
}

static const char SQL_DLV_ALL[] =
    "SELECT " DLV_COLS DLV_FROM
    "WHERE d.owner = ?5 AND d.seq < ?1 ORDER BY d.seq DESC LIMIT ?2";
static const char SQL_DLV_STATE[] =
    "SELECT " DLV_COLS DLV_FROM "WHERE d.owner = ?5 AND d.state = ?3 "
    "AND d.seq < ?1 ORDER BY d.seq DESC LIMIT ?2";
/* By endpoint: its index, not the owner's ("+" keeps the owner term out
 * of the index choice; the endpoint is the caller's, checked first). */
static const char SQL_DLV_EP[] =
    "SELECT " DLV_COLS DLV_FROM "WHERE +d.owner = ?5 AND d.endpoint_id = ?4 "
    "AND d.seq < ?1 ORDER BY d.seq DESC LIMIT ?2";
static const char SQL_DLV_EP_STATE[] =
    "SELECT " DLV_COLS DLV_FROM "WHERE +d.owner = ?5 AND d.endpoint_id = ?4 "
    "AND d.state = ?3 AND d.seq < ?1 ORDER BY d.seq DESC LIMIT ?2";
static const char SQL_EP_OWNED[] =
    "SELECT 1 FROM endpoints WHERE id = ?1 AND owner = ?2";

static int dlv_list(wh_db *db, wh_job *j) {
  int by_state = j->status_filter[0] != '\0';
  int by_ep = j->endpoint_filter[0] != '\0';
  const char *sql = by_state && by_ep ? SQL_DLV_EP_STATE
                    : by_ep           ? SQL_DLV_EP
                    : by_state        ? SQL_DLV_STATE
                                      : SQL_DLV_ALL;
  int rc;
  wh_stmt *st;
  if (by_ep) { /* an endpoint not the caller's is not found, as a missing one */
    if ((st = wh_db_stmt(db, SQL_EP_OWNED, &rc)) == NULL) return rc;
    bind_text(st, 1, j->endpoint_filter);
    bind_text(st, 2, j->owner);
    rc = wh_step(st);
    wh_reset(st);
    if (rc == SQLITE_DONE) return refuse(j, "webhooks.endpoint_not_found");
    if (rc != SQLITE_ROW) return rc;
  }
  if ((st = wh_db_stmt(db, sql, &rc)) == NULL) return rc;
  wh_bind_int64(st, 1, j->cursor > 0 ? j->cursor : INT64_MAX);
  wh_bind_int64(st, 2, j->limit + 1);
  if (by_state) bind_text(st, 3, j->status_filter);
  if (by_ep) bind_text(st, 4, j->endpoint_filter);
  bind_text(st, 5, j->owner);
  return page_answer(j, st, delivery_row);
}

static const char SQL_DLV_BY_ID[] =
    "SELECT " DLV_COLS DLV_FROM "WHERE d.id = ?1 AND d.owner = ?2";
static const char SQL_ATTEMPTS[] =
    "SELECT n, at, duration_ms, status, error FROM attempts "
    "WHERE delivery_seq = ?1 ORDER BY n";

static int delivery_answer(wh_db *db, wh_job *j, int status, int attempts) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_DLV_BY_ID, &rc);
  if (st == NULL) return rc;
  bind_text(st, 1, j->id);
  bind_text(st, 2, j->owner);
  rc = wh_step(st);
  if (rc == SQLITE_DONE) return refuse(j, "webhooks.delivery_not_found");
  if (rc != SQLITE_ROW) return rc;
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_obj(&w);
  delivery_members(&w, st, -1);
  int64_t seq = wh_col_int64(st, 0);
  wh_reset(st);
  if (attempts) {
    if ((st = wh_db_stmt(db, SQL_ATTEMPTS, &rc)) == NULL) {
      bh_json_free(&w);
      return rc;
    }
    bh_json_karr(&w, "attempts");
    wh_bind_int64(st, 1, seq);
    while ((rc = wh_step(st)) == SQLITE_ROW) {
      bh_json_obj(&w);
      bh_json_kint(&w, "attempt", wh_col_int64(st, 0));
      ktime(&w, "at", wh_col_int64(st, 1));
      bh_json_kint(&w, "latencyMs", wh_col_int64(st, 2));
      kint_col(&w, "statusCode", st, 3);
      ktext_col(&w, "error", st, 4);
      bh_json_end(&w);
    }
    wh_reset(st);
    bh_json_end(&w);
    if (STEP_ERR(rc)) {
      bh_json_free(&w);
      return rc;
    }
  }
  bh_json_end(&w);
  return answer(j, status, &w);
}

/* A failed or succeeded delivery goes back to pending with a fresh retry
 * round; a pending one is made due now. One being sent right now is left
 * alone: its attempt decides. */
static const char SQL_DLV_RETRY[] =
    "UPDATE deliveries SET state = 'pending', next_at = ?2, "
    "round_attempts = CASE WHEN state = 'pending' THEN round_attempts "
    "  ELSE 0 END, completed_at = NULL, updated_at = ?2 "
    "WHERE id = ?1 AND owner = ?3 "
    "AND NOT (state = 'pending' AND lease_until > ?2)";

static int dlv_retry(wh_db *db, wh_job *j) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_DLV_RETRY, &rc);
  if (st == NULL) return rc;
  bind_text(st, 1, j->id);
  wh_bind_int64(st, 2, wh_now_ms());
  bind_text(st, 3, j->owner);
  if ((rc = wh_step(st)) != SQLITE_DONE) return rc;
  j->wake_dispatcher = wh_db_changes(db) > 0;
  return delivery_answer(db, j, 202, 0);
}

/* ---- live status (GET /deliveries/stream) ------------------------------ */

/* The changes after ?2 of owner ?1, in DLV_COLS order (the delivery as it
 * was at the change: the changing columns come from the snapshot), then
 * the change's name. A delivery deleted since (with its endpoint) is not
 * told about any more. */
static const char SQL_CHANGES[] =
    "SELECT c.seq, d.id, d.event_id, ev.type, d.endpoint_id, c.state, "
    "c.attempts, c.next_at, c.lease_until, c.last_status, c.last_error, "
    "d.created_at, c.updated_at, c.completed_at, c.change "
    "FROM delivery_changes c JOIN deliveries d ON d.seq = c.delivery_seq "
    "JOIN events ev ON ev.id = d.event_id "
    "WHERE c.owner = ?1 AND c.seq > ?2 "
    "AND (?3 IS NULL OR d.endpoint_id = ?3) AND (?4 IS NULL OR c.state = ?4) "
    "ORDER BY c.seq LIMIT ?5";
/* the last change anyone's: a filtered stream skips what it was not sent */
static const char SQL_CHANGES_LAST[] =
    "SELECT coalesce(max(seq), 0) FROM delivery_changes";
static const char SQL_CHANGES_PRUNE[] =
    "DELETE FROM delivery_changes WHERE at < ?1";

static int stream_poll(wh_db *db, wh_job *j) {
  int rc;
  if (j->check_owner) { /* as the listing: another's is not found */
    wh_stmt *ck = wh_db_stmt(db, SQL_EP_OWNED, &rc);
    if (ck == NULL) return rc;
    bind_text(ck, 1, j->endpoint_filter);
    bind_text(ck, 2, j->owner);
    rc = wh_step(ck);
    wh_reset(ck);
    if (rc == SQLITE_DONE) return refuse(j, "webhooks.endpoint_not_found");
    if (rc != SQLITE_ROW) return rc;
  }
  /* first, in the same read transaction: every row up to `last` is
   * committed and seen by the query below */
  wh_stmt *st = wh_db_stmt(db, SQL_CHANGES_LAST, &rc);
  if (st == NULL) return rc;
  if ((rc = wh_step(st)) != SQLITE_ROW) return rc;
  int64_t last = wh_col_int64(st, 0);
  wh_reset(st);
  if ((st = wh_db_stmt(db, SQL_CHANGES, &rc)) == NULL) return rc;
  bind_text(st, 1, j->owner);
  wh_bind_int64(st, 2, j->cursor);
  bind_text(st, 3, j->endpoint_filter[0] ? j->endpoint_filter : NULL);
  bind_text(st, 4, j->status_filter[0] ? j->status_filter : NULL);
  wh_bind_int64(st, 5, j->limit);
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  if (out == NULL) return SQLITE_NOMEM;
  out[0] = '\0';
  int64_t seq = j->cursor;
  int n = 0;
  while ((rc = wh_step(st)) == SQLITE_ROW) {
    const char *change = col_text(st, 14);
    bh_json w;
    bh_json_init(&w, 0);
    bh_json_obj(&w);
    /* in flight as it was then, not as the clock now says */
    delivery_members(&w, st, strcmp(change, "attempting") == 0);
    bh_json_kstr(&w, "change", change);
    bh_json_end(&w);
    char *data = bh_json_done(&w, NULL) ? w.buf : NULL;
    if (data == NULL) {
      bh_json_free(&w);
      rc = SQLITE_NOMEM;
      break;
    }
    seq = wh_col_int64(st, 0);
    size_t need = len + strlen(data) + 64;
    if (need > cap) {
      while (cap < need)
        cap *= 2;
      char *p = realloc(out, cap);
      if (p == NULL) {
        free(data);
        rc = SQLITE_NOMEM;
        break;
      }
      out = p;
    }
    len += (size_t)snprintf(out + len, cap - len,
                            "id: %lld\nevent: delivery\ndata: %s\n\n",
                            (long long)seq, data);
    free(data);
    n++;
  }
  wh_reset(st);
  if (STEP_ERR(rc)) {
    free(out);
    return rc;
  }
  /* a short page read everything up to `last`: nothing below it is left
   * for this stream */
  if (n < j->limit && last > seq) seq = last;
  j->body = out;
  j->status = 200;
  j->seq_out = seq;
  j->nchanges = n;
  return SQLITE_OK;
}

static int stream_prune(wh_db *db, wh_job *j) {
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_CHANGES_PRUNE, &rc);
  if (st == NULL) return rc;
  wh_bind_int64(st, 1, wh_now_ms() - j->cfg->stream_retention_ms);
  rc = wh_step(st);
  wh_reset(st);
  if (rc != SQLITE_DONE) return rc;
  j->status = 200;
  j->body = strdup("");
  return j->body ? SQLITE_OK : SQLITE_NOMEM;
}

int wh_ops_run(wh_db *db, wh_job *j) {
  switch (j->op) {
  case WH_OP_EP_CREATE: return ep_create(db, j);
  case WH_OP_EP_LIST: return ep_list(db, j);
  case WH_OP_EP_GET: return endpoint_answer(db, j, j->id, 200, NULL);
  case WH_OP_EP_PATCH: return ep_patch(db, j);
  case WH_OP_EP_DELETE: return ep_delete(db, j);
  case WH_OP_EP_ROTATE: return ep_rotate(db, j);
  case WH_OP_EVENT_CREATE: return event_create(db, j, 0);
  case WH_OP_DLV_LIST: return dlv_list(db, j);
  case WH_OP_DLV_GET: return delivery_answer(db, j, 200, 1);
  case WH_OP_DLV_RETRY: return dlv_retry(db, j);
  case WH_OP_STREAM_POLL: return stream_poll(db, j);
  case WH_OP_STREAM_PRUNE: return stream_prune(db, j);
  }
  return SQLITE_MISUSE;
}
