/*
 * The libc allocator (see alloc.h).
 */
#include "base/alloc.h"

#include <stdlib.h>

static void *bh__libc_alloc(void *ctx, size_t n) {
  (void)ctx;
  /* n = 0 still yields a block, as bh__arena_alloc does, so callers never
   * mistake an empty allocation for out-of-memory. */
  return malloc(n ? n : 1);
}

static void *bh__libc_realloc(void *ctx, void *p, size_t n) {
  (void)ctx;
  /* realloc(p, 0) may free p and return NULL, which callers would read as
   * a failure with p still live; ask for one byte instead. */
  return realloc(p, n ? n : 1);
}

static void bh__libc_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

const bh__allocator bh__libc_allocator = {bh__libc_alloc, bh__libc_realloc,
                                          bh__libc_free, NULL};
