/*
 * GET /v1/webhooks/deliveries/stream: live delivery status as server-sent
 * events, on the loop thread.
 *
 * The store is the source of truth: triggers record every state change of
 * a delivery in delivery_changes (schema 003), in the transaction that
 * makes it, whichever process or connection that is. A stream polls the
 * table through the store thread (WH_OP_STREAM_POLL, every
 * stream_poll_ms) for its owner's changes after its cursor and sends each
 * as "id: <seq>", "event: delivery", "data: <the delivery JSON>"; the seq
 * is monotonic and never reused, so a client that reconnects with
 * Last-Event-ID (or ?lastEventId=) gets exactly what it missed, once.
 *
 * Bounds: streams per principal and per worker process (429
 * webhooks.too_many_streams); a reader that lets more than
 * stream_max_buffer_bytes pile up unsent is cut (the connection closes),
 * so a slow client never grows our memory. A comment goes out every
 * stream_heartbeat_ms when nothing else did, so proxies keep the stream
 * open. At stop (drain, reload) every stream ends cleanly with a final
 * comment; the client's reconnect lands on the next generation.
 *
 * The plugin has no timer of the core: a small ticker thread sends the
 * plugin's wakeup every tick while streams are open (and now and then to
 * prune old changes); the wakeup runs wh_streams_tick() on the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wh.h"

#define WH_STREAM_PAGE 200
#define WH_PRUNE_EVERY_MS 60000

typedef struct wh_stream {
  struct wh_stream *next;
  bh_req *req; /* NULL once ended (then freed when its poll is back) */
  char *owner;
  char endpoint[WH_ID_MAX];
  char status[16];
  int64_t cursor;     /* the last change sent (or skipped by the filter) */
  int64_t next_poll;  /* monotonic ms */
  int64_t last_write; /* monotonic ms */
  int polling;        /* a poll job points here */
  int open;           /* the head went out (after the first poll) */
} wh_stream;

struct wh_streams {
  wh_stream *head;
  int n;
  int stopping;
  int64_t next_prune; /* monotonic ms */
  int pruning;
  /* the ticker thread */
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int quit;
  volatile int active; /* atomic: streams are open */
};

/* ---- the ticker thread -------------------------------------------------- */

static void *ticker_main(void *arg) {
  wh_plugin *wp = arg;
  wh_streams *ss = wp->streams;
  int64_t tick = wp->cfg.stream_poll_ms;
  if (wp->cfg.stream_heartbeat_ms < tick) tick = wp->cfg.stream_heartbeat_ms;
  int64_t prune_at = wh_mono_ms() + WH_PRUNE_EVERY_MS;
  pthread_setname_np(pthread_self(), "wh-stream");
  pthread_mutex_lock(&ss->mu);
  while (!ss->quit) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += tick / 1000;
    ts.tv_nsec += (long)(tick % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&ss->cv, &ss->mu, &ts);
    if (ss->quit) break;
    int64_t now = wh_mono_ms();
    int prune = now >= prune_at;
    if (prune) prune_at = now + WH_PRUNE_EVERY_MS;
    if (prune || wh_flag_get(&ss->active)) bh_wakeup_send(wp->wakeup);
  }
  pthread_mutex_unlock(&ss->mu);
  return NULL;
}

int wh_streams_start(wh_plugin *wp) {
  wh_streams *ss = calloc(1, sizeof(*ss));
  if (ss == NULL) return -ENOMEM;
  wp->streams = ss;
  ss->next_prune = wh_mono_ms(); /* once at start, then every minute */
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ss->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&ss->mu, NULL);
  int rc = pthread_create(&ss->thread, NULL, ticker_main, wp);
  if (rc != 0) return -rc;
  ss->started = 1;
  return 0;
}

/* ---- one stream --------------------------------------------------------- */

static void stream_free(wh_stream *s) {
  free(s->owner);
  free(s);
}

static void unlink_stream(wh_streams *ss, wh_stream *s) {
  for (wh_stream **p = &ss->head; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      ss->n--;
      break;
    }
  }
  wh_flag_set(&ss->active, ss->n > 0);
}

/* Ends the stream: with `comment` sent last and a proper end, or cut
 * (failed: the connection closes, the client sees it incomplete). `s` is
 * freed now, or when its poll job comes back. */
