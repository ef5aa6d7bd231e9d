/*
 * Upstream calls on the client (client.c), with retries, the circuit
 * breaker and the retry budget applied to each attempt.
 *
 * A call is owned by the core from bh__call_start until its callback has
 * run; it holds a reference on its request so the plugin's `req` stays
 * valid in the callback whatever happened to the connection.
 */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "obs/telemetry.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/client.h"
#include "upstream/h1.h"
#include "upstream/limits.h"
#include "upstream/upstream.h"

#define BH__MAX_RESPONSE_DEFAULT (8u << 20)

/* ---------------------------------------------------------------------- */
/* Call lifecycle                                                          */
/* ---------------------------------------------------------------------- */

static void bh__call_free(uv_handle_t *h) {
  bh__call_mem_put(h->data);
}

static void bh__easy_release(bh__call *call) {
  bh__client *cl = call->cl;
  bh__h1_release(call);
  if (call->easy) {
    curl_multi_remove_handle(cl->multi, call->easy);
    if (cl->neasy < BH__EASY_POOL && !cl->closing) {
      /* reset now: the handle must not keep pointers into this call */
      curl_easy_reset(call->easy);
      cl->easy_pool[cl->neasy++] = call->easy;
    } else {
      curl_easy_cleanup(call->easy);
    }
    call->easy = NULL;
  }
  free(call->slist_mem);
  call->slist_mem = NULL;
  call->slist = NULL;
}

static CURL *bh__easy_get(bh__client *cl) {
  if (cl->neasy) return cl->easy_pool[--cl->neasy];
  return curl_easy_init();
}

/* The request's header list in one allocation: libcurl only reads a
 * CURLOPT_HTTPHEADER list, so its nodes and strings can live in one block
 * instead of two allocations per header (curl_slist_append). */
static struct curl_slist *bh__slist_build(bh__call *call, const char **lines,
                                          size_t n) {
  size_t bytes = n * sizeof(struct curl_slist);
  for (size_t i = 0; i < n; i++)
    bytes += strlen(lines[i]) + 1;
  char *mem = malloc(bytes ? bytes : 1);
  if (mem == NULL) return NULL;
  struct curl_slist *nodes = (struct curl_slist *)(void *)mem;
  char *str = mem + n * sizeof(struct curl_slist);
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(lines[i]) + 1;
    memcpy(str, lines[i], l);
    nodes[i].data = str;
    nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
    str += l;
  }
  call->slist_mem = mem;
  return n ? nodes : NULL;
}

static void bh__req_calls_remove(bh__call *call) {
  bh_req *req = call->req;
  if (req == NULL) return;
  bh__call **pp = (bh__call **)&req->calls;
  while (*pp && *pp != call)
    pp = &(*pp)->req_next;
  if (*pp) *pp = call->req_next;
}

static void bh__upstream_note_error(struct bh_upstream *u, bh__call *call,
                                    uint64_t now) {
  const char *what = NULL;
  char tmp[64];
  if (call->outcome == BH_OUTCOME_TRANSPORT && call->malformed) {
    what = "malformed answer";
  } else if (call->outcome == BH_OUTCOME_TRANSPORT) {
    switch (call->transport) {
    case BH_TRANSPORT_CONNECT: what = "connect failed"; break;
    case BH_TRANSPORT_DNS: what = "DNS failure"; break;
    case BH_TRANSPORT_TLS: what = "TLS failure"; break;
    case BH_TRANSPORT_TIMEOUT: what = "timeout"; break;
    default: what = "connection reset"; break;
    }
  } else if (call->outcome == BH_OUTCOME_RESPONSE &&
             (call->status >= 500 || call->status == 429 ||
              call->status == 408)) {
    snprintf(tmp, sizeof(tmp), "HTTP %d", call->status);
    what = tmp;
  }
  if (what) {
    snprintf(u->last_error, sizeof(u->last_error), "%s", what);
    u->last_error_ms = (uint64_t)time(NULL) * 1000;
    if (u->shared) {
      bh__shm_lock();
      snprintf(u->shared->last_error, sizeof(u->shared->last_error), "%s",
               what);
      u->shared->last_error_ms = u->last_error_ms;
      bh__shm_unlock();
    }
  }
  (void)now;
}

