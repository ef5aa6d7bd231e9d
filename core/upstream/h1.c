/*
 * The core's own HTTP/1.1 client for http:// upstreams, on the worker's
 * loop: requests serialized here, answers parsed with llhttp in response
 * mode (strict), keep-alive connections pooled per upstream (h1_pool.c's
 * half: idle list, cap, waiters, the resolver cache). https:// and
 * `transport = curl` upstreams stay on libcurl (client.c). An attempt ends
 * in bh__attempt_done with the CURLcode libcurl would have given, so
 * retries, breakers and error maps see the same outcomes on both.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/h1.h"

#define BH__H1_RBUF 65536

/* ---------------------------------------------------------------------- */
/* Parser callbacks                                                        */
/* ---------------------------------------------------------------------- */

static int bh__h1_on_status(llhttp_t *p, const char *at, size_t len) {
  bh__h1conn *c = p->data;
  return bh__buf_append(&c->val, at, len) ? -1 : 0;
}

/* The status line through the same check as libcurl's lines had
 * (bh__upstream_head_line): it also starts a new head after a 1xx. */
static int bh__h1_on_status_complete(llhttp_t *p) {
  bh__h1conn *c = p->data;
  bh__call *call = c->call;
  if (call == NULL) return -1;
  /* llhttp takes exactly three digits: the line by hand, no printf */
  unsigned sc = (unsigned)p->status_code % 1000;
  char st[12] = {'H',
                 'T',
                 'T',
                 'P',
                 '/',
                 '1',
                 '.',
                 '1',
                 ' ',
                 (char)('0' + sc / 100),
                 (char)('0' + sc / 10 % 10),
                 (char)('0' + sc % 10)};
  bh__buf_reset(&c->line);
  bh__buf_append(&c->line, st, sizeof(st));
  if (c->val.len) {
    bh__buf_putc(&c->line, ' ');
    bh__buf_append(&c->line, c->val.data, c->val.len);
  }
  bh__buf_reset(&c->val);
  if (bh__buf_failed(&c->line)) return -1;
  if (bh__upstream_head_line(&call->resp_headers, c->line.data, c->line.len)) {
    call->malformed = 1;
    return -1;
  }
  return 0;
}

static int bh__h1_on_field(llhttp_t *p, const char *at, size_t len) {
  bh__h1conn *c = p->data;
  return bh__buf_append(&c->name, at, len) ? -1 : 0;
}

static int bh__h1_on_value(llhttp_t *p, const char *at, size_t len) {
  bh__h1conn *c = p->data;
  /* one value comes in one span unless a read ends inside it: a second
   * span that does not start a read is an obs-fold continuation, which
   * llhttp joins but we refuse (RFC 9112 5.2), as libcurl's lines were */
  if (c->in_value && (at != c->exec_start || c->prev_fold)) {
    if (c->call) c->call->malformed = 1;
    return -1;
  }
  c->in_value = 1;
  return bh__buf_append(&c->val, at, len) ? -1 : 0;
}

static int bh__h1_on_value_complete(llhttp_t *p) {
  bh__h1conn *c = p->data;
  bh__call *call = c->call;
  if (call == NULL) return -1;
  if (bh__buf_failed(&c->name) || bh__buf_failed(&c->val)) return -1;
  int rc = bh__upstream_head_field(
      &call->resp_headers, c->name.data ? c->name.data : "", c->name.len,
      c->val.data ? c->val.data : "", c->val.len);
  bh__buf_reset(&c->name);
  bh__buf_reset(&c->val);
  c->in_value = 0;
  if (rc == -EPROTO) call->malformed = 1;
  return rc ? -1 : 0;
}

static int bh__h1_on_headers_complete(llhttp_t *p) {
  bh__h1conn *c = p->data;
  bh__call *call = c->call;
  if (call == NULL) return -1;
  int st = p->status_code;
  /* we never ask for an upgrade: a 101 is not an answer we can relay, and
   * llhttp would hand the rest of the stream over as another protocol */
  if (st == 101) {
    call->malformed = 1;
    return -1;
  }
  if (st >= 100 && st < 200) {
    /* an interim answer (100, 103...): llhttp completes it as a message of
     * its own and parses the next one; its fields are forgotten */
    c->interim = 1;
    return 0;
  }
  call->h1_status = st;
  /* the parser cannot know the method: an answer to HEAD has no body
   * whatever its Content-Length says. Nor has a 204 or 304 (llhttp 8 reads
   * a body of Content-Length after them): bytes that follow are stray and
   * keep the connection out of the pool */
  if (st == 204 || st == 304 || strcmp(call->method, "HEAD") == 0) return 1;
  return 0;
}

