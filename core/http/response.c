/*
 * Writing answers. Every response of the daemon — plugin bodies, Problem
 * JSON, admin documents — leaves through bh__respond(), and every error
 * through bh__respond_problem(), so headers, request ids and the access log
 * are the same everywhere.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/reqid.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "obs/telemetry.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

typedef struct bh__write {
  uv_write_t w;
  bh__conn *c;
  char *data;
} bh__write;

/* "Date: <IMF-fixdate>\r\n", formatted once per second rather than per
 * response. */
static const char *bh__date_line(size_t *len) {
  static char line[64];
  static size_t n;
  static time_t last;
  time_t now = time(NULL);
  if (now != last || n == 0) {
    struct tm tm;
    gmtime_r(&now, &tm);
    n = strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
                 &tm);
    last = now;
  }
  *len = n;
  return line;
}

/* "HTTP/1.1 <status> <reason>\r\nDate: ...\r\n", without printf. */
static void bh__status_lines(bh__buf *out, int status) {
  char st[16] = "HTTP/1.1 ";
  if (status < 100 || status > 999) {
    bh__buf_printf(out, "HTTP/1.1 %d %s\r\n", status,
                   bh__status_reason(status));
    size_t dl;
    const char *date = bh__date_line(&dl);
    bh__buf_append(out, date, dl);
    return;
  }
  st[9] = (char)('0' + status / 100);
  st[10] = (char)('0' + status / 10 % 10);
  st[11] = (char)('0' + status % 10);
  st[12] = ' ';
  bh__buf_append(out, st, 13);
  bh__buf_puts(out, bh__status_reason(status));
  bh__buf_append(out, "\r\n", 2);
  size_t dl;
  const char *date = bh__date_line(&dl);
  bh__buf_append(out, date, dl);
}

static void bh__on_write(uv_write_t *w, int status) {
  bh__write *wr = (bh__write *)w;
  bh__conn *c = wr->c;
  free(wr->data);
  free(wr);
  bh__conn_on_written(c, status);
}

static void bh__conn_queue(bh__conn *c, bh__buf *out, size_t n);

/* Sends what it can at once and queues the rest: most answers fit in the
 * socket buffer, which saves an allocation and a callback per request. */
/* Writes out now, or queues what the socket refuses (then out is taken).
 * 1 when every byte left at once: out is still the caller's. */
static int bh__conn_send_now(bh__conn *c, bh__buf *out) {
  uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
  int n = 0;
  if (c->writes_pending == 0) {
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      bh__buf_free(out);
      c->keep_alive = 0;
      c->close_after_write = 1;
      c->write_error = 1;
      return 0;
    }
    if (n < 0) n = 0;
  }
  if ((size_t)n == out->len) return 1;
  bh__conn_queue(c, out, (size_t)n);
  return 0;
}

/* An answer's output block after it left whole: back to the request as
 * its head_out (kept with the request, http/request.c), so the
 * next answer on the connection builds its head there; else freed. */
static void bh__stream_out_done(bh_req *req, bh__buf *out) {
  if (req->head_out.data == NULL && bh__buf_empty_keep(out)) {
    req->head_out = *out;
    bh__buf_init(out);
    return;
  }
  bh__buf_free(out);
}

static void bh__conn_send(bh__conn *c, bh__buf *out) {
  if (bh__conn_send_now(c, out)) bh__buf_free(out);
}

/* Queues out's bytes from offset n for a write (the ones before it are
 * sent); takes out. */
static void bh__conn_queue(bh__conn *c, bh__buf *out, size_t n) {
  uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
  bh__write *wr = malloc(sizeof(*wr));
  if (wr == NULL) {
    bh__buf_free(out);
    c->keep_alive = 0;
    c->close_after_write = 1;
    return;
  }
  wr->c = c;
  wr->data = bh__buf_steal(out, NULL);
  b = uv_buf_init(wr->data + n, (unsigned)(b.len - (size_t)n));
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, bh__on_write) != 0) {
    free(wr->data);
    free(wr);
    c->keep_alive = 0;
    c->close_after_write = 1;
    c->write_error = 1;
    return;
  }
  bh__conn_on_queued(c);
}

