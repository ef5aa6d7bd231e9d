/*
 * A request's life cycle on the HTTP side: its target split into path and
 * query, header lookup, and the last reference dropped. A request is held
 * by its connection and, while a handler runs, by the plugin; whoever
 * drops the last reference frees it.
 */
#include <errno.h>
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
 * request never pins its memory; the body buffer, the parsed JSON and the
 * principal are always freed (a kept body buffer would also turn "no
 * body" into an empty one for the upstream call). Under AddressSanitizer
 * a kept request and its buffers are poisoned, so a use after the last
 * unref is still reported. */
#define BH__REQ_KEEP 64
#define BH__REQ_KEEP_HEADERS 64

static bh_req *g_spare[BH__REQ_KEEP];
/* The kept buffers' blocks, outside the poisoned struct: LeakSanitizer
 * does not scan poisoned memory, and would call them leaked. */
static void *volatile g_spare_blocks[BH__REQ_KEEP][7];
static size_t g_nspare;

/* Keeps b's block if it is small enough, else frees it. */
static void bh__keep_buf(bh__buf *b) {
  if (bh__buf_empty_keep(b)) BH__POISON(b->data, b->cap);
}

static void bh__reuse_buf(bh__buf *b) {
  if (b->data) BH__UNPOISON(b->data, b->cap);
}

bh_req *bh__req_new(void) {
  if (g_nspare == 0) return calloc(1, sizeof(bh_req));
  bh_req *req = g_spare[--g_nspare];
  BH__UNPOISON(req, sizeof(*req));
  bh__buf keep[5] = {req->raw, req->resp_headers, req->cors, req->head_out,
                     req->params_mem};
  bh__header *headers = req->headers_mem;
  size_t headers_cap = req->headers_cap;
  void *authn_mem = req->authn_mem;
  memset(req, 0, sizeof(*req));
  req->raw = keep[0];
  req->resp_headers = keep[1];
  req->cors = keep[2];
  req->head_out = keep[3];
  req->params_mem = keep[4];
  bh__reuse_buf(&req->raw);
  bh__reuse_buf(&req->resp_headers);
  bh__reuse_buf(&req->cors);
  bh__reuse_buf(&req->head_out);
  bh__reuse_buf(&req->params_mem);
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
  bh__buf_free(&req->raw);
  bh__buf_free(&req->resp_headers);
  bh__buf_free(&req->cors);
  bh__buf_free(&req->head_out);
  bh__buf_free(&req->params_mem);
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
  if (g_nspare == BH__REQ_KEEP) {
    bh__req_free(req);
    return;
  }
  bh__keep_buf(&req->raw);
  bh__keep_buf(&req->resp_headers);
  bh__keep_buf(&req->cors);
  bh__keep_buf(&req->head_out);
  bh__keep_buf(&req->params_mem);
  if (req->headers_cap > BH__REQ_KEEP_HEADERS) {
    free(req->headers_mem);
    req->headers_mem = NULL;
    req->headers_cap = 0;
  }
  if (req->headers_mem)
    BH__POISON(req->headers_mem, req->headers_cap * sizeof(*req->headers_mem));
  void *volatile *blocks = g_spare_blocks[g_nspare];
  blocks[0] = req->raw.data;
  blocks[1] = req->resp_headers.data;
  blocks[2] = req->cors.data;
  blocks[3] = req->head_out.data;
  blocks[4] = req->params_mem.data;
  blocks[5] = req->headers_mem;
  blocks[6] = req->authn_mem;
  g_spare[g_nspare++] = req;
  BH__POISON(req, sizeof(*req));
}

void bh__req_spares_free(void) {
  while (g_nspare > 0) {
    bh_req *req = g_spare[--g_nspare];
    BH__UNPOISON(req, sizeof(*req));
    bh__reuse_buf(&req->raw);
    bh__reuse_buf(&req->resp_headers);
    bh__reuse_buf(&req->cors);
    bh__reuse_buf(&req->head_out);
    bh__reuse_buf(&req->params_mem);
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
