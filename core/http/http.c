/*
 * Listeners and connections: accept, read, llhttp parsing with limits and
 * timeouts, pipelining; the parser's callbacks are parse.c's. What a
 * request means is the concern of the hooks
 * each listener was given (bh__http_hooks: the gateway for the API, the
 * admin API for the admin listener); how an answer is written is
 * response.c's.
 *
 * One request per connection is in flight at a time: the parser pauses at
 * every message end, and bytes that arrive before the answer is queued are
 * held (up to one read buffer, then reading stops) and parsed afterwards,
 * so pipelined requests are answered in order and a client cannot make us
 * buffer without bound.
 *
 * Memory per connection is bounded: the request head (max_header_bytes),
 * its body (the route's limit), held pipelined bytes (two read buffers) and
 * unsent output (reading stops past BH__WRITE_QUEUE_HIGH whatever the parse
 * state, and a client that reads nothing for send_timeout_ms is cut).
 *
 * A connection that closes after an answer lingers: our side is shut down
 * once the answer is out, and what the client still sends is read and
 * dropped for a bounded time and size, so the kernel does not reset the
 * connection (and lose the answer) over unread input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "config/config.h"
#include "http/conn.h"
#include "http/http.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

#define BH__READ_BUF_SIZE 65536
/* Stop reading while this much of our output is still unsent. */
#define BH__WRITE_QUEUE_HIGH (1u << 20)

static void bh__conn_close(bh__conn *c);
static void bh__conn_feed(bh__conn *c, const char *data, size_t len);
static void bh__conn_pump(bh__conn *c);
void bh__conn_close_when_written(bh__conn *c);

/* ---------------------------------------------------------------------- */
/* Timers                                                                  */
/* ---------------------------------------------------------------------- */

static void bh__conn_timeout(uv_timer_t *t) {
  bh__conn *c = t->data;
  if (c->lingering) {
    /* the client went quiet (or lingering_time is up): enough waiting */
    bh__conn_close(c);
    return;
  }
  switch (c->state) {
  case BH__CONN_IDLE:
    /* nothing was started: no answer owed */
    bh__conn_close(c);
    break;
  case BH__CONN_HEADERS:
  case BH__CONN_BODY:
    c->keep_alive = 0;
    bh__conn_problem(c, "request.timeout");
    break;
  case BH__CONN_PROCESSING:
    if (c->req) c->listener->hooks->on_deadline(c->req);
    break;
  default: break;
  }
}

void bh__conn_timer(bh__conn *c, uint32_t ms) {
  bh__ltimer_start(&c->timer, bh__conn_timeout, ms);
}

void bh__conn_deadline(bh__conn *c, uint32_t ms) {
  bh__conn_timer(c, ms);
}

/* ---------------------------------------------------------------------- */
/* Reading                                                                 */
/* ---------------------------------------------------------------------- */