/* Off the soon list when finished before its turn (a cancel). */
static void bh__soon_unlink(bh__call *call) {
  for (bh__call **p = &call->cl->soon_head; *p; p = &(*p)->soon_next)
    if (*p == call) {
      *p = call->soon_next;
      call->soon_next = NULL;
      call->soon = 0;
      return;
    }
}

/* Delivers the result and frees the call. */
void bh__call_finish(bh__call *call) {
  if (call->finished) return;
  call->finished = 1;
  bh__client *cl = call->cl;
  bh__easy_release(call);
  uv_timer_stop(&call->timer);
  if (call->soon) bh__soon_unlink(call);
  if (call->prev)
    call->prev->next = call->next;
  else
    cl->calls = call->next;
  if (call->next) call->next->prev = call->prev;
  bh__req_calls_remove(call);

  uint64_t now = bh__ms(cl);
  bh__upstream_note_error(call->u, call, now);
  /* the loop's clock ticks in ms and is cached: a fast call would read 0 */
  uint64_t us = (bh__now_ns() - call->start_ns) / 1000;
  bh__metrics_upstream(cl->d, call->u->name, call->outcome, call->transport,
                       call->status, call->attempts, us);
  if (call->req) {
    /* the access log tells of the request's last call */
    bh_req *rq = call->req;
    size_t nl = strlen(call->u->name);
    if (nl >= sizeof(rq->upstream_name)) nl = sizeof(rq->upstream_name) - 1;
    memcpy(rq->upstream_name, call->u->name, nl);
    rq->upstream_name[nl] = '\0';
    rq->upstream_status = call->status;
    rq->upstream_us = us;
    rq->upstream_retries = call->attempts ? call->attempts - 1 : 0;
  }

  bh__result r;
  memset(&r, 0, sizeof(r));
  r.call = call;
  r.pub.size = sizeof(r.pub);
  r.pub.outcome = call->outcome;
  r.pub.transport = call->transport;
  r.pub.status = call->status;
  r.pub.body = call->resp.data ? call->resp.data : "";
  r.pub.body_len = call->resp.len;
  r.pub.retry_after = call->retry_after;
  r.pub.attempts = call->attempts;
  r.pub.duration_ms = (uint32_t)(now - call->start_ms);
  r.malformed = call->outcome == BH_OUTCOME_TRANSPORT && call->malformed;
  bh_req *req = call->req;
  if (call->cb) {
    int64_t mark = bh__shm_enter(call->u->plugin->shm_index, BH__CB_UPSTREAM);
    call->cb(req, &r.pub, call->cb_data);
    bh__shm_leave(mark);
  }
  if (req) bh__req_unref(req);
  uv_close((uv_handle_t *)&call->timer, bh__call_free);
}

static void bh__call_attempt(bh__call *call);

static void bh__call_fire(bh__call *call) {
  if (call->outcome == -1)
    bh__call_attempt(call);
  else
    bh__call_finish(call);
}

static void bh__timer_fire(uv_timer_t *t) {
  bh__call_fire(t->data);
}

static void bh__soon_noop(uv_idle_t *h) {
  (void)h;
}

/* The check phase: the calls made "soon" since the last one, oldest
 * first. A call finished meanwhile (a cancel) is skipped: its memory goes
 * in the closing phase, which comes after this one. */
static void bh__soon_run(uv_check_t *h) {
  bh__client *cl = h->data;
  bh__call *c = NULL;
  while (cl->soon_head) { /* reversed: oldest first */
    bh__call *n = cl->soon_head;
    cl->soon_head = n->soon_next;
    n->soon_next = c;
    c = n;
  }
  uv_check_stop(&cl->soon);
  uv_idle_stop(&cl->soon_wake);
  while (c) {
    bh__call *next = c->soon_next;
    c->soon_next = NULL;
    c->soon = 0;
    if (!c->finished) bh__call_fire(c);
    c = next;
  }
}

/* Finishes later in this loop turn (after the poll, see bh__client.soon):
 * a callback never runs inside the call that started it. */