static int bh__h1_on_body(llhttp_t *p, const char *at, size_t len) {
  bh__h1conn *c = p->data;
  bh__call *call = c->call;
  if (call == NULL) return -1;
  /* as on libcurl's path: the stream's head hook runs at the first body
   * byte, so a bodiless answer is delivered whole */
  if (call->has_stream && !c->stream_head) {
    c->stream_head = 1;
    call->status = call->h1_status;
    if (call->stream.on_head(call, call->h1_status, call->stream.data))
      call->streaming = 1;
    if (c->call == NULL) return -1; /* the call ended inside the hook */
  }
  if (call->streaming) {
    int more = call->stream.on_data(call, at, len, call->stream.data);
    if (c->call == NULL) return -1;
    if (more < 0) {
      call->aborted = 1;
      c->err = CURLE_WRITE_ERROR;
      return -1;
    }
    /* the bytes were taken; stop reading until bh__h1_resume */
    if (more) c->want_pause = 1;
    return 0;
  }
  if (call->resp.len + len > call->u->max_response_bytes ||
      bh__buf_append(&call->resp, at, len)) {
    c->err = CURLE_WRITE_ERROR;
    return -1;
  }
  return 0;
}

static int bh__h1_on_message_complete(llhttp_t *p) {
  bh__h1conn *c = p->data;
  if (c->call == NULL) return -1;
  if (c->interim) {
    c->interim = 0;
    bh__buf_reset(&c->call->resp_headers);
    return 0;
  }
  c->done = 1;
  /* stop here: whatever follows in this read is not part of the answer */
  return HPE_PAUSED;
}

static llhttp_settings_t bh__h1_settings;

static void bh__h1_settings_init(void) {
  static int done;
  if (done) return;
  llhttp_settings_init(&bh__h1_settings);
  bh__h1_settings.on_status = bh__h1_on_status;
  bh__h1_settings.on_status_complete = bh__h1_on_status_complete;
  bh__h1_settings.on_header_field = bh__h1_on_field;
  bh__h1_settings.on_header_value = bh__h1_on_value;
  bh__h1_settings.on_header_value_complete = bh__h1_on_value_complete;
  bh__h1_settings.on_headers_complete = bh__h1_on_headers_complete;
  bh__h1_settings.on_body = bh__h1_on_body;
  bh__h1_settings.on_message_complete = bh__h1_on_message_complete;
  done = 1;
}

/* ---------------------------------------------------------------------- */
/* The request                                                             */
/* ---------------------------------------------------------------------- */

/* Names whose lines are ours to write (framing, the connection's own
 * headers): a caller's copy never goes out. */
static int bh__h1_ours(const char *h, size_t n) {
  /* every caller line comes through here: picked by length, then the
   * first byte, at most three names compared (a loop over the nine was
   * ~45 instructions a line) */
#define BH__IS(lit) ((h[0] | 0x20) == lit[0] && strncasecmp(h, lit, n) == 0)
  switch (n) {
  case 2: return BH__IS("te");
  case 6: return BH__IS("expect");
  case 7: return BH__IS("trailer") || BH__IS("upgrade");
  case 10:
    return BH__IS("connection") || BH__IS("keep-alive") ||
           bh__attempt_ours(h, n);
  case 11: return bh__attempt_ours(h, n); /* traceparent; tracestate: 10 */
  case 14: return BH__IS("content-length");
  case 16: return BH__IS("proxy-connection");
  case 17: return BH__IS("transfer-encoding");
  default: return 0;
  }
#undef BH__IS
}

/* One caller header line, unless it is ours or empty ("Name:" asked
 * libcurl to leave a header out; here there is nothing to leave out). */
static void bh__h1_put_line(bh__buf *b, const char *h) {
  const char *colon = strchr(h, ':');
  if (colon == NULL || bh__h1_ours(h, (size_t)(colon - h))) return;
  const char *v = colon + 1;
  while (*v == ' ' || *v == '\t')
    v++;
  if (*v == '\0') return;
  size_t vl = strlen(v);
  bh__buf_append(b, h, (size_t)(v - h) + vl);
  bh__buf_append(b, "\r\n", 2);
}

static int bh__h1_has_host(char **lines, size_t n) {
  /* the first byte before the call: ~45 instructions a line otherwise */
  for (size_t i = 0; i < n; i++)
    if ((lines[i][0] | 0x20) == 'h' && strncasecmp(lines[i], "host:", 5) == 0)
      return 1;
  return 0;
}

static void bh__h1_write_cb(uv_write_t *w, int status);