static void bh__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  /* One buffer for the whole loop: every read is parsed before the next one
   * and whatever a paused parser leaves is copied to its connection. */
  static char slab[BH__READ_BUF_SIZE];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void bh__read_stop(bh__conn *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

void bh__conn_read_stop(bh__conn *c) {
  bh__read_stop(c);
}

static void bh__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void bh__on_eof(bh__conn *c);

static void bh__read_start(bh__conn *c) {
  if (c->eof_held && c->state != BH__CONN_PROCESSING) {
    c->eof_held = 0;
    bh__on_eof(c);
    return;
  }
  if (!c->reading && c->state != BH__CONN_CLOSING && !c->read_eof) {
    if (uv_read_start((uv_stream_t *)&c->tcp, bh__alloc, bh__on_read) == 0)
      c->reading = 1;
  }
}

void bh__conn_read_start(bh__conn *c) {
  bh__read_start(c);
}

/* Our output the client has not taken yet is past the bound. */
static int bh__conn_over_high(bh__conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
         BH__WRITE_QUEUE_HIGH;
}

/* Bytes that arrive while a request is in flight are the next pipelined
 * request: kept for later, up to a bound, after which reading stops. Not
 * stopping reading for every request saves two epoll_ctl calls per request
 * (libuv forgets a stopped fd's events and re-adds it on restart). */
static void bh__conn_hold(bh__conn *c, const char *data, size_t len) {
  char *p = realloc(c->pending, c->pending_len + len);
  if (p == NULL) {
    c->keep_alive = 0;
    bh__read_stop(c);
    return;
  }
  memcpy(p + c->pending_len, data, len);
  c->pending = p;
  c->pending_len += len;
  if (c->pending_len >= BH__READ_BUF_SIZE) bh__read_stop(c);
}

/* Lingering: what the client still sends is dropped, within bounds. */
static void bh__linger_read(bh__conn *c, ssize_t nread) {
  const bh__config *cfg = c->d->cfg;
  if (nread < 0) {
    /* the client closed (or reset): nothing left to protect */
    bh__conn_close(c);
    return;
  }
  c->linger_bytes += (size_t)nread;
  uint64_t now = uv_now(c->d->loop);
  if (c->linger_bytes > cfg->lingering_max_bytes || now >= c->linger_end) {
    bh__conn_close(c);
    return;
  }
  uint64_t left = c->linger_end - now;
  bh__conn_timer(c, (uint32_t)(left < cfg->lingering_timeout_ms
                                   ? left
                                   : cfg->lingering_timeout_ms));
}

static void bh__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bh__conn *c = s->data;
  (void)buf;
  if (nread == 0) return;
  if (c->lingering) {
    bh__linger_read(c, nread);
  } else if (nread > 0 && c->state == BH__CONN_PROCESSING && c->req &&
             c->req->body_flowing) {
    bh__conn_body_feed(c, buf->base, (size_t)nread);
  } else if (nread > 0 && c->state == BH__CONN_PROCESSING) {
    bh__conn_hold(c, buf->base, (size_t)nread);
  } else if (nread > 0 && c->state == BH__CONN_CLOSING) {
    /* the answer says Connection: close; the rest is read (and dropped)
     * once it is out, see bh__conn_finish */
    bh__read_stop(c);
  } else if (nread > 0) {
    c->pumping = 1;
    bh__conn_feed(c, buf->base, (size_t)nread);
    c->pumping = 0;
    if (c->state != BH__CONN_PROCESSING) bh__conn_pump(c);
  } else if (c->state == BH__CONN_PROCESSING && c->req && c->req->body_open) {
    /* the client stopped sending mid-body: it wants no answer */
    c->read_eof = 1;
    bh__read_stop(c);
    bh__conn_body_end(c, "request.bad_request");
  } else if (c->state == BH__CONN_PROCESSING) {
    /* seen only once the answer is out, as it would be had reading been
     * paused: held pipelined requests are still answered first */
    c->eof_held = 1;
    bh__read_stop(c);
  } else {
    bh__on_eof(c);
  }
}

static void bh__on_eof(bh__conn *c) {
  c->read_eof = 1;
  bh__read_stop(c);
  /* a request being processed still gets its answer; otherwise there is
   * nobody left to answer */
  if (c->state != BH__CONN_PROCESSING && c->writes_pending == 0)
    bh__conn_close(c);
  else if (c->state != BH__CONN_PROCESSING)
    bh__conn_close_when_written(c);
}

int bh__conn_keep_rest(bh__conn *c, const char *data, size_t len) {
  const char *pos = llhttp_get_error_pos(&c->parser);
  size_t used = pos ? (size_t)(pos - data) : len;
  if (used >= len) return 0;
  char *rest = malloc(len - used);
  if (rest == NULL) return -ENOMEM;
  memcpy(rest, data + used, len - used);
  free(c->pending);
  c->pending = rest;
  c->pending_len = len - used;
  return 0;
}

/* Feeds bytes to the parser until they are used up or a request is ready.
 * Called from reads and when a request ends with bytes left over. */