void bh__conn_write(bh__conn *c, const char *data, size_t len) {
  if (c->closed) return;
  bh__buf out;
  bh__buf_init(&out);
  if (bh__buf_append(&out, data, len) != 0) {
    bh__buf_free(&out);
    c->keep_alive = 0;
    return;
  }
  bh__conn_send(c, &out);
}

/* A section's answer: logged and counted as any request's, then handed to
 * its composite instead of a socket. */
static void bh__sink_answer(bh_req *req, const char *content_type,
                            const char *body, size_t len,
                            const char *core_headers) {
  if (req->id[0] == '\0')
    bh__reqid(bh__req_header(req, "x-request-id"), req->id, sizeof(req->id));
  if (!req->sink->quiet) bh__access_log(req);
  req->sink->on_answer(req, content_type, body, len, core_headers);
}

void bh__respond(bh_req *req, int status, const char *content_type,
                 const char *body, size_t len, const char *extra_headers) {
  if (req->answered) return;
  req->answered = 1;
  req->status = status;
  if (req->sink) {
    bh__sink_answer(req, content_type ? content_type : "application/json", body,
                    len, extra_headers);
    return;
  }
  bh__conn *c = req->conn;
  if (c == NULL || c->closed) return;
  bh__req_ids(req);
  bh__daemon *d = req->d;
  int closing = bh__conn_last_answer(c);
  /* RFC 9110 6.4.1: 204 and 304 end at the head whatever the plugin gave;
   * a body would be read as the start of the next answer */
  int no_body = req->is_head || status == 204 || status == 304;

  /* built in the request's kept block (bh__stream_out_done) */
  bh__buf out = req->head_out;
  bh__buf_init(&req->head_out);
  out.len = 0;
  size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
  const char *ctype = content_type ? content_type : "application/json";
  size_t ctype_len = strlen(ctype);
  /* one allocation for the whole answer: the head's fixed lines take well
   * under 256 bytes besides what is counted here */
  bh__buf_grow(&out, 256 + ctype_len + extra_len + req->resp_headers.len +
                         req->cors.len + (no_body ? 0 : len));
  bh__status_lines(&out, status);
  if (status != 204 && status != 304) {
    bh__buf_append(&out, "Content-Type: ", 14);
    bh__buf_append(&out, ctype, ctype_len);
    bh__buf_append(&out, "\r\nContent-Length: ", 18);
    bh__buf_u64(&out, len);
    bh__buf_append(&out, "\r\n", 2);
  }
  bh__buf_append(&out, "X-Request-ID: ", 14);
  bh__buf_puts(&out, req->id);
  bh__buf_append(&out, "\r\n", 2);
  if (extra_len) bh__buf_append(&out, extra_headers, extra_len);
  if (req->resp_headers.len)
    bh__buf_append(&out, req->resp_headers.data, req->resp_headers.len);
  /* on every answer, Problems included: a browser hides from the page an
   * answer without them */
  if (req->cors.len) bh__buf_append(&out, req->cors.data, req->cors.len);
  if (closing)
    bh__buf_append(&out, "Connection: close\r\n", 19);
  else if (c->parser.http_minor == 0)
    bh__buf_append(&out, "Connection: keep-alive\r\n", 24);
  bh__buf_puts(&out, "\r\n");
  if (!no_body && len) bh__buf_append(&out, body, len);
  req->resp_body_bytes = no_body ? 0 : len;
  if (bh__buf_failed(&out)) {
    bh__buf_free(&out);
    c->keep_alive = 0;
    bh__conn_close_when_written(c);
    return;
  }
  if (closing) c->keep_alive = 0;
  /* Counted before the bytes leave: a client that scrapes /metrics right
   * after its answer must find its request there. */
  d->requests_total++;
  if (bh__shm_g) bh__shm_count_request();
  bh__access_log(req);
  if (bh__conn_send_now(c, &out)) bh__stream_out_done(req, &out);
  if (c->req == req) bh__conn_request_done(c);
  if (!c->keep_alive) bh__conn_close_when_written(c);
}

