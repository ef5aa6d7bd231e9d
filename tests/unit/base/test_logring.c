/* The log's per-thread byte ring: order across wrap-around, the byte bound
 * (a line that does not fit is refused whole), whole lines out, the drop
 * count, and one producer against one consumer on two threads. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/logring.h"
#include "check.h"

/* "L<seq>:<pad>\n", the length varying with seq */
static size_t bh__mkline(char *out, unsigned seq) {
  int n = snprintf(out, 64, "L%u:", seq);
  size_t pad = seq % 7;
  memset(out + n, 'x', pad);
  out[n + pad] = '\n';
  return (size_t)n + pad + 1;
}

/* Checks that out[0..n) is whole lines numbered from *next on. */
static void bh__check_seq(const char *out, size_t n, unsigned *next) {
  size_t i = 0;
  while (i < n) {
    char want[64];
    size_t w = bh__mkline(want, *next);
    CHECK(i + w <= n);
    if (i + w > n || memcmp(out + i, want, w) != 0) {
      CHECK(!"line out of order or torn");
      return;
    }
    i += w;
    (*next)++;
  }
}

static void test_order_wrap(void) {
  static char mem[64];
  bh__lring r;
  bh__lring_init(&r, mem, sizeof(mem));
  unsigned put = 0, next = 0;
  char line[64], out[64];
  /* many times round a 64-byte ring, a few lines in flight at once */
  for (int round = 0; round < 2000; round++) {
    for (int k = 0; k < 3; k++) {
      size_t n = bh__mkline(line, put);
      if (bh__lring_put(&r, line, n) == 0) put++;
    }
    CHECK(bh__lring_used(&r) <= sizeof(mem));
    size_t got = bh__lring_take(&r, out, sizeof(out));
    bh__check_seq(out, got, &next);
  }
  size_t got;
  while ((got = bh__lring_take(&r, out, sizeof(out))) > 0)
    bh__check_seq(out, got, &next);
  CHECK_INT(next, put);
  CHECK(put > 4000);
  CHECK_INT(bh__lring_used(&r), 0);
}

static void test_bound(void) {
  static char mem[32];
  bh__lring r;
  bh__lring_init(&r, mem, sizeof(mem));
  CHECK_INT(bh__lring_put(&r, "0123456789abcde\n", 16), 0);
  CHECK_INT(bh__lring_put(&r, "0123456789\n", 11), 0);
  /* 27 used: 6 more do not fit, nothing of them is written */
  CHECK_INT(bh__lring_put(&r, "abcde\n", 6), -ENOSPC);
  CHECK_INT(bh__lring_used(&r), 27);
  CHECK_INT(bh__lring_put(&r, "abcd\n", 5), 0);
  CHECK_INT(bh__lring_used(&r), 32);
  CHECK_INT(bh__lring_put(&r, "\n", 1), -ENOSPC);
  /* longer than the whole ring: refused even when empty */
  CHECK_INT(bh__lring_drop(&r), 3);
  char big[40];
  memset(big, 'y', sizeof(big));
  big[39] = '\n';
  CHECK_INT(bh__lring_put(&r, big, sizeof(big)), -ENOSPC);
  CHECK_INT(bh__lring_used(&r), 0);
}

static void test_whole_lines(void) {
  static char mem[64];
  bh__lring r;
  bh__lring_init(&r, mem, sizeof(mem));
  CHECK_INT(bh__lring_put(&r, "aaaa\nbbbbbbbb\ncc\n", 17), 0);
  char out[64];
  /* room for "aaaa\nbbb": only the first line comes out */
  CHECK_INT(bh__lring_take(&r, out, 8), 5);
  CHECK(memcmp(out, "aaaa\n", 5) == 0);
  /* a line longer than the room stays queued */
  CHECK_INT(bh__lring_take(&r, out, 4), 0);
  CHECK_INT(bh__lring_used(&r), 12);
  CHECK_INT(bh__lring_take(&r, out, 64), 12);
  CHECK(memcmp(out, "bbbbbbbb\ncc\n", 12) == 0);
  CHECK_INT(bh__lring_take(&r, out, 64), 0);
}

static void test_drop_count(void) {
  static char mem[128];
  bh__lring r;
  bh__lring_init(&r, mem, sizeof(mem));
  char line[64];
  unsigned queued = 0, refused = 0;
  for (unsigned i = 0; i < 40; i++) {
    size_t n = bh__mkline(line, i);
    if (bh__lring_put(&r, line, n) == 0)
      queued++;
    else
      refused++;
  }
  CHECK(refused > 0);
  CHECK(bh__lring_used(&r) <= sizeof(mem));
  /* across the wrap point too */
  char out[128];
  size_t got = bh__lring_take(&r, out, 20);
  unsigned first = 0;
  bh__check_seq(out, got, &first);
  CHECK(bh__lring_put(&r, "zz\n", 3) == 0);
  CHECK_INT(bh__lring_drop(&r), queued - first + 1);
  CHECK_INT(bh__lring_used(&r), 0);
  CHECK_INT(bh__lring_lines("a\nb\n\nc", 6), 3);
  CHECK_INT(bh__lring_lines("", 0), 0);
}

/* One producer thread, the consumer here: every line out whole and in
 * order, none lost, while the ring is full most of the time. */
#define BH_SPSC_LINES 50000u
static char g_spsc_mem[1024];
static bh__lring g_spsc;

static void *bh__producer(void *arg) {
  (void)arg;
  char line[64];
  for (unsigned i = 0; i < BH_SPSC_LINES; i++) {
    size_t n = bh__mkline(line, i);
    while (bh__lring_put(&g_spsc, line, n) != 0) {
    }
  }
  return NULL;
}

static void test_spsc(void) {
  bh__lring_init(&g_spsc, g_spsc_mem, sizeof(g_spsc_mem));
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, bh__producer, NULL), 0);
  char out[300];
  unsigned next = 0;
  while (next < BH_SPSC_LINES) {
    size_t got = bh__lring_take(&g_spsc, out, sizeof(out));
    unsigned before = next;
    bh__check_seq(out, got, &next);
    if (got > 0 && next == before) break; /* torn: reported above */
  }
  pthread_join(t, NULL);
  CHECK_INT(next, BH_SPSC_LINES);
  CHECK_INT(bh__lring_used(&g_spsc), 0);
}

int main(void) {
  test_order_wrap();
  test_bound();
  test_whole_lines();
  test_drop_count();
  test_spsc();
  return check_finish("test_logring");
}
