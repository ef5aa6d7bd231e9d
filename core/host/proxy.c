/*
 * Proxy routes: a plugin fronts an internal service in one line. Requests
 * go upstream as they came (method, path, query, end-to-end headers, body)
 * through the same client, retries, breaker and error map as any call; the
 * answer streams back as it arrives.
 *
 * What is not the client's to forward stays here: the gateway's own
 * credentials (session cookies, the API key header, a verified
 * Authorization) unless the upstream has forward_credentials, and every
 * Forwarded / X-Forwarded-* / X-Real-IP / X-Bulkhead-* header, which the
 * core writes itself from the connection and the session middleware.
 *
 * Answers that may still be retried or mapped (5xx, 408, 429, statuses the
 * error map names) are buffered; everything else streams, and from the first
 * streamed byte no retry happens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/spares.h"
#include "config/config.h"
#include "host/host.h"
#include "http/http.h"
#include "identity/auth.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "upstream/upstream.h"

typedef struct bh__proxy {
  struct bh_upstream *u;
  bh__plugin *plugin;
} bh__proxy;

typedef struct bh__proxy_call {
  bh_req *req;
  bh__proxy *px;
  bh__call *call;
  int streamed;
  long long length; /* announced Content-Length, -1: chunked */
  unsigned long long sent;
  const char *body_error; /* the client's streamed body failed: answer */
} bh__proxy_call;

/* One per proxied request, kept for the next (base/spares.h); the header
 * lines are built in one buffer the loop thread keeps (bh__call_start
 * copies them before the handler returns). */
static bh__spares g_pc_spares = {.size = sizeof(bh__proxy_call)};
static bh__buf g_lines;

static bh__proxy_call *bh__proxy_call_new(void) {
  bh__proxy_call *pc = bh__spares_take(&g_pc_spares);
  if (pc == NULL) return calloc(1, sizeof(*pc));
  memset(pc, 0, sizeof(*pc));
  return pc;
}

static void bh__proxy_call_free(bh__proxy_call *pc) {
  if (pc) bh__spares_put(&g_pc_spares, pc);
}

/* The names that stay on their own hop, or that we write ourselves:
 * connection, keep-alive, proxy-connection, transfer-encoding, te,
 * trailer, upgrade, host, content-length, expect, x-request-id,
 * proxy-authorization, proxy-authenticate. Picked by length first: at
 * most two names to compare per header instead of thirteen. */
static int bh__hop_name(const char *name, size_t n) {
#define BH__IS(lit)                                                            \
  ((name[0] | 0x20) == lit[0] && strncasecmp(name, lit, n) == 0)
  switch (n) {
  case 2: return BH__IS("te");
  case 4: return BH__IS("host");
  case 6: return BH__IS("expect");
  case 7: return BH__IS("trailer") || BH__IS("upgrade");
  case 10: return BH__IS("connection") || BH__IS("keep-alive");
  case 12: return BH__IS("x-request-id");
  case 14: return BH__IS("content-length");
  case 16: return BH__IS("proxy-connection");
  case 17: return BH__IS("transfer-encoding");
  case 18: return BH__IS("proxy-authenticate");
  case 19: return BH__IS("proxy-authorization");
  default: return 0;
  }
#undef BH__IS
}

/* Hop-by-hop headers, and any header the Connection header names, stay on
 * their own hop (RFC 9110 7.6.1). `name` is n bytes, not necessarily
 * NUL-terminated. */
static int bh__is_hop_n(const char *name, size_t n, const char *connection) {
  if (n == 0) return 0;
  if (bh__hop_name(name, n)) return 1;
  if (connection) {
    for (const char *s = connection; *s;) {
      while (*s == ' ' || *s == ',')
        s++;
      size_t l = strcspn(s, " ,");
      if (l == n && strncasecmp(s, name, n) == 0) return 1;
      s += l;
    }
  }
  return 0;
}

/* The Connection value as bh__is_hop_n needs it: NULL when every name it
 * lists is hop-by-hop anyway (the usual "keep-alive"), so that no line
 * scans the list again (~80 instructions a line). Same names dropped. */