const bh__code *bh__code_find(bh__daemon *d, bh__plugin *p, const char *code) {
  const bh__code *cd = NULL;
  if (p) cd = bh__errmap_code(p, code);
  for (size_t i = 0; cd == NULL && i < d->nplugins; i++)
    cd = bh__errmap_code(&d->plugins[i], code);
  if (cd == NULL) cd = bh__problem_core_code(code);
  return cd;
}

void bh__respond_problem(bh_req *req, const char *code, const char *detail,
                         long retry_after, const bh__ext *ext, size_t next,
                         const bh__field_error *errs, size_t nerrs) {
  bh__problem pb = {.retry_after = retry_after,
                    .errors = errs,
                    .nerrors = nerrs,
                    .ext = ext,
                    .next = next};
  bh__respond_problem_pb(req, code, detail, &pb);
}

/* The constant parts of the Problems this process answers with their
 * catalogue detail (a breaker-open 503 per upstream and code, a rate-limit
 * 429...), encoded once: per request only the instance, the ids and
 * Retry-After are written. Matched by content, so nothing goes stale; a
 * Problem with a detail of its own (which may differ each time) is encoded
 * in full, so it cannot churn the entries out. Loop thread only. */
#define BH__PROBLEM_PRE 8
static bh__problem_pre bh__pre[BH__PROBLEM_PRE];
static unsigned bh__pre_next;

static void bh__problem_body(const bh__problem *pb, int flat, int constant,
                             bh__buf *out) {
  if (!constant) {
    bh__problem_encode(pb, flat, out);
    return;
  }
  for (int i = 0; i < BH__PROBLEM_PRE; i++)
    if (bh__problem_pre_match(&bh__pre[i], pb, flat)) {
      bh__problem_encode_pre(&bh__pre[i], pb, out);
      return;
    }
  bh__problem_pre *e = &bh__pre[bh__pre_next++ % BH__PROBLEM_PRE];
  if (bh__problem_pre_build(e, pb, flat) == 0)
    bh__problem_encode_pre(e, pb, out);
  else
    bh__problem_encode(pb, flat, out);
}

void bh__respond_problem_pb(bh_req *req, const char *code, const char *detail,
                            const bh__problem *extra) {
  bh__daemon *d = req->d;
  long retry_after = extra->retry_after;
  const bh__ext *ext = extra->ext;
  size_t next = extra->next;
  const char *members = extra->members;
  size_t nmembers = extra->nmembers;
  const bh__code *cd = bh__code_find(d, req->plugin, code);
  if (cd == NULL) {
    /* an unknown code is a plugin bug: the client still gets an honest
     * internal error, the details stay in the log */
    bh__logline l;
    bh__log_begin(&l, BH__ERROR, "unknown_code");
    bh__log_str(&l, "requestId", req->id);
    bh__log_str(&l, "code", code);
    if (req->plugin) bh__log_str(&l, "plugin", req->plugin->name);
    bh__log_end(&l);
    cd = bh__problem_core_code("generic.internal");
    detail = NULL;
    ext = NULL;
    next = 0;
    members = NULL;
    nmembers = 0;
  }
  bh__req_ids(req);
  bh__problem pb = {
      .status = cd->status,
      .code = cd->code,
      .title = cd->title,
      .detail = detail ? detail : cd->detail,
      .instance = req->path,
      .retryable = cd->retryable,
      .retry_after = retry_after,
      .request_id = req->id,
      .trace_id = req->trace.trace_id,
      .span_id = req->trace.span_id,
      .errors = extra->errors,
      .nerrors = extra->nerrors,
      .ext = ext,
      .next = next,
      .members = members,
      .nmembers = nmembers,
  };
  /* The body is built in a block this thread keeps (loop thread only);
   * an answer that leads to another Problem before this one is sent (a
   * composite's section answering its parent) uses a block of its own. */
  static bh__buf kept;
  static int kept_busy;
  int own = kept_busy;
  bh__buf body;
  if (own) {
    bh__buf_init(&body);
  } else {
    body = kept;
    body.len = 0;
    kept_busy = 1;
  }
  /* most Problems fit: one allocation instead of a grow */
  bh__buf_grow(&body, 511);
  bh__problem_body(&pb, d->cfg->problem_flat, pb.detail == cd->detail, &body);
  char hdr[64] = "Cache-Control: no-store\r\n";
  if (retry_after >= 0) {
    char num[24];
    size_t nl = sizeof(num);
    unsigned long long v = (unsigned long long)retry_after;
    do {
      num[--nl] = (char)('0' + v % 10);
      v /= 10;
    } while (v);
    size_t hl = sizeof("Cache-Control: no-store\r\n") - 1;
    memcpy(hdr + hl, "Retry-After: ", 13);
    memcpy(hdr + hl + 13, num + nl, sizeof(num) - nl);
    memcpy(hdr + hl + 13 + sizeof(num) - nl, "\r\n", 3);
  }
  req->code = cd->code;
  if (bh__buf_failed(&body)) {
    static const char fallback[] =
        "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
        "\"status\":500,\"extensions\":{\"code\":\"generic.internal\","
        "\"retryable\":false}}";
    req->code = "generic.internal";
    bh__respond(req, 500, "application/problem+json", fallback,
                sizeof(fallback) - 1, "Cache-Control: no-store\r\n");
  } else {
    bh__respond(req, cd->status, "application/problem+json", body.data,
                body.len, hdr);
  }
  if (own) {
    bh__buf_free(&body);
  } else {
    bh__buf_empty_keep(&body); /* freed when it grew large */
    kept = body;
  }
  if (!own) kept_busy = 0;
}