static void bh__call_finish_soon(bh__call *call) {
  bh__client *cl = call->cl;
  uv_timer_stop(&call->timer);
  if (call->soon) return;
  call->soon = 1;
  call->soon_next = cl->soon_head;
  cl->soon_head = call;
  uv_check_start(&cl->soon, bh__soon_run);
  uv_idle_start(&cl->soon_wake, bh__soon_noop);
}

/* ---------------------------------------------------------------------- */
/* One attempt                                                             */
/* ---------------------------------------------------------------------- */

static size_t bh__on_header(char *buf, size_t size, size_t n, void *userp) {
  bh__call *call = userp;
  size_t len = size * n;
  int rc = bh__upstream_head_line(&call->resp_headers, buf, len);
  if (rc == -EPROTO) call->malformed = 1;
  /* anything but len ends the transfer (CURLE_WRITE_ERROR) */
  return rc ? 0 : len;
}

static size_t bh__on_data(char *buf, size_t size, size_t n, void *userp) {
  bh__call *call = userp;
  size_t len = size * n;
  if (call->has_stream && !call->streaming && call->resp.len == 0 &&
      call->status == 0) {
    long code = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
    call->status = (int)code;
    if (call->stream.on_head(call, (int)code, call->stream.data))
      call->streaming = 1;
  }
  if (call->streaming) {
    int more = call->stream.on_data(call, buf, len, call->stream.data);
    if (more < 0) {
      call->aborted = 1;
      return 0; /* ends the transfer (CURLE_WRITE_ERROR) */
    }
    if (more) {
      call->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    return len;
  }
  if (call->resp.len + len > call->u->max_response_bytes) return 0;
  return bh__buf_append(&call->resp, buf, len) ? 0 : len;
}

void bh__call_resume(bh__call *call) {
  if (call->h1) {
    bh__h1_resume(call);
    return;
  }
  if (call->paused && call->easy) {
    call->paused = 0;
    curl_easy_pause(call->easy, CURLPAUSE_CONT);
  }
}

static uint32_t bh__transport_kind(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_CONNECT: return BH_TRANSPORT_CONNECT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return BH_TRANSPORT_DNS;
  case CURLE_OPERATION_TIMEDOUT: return BH_TRANSPORT_TIMEOUT;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return BH_TRANSPORT_TLS;
  default: return BH_TRANSPORT_RESET;
  }
}

static long bh__header_retry_after(bh__call *call) {
  const char *v = bh__call_headers(call);
  const char *h = v ? strstr(v, "retry-after: ") : NULL;
  if (h == NULL || (h != v && h[-1] != '\n')) return -1;
  char val[64];
  h += 13;
  size_t n = strcspn(h, "\r\n");
  if (n >= sizeof(val)) return -1;
  memcpy(val, h, n);
  val[n] = '\0';
  int64_t s = bh__retry_after_parse(val, (int64_t)time(NULL));
  /* a day is already "do not retry"; clamping keeps later arithmetic safe */
  return s < 0 ? -1 : (long)(s > 86400 ? 86400 : s);
}

static uint64_t bh__rand64(void) {
  uint64_t r;
  randombytes_buf(&r, sizeof(r));
  return r;
}