static void bh__conn_feed(bh__conn *c, const char *data, size_t len) {
  if (c->state == BH__CONN_CLOSING) return;
  /* bytes alone do not reset the idle timer: a client trickling empty lines
   * must still be cut when the keep-alive (or first-request) time is up */
  if (c->fold_state != BH__FOLD_DONE && bh__fold_scan(c, data, len) != 0) {
    c->keep_alive = 0;
    bh__conn_problem(c, "request.bad_request");
    return;
  }
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
  if (err == HPE_OK) return;
  if (err == HPE_PAUSED && (c->message_done || c->body_dispatch)) {
    /* pipelined bytes, or the start of a streamed body: kept for later */
    if (bh__conn_keep_rest(c, data, len) != 0) {
      c->keep_alive = 0;
      bh__conn_problem(c, "generic.internal");
      return;
    }
    c->body_resume = c->body_dispatch;
    c->message_done = c->body_dispatch = 0;
    c->state = BH__CONN_PROCESSING;
    /* reading goes on: what arrives meanwhile is held (bh__conn_hold) */
    bh__ltimer_stop(&c->timer);
    c->listener->hooks->on_request(c->req);
    return;
  }
  /* a limit or a malformed request: answer and close, since the rest of the
   * stream can no longer be trusted to frame requests */
  c->keep_alive = 0;
  bh__conn_problem(c, c->early_code ? c->early_code : "request.bad_request");
}

/* Continues with pipelined bytes, or waits for the next request. Runs as a
 * loop, not by recursion, so a burst of pipelined requests answered
 * synchronously cannot grow the stack. */
static void bh__conn_pump(bh__conn *c) {
  if (c->pumping) return;
  c->pumping = 1;
  /* held requests wait while the client leaves our answers unread: each
   * answer would otherwise add to the write queue without bound */
  while (c->state == BH__CONN_IDLE && c->pending != NULL &&
         !bh__conn_over_high(c)) {
    char *p = c->pending;
    size_t n = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    bh__conn_feed(c, p, n);
    free(p);
  }
  c->pumping = 0;
  if (c->state == BH__CONN_PROCESSING || c->state == BH__CONN_CLOSING) return;
  if (bh__conn_over_high(c)) {
    /* whatever the parse state (a read may end inside a request): stop
     * reading until the queue drains; bh__conn_on_written resumes, and the
     * send timer cuts a client that takes nothing */
    c->write_blocked = 1;
    bh__read_stop(c);
    /* a request we stopped reading is not late: its clock restarts when
     * reading does */
    if (c->state != BH__CONN_IDLE) bh__ltimer_stop(&c->timer);
    return;
  }
  if (c->state == BH__CONN_IDLE && c->idle_arm) {
    c->idle_arm = 0;
    bh__conn_timer(c, c->d->cfg->keepalive_timeout_ms);
  }
  /* idle, or part of a pipelined request is in: read the rest */
  bh__read_start(c);
}

void bh__conn_write_drained(bh__conn *c) {
  if (c->write_blocked && c->state != BH__CONN_PROCESSING &&
      c->state != BH__CONN_CLOSING) {
    c->write_blocked = 0;
    if (c->state == BH__CONN_HEADERS)
      bh__conn_timer(c, c->d->cfg->header_timeout_ms);
    else if (c->state == BH__CONN_BODY)
      bh__conn_timer(c, c->d->cfg->body_timeout_ms);
    bh__conn_pump(c);
  }
}

int bh__conn_last_answer(const bh__conn *c) {
  /* a streamed body not read to its end: nothing after it can be framed */
  return !c->keep_alive || c->read_eof || c->d->stopping ||
         (c->req && c->req->body_open) ||
         (uint32_t)c->served + 1 >= c->d->cfg->keepalive_requests;
}

void bh__conn_request_done(bh__conn *c) {
  bh_req *req = c->req;
  c->req = NULL;
  if (req) {
    /* answered before its streamed body was read whole: the rest of the
     * stream cannot be framed any more */
    if (req->body_open) {
      c->keep_alive = 0;
      req->body_open = req->body_flowing = 0;
    }
    req->body_sink = NULL;
    req->conn = NULL;
    bh__req_unref(req);
  }
  c->served++;
  if (!c->keep_alive || c->read_eof || c->d->stopping) {
    /* response.c closes the connection once the answer is written */
    c->state = BH__CONN_CLOSING;
    bh__ltimer_stop(&c->timer);
    bh__read_stop(c);
    return;
  }
  c->state = BH__CONN_IDLE;
  c->idle_arm = 1;
  c->idle_since = uv_now(c->d->loop);
  c->fold_state = BH__FOLD_START;
  llhttp_resume(&c->parser);
  bh__conn_pump(c);
}

/* ---------------------------------------------------------------------- */
/* Per-address connection counts (max_connections_per_ip)                 */
/* ---------------------------------------------------------------------- */

