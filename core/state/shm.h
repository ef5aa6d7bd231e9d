/*
 * State every process of the daemon must agree on, in one shared mapping
 * created by the master before it forks workers (so it sits at the same
 * address everywhere and pointers inside it stay valid):
 *  - worker slots: pid, heartbeat, and which plugin callback is running,
 *    so the master can charge a crash or a hang to the right plugin;
 *  - plugin slots: crash charges, quarantine, and what workers publish for
 *    the admin API (state, version, routes, catalogue);
 *  - upstream slots: circuit breaker and retry budget per upstream;
 *  - named objects in an arena: the metrics registry, rate-limit tables.
 * One robust process-shared mutex guards all of it; a worker that dies
 * holding it does not wedge the others.
 */
#ifndef BH_CORE_SHM_H
#define BH_CORE_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/shard.h"
#include "policy/breaker.h"
#include "policy/retry.h"

#define BH__SHM_WORKERS 64
#define BH__SHM_PLUGINS 32
#define BH__SHM_UPSTREAMS 64
#define BH__SHM_NAMED 64
#define BH__SHM_CHARGES 16

enum bh__callback {
  BH__CB_NONE = 0,
  BH__CB_INIT,
  BH__CB_START,
  BH__CB_HANDLER,
  BH__CB_UPSTREAM,
  BH__CB_STOP,
  BH__CB_FINI,
  BH__CB_HEALTH
};

/* A worker slot is written by its worker on every loop turn (heartbeat,
 * callback marks, connections): one cache line or two of its own, so
 * neighbouring slots do not share a line. */
typedef struct __attribute__((aligned(BH__CACHELINE))) bh__shm_worker {
  volatile int32_t pid;        /* 0: free slot */
  volatile int32_t generation; /* config generation it runs */
  volatile int32_t ready;      /* listening and plugins started */
  volatile int32_t draining;
  volatile int32_t plugin;        /* slot of the plugin executing, -1 none */
  volatile int32_t callback;      /* enum bh__callback */
  volatile uint64_t enter_ms;     /* when that callback began (monotonic) */
  volatile uint64_t heartbeat_ms; /* last loop turn (monotonic) */
  volatile int64_t connections;   /* its open client connections: a slot
                                     dies with its worker, so does this */
  volatile uint64_t log_dropped;  /* its dropped log lines, published */
  volatile int32_t redis_down;    /* its rate limits run on local buckets
                                     (upstream/redis.c) */
  uint64_t started_ms;
} bh__shm_worker;

typedef struct bh__shm_plugin {
  char name[40]; /* "" = free slot */
  /* published by the workers that load it */
  int32_t state; /* enum bh__plugin_state */
  int32_t required;
  char reason[32];
  char version[32];
  char abi[16];
  char path[256];
  char last_error[256];
  char mounts[512];  /* JSON array text */
  char routes[4096]; /* JSON array text */
  int32_t healthy;   /* -1 unknown, 0, 1 */
  char health_detail[128];
  /* containment, maintained by the master */
  uint32_t crashes;                  /* charges since start */
  uint64_t charges[BH__SHM_CHARGES]; /* ring of charge times, monotonic ms */
  uint32_t charge_next;
  int32_t quarantined;
  uint64_t quarantined_at; /* unix seconds */
  char quarantine_why[160];
  char last_crash[160];
} bh__shm_plugin;

typedef struct bh__shm_upstream {
  char name[56];
  char plugin[40];
  bh__breaker breaker;
  bh__retry_budget budget;
  char last_error[160];
  uint64_t last_error_ms; /* unix ms */
} bh__shm_upstream;

/* The shared rate-limit backend as the processes see it: each process
 * flags itself down in its own slot (the single process in
 * single_down), so a worker that dies takes its flag with it; the daemon
 * is "down" while any process is. Counters and the last error are written
 * under the lock. */
typedef struct bh__shm_redis {
  int32_t configured;      /* some policy has backend = redis */
  int32_t single_down;     /* the single process (no worker slot) */
  uint64_t down_total;     /* daemon transitions shared -> fallback */
  uint64_t up_total;       /* daemon transitions fallback -> shared */
  uint64_t fallback_total; /* checks decided on local buckets */
  uint64_t timeouts_total; /* answers later than timeout_ms */
  uint64_t changed_ms;     /* unix ms of the last transition */
  char last_error[160];
} bh__shm_redis;

/* What one process counts on every request, on cache lines no other
 * process writes (base/shard.h): indexed by shard, never cleared, so a
 * replaced worker's counts stay in the totals. */
typedef struct __attribute__((aligned(BH__CACHELINE))) bh__shm_shard {
  volatile uint64_t requests_total; /* answers sent (atomic) */
} bh__shm_shard;

