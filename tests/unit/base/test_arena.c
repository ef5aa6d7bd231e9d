#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/arena.h"
#include "check.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* A 64-byte aligned region of `size` bytes from the heap (valgrind then
 * tracks which bytes were written). */
static void *bh__region(size_t size) {
  void *p = aligned_alloc(64, (size + 63) & ~(size_t)63);
  CHECK(p != NULL);
  return p;
}

/* Deterministic, so a failure reproduces. */
static uint64_t bh__rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t bh__rng(void) {
  uint64_t x = bh__rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return bh__rng_state = x;
}

static void bh__fill(void *p, size_t n, uint32_t seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    c[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

static int bh__intact(const void *p, size_t n, uint32_t seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8))) return 0;
  return 1;
}

static void test_init(void) {
  void *mem = bh__region(64 * KiB);
  CHECK(bh__arena_init(NULL, 64 * KiB) == NULL);
  CHECK(bh__arena_init((char *)mem + 16, 32 * KiB) == NULL); /* alignment */
  CHECK(bh__arena_init(mem, 64) == NULL);                    /* too small */
  bh__arena *a = bh__arena_init(mem, 64 * KiB);
  CHECK(a != NULL);
  CHECK(a == mem); /* the header lives at the start of the region */
  CHECK_INT(bh__arena_size(a), 64 * KiB);
  size_t base = bh__arena_used(a);
  CHECK(base > 0 && base < 1024); /* just the header */
  /* Odd sizes are trimmed to a whole number of 16-byte units. */
  CHECK_INT(bh__arena_size(bh__arena_init(mem, 64 * KiB - 5)), 64 * KiB - 16);
  free(mem);
}

static void test_alignment(void) {
  void *mem = bh__region(16 * MiB);
  bh__arena *a = bh__arena_init(mem, 16 * MiB);
  int aligned = 1;
  for (size_t n = 0; n < 3000; n += 7) {
    void *p = bh__arena_alloc(a, n);
    CHECK(p != NULL);
    aligned &= ((uintptr_t)p & 15) == 0;
    /* The whole request is usable, right up to the next block. */
    memset(p, 0xa5, n);
  }
  CHECK(aligned);
  void *z1 = bh__arena_alloc(a, 0), *z2 = bh__arena_alloc(a, 0);
  CHECK(z1 != NULL && z2 != NULL && z1 != z2); /* n = 0: distinct blocks */
  void *big = bh__arena_alloc(a, 2 * MiB + 1);
  CHECK(big != NULL && ((uintptr_t)big & 15) == 0);
  memset(big, 1, 2 * MiB + 1);
  CHECK(bh__arena_alloc(a, SIZE_MAX) == NULL);
  CHECK(bh__arena_alloc(a, 16 * MiB) == NULL);
  CHECK(bh__arena_alloc(NULL, 16) == NULL);
  free(mem);
}

static void test_reuse(void) {
  void *mem = bh__region(1 * MiB);
  bh__arena *a = bh__arena_init(mem, 1 * MiB);
  /* Same size over and over: one block, recycled. */
  void *first = bh__arena_alloc(a, 100);
  bh__arena_free(a, first);
  size_t used = bh__arena_used(a);
  int moved = 0;
  for (int i = 0; i < 100000; i++) {
    void *p = bh__arena_alloc(a, 100);
    moved += p != first;
    bh__arena_free(a, p);
  }
  CHECK_INT(moved, 0);
  CHECK_INT(bh__arena_used(a), used);
  /* Any size in the same class takes the same block. */
  void *p = bh__arena_alloc(a, 65);
  CHECK(p == first);
  bh__arena_free(a, p);
  /* Batches: the second batch of the same shape costs no new memory. */
  void *v[500];
  for (int i = 0; i < 500; i++)
    v[i] = bh__arena_alloc(a, (size_t)(i % 7) * 40);
  used = bh__arena_used(a);
  for (int i = 0; i < 500; i++)
    bh__arena_free(a, v[(i * 7) % 500]); /* freed out of order */
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 500; i++)
      v[i] = bh__arena_alloc(a, (size_t)(i % 7) * 40);
    for (int i = 0; i < 500; i++)
      bh__arena_free(a, v[i]);
  }
  CHECK_INT(bh__arena_used(a), used);
  bh__arena_free(a, NULL); /* no-op */
  free(mem);
}

