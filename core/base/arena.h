/*
 * A small allocator over one fixed memory region, for structures shared by
 * processes that map the region at the same address (the master maps it
 * before fork). Power-of-two size classes with free lists, so tables that
 * grow and shrink (hash tables, LRU nodes) reuse their memory instead of
 * exhausting the region. Not thread- or process-safe: callers hold the
 * shared lock.
 */
#ifndef BH_CORE_ARENA_H
#define BH_CORE_ARENA_H

#include <stddef.h>

#include "base/alloc.h"

typedef struct bh__arena bh__arena;

/* Formats [base, base + size) as an arena (its header lives inside). NULL
 * when size is too small. base must be 64-byte aligned. */
bh__arena *bh__arena_init(void *base, size_t size);
/* 16-byte aligned memory, NULL when the region is exhausted. n = 0 gives a
 * valid minimal block. */
void *bh__arena_alloc(bh__arena *a, size_t n);
void *bh__arena_realloc(bh__arena *a, void *p, size_t n);
void bh__arena_free(bh__arena *a, void *p);
/* Bytes handed out from the region so far (free-listed blocks included). */
size_t bh__arena_used(const bh__arena *a);
size_t bh__arena_size(const bh__arena *a);
/* An allocator whose ctx is the arena. */
bh__allocator bh__arena_allocator(bh__arena *a);

#endif
