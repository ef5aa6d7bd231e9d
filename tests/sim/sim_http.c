/*
 * Connections: accept, read, parse with llhttp, write, close.
 *
 * Pipelining: on_message_complete pauses the parser, so each request is
 * answered before the next one is parsed and answers leave in order. An
 * answer that takes time (delay, trickle, SSE, hang) marks the connection
 * busy; bytes that arrive meanwhile wait in c->in and are parsed once the
 * answer is done. Answers produced in one read are written with one syscall.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define IN_LIMIT (1u << 20)     /* buffered bytes while busy */
#define WQ_LIMIT (4u << 20)     /* unsent bytes before we stop reading */
#define LINGER_MS 1000          /* drain after our FIN before closing */
#define KEEP_CAP (256u * 1024u) /* reused buffers shrink above this */

typedef struct wreq {
  uv_write_t req;
  sim_buf buf;
} wreq;

static llhttp_settings_t settings;
/* libuv calls alloc and read back to back for one stream, so one buffer
 * serves every connection; whatever must outlive the callback is copied. */
static char read_buf[64 * 1024];

/* ---- request accessors -------------------------------------------------- */

const char *sim_req_header(const sim_req *r, const char *name, size_t *len) {
  for (size_t i = 0; i < r->nhdrs; i++) {
    const sim_hdr *h = &r->hdrs[i];
    if (sim_strcaseeq(r->arena.data + h->name_off, h->name_len, name)) {
      if (len) *len = h->val_len;
      return r->arena.data + h->val_off;
    }
  }
  return NULL;
}

const char *sim_method_name(int method) {
  return llhttp_method_name((llhttp_method_t)method);
}

/* ---- response head ------------------------------------------------------ */

static const char *http_date(void) {
  static char date[64];
  static time_t last;
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  return date;
}

void sim_head(sim_buf *b, int status, const char *ctype, const char *extra,
              long long clen, int keep_alive, int skip_clen) {
  sim_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: bulkhead-sim\r\n",
                 status, sim_reason(status), http_date());
  if (ctype) sim_buf_printf(b, "Content-Type: %s\r\n", ctype);
  if (extra) sim_buf_puts(b, extra);
  if (!skip_clen) {
    if (clen >= 0)
      sim_buf_printf(b, "Content-Length: %lld\r\n", clen);
    else
      sim_buf_puts(b, "Transfer-Encoding: chunked\r\n");
  }
  sim_buf_puts(b, keep_alive ? "Connection: keep-alive\r\n\r\n"
                             : "Connection: close\r\n\r\n");
}

/* ---- parser callbacks --------------------------------------------------- */