static void test_realloc(void) {
  void *mem = bh__region(32 * MiB);
  bh__arena *a = bh__arena_init(mem, 32 * MiB);
  /* NULL: plain alloc. */
  char *p = bh__arena_realloc(a, NULL, 10);
  CHECK(p != NULL);
  bh__fill(p, 10, 1);
  /* Within the class: the same block. */
  CHECK(bh__arena_realloc(a, p, 16) == p);
  CHECK(bh__arena_realloc(a, p, 0) == p);
  /* Growth through every class and into large blocks keeps the bytes. */
  size_t have = 10;
  for (size_t n = 17; n <= 5 * MiB; n = n * 3 + 1) {
    char *q = bh__arena_realloc(a, p, n);
    CHECK(q != NULL);
    if (q == NULL) break;
    CHECK(bh__intact(q, have, 1));
    bh__fill(q, n, 1);
    p = q;
    have = n;
  }
  CHECK(have > 1 * MiB);
  /* Large and topmost: grows in place into the bump region. */
  char *top = bh__arena_alloc(a, 2 * MiB);
  bh__fill(top, 2 * MiB, 2);
  char *grown = bh__arena_realloc(a, top, 6 * MiB);
  CHECK(grown == top);
  CHECK(bh__intact(grown, 2 * MiB, 2));
  bh__fill(grown, 6 * MiB, 2);
  /* Large shrink stays in place and gives the tail back: topmost, so the
   * bump offset comes down. */
  size_t used = bh__arena_used(a);
  CHECK(bh__arena_realloc(a, grown, 3 * MiB) == grown);
  CHECK(bh__intact(grown, 3 * MiB, 2));
  CHECK(bh__arena_used(a) <= used - 3 * MiB + 4 * KiB);
  /* Shrink back to a small block: moved, prefix preserved. */
  char *small = bh__arena_realloc(a, grown, 100);
  CHECK(small != NULL && small != grown);
  CHECK(bh__intact(small, 100, 2));
  /* A request the arena cannot meet leaves the block untouched. */
  CHECK(bh__arena_realloc(a, small, 64 * MiB) == NULL);
  CHECK(bh__arena_realloc(a, small, SIZE_MAX) == NULL);
  CHECK(bh__intact(small, 100, 2));
  bh__arena_free(a, small);
  bh__arena_free(a, p);
  free(mem);
}

static void test_exhaustion(void) {
  size_t size = 256 * KiB;
  void *mem = bh__region(size);
  bh__arena *a = bh__arena_init(mem, size);
  void *v[4096];
  int n = 0;
  while (n < 4096 && (v[n] = bh__arena_alloc(a, 100)) != NULL)
    n++;
  CHECK(n > 1000 && n < 4096);            /* 128-byte class + header */
  CHECK(bh__arena_alloc(a, 100) == NULL); /* stays exhausted */
  CHECK(bh__arena_alloc(a, 2 * MiB) == NULL);
  CHECK(bh__arena_used(a) <= size);
  size_t used = bh__arena_used(a);
  /* Frees make room again, for exactly as many blocks. */
  for (int i = 0; i < n; i += 2)
    bh__arena_free(a, v[i]);
  int again = 0;
  for (int i = 0; i < n; i += 2)
    again += (v[i] = bh__arena_alloc(a, 120)) != NULL;
  CHECK_INT(again, (n + 1) / 2);
  CHECK(bh__arena_alloc(a, 100) == NULL);
  CHECK_INT(bh__arena_used(a), used);
  for (int i = 0; i < n; i++)
    bh__arena_free(a, v[i]);
  free(mem);

  /* Large blocks: a freed one serves the next large request, and once
   * the bump region is gone its memory serves small requests too. */
  size = 8 * MiB;
  mem = bh__region(size);
  a = bh__arena_init(mem, size);
  void *l[8];
  int nl = 0;
  while (nl < 8 && (l[nl] = bh__arena_alloc(a, 2 * MiB)) != NULL)
    nl++;
  CHECK_INT(nl, 3);
  while (bh__arena_alloc(a, 64 * KiB) != NULL) {
  }
  while (bh__arena_alloc(a, 16) != NULL) {
  }
  CHECK(bh__arena_alloc(a, 2 * MiB) == NULL);
  bh__arena_free(a, l[1]);
  void *big = bh__arena_alloc(a, 2 * MiB);
  CHECK(big == l[1]);
  bh__arena_free(a, big);
  /* 2 MiB of small blocks carved from the freed large one. */
  int small = 0;
  while (bh__arena_alloc(a, 1000) != NULL)
    small++;
  CHECK(small >= 1900 && small <= 2048);
  free(mem);
}

