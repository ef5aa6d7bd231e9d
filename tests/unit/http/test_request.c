/* core/http/request.c: request memory kept for reuse. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/http.h"

/* A finished request comes back zeroed, with its small buffers' room
 * kept and empty, and no header array published before the head is
 * complete. */
static void test_reuse_keeps_room_not_content(void) {
  bh_req *a = bh__req_new();
  CHECK(a != NULL);
  a->refs = 1;
  bh__buf_puts(&a->raw, "/v1/x");
  bh__buf_puts(&a->resp_headers, "X-A: 1\r\n");
  bh__buf_puts(&a->body, "{}");
  CHECK_INT(bh__req_headers_alloc(a, 4), 0);
  a->nheaders = 4;
  a->status = 201;
  strcpy(a->id, "abc");
  char *raw_block = a->raw.data;
  /* as the session middleware does: the principal in the request's block */
  a->authn_mem = malloc(64);
  a->authn = a->authn_mem;
  void *authn_block = a->authn_mem;
  bh__req_unref(a);

  bh_req *b = bh__req_new();
  CHECK(b == a); /* the one just finished */
  CHECK(b->raw.data == raw_block);
  CHECK_INT(b->raw.len, 0);
  CHECK(b->raw.cap >= 6);
  CHECK_INT(b->resp_headers.len, 0);
  CHECK(b->resp_headers.data == NULL || b->resp_headers.data[0] == '\0');
  CHECK(b->body.data == NULL); /* never kept: no body stays no body */
  CHECK(b->headers == NULL);   /* published at head complete only */
  CHECK_INT(b->nheaders, 0);
  CHECK_INT(b->status, 0);
  CHECK_INT(b->id[0], '\0');
  CHECK_INT(b->refs, 0);
  CHECK(b->authn == NULL); /* no caller until the middleware says so */
  CHECK(b->authn_mem == authn_block);
  bh__header *slots = b->headers_mem;
  CHECK(slots != NULL);
  CHECK_INT(bh__req_headers_alloc(b, 3), 0); /* fits: the same slots */
  CHECK(b->headers == slots);
  b->refs = 1;
  bh__req_unref(b);
}

/* A buffer that grew large is freed, not kept: one large request must not
 * pin its memory. */
static void test_large_buffers_are_not_kept(void) {
  bh_req *a = bh__req_new();
  a->refs = 1;
  char big[40000];
  memset(big, 'a', sizeof(big));
  bh__buf_append(&a->raw, big, sizeof(big));
  bh__buf_puts(&a->cors, "Vary: Origin\r\n");
  bh__req_unref(a);
  bh_req *b = bh__req_new();
  CHECK(b == a);
  CHECK(b->raw.data == NULL);
  CHECK_INT(b->raw.cap, 0);
  CHECK(b->cors.data != NULL); /* small: kept */
  b->refs = 1;
  bh__req_unref(b);
}

/* Past the kept count, requests are freed; every one still comes back
 * zeroed. */
static void test_many_at_once(void) {
  enum { N = 200 };
  bh_req *r[N];
  for (int i = 0; i < N; i++) {
    r[i] = bh__req_new();
    CHECK(r[i] != NULL);
    r[i]->refs = 1;
    bh__buf_puts(&r[i]->raw, "/x");
    r[i]->status = 500;
  }
  for (int i = 0; i < N; i++)
    bh__req_unref(r[i]);
  for (int i = 0; i < N; i++) {
    r[i] = bh__req_new();
    CHECK_INT(r[i]->status, 0);
    CHECK_INT(r[i]->raw.len, 0);
    r[i]->refs = 1;
  }
  for (int i = 0; i < N; i++)
    bh__req_unref(r[i]);
  bh__req_spares_free();
  bh_req *c = bh__req_new(); /* after the spares are gone: a fresh one */
  CHECK(c != NULL);
  CHECK(c->raw.data == NULL);
  c->refs = 1;
  bh__req_unref(c);
  bh__req_spares_free();
}

int main(void) {
  test_reuse_keeps_room_not_content();
  test_large_buffers_are_not_kept();
  test_many_at_once();
  return check_finish("http/request");
}
