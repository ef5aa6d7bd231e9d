/*
 * Streamed request bodies on the core's own client: the proxy hands the
 * client's body over piece by piece as it is read (bh__call_body_write),
 * framed as the client framed it (the length it announced, or chunks),
 * and stops reading the client while more than BH__H1_BODY_HIGH bytes
 * wait in the upstream socket's queue; on_writable tells it to go on.
 *
 * Bytes given while no attempt can take them (the connection is still
 * opening) are held until its head is out. Once a body byte is queued on a
 * connection the call is never retried nor re-sent: nothing keeps the
 * bytes that went.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/h1.h"

/* What may wait in the upstream socket's write queue before the client's
 * reading stops: a few read buffers, so the pipe stays full. */
#define BH__H1_BODY_HIGH (256u << 10)

typedef struct bh__h1wr {
  uv_write_t req;
  bh__h1conn *c;
} bh__h1wr;

int bh__upstream_streams_body(struct bh_upstream *u) {
  return bh__h1_usable(u);
}

static size_t bh__h1_queued(bh__h1conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void bh__h1_body_written(uv_write_t *w, int status) {
  bh__h1wr *wr = w->data;
  bh__h1conn *c = wr->c;
  free(wr);
  if (c->closing || c->call == NULL) return;
  if (status < 0) {
    bh__h1_broken(c);
    return;
  }
  bh__call *call = c->call;
  if (call->body_want && bh__h1_queued(c) <= BH__H1_BODY_HIGH / 2) {
    call->body_want = 0;
    call->stream.on_writable(call, call->stream.data);
  }
}

/* One write of len bytes of data (its chunk's frame around it when
 * chunked; just the last chunk when data is NULL). 0 or -errno. */
static int bh__h1_body_put(bh__h1conn *c, const char *data, size_t len) {
  bh__call *call = c->call;
  int chunked = call->stream.body_length < 0;
  bh__h1wr *wr = malloc(sizeof(*wr) + len + 32);
  if (wr == NULL) return -ENOMEM;
  char *o = (char *)(wr + 1), *p = o;
  if (chunked && data) {
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    size_t i = sizeof(digits), v = len;
    do {
      digits[--i] = hex[v & 15];
      v >>= 4;
    } while (v);
    memcpy(p, digits + i, sizeof(digits) - i);
    p += sizeof(digits) - i;
    *p++ = '\r';
    *p++ = '\n';
  }
  if (data) {
    memcpy(p, data, len);
    p += len;
    if (chunked) {
      *p++ = '\r';
      *p++ = '\n';
    }
  } else if (chunked) {
    memcpy(p, "0\r\n\r\n", 5);
    p += 5;
  }
  if (p == o) {
    free(wr);
    return 0;
  }
  wr->c = c;
  wr->req.data = wr;
  uv_buf_t b = uv_buf_init(o, (unsigned)(p - o));
  int rc =
      uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, bh__h1_body_written);
  if (rc) {
    free(wr);
    return rc;
  }
  if (data) {
    call->body_sent += len;
    /* from here the body cannot be sent again */
    call->flags |= BH_CALL_NO_RETRY;
  }
  return 0;
}

static int bh__h1_body_last(bh__h1conn *c) {
  c->body_open = 0;
  return bh__h1_body_put(c, NULL, 0);
}

int bh__call_body_write(bh__call *call, const char *buf, size_t len) {
  bh__h1conn *c = call->h1;
  if (len == 0) return 0;
  if (c == NULL || !c->body_ready || c->closing) {
    /* no connection is ready for it (yet): held, and no more until one is */
    if (bh__buf_append(&call->body_held, buf, len)) return -ENOMEM;
    call->body_want = 1;
    return 1;
  }
  int rc = bh__h1_body_put(c, buf, len);
  if (rc) {
    bh__h1_broken(c);
    return rc;
  }
  if (bh__h1_queued(c) > BH__H1_BODY_HIGH) {
    call->body_want = 1;
    return 1;
  }
  return 0;
}

void bh__call_body_end(bh__call *call) {
  call->body_ended = 1;
  bh__h1conn *c = call->h1;
  if (c == NULL || !c->body_ready || c->closing || !c->body_open) return;
  if (bh__h1_body_last(c)) bh__h1_broken(c);
}

void bh__h1_body_ready(bh__h1conn *c) {
  bh__call *call = c->call;
  c->body_ready = c->body_open = 1;
  if (call->body_held.len) {
    int rc = bh__h1_body_put(c, call->body_held.data, call->body_held.len);
    bh__buf_free(&call->body_held);
    if (rc) {
      bh__h1_broken(c);
      return;
    }
  }
  if (call->body_ended) {
    if (bh__h1_body_last(c)) bh__h1_broken(c);
    return;
  }
  if (bh__h1_queued(c) > BH__H1_BODY_HIGH) {
    call->body_want = 1;
    return;
  }
  call->body_want = 0;
  call->stream.on_writable(call, call->stream.data);
}