/* After an attempt: retry, or deliver. */
void bh__attempt_done(bh__call *call, CURLcode rc) {
  bh__client *cl = call->cl;
  struct bh_upstream *u = call->u;
  uint64_t now = bh__ms(cl);
  uint32_t took = (uint32_t)(now - call->attempt_start_ms);
  if (call->aborted) {
    /* the reader stopped a 2xx stream (its client left): the upstream was
     * answering fine, and the breaker's slot is still owed a record */
    if (!bh__breaker_record_fast(u->breaker, now, 0, took)) {
      bh__shm_lock();
      bh__breaker_record(u->breaker, now, 0, took);
      bh__shm_unlock();
    }
    bh__easy_release(call);
    call->outcome = BH_OUTCOME_CANCELED;
    call->transport = 0;
    bh__call_finish(call);
    return;
  }
  long code = call->h1_status;
  if (call->easy) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
  if (rc == CURLE_OK) {
    call->outcome = BH_OUTCOME_RESPONSE;
    call->status = (int)code;
    call->transport = 0;
  } else {
    call->outcome = BH_OUTCOME_TRANSPORT;
    call->transport = bh__transport_kind(rc);
    /* libcurl refuses some heads itself: a line without a colon is a
     * "weird server reply"; a CR inside a name fails its header store with
     * BAD_FUNCTION_ARGUMENT once the status line is in. Same verdict as
     * ours */
    if (rc == CURLE_WEIRD_SERVER_REPLY ||
        (rc == CURLE_BAD_FUNCTION_ARGUMENT && code != 0))
      call->malformed = 1;
    if (call->malformed)
      snprintf(call->errbuf, sizeof(call->errbuf), "malformed response head");
    else if (rc == CURLE_WRITE_ERROR && !call->streaming)
      snprintf(call->errbuf, sizeof(call->errbuf), "response too large");
    call->status = 0;
  }
  call->retry_after =
      call->outcome == BH_OUTCOME_RESPONSE ? bh__header_retry_after(call) : -1;
  /* 429 and 408 count too: an upstream asking us to back off is exactly
   * what the breaker is for */
  int failed = call->outcome == BH_OUTCOME_TRANSPORT || call->status >= 500 ||
               call->status == 429 || call->status == 408;
  /* the lock only when the outcome can move the breaker: a failure, a
   * slow call, half-open (policy/breaker.h) */
  if (!bh__breaker_record_fast(u->breaker, now, failed, took)) {
    bh__shm_lock();
    bh__breaker_record(u->breaker, now, failed, took);
    bh__shm_unlock();
  }
  bh__easy_release(call);

  /* a malformed head is not retried: the same upstream would most likely
   * send it again */
  if (call->streaming || call->malformed || (call->flags & BH_CALL_NO_RETRY) ||
      call->attempts > call->max_retries ||
      !bh__retry_method_ok(call->method, call->flags & BH_CALL_RETRY_SAFE) ||
      !bh__retry_outcome_ok(
          call->outcome == BH_OUTCOME_TRANSPORT ? call->transport : 0,
          call->outcome == BH_OUTCOME_RESPONSE ? call->status : 0)) {
    bh__call_finish(call);
    return;
  }
  int64_t ra = call->retry_after >= 0 ? call->retry_after * 1000 : -1;
  int64_t delay =
      bh__retry_delay_ms(&u->retry, call->attempts, bh__rand64(), ra);
  int budget_ok = 0;
  if (delay >= 0 &&
      !(call->deadline_ms && now + (uint64_t)delay + 5 >= call->deadline_ms)) {
    bh__shm_lock();
    budget_ok = bh__retry_budget_take(u->budget, &u->retry, now);
    bh__shm_unlock();
  }
  if (!budget_ok) {
    bh__call_finish(call);
    return;
  }
  bh__metrics_retry(cl->d, u->name);
  call->outcome = -1; /* the timer starts the next attempt */
  bh__buf_reset(&call->resp);
  uv_timer_start(&call->timer, bh__timer_fire, (uint64_t)delay, 0);
}

/* The gates before an attempt goes out: the call's deadline, the
 * upstream's local rate limit (first attempt only) and its breaker. 0 to
 * go on; -1 when the call was finished instead. */
static int bh__attempt_admit(bh__call *call, uint64_t now) {
  struct bh_upstream *u = call->u;
  uint64_t retry_ms = 0;
  /* the deadline first: a call that cannot go out must not take a breaker
   * slot it would then have to report */
  if (call->deadline_ms && now >= call->deadline_ms) {
    call->outcome = BH_OUTCOME_TRANSPORT;
    call->transport = BH_TRANSPORT_TIMEOUT;
    bh__call_finish_soon(call);
    return -1;
  }
  if (call->attempts == 0 && u->limit) {
    uint32_t wait_s = 0;
    if (bh__limit_take_key(u->limit, u->name, now, &wait_s) != 0) {
      call->outcome = BH_OUTCOME_RATE_LIMITED;
      call->retry_after = wait_s;
      bh__call_finish_soon(call);
      return -1;
    }
  }
  /* closed, or open and refusing: no lock and nothing written; the lock
   * only when the answer can move the state (policy/breaker.h) */
  int rc = bh__breaker_allow_fast(u->breaker, now, &retry_ms);
  if (rc == -EBUSY) {
    bh__shm_lock();
    rc = bh__breaker_allow(u->breaker, now, &retry_ms);
    bh__shm_unlock();
  }
  int refused = rc != 0;
  if (refused) {
    if (call->attempts == 0) {
      call->outcome = BH_OUTCOME_BREAKER_OPEN;
      call->retry_after = (long)((retry_ms + 999) / 1000);
    } else {
      /* keep the last real answer: it is the truer story */
      call->outcome = call->status ? BH_OUTCOME_RESPONSE : BH_OUTCOME_TRANSPORT;
    }
    bh__call_finish_soon(call);
    return -1;
  }
  return 0;
}

