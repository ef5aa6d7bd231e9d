/*
 * Parsing a request (parse.c): the llhttp callbacks that collect the head
 * within max_header_bytes, check its framing and the headers that must
 * not appear twice, hand it to the listener's on_head hook and collect the
 * body; and the obs-fold detector llhttp lacks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "config/config.h"
#include "http/conn.h"
#include "http/http.h"
#include "identity/auth-t.h"
#include "proc/daemon-t.h"

#define BH__MAX_HEADERS 100
/* Bodies of a known length up to this are read whole even where bodies
 * stream (see bh__body_sink). */
#define BH__STREAM_BODY_MIN (64u << 10)

/* ---------------------------------------------------------------------- */
/* llhttp callbacks                                                        */
/* ---------------------------------------------------------------------- */

static int bh__head_grow(bh__conn *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > c->d->cfg->max_header_bytes) {
    c->early_code = "request.headers_too_large";
    return HPE_USER;
  }
  return 0;
}

static int bh__on_message_begin(llhttp_t *p) {
  bh__conn *c = p->data;
  bh_req *req = bh__req_new();
  if (req == NULL) {
    c->early_code = "generic.internal";
    return HPE_USER;
  }
  req->svc = c->d->svc;
  req->d = c->d;
  req->conn = c;
  req->refs = 1;
  req->start_ns = bh__now_ns();
  memcpy(req->client_addr, c->client_addr, sizeof(req->client_addr));
  memcpy(req->peer_addr, c->client_addr, sizeof(req->peer_addr));
  /* its buffers are empty: new, or kept with their room (bh__req_new) */
  c->req = req;
  c->head_bytes = 0;
  c->field_len = 0;
  c->state = BH__CONN_HEADERS;
  bh__conn_timer(c, c->d->cfg->header_timeout_ms);
  return 0;
}

static int bh__on_url(llhttp_t *p, const char *at, size_t n) {
  bh__conn *c = p->data;
  if (bh__head_grow(c, n)) return HPE_USER;
  c->req->url_len += n;
  return bh__buf_append(&c->req->raw, at, n) ? HPE_USER : 0;
}

static int bh__on_header_field(llhttp_t *p, const char *at, size_t n) {
  bh__conn *c = p->data;
  bh_req *req = c->req;
  /* chunked trailer fields come after the head was parsed: they are not
   * exposed (nothing may depend on them), only counted */
  if (req->headers_done) {
    c->field_len += n;
    return bh__head_grow(c, n + 4);
  }
  if (bh__head_grow(c, n + (req->in_value ? 4 : 0))) return HPE_USER;
  if (req->in_value || req->nheaders == 0) {
    /* a new header starts: terminate the url or the previous value */
    if (req->nheaders >= BH__MAX_HEADERS) {
      c->early_code = "request.headers_too_large";
      return HPE_USER;
    }
    bh__buf_putc(&req->raw, '\0');
    req->nheaders++;
    req->in_value = 0;
  }
  c->field_len += n;
  /* copied in one piece and lower-cased in place: a room check per byte
   * was ~25 instructions a byte (a 13-byte Authorization ~350) */
  size_t at0 = req->raw.len;
  if (bh__buf_append(&req->raw, at, n)) return HPE_USER;
  char *s = req->raw.data + at0;
  for (size_t i = 0; i < n; i++)
    s[i] = (char)(s[i] + ((unsigned char)(s[i] - 'A') < 26u ? 32 : 0));
  return 0;
}

/* RFC 9112 5.1: a field name is a token, so never empty. llhttp 8.1.0
 * accepts ": value" and ":" in the head and in chunked trailers. */
static int bh__on_header_field_complete(llhttp_t *p) {
  bh__conn *c = p->data;
  size_t n = c->field_len;
  c->field_len = 0;
  if (n == 0) {
    c->early_code = "request.bad_request";
    return HPE_USER;
  }
  return 0;
}

/* Chunk extensions mean nothing to us but cost parsing time: they share
 * the head's byte budget (max_header_bytes) with the head and trailers. */
static int bh__on_chunk_ext(llhttp_t *p, const char *at, size_t n) {
  bh__conn *c = p->data;
  (void)at;
  c->head_bytes += n;
  if (c->head_bytes > c->d->cfg->max_header_bytes) {
    c->early_code = "request.bad_request";
    return HPE_USER;
  }
  return 0;
}

