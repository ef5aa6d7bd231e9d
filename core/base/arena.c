/*
 * Arena allocator over one fixed region (see arena.h).
 *
 * Layout: the struct bh__arena header sits at the start of the region,
 * then blocks are carved upwards from a bump offset. Every block is a
 * 16-byte bh__ablk header followed by its payload, so the payload is
 * 16-byte aligned (the region base is 64-byte aligned, the header size and
 * every block size are multiples of 16).
 *
 * Small blocks (payload <= 1 MiB) use power-of-two size classes from 16
 * bytes up. A freed small block goes on its class's LIFO free list and is
 * only ever reused for that class: no splitting or coalescing, so an
 * alloc/free of one size is O(1) and a table that grows and shrinks cycles
 * through the same blocks. The cost is that memory parked in one class
 * does not serve another; the daemon's structures allocate the same few
 * sizes over and over (hash nodes, doubling slot arrays), so the parked
 * memory is bounded by each class's peak use.
 *
 * Large blocks (payload > 1 MiB, rounded up to 4 KiB) come from the bump
 * region too. Freed ones become "spans" on an address-ordered first-fit
 * list that splits on allocation and coalesces with adjacent spans on
 * free; a span that ends at the bump offset is handed back to the bump
 * region, so a big table freed last costs nothing afterwards. When the
 * bump region is exhausted, small allocations also carve from spans, so
 * memory of a freed big table can serve anything.
 *
 * Everything inside the region refers to other places in it by offset
 * from the arena header, never by pointer, and nothing outside the region
 * is referenced: the arena is self-contained in the shared mapping and
 * every process sees the same state. Not locked: callers hold the shared
 * lock.
 *
 * No sanitizer poisoning of free blocks: ASan's shadow memory is private
 * to each process, so a block freed (poisoned) in one worker and reused in
 * another would look poisoned to the first when it reads shared data.
 */
#include "base/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BH__ARENA_MAGIC 0x62686172656e6131ull /* "bharena1" */
#define BH__ARENA_MIN_SHIFT 4                 /* 16 bytes */
#define BH__ARENA_MAX_SHIFT 20                /* 1 MiB */
#define BH__ARENA_CLASSES (BH__ARENA_MAX_SHIFT - BH__ARENA_MIN_SHIFT + 1)
#define BH__ARENA_LARGE_ROUND 4096
/* A span smaller than this is not split off: it would only clutter the
 * span list. */
#define BH__ARENA_SPAN_MIN 64

/* bh__ablk.cls of a large block or a span. */
#define BH__ARENA_LARGE UINT32_MAX
/* bh__ablk.state: catches double frees and pointers that are not blocks. */
#define BH__ARENA_LIVE 0x6c697665u /* "live" */
#define BH__ARENA_FREE 0x66726565u /* "free" */

typedef struct bh__ablk {
  uint64_t size;  /* payload bytes (>= the class size for small blocks) */
  uint32_t cls;   /* size class index, or BH__ARENA_LARGE */
  uint32_t state; /* BH__ARENA_LIVE / BH__ARENA_FREE */
} bh__ablk;

_Static_assert(sizeof(bh__ablk) == 16, "block header keeps 16 alignment");

/* Free blocks and spans link to the next one through the first 8 bytes of
 * their payload, as an offset from the arena header; 0 ends a list (offset
 * 0 is the header itself, never a block). */
struct bh__arena {
  uint64_t magic;
  uint64_t size;  /* of the whole region, header included */
  uint64_t start; /* offset of the first block */
  uint64_t bump;  /* offset of the first byte never carved */
  uint64_t classes[BH__ARENA_CLASSES];
  uint64_t spans; /* address-ordered */
};

#define BH__ARENA_HEAD ((sizeof(struct bh__arena) + 63) & ~(size_t)63)
#define BH__ABLK sizeof(bh__ablk)

static bh__ablk *bh__ablk_at(const bh__arena *a, uint64_t off) {
  return (bh__ablk *)((char *)a + off);
}

static uint64_t bh__ablk_off(const bh__arena *a, const bh__ablk *b) {
  return (uint64_t)((const char *)b - (const char *)a);
}

static uint64_t *bh__ablk_link(bh__ablk *b) {
  return (uint64_t *)(b + 1);
}

/* Offset just past b's payload. */
static uint64_t bh__ablk_end(const bh__arena *a, const bh__ablk *b) {
  return bh__ablk_off(a, b) + BH__ABLK + b->size;
}

