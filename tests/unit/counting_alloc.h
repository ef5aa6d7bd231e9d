/*
 * A counting allocator for the unit tests of code that takes a
 * bh__allocator (metrics registry, rate-limit tables): leaks show as live
 * blocks, and fail_at injects an out-of-memory at a chosen allocation.
 */
#ifndef BH_TEST_COUNTING_ALLOC_H
#define BH_TEST_COUNTING_ALLOC_H

#include <stdlib.h>

/* libc underneath, counting live blocks; fail_at > 0 makes that
 * allocation (1-based) and every later one fail. */
typedef struct bh__counting {
  long live, allocs, fail_at;
} bh__counting;

static inline void *bh__c_alloc(void *ctx, size_t n) {
  bh__counting *c = ctx;
  c->allocs++;
  if (c->fail_at && c->allocs >= c->fail_at) return NULL;
  void *p = malloc(n ? n : 1);
  if (p) c->live++;
  return p;
}

static inline void *bh__c_realloc(void *ctx, void *p, size_t n) {
  bh__counting *c = ctx;
  if (p == NULL) return bh__c_alloc(ctx, n);
  c->allocs++;
  if (c->fail_at && c->allocs >= c->fail_at) return NULL;
  return realloc(p, n ? n : 1);
}

static inline void bh__c_free(void *ctx, void *p) {
  bh__counting *c = ctx;
  if (p) c->live--;
  free(p);
}

#endif
