/*
 * The dispatcher: a thread per worker process that claims due deliveries
 * from the shared database, sends them (wh_send.c, a curl multi handle),
 * and records each attempt.
 *
 * At least once, never twice at once:
 *  - A claim is a lease written in an immediate transaction: lease_owner and
 *    lease_until. Only a pending delivery whose lease has expired can be
 *    claimed, so two threads, two workers or two daemons sharing the file
 *    never send the same attempt at the same time: the attempt's timeout is
 *    shorter than the lease (config checks lease_ms > timeout_ms).
 *  - A result is recorded only while the lease is still ours. A process
 *    that dies mid-delivery leaves a lease that expires; the delivery is
 *    then due again and sent again (the receiver dedupes on webhook-id).
 *
 * Isolation between endpoints: a concurrency cap per endpoint and one for
 * every process together (both counted from the live leases in the
 * database, so they hold across workers), and a circuit breaker per
 * endpoint, kept in the endpoints table: after breaker_failures
 * consecutive failures (transport, 5xx, 408, 429) the endpoint is skipped
 * for breaker_open_ms, then tried with one delivery at a time until one
 * succeeds. A dead receiver so holds a few slots for a while at most, and
 * the claim walk visits endpoints round robin, so healthy ones never wait
 * behind it.
 */
#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh.h"

#define WH_STOP_GRACE_MS 1000 /* transfers in flight may finish at stop */
#define WH_DOWN_RETRY_MS 250
/* finished attempts wait this long for company before they are recorded:
 * one commit then records a burst of them */
#define WH_RECORD_DELAY_MS 2

struct wh_dispatcher {
  wh_plugin *wp;
  const wh_config *cfg;
  pthread_t thread;
  int started;
  CURLM *multi;
  volatile int stop;   /* atomic */
  volatile int kicked; /* atomic */
  wh_db db;
  char owner[64];
  wh_send *inflight;
  int ninflight;
  wh_send *done;   /* finished, not yet recorded */
  unsigned rr;     /* where the next claim walk starts */
  int64_t beat_at; /* monotonic: renew our dispatchers row by then */
};

/* ---- claiming ----------------------------------------------------------- */

/* Only a pending delivery has lease_until > 0 (recording a result clears
 * it), and the leased index holds nothing else: named explicitly, so a
 * large backlog of pending rows is never scanned for the few leases. */
static const char SQL_LEASED[] =
    "SELECT endpoint_id, count(*) FROM deliveries INDEXED BY "
    "deliveries_leased WHERE lease_until > 0 AND lease_until > ?1 "
    "AND lease_owner IN (SELECT owner FROM dispatchers "
    "WHERE alive_until > ?1) GROUP BY endpoint_id";
static const char SQL_BEAT[] =
    "INSERT INTO dispatchers (owner, alive_until) VALUES (?1, ?2) "
    "ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until";
static const char SQL_BURY[] = "DELETE FROM dispatchers WHERE alive_until < ?1";
static const char SQL_RETIRE[] = "DELETE FROM dispatchers WHERE owner = ?1";
static const char SQL_NEXT_EXPIRY[] =
    "SELECT min(lease_until) FROM deliveries INDEXED BY deliveries_leased "
    "WHERE lease_until > 0 AND lease_until > ?1";
static const char SQL_ENDPOINTS[] =
    "SELECT id, breaker_failures, breaker_open_until FROM endpoints "
    "WHERE enabled = 1 ORDER BY seq";
static const char SQL_DUE[] =
    "SELECT seq, next_at FROM deliveries WHERE endpoint_id = ?1 "
    "AND state = 'pending' AND lease_until <= ?2 ORDER BY next_at LIMIT ?3";
static const char SQL_LEASE[] =
    "UPDATE deliveries SET lease_owner = ?2, lease_until = ?3 "
    "WHERE seq = ?1 AND state = 'pending' AND lease_until <= ?4";
static const char SQL_CLAIMED[] =
    "SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.round_attempts, "
    "e.url, e.secret, e.old_secret, e.old_secret_until, ev.payload "
    "FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
    "JOIN events ev ON ev.id = d.event_id WHERE d.seq = ?1";

typedef struct ep_load {
  char id[WH_ID_MAX];
  int n;
} ep_load;

static int leased_count(ep_load *loads, int nloads, const char *id) {
  for (int i = 0; i < nloads; i++)
    if (strcmp(loads[i].id, id) == 0) return loads[i].n;
  return 0;
}

