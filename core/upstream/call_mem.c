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

static bh__spares g_spares = {.size = BH__CALL_HEAD + BH__CALL_ROOM};
/* The kept answer-head blocks, outside the poisoned call: LeakSanitizer
 * does not scan poisoned memory, and would call them leaked. */
static void *volatile g_spare_heads[BH__SPARES_MAX];

bh__call *bh__call_mem_get(size_t head, size_t bytes) {
  int room = bytes <= BH__CALL_ROOM;
  bh__call *call = room ? bh__spares_take(&g_spares) : NULL;
  bh__buf keep;
  bh__buf_init(&keep);
  if (call) {
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
  if (!call->mem_kept || bh__spares_full(&g_spares)) {
    bh__call_mem_release(call);
    return;
  }
  bh__buf *h = &call->resp_headers;
  if (bh__buf_empty_keep(h)) BH__POISON(h->data, h->cap);
  g_spare_heads[g_spares.n] = h->data;
  /* the copied request follows the struct: the whole block is poisoned */
  bh__spares_put(&g_spares, call);
}

void bh__call_mem_free_all(void) {
  bh__call *call;
  while ((call = bh__spares_take(&g_spares)) != NULL) {
    if (call->resp_headers.data)
      BH__UNPOISON(call->resp_headers.data, call->resp_headers.cap);
    bh__call_mem_release(call);
  }
}