static const char *bh__conn_extra(const char *connection) {
  if (connection == NULL) return NULL;
  for (const char *s = connection; *s;) {
    while (*s == ' ' || *s == ',')
      s++;
    size_t l = strcspn(s, " ,");
    if (l && !bh__hop_name(s, l)) return connection;
    s += l;
  }
  return NULL;
}

static void bh__proxy_drain(bh_req *req) {
  bh__proxy_call *pc = req->on_drain_data;
  if (pc && pc->call) bh__call_resume(pc->call);
}

/* A Content-Length value we may frame the client's answer with: digits
 * only, and not so many that they overflow. -1 otherwise. */
static long long bh__length_value(const char *v, size_t n) {
  if (n == 0 || n > 18) return -1;
  long long x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    x = x * 10 + (v[i] - '0');
  }
  return x;
}

/* Drops from b ("name: value\r\n" lines) those a Connection list names. */
static void bh__drop_conn_named(bh__buf *b, const char *conn) {
  size_t w = 0;
  for (size_t r = 0; r < b->len;) {
    const char *line = b->data + r;
    const char *eol = memchr(line, '\n', b->len - r);
    size_t n = eol ? (size_t)(eol - line) + 1 : b->len - r;
    const char *colon = memchr(line, ':', n);
    if (!(colon && bh__is_hop_n(line, (size_t)(colon - line), conn))) {
      memmove(b->data + w, line, n);
      w += n;
    }
    r += n;
  }
  b->len = w;
}

int bh__proxy_head_lines(const char *hs, bh__buf *out, long long *length) {
  /* One pass copies the end-to-end lines and gathers the Connection list;
   * only when that list names more than the hop-by-hop names (rare) does
   * a second pass over what was copied drop those too (a Connection line
   * may come after the lines it names). A strstr of the whole head for
   * Connection first cost ~370 instructions per answer. */
  *length = -1;
  /* the Connection values, in a buffer kept between heads (loop thread) */
  static bh__buf connv;
  connv.len = 0;
  /* the upstream's length frames our answer only when it is the one
   * framing libcurl used too: a single well-formed value and no
   * Transfer-Encoding (which overrides it, RFC 9112 6.3). Otherwise the
   * body is chunked, which is right whatever the upstream's framing was;
   * a wrong length would desynchronise the client's connection */
  long long len = -1;
  int lengths = 0, te = 0;
  bh__buf_grow(out, strlen(hs));
  for (const char *s = hs; *s;) {
    /* the lines are ours (bh__upstream_head_line): a CR only ends one */
    const char *eol = strchr(s, '\r');
    if (eol == NULL || eol[1] != '\n') break;
    const char *colon = memchr(s, ':', (size_t)(eol - s));
    size_t nl = colon ? (size_t)(colon - s) : 0;
    if (colon && nl < 128) {
      const char *v = colon + 2 <= eol ? colon + 2 : eol;
      if (nl == 14 && memcmp(s, "content-length", 14) == 0) {
        long long x = bh__length_value(v, (size_t)(eol - v));
        if (lengths++ == 0)
          len = x;
        else if (x != len)
          len = -1;
      }
      if (nl == 17 && memcmp(s, "transfer-encoding", 17) == 0) te = 1;
      if (nl == 10 && memcmp(s, "connection", 10) == 0) {
        if (connv.len) bh__buf_putc(&connv, ',');
        bh__buf_append(&connv, v, (size_t)(eol - v));
      }
      if (!bh__hop_name(s, nl) && !(nl == 4 && memcmp(s, "date", 4) == 0))
        bh__buf_append(out, s, (size_t)(eol - s) + 2);
    }
    s = eol + 2;
  }
  const char *conn = bh__conn_extra(connv.len ? connv.data : NULL);
  if (conn && out->data && !out->failed) bh__drop_conn_named(out, conn);
  if (!te && len >= 0) *length = len;
  /* terminated even when nothing was copied (grow does not write the NUL:
   * a head of hop-by-hop lines only once relayed uninitialised bytes) */
  if (out->data && !out->failed) out->data[out->len] = '\0';
  int failed = bh__buf_failed(&connv) || bh__buf_failed(out);
  bh__buf_empty_keep(&connv);
  return failed ? -ENOMEM : 0;
}