/* Serializes the call's request and writes it. */
static void bh__h1_send(bh__h1conn *c) {
  bh__call *call = c->call;
  struct bh_upstream *u = call->u;
  bh__h1pool *pool = c->pool;
  bh__buf *b = &c->head;
  uint64_t now = bh__ms(call->cl);
  bh__buf_reset(b);
  bh__buf_puts(b, call->method);
  bh__buf_putc(b, ' ');
  bh__buf_puts(b, pool->prefix);
  bh__buf_puts(b, call->path);
  bh__buf_append(b, " HTTP/1.1\r\n", 11);
  /* a Host line of the caller's replaces ours, as it did on libcurl */
  if (!bh__h1_has_host(u->headers, u->nheaders) &&
      !bh__h1_has_host(call->headers, call->nheaders)) {
    bh__buf_append(b, "Host: ", 6);
    bh__buf_puts(b, pool->authority);
    bh__buf_append(b, "\r\n", 2);
  }
  for (size_t i = 0; i < u->nheaders; i++)
    bh__h1_put_line(b, u->headers[i]);
  for (size_t i = 0; i < call->nheaders; i++)
    bh__h1_put_line(b, call->headers[i]);
  bh__extra x;
  bh__attempt_extra(call, now, &x);
  const char *ours[] = {x.id, x.timeout, x.traceparent, x.tracestate};
  for (size_t i = 0; i < 4; i++) {
    if (ours[i][0] == '\0') continue;
    bh__buf_puts(b, ours[i]);
    bh__buf_append(b, "\r\n", 2);
  }
  /* the length of what the caller gave, GET or not; POST, PUT and PATCH
   * say 0 when empty. A streamed body: the client's framing */
  int streamed = call->has_stream && call->stream.body_stream;
  if (streamed && call->stream.body_length < 0) {
    bh__buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
  } else if (streamed) {
    bh__buf_append(b, "Content-Length: ", 16);
    bh__buf_u64(b, (uint64_t)call->stream.body_length);
    bh__buf_append(b, "\r\n", 2);
  } else if (call->body_len || strcmp(call->method, "POST") == 0 ||
             strcmp(call->method, "PUT") == 0 ||
             strcmp(call->method, "PATCH") == 0) {
    bh__buf_append(b, "Content-Length: ", 16);
    bh__buf_u64(b, call->body_len);
    bh__buf_append(b, "\r\n", 2);
  }
  bh__buf_append(b, "\r\n", 2);
  if (bh__buf_failed(b)) {
    bh__h1_fail(c, CURLE_OUT_OF_MEMORY);
    return;
  }
  uv_buf_t bufs[2] = {uv_buf_init(b->data, (unsigned)b->len),
                      uv_buf_init(call->body, (unsigned)call->body_len)};
  llhttp_init(&c->parser, HTTP_RESPONSE, &bh__h1_settings);
  c->parser.data = c;
  c->done = c->interim = c->stream_head = c->got_bytes = c->want_pause = 0;
  c->in_value = c->prev_fold = 0;
  c->body_ready = c->body_open = 0;
  c->err = CURLE_OK;
  bh__buf_reset(&c->name);
  bh__buf_reset(&c->val);
  unsigned nb = call->body_len ? 2 : 1;
  /* Written at once when the socket takes it (nearly always: a request
   * head is small): a queued uv_write costs an epoll_ctl per request, when
   * libuv drops the write watch again. Only what it refuses is queued; an
   * error is left to uv_write to report, as before. */
  int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
  if (n > 0) {
    size_t left = (size_t)n;
    unsigned i = 0;
    while (i < nb && left >= bufs[i].len)
      left -= bufs[i++].len;
    if (i == nb) goto sent;
    bufs[i].base += left;
    bufs[i].len -= left;
    if (i) bufs[0] = bufs[1];
    nb -= i;
  }
  c->writing = 1;
  c->wreq.data = c;
  int rc =
      uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nb, bh__h1_write_cb);
  if (rc) {
    c->writing = 0;
    bh__h1_broken(c);
    return;
  }
sent:
  /* the head is out (or queued ahead of it): a streamed body follows */
  if (streamed) bh__h1_body_ready(c);
}

static void bh__h1_write_cb(uv_write_t *w, int status) {
  bh__h1conn *c = w->data;
  c->writing = 0;
  if (status < 0 && !c->closing && c->call) bh__h1_broken(c);
}

/* ---------------------------------------------------------------------- */
/* Reading the answer                                                      */
/* ---------------------------------------------------------------------- */

static void bh__h1_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  bh__h1conn *c = h->data;
  (void)hint;
  if (c->rbuf == NULL) c->rbuf = malloc(BH__H1_RBUF);
  *b = uv_buf_init(c->rbuf, c->rbuf ? BH__H1_RBUF : 0);
}

static void bh__h1_success(bh__h1conn *c, int keep) {
  bh__call *call = c->call;
  c->call = NULL;
  call->h1 = NULL;
  bh__ltimer_stop(&c->timer);
  if (keep)
    bh__h1_pool_put(c);
  else
    bh__h1_conn_close(c);
  bh__attempt_done(call, CURLE_OK);
}