/* A chained table per process, entries only while an address has open
 * connections: nothing is allocated when the cap is off (the default). */
#define BH__IP_BUCKETS 1024

typedef struct bh__ipcount {
  struct bh__ipcount *next;
  uint32_t count;
  char addr[64];
} bh__ipcount;

static bh__ipcount *bh__ip_table[BH__IP_BUCKETS];

static bh__ipcount **bh__ip_slot(const char *addr) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const unsigned char *s = (const unsigned char *)addr; *s; s++)
    h = (h ^ *s) * 16777619u;
  bh__ipcount **pp = &bh__ip_table[h % BH__IP_BUCKETS];
  while (*pp && strcmp((*pp)->addr, addr) != 0)
    pp = &(*pp)->next;
  return pp;
}

/* Counts c against its address; -EBUSY over the cap (not counted). */
static int bh__ip_acquire(bh__conn *c, uint32_t cap) {
  bh__ipcount **pp = bh__ip_slot(c->client_addr);
  bh__ipcount *e = *pp;
  if (e == NULL) {
    e = calloc(1, sizeof(*e));
    if (e == NULL) return -ENOMEM;
    memcpy(e->addr, c->client_addr, sizeof(e->addr));
    *pp = e;
  }
  if (e->count >= cap) return -EBUSY;
  e->count++;
  c->ip = e;
  return 0;
}

static void bh__ip_release(bh__conn *c) {
  bh__ipcount *e = c->ip;
  c->ip = NULL;
  if (e == NULL || --e->count > 0) return;
  bh__ipcount **pp = bh__ip_slot(e->addr);
  *pp = e->next;
  free(e);
}

/* ---------------------------------------------------------------------- */
/* Accept and close                                                        */
/* ---------------------------------------------------------------------- */

static void bh__conn_free(uv_handle_t *h) {
  bh__conn *c = h->data;
  if (--c->handles_open > 0) return;
  free(c->pending);
  free(c);
}

static void bh__conn_close(bh__conn *c) {
  if (c->closed) return;
  c->closed = 1;
  c->lingering = 0;
  c->state = BH__CONN_CLOSING;
  bh__daemon *d = c->d;
  if (c->prev)
    c->prev->next = c->next;
  else
    d->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (!c->refused) {
    d->nconns--;
    if (bh__shm_self)
      bh__shm_gauge(&bh__shm_self->connections, -1);
    else if (bh__shm_g)
      bh__shm_gauge(&bh__shm_g->connections, -1);
  }
  bh__ip_release(c);
  if (c->req) {
    /* the plugin may still hold the request; it just has nobody to answer */
    bh_req *req = c->req;
    c->req = NULL;
    req->conn = NULL;
    /* a body still streaming upstream will get no more bytes */
    bh__req_body_end(req, "request.bad_request");
    bh__req_unref(req);
  }
  uv_close(bh__ltimer_handle(&c->timer), bh__conn_free);
  uv_close((uv_handle_t *)&c->send_timer, bh__conn_free);
  uv_close((uv_handle_t *)&c->tcp, bh__conn_free);
}

static void bh__on_shutdown(uv_shutdown_t *sr, int status) {
  bh__conn *c = sr->handle->data;
  /* UV_ECANCELED: the connection was closed meanwhile */
  if (status < 0 && !c->closed) bh__conn_close(c);
}

/* The last answer is out: close, lingering first when the client may still
 * be sending. Without lingering, closing a socket with unread input makes
 * the kernel answer with a reset, and a client (or a proxy in front) that
 * is still sending may drop the answer it was sent. */
static void bh__conn_finish(bh__conn *c) {
  if (c->closed || c->lingering) return;
  bh__daemon *d = c->d;
  const bh__config *cfg = d->cfg;
  if (c->read_eof || c->write_error || cfg->lingering_time_ms == 0 ||
      uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, bh__on_shutdown) != 0) {
    bh__conn_close(c);
    return;
  }
  c->lingering = 1;
  c->state = BH__CONN_CLOSING;
  c->linger_bytes = 0;
  c->idle_since = uv_now(d->loop); /* a drain closes it after its grace */
  uint32_t total = cfg->lingering_time_ms;
  uint32_t quiet = cfg->lingering_timeout_ms;
  /* a refused connection was not served: it gets one quiet period at most */
  if (c->refused && total > quiet) total = quiet;
  c->linger_end = c->idle_since + total;
  bh__conn_timer(c, quiet < total ? quiet : total);
  if (!c->reading &&
      uv_read_start((uv_stream_t *)&c->tcp, bh__alloc, bh__on_read) == 0)
    c->reading = 1;
  if (!c->reading) bh__conn_close(c);
}