/* Where the mount has a CORS policy the gateway's lines decide: an
 * upstream's own Access-Control-* would grant what the policy refuses, or
 * repeat Access-Control-Allow-Origin, which browsers reject. `b` holds
 * lower-cased "name: value\r\n" lines. */
static void bh__drop_cors_lines(bh__buf *b) {
  size_t w = 0;
  for (size_t r = 0; r < b->len;) {
    const char *eol = memchr(b->data + r, '\n', b->len - r);
    size_t n = eol ? (size_t)(eol - (b->data + r)) + 1 : b->len - r;
    if (!(n >= 15 && memcmp(b->data + r, "access-control-", 15) == 0)) {
      memmove(b->data + w, b->data + r, n);
      w += n;
    }
    r += n;
  }
  b->len = w;
  if (b->data) b->data[w] = '\0';
}

static int bh__proxy_on_head(bh__call *call, int status, void *data) {
  bh__proxy_call *pc = data;
  pc->call = call;
  if (status >= 500 || status == 408 || status == 429 ||
      bh__errmap_status_mapped(pc->px->plugin, status))
    return 0;
  /* the relayed lines, in a buffer kept between answers (loop thread):
   * bh__respond_head copies them */
  static bh__buf kept;
  bh__buf out = kept;
  out.len = 0;
  bh__buf_init(&kept);
  long long length;
  int rc = bh__proxy_head_lines(bh__call_headers(call), &out, &length);
  bh_req *req = pc->req;
  if (rc == 0 && req->cors_on) bh__drop_cors_lines(&out);
  if (rc == 0)
    rc = bh__respond_head(req, status, out.len ? out.data : NULL, length);
  bh__buf_empty_keep(&out);
  bh__buf_free(&kept); /* empty unless an answer came in between */
  kept = out;
  if (rc == 0) {
    pc->streamed = 1;
    pc->length = req->chunked ? -1 : length;
    req->on_drain = bh__proxy_drain;
    req->on_drain_data = pc;
  }
  return 1;
}

static int bh__proxy_on_data(bh__call *call, const char *buf, size_t len,
                             void *data) {
  bh__proxy_call *pc = data;
  (void)call;
  if (!pc->streamed) return 0; /* client gone: drain and discard */
  if (pc->length >= 0) {
    /* never more than the length we announced: the excess would be read
     * as the start of the client's next answer */
    if ((unsigned long long)pc->length - pc->sent < len) return -1;
    pc->sent += len;
  }
  long queued = bh__respond_body(pc->req, buf, len);
  return queued > (long)(1u << 20);
}

static void bh__proxy_done(bh_req *req, const bh_upstream_result *res,
                           void *data) {
  bh__proxy_call *pc = data;
  req->on_drain = NULL;
  req->on_drain_data = NULL;
  /* a body still coming has nowhere to go: the connection will close once
   * the answer is out (http.c) */
  if (req->body_sink_data == pc) bh__req_body_sink(req, NULL, NULL);
  if (pc->body_error) {
    /* the client's body broke off (too large, bad framing): the upstream
     * call was cancelled; an answer already streaming is cut short */
    if (pc->streamed)
      bh__respond_end(req, 0);
    else if (!req->answered)
      bh__respond_code(req, pc->body_error);
  } else if (pc->streamed) {
    bh__respond_end(req, res->outcome == BH_OUTCOME_RESPONSE);
  } else if (!req->answered && res->outcome == BH_OUTCOME_RESPONSE &&
             !(res->status >= 500 || res->status == 408 || res->status == 429 ||
               bh__errmap_status_mapped(pc->px->plugin, res->status))) {
    /* a short answer that arrived in one piece */
    const char *ct = bh__result_header(res, "content-type");
    char ctype[256];
    snprintf(ctype, sizeof(ctype), "%s", ct ? ct : "application/octet-stream");
    bh__respond(req, res->status, ctype, res->body, res->body_len, NULL);
  } else if (!req->answered) {
    bh__mapped m;
    char code[96];
    bh__errmap_match(pc->px->plugin, res, bh__result_malformed(res), &m, code,
                     sizeof(code));
    bh__respond_problem(req, m.code, NULL, m.retry_after, NULL, 0, NULL, 0);
  }
  /* the handler's hold on the request ends with the call */
  if (req->plugin_holds) {
    req->plugin_holds = 0;
    bh__req_unref(req);
  }
  bh__proxy_call_free(pc);
}

