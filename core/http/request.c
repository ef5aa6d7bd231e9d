/*
 * A request's life cycle on the HTTP side: its target split into path and
 * query, header lookup, and the last reference dropped. A request is held
 * by its connection and, while a handler runs, by the plugin; whoever
 * drops the last reference frees it.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/spares.h"
#include "http/http.h"
#include "http/validate.h"

/* "." and ".." segments are refused rather than normalised: a gateway that
 * resolves them differently from the upstream behind it invites route
 * confusion. */
static int bh__path_ok(const char *p) {
  if (p[0] != '/') return 0;
  for (const char *s = p; *s; s++) {
    if (*s == '#') return 0;
    if (s[0] == '/' && s[1] == '.') {
      if (s[2] == '/' || s[2] == '\0') return 0;
      if (s[2] == '.' && (s[3] == '/' || s[3] == '\0')) return 0;
    }
  }
  return 1;
}

void bh__req_parse_target(bh_req *req) {
  char *url = req->raw.data;
  char *q = strchr(url, '?');
  if (q) {
    *q = '\0';
    req->query = q + 1;
  } else {
    req->query = "";
  }
  req->path = url;
  req->bad_path = !bh__path_ok(url);
  const char *expect = bh__req_header(req, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0)
    req->expect_continue = 1;
}

/* ---- request memory ------------------------------------------------------
 * A keep-alive connection parses one request after another, each needing
 * the same struct, the same raw-head buffer and header array and, for
 * most, the same small response-header buffers. Finished requests are
 * kept (per process: requests live on the loop thread only) with those
 * buffers' capacity, so a request in the steady state allocates none of
 * them. A buffer that grew past BH__BUF_KEEP_MAX is freed, so one large
 * request never pins its memory; the body buffer and the parsed JSON are
 * always freed (a kept body buffer would also turn "no body" into an
 * empty one for the upstream call). Under AddressSanitizer
 * a kept request and its buffers are poisoned, so a use after the last
 * unref is still reported. */
#define BH__REQ_KEEP_HEADERS 64

/* The buffers a kept request keeps, with their room. */
static const size_t bh__kept_bufs[] = {
    offsetof(bh_req, raw), offsetof(bh_req, resp_headers),
    offsetof(bh_req, cors), offsetof(bh_req, head_out),
    offsetof(bh_req, params_mem)};
#define BH__NKEPT (sizeof(bh__kept_bufs) / sizeof(bh__kept_bufs[0]))

static bh__buf *bh__kept_buf(bh_req *req, size_t i) {
  return (bh__buf *)(void *)((char *)req + bh__kept_bufs[i]);
}

static bh__spares g_spares = {.size = sizeof(bh_req)};
/* The kept buffers' blocks (and the header array and principal block),
 * outside the poisoned struct: LeakSanitizer does not scan poisoned
 * memory, and would call them leaked. */
static void *volatile g_spare_blocks[BH__SPARES_MAX][BH__NKEPT + 2];

/* The kept buffers of a request just taken from the list, usable again. */
static void bh__reuse_bufs(bh_req *req) {
  for (size_t i = 0; i < BH__NKEPT; i++) {
    bh__buf *b = bh__kept_buf(req, i);
    if (b->data) BH__UNPOISON(b->data, b->cap);
  }
}

bh_req *bh__req_new(void) {
  bh_req *req = bh__spares_take(&g_spares);
  if (req == NULL) return calloc(1, sizeof(bh_req));
  bh__buf keep[BH__NKEPT];
  for (size_t i = 0; i < BH__NKEPT; i++)
    keep[i] = *bh__kept_buf(req, i);
  bh__header *headers = req->headers_mem;
  size_t headers_cap = req->headers_cap;
  void *authn_mem = req->authn_mem;
  memset(req, 0, sizeof(*req));
  for (size_t i = 0; i < BH__NKEPT; i++)
    *bh__kept_buf(req, i) = keep[i];
  bh__reuse_bufs(req);
  req->headers_mem = headers;
  req->headers_cap = headers_cap;
  req->authn_mem = authn_mem;
  if (headers) BH__UNPOISON(headers, headers_cap * sizeof(*headers));
  return req;
}

int bh__req_headers_alloc(bh_req *req, size_t n) {
  if (n > req->headers_cap) {
    free(req->headers_mem);
    req->headers_cap = 0;
    req->headers_mem = calloc(n, sizeof(*req->headers_mem));
    if (req->headers_mem == NULL) return -ENOMEM;
    req->headers_cap = n;
  }
  req->headers = req->headers_mem;
  return 0;
}

static void bh__req_free(bh_req *req) {
  for (size_t i = 0; i < BH__NKEPT; i++)
    bh__buf_free(bh__kept_buf(req, i));
  free(req->headers_mem);
  free(req->authn_mem);
  free(req);
}

void bh__req_unref(bh_req *req) {
  if (--req->refs > 0) return;
  if (req->json) bh__body_free(req->json);
  /* plain data (principal and scopes inline): the block is kept */
  if (req->authn && req->authn != req->authn_mem) {
    free(req->authn_mem);
    req->authn_mem = req->authn;
  }
  bh__buf_free(&req->body);
  bh__buf_free(&req->sink_out);
  if (bh__spares_full(&g_spares)) {
    bh__req_free(req);
    return;
  }
  void *volatile *blocks = g_spare_blocks[g_spares.n];
  for (size_t i = 0; i < BH__NKEPT; i++) {
    bh__buf *b = bh__kept_buf(req, i);
    if (bh__buf_empty_keep(b)) BH__POISON(b->data, b->cap);
    blocks[i] = b->data;
  }
  if (req->headers_cap > BH__REQ_KEEP_HEADERS) {
    free(req->headers_mem);
    req->headers_mem = NULL;
    req->headers_cap = 0;
  }
  if (req->headers_mem)
    BH__POISON(req->headers_mem, req->headers_cap * sizeof(*req->headers_mem));
  blocks[BH__NKEPT] = req->headers_mem;
  blocks[BH__NKEPT + 1] = req->authn_mem;
  bh__spares_put(&g_spares, req);
}

void bh__req_spares_free(void) {
  bh_req *req;
  while ((req = bh__spares_take(&g_spares)) != NULL) {
    bh__reuse_bufs(req);
    bh__req_free(req);
  }
}

void bh__req_deadline(bh_req *req, uint32_t ms) {
  if (req->conn)
    bh__conn_deadline(req->conn, ms);
  else if (req->sink)
    req->sink->deadline(req, ms);
}

const char *bh__req_header(bh_req *req, const char *name) {
  if (req->headers == NULL) return NULL; /* head not complete */
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

int bh__is_json(const char *ct) {
  if (ct == NULL) return 0;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
  return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
         strncasecmp(ct + n - 5, "+json", 5) == 0;
}
