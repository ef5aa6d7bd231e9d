/*
 * Inside upstream/: the client (client.c: libcurl's multi interface on the
 * libuv loop) and the calls it carries (upstream.c: attempts, retries,
 * results). Nothing outside this folder includes it.
 */
#ifndef BH_CORE_UPSTREAM_CLIENT_H
#define BH_CORE_UPSTREAM_CLIENT_H

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/trace.h"
#include "proc/daemon-t.h"
#include "upstream/upstream.h"

/* Easy handles kept for reuse (curl_easy_reset) instead of a fresh one per
 * attempt: initialising and freeing one cost about a tenth of a proxied
 * request's instructions. */
#define BH__EASY_POOL 64

struct bh__client {
  bh__daemon *d;
  CURLM *multi;
  uv_timer_t timer;
  bh__call *calls; /* all live calls, for shutdown */
  int closing;
  /* poll handles by socket, from the first time libcurl asks to watch a
   * socket until libcurl closes it (bh__curl_closesocket) */
  struct bh__sock **socks;
  size_t nsocks;
  CURL *easy_pool[BH__EASY_POOL];
  size_t neasy;
  struct bh__h1pool *pools; /* our own client's, one per upstream used */
  /* Calls finished "soon" (bh__call_finish_soon) run in this loop turn's
   * check phase, after the I/O callback that decided them has returned:
   * a zero timer would cost a loop turn and an epoll_wait more. The idle
   * handle keeps the poll from blocking when one was decided before it
   * (in a timer callback). */
  uv_check_t soon;
  uv_idle_t soon_wake;
  bh__call *soon_head; /* newest first */
  int open_handles;    /* closing: freed when the last one is closed */
};

typedef struct bh__h1conn bh__h1conn;
typedef struct bh__h1pool bh__h1pool;

/* One per upstream socket, for the socket's whole life: a keep-alive
 * connection goes back to libcurl's pool between transfers without its
 * poll handle being closed and re-created (each costs epoll_ctl calls and
 * an ioctl). */
typedef struct bh__sock {
  uv_poll_t poll;
  curl_socket_t fd;
  bh__client *cl;
  int events;      /* what the poll handle watches now (UV_READABLE...) */
  int curl_active; /* libcurl watches it (between a transfer's start and
                      CURL_POLL_REMOVE) */
} bh__sock;

typedef struct bh__result {
  bh_upstream_result pub; /* first: the plugin sees only this */
  bh__call *call;
  int malformed; /* the answer's head was refused (bh__upstream_head_line) */
} bh__result;

struct bh__call {
  bh__client *cl;
  struct bh_upstream *u;
  bh_req *req;
  bh_upstream_cb cb;
  void *cb_data;
  bh__call_stream stream;
  int has_stream;
  int streaming; /* answer being streamed: no retry */
  int paused;
  int aborted;   /* the stream's reader stopped it: no verdict */
  int malformed; /* this attempt's answer had a head we refuse to relay */

  /* the strings and the body below point into the call's own allocation,
   * after the struct (bh__call_start) */
  char *method;
  char *url;
  char *path; /* in url, after the base URL */
  char *body;
  size_t body_len;
  /* a streamed body (stream.body_stream, h1_body.c) */
  bh__buf body_held;  /* bytes given while no attempt could take them */
  uint64_t body_sent; /* body bytes queued on a connection */
  int body_ended;     /* bh__call_body_end was called */
  int body_want;      /* on_writable is owed once the queue drains */
  char **headers;
  size_t nheaders;
  uint32_t flags;
  uint32_t timeout_ms;

  CURL *easy;
  /* on our own client (h1.c) instead: */
  bh__h1conn *h1;
  bh__call *h1_wait_next; /* the pool's waiting calls */
  int h1_waiting, h1_fresh, h1_resent, h1_status;
  CURLcode h1_rc;
  uint64_t h1_deadline;
  struct curl_slist *slist; /* built in slist_mem: not curl_slist_append's */
  void *slist_mem;
  uv_timer_t timer; /* retry backoff, local refusals */
  bh__buf resp;
  bh__buf resp_headers;
  char errbuf[CURL_ERROR_SIZE];

  int outcome;
  uint32_t transport;
  int status;
  long retry_after;
  uint32_t attempts;
  uint32_t max_retries; /* the upstream's, or the route's from the config */
  uint64_t start_ms;
  uint64_t start_ns; /* the clock, not the loop's: durations in µs */
  uint64_t attempt_start_ms;
  uint64_t deadline_ms; /* 0: none */
  int finished;
  int mem_kept;        /* a block of the standard size (call_mem.c) */
  int soon;            /* on the client's soon list */
  bh__call *soon_next; /* that list */
  bh__trace trace;     /* a call made outside any request: its own trace */

  bh__call *next, *prev; /* client list */
  bh__call *req_next;    /* request's list */
};

/* Where a call's copied request starts in its block: the struct, rounded
 * up to pointer alignment (the block's pointer array comes first). */
#define BH__CALL_HEAD                                                          \
  ((sizeof(bh__call) + sizeof(void *) - 1) & ~(sizeof(void *) - 1))

/* Call blocks (call_mem.c), loop thread only. A zeroed call with room
 * for `bytes` after the first `head` bytes (a kept block when one fits,
 * its answer-head buffer's capacity kept), or NULL. */
bh__call *bh__call_mem_get(size_t head, size_t bytes);
/* Ends a call's memory: kept for reuse or freed, its buffers with it. */
void bh__call_mem_put(bh__call *call);
/* Frees the kept blocks (at the client's end, for leak checkers). */
void bh__call_mem_free_all(void);

static inline uint64_t bh__ms(bh__client *cl) {
  return uv_now(cl->d->loop);
}

/* client.c */
/* Hands every finished transfer to bh__attempt_done. */
void bh__check_multi(bh__client *cl);
/* CURLOPT_CLOSESOCKETFUNCTION: the socket's poll handle goes with it. */
int bh__curl_closesocket(void *clientp, curl_socket_t fd);

/* upstream.c */
/* After an attempt: retry, or deliver. */
void bh__attempt_done(bh__call *call, CURLcode rc);
/* Delivers the result and frees the call. */
void bh__call_finish(bh__call *call);
/* The lines the core adds to every attempt on both transports, each ""
 * when none: the request id, the time left, the trace context (our span
 * as the parent-id; the caller's tracestate passed on). */
typedef struct bh__extra {
  char id[16 + 80];
  char timeout[48];
  char traceparent[BH__TRACEPARENT_LINE];
  char tracestate[16 + BH__TRACESTATE_MAX];
} bh__extra;
void bh__attempt_extra(bh__call *call, uint64_t now, bh__extra *x);
/* A header line (or name of n bytes) the core writes itself on every
 * attempt: a caller's copy never goes out. */
int bh__attempt_ours(const char *name, size_t n);

#endif