/* The streamed body (http/stream_body.c) into the call (h1_body.c): the
 * client is read while the upstream's queue has room. */
static int bh__proxy_body_data(bh_req *req, const char *buf, size_t len,
                               void *data) {
  bh__proxy_call *pc = data;
  (void)req;
  return pc->call ? bh__call_body_write(pc->call, buf, len) != 0 : 1;
}

static void bh__proxy_body_end(bh_req *req, const char *code, void *data) {
  bh__proxy_call *pc = data;
  if (code == NULL) {
    if (pc->call) bh__call_body_end(pc->call);
    return;
  }
  /* the upstream must not take a partial body for a whole one: cancelled,
   * and bh__proxy_done answers */
  pc->body_error = code;
  bh__calls_cancel(req);
}

static const bh__body_sink bh__proxy_sink = {bh__proxy_body_data,
                                             bh__proxy_body_end};

static void bh__proxy_writable(bh__call *call, void *data) {
  bh__proxy_call *pc = data;
  pc->call = call;
  bh__req_body_resume(pc->req);
}

static void bh__proxy_handler(bh_req *req, void *data);

int bh__proxy_streams_body(const bh__route *route) {
  return route->handler == bh__proxy_handler &&
         bh__upstream_streams_body(((const bh__proxy *)route->data)->u);
}

/* The session cookies of the core: its own names and the __Host- ones
 * used when cookies are Secure. */
static const char *const bh__our_cookies[] = {
    "__session", "__refresh", "__Host-session", "__Host-refresh", NULL};

static int bh__our_cookie(const char *name, size_t n) {
  for (size_t i = 0; bh__our_cookies[i]; i++)
    if (strlen(bh__our_cookies[i]) == n &&
        strncasecmp(name, bh__our_cookies[i], n) == 0)
      return 1;
  return 0;
}

/* Appends the pairs of the Cookie value `v` that are not ours to b, "; "
 * separated; the number of pairs kept. */
static size_t bh__cookies_filter(bh__buf *b, const char *v) {
  size_t kept = 0;
  for (const char *s = v; *s;) {
    while (*s == ' ' || *s == '\t' || *s == ';')
      s++;
    if (*s == '\0') break;
    size_t l = strcspn(s, ";");
    size_t pl = l;
    while (pl && (s[pl - 1] == ' ' || s[pl - 1] == '\t'))
      pl--;
    size_t nl = strcspn(s, "=");
    if (nl > pl) nl = pl;
    while (nl && (s[nl - 1] == ' ' || s[nl - 1] == '\t'))
      nl--;
    if (!bh__our_cookie(s, nl)) {
      if (kept++) bh__buf_append(b, "; ", 2);
      bh__buf_append(b, s, pl);
    }
    s += l;
  }
  return kept;
}

/* Headers the client may not set for the upstream: the forwarding ones are
 * rebuilt from the connection, X-Bulkhead-* carry the identity the core
 * established. `name` is lower-cased, n bytes. */
static int bh__client_forged(const char *name, size_t n) {
  return (n == 9 && (memcmp(name, "forwarded", 9) == 0 ||
                     memcmp(name, "x-real-ip", 9) == 0)) ||
         (n >= 12 && memcmp(name, "x-forwarded-", 12) == 0) ||
         (n >= 11 && memcmp(name, "x-bulkhead-", 11) == 0);
}

/* A value the core sets from its own state goes out only without control
 * bytes (they are refused at the source; this keeps a header line one line
 * whatever changes there). */
static int bh__header_safe(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
  return 1;
}

static void bh__line_start(bh__buf *b, size_t *offs, size_t *n,
                           const char *name) {
  offs[(*n)++] = b->len;
  bh__buf_puts(b, name);
  bh__buf_append(b, ": ", 2);
}

/* "name: value" and its NUL; the name's length known */
static void bh__line_n(bh__buf *b, size_t *offs, size_t *n, const char *name,
                       size_t nl, const char *value) {
  offs[(*n)++] = b->len;
  bh__buf_append(b, name, nl);
  bh__buf_append(b, ": ", 2);
  bh__buf_append(b, value, strlen(value) + 1);
}