static int bh__on_header_value(llhttp_t *p, const char *at, size_t n) {
  bh__conn *c = p->data;
  bh_req *req = c->req;
  if (req->headers_done) return bh__head_grow(c, n);
  if (bh__head_grow(c, n)) return HPE_USER;
  if (!req->in_value) {
    bh__buf_putc(&req->raw, '\0');
    req->in_value = 1;
  }
  return bh__buf_append(&req->raw, at, n) ? HPE_USER : 0;
}

/* Splits req->raw ("url\0name\0value\0...") into the header array. */
static int bh__headers_finish(bh_req *req) {
  if (req->nheaders > 0 && !req->in_value) bh__buf_putc(&req->raw, '\0');
  bh__buf_putc(&req->raw, '\0');
  if (bh__buf_failed(&req->raw)) return -ENOMEM;
  if (req->nheaders) {
    if (bh__req_headers_alloc(req, req->nheaders) != 0) return -ENOMEM;
  }
  const char *s = req->raw.data + req->url_len + 1;
  for (size_t i = 0; i < req->nheaders; i++) {
    req->headers[i].name = s;
    s += strlen(s) + 1;
    /* llhttp leaves trailing whitespace in values (OWS) */
    char *v = (char *)s;
    size_t vl = strlen(v);
    s += vl + 1;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
      v[--vl] = '\0';
    req->headers[i].value = v;
  }
  return 0;
}

static int bh__on_headers_complete(llhttp_t *p) {
  bh__conn *c = p->data;
  bh_req *req = c->req;
  req->headers_done = 1;
  if (bh__headers_finish(req) != 0) {
    c->early_code = "generic.internal";
    return HPE_USER;
  }
  req->method = llhttp_method_name(llhttp_get_method(p));
  req->is_head = llhttp_get_method(p) == HTTP_HEAD;
  if (llhttp_get_upgrade(p)) {
    /* no upgrades (websocket, h2c) through this front */
    c->early_code = "request.bad_request";
    return HPE_USER;
  }
  /* RFC 9112 3.2: an HTTP/1.1 request needs exactly one Host; two hosts
   * are how routing confusion between hops starts. The same goes for the
   * headers that decide who the caller is and how its body is read: with
   * two copies, the core, a plugin and an upstream may each read another.
   * Names are lower-cased; the first byte keeps this to one compare for
   * most headers. */
  const struct bh__auth_conf *ac = c->d->cfg->auth;
  const char *keyh =
      ac && ac->api_key_header ? ac->api_key_header : "x-api-key";
  unsigned seen = 0, dup = 0;
  int te = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const char *n = req->headers[i].name;
    unsigned bit = 0;
    switch (n[0]) {
    case 'h': bit = strcmp(n, "host") == 0 ? 1u : 0u; break;
    case 'a': bit = strcmp(n, "authorization") == 0 ? 2u : 0u; break;
    case 'o': bit = strcmp(n, "origin") == 0 ? 4u : 0u; break;
    case 'c': bit = strcmp(n, "content-type") == 0 ? 8u : 0u; break;
    case 't': te |= strcmp(n, "transfer-encoding") == 0; break;
    /* the default API-key name too: not every reader of it follows
     * [auth] api_key_header */
    case 'x': bit = strcmp(n, "x-api-key") == 0 ? 16u : 0u; break;
    default: break;
    }
    if (bit == 0 && n[0] == keyh[0] && strcmp(n, keyh) == 0) bit = 32u;
    dup |= seen & bit;
    seen |= bit;
  }
  int http11 = p->http_major == 1 && p->http_minor == 1;
  /* RFC 9112 6.1: Transfer-Encoding from an HTTP/1.0 client is faulty
   * framing (1.0 has no chunked coding; a hop may read the body by
   * Content-Length or until close instead) */
  if (dup || (!(seen & 1u) && http11) || (te && !http11)) {
    c->early_code = "request.bad_request";
    return HPE_USER;
  }
  c->state = BH__CONN_BODY;
  bh__conn_timer(c, c->d->cfg->body_timeout_ms);
  if (c->listener->hooks->on_head(req) != 0) {
    c->early_code = req->code ? req->code : "request.bad_request";
    return HPE_USER;
  }
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > req->body_limit) {
    c->early_code = "request.too_large";
    return HPE_USER;
  }
  if (req->expect_continue && p->content_length > 0) {
    /* in order with any answer still queued, and whole even when the
     * socket takes only part of it now */
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    bh__conn_write(c, cont, sizeof(cont) - 1);
  }
  /* a body to stream: the request is served from here (http.c), and the
   * body is parsed on once its sink is ready. A short body of known length
   * is read whole as before: it stays ours, so its call may be retried */
  int chunked = (p->flags & F_CHUNKED) != 0;
  if (req->body_stream &&
      (chunked || ((p->flags & F_CONTENT_LENGTH) &&
                   p->content_length > BH__STREAM_BODY_MIN))) {
    req->body_open = 1;
    req->body_length = chunked ? -1 : (long long)p->content_length;
    c->body_dispatch = 1;
    return HPE_PAUSED;
  }
  return 0;
}