static void bh__h1_on_eof(bh__h1conn *c, ssize_t n) {
  if (!c->got_bytes) {
    /* closed or reset before any byte of an answer */
    bh__h1_broken(c);
    return;
  }
  if (n != UV_EOF) {
    bh__h1_fail(c, CURLE_RECV_ERROR);
    return;
  }
  /* a body delimited by the close ends here; anything else mid-message is
   * a truncated answer (HPE_INVALID_EOF_STATE) */
  c->in_exec = 1;
  llhttp_errno_t e = llhttp_finish(&c->parser);
  c->in_exec = 0;
  if (c->call == NULL) {
    bh__h1_conn_close(c);
    return;
  }
  if ((e == HPE_OK || e == HPE_PAUSED) && c->done) {
    bh__h1_success(c, 0);
    return;
  }
  if (c->err == CURLE_OK)
    c->err = e == HPE_INVALID_EOF_STATE || e == HPE_OK
                 ? CURLE_PARTIAL_FILE
                 : CURLE_WEIRD_SERVER_REPLY;
  bh__h1_fail(c, c->err);
}

static void bh__h1_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  bh__h1conn *c = s->data;
  if (c->closing) return;
  if (c->call == NULL) {
    /* idle: the upstream closed it, reset it or sent something unasked;
     * either way it can carry nothing more */
    if (n != 0) bh__h1_conn_close(c);
    return;
  }
  if (n == 0) return;
  if (n < 0) {
    bh__h1_on_eof(c, n);
    return;
  }
  c->got_bytes = 1;
  c->in_exec = 1;
  c->exec_start = b->base;
  llhttp_errno_t e = llhttp_execute(&c->parser, b->base, (size_t)n);
  c->in_exec = 0;
  /* a read ending in a line break (and blanks): a value continued in the
   * next read is a fold */
  {
    ssize_t i = n;
    while (i > 0 && (b->base[i - 1] == ' ' || b->base[i - 1] == '\t'))
      i--;
    c->prev_fold = i > 0 && b->base[i - 1] == '\n';
  }
  if (c->call == NULL) {
    /* the call ended inside a hook (its client left) */
    bh__h1_conn_close(c);
    return;
  }
  if (e == HPE_OK) {
    if (c->want_pause) {
      c->want_pause = 0;
      c->read_paused = 1;
      uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return;
  }
  if (e == HPE_PAUSED && c->done) {
    /* pooled only when nothing followed the answer (stray bytes after a
     * 204/304 or a short length would be read as the next answer) and
     * both sides keep it open */
    const char *pos = llhttp_get_error_pos(&c->parser);
    int keep = pos == b->base + n && llhttp_should_keep_alive(&c->parser) &&
               !c->writing && /* an early answer: our request is not */
               !c->body_open; /* all out */
    bh__h1_success(c, keep);
    return;
  }
  /* refused: a malformed head, CL with TE, two lengths, a 101... */
  if (c->err == CURLE_OK) {
    c->err = CURLE_WEIRD_SERVER_REPLY;
    if (e != HPE_USER || c->call->malformed) c->call->malformed = 1;
  }
  bh__h1_fail(c, c->err);
}

void bh__h1_resume(bh__call *call) {
  bh__h1conn *c = call->h1;
  if (c && c->read_paused && !c->closing) {
    c->read_paused = 0;
    uv_read_start((uv_stream_t *)&c->tcp, bh__h1_alloc, bh__h1_read_cb);
  }
}

/* Starts the call's request on connection c (fresh or from the pool). */
void bh__h1_assign(bh__h1conn *c, bh__call *call) {
  c->call = call;
  call->h1 = c;
  c->read_paused = 0;
  uint64_t now = bh__ms(call->cl);
  uint64_t left = call->h1_deadline > now ? call->h1_deadline - now : 1;
  bh__ltimer_start(&c->timer, bh__h1_timeout, left);
  if (c->connected) {
    uv_read_start((uv_stream_t *)&c->tcp, bh__h1_alloc, bh__h1_read_cb);
    bh__h1_send(c);
  }
}

void bh__h1_connected(bh__h1conn *c) {
  c->connected = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  bh__call *call = c->call;
  uint64_t now = bh__ms(call->cl);
  uint64_t left = call->h1_deadline > now ? call->h1_deadline - now : 1;
  bh__ltimer_start(&c->timer, bh__h1_timeout, left);
  uv_read_start((uv_stream_t *)&c->tcp, bh__h1_alloc, bh__h1_read_cb);
  bh__h1_send(c);
}

void bh__h1_settings_ready(void) {
  bh__h1_settings_init();
}