/* Closes once every queued write has been flushed (or failed). */
void bh__conn_close_when_written(bh__conn *c) {
  if (c->writes_pending == 0)
    bh__conn_finish(c);
  else
    c->close_after_write = 1;
}

/* No write progress for send_timeout_ms: the client does not read. */
static void bh__send_timeout(uv_timer_t *t) {
  bh__conn *c = t->data;
  size_t left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  if (c->writes_pending > 0 && left >= c->send_left) {
    bh__logf(BH__INFO, "send_timeout",
             "client %s took none of %zu queued bytes in %u ms; connection "
             "closed",
             c->client_addr, left, c->d->cfg->send_timeout_ms);
    c->write_error = 1;
    bh__conn_close(c);
    return;
  }
  /* part of a large write went: that is progress too */
  c->send_left = left;
  if (c->writes_pending > 0)
    uv_timer_start(&c->send_timer, bh__send_timeout, c->d->cfg->send_timeout_ms,
                   0);
}

void bh__conn_on_queued(bh__conn *c) {
  if (c->writes_pending++ == 0) {
    c->send_left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->send_timer, bh__send_timeout, c->d->cfg->send_timeout_ms,
                   0);
  }
}

void bh__conn_on_written(bh__conn *c, int status) {
  c->writes_pending--;
  if (c->closed) return;
  if (status < 0) {
    c->write_error = 1;
    bh__conn_close(c);
    return;
  }
  if (c->writes_pending > 0) {
    /* progress: the client reads */
    c->send_left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->send_timer, bh__send_timeout, c->d->cfg->send_timeout_ms,
                   0);
  } else {
    uv_timer_stop(&c->send_timer);
  }
  if (c->req && c->req->on_drain &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <
          BH__WRITE_QUEUE_HIGH / 2)
    c->req->on_drain(c->req);
  if (c->closed) return;
  if (c->writes_pending == 0) {
    if (c->close_after_write || c->state == BH__CONN_CLOSING) {
      bh__conn_finish(c);
      return;
    }
    bh__conn_write_drained(c);
  } else if (c->write_blocked &&
             uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <
                 BH__WRITE_QUEUE_HIGH / 2) {
    /* well under the bound again: no need to wait for the queue to empty */
    bh__conn_write_drained(c);
  }
}

static void bh__on_connection(uv_stream_t *server, int status) {
  bh__listener *l = server->data;
  bh__daemon *d = l->d;
  if (status < 0) {
    bh__logf(BH__WARN, "accept_failed", "%s", uv_strerror(status));
    return;
  }
  bh__conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->d = d;
  c->listener = l;
  uv_tcp_init(d->loop, &c->tcp);
  bh__ltimer_init(d->loop, &c->timer);
  uv_timer_init(d->loop, &c->send_timer);
  c->tcp.data = c;
  c->timer.t.data = c;
  c->send_timer.data = c;
  c->handles_open = 3;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    c->closed = 1;
    uv_close(bh__ltimer_handle(&c->timer), bh__conn_free);
    uv_close((uv_handle_t *)&c->send_timer, bh__conn_free);
    uv_close((uv_handle_t *)&c->tcp, bh__conn_free);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->client_addr,
                  sizeof(c->client_addr));
    else
      uv_ip4_name((struct sockaddr_in *)&ss, c->client_addr,
                  sizeof(c->client_addr));
  }
  /* Once accepted, a connection is served even while draining (its answer
   * says Connection: close): closing it unanswered would reset a client
   * that did nothing wrong. Over a limit, it gets a short 503 instead of
   * a bare close, and is not counted against the limit meanwhile. */
  /* the per-address cap is for client traffic: ops on loopback keep the
   * admin API */
  uint32_t per_ip =
      l->kind == BH__LISTENER_API ? d->cfg->max_connections_per_ip : 0;
  c->refused = d->nconns >= d->cfg->max_connections ||
               (per_ip > 0 && bh__ip_acquire(c, per_ip) != 0);
  c->next = d->conns;
  if (d->conns) d->conns->prev = c;
  d->conns = c;
  if (!c->refused) {
    d->nconns++;
    if (bh__shm_self)
      bh__shm_gauge(&bh__shm_self->connections, 1);
    else if (bh__shm_g)
      bh__shm_gauge(&bh__shm_g->connections, 1);
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &d->parser_settings);
  c->parser.data = c;
  c->state = BH__CONN_IDLE;
  c->idle_since = uv_now(d->loop);
  c->keep_alive = 1;
  if (c->refused) {
    bh__conn_problem(c, "server.overloaded");
    return;
  }
  /* a fresh connection gets the header timeout, not the keep-alive one */
  bh__conn_timer(c, d->cfg->header_timeout_ms);
  bh__read_start(c);
}

