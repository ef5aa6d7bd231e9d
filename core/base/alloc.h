/*
 * Pluggable allocation for structures that may live in memory shared by the
 * master and its workers (metrics registry, rate-limit tables): the same
 * code runs on libc's heap or on a bh__arena inside the shared mapping.
 */
#ifndef BH_CORE_ALLOC_H
#define BH_CORE_ALLOC_H

#include <stddef.h>

typedef struct bh__allocator {
  void *(*alloc)(void *ctx, size_t n); /* NULL when out of memory */
  void *(*realloc)(void *ctx, void *p, size_t n);
  void (*free)(void *ctx, void *p);
  void *ctx;
} bh__allocator;

/* malloc / realloc / free. */
extern const bh__allocator bh__libc_allocator;

#endif