static void bh__line(bh__buf *b, size_t *offs, size_t *n, const char *name,
                     const char *value) {
  bh__line_n(b, offs, n, name, strlen(name), value);
}

/* A whole "Name: value" line of len bytes, and its NUL after them */
static void bh__line_raw(bh__buf *b, size_t *offs, size_t *n, const char *line,
                         size_t len) {
  offs[(*n)++] = b->len;
  bh__buf_append(b, line, len + 1);
}

/* RFC 7239 quoted-string */
static void bh__quoted(bh__buf *b, const char *s) {
  bh__buf_putc(b, '"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') bh__buf_putc(b, '\\');
    bh__buf_putc(b, *s);
  }
  bh__buf_putc(b, '"');
}

static const char *bh__auth_kind_name(int kind) {
  switch (kind) {
  case BH_AUTH_BEARER: return "bearer";
  case BH_AUTH_COOKIE: return "cookie";
  case BH_AUTH_API_KEY: return "api_key";
  default: return NULL;
  }
}

/* Extra lines the handler adds beyond the request's own */
#define BH__PROXY_EXTRA 12
/* Line slots kept on the stack (client lines plus the extra ones) */
#define BH__PROXY_SMALL 48

/* The client's header lines a proxy route passes on, into tmp (offsets in
 * offs, *n of them): hop-by-hop and forged ones stay behind, and so do
 * the gateway's credentials unless the upstream is trusted with them.
 * The Host the client sent, or NULL. */
static const char *bh__proxy_client_lines(bh_req *req, const bh__proxy *px,
                                          bh__buf *tmp, size_t *offs,
                                          size_t *n) {
  const char *conn = bh__conn_extra(bh__req_header(req, "connection"));
  /* The caller's gateway credentials stay here unless the upstream is
   * trusted with them ([upstream.NAME] forward_credentials): our session
   * cookies, the API key header and an Authorization the middleware
   * verified. The upstream learns who the caller is from X-Bulkhead-*. */
  const bh__authn *an = req->authn;
  int keep_creds = px->u->forward_credentials;
  bh__auth *auth = bh__auth_get();
  const char *key_header = auth ? auth->conf->api_key_header : "x-api-key";
  size_t kl = strlen(key_header);
  int bearer = an && an->p.kind == BH_AUTH_BEARER;
  const char *host = NULL;
  /* each name measured once and then compared by length (a strcmp per
   * candidate name was ~100 instructions a header) */
  for (size_t i = 0; i < req->nheaders; i++) {
    const bh__header *h = &req->headers[i];
    size_t nl = strlen(h->name);
    if (nl == 4 && memcmp(h->name, "host", 4) == 0) host = h->value;
    if (bh__is_hop_n(h->name, nl, conn) || bh__client_forged(h->name, nl))
      continue;
    if (!keep_creds) {
      if (nl == kl && memcmp(h->name, key_header, kl) == 0) continue;
      if (bearer && nl == 13 && memcmp(h->name, "authorization", 13) == 0)
        continue;
      if (nl == 6 && memcmp(h->name, "cookie", 6) == 0) {
        size_t mark = tmp->len;
        bh__line_start(tmp, offs, n, "Cookie");
        if (bh__cookies_filter(tmp, h->value) == 0) {
          /* nothing but ours: no Cookie header at all */
          (*n)--;
          tmp->len = mark;
          continue;
        }
        bh__buf_putc(tmp, '\0');
        continue;
      }
    }
    bh__line_n(tmp, offs, n, h->name, nl, h->value);
  }
  return host;
}

/* A trusted proxy's values of header `name` (lower case), every one
 * followed by ", " so that our hop goes last. */
static void bh__proxy_chain(bh__buf *tmp, bh_req *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++) {
    const bh__header *h = &req->headers[i];
    if (strcmp(h->name, name) != 0 || h->value[0] == '\0' ||
        !bh__header_safe(h->value))
      continue;
    bh__buf_puts(tmp, h->value);
    bh__buf_append(tmp, ", ", 2);
  }
}