static int head_room(sim_conn *c, size_t n, int status) {
  if (c->req.arena.len + n > SIM_MAX_HEAD) {
    c->req.error_status = status;
    llhttp_set_error_reason(&c->parser, "request head too large");
    return HPE_USER;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  sim_conn *c = p->data;
  sim_req *r = &c->req;
  sim_buf_trim(&r->arena, KEEP_CAP);
  sim_buf_trim(&r->body, KEEP_CAP);
  r->nhdrs = 0;
  r->url_off = r->url_len = 0;
  r->path_off = r->path_len = r->query_off = r->query_len = 0;
  r->body_total = 0;
  r->body_keep = SIM_ECHO_BODY;
  r->hdr_state = 0;
  r->error_status = 0;
  r->is_control = 0;
  r->keep_alive = 1;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  sim_conn *c = p->data;
  if (head_room(c, n, 414)) return HPE_USER;
  sim_buf_append(&c->req.arena, at, n);
  c->req.url_len += (uint32_t)n;
  return 0;
}

/* Splits the target into NUL-terminated path and query copies. */
static int on_url_complete(llhttp_t *p) {
  sim_req *r = &((sim_conn *)p->data)->req;
  sim_buf_reserve(&r->arena, (size_t)r->url_len + 2);
  const char *u = r->arena.data + r->url_off;
  size_t n = r->url_len, start = 0;
  /* Absolute form (a client talking to us as a proxy): skip scheme://host. */
  if (n > 7 && (strncasecmp(u, "http://", 7) == 0 ||
                strncasecmp(u, "https://", 8) == 0)) {
    const char *slash = memchr(u + 8, '/', n - 8);
    start = slash ? (size_t)(slash - u) : n;
  }
  const char *q = memchr(u + start, '?', n - start);
  size_t plen = q ? (size_t)(q - u) - start : n - start;
  size_t qlen = q ? n - start - plen - 1 : 0;
  r->path_off = (uint32_t)r->arena.len;
  if (plen == 0) {
    r->arena.data[r->arena.len++] = '/';
    plen = 1;
  } else {
    memcpy(r->arena.data + r->arena.len, u + start, plen);
    r->arena.len += plen;
  }
  r->arena.data[r->arena.len++] = '\0';
  r->path_len = (uint32_t)plen;
  sim_buf_reserve(&r->arena, qlen + 1);
  u = r->arena.data + r->url_off; /* the reserve may have moved it */
  r->query_off = (uint32_t)r->arena.len;
  if (qlen) memcpy(r->arena.data + r->arena.len, u + start + plen + 1, qlen);
  r->arena.len += qlen;
  r->arena.data[r->arena.len++] = '\0';
  r->query_len = (uint32_t)qlen;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  sim_conn *c = p->data;
  sim_req *r = &c->req;
  if (head_room(c, n, 431)) return HPE_USER;
  if (r->hdr_state != 1) {
    if (r->nhdrs >= SIM_MAX_HEADERS) {
      r->error_status = 431;
      llhttp_set_error_reason(p, "too many headers");
      return HPE_USER;
    }
    if (r->nhdrs == r->hdr_cap) {
      r->hdr_cap = r->hdr_cap ? r->hdr_cap * 2 : 16;
      r->hdrs = realloc(r->hdrs, r->hdr_cap * sizeof(*r->hdrs));
      if (!r->hdrs) abort();
    }
    sim_hdr *h = &r->hdrs[r->nhdrs++];
    h->name_off = (uint32_t)r->arena.len;
    h->name_len = h->val_off = h->val_len = 0;
    r->hdr_state = 1;
  }
  sim_buf_append(&r->arena, at, n);
  r->hdrs[r->nhdrs - 1].name_len += (uint32_t)n;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  sim_conn *c = p->data;
  sim_req *r = &c->req;
  if (head_room(c, n, 431)) return HPE_USER;
  sim_hdr *h = &r->hdrs[r->nhdrs - 1];
  if (r->hdr_state != 2) {
    h->val_off = (uint32_t)r->arena.len;
    r->hdr_state = 2;
  }
  sim_buf_append(&r->arena, at, n);
  h->val_len += (uint32_t)n;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  sim_conn *c = p->data;
  sim_req *r = &c->req;
  r->method = llhttp_get_method(p);
  const char *path = sim_req_path(r);
  r->is_control = c->listener->is_control || strncmp(path, "/__sim/", 7) == 0 ||
                  strcmp(path, "/__sim") == 0;
  r->body_keep = r->is_control ? SIM_MAX_CONTROL_BODY : SIM_ECHO_BODY;
  size_t elen;
  const char *expect = sim_req_header(r, "expect", &elen);
  if (expect && sim_strcaseeq(expect, elen, "100-continue") &&
      (p->flags & (F_CHUNKED | F_CONTENT_LENGTH))) {
    /* Everything before this request has already been answered (parsing is
     * serialized), so the interim answer cannot overtake another one. */
    sim_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    sim_conn_flush(c);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  sim_req *r = &((sim_conn *)p->data)->req;
  r->body_total += n;
  if (r->body.len < r->body_keep) {
    size_t take = r->body_keep - r->body.len;
    sim_buf_append(&r->body, at, take < n ? take : n);
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  sim_conn *c = p->data;
  c->req.keep_alive = llhttp_should_keep_alive(p);
  c->msg_complete = 1;
  return HPE_PAUSED; /* answer this one before parsing the next */
}

/* ---- request processing ------------------------------------------------- */

static void update_reading(sim_conn *c);

static void parse_error(sim_conn *c, llhttp_errno_t err) {
  int status = c->req.error_status ? c->req.error_status : 400;
  sim_buf body = {0};
  sim_buf_puts(&body, "{\"error\":\"bad_request\",\"detail\":");
  const char *reason = llhttp_get_error_reason(&c->parser);
  char detail[256];
  snprintf(detail, sizeof(detail), "%s: %s", llhttp_errno_name(err),
           reason ? reason : "");
  sim_buf_json_str(&body, detail, strlen(detail));
  sim_buf_puts(&body, "}");
  sim_buf head = {0};
  sim_head(&head, status, "application/json", NULL, (long long)body.len, 0, 0);
  sim_conn_write(c, head.data, head.len);
  sim_conn_write(c, body.data, body.len);
  sim_buf_free(&head);
  sim_buf_free(&body);
  c->done = 1;
}

static void dispatch(sim_conn *c) {
  sim_req *r = &c->req;
  if (r->is_control) {
    const char *sub = sim_req_path(r);
    if (strncmp(sub, "/__sim", 6) == 0) sub += 6;
    if (*sub == '\0') sub = "/";
    sim_control(c, sub);
  } else if (sim_respond(c)) {
    c->busy = 1;
    sim_conn_flush(c);
    return;
  }
  if (!r->keep_alive) c->done = 1;
}

/* Feeds bytes to the parser until they run out or an answer goes async.
 * Returns how many bytes were consumed. */
static size_t process(sim_conn *c, const char *data, size_t n) {
  size_t off = 0;
  while (off < n && !c->busy && !c->done && !c->closing) {
    llhttp_errno_t err = llhttp_execute(&c->parser, data + off, n - off);
    if (err == HPE_OK) return n;
    if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && c->msg_complete) {
      off = (size_t)(llhttp_get_error_pos(&c->parser) - data);
      c->msg_complete = 0;
      if (err == HPE_PAUSED)
        llhttp_resume(&c->parser);
      else
        c->req.keep_alive = 0; /* no protocol switch here: answer, close */
      dispatch(c);
      continue;
    }
    parse_error(c, err);
    return n;
  }
  return off;
}

static void finish_check(sim_conn *c) {
  if (c->closing) return;
  if (!c->busy && (c->done || c->read_eof)) {
    sim_conn_close(c, SIM_CLOSE_GRACEFUL);
    return;
  }
  update_reading(c);
}

/* Parses what was buffered while an answer was pending. */
static void drain(sim_conn *c) {
  while (!c->busy && !c->done && !c->closing && c->in_off < c->in.len) {
    c->in_off += process(c, c->in.data + c->in_off, c->in.len - c->in_off);
  }
  if (c->in_off >= c->in.len) {
    c->in_off = 0;
    sim_buf_trim(&c->in, KEEP_CAP);
  }
  sim_conn_flush(c);
  finish_check(c);
}

void sim_conn_async_done(sim_conn *c) {
  if (c->closing) return;
  c->busy = 0;
  if (!c->req.keep_alive) c->done = 1;
  drain(c);
}

/* ---- I/O ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h, (void)suggested;
  b->base = read_buf;
  b->len = sizeof(read_buf);
}

static void close_handles(sim_conn *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sim_conn *c = s->data;
  if (nread == 0) return;
  if (c->closing) {
    /* Lingering after our FIN: discard input until the peer closes. */
    if (nread < 0) close_handles(c);
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      sim_conn_close(c, SIM_CLOSE_NOW);
      return;
    }
    c->read_eof = 1;
    if (c->busy && c->pend.action == SIM_ACT_HANG)
      sim_conn_close(c, SIM_CLOSE_NOW); /* the client gave up waiting */
    else
      finish_check(c);
    return;
  }
  if (c->done) return;
  if (c->busy || c->in_off < c->in.len) {
    sim_buf_append(&c->in, buf->base, (size_t)nread);
    update_reading(c);
    return;
  }
  size_t used = process(c, buf->base, (size_t)nread);
  if (used < (size_t)nread && !c->done && !c->closing)
    sim_buf_append(&c->in, buf->base + used, (size_t)nread - used);
  sim_conn_flush(c);
  finish_check(c);
}

