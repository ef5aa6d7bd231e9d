/*
 * The shared mapping (see shm.h).
 */
#include "state/shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BH__SHM_MAGIC 0x62756c6b68656164ull /* "bulkhead" */

bh__shm *bh__shm_g;
bh__shm_worker *bh__shm_self;
static size_t bh__shm_mapped;

uint64_t bh__shm_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int bh__shm_create(size_t size) {
  size_t head = (sizeof(bh__shm) + 4095) & ~(size_t)4095;
  if (size < head + (1u << 20)) size = head + (1u << 20);
  /* reserved, not committed: pages cost memory only once touched */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return -errno;
  bh__shm *s = p;
  memset(s, 0, sizeof(*s));
  s->magic = BH__SHM_MAGIC;
  s->size = size;
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&s->lock, &at);
  pthread_mutexattr_destroy(&at);
  if (rc) {
    munmap(p, size);
    return -rc;
  }
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    s->workers[i].plugin = -1;
  s->arena = bh__arena_init((char *)p + head, size - head);
  if (s->arena == NULL) {
    munmap(p, size);
    return -ENOMEM;
  }
  bh__shm_g = s;
  bh__shm_mapped = size;
  return 0;
}

void bh__shm_destroy(void) {
  if (bh__shm_g == NULL) return;
  pthread_mutex_destroy(&bh__shm_g->lock);
  munmap(bh__shm_g, bh__shm_mapped);
  bh__shm_g = NULL;
  bh__shm_self = NULL;
}

void bh__shm_lock(void) {
  int rc = pthread_mutex_lock(&bh__shm_g->lock);
  /* a worker died holding the lock (a plugin crashed inside a section we
   * guard): the data it guarded is plain counters, still usable */
  if (rc == EOWNERDEAD) pthread_mutex_consistent(&bh__shm_g->lock);
}

void bh__shm_unlock(void) {
  pthread_mutex_unlock(&bh__shm_g->lock);
}

bh__shm_plugin *bh__shm_plugin_find(const char *name) {
  for (int i = 0; i < BH__SHM_PLUGINS; i++)
    if (strcmp(bh__shm_g->plugins[i].name, name) == 0)
      return &bh__shm_g->plugins[i];
  return NULL;
}

bh__shm_plugin *bh__shm_plugin_slot(const char *name) {
  bh__shm_plugin *p = bh__shm_plugin_find(name);
  if (p) return p;
  for (int i = 0; i < BH__SHM_PLUGINS; i++) {
    p = &bh__shm_g->plugins[i];
    if (p->name[0] == '\0') {
      snprintf(p->name, sizeof(p->name), "%s", name);
      p->healthy = -1;
      return p;
    }
  }
  return NULL;
}

int bh__shm_plugin_index(const bh__shm_plugin *p) {
  return p ? (int)(p - bh__shm_g->plugins) : -1;
}

bh__shm_upstream *bh__shm_upstream_slot(const char *name, const char *plugin,
                                        int *created) {
  *created = 0;
  bh__shm_upstream *free_slot = NULL;
  for (int i = 0; i < BH__SHM_UPSTREAMS; i++) {
    bh__shm_upstream *u = &bh__shm_g->upstreams[i];
    if (strcmp(u->name, name) == 0) return u;
    if (u->name[0] == '\0' && free_slot == NULL) free_slot = u;
  }
  if (free_slot) {
    snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
    snprintf(free_slot->plugin, sizeof(free_slot->plugin), "%s", plugin);
    *created = 1;
  }
  return free_slot;
}

static void *bh__shm_a_alloc(void *ctx, size_t n) {
  return bh__arena_alloc(ctx, n);
}
static void *bh__shm_a_realloc(void *ctx, void *p, size_t n) {
  return bh__arena_realloc(ctx, p, n);
}
static void bh__shm_a_free(void *ctx, void *p) {
  bh__arena_free(ctx, p);
}

bh__allocator bh__shm_allocator(void) {
  bh__allocator a = {bh__shm_a_alloc, bh__shm_a_realloc, bh__shm_a_free,
                     bh__shm_g->arena};
  return a;
}

void *bh__shm_named_get(const char *name,
                        void *(*make)(const bh__allocator *a, void *arg),
                        void *arg) {
  bh__shm_named *free_slot = NULL;
  for (int i = 0; i < BH__SHM_NAMED; i++) {
    bh__shm_named *n = &bh__shm_g->named[i];
    if (n->ptr && strcmp(n->name, name) == 0) return n->ptr;
    if (n->ptr == NULL && free_slot == NULL) free_slot = n;
  }
  if (free_slot == NULL) return NULL;
  bh__allocator a = bh__shm_allocator();
  void *obj = make(&a, arg);
  if (obj) {
    snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
    free_slot->ptr = obj;
  }
  return obj;
}

bh__shm_worker *bh__shm_worker_claim(int pid, int generation) {
  bh__shm_lock();
  bh__shm_worker *w = NULL;
  for (int i = 0; i < BH__SHM_WORKERS && w == NULL; i++) {
    if (bh__shm_g->workers[i].pid == 0) {
      w = &bh__shm_g->workers[i];
      memset(w, 0, sizeof(*w));
      w->pid = pid;
      w->generation = generation;
      w->plugin = -1;
      w->started_ms = w->heartbeat_ms = bh__shm_now_ms();
      /* its shard is the slot's: counts of an earlier holder stay */
      bh__shard_self = i + 1;
    }
  }
  bh__shm_unlock();
  return w;
}

void bh__shm_worker_release(bh__shm_worker *w) {
  if (w == NULL) return;
  bh__shm_lock();
  memset(w, 0, sizeof(*w));
  w->plugin = -1;
  bh__shm_unlock();
}

uint32_t bh__shm_charge(bh__shm_plugin *p, uint64_t now_ms,
                        uint64_t window_ms) {
  p->crashes++;
  p->charges[p->charge_next % BH__SHM_CHARGES] = now_ms;
  p->charge_next++;
  uint32_t n = 0;
  for (int i = 0; i < BH__SHM_CHARGES; i++)
    if (p->charges[i] && now_ms - p->charges[i] <= window_ms) n++;
  return n;
}

uint64_t bh__shm_log_dropped(uint64_t own) {
  if (bh__shm_g == NULL) return own;
  uint64_t n = bh__shm_g->log_dropped_gone;
  if (bh__shm_self == NULL) n += own; /* the master's own */
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    if (bh__shm_g->workers[i].pid) n += bh__shm_g->workers[i].log_dropped;
  return n;
}

int bh__shm_redis_down(void) {
  if (bh__shm_g == NULL) return 0;
  int n = bh__shm_g->redis.single_down;
  for (int i = 0; i < BH__SHM_WORKERS; i++)
    if (bh__shm_g->workers[i].pid && bh__shm_g->workers[i].redis_down) n++;
  return n;
}

uint64_t bh__shm_requests_total(void) {
  if (bh__shm_g == NULL) return 0;
  uint64_t n = 0;
  for (int i = 0; i < BH__SHARDS; i++)
    n +=
        __atomic_load_n(&bh__shm_g->shards[i].requests_total, __ATOMIC_RELAXED);
  return n;
}