/* Freed large blocks merge with their neighbours, and the topmost one goes
 * back to the bump region. */
static void test_spans(void) {
  size_t size = 32 * MiB;
  void *mem = bh__region(size);
  bh__arena *a = bh__arena_init(mem, size);
  size_t base = bh__arena_used(a);
  void *x = bh__arena_alloc(a, 3 * MiB);
  CHECK(bh__arena_used(a) > base + 3 * MiB);
  bh__arena_free(a, x);
  CHECK_INT(bh__arena_used(a), base);

  void *l1 = bh__arena_alloc(a, 2 * MiB), *l2 = bh__arena_alloc(a, 2 * MiB),
       *l3 = bh__arena_alloc(a, 2 * MiB), *l4 = bh__arena_alloc(a, 2 * MiB);
  void *pin = bh__arena_alloc(a, 16); /* keeps l4 off the top */
  size_t used = bh__arena_used(a);
  bh__arena_free(a, l1);
  bh__arena_free(a, l3);
  bh__arena_free(a, l2); /* joins l1 and l3 */
  void *six = bh__arena_alloc(a, 6 * MiB);
  CHECK(six == l1);
  CHECK_INT(bh__arena_used(a), used);
  bh__arena_free(a, six);
  /* First fit with split: two 3 MiB blocks out of the 6 MiB span. */
  void *h1 = bh__arena_alloc(a, 3 * MiB), *h2 = bh__arena_alloc(a, 3 * MiB);
  CHECK(h1 != NULL && h2 != NULL);
  CHECK_INT(bh__arena_used(a), used);
  bh__arena_free(a, h1);
  bh__arena_free(a, h2);
  bh__arena_free(a, l4); /* joins the span too: 8 MiB in one piece */
  void *eight = bh__arena_alloc(a, 8 * MiB);
  CHECK(eight == l1);
  CHECK_INT(bh__arena_used(a), used);
  bh__arena_free(a, eight);
  /* The pin is a small block: freed, it waits in its class list rather
   * than returning to the bump region, so the span below it stays too. */
  bh__arena_free(a, pin);
  CHECK_INT(bh__arena_used(a), used);
  CHECK(bh__arena_alloc(a, 16) == pin);
  free(mem);
}

/* Random alloc / realloc / free against a shadow list of live blocks, each
 * filled with a pattern: overlapping blocks or a lost byte show up as a
 * broken pattern. The arena is small enough to run out regularly. */
