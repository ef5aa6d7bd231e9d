/*
 * Blocks kept for reuse on one thread (the event loop): the request, the
 * upstream call and the proxy's per-call state are made and ended once per
 * request, each of one size, so a finished one is kept and the next takes
 * it instead of going to malloc. A list holds at most BH__SPARES_MAX
 * blocks; past that they are freed. Under AddressSanitizer a kept block
 * is poisoned (BH__POISON), so a use after it was put back is still
 * reported as one. A kept block that owns other blocks must list them
 * somewhere unpoisoned too: LeakSanitizer does not scan poisoned memory
 * (http/request.c, upstream/call_mem.c do).
 */
#ifndef BH_CORE_SPARES_H
#define BH_CORE_SPARES_H

#include <stddef.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BH__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BH__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BH__POISON(p, n) ((void)(p), (void)(n))
#define BH__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define BH__SPARES_MAX 64

typedef struct bh__spares {
  size_t size; /* every block's size */
  size_t n;
  void *blk[BH__SPARES_MAX];
} bh__spares;

/* A kept block (unpoisoned, its old content left as it was), or NULL when
 * none is kept. */
static inline void *bh__spares_take(bh__spares *s) {
  if (s->n == 0) return NULL;
  void *p = s->blk[--s->n];
  BH__UNPOISON(p, s->size);
  return p;
}

/* The list holds BH__SPARES_MAX blocks: a put would free instead. */
static inline int bh__spares_full(const bh__spares *s) {
  return s->n == BH__SPARES_MAX;
}

/* Keeps p (a block of s->size bytes from malloc), or frees it when the
 * list is full. */
static inline void bh__spares_put(bh__spares *s, void *p) {
  if (s->n == BH__SPARES_MAX) {
    free(p);
    return;
  }
  BH__POISON(p, s->size);
  s->blk[s->n++] = p;
}

/* Frees every kept block (at exit, for leak checkers). */
static inline void bh__spares_drain(bh__spares *s) {
  while (s->n > 0)
    free(bh__spares_take(s));
}

#endif