static void stream_end(wh_plugin *wp, wh_stream *s, int failed,
                       const char *comment) {
  if (s->req == NULL) return;
  if (!s->open) { /* still waiting for its first poll: nothing sent yet */
    bh_problem(s->req, "webhooks.unavailable", NULL);
    s->req = NULL;
    unlink_stream(wp->streams, s);
    if (!s->polling) stream_free(s);
    return;
  }
  if (comment && !failed)
    (void)bh_stream_write(s->req, comment, strlen(comment));
  (void)bh_stream_end(s->req, failed);
  s->req = NULL;
  unlink_stream(wp->streams, s);
  if (!s->polling) stream_free(s);
}

/* 0, or -1 when the stream ended (gone, or a reader too slow): `s` must
 * not be touched then. */
static int stream_send(wh_plugin *wp, wh_stream *s, const char *buf,
                       size_t len) {
  long rc = bh_stream_write(s->req, buf, len);
  if (rc < 0) { /* the client left */
    stream_end(wp, s, 1, NULL);
    return -1;
  }
  s->last_write = wh_mono_ms();
  if (rc > wp->cfg.stream_max_buffer) {
    bh_log(wp->ctx, BH_LOG_WARN,
           "delivery stream of request %s: %ld bytes unsent (limit %ld), "
           "the reader is too slow: disconnected",
           bh_req_id(s->req), rc, wp->cfg.stream_max_buffer);
    stream_end(wp, s, 1, NULL);
    return -1;
  }
  return 0;
}

static void poll_submit(wh_plugin *wp, wh_stream *s) {
  wh_job *j = wh_job_new(WH_OP_STREAM_POLL, NULL, &wp->cfg);
  if (j == NULL || (j->owner = strdup(s->owner)) == NULL) {
    wh_job_free(j);
    return; /* the next tick tries again */
  }
  j->stream = s;
  j->check_owner = !s->open && s->endpoint[0];
  j->cursor = s->cursor;
  j->limit = WH_STREAM_PAGE;
  memcpy(j->endpoint_filter, s->endpoint, sizeof(s->endpoint));
  memcpy(j->status_filter, s->status, sizeof(s->status));
  if (wh_store_submit(&wp->store, j) != 0) {
    wh_job_free(j);
    s->next_poll = wh_mono_ms() + wp->cfg.stream_poll_ms;
    return;
  }
  s->polling = 1;
}

/* The first poll came back: the endpoint filter is the caller's and the
 * store answers, so the stream opens (or the request gets the Problem).
 * 0, or -1 when `s` is gone. */