static wh_send *load_claimed(wh_dispatcher *d, int64_t seq, int64_t now,
                             int *rc) {
  wh_stmt *st = wh_db_stmt(&d->db, SQL_CLAIMED, rc);
  if (st == NULL) return NULL;
  wh_bind_int64(st, 1, seq);
  if ((*rc = wh_step(st)) != SQLITE_ROW) {
    wh_reset(st);
    if (*rc == SQLITE_DONE) *rc = SQLITE_OK; /* deleted meanwhile */
    return NULL;
  }
  *rc = SQLITE_OK;
  wh_send *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    wh_reset(st);
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  s->cfg = d->cfg;
  s->seq = seq;
  snprintf(s->id, sizeof(s->id), "%s", wh_col_text(st, 0));
  snprintf(s->event_id, sizeof(s->event_id), "%s", wh_col_text(st, 1));
  snprintf(s->endpoint_id, sizeof(s->endpoint_id), "%s", wh_col_text(st, 2));
  s->attempt = wh_col_int(st, 3) + 1;
  s->round_attempt = wh_col_int(st, 4) + 1;
  s->url = strdup((const char *)wh_col_text(st, 5));
  s->payload = strdup((const char *)wh_col_text(st, 9));
  s->payload_len = s->payload ? strlen(s->payload) : 0;
  s->timestamp_s = now / 1000;
  int sig = s->url && s->payload
                ? wh_sign((const char *)wh_col_text(st, 6), s->event_id,
                          s->timestamp_s, s->payload, s->payload_len,
                          s->signature, sizeof(s->signature))
                : -ENOMEM;
  /* during a rotation the previous secret signs too */
  if (sig == 0 && wh_col_int64(st, 8) > now &&
      wh_col_type(st, 7) == SQLITE_TEXT)
    sig =
        wh_sign((const char *)wh_col_text(st, 7), s->event_id, s->timestamp_s,
                s->payload, s->payload_len, s->signature, sizeof(s->signature));
  wh_reset(st);
  if (sig != 0 || wh_send_prepare(s) != 0) {
    wh_send_free(s);
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  return s;
}

/* One claim walk, inside the cycle's transaction: due deliveries of the
 * endpoints with room, round robin, leased to us. The claimed sends are
 * returned in *out (not yet in flight); *next is when work is next due. */
static int claim(wh_dispatcher *d, int64_t now, int64_t *next, wh_send **out) {
  const wh_config *cfg = d->cfg;
  wh_db *db = &d->db;
  ep_load *loads = NULL, *eps = NULL;
  int nloads = 0, total = 0, neps = 0, epcap = 0, rc;
  wh_stmt *st = wh_db_stmt(db, SQL_LEASED, &rc);
  if (st) {
    wh_bind_int64(st, 1, now);
    while ((rc = wh_step(st)) == SQLITE_ROW) {
      ep_load *nl = realloc(loads, (size_t)(nloads + 1) * sizeof(*nl));
      if (nl == NULL) {
        rc = SQLITE_NOMEM;
        break;
      }
      loads = nl;
      snprintf(loads[nloads].id, WH_ID_MAX, "%s", wh_col_text(st, 0));
      loads[nloads].n = wh_col_int(st, 1);
      total += loads[nloads++].n;
    }
    wh_reset(st);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc == SQLITE_OK && (st = wh_db_stmt(db, SQL_NEXT_EXPIRY, &rc))) {
    wh_bind_int64(st, 1, now);
    if ((rc = wh_step(st)) == SQLITE_ROW && wh_col_type(st, 0) != SQLITE_NULL &&
        wh_col_int64(st, 0) < *next)
      *next = wh_col_int64(st, 0);
    wh_reset(st);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  int room = cfg->max_in_flight - total;
  /* the endpoints with room, then a walk over them from a rotating start */
  if (rc == SQLITE_OK && room > 0 &&
      (st = wh_db_stmt(db, SQL_ENDPOINTS, &rc))) {
    while ((rc = wh_step(st)) == SQLITE_ROW) {
      int64_t fails = wh_col_int64(st, 1);
      int64_t open_until = wh_col_int64(st, 2);
      if (open_until > now) { /* breaker open: skip, wake when it half-opens */
        if (open_until < *next) *next = open_until;
        continue;
      }
      const char *id = (const char *)wh_col_text(st, 0);
      int cap = fails >= cfg->breaker_failures ? 1 : cfg->max_per_endpoint;
      cap -= leased_count(loads, nloads, id);
      if (cap <= 0) continue;
      if (neps == epcap) {
        epcap = epcap ? epcap * 2 : 64;
        ep_load *ne = realloc(eps, (size_t)epcap * sizeof(*ne));
        if (ne == NULL) {
          rc = SQLITE_NOMEM;
          break;
        }
        eps = ne;
      }
      snprintf(eps[neps].id, WH_ID_MAX, "%s", id);
      eps[neps++].n = cap;
    }
    wh_reset(st);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  for (int k = 0; rc == SQLITE_OK && room > 0 && k < neps; k++) {
    int i = (int)((d->rr + (unsigned)k) % (unsigned)neps);
    int want = eps[i].n < room ? eps[i].n : room;
    if (want > 64) want = 64;
    if ((st = wh_db_stmt(db, SQL_DUE, &rc)) == NULL) break;
    wh_bind_text(st, 1, eps[i].id);
    wh_bind_int64(st, 2, now);
    wh_bind_int(st, 3, want);
    int64_t seqs[64];
    int nseq = 0;
    while ((rc = wh_step(st)) == SQLITE_ROW) {
      int64_t at = wh_col_int64(st, 1);
      if (at > now) {
        if (at < *next) *next = at;
        break;
      }
      if (nseq < 64) seqs[nseq++] = wh_col_int64(st, 0);
    }
    wh_reset(st);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    for (int q = 0; rc == SQLITE_OK && q < nseq; q++) {
      if ((st = wh_db_stmt(db, SQL_LEASE, &rc)) == NULL) break;
      wh_bind_int64(st, 1, seqs[q]);
      wh_bind_text(st, 2, d->owner);
      wh_bind_int64(st, 3, now + cfg->lease_ms);
      wh_bind_int64(st, 4, now);
      if ((rc = wh_step(st)) != SQLITE_DONE) break;
      rc = SQLITE_OK;
      if (wh_db_changes(db) == 0) continue;
      wh_send *s = load_claimed(d, seqs[q], now, &rc);
      if (s) {
        s->next = *out;
        *out = s;
        room--;
      }
    }
  }
  d->rr++;
  free(eps);
  free(loads);
  return rc;
}

/* ---- recording ---------------------------------------------------------- */

static const char SQL_DONE[] =
    "UPDATE deliveries SET state = ?3, attempts = ?4, round_attempts = ?5, "
    "next_at = ?6, lease_owner = NULL, lease_until = 0, last_status = ?7, "
    "last_error = ?8, updated_at = ?9, completed_at = ?10 "
    "WHERE seq = ?1 AND lease_owner = ?2 AND lease_until > 0";
static const char SQL_ATTEMPT[] =
    "INSERT OR REPLACE INTO attempts (delivery_seq, n, at, duration_ms, "
    "status, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_BREAKER_FAIL[] =
    "UPDATE endpoints SET breaker_failures = breaker_failures + 1, "
    "breaker_open_until = CASE WHEN breaker_failures + 1 >= ?2 THEN ?3 "
    "ELSE breaker_open_until END WHERE id = ?1 RETURNING breaker_failures";
static const char SQL_BREAKER_OK[] =
    "UPDATE endpoints SET breaker_failures = 0, breaker_open_until = 0 "
    "WHERE id = ?1 AND (breaker_failures > 0 OR breaker_open_until > 0)";
static const char SQL_GONE[] =
    "UPDATE endpoints SET enabled = 0, disabled_reason = 'gone', "
    "updated_at = ?2 WHERE id = ?1 AND enabled = 1";

static int64_t next_delay(const wh_config *cfg, const wh_send *s) {
  int64_t base = cfg->schedule_ms[s->round_attempt];
  /* uniform in [base - j, base + j]; config bounds keep 2j + 1 < 2^32 */
  int64_t j = base * cfg->jitter_pct / 100;
  int64_t delay = base;
  if (j > 0)
    delay = base - j + (int64_t)randombytes_uniform((uint32_t)(2 * j + 1));
  if (s->retry_after_ms >= 0) {
    int64_t ra = s->retry_after_ms < cfg->retry_after_max_ms
                     ? s->retry_after_ms
                     : cfg->retry_after_max_ms;
    if (ra > delay) delay = ra;
  }
  return delay;
}

static int step_done(wh_stmt *st) {
  int rc = wh_step(st);
  wh_reset(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int record_one(wh_dispatcher *d, wh_send *s, int64_t now) {
  const wh_config *cfg = d->cfg;
  wh_db *db = &d->db;
  int ok = s->status >= 200 && s->status < 300;
  int gone = s->status == 410;
  int down = s->status == 0 || s->status >= 500 || s->status == 408 ||
             s->status == 429;
  int last = s->round_attempt >= cfg->nschedule;
  const char *state = ok ? "succeeded" : gone || last ? "failed" : "pending";
  int rc;
  wh_stmt *st = wh_db_stmt(db, SQL_DONE, &rc);
  if (st == NULL) return rc;
  wh_bind_int64(st, 1, s->seq);
  wh_bind_text(st, 2, d->owner);
  wh_bind_text(st, 3, state);
  wh_bind_int(st, 4, s->attempt);
  wh_bind_int(st, 5, s->round_attempt);
  wh_bind_int64(st, 6, ok || gone || last ? now : now + next_delay(cfg, s));
  if (s->status) wh_bind_int(st, 7, s->status);
  if (gone)
    wh_bind_text(st, 8, "endpoint_gone");
  else if (s->error[0])
    wh_bind_text(st, 8, s->error);
  wh_bind_int64(st, 9, now);
  if (strcmp(state, "pending") != 0) wh_bind_int64(st, 10, now);
  if ((rc = step_done(st)) != SQLITE_OK) return rc;
  if (wh_db_changes(db) == 0) return SQLITE_OK; /* lease lost: not ours */
  if ((st = wh_db_stmt(db, SQL_ATTEMPT, &rc)) == NULL) return rc;
  wh_bind_int64(st, 1, s->seq);
  wh_bind_int(st, 2, s->attempt);
  wh_bind_int64(st, 3, s->started_ms);
  wh_bind_int64(st, 4, s->duration_ms);
  if (s->status) wh_bind_int(st, 5, s->status);
  if (s->error[0]) wh_bind_text(st, 6, s->error);
  if ((rc = step_done(st)) != SQLITE_OK) return rc;
  if (gone) {
    if ((st = wh_db_stmt(db, SQL_GONE, &rc)) == NULL) return rc;
    wh_bind_text(st, 1, s->endpoint_id);
    wh_bind_int64(st, 2, now);
    if ((rc = step_done(st)) != SQLITE_OK) return rc;
    wh_log_post(d->wp, BH_LOG_WARN, "endpoint %s answered 410 Gone: disabled",
                s->endpoint_id);
  }
  if (down) {
    if ((st = wh_db_stmt(db, SQL_BREAKER_FAIL, &rc)) == NULL) return rc;
    wh_bind_text(st, 1, s->endpoint_id);
    wh_bind_int(st, 2, cfg->breaker_failures);
    wh_bind_int64(st, 3, now + cfg->breaker_open_ms);
    int fails = 0;
    if ((rc = wh_step(st)) == SQLITE_ROW) fails = wh_col_int(st, 0);
    wh_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return rc;
    if (fails == cfg->breaker_failures)
      wh_log_post(d->wp, BH_LOG_WARN,
                  "endpoint %s: circuit breaker open after %d failures",
                  s->endpoint_id, fails);
  } else {
    if ((st = wh_db_stmt(db, SQL_BREAKER_OK, &rc)) == NULL) return rc;
    wh_bind_text(st, 1, s->endpoint_id);
    if ((rc = step_done(st)) != SQLITE_OK) return rc;
  }
  if (!ok && !gone && last)
    wh_log_post(d->wp, BH_LOG_WARN,
                "delivery %s failed after %d attempts: dead-lettered", s->id,
                s->attempt);
  return SQLITE_OK;
}

static void free_list(wh_send **list) {
  while (*list) {
    wh_send *s = *list;
    *list = s->next;
    wh_send_free(s);
  }
}

/* Renews our row in dispatchers (and forgets rows dead for a day). */
static int beat(wh_dispatcher *d, int64_t now) {
  int rc;
  wh_stmt *st = wh_db_stmt(&d->db, SQL_BEAT, &rc);
  if (st == NULL) return rc;
  wh_bind_text(st, 1, d->owner);
  /* a dispatcher cycles at least every poll_ms: three missed beats and
   * its leases no longer count against the caps */
  wh_bind_int64(st, 2, now + 3 * d->cfg->poll_ms + 1000);
  if ((rc = step_done(st)) != SQLITE_OK) return rc;
  if ((st = wh_db_stmt(&d->db, SQL_BURY, &rc)) == NULL) return rc;
  wh_bind_int64(st, 1, now - 86400000);
  if ((rc = step_done(st)) != SQLITE_OK) return rc;
  d->beat_at = wh_mono_ms() + d->cfg->poll_ms;
  return SQLITE_OK;
}

/* One cycle in one immediate transaction: record every finished attempt,
 * then (with do_claim) claim what is due. One commit for both keeps the
 * database's write lock, and the disk, busy for as short as possible.
 * Returns the milliseconds until the next cycle should run.
 *
 * On a store failure nothing is sent, and the finished attempts stay
 * queued to be recorded by a later cycle; if that takes longer than their
 * leases, the deliveries are simply sent again (at least once). */
static int64_t cycle(wh_dispatcher *d, int do_claim) {
  if (wh_db_ensure(&d->db) != 0) {
    wh_set_down(d->wp, &d->wp->disp_down, 1, "dispatcher");
    return WH_DOWN_RETRY_MS;
  }
  int64_t now = wh_now_ms(), next = now + d->cfg->poll_ms;
  wh_send *claimed = NULL;
  int rc = wh_db_write_begin(&d->db);
  int locked = rc == SQLITE_OK;
  if (rc == SQLITE_OK && wh_mono_ms() >= d->beat_at) rc = beat(d, now);
  for (wh_send *s = d->done; rc == SQLITE_OK && s; s = s->next)
    rc = record_one(d, s, now);
  if (rc == SQLITE_OK && do_claim) rc = claim(d, now, &next, &claimed);
  if (locked) {
    int end = wh_db_write_end(&d->db, rc == SQLITE_OK);
    if (rc == SQLITE_OK) rc = end;
  }
  if (rc != SQLITE_OK) {
    free_list(&claimed); /* never leased after all: nothing was sent */
    if ((rc & 0xff) != SQLITE_BUSY) {
      wh_db_close(&d->db);
      d->db.failing = 1;
      wh_set_down(d->wp, &d->wp->disp_down, 1, "dispatcher");
    }
    return WH_DOWN_RETRY_MS;
  }
  wh_set_down(d->wp, &d->wp->disp_down, 0, "dispatcher");
  free_list(&d->done);
  while (claimed) {
    wh_send *s = claimed;
    claimed = s->next;
    s->started_ms = wh_now_ms();
    s->started_mono = wh_mono_ms();
    s->next = d->inflight;
    d->inflight = s;
    d->ninflight++;
    curl_multi_add_handle(d->multi, s->easy);
  }
  int64_t wait = next - wh_now_ms();
  return wait < 0 ? 0 : wait;
}

static const char SQL_RELEASE[] =
    "UPDATE deliveries SET lease_owner = NULL, lease_until = 0 "
    "WHERE lease_owner = ?1 AND state = 'pending'";

/* At stop: what is still in flight is abandoned and its leases given
 * back, so another process can send it at once instead of after expiry. */
static void release_all(wh_dispatcher *d) {
  while (d->inflight) {
    wh_send *s = d->inflight;
    d->inflight = s->next;
    curl_multi_remove_handle(d->multi, s->easy);
    wh_send_free(s);
  }
  d->ninflight = 0;
  if (d->done) cycle(d, 0);
  free_list(&d->done); /* could not record: the leases expire instead */
  int rc;
  wh_stmt *st = (d->db.h || d->db.pg) && wh_db_ensure(&d->db) == 0
                    ? wh_db_stmt(&d->db, SQL_RELEASE, &rc)
                    : NULL;
  if (st) {
    wh_bind_text(st, 1, d->owner);
    if (d->db.write_mu) pthread_mutex_lock(d->db.write_mu);
    step_done(st);
    if ((st = wh_db_stmt(&d->db, SQL_RETIRE, &rc)) != NULL) {
      wh_bind_text(st, 1, d->owner);
      step_done(st);
    }
    if (d->db.write_mu) pthread_mutex_unlock(d->db.write_mu);
  }
}

/* ---- the thread --------------------------------------------------------- */

/* Moves finished transfers to the done list; returns how many. */
static int reap(wh_dispatcher *d) {
  CURLMsg *m;
  int left, n = 0;
  while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    char *priv = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    wh_send *s = (wh_send *)(void *)priv;
    int cc = m->data.result;
    curl_multi_remove_handle(d->multi, m->easy_handle);
    wh_send_finish(s, cc);
    for (wh_send **pp = &d->inflight; *pp; pp = &(*pp)->next) {
      if (*pp == s) {
        *pp = s->next;
        break;
      }
    }
    d->ninflight--;
    s->next = d->done;
    d->done = s;
    n++;
  }
  return n;
}

static void *dispatch_main(void *arg) {
  wh_dispatcher *d = arg;
  pthread_setname_np(pthread_self(), "wh-dispatch");
  int64_t cycle_at = 0, stop_at = 0;
  for (;;) {
    int64_t mono = wh_mono_ms();
    if (wh_flag_get(&d->stop)) {
      if (stop_at == 0) stop_at = mono + WH_STOP_GRACE_MS;
      if (d->ninflight == 0 || mono >= stop_at) break;
    }
    if (__atomic_exchange_n(&d->kicked, 0, __ATOMIC_ACQ_REL)) cycle_at = 0;
    int can_claim = !stop_at && d->ninflight < d->cfg->max_in_flight;
    /* a cycle when work is due, to record finished attempts (which frees
     * slots, so it claims again in the same transaction), or to say we
     * are alive */
    int beat_due = !stop_at && mono >= d->beat_at;
    if ((can_claim || d->done || beat_due) && mono >= cycle_at)
      cycle_at = mono + cycle(d, can_claim);
    int running = 0;
    curl_multi_perform(d->multi, &running);
    (void)running;
    if (reap(d) > 0 && cycle_at > mono + WH_RECORD_DELAY_MS)
      cycle_at = mono + WH_RECORD_DELAY_MS;
    /* sleep until the next cycle; transfers, a kick or a stop wake the
     * poll earlier */
    int64_t now = wh_mono_ms(), wait = d->cfg->poll_ms;
    int64_t beat = d->beat_at > cycle_at ? d->beat_at : cycle_at;
    if (!stop_at && beat - now < wait) wait = beat - now;
    if ((can_claim || d->done) && cycle_at - now < wait) wait = cycle_at - now;
    if (stop_at && stop_at - now < wait) wait = stop_at - now;
    if (wait < 0) wait = 0;
    curl_multi_poll(d->multi, NULL, 0, (int)wait, NULL);
  }
  release_all(d);
  wh_db_close(&d->db);
  return NULL;
}

int wh_dispatch_start(wh_dispatcher **out, wh_plugin *wp) {
  wh_dispatcher *d = calloc(1, sizeof(*d));
  if (d == NULL) return -ENOMEM;
  d->wp = wp;
  d->cfg = &wp->cfg;
  d->db.cfg = &wp->cfg;
  d->db.write_mu = wp->postgres ? NULL : &wp->write_mu;
  d->db.ctx = wp->ctx;
  d->db.postgres = wp->postgres;
  /* leases and attempt results lost to a power cut only mean a delivery is
   * sent again, which at-least-once allows: no fsync per commit for them.
   * Events and endpoints (the store thread) keep the configured level. */
  d->db.relaxed = 1;
  unsigned char r[6];
  char hex[13];
  randombytes_buf(r, sizeof(r));
  sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
  snprintf(d->owner, sizeof(d->owner), "%ld-%s", (long)getpid(), hex);
  d->multi = curl_multi_init();
  if (d->multi == NULL) {
    free(d);
    return -ENOMEM;
  }
  int rc = pthread_create(&d->thread, NULL, dispatch_main, d);
  if (rc != 0) {
    curl_multi_cleanup(d->multi);
    free(d);
    return -rc;
  }
  d->started = 1;
  *out = d;
  return 0;
}

void wh_dispatch_kick(wh_dispatcher *d) {
  __atomic_store_n(&d->kicked, 1, __ATOMIC_RELEASE);
  curl_multi_wakeup(d->multi);
}

void wh_dispatch_signal_stop(wh_dispatcher *d) {
  wh_flag_set(&d->stop, 1);
  curl_multi_wakeup(d->multi);
}

void wh_dispatch_stop(wh_dispatcher *d) {
  if (d == NULL) return;
  wh_dispatch_signal_stop(d);
  if (d->started) pthread_join(d->thread, NULL);
  curl_multi_cleanup(d->multi);
  free(d);
}