typedef struct bh__shm_named {
  char name[48];
  void *ptr;
} bh__shm_named;

typedef struct bh__shm {
  uint64_t magic;
  size_t size;
  pthread_mutex_t lock;
  volatile int32_t generation; /* current config generation */
  volatile int32_t master_pid;
  volatile int32_t reload_requested;  /* set by admin, acted on by master */
  volatile int64_t connections;       /* atomic: the master's own connections */
  volatile uint64_t log_dropped_gone; /* dropped by workers that exited */
  /* atomic: the identity store's last job found it unusable (any worker's
   * last outcome; the admin API reports it) */
  volatile int32_t identity_store_down;
  bh__shm_worker workers[BH__SHM_WORKERS];
  bh__shm_shard shards[BH__SHARDS];
  bh__shm_plugin plugins[BH__SHM_PLUGINS];
  bh__shm_upstream upstreams[BH__SHM_UPSTREAMS];
  bh__shm_named named[BH__SHM_NAMED];
  bh__shm_redis redis;
  size_t catalogue_len;
  char catalogue[131072]; /* code catalogue JSON, published by workers */
  bh__arena *arena;
} bh__shm;

/* The process's view of the mapping, NULL before bh__shm_create. */
extern bh__shm *bh__shm_g;
/* This process's worker slot (NULL in the master). */
extern bh__shm_worker *bh__shm_self;

/* Maps `size` bytes shared and anonymous, formats them. 0 or -errno. */
int bh__shm_create(size_t size);
void bh__shm_destroy(void);

void bh__shm_lock(void);
void bh__shm_unlock(void);

/* Monotonic milliseconds (the same clock in every process). */
uint64_t bh__shm_now_ms(void);

/* Find-or-create by name, under the lock; NULL when the table is full. */
bh__shm_plugin *bh__shm_plugin_slot(const char *name);
bh__shm_plugin *bh__shm_plugin_find(const char *name);
int bh__shm_plugin_index(const bh__shm_plugin *p);
bh__shm_upstream *bh__shm_upstream_slot(const char *name, const char *plugin,
                                        int *created);
/* A named object in the arena: returns the existing one, or calls make()
 * (under the lock, with the arena allocator) and stores its result. */
void *bh__shm_named_get(const char *name,
                        void *(*make)(const bh__allocator *a, void *arg),
                        void *arg);
bh__allocator bh__shm_allocator(void);

/* Worker slots. */
bh__shm_worker *bh__shm_worker_claim(int pid, int generation);
void bh__shm_worker_release(bh__shm_worker *w);

/* Records a charge against plugin slot p at now_ms; returns how many
 * charges fall within window_ms (lock held by caller). */
uint32_t bh__shm_charge(bh__shm_plugin *p, uint64_t now_ms, uint64_t window_ms);

static inline void bh__shm_count(volatile uint64_t *c) {
  __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}
static inline void bh__shm_gauge(volatile int64_t *g, int64_t delta) {
  __atomic_fetch_add(g, delta, __ATOMIC_RELAXED);
}

_Static_assert(BH__SHARDS == BH__SHM_WORKERS + 1,
               "a shard per worker slot, plus the master's");

/* One answer sent by this process, counted in its own shard. */
static inline void bh__shm_count_request(void) {
  bh__shm_count(&bh__shm_g->shards[bh__shard_self].requests_total);
}
/* Answers sent by every process since the mapping was made. */
uint64_t bh__shm_requests_total(void);

/* Processes whose rate limits fell back to local buckets (caller holds
 * the lock). */
int bh__shm_redis_down(void);

/* Log lines dropped by the whole daemon (caller holds no lock). */
uint64_t bh__shm_log_dropped(uint64_t own);

/* Marks the calling process as executing plugin slot `plugin` in callback
 * `cb` (or nothing: plugin -1). Returns the previous mark to restore. */
static inline int64_t bh__shm_enter(int plugin, int cb) {
  bh__shm_worker *w = bh__shm_self;
  if (w == NULL) return -1;
  /* plugin may be -1, so offset it rather than shift a negative value. */
  int64_t prev = ((int64_t)w->plugin + 1) * 256 + (w->callback & 0xff);
  w->enter_ms = bh__shm_now_ms();
  w->callback = cb;
  w->plugin = plugin;
  return prev;
}
static inline void bh__shm_leave(int64_t prev) {
  bh__shm_worker *w = bh__shm_self;
  if (w == NULL) return;
  w->plugin = (int32_t)(prev / 256 - 1);
  w->callback = (int32_t)(prev % 256);
  if (w->plugin >= 0) w->enter_ms = bh__shm_now_ms();
}

#endif