void bh__respond_code(bh_req *req, const char *code) {
  bh__respond_problem(req, code, NULL, -1, NULL, 0, NULL, 0);
}

/* ---------------------------------------------------------------------- */
/* Streamed answers (proxy, server-sent events)                            */
/* ---------------------------------------------------------------------- */

int bh__respond_head(bh_req *req, int status, const char *headers,
                     long long content_length) {
  if (req->answered) return -EALREADY;
  req->answered = 1;
  req->status = status;
  if (req->sink) {
    /* a section's streamed answer is gathered, then handed over whole */
    req->streaming = 1;
    bh__buf_reset(&req->head_out);
    bh__buf_reset(&req->sink_out);
    if (headers) bh__buf_puts(&req->head_out, headers);
    return bh__buf_failed(&req->head_out) ? -ENOMEM : 0;
  }
  bh__conn *c = req->conn;
  if (c == NULL || c->closed) return -ECONNRESET;
  bh__req_ids(req);
  int closing = bh__conn_last_answer(c);
  req->streaming = 1;
  req->no_body = req->is_head || status == 204 || status == 304;
  req->chunked = content_length < 0 && !req->no_body;
  /* The head is held back and leaves with the first body bytes (or at the
   * end): one write instead of two for a short answer. */
  bh__buf *out = &req->head_out;
  bh__buf_reset(out);
  size_t hlen = headers ? strlen(headers) : 0;
  bh__buf_grow(out, 256 + hlen + req->resp_headers.len + req->cors.len);
  bh__status_lines(out, status);
  bh__buf_append(out, "X-Request-ID: ", 14);
  bh__buf_puts(out, req->id);
  bh__buf_append(out, "\r\n", 2);
  if (hlen) bh__buf_append(out, headers, hlen);
  /* what the core added before the handler (cookies of a silent refresh) */
  if (req->resp_headers.len)
    bh__buf_append(out, req->resp_headers.data, req->resp_headers.len);
  if (req->cors.len) bh__buf_append(out, req->cors.data, req->cors.len);
  if (req->chunked)
    bh__buf_puts(out, "Transfer-Encoding: chunked\r\n");
  else if (content_length >= 0 && status != 204) {
    bh__buf_append(out, "Content-Length: ", 16);
    bh__buf_u64(out, (uint64_t)content_length);
    bh__buf_append(out, "\r\n", 2);
  }
  if (closing) {
    bh__buf_append(out, "Connection: close\r\n", 19);
    c->keep_alive = 0;
  }
  bh__buf_append(out, "\r\n", 2);
  if (bh__buf_failed(out)) {
    bh__buf_free(out);
    return -ENOMEM;
  }
  req->head_held = 1;
  return 0;
}