int bh__attempt_ours(const char *name, size_t n) {
  return (n == 11 && strncasecmp(name, "traceparent", 11) == 0) ||
         (n == 10 && strncasecmp(name, "tracestate", 10) == 0);
}

void bh__attempt_extra(bh__call *call, uint64_t now, bh__extra *x) {
  char *idline = x->id, *tline = x->timeout;
  idline[0] = tline[0] = x->tracestate[0] = '\0';
  bh_req *req = call->req;
  if (req && req->id[0]) {
    /* the id is at most sizeof(id) - 1 bytes: it fits */
    size_t il = strlen(req->id);
    memcpy(idline, "X-Request-ID: ", 14);
    memcpy(idline + 14, req->id, il + 1);
  }
  /* our span is the parent of the upstream's; a call of no request (a
   * background job) is a trace of its own */
  const bh__trace *t = req ? &req->trace : &call->trace;
  if (t->trace_id[0] == '\0') {
    /* one trace for all the call's attempts */
    if (call->trace.trace_id[0] == '\0') bh__trace_start(&call->trace, NULL);
    t = &call->trace;
  }
  bh__trace_line(t, x->traceparent);
  if (req && req->tracestate) {
    /* checked at the start: at most BH__TRACESTATE_MAX bytes */
    size_t sl = strlen(req->tracestate);
    memcpy(x->tracestate, "tracestate: ", 12);
    memcpy(x->tracestate + 12, req->tracestate, sl + 1);
  }
  if (call->deadline_ms) {
    static const char tname[] = "X-Request-Timeout-Ms: ";
    char digits[24];
    size_t i = sizeof(digits);
    uint64_t left = call->deadline_ms > now ? call->deadline_ms - now : 0;
    digits[--i] = '\0';
    do {
      digits[--i] = (char)('0' + left % 10);
      left /= 10;
    } while (left);
    memcpy(tline, tname, sizeof(tname) - 1);
    memcpy(tline + sizeof(tname) - 1, digits + i, sizeof(digits) - i);
  }
}

/* The attempt's request headers: the upstream's, the call's, the request
 * id, the time left, and no Expect. NULL when out of memory. */
static struct curl_slist *bh__attempt_headers(bh__call *call, uint64_t now) {
  struct bh_upstream *u = call->u;
  bh__extra x;
  const char *small[16];
  size_t nl = u->nheaders + call->nheaders + 5;
  const char **lines = nl <= 16 ? small : malloc(nl * sizeof(*lines));
  if (lines == NULL) return NULL;
  nl = 0;
  for (size_t i = 0; i < u->nheaders; i++)
    lines[nl++] = u->headers[i];
  for (size_t i = 0; i < call->nheaders; i++) {
    const char *h = call->headers[i];
    if (!bh__attempt_ours(h, strcspn(h, ":"))) lines[nl++] = h;
  }
  bh__attempt_extra(call, now, &x);
  const char *ours[] = {x.id, x.timeout, x.traceparent, x.tracestate};
  for (size_t i = 0; i < 4; i++)
    if (ours[i][0]) lines[nl++] = ours[i];
  /* no 100-continue round trip: bodies are small and already in memory */
  lines[nl++] = "Expect:";
  struct curl_slist *sl = bh__slist_build(call, lines, nl);
  if (lines != small) free((void *)lines);
  return sl;
}