static int open_stream(wh_plugin *wp, wh_stream *s, wh_job *j) {
  bh_req *req = s->req;
  int rc = -ECANCELED;
  if (j->code == NULL && j->body) {
    bh_set_header(req, "Cache-Control", "no-store");
    bh_set_header(req, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
    rc = bh_stream_start(req, 200, "text/event-stream; charset=utf-8");
  }
  if (rc < 0) { /* -ECANCELED / -ECONNRESET: the problem call releases it */
    bh_problem(req, j->code ? j->code : "webhooks.unavailable", NULL);
    s->req = NULL;
    unlink_stream(wp->streams, s);
    stream_free(s);
    return -1;
  }
  s->open = 1;
  char head[96];
  int n = snprintf(head, sizeof(head), "retry: %lld\n: stream open\n\n",
                   (long long)wp->cfg.stream_retry_ms);
  return stream_send(wp, s, head, (size_t)n);
}

void wh_streams_job_done(wh_plugin *wp, wh_job *j) {
  wh_streams *ss = wp->streams;
  if (j->op == WH_OP_STREAM_PRUNE) {
    if (ss) ss->pruning = 0;
    wh_job_free(j);
    return;
  }
  wh_stream *s = j->stream;
  s->polling = 0;
  if (s->req == NULL) { /* ended while its poll ran */
    stream_free(s);
    wh_job_free(j);
    return;
  }
  int64_t now = wh_mono_ms();
  s->next_poll = now + wp->cfg.stream_poll_ms;
  if (!s->open && open_stream(wp, s, j) < 0) {
    wh_job_free(j);
    return;
  }
  if (j->code == NULL && j->body) { /* else the store is down: poll again */
    if (j->body[0] && stream_send(wp, s, j->body, strlen(j->body)) < 0) {
      wh_job_free(j);
      return;
    }
    s->cursor = j->seq_out;
    if (j->nchanges == WH_STREAM_PAGE && !ss->stopping) poll_submit(wp, s);
  }
  wh_job_free(j);
}

void wh_streams_tick(wh_plugin *wp) {
  wh_streams *ss = wp->streams;
  if (ss == NULL || ss->stopping) return;
  int64_t now = wh_mono_ms();
  wh_stream *next;
  for (wh_stream *s = ss->head; s; s = next) {
    next = s->next;
    if (!s->open) continue; /* its first poll is on its way */
    if (now - s->last_write >= wp->cfg.stream_heartbeat_ms) {
      static const char hb[] = ": heartbeat\n\n";
      if (stream_send(wp, s, hb, sizeof(hb) - 1) < 0) continue;
    }
    if (!s->polling && now >= s->next_poll) poll_submit(wp, s);
  }
  if (now >= ss->next_prune && !ss->pruning) {
    ss->next_prune = now + WH_PRUNE_EVERY_MS;
    wh_job *j = wh_job_new(WH_OP_STREAM_PRUNE, NULL, &wp->cfg);
    if (j && wh_store_submit(&wp->store, j) == 0)
      ss->pruning = 1;
    else
      wh_job_free(j);
  }
}

void wh_streams_stop(wh_plugin *wp) {
  wh_streams *ss = wp->streams;
  if (ss == NULL) return;
  ss->stopping = 1;
  while (ss->head)
    stream_end(wp, ss->head, 0,
               ": the server is restarting or shutting down: reconnect\n\n");
}

void wh_streams_free(wh_plugin *wp) {
  wh_streams *ss = wp->streams;
  if (ss == NULL) return;
  wh_streams_stop(wp);
  if (ss->started) {
    pthread_mutex_lock(&ss->mu);
    ss->quit = 1;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
    pthread_join(ss->thread, NULL);
  }
  pthread_mutex_destroy(&ss->mu);
  pthread_cond_destroy(&ss->cv);
  free(ss);
  wp->streams = NULL;
}

/* ---- the route ---------------------------------------------------------- */

static int too_many(bh_req *req, wh_plugin *wp, const char *detail) {
  long ra = (long)((wp->cfg.stream_retry_ms + 999) / 1000);
  return bh_problem_retry(req, "webhooks.too_many_streams", detail,
                          ra < 1 ? 1 : ra);
}

void wh_deliveries_stream(bh_req *req, void *data) {
  wh_plugin *wp = data;
  wh_streams *ss = wp->streams;
  if (ss == NULL || ss->stopping) {
    bh_problem(req, "webhooks.unavailable", NULL);
    return;
  }
  wh_job *j = wh_api_job(req, wp, WH_OP_STREAM_POLL);
  if (j == NULL) return;
  if (wh_api_stream_query(req, j) < 0) {
    wh_job_free(j);
    return;
  }
  /* the browser's reconnect says where it left off: it wins over the
   * query the page opened the stream with */
  const char *last = bh_req_header(req, "Last-Event-ID");
  if (last && *last) {
    char *end;
    errno = 0;
    long long v = strtoll(last, &end, 10);
    if (errno || *end || v < 0 || last[0] < '0' || last[0] > '9') {
      wh_job_free(j);
      bh_problem_field(req, "webhooks.invalid_query",
                       "Last-Event-ID must be an event id this stream sent.",
                       "Last-Event-ID");
      return;
    }
    j->cursor = v;
  }
  int mine = 0;
  for (wh_stream *s = ss->head; s; s = s->next)
    mine += strcmp(s->owner, j->owner) == 0;
  if (ss->n >= wp->cfg.stream_max_total) {
    wh_job_free(j);
    too_many(req, wp,
             "This server has as many delivery streams open as it "
             "allows. Try again later.");
    return;
  }
  if (mine >= wp->cfg.stream_max_per_principal) {
    wh_job_free(j);
    too_many(req, wp,
             "You have as many delivery streams open as you may. "
             "Close one first.");
    return;
  }
  wh_stream *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    wh_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  s->owner = j->owner;
  j->owner = NULL;
  s->cursor = j->cursor;
  memcpy(s->endpoint, j->endpoint_filter, sizeof(s->endpoint));
  memcpy(s->status, j->status_filter, sizeof(s->status));
  wh_job_free(j);
  s->req = req;
  s->next = ss->head;
  ss->head = s;
  ss->n++;
  wh_flag_set(&ss->active, 1);
  /* the head goes out with the first poll's answer: an endpoint filter
   * not the caller's answers 404 as in the listing, a store down 503 */
  poll_submit(wp, s);
  if (!s->polling) stream_end(wp, s, 0, NULL);
}