static int bh__on_body(llhttp_t *p, const char *at, size_t n) {
  bh__conn *c = p->data;
  bh_req *req = c->req;
  if (req->body_open) {
    /* a chunked body learns its size as it goes: past the limit it ends
     * here, whatever went upstream already */
    req->body_seen += n;
    if (req->body_seen > req->body_limit) {
      c->early_code = "request.too_large";
      return HPE_USER;
    }
    const bh__body_sink *s = req->body_sink;
    if (s && s->on_data(req, at, n, req->body_sink_data) > 0) c->body_pause = 1;
    return 0;
  }
  if (req->body.len + n > req->body_limit) {
    c->early_code = "request.too_large";
    return HPE_USER;
  }
  return bh__buf_append(&req->body, at, n) ? HPE_USER : 0;
}

static int bh__on_message_complete(llhttp_t *p) {
  bh__conn *c = p->data;
  c->keep_alive = llhttp_should_keep_alive(p);
  c->message_done = 1;
  /* stop here: the next pipelined request waits for this answer */
  return HPE_PAUSED;
}

void bh__http_settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_message_begin = bh__on_message_begin;
  s->on_url = bh__on_url;
  s->on_header_field = bh__on_header_field;
  s->on_header_value = bh__on_header_value;
  s->on_header_field_complete = bh__on_header_field_complete;
  s->on_chunk_extension_name = bh__on_chunk_ext;
  s->on_chunk_extension_value = bh__on_chunk_ext;
  s->on_headers_complete = bh__on_headers_complete;
  s->on_body = bh__on_body;
  s->on_message_complete = bh__on_message_complete;
}

/* ---------------------------------------------------------------------- */
/* obs-fold detection                                                      */
/* ---------------------------------------------------------------------- */

/* llhttp 8.1.0 accepts obs-folded header lines (CVE-2023-30589 era), and
 * its callbacks cannot tell a fold from a value split across reads, so the
 * raw head bytes are scanned here: a line that starts with SP or HT inside
 * the head is refused. The scan starts at each message start (connection
 * start, or where the parser paused) and stops at the empty line. */
int bh__fold_scan(bh__conn *c, const char *data, size_t len) {
  int st = c->fold_state;
  for (size_t i = 0; i < len && st != BH__FOLD_DONE; i++) {
    if (st == BH__FOLD_LINE) {
      /* inside a line only its end matters: memchr, not a byte step */
      const char *nl = memchr(data + i, '\n', len - i);
      if (nl == NULL) break;
      i = (size_t)(nl - data);
      st = BH__FOLD_LINE_START;
      continue;
    }
    char ch = data[i];
    switch (st) {
    case BH__FOLD_START:
      if (ch != '\r' && ch != '\n') st = BH__FOLD_LINE;
      break;
    case BH__FOLD_LINE:
      if (ch == '\n') st = BH__FOLD_LINE_START;
      break;
    case BH__FOLD_LINE_START:
      if (ch == ' ' || ch == '\t') return -EPROTO;
      st = ch == '\r'   ? BH__FOLD_CR
           : ch == '\n' ? BH__FOLD_DONE
                        : BH__FOLD_LINE;
      break;
    case BH__FOLD_CR: st = ch == '\n' ? BH__FOLD_DONE : BH__FOLD_LINE; break;
    }
  }
  c->fold_state = st;
  return 0;
}