/* The forwarding headers and who the caller is, built here, never taken
 * from the client. */
static void bh__proxy_own_lines(bh_req *req, const char *host, bh__buf *tmp,
                                size_t *offs, size_t *n) {
  const bh__authn *an = req->authn;
  /* the forwarding headers, from the connection: a client's own
   * X-Forwarded-For or Forwarded would let it pick the address upstream
   * logs and limits see. Only a trusted proxy's chain is kept, and our
   * peer appended to it */
  const char *addr = req->peer_addr;
  bh__line_start(tmp, offs, n, "X-Forwarded-For");
  if (req->via_trusted) bh__proxy_chain(tmp, req, "x-forwarded-for");
  bh__buf_puts(tmp, addr);
  bh__buf_putc(tmp, '\0');
  bh__line(tmp, offs, n, "X-Real-IP", req->client_addr);
  const char *proto = "http";
  const char *xfp =
      req->via_trusted ? bh__req_header(req, "x-forwarded-proto") : NULL;
  if (xfp && strcmp(xfp, "https") == 0) proto = "https";
  bh__line(tmp, offs, n, "X-Forwarded-Proto", proto);
  if (host) bh__line(tmp, offs, n, "X-Forwarded-Host", host);
  bh__line_start(tmp, offs, n, "Forwarded");
  if (req->via_trusted) bh__proxy_chain(tmp, req, "forwarded");
  bh__buf_puts(tmp, "for=");
  if (strchr(addr, ':')) {
    bh__buf_append(tmp, "\"[", 2);
    bh__buf_puts(tmp, addr);
    bh__buf_append(tmp, "]\"", 2);
  } else {
    bh__buf_puts(tmp, addr);
  }
  if (host) {
    bh__buf_puts(tmp, ";host=");
    bh__quoted(tmp, host);
  }
  bh__buf_puts(tmp, ";proto=http");
  bh__buf_putc(tmp, '\0');
  if (an) {
    /* the user and scopes lines were rendered with the principal (once
     * per cached token): copied whole, NUL included */
    const char *kind = bh__auth_kind_name(an->p.kind);
    if (an->send_user) bh__line_raw(tmp, offs, n, an->user_line, an->user_len);
    if (kind) bh__line(tmp, offs, n, "X-Bulkhead-Auth", kind);
    if (an->send_scopes)
      bh__line_raw(tmp, offs, n, an->scopes_line, an->scopes_len);
    if (an->p.key_id[0] && bh__header_safe(an->p.key_id))
      bh__line(tmp, offs, n, "X-Bulkhead-Key-Id", an->p.key_id);
  }
}

/* The target as it came: the path, and the query when there is one
 * (bh__call_start copies it), in `room` when it fits, else allocated. NULL with
 * *nomem set when out of memory, NULL alone when the path serves as it is. */
static char *bh__proxy_target(bh_req *req, char *room, size_t roomlen,
                              int *nomem) {
  *nomem = 0;
  if (req->query[0] == '\0') return NULL;
  size_t pl = strlen(req->path), ql = strlen(req->query);
  char *path = pl + ql + 2 <= roomlen ? room : malloc(pl + ql + 2);
  if (path == NULL) {
    *nomem = 1;
    return NULL;
  }
  memcpy(path, req->path, pl);
  path[pl] = '?';
  memcpy(path + pl + 1, req->query, ql + 1);
  return path;
}