/* Size class of an n-byte request, or BH__ARENA_LARGE. */
static uint32_t bh__arena_class(size_t n) {
  if (n <= ((size_t)1 << BH__ARENA_MIN_SHIFT)) return 0;
  if (n > ((size_t)1 << BH__ARENA_MAX_SHIFT)) return BH__ARENA_LARGE;
  unsigned bits = 64 - (unsigned)__builtin_clzll((unsigned long long)n - 1);
  return bits - BH__ARENA_MIN_SHIFT;
}

static uint64_t bh__class_size(uint32_t cls) {
  return (uint64_t)1 << (cls + BH__ARENA_MIN_SHIFT);
}

static uint64_t bh__large_size(size_t n) {
  return ((uint64_t)n + BH__ARENA_LARGE_ROUND - 1) &
         ~(uint64_t)(BH__ARENA_LARGE_ROUND - 1);
}

bh__arena *bh__arena_init(void *base, size_t size) {
  if (base == NULL || ((uintptr_t)base & 63) != 0) return NULL;
  size &= ~(size_t)15; /* every block ends on a 16-byte boundary */
  /* Room for at least one smallest block, or the arena is useless. */
  if (size < BH__ARENA_HEAD + BH__ABLK + 16) return NULL;
  bh__arena *a = base;
  memset(a, 0, BH__ARENA_HEAD);
  a->magic = BH__ARENA_MAGIC;
  a->size = size;
  a->start = BH__ARENA_HEAD;
  a->bump = BH__ARENA_HEAD;
  return a;
}

size_t bh__arena_used(const bh__arena *a) {
  return a ? (size_t)a->bump : 0;
}

size_t bh__arena_size(const bh__arena *a) {
  return a ? (size_t)a->size : 0;
}

/* Carves a block with `payload` bytes from the bump region. */
static bh__ablk *bh__arena_carve(bh__arena *a, uint64_t payload) {
  if (payload > a->size - a->bump || BH__ABLK > a->size - a->bump - payload)
    return NULL;
  bh__ablk *b = bh__ablk_at(a, a->bump);
  a->bump += BH__ABLK + payload;
  b->size = payload;
  return b;
}

/* A block of at least `payload` bytes from the span list (first fit),
 * split from the tail of a span when the rest is worth keeping. */
static bh__ablk *bh__span_take(bh__arena *a, uint64_t payload) {
  for (uint64_t *pp = &a->spans; *pp;) {
    bh__ablk *s = bh__ablk_at(a, *pp);
    if (s->size >= payload) {
      uint64_t rest = s->size - payload;
      if (rest >= BH__ABLK + BH__ARENA_SPAN_MIN) {
        /* The span keeps its place in the list, only shorter. */
        s->size = rest - BH__ABLK;
        bh__ablk *b = bh__ablk_at(a, bh__ablk_end(a, s));
        b->size = payload;
        return b;
      }
      *pp = *bh__ablk_link(s);
      return s; /* whole: the few spare bytes stay with the block */
    }
    pp = bh__ablk_link(s);
  }
  return NULL;
}

/* Puts b on the span list, merged with adjacent spans; a span that then
 * ends at the bump offset goes back to the bump region. */
static void bh__span_put(bh__arena *a, bh__ablk *b) {
  uint64_t off = bh__ablk_off(a, b);
  b->cls = BH__ARENA_LARGE;
  b->state = BH__ARENA_FREE;
  uint64_t *pp = &a->spans;
  bh__ablk *prev = NULL;
  while (*pp && *pp < off) {
    prev = bh__ablk_at(a, *pp);
    pp = bh__ablk_link(prev);
  }
  uint64_t next = *pp;
  if (next && bh__ablk_end(a, b) == next) {
    bh__ablk *n = bh__ablk_at(a, next);
    b->size += BH__ABLK + n->size;
    next = *bh__ablk_link(n);
  }
  *bh__ablk_link(b) = next;
  *pp = off;
  if (prev && bh__ablk_end(a, prev) == off) {
    prev->size += BH__ABLK + b->size;
    *bh__ablk_link(prev) = next;
  }
  /* Only the last span can touch the bump offset. */
  if (next) return;
  pp = &a->spans;
  while (*bh__ablk_link(bh__ablk_at(a, *pp)))
    pp = bh__ablk_link(bh__ablk_at(a, *pp));
  bh__ablk *last = bh__ablk_at(a, *pp);
  if (bh__ablk_end(a, last) == a->bump) {
    a->bump = *pp;
    *pp = 0;
  }
}

