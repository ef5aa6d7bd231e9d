/*
 * Call blocks kept for reuse. A call and the copy of its request (method,
 * URL, header lines, body) are one allocation (bh__call_start); in the
 * steady state of a proxy every request makes one, of nearly the same
 * size, and its answer head fills the same small buffer. So a block with
 * room for BH__CALL_ROOM bytes of request is kept when the call ends,
 * with its answer-head buffer, and the next call of that size takes it:
 * no allocation per call. Calls live on the loop thread only, so the
 * spare list is per process. A larger request gets a block of its own
 * size, freed at the end; a buffer that grew past BH__BUF_KEEP_MAX is
 * freed too. Under AddressSanitizer a kept block is poisoned, so a use
 * after the call ended is still reported.
 */
#include <stdlib.h>
#include <string.h>

#include "base/spares.h"
#include "upstream/client.h"

#define BH__CALL_ROOM 4096
#define BH__CALL_KEEP 64

static bh__call *g_spare[BH__CALL_KEEP];
/* The kept answer-head blocks, outside the poisoned call: LeakSanitizer
 * does not scan poisoned memory, and would call them leaked. */
static void *volatile g_spare_heads[BH__CALL_KEEP];
static size_t g_nspare;

bh__call *bh__call_mem_get(size_t head, size_t bytes) {
  int room = bytes <= BH__CALL_ROOM;
  bh__call *call = NULL;
  bh__buf keep;
  bh__buf_init(&keep);
  if (room && g_nspare > 0) {
    call = g_spare[--g_nspare];
    BH__UNPOISON(call, head + BH__CALL_ROOM);
    keep = call->resp_headers;
    if (keep.data) BH__UNPOISON(keep.data, keep.cap);
  } else {
    call = malloc(head + (room ? BH__CALL_ROOM : bytes));
    if (call == NULL) return NULL;
  }
  memset(call, 0, sizeof(*call));
  call->mem_kept = room;
  call->resp_headers = keep;
  return call;
}

static void bh__call_mem_release(bh__call *call) {
  bh__buf_free(&call->resp);
  bh__buf_free(&call->resp_headers);
  bh__buf_free(&call->body_held);
  free(call);
}

void bh__call_mem_put(bh__call *call) {
  bh__buf_free(&call->resp);
  bh__buf_free(&call->body_held);
  if (!call->mem_kept || g_nspare == BH__CALL_KEEP) {
    bh__call_mem_release(call);
    return;
  }
  bh__buf *h = &call->resp_headers;
  if (bh__buf_empty_keep(h)) BH__POISON(h->data, h->cap);
  g_spare_heads[g_nspare] = h->data;
  g_spare[g_nspare++] = call;
  /* the copied request follows the struct: poison the whole block */
  size_t head = (sizeof(bh__call) + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
  BH__POISON(call, head + BH__CALL_ROOM);
}

void bh__call_mem_free_all(void) {
  size_t head = (sizeof(bh__call) + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
  while (g_nspare > 0) {
    bh__call *call = g_spare[--g_nspare];
    BH__UNPOISON(call, head + BH__CALL_ROOM);
    if (call->resp_headers.data)
      BH__UNPOISON(call->resp_headers.data, call->resp_headers.cap);
    bh__call_mem_release(call);
  }
}