/* The output for `req`: its held-back head, if any, then what follows. */
static void bh__stream_out(bh_req *req, bh__buf *out) {
  if (req->head_held) {
    req->head_held = 0;
    *out = req->head_out;
    bh__buf_init(&req->head_out);
  } else {
    bh__buf_init(out);
  }
}

/* A section's streamed body beyond this is cut: a composite answer is
 * built in memory. */
#define BH__SINK_MAX_BYTES (4u << 20)

/* Pieces of a streamed body at least this long go to the socket from the
 * caller's buffer; shorter ones are joined with the head in one buffer. */
#define BH__DIRECT_MIN 4096

/* Writes the parts in one writev when nothing is queued before them and
 * queues a copy of what the socket did not take. */
static int bh__conn_send_parts(bh__conn *c, uv_buf_t *v, unsigned nv) {
  int n = uv_try_write((uv_stream_t *)&c->tcp, v, nv);
  if (n < 0 && n != UV_EAGAIN) {
    c->keep_alive = 0;
    c->close_after_write = 1;
    c->write_error = 1;
    return 0;
  }
  size_t sent = n < 0 ? 0 : (size_t)n;
  bh__buf rest;
  bh__buf_init(&rest);
  for (unsigned i = 0; i < nv; i++) {
    size_t skip = sent < v[i].len ? sent : v[i].len;
    sent -= skip;
    if (v[i].len > skip)
      bh__buf_append(&rest, v[i].base + skip, v[i].len - skip);
  }
  if (bh__buf_failed(&rest)) {
    bh__buf_free(&rest);
    return -ENOMEM;
  }
  if (rest.len)
    bh__conn_queue(c, &rest, 0);
  else
    bh__buf_free(&rest);
  return 0;
}

