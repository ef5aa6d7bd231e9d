/*
 * A byte ring of whole log lines with one producer and one consumer, no
 * lock: the producer (one thread's log calls) copies a finished line in and
 * publishes it with a release store of `tail`; the consumer (the log writer)
 * copies whole lines out and frees the room with a release store of `head`.
 * Positions only grow; index = position & (cap - 1). A line that does not
 * fit is refused: the caller drops and counts it, memory stays bounded.
 */
#ifndef BH_CORE_LOGRING_H
#define BH_CORE_LOGRING_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct bh__lring {
  /* producer side and consumer side on their own cache lines */
  _Alignas(64) atomic_size_t tail;
  atomic_int busy;  /* the producer is inside an append (close waits) */
  atomic_int state; /* who produces: enum in log.c */
  _Alignas(64) atomic_size_t head;
  char *data;
  size_t cap; /* a power of two */
} bh__lring;

/* `cap` a power of two; data holds cap bytes. The ring is empty. */
void bh__lring_init(bh__lring *r, char *data, size_t cap);
/* Producer: appends the n bytes of one or more whole lines. 0, or
 * -ENOSPC when they do not fit in the free room (nothing is written). */
int bh__lring_put(bh__lring *r, const char *p, size_t n);
/* Consumer: copies at most `room` bytes of whole lines into out and frees
 * them in the ring. The byte count (0 when empty, or when the first line
 * is longer than room). */
size_t bh__lring_take(bh__lring *r, char *out, size_t room);
/* Consumer: frees everything queued; the number of lines dropped. */
size_t bh__lring_drop(bh__lring *r);
/* Consumer: bytes queued now. */
size_t bh__lring_used(bh__lring *r);
/* Line ends ('\n') in p[0..n). */
size_t bh__lring_lines(const char *p, size_t n);

#endif