static void test_random(void) {
  enum { SLOTS = 400, OPS = 60000 };
  size_t size = 12 * MiB;
  void *mem = bh__region(size);
  bh__arena *a = bh__arena_init(mem, size);
  struct {
    char *p;
    size_t n;
    uint32_t seed;
  } live[SLOTS];
  memset(live, 0, sizeof(live));
  uint32_t seeds = 0;
  int bad = 0, misaligned = 0, nulls = 0;
  for (int op = 0; op < OPS && !bad; op++) {
    int i = (int)(bh__rng() % SLOTS);
    uint64_t r = bh__rng();
    /* Mostly small sizes, a few large ones. */
    size_t n = r % 500 == 0 ? (size_t)(bh__rng() % (3 * MiB))
               : r % 4 == 0 ? (size_t)(bh__rng() % 9000)
                            : (size_t)(bh__rng() % 300);
    if (live[i].p == NULL) {
      live[i].p = bh__arena_alloc(a, n);
      if (live[i].p == NULL) {
        nulls++;
        continue;
      }
      live[i].n = n;
      live[i].seed = ++seeds;
      bh__fill(live[i].p, n, live[i].seed);
    } else if (r % 3 == 0) {
      if (!bh__intact(live[i].p, live[i].n, live[i].seed)) bad = 1;
      bh__arena_free(a, live[i].p);
      live[i].p = NULL;
    } else {
      char *q = bh__arena_realloc(a, live[i].p, n);
      if (q == NULL) {
        nulls++;
        continue; /* the old block must still be intact: checked later */
      }
      size_t keep = n < live[i].n ? n : live[i].n;
      if (!bh__intact(q, keep, live[i].seed)) bad = 1;
      live[i].p = q;
      live[i].n = n;
      live[i].seed = ++seeds;
      bh__fill(q, n, live[i].seed);
    }
    if (live[i].p && ((uintptr_t)live[i].p & 15)) misaligned++;
    if (op % 5000 == 0)
      for (int j = 0; j < SLOTS; j++)
        if (live[j].p && !bh__intact(live[j].p, live[j].n, live[j].seed))
          bad = 1;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(misaligned, 0);
  CHECK(nulls > 0); /* the arena did run out along the way */
  CHECK(bh__arena_used(a) <= size);
  for (int j = 0; j < SLOTS; j++) {
    CHECK(live[j].p == NULL || bh__intact(live[j].p, live[j].n, live[j].seed));
    bh__arena_free(a, live[j].p);
  }
  free(mem);
}

static void test_allocator(void) {
  void *mem = bh__region(64 * KiB);
  bh__arena *a = bh__arena_init(mem, 64 * KiB);
  bh__allocator al = bh__arena_allocator(a);
  CHECK(al.ctx == a);
  char *p = al.alloc(al.ctx, 5);
  CHECK(p != NULL);
  memcpy(p, "abcd", 5);
  p = al.realloc(al.ctx, p, 500);
  CHECK_STR(p, "abcd");
  size_t used = bh__arena_used(a);
  al.free(al.ctx, p);
  CHECK(al.alloc(al.ctx, 500) == p);
  CHECK_INT(bh__arena_used(a), used);
  free(mem);
}

/* The point of the arena: one process allocates and writes, another reads
 * the same pointer and frees it, through one MAP_SHARED mapping made
 * before fork. */
static void test_shared(void) {
  size_t size = 1 * MiB;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  if (mem == MAP_FAILED) return;
  bh__arena *a = bh__arena_init(mem, size);
  /* A root both sides know: the first block. */
  struct root {
    char *msg;
    int *nums;
    size_t n;
  } *root = bh__arena_alloc(a, sizeof(*root));
  memset(root, 0, sizeof(*root));
  char *parent_block = bh__arena_alloc(a, 200);
  snprintf(parent_block, 200, "from the parent");
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int ok = strcmp(parent_block, "from the parent") == 0;
    /* The parent's block, freed here, is reused here for the message. */
    bh__arena_free(a, parent_block);
    root->msg = bh__arena_alloc(a, 150);
    ok &= root->msg == parent_block;
    snprintf(root->msg, 150, "hello from pid %d", (int)getpid());
    root->n = 10000;
    root->nums = bh__arena_alloc(a, root->n * sizeof(int));
    ok &= root->nums != NULL;
    for (size_t i = 0; ok && i < root->n; i++)
      root->nums[i] = (int)(i * i);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char want[64];
  snprintf(want, sizeof(want), "hello from pid %d", (int)pid);
  CHECK_STR(root->msg, want);
  CHECK(root->nums != NULL && root->n == 10000);
  int nums_ok = root->nums != NULL;
  for (size_t i = 0; nums_ok && i < root->n; i++)
    nums_ok = root->nums[i] == (int)(i * i);
  CHECK(nums_ok);
  /* The arena state the child left is the parent's state: its block can
   * be freed here and comes straight back. */
  size_t used = bh__arena_used(a);
  int *nums = root->nums;
  bh__arena_free(a, root->nums);
  CHECK(bh__arena_alloc(a, 10000 * sizeof(int)) == nums);
  CHECK_INT(bh__arena_used(a), used);
  munmap(mem, size);
}

/* Double frees and foreign pointers stop the process instead of corrupting
 * what every process shares. */
static void test_bad_free(void) {
  void *mem = bh__region(64 * KiB);
  bh__arena *a = bh__arena_init(mem, 64 * KiB);
  void *p = bh__arena_alloc(a, 32);
  memset(p, 0, 32);
  for (int which = 0; which < 3; which++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      /* The abort message is expected: keep the test log clean. */
      if (freopen("/dev/null", "w", stderr) == NULL) _exit(2);
      if (which == 0) {
        bh__arena_free(a, p);
        bh__arena_free(a, p);
      } else if (which == 1) {
        static char outside[64];
        bh__arena_free(a, outside);
      } else {
        bh__arena_free(a, (char *)p + 16);
      }
      _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  }
  free(mem);
}

int main(void) {
  test_init();
  test_alignment();
  test_reuse();
  test_realloc();
  test_exhaustion();
  test_spans();
  test_random();
  test_allocator();
  test_shared();
  test_bad_free();
  return check_finish("test_arena");
}