int bh__listen_start(bh__listener *l) {
  return uv_listen((uv_stream_t *)&l->tcp, 511, bh__on_connection);
}

/* "host:port" (or "[v6]:port") to a socket address; -EINVAL. */
static int bh__listen_addr(const char *addr, struct sockaddr_storage *ss) {
  char host[64];
  int port;
  if (bh__config_parse_addr(addr, host, sizeof(host), &port) != 0)
    return -EINVAL;
  memset(ss, 0, sizeof(*ss));
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) != 0)
    return -EINVAL;
  return 0;
}

/* The address a socket is bound to, as "host:port" / "[v6]:port". */
static void bh__bound_text(const struct sockaddr_storage *ss, char *out,
                           size_t n) {
  char name[64] = "";
  if (ss->ss_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)ss, name, sizeof(name));
    snprintf(out, n, "[%s]:%d", name,
             ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
  } else {
    uv_ip4_name((const struct sockaddr_in *)ss, name, sizeof(name));
    snprintf(out, n, "%s:%d", name,
             ntohs(((const struct sockaddr_in *)ss)->sin_port));
  }
}

int bh__listen(bh__daemon *d, bh__listener *l, int kind, const char *addr,
               const bh__http_hooks *hooks) {
  struct sockaddr_storage ss;
  if (bh__listen_addr(addr, &ss) != 0) return -EINVAL;
  l->d = d;
  l->kind = kind;
  l->hooks = hooks;
  int rc = uv_tcp_init(d->loop, &l->tcp);
  if (rc) return rc;
  l->tcp.data = l;
  l->open = 1;
  rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = bh__listen_start(l);
  if (rc) return rc;
  int len = sizeof(ss);
  uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
  bh__bound_text(&ss, l->address, sizeof(l->address));
  return 0;
}

int bh__listen_reuseport_fd(const char *addr, char *bound, size_t boundlen) {
  struct sockaddr_storage ss;
  if (bh__listen_addr(addr, &ss) != 0) return -EINVAL;
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 511) != 0) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  len = sizeof(ss);
  if (bound && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
    bh__bound_text(&ss, bound, boundlen);
  return fd;
}

void bh__conn_close_all(bh__daemon *d) {
  while (d->conns)
    bh__conn_close(d->conns);
}

/* Bytes the loop has not read yet: a request already on its way, which
 * must get an answer rather than a reset. */
static int bh__conn_has_unread(bh__conn *c) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
  char b;
  return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

void bh__conn_close_idle_since(bh__daemon *d, uint64_t now, uint64_t grace_ms) {
  bh__conn *c = d->conns;
  while (c) {
    bh__conn *next = c->next;
    /* a lingering connection owes nothing more; it gets the idle grace so
     * that a drain is never held up by lingering_time */
    if (c->lingering && now - c->idle_since >= grace_ms)
      bh__conn_close(c);
    else if (c->state == BH__CONN_IDLE && c->writes_pending == 0 &&
             now - c->idle_since >= grace_ms && !bh__conn_has_unread(c))
      bh__conn_close(c);
    c = next;
  }
}

/* Closes idle connections (shutdown: in-flight ones finish first). */
void bh__conn_close_idle(bh__daemon *d) {
  bh__conn *c = d->conns;
  while (c) {
    bh__conn *next = c->next;
    if (c->lingering || (c->state == BH__CONN_IDLE && c->writes_pending == 0))
      bh__conn_close(c);
    c = next;
  }
}