/* The easy handle's options for this attempt. */
static void bh__attempt_setopt(bh__call *call, CURL *e, struct curl_slist *sl,
                               uint32_t timeout) {
  struct bh_upstream *u = call->u;
  bh__client *cl = call->cl;
  curl_easy_setopt(e, CURLOPT_URL, call->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, call);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)u->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, bh__on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bh__on_data);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, (long)u->tls_verify);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, u->tls_verify ? 2L : 0L);
  if (u->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, u->ca_file);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, bh__curl_closesocket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, cl);
  if ((call->flags & BH_CALL_NO_RETRY) ||
      !bh__retry_method_ok(call->method, call->flags & BH_CALL_RETRY_SAFE)) {
    /* libcurl silently re-sends a request whose reused keep-alive
     * connection turns out dead; for a request that must reach the
     * upstream at most once, only a fresh connection is safe */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  }
  if (strcmp(call->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(call->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
    if (call->body_len || strcmp(call->method, "POST") == 0 ||
        strcmp(call->method, "PUT") == 0 ||
        strcmp(call->method, "PATCH") == 0) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t)call->body_len);
    }
  }
}

static void bh__call_attempt(bh__call *call) {
  bh__client *cl = call->cl;
  struct bh_upstream *u = call->u;
  uint64_t now = bh__ms(cl);
  if (bh__attempt_admit(call, now) != 0) return;
  uint32_t timeout = call->timeout_ms ? call->timeout_ms : u->timeout_ms;
  if (call->deadline_ms && call->deadline_ms - now < timeout)
    timeout = (uint32_t)(call->deadline_ms - now);
  call->attempts++;
  call->attempt_start_ms = now;
  call->status = 0;
  call->malformed = 0;
  bh__buf_reset(&call->resp);
  bh__buf_reset(&call->resp_headers);
  call->errbuf[0] = '\0';
  if (bh__h1_usable(u)) {
    if (bh__h1_start(call, timeout) == 0) return;
    if (bh__h1_usable(u)) goto fail;
    /* a URL our client does not take: libcurl's from now on */
  }
  /* libcurl gets whole bodies only (bh__upstream_streams_body) */
  if (call->has_stream && call->stream.body_stream) goto fail;
  CURL *e = bh__easy_get(cl);
  if (e == NULL) goto fail;
  call->easy = e;
  struct curl_slist *sl = bh__attempt_headers(call, now);
  if (sl == NULL) goto fail;
  call->slist = sl;
  bh__attempt_setopt(call, e, sl, timeout);
  if (curl_multi_add_handle(cl->multi, e) != CURLM_OK) goto fail;
  return;
fail:
  /* a local failure, but the slot must be reported: count it failed */
  bh__shm_lock();
  bh__breaker_record(u->breaker, now, 1, 0);
  bh__shm_unlock();
  bh__easy_release(call);
  call->outcome = BH_OUTCOME_TRANSPORT;
  call->transport = BH_TRANSPORT_CONNECT;
  bh__call_finish_soon(call);
}

/* ---------------------------------------------------------------------- */
/* Public entry points                                                     */
/* ---------------------------------------------------------------------- */