void *bh__arena_alloc(bh__arena *a, size_t n) {
  /* Also keeps the size rounding below from overflowing. */
  if (a == NULL || a->magic != BH__ARENA_MAGIC || n > a->size - a->start)
    return NULL;
  uint32_t cls = bh__arena_class(n);
  bh__ablk *b;
  if (cls == BH__ARENA_LARGE) {
    uint64_t want = bh__large_size(n);
    b = bh__span_take(a, want);
    if (b == NULL) b = bh__arena_carve(a, want);
  } else if (a->classes[cls]) {
    b = bh__ablk_at(a, a->classes[cls]);
    a->classes[cls] = *bh__ablk_link(b);
  } else {
    uint64_t want = bh__class_size(cls);
    b = bh__arena_carve(a, want);
    /* Bump region exhausted: memory of freed large blocks serves too. */
    if (b == NULL) b = bh__span_take(a, want);
  }
  if (b == NULL) return NULL;
  b->cls = cls;
  b->state = BH__ARENA_LIVE;
  return b + 1;
}

/* A wild pointer or a double free would corrupt memory every process
 * shares; stop this one before it does, as glibc does for its heap. */
static void bh__arena_bad(const char *op, const void *p) {
  fprintf(stderr, "bh__arena_%s: %p is not a live block of this arena\n", op,
          p);
  abort();
}

/* The header of live block p, after checking it is one. */
static bh__ablk *bh__arena_block(const bh__arena *a, void *p, const char *op) {
  uintptr_t base = (uintptr_t)a, u = (uintptr_t)p;
  if (a == NULL || a->magic != BH__ARENA_MAGIC ||
      u < base + a->start + BH__ABLK || u >= base + a->bump || (u & 15) != 0)
    bh__arena_bad(op, p);
  bh__ablk *b = (bh__ablk *)p - 1;
  if (b->state != BH__ARENA_LIVE ||
      (b->cls != BH__ARENA_LARGE && b->cls >= BH__ARENA_CLASSES) ||
      b->size > a->bump - (u - base) ||
      (b->cls != BH__ARENA_LARGE && b->size < bh__class_size(b->cls)))
    bh__arena_bad(op, p);
  return b;
}

void bh__arena_free(bh__arena *a, void *p) {
  if (p == NULL) return;
  bh__ablk *b = bh__arena_block(a, p, "free");
  if (b->cls == BH__ARENA_LARGE) {
    bh__span_put(a, b);
    return;
  }
  b->state = BH__ARENA_FREE;
  *bh__ablk_link(b) = a->classes[b->cls];
  a->classes[b->cls] = bh__ablk_off(a, b);
}

void *bh__arena_realloc(bh__arena *a, void *p, size_t n) {
  if (p == NULL) return bh__arena_alloc(a, n);
  bh__ablk *b = bh__arena_block(a, p, "realloc");
  if (n > a->size - a->start) return NULL;
  uint32_t cls = bh__arena_class(n);
  if (cls == b->cls && cls != BH__ARENA_LARGE) return p;
  if (cls == BH__ARENA_LARGE && b->cls == BH__ARENA_LARGE) {
    uint64_t want = bh__large_size(n);
    uint64_t end = bh__ablk_end(a, b);
    if (want <= b->size) {
      /* Shrink in place; the tail becomes a span (or bump space). */
      uint64_t rest = b->size - want;
      if (rest >= BH__ABLK + BH__ARENA_LARGE_ROUND) {
        b->size = want;
        bh__ablk *t = bh__ablk_at(a, bh__ablk_end(a, b));
        t->size = rest - BH__ABLK;
        bh__span_put(a, t);
      }
      return p;
    }
    /* The topmost block grows into the bump region without a copy. */
    if (end == a->bump && want - b->size <= a->size - a->bump) {
      a->bump += want - b->size;
      b->size = want;
      return p;
    }
  }
  void *q = bh__arena_alloc(a, n);
  if (q == NULL) return NULL; /* p is untouched */
  memcpy(q, p, n < b->size ? n : (size_t)b->size);
  bh__arena_free(a, p);
  return q;
}

static void *bh__arena_a_alloc(void *ctx, size_t n) {
  return bh__arena_alloc(ctx, n);
}

static void *bh__arena_a_realloc(void *ctx, void *p, size_t n) {
  return bh__arena_realloc(ctx, p, n);
}

static void bh__arena_a_free(void *ctx, void *p) {
  bh__arena_free(ctx, p);
}

bh__allocator bh__arena_allocator(bh__arena *a) {
  bh__allocator al = {bh__arena_a_alloc, bh__arena_a_realloc, bh__arena_a_free,
                      a};
  return al;
}
