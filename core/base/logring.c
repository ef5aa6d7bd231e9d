#include "base/logring.h"

#include <errno.h>
#include <string.h>

void bh__lring_init(bh__lring *r, char *data, size_t cap) {
  atomic_init(&r->tail, 0);
  atomic_init(&r->head, 0);
  atomic_init(&r->busy, 0);
  atomic_init(&r->state, 0);
  r->data = data;
  r->cap = cap;
}

int bh__lring_put(bh__lring *r, const char *p, size_t n) {
  size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  /* acquire: the consumer's copy-out of the room we reuse is done */
  size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  if (n > r->cap - (t - h)) return -ENOSPC;
  size_t off = t & (r->cap - 1);
  size_t first = r->cap - off < n ? r->cap - off : n;
  memcpy(r->data + off, p, first);
  if (n > first) memcpy(r->data, p + first, n - first);
  /* release: the bytes are visible before the new tail */
  atomic_store_explicit(&r->tail, t + n, memory_order_release);
  return 0;
}

size_t bh__lring_used(bh__lring *r) {
  size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  return t - atomic_load_explicit(&r->head, memory_order_relaxed);
}

static void bh__lring_copy(const bh__lring *r, size_t pos, char *out,
                           size_t n) {
  size_t off = pos & (r->cap - 1);
  size_t first = r->cap - off < n ? r->cap - off : n;
  memcpy(out, r->data + off, first);
  if (n > first) memcpy(out + first, r->data, n - first);
}

size_t bh__lring_take(bh__lring *r, char *out, size_t room) {
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  size_t n = t - h;
  if (n == 0 || room == 0) return 0;
  if (n > room) {
    /* only part fits: cut after its last whole line */
    n = room;
    bh__lring_copy(r, h, out, n);
    while (n > 0 && out[n - 1] != '\n')
      n--;
    if (n == 0) return 0;
  } else {
    bh__lring_copy(r, h, out, n);
  }
  atomic_store_explicit(&r->head, h + n, memory_order_release);
  return n;
}

size_t bh__lring_lines(const char *p, size_t n) {
  size_t c = 0;
  const char *e = p + n;
  while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
    c++;
    p++;
  }
  return c;
}

size_t bh__lring_drop(bh__lring *r) {
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  size_t n = t - h, lines = 0;
  size_t off = h & (r->cap - 1);
  size_t first = r->cap - off < n ? r->cap - off : n;
  lines = bh__lring_lines(r->data + off, first);
  if (n > first) lines += bh__lring_lines(r->data, n - first);
  atomic_store_explicit(&r->head, t, memory_order_release);
  return lines;
}