long bh__respond_body(bh_req *req, const char *data, size_t len) {
  if (req->sink) {
    if (!req->streaming) return -ECONNRESET;
    if (req->sink_out.len + len > BH__SINK_MAX_BYTES ||
        bh__buf_append(&req->sink_out, data, len) != 0) {
      req->sink_out.len = BH__SINK_MAX_BYTES + 1; /* marks it cut */
      return -ECONNRESET;
    }
    return 0;
  }
  bh__conn *c = req->conn;
  if (c == NULL || c->closed || !req->streaming) return -ECONNRESET;
  if (req->no_body || len == 0) return 0;
  bh__buf out;
  bh__stream_out(req, &out);
  char hex[20];
  size_t hi = sizeof(hex);
  if (req->chunked) {
    hex[--hi] = '\n';
    hex[--hi] = '\r';
    size_t v = len;
    do {
      hex[--hi] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v);
  }
  req->resp_body_bytes += len;
  if (len >= BH__DIRECT_MIN && c->writes_pending == 0 &&
      !bh__buf_failed(&out)) {
    /* a large piece is not copied: head, chunk size, data and chunk end
     * leave in one writev, and only a part the socket refuses now is */
    uv_buf_t v[4];
    unsigned nv = 0;
    if (out.len) v[nv++] = uv_buf_init(out.data, (unsigned)out.len);
    if (req->chunked)
      v[nv++] = uv_buf_init(hex + hi, (unsigned)(sizeof(hex) - hi));
    v[nv++] = uv_buf_init((char *)data, (unsigned)len);
    if (req->chunked) v[nv++] = uv_buf_init((char *)"\r\n", 2);
    int rc = bh__conn_send_parts(c, v, nv);
    bh__stream_out_done(req, &out);
    if (rc) return rc;
  } else {
    if (req->chunked) bh__buf_append(&out, hex + hi, sizeof(hex) - hi);
    bh__buf_append(&out, data, len);
    if (req->chunked) bh__buf_append(&out, "\r\n", 2);
    if (bh__buf_failed(&out)) {
      bh__buf_free(&out);
      return -ENOMEM;
    }
    if (bh__conn_send_now(c, &out)) bh__stream_out_done(req, &out);
  }
  if (c->close_after_write && c->writes_pending == 0) {
    /* the write failed at once: the client is gone. Say so, so a stream
     * stops instead of feeding a dead socket until its upstream ends */
    bh__conn_close_when_written(c);
    return -ECONNRESET;
  }
  return (long)uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

/* The Content-Type value of preformatted head lines, in out. */
static void bh__head_ctype(const char *lines, char *out, size_t n) {
  out[0] = '\0';
  for (const char *l = lines; l && *l;) {
    size_t ll = strcspn(l, "\r\n");
    if (ll > 13 && strncasecmp(l, "content-type:", 13) == 0) {
      const char *v = l + 13;
      while (*v == ' ' || *v == '\t')
        v++;
      size_t vl = ll - (size_t)(v - l);
      if (vl >= n) vl = n - 1;
      memcpy(out, v, vl);
      out[vl] = '\0';
      return;
    }
    l += ll;
    while (*l == '\r' || *l == '\n')
      l++;
  }
}

static void bh__sink_end(bh_req *req, int complete) {
  req->streaming = 0;
  if (!complete || req->sink_out.len > BH__SINK_MAX_BYTES) {
    /* the answer went nowhere yet: a Problem takes its place */
    req->answered = 0;
    bh__respond_code(req, "composite.section_failed");
    return;
  }
  char ctype[128];
  bh__head_ctype(req->head_out.data, ctype, sizeof(ctype));
  bh__sink_answer(req, ctype[0] ? ctype : "application/octet-stream",
                  req->sink_out.data, req->sink_out.len, NULL);
}

void bh__respond_end(bh_req *req, int complete) {
  if (req->sink) {
    if (req->streaming) bh__sink_end(req, complete);
    return;
  }
  bh__conn *c = req->conn;
  if (c == NULL || c->closed || !req->streaming) return;
  req->streaming = 0;
  if (!complete) {
    /* the body is cut short: only closing tells the client so */
    c->keep_alive = 0;
    bh__logf(BH__WARN, "stream_aborted",
             "request %s: the upstream failed mid-answer; connection closed",
             req->id);
  }
  req->d->requests_total++;
  if (bh__shm_g) bh__shm_count_request();
  bh__access_log(req);
  bh__buf out;
  bh__stream_out(req, &out);
  if (complete && req->chunked && !req->is_head)
    bh__buf_append(&out, "0\r\n\r\n", 5);
  if (bh__buf_failed(&out)) {
    bh__buf_free(&out);
    c->keep_alive = 0;
  } else if (out.len) {
    if (bh__conn_send_now(c, &out)) bh__stream_out_done(req, &out);
  } else {
    bh__stream_out_done(req, &out);
  }
  if (c->req == req) bh__conn_request_done(c);
  /* a stream that began before a drain was promised keep-alive; once the
   * drain started, request_done left it CLOSING and nothing else would
   * close it, holding the drain until drain_timeout */
  if (!c->keep_alive || c->state == BH__CONN_CLOSING)
    bh__conn_close_when_written(c);
}

void bh__conn_problem(bh__conn *c, const char *code) {
  c->keep_alive = 0;
  bh_req *req = c->req;
  if (req == NULL || req->answered) {
    /* nothing parsed yet (e.g. a fold in the first line): make a request
     * shell so the answer still carries an id and is logged */
    req = bh__req_new();
    if (req == NULL) {
      bh__conn_close_when_written(c);
      return;
    }
    req->svc = c->d->svc;
    req->d = c->d;
    req->conn = c;
    req->refs = 1;
    req->start_ns = bh__now_ns();
    memcpy(req->client_addr, c->client_addr, sizeof(req->client_addr));
    memcpy(req->peer_addr, c->client_addr, sizeof(req->peer_addr));
    if (c->req) {
      c->req->conn = NULL;
      bh__req_unref(c->req);
    }
    c->req = req;
  }
  c->state = BH__CONN_PROCESSING;
  bh__ltimer_stop(&c->timer);
  bh__respond_code(req, code);
}