static void update_reading(sim_conn *c) {
  uv_stream_t *s = (uv_stream_t *)&c->tcp;
  int want = !c->closing && !c->read_eof && !c->done &&
             c->in.len - c->in_off < IN_LIMIT &&
             uv_stream_get_write_queue_size(s) < WQ_LIMIT;
  if (want && !c->reading) {
    if (uv_read_start(s, on_alloc, on_read) == 0) c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop(s);
    c->reading = 0;
  }
}

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  sim_conn *c = req->handle->data;
  sim_buf_free(&w->buf);
  free(w);
  if (c->closing) return;
  if (status < 0)
    sim_conn_close(c, SIM_CLOSE_NOW);
  else
    update_reading(c);
}

void sim_conn_write(sim_conn *c, const void *p, size_t n) {
  if (!c->closing) sim_buf_append(&c->out, p, n);
}

void sim_conn_flush(sim_conn *c) {
  if (c->out.len == 0 || c->closing) return;
  uv_stream_t *s = (uv_stream_t *)&c->tcp;
  size_t off = 0;
  if (uv_stream_get_write_queue_size(s) == 0) {
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write(s, &b, 1);
    if (n >= 0 && (size_t)n == c->out.len) {
      sim_buf_trim(&c->out, KEEP_CAP);
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      sim_conn_close(c, SIM_CLOSE_NOW);
      return;
    }
    if (n > 0) off = (size_t)n;
  }
  /* The kernel is full: hand this buffer to libuv and start a fresh one. */
  wreq *w = malloc(sizeof(*w));
  if (!w) abort();
  w->buf = c->out;
  memset(&c->out, 0, sizeof(c->out));
  uv_buf_t b = uv_buf_init(w->buf.data + off, (unsigned)(w->buf.len - off));
  if (uv_write(&w->req, s, &b, 1, on_write) < 0) {
    sim_buf_free(&w->buf);
    free(w);
    sim_conn_close(c, SIM_CLOSE_NOW);
    return;
  }
  update_reading(c);
}

