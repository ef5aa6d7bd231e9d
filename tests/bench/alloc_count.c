/*
 * LD_PRELOAD allocation counter for tests/bench/allocs.py: counts malloc,
 * calloc, realloc (and the aligned variants) of the whole process, every
 * thread, into the first 8 bytes of $BH_ALLOC_COUNT_OUT (mapped shared,
 * so the count can be read while the process runs and whatever way it
 * ends). glibc's __libc_* entry points do the work, so nothing here
 * allocates.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

/* the build hides symbols by default: these must interpose */
#define BH__EXPORT __attribute__((visibility("default")))

static unsigned long bh__early;
static unsigned long *bh__count = &bh__early;
#define bh__allocs (*bh__count)

__attribute__((constructor)) static void bh__alloc_map(void) {
  const char *path = getenv("BH_ALLOC_COUNT_OUT");
  if (path == NULL) return;
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ftruncate(fd, sizeof(unsigned long)) != 0) return;
  void *p = mmap(NULL, sizeof(unsigned long), PROT_READ | PROT_WRITE,
                 MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return;
  *(unsigned long *)p = bh__early;
  bh__count = p;
}

BH__EXPORT void *malloc(size_t n) {
  __atomic_fetch_add(&bh__allocs, 1, __ATOMIC_RELAXED);
  return __libc_malloc(n);
}

BH__EXPORT void *calloc(size_t a, size_t b) {
  __atomic_fetch_add(&bh__allocs, 1, __ATOMIC_RELAXED);
  return __libc_calloc(a, b);
}

BH__EXPORT void *realloc(void *p, size_t n) {
  __atomic_fetch_add(&bh__allocs, 1, __ATOMIC_RELAXED);
  return __libc_realloc(p, n);
}

BH__EXPORT int posix_memalign(void **out, size_t align, size_t n) {
  __atomic_fetch_add(&bh__allocs, 1, __ATOMIC_RELAXED);
  void *p = __libc_memalign(align, n);
  if (p == NULL) return 12; /* ENOMEM */
  *out = p;
  return 0;
}

BH__EXPORT void *aligned_alloc(size_t align, size_t n) {
  __atomic_fetch_add(&bh__allocs, 1, __ATOMIC_RELAXED);
  return __libc_memalign(align, n);
}

BH__EXPORT void free(void *p) {
  __libc_free(p);
}