static void bh__proxy_handler(bh_req *req, void *data) {
  bh__proxy *px = data;
  bh__daemon *d = req->d;
  size_t n = 0;
  /* the line arrays on the stack for the usual head, on the heap past it
   * (bh__call_start copies what it keeps) */
  const char *hdrs_small[BH__PROXY_SMALL];
  size_t offs_small[BH__PROXY_SMALL];
  size_t cap = req->nheaders + BH__PROXY_EXTRA;
  const char **hdrs =
      cap <= BH__PROXY_SMALL ? hdrs_small : calloc(cap, sizeof(char *));
  bh__buf *tmp = &g_lines;
  tmp->len = 0;
  /* header lines are built in one buffer; offsets first, pointers after,
   * since the buffer may move while it grows */
  size_t *offs =
      cap <= BH__PROXY_SMALL ? offs_small : calloc(cap, sizeof(size_t));
  if (hdrs == NULL || offs == NULL) goto oom;
  const char *host = bh__proxy_client_lines(req, px, tmp, offs, &n);
  bh__proxy_own_lines(req, host, tmp, offs, &n);
  if (bh__buf_failed(tmp)) goto oom;
  for (size_t i = 0; i < n; i++)
    hdrs[i] = tmp->data + offs[i];
  hdrs[n] = NULL;

  int nomem;
  char room[1024];
  char *path = bh__proxy_target(req, room, sizeof(room), &nomem);
  bh__proxy_call *pc = bh__proxy_call_new();
  if (nomem || pc == NULL) {
    if (path != room) free(path);
    bh__proxy_call_free(pc);
    goto oom;
  }
  pc->req = req;
  pc->px = px;
  int marked = bh__req_header(req, "idempotency-key") != NULL;
  bh_upstream_request rq = {
      .size = sizeof(rq),
      .method = req->method,
      .path = path ? path : req->path,
      .headers = hdrs,
      .body = req->body.data,
      .body_len = req->body.len,
      .flags = marked ? BH_CALL_RETRY_SAFE : 0,
  };
  bh__call_stream st = {
      .on_head = bh__proxy_on_head, .on_data = bh__proxy_on_data, .data = pc};
  if (req->body_open) {
    /* the body streams (the gateway chose so at the head): it flows once
     * the upstream has our head */
    st.body_stream = 1;
    st.body_length = req->body_length;
    st.on_writable = bh__proxy_writable;
    rq.body = NULL;
    rq.body_len = 0;
    bh__req_body_sink(req, &bh__proxy_sink, pc);
  }
  int rc = bh__call_start(d, req, px->u, &rq, bh__proxy_done, pc, &st);
  if (rc != 0 && req->body_sink_data == pc) bh__req_body_sink(req, NULL, NULL);
  if (path != room) free(path);
  if (hdrs != hdrs_small) free(hdrs);
  if (offs != offs_small) free(offs);
  bh__buf_empty_keep(&g_lines);
  if (rc != 0) {
    bh__proxy_call_free(pc);
    req->plugin_holds = 0;
    bh__respond_problem(
        req, rc == -EINVAL ? "request.bad_request" : "generic.internal", NULL,
        -1, NULL, 0, NULL, 0);
    bh__req_unref(req);
  }
  return;
oom:
  if (hdrs != hdrs_small) free(hdrs);
  if (offs != offs_small) free(offs);
  bh__buf_empty_keep(&g_lines);
  req->plugin_holds = 0;
  bh__respond_code(req, "generic.internal");
  bh__req_unref(req);
}

int bh__proxy_add(bh__plugin *p, const char *prefix, struct bh_upstream *u,
                  uint32_t flags) {
  static const char *const methods[] = {"GET",    "POST",    "PUT", "PATCH",
                                        "DELETE", "OPTIONS", NULL};
  if (prefix == NULL || u == NULL || u->plugin != p || strchr(prefix, '{') ||
      strchr(prefix, '*'))
    return -EINVAL;
  bh__proxy *px = calloc(1, sizeof(*px));
  if (px == NULL) return -ENOMEM;
  px->u = u;
  px->plugin = p;
  p->proxies = realloc(p->proxies, (p->nproxies + 1) * sizeof(void *));
  if (p->proxies == NULL) {
    free(px);
    return -ENOMEM;
  }
  p->proxies[p->nproxies++] = px;
  char wild[512];
  size_t pl = strlen(prefix);
  snprintf(wild, sizeof(wild), "%s%s*", prefix,
           pl && prefix[pl - 1] == '/' ? "" : "/");
  for (size_t i = 0; methods[i]; i++) {
    bh_route r = {.size = sizeof(r),
                  .method = methods[i],
                  .pattern = prefix,
                  .handler = bh__proxy_handler,
                  .data = px,
                  .flags = flags | BH_ROUTE_RAW_BODY};
    int rc = bh__route_register(p, &r);
    if (rc) return rc;
    r.pattern = wild;
    rc = bh__route_register(p, &r);
    if (rc) return rc;
  }
  return 0;
}