int bh__call_start(bh__daemon *d, bh_req *req, struct bh_upstream *u,
                   const bh_upstream_request *rq, bh_upstream_cb cb, void *data,
                   const bh__call_stream *stream) {
  bh__client *cl = d->client;
  if (cl == NULL || cl->closing) return -ESHUTDOWN;
  if (u == NULL || rq == NULL ||
      rq->size < offsetof(bh_upstream_request, flags) || rq->method == NULL ||
      rq->path == NULL || rq->path[0] != '/' ||
      (rq->body == NULL && rq->body_len))
    return -EINVAL;
  for (const char *m = rq->method; *m; m++)
    if (*m < 'A' || *m > 'Z') return -EINVAL;
  for (const char *p = rq->path; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 127) return -EINVAL;
  if (req && req->answered) return -ECANCELED;

  /* method, URL, headers and body are copied into one block, which
   * follows the call in its allocation */
  const char *const *hdrs = NULL;
  size_t nh = 0;
  int bad = 0;
  if (rq->size >=
          offsetof(bh_upstream_request, headers) + sizeof(rq->headers) &&
      rq->headers) {
    hdrs = rq->headers;
    while (hdrs[nh])
      nh++;
  }
  size_t ml = strlen(rq->method) + 1, bl = strlen(u->base_url),
         pl = strlen(rq->path) + 1;
  size_t bytes = nh * sizeof(char *) + ml + bl + pl + rq->body_len;
  for (size_t i = 0; i < nh; i++) {
    const char *h = hdrs[i];
    if (strpbrk(h, "\r\n") || strchr(h, ':') == NULL) bad = 1;
    bytes += strlen(h) + 1;
  }
  /* the block's pointer array first: aligned as the call's end is */
  size_t head = BH__CALL_HEAD;
  int whole = !bad && bytes <= SIZE_MAX - head;
  bh__call *call = whole ? bh__call_mem_get(head, bytes) : NULL;
  if (call == NULL) {
    /* the call alone: the refusal below is reported through it */
    whole = 0;
    call = bh__call_mem_get(head, 0);
    if (call == NULL) return -ENOMEM;
  }
  call->cl = cl;
  call->u = u;
  call->cb = cb;
  call->cb_data = data;
  if (stream) {
    call->stream = *stream;
    call->has_stream = 1;
  }
  char *mem = whole ? (char *)call + head : NULL;
  if (mem) {
    call->headers = (char **)(void *)mem;
    char *p = mem + nh * sizeof(char *);
    for (size_t i = 0; i < nh; i++) {
      size_t l = strlen(hdrs[i]) + 1;
      memcpy(p, hdrs[i], l);
      call->headers[i] = p;
      p += l;
    }
    call->nheaders = nh;
    call->method = p;
    memcpy(p, rq->method, ml);
    p += ml;
    call->url = p;
    memcpy(p, u->base_url, bl);
    memcpy(p + bl, rq->path, pl);
    call->path = p + bl;
    p += bl + pl;
    if (rq->body_len) {
      call->body = p;
      memcpy(p, rq->body, rq->body_len);
    }
  }
  call->body_len = rq->body_len;
  bad |= mem == NULL;
  call->flags = rq->flags;
  if (rq->size >= offsetof(bh_upstream_request, timeout_ms) + sizeof(uint32_t))
    call->timeout_ms = rq->timeout_ms;
  call->retry_after = -1; /* buffers: zeroed, or kept (call_mem.c) */
  if (bad) {
    uv_timer_init(d->loop, &call->timer);
    call->timer.data = call;
    uv_close((uv_handle_t *)&call->timer, bh__call_free);
    return -EINVAL;
  }
  uv_timer_init(d->loop, &call->timer);
  call->timer.data = call;
  call->start_ms = bh__ms(cl);
  call->start_ns = bh__now_ns();
  if (req) {
    call->req = req;
    req->refs++;
    call->req_next = req->calls;
    req->calls = call;
    if (req->route) {
      uint64_t elapsed = (bh__now_ns() - req->start_ns) / 1000000;
      uint64_t limit = req->route->timeout_ms;
      call->deadline_ms =
          call->start_ms + (limit > elapsed ? limit - elapsed : 1);
    }
  }
  /* retries = N of the route or its mount ([plugin.NAME]) replaces the
   * upstream's: 0 leaves retrying to a client that retries itself */
  call->max_retries = u->retry.max_retries;
  if (req && req->route && req->route->retries >= 0)
    call->max_retries = (uint32_t)req->route->retries;
  call->next = cl->calls;
  if (cl->calls) cl->calls->prev = call;
  cl->calls = call;
  /* counted in this process's shard: no lock (policy/retry.h) */
  bh__retry_budget_request(u->budget, &u->retry, call->start_ms);
  bh__call_attempt(call);
  return 0;
}

void bh__calls_cancel(bh_req *req) {
  /* each finish may drop a reference: keep the request until the end */
  req->refs++;
  while (req->calls) {
    bh__call *call = req->calls;
    call->outcome = BH_OUTCOME_CANCELED;
    call->transport = 0;
    bh__call_finish(call);
  }
  bh__req_unref(req);
}