/* ---- closing ------------------------------------------------------------ */

static void on_handle_close(uv_handle_t *h) {
  sim_conn *c = h->data;
  if (--c->open_handles > 0) return;
  if (c->prev)
    c->prev->next = c->next;
  else
    sim_g.conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (!c->listener->is_control) sim_g.open_conns--;
  sim_buf_free(&c->req.arena);
  sim_buf_free(&c->req.body);
  free(c->req.hdrs);
  sim_buf_free(&c->in);
  sim_buf_free(&c->out);
  sim_buf_free(&c->pend.head);
  sim_buf_free(&c->pend.body);
  free(c);
}

static void close_handles(sim_conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, on_handle_close);
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_handle_close);
}

static void on_linger_timeout(uv_timer_t *t) {
  close_handles(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  sim_conn *c = req->handle->data;
  c->shutting = 0;
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  if (status < 0 || c->read_eof) {
    close_handles(c);
    return;
  }
  /* Closing with unread input makes the kernel send RST, which can destroy
   * the answer we just sent; read and discard until EOF or a timeout. */
  uv_stream_t *s = (uv_stream_t *)&c->tcp;
  if (!c->reading && uv_read_start(s, on_alloc, on_read) != 0) {
    close_handles(c);
    return;
  }
  c->reading = 1;
  uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

void sim_conn_close(sim_conn *c, int mode) {
  if (c->closing) return;
  c->closing = 1;
  sim_respond_cancel(c);
  uv_timer_stop(&c->timer);
  uv_stream_t *s = (uv_stream_t *)&c->tcp;
  if (mode == SIM_CLOSE_GRACEFUL) {
    if (c->reading) uv_read_stop(s);
    c->reading = 0;
    if (uv_shutdown(&c->shutdown_req, s, on_shutdown) == 0) {
      c->shutting = 1;
      return;
    }
  } else if (mode == SIM_CLOSE_RESET) {
    uv_close((uv_handle_t *)&c->timer, on_handle_close);
    if (uv_tcp_close_reset(&c->tcp, on_handle_close) == 0) return;
  }
  close_handles(c);
}

void sim_close_all(void) {
  for (sim_conn *c = sim_g.conns; c; c = c->next) {
    if (!c->closing)
      sim_conn_close(c, SIM_CLOSE_NOW);
    else
      close_handles(c);
  }
}

/* ---- listening ---------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  sim_listener *l = server->data;
  sim_conn *c = calloc(1, sizeof(*c));
  if (!c) abort();
  c->listener = l;
  uv_tcp_init(sim_g.loop, &c->tcp);
  uv_timer_init(sim_g.loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = sim_g.conns;
  if (c->next) c->next->prev = c;
  sim_g.conns = c;
  if (!l->is_control) sim_g.open_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    close_handles(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  update_reading(c);
}

static void init_settings(void) {
  static int done;
  if (done) return;
  done = 1;
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_url_complete = on_url_complete;
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
}

/* "host:port" or "[v6]:port". */
static int parse_addr(const char *hp, struct sockaddr_storage *ss) {
  char host[128];
  const char *colon = strrchr(hp, ':');
  if (!colon) return UV_EINVAL;
  size_t hl = (size_t)(colon - hp);
  if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']') hp++, hl -= 2;
  if (hl == 0 || hl >= sizeof(host)) return UV_EINVAL;
  memcpy(host, hp, hl);
  host[hl] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535 || end == colon + 1) return UV_EINVAL;
  if (strchr(host, ':'))
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

int sim_listen(sim_listener *l, const char *hostport, int is_control,
               char *bound, size_t bound_len) {
  struct sockaddr_storage ss;
  int rc = parse_addr(hostport, &ss);
  if (rc < 0) return rc;
  init_settings();
  l->is_control = is_control;
  uv_tcp_init(sim_g.loop, &l->tcp);
  l->tcp.data = l;
  if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0)) < 0) return rc;
  if ((rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection)) < 0)
    return rc;
  int len = sizeof(ss);
  if ((rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len)) < 0)
    return rc;
  char ip[64];
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof(ip));
    snprintf(bound, bound_len, "[%s]:%d", ip, ntohs(a->sin6_port));
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof(ip));
    snprintf(bound, bound_len, "%s:%d", ip, ntohs(a->sin_port));
  }
  return 0;
}
