/*
 * Structured JSON logs with a non-blocking producer side.
 *
 * Producers (event loops, any thread) format a line into a buffer of their
 * thread that is reused from line to line, then copy it into their thread's
 * own byte ring (base/logring.h): no allocation, no lock, one release store
 * per line on the event loop. A thread that finds no free ring shares ring
 * 0 under a mutex. One writer thread copies whole lines out of every ring
 * into a batch buffer of its own and does blocking write() calls to the
 * sink. When a ring is full, or the sink fails, lines are dropped and
 * counted: a stalled stdout pipe or a full disk must never stall request
 * handling. The rings together hold at most BH__LOG_MAX_BYTES.
 *
 * The rings and their locks are static and live forever. Each
 * bh__log_open() gets its own heap "writer" (fd, flags, batch buffer); if
 * close gives up on a writer that is stuck in write(), it detaches it and
 * the writer frees itself when it wakes, without touching the rings again:
 * it writes from its own buffer, so a later open is safe.
 */
#include "base/log.h"
#include "base/log_sink.h"
#include "base/logring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BH__LOG_MAX_BYTES (4u << 20)
#define BH__LOG_RINGS 8u /* ring 0 shared; a power of two divides the bytes */
#define BH__LOG_RING_BYTES (BH__LOG_MAX_BYTES / BH__LOG_RINGS)
#define BH__LOG_BACKOFF_MS 100
#define BH__LOG_CLOSE_MS 2000
#define BH__LOG_BUSY_MS 100

/* The writer's batch: one write() of up to this many bytes; it is also the
 * longest line (a longer one is dropped and counted). */
#define BH__LOG_BATCH_BYTES (256u << 10)
/* a batch below this means light load: the writer pauses to coalesce */
#define BH__LOG_COALESCE_BYTES (32u << 10)
#define BH__LOG_COALESCE_NS 1000000L
/* a thread's line buffer is kept between lines up to this size */
#define BH__LOG_SCRATCH_KEEP (64u << 10)

enum { BH__LOG_SYNC = 0, BH__LOG_ASYNC = 1, BH__LOG_OFF = 2 };

/* bh__lring.state of rings 1..: who may produce into it */
enum { BH__RING_FREE = 0, BH__RING_OWNED = 1 };

typedef struct bh__writer {
  pthread_t tid;
  int fd;
  int own_fd;   /* a file we opened: closed by whoever frees the writer */
  int stop;     /* close requested: drain, then exit */
  int orphaned; /* close gave up waiting: exit, free self, leave the ring */
  int running;  /* past thread start-up, which allocates outside g_mu */
  int exited;
  int failing;   /* the last write failed: on stop, drop instead of retrying */
  unsigned next; /* the ring a batch starts from: each gets its turn */
  size_t piece;  /* the largest write that keeps lines whole (log_sink.h) */
  char buf[];    /* BH__LOG_BATCH_BYTES: the batch being written */
} bh__writer;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv_work; /* writer waits for lines or stop */
static pthread_cond_t g_cv_idle; /* close waits for the writer to exit,
                                   fork_prepare for it to be running */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Serialises open/close against each other (never taken by producers). */
static pthread_mutex_t g_ctl_mu = PTHREAD_MUTEX_INITIALIZER;
/* Serialises the synchronous stderr path so concurrent lines don't mix. */
static pthread_mutex_t g_sync_mu = PTHREAD_MUTEX_INITIALIZER;

/* Producers of ring 0 (threads that found no ring of their own). */
static pthread_mutex_t g_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static bh__lring g_rings[BH__LOG_RINGS];
static char g_ring_mem[BH__LOG_RINGS][BH__LOG_RING_BYTES];
/* Consumer operations on the rings (take, drop) only under g_mu. */
static bh__writer *g_w; /* under g_mu */
/* The writer sleeps on empty rings: a producer that published a line then
 * signals. Set under g_mu, read by producers without it (see
 * bh__log_queue for the fence pairing). */
static atomic_int g_waiting;
/* Some line was published since the writer last looked: it skips the scan
 * of the rings when none was. Exchanged (read-modify-write) on both sides,
 * so the writer that reads it set also sees every line published before. */
static atomic_int g_dirty;
/* Rings 0..g_rings_hw-1 have had a producer: the writer scans only those
 * (a process has a few logging threads, not BH__LOG_RINGS). */
static atomic_uint g_rings_hw = 1;

/* A thread's side: its ring, and its line buffer lent to one line at a
 * time (a line begun while another is open gets a buffer of its own). */
typedef struct bh__logtls {
  bh__lring *ring; /* NULL until the thread's first queued line */
  bh__buf scratch;
  int lent;
  int keyed; /* the exit destructor is registered */
} bh__logtls;
static _Thread_local bh__logtls g_tls;
static pthread_key_t g_tls_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static atomic_int g_mode = BH__LOG_SYNC;
static atomic_int g_min = BH__INFO;
static atomic_uint_fast64_t g_dropped;

static const char *const g_level_names[] = {"debug", "info", "warn", "error"};

/* Condition variables on the monotonic clock, so a wall-clock step cannot
 * stretch the close bound or the error back-off. */
static void bh__log_init_once(void) {
  for (unsigned i = 0; i < BH__LOG_RINGS; i++)
    bh__lring_init(&g_rings[i], g_ring_mem[i], BH__LOG_RING_BYTES);
  atomic_store(&g_rings[0].state, BH__RING_OWNED);
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&g_cv_work, &a);
  pthread_cond_init(&g_cv_idle, &a);
  pthread_condattr_destroy(&a);
}

static struct timespec bh__deadline(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

static int bh__past(const struct timespec *dl) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > dl->tv_sec ||
         (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

static void bh__drop(uint64_t n) {
  atomic_fetch_add_explicit(&g_dropped, n, memory_order_relaxed);
}

uint64_t bh__log_dropped(void) {
  return atomic_load_explicit(&g_dropped, memory_order_relaxed);
}

/* Every ring emptied, the lines counted as dropped; g_mu held. */
static void bh__rings_drop_all(void) {
  uint64_t n = 0;
  for (unsigned i = 0; i < BH__LOG_RINGS; i++)
    n += bh__lring_drop(&g_rings[i]);
  if (n) bh__drop(n);
}

/* Whole lines from the rings into w->buf, each ring in turn from w->next
 * so a busy thread cannot starve the others; g_mu held. The bytes. */
static size_t bh__rings_take(bh__writer *w) {
  if (!atomic_exchange(&g_dirty, 0)) return 0;
  size_t n = 0;
  int left = 0;
  unsigned hw = atomic_load_explicit(&g_rings_hw, memory_order_acquire);
  if (w->next >= hw) w->next = 0;
  for (unsigned k = 0; k < hw; k++) {
    bh__lring *r = &g_rings[w->next + k < hw ? w->next + k : w->next + k - hw];
    if (n < BH__LOG_BATCH_BYTES)
      n += bh__lring_take(r, w->buf + n, BH__LOG_BATCH_BYTES - n);
    if (bh__lring_used(r) != 0) left = 1;
  }
  /* what did not fit this batch is still to be looked at */
  if (left) atomic_store(&g_dirty, 1);
  w->next = w->next + 1 < hw ? w->next + 1 : 0;
  return n;
}

/* Waits for lines, stop or orphaning; g_mu held. Lines taken, or 0. */
static size_t bh__writer_wait(bh__writer *w) {
  for (;;) {
    if (w->orphaned) return 0;
    if (w->stop && w->failing) bh__rings_drop_all();
    size_t n = bh__rings_take(w);
    if (n > 0 || w->stop) return n;
    /* Announce the sleep, then look once more: a producer publishes its
     * line and then reads g_waiting, each side with a full fence between,
     * so either we see its line or it sees us waiting and signals. */
    atomic_store_explicit(&g_waiting, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    n = bh__rings_take(w);
    if (n == 0 && !w->stop && !w->orphaned)
      pthread_cond_wait(&g_cv_work, &g_mu);
    atomic_store_explicit(&g_waiting, 0, memory_order_relaxed);
    if (n > 0) return n;
  }
}

static void *bh__writer_main(void *arg) {
  bh__writer *w = arg;
  /* SIGPIPE from a write() is directed at the writing thread; blocking it
   * here keeps a closed pipe from killing the process even if something
   * later restores the default disposition. The error arrives as EPIPE. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  pthread_mutex_lock(&g_mu);
  w->running = 1;
  pthread_cond_broadcast(&g_cv_idle);
  for (;;) {
    size_t n = bh__writer_wait(w);
    if (n == 0) break; /* orphaned, or stopped with nothing left */
    int stopping = w->stop;
    pthread_mutex_unlock(&g_mu);

    /* from the writer's own buffer: the rings' room is already free */
    int rc = bh__log_sink_write(w->fd, w->piece, w->buf, n);
    /* a small batch means light load: wait a moment (without being woken)
     * so the next lines share a syscall; the latency only delays logs */
    if (rc == 0 && n < BH__LOG_COALESCE_BYTES && !stopping) {
      struct timespec pause = {0, BH__LOG_COALESCE_NS};
      nanosleep(&pause, NULL);
    }

    pthread_mutex_lock(&g_mu);
    w->failing = rc != 0;
    if (rc != 0) {
      bh__drop(bh__lring_lines(w->buf, n));
      /* EPIPE, EBADF, ENOSPC, EIO...: the sink may recover (disk freed,
       * log rotated), so keep going, but pause so a dead sink costs no CPU;
       * meanwhile the rings fill and producers drop cheaply. */
      struct timespec dl = bh__deadline(BH__LOG_BACKOFF_MS);
      while (!w->stop && !w->orphaned && !bh__past(&dl))
        pthread_cond_timedwait(&g_cv_work, &g_mu, &dl);
    }
  }
  w->exited = 1;
  int orphaned = w->orphaned;
  pthread_cond_broadcast(&g_cv_idle);
  pthread_mutex_unlock(&g_mu);
  if (orphaned) {
    /* close() has forgotten us: nobody else references w any more */
    if (w->own_fd) close(w->fd);
    free(w);
  }
  return NULL;
}

int bh__log_level_parse(const char *s) {
  if (s == NULL) return -EINVAL;
  for (int i = 0; i < 4; i++)
    if (strcmp(s, g_level_names[i]) == 0) return i;
  return -EINVAL;
}

static int g_format; /* enum bh__log_format */

int bh__log_format_parse(const char *s) {
  static const char *const names[] = {"bulkhead", "ecs", "otel"};
  if (s == NULL) return -EINVAL;
  for (int i = 0; i < 3; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -EINVAL;
}

void bh__log_set_format(int format) {
  g_format = format;
}

int bh__log_get_format(void) {
  return g_format;
}

static int bh__log_open_locked(const char *target, int min_level) {
  if (atomic_load(&g_mode) != BH__LOG_SYNC) return -EALREADY;

  if (strcmp(target, "off") == 0) {
    atomic_store(&g_min, min_level);
    atomic_store(&g_mode, BH__LOG_OFF);
    return 0;
  }

  int fd, own = 0;
  if (strcmp(target, "stdout") == 0) {
    fd = STDOUT_FILENO;
  } else if (strcmp(target, "stderr") == 0) {
    fd = STDERR_FILENO;
  } else {
    if (target[0] == '\0') return -EINVAL;
    fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    own = 1;
  }

  /* Process-wide too, not only in the writer: the synchronous stderr path
   * (before open / after close) writes from any thread, and so do the event
   * loops on sockets; a peer or a log reader going away must surface as
   * EPIPE, never kill the daemon. A handler someone installed on purpose is
   * left alone. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
      !(sa.sa_flags & SA_SIGINFO)) {
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }

  bh__writer *w = calloc(1, sizeof(*w) + BH__LOG_BATCH_BYTES);
  if (w == NULL) {
    if (own) close(fd);
    return -ENOMEM;
  }
  w->fd = fd;
  w->own_fd = own;
  w->piece = bh__log_sink_piece(fd);

  /* The writer starts with every signal blocked so SIGINT/SIGTERM/SIGHUP
   * are delivered to the loop threads that handle them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&w->tid, NULL, bh__writer_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    if (own) close(fd);
    free(w);
    return -rc;
  }
#ifdef __GLIBC__
  pthread_setname_np(w->tid, "bh-log");
#endif

  pthread_mutex_lock(&g_mu);
  g_w = w;
  atomic_store(&g_min, min_level);
  atomic_store(&g_mode, BH__LOG_ASYNC);
  pthread_mutex_unlock(&g_mu);
  return 0;
}

int bh__log_open(const char *target, int min_level) {
  if (target == NULL || min_level < BH__DEBUG || min_level > BH__ERROR)
    return -EINVAL;
  pthread_once(&g_once, bh__log_init_once);
  pthread_mutex_lock(&g_ctl_mu);
  int rc = bh__log_open_locked(target, min_level);
  pthread_mutex_unlock(&g_ctl_mu);
  return rc;
}

/* After the switch to synchronous mode: waits until no producer is still
 * putting a line it took for queued into a ring, so the writer's final
 * drain sees every such line. A producer marks its ring busy, fences, then
 * reads the mode; we stored the mode, fence, then read busy: one of the
 * two sees the other. Ring 0's producers hold g_shared_mu instead. */
static void bh__producers_settle(void) {
  atomic_thread_fence(memory_order_seq_cst);
  pthread_mutex_lock(&g_shared_mu);
  pthread_mutex_unlock(&g_shared_mu);
  struct timespec dl = bh__deadline(BH__LOG_BUSY_MS);
  for (unsigned i = 1; i < BH__LOG_RINGS; i++) {
    while (atomic_load_explicit(&g_rings[i].busy, memory_order_acquire) &&
           !bh__past(&dl))
      sched_yield();
  }
}

static void bh__log_close_locked(void) {
  pthread_mutex_lock(&g_mu);
  int mode = atomic_load(&g_mode);
  /* from here on new lines take the synchronous stderr path */
  atomic_store(&g_mode, BH__LOG_SYNC);
  bh__writer *w = g_w;
  g_w = NULL;
  if (mode != BH__LOG_ASYNC || w == NULL) {
    pthread_mutex_unlock(&g_mu);
    return;
  }
  bh__producers_settle();
  w->stop = 1;
  pthread_cond_broadcast(&g_cv_work);
  struct timespec dl = bh__deadline(BH__LOG_CLOSE_MS);
  while (!w->exited && !bh__past(&dl))
    pthread_cond_timedwait(&g_cv_idle, &g_mu, &dl);
  if (w->exited) {
    pthread_mutex_unlock(&g_mu);
    pthread_join(w->tid, NULL);
    if (w->own_fd) close(w->fd);
    free(w);
    return;
  }
  /* Still blocked in write() (a stalled pipe): what is queued will never
   * get out in time. Drop it, and let the writer free itself whenever the
   * write returns; it owns w and its fd from now on. */
  w->orphaned = 1;
  bh__rings_drop_all();
  pthread_cond_broadcast(&g_cv_work);
  pthread_detach(w->tid);
  pthread_mutex_unlock(&g_mu);
}

void bh__log_fork_prepare(void) {
  pthread_once(&g_once, bh__log_init_once);
  pthread_mutex_lock(&g_ctl_mu);
  pthread_mutex_lock(&g_mu);
  /* A thread still starting up may be inside the allocator unlocked. */
  struct timespec dl = bh__deadline(BH__LOG_CLOSE_MS);
  while (g_w != NULL && !g_w->running && !g_w->exited && !bh__past(&dl))
    pthread_cond_timedwait(&g_cv_idle, &g_mu, &dl);
}

void bh__log_fork_parent(void) {
  pthread_mutex_unlock(&g_mu);
  pthread_mutex_unlock(&g_ctl_mu);
}

int bh__log_after_fork(void) {
  /* The child has no writer thread, and the parent's may have held any of
   * these locks at the instant of fork(): start over from fresh locks. */
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_mu = fresh;
  g_ctl_mu = fresh;
  g_sync_mu = fresh;
  g_shared_mu = fresh;
  atomic_store(&g_waiting, 0);
  atomic_store(&g_dirty, 0);
  /* Empty rings, all free: queued lines belong to the parent, which writes
   * them, and the threads that owned rings do not exist here; but this
   * thread keeps the ring it owns. */
  bh__log_init_once();
  if (g_tls.ring != NULL && g_tls.ring != &g_rings[0])
    atomic_store(&g_tls.ring->state, BH__RING_OWNED);
  int mode = atomic_load(&g_mode);
  bh__writer *old = g_w;
  g_w = NULL;
  if (mode != BH__LOG_ASYNC || old == NULL) return 0;
  bh__writer *w = calloc(1, sizeof(*w) + BH__LOG_BATCH_BYTES);
  if (w == NULL) {
    atomic_store(&g_mode, BH__LOG_SYNC);
    return -ENOMEM;
  }
  w->fd = old->fd;
  w->own_fd = old->own_fd;
  w->piece = old->piece;
  free(old);
  sigset_t all, prev;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &prev);
  int rc = pthread_create(&w->tid, NULL, bh__writer_main, w);
  pthread_sigmask(SIG_SETMASK, &prev, NULL);
  if (rc != 0) {
    free(w);
    atomic_store(&g_mode, BH__LOG_SYNC);
    return -rc;
  }
  g_w = w;
  return 0;
}

void bh__log_close(void) {
  pthread_once(&g_once, bh__log_init_once);
  pthread_mutex_lock(&g_ctl_mu);
  bh__log_close_locked();
  pthread_mutex_unlock(&g_ctl_mu);
}

/* Before open and after close: straight to stderr, one write per line. */
static void bh__write_sync(const char *p, size_t n) {
  pthread_mutex_lock(&g_sync_mu);
  if (bh__log_sink_write(STDERR_FILENO, 0, p, n) != 0) bh__drop(1);
  pthread_mutex_unlock(&g_sync_mu);
}

/* A thread that ends gives its ring back (whatever it queued stays for
 * the writer; the next owner appends after it) and frees its buffer. */
static void bh__logtls_exit(void *arg) {
  bh__logtls *t = arg;
  if (t->ring != NULL && t->ring != &g_rings[0])
    atomic_store_explicit(&t->ring->state, BH__RING_FREE, memory_order_release);
  t->ring = NULL;
  t->keyed = 0; /* a line logged by a later destructor registers again */
  bh__buf_free(&t->scratch);
}

static void bh__logtls_key(void) {
  pthread_key_create(&g_tls_key, bh__logtls_exit);
}

static void bh__logtls_keyed(bh__logtls *t) {
  if (t->keyed) return;
  pthread_once(&g_key_once, bh__logtls_key);
  t->keyed = pthread_setspecific(g_tls_key, t) == 0;
}

/* The thread's first queued line: a free ring of its own, else ring 0.
 * An empty one first: a ring given back by a thread that just ended may
 * still hold its lines, and a burst from each of a few short-lived threads
 * should each get a whole ring's room. */
static void bh__logtls_claim(bh__logtls *t) {
  bh__logtls_keyed(t);
  for (int pass = 0; pass < 2; pass++) {
    for (unsigned i = 1; i < BH__LOG_RINGS; i++) {
      int free_ = BH__RING_FREE;
      if (pass == 0 && bh__lring_used(&g_rings[i]) != 0) continue;
      if (atomic_compare_exchange_strong(&g_rings[i].state, &free_,
                                         BH__RING_OWNED)) {
        t->ring = &g_rings[i];
        /* raised before the first line is put: the writer's next scan,
         * after that line's release store, covers this ring */
        unsigned hw = atomic_load(&g_rings_hw);
        while (hw < i + 1 &&
               !atomic_compare_exchange_weak(&g_rings_hw, &hw, i + 1)) {
        }
        return;
      }
    }
  }
  t->ring = &g_rings[0];
}

/* Queues one line: 0 (queued, or dropped and counted), or 1 when the log
 * is not asynchronous (any more) and the caller writes it itself. */
static int bh__log_queue(const char *p, size_t n) {
  bh__logtls *t = &g_tls;
  if (t->ring == NULL) bh__logtls_claim(t);
  bh__lring *r = t->ring;
  int rc;
  if (r != &g_rings[0]) {
    /* busy, fence, mode: pairs with bh__producers_settle() */
    atomic_store_explicit(&r->busy, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&g_mode, memory_order_relaxed) != BH__LOG_ASYNC) {
      atomic_store_explicit(&r->busy, 0, memory_order_release);
      return 1;
    }
    rc = n > BH__LOG_BATCH_BYTES ? -EMSGSIZE : bh__lring_put(r, p, n);
    atomic_store_explicit(&r->busy, 0, memory_order_release);
  } else {
    pthread_mutex_lock(&g_shared_mu);
    if (atomic_load_explicit(&g_mode, memory_order_relaxed) != BH__LOG_ASYNC) {
      pthread_mutex_unlock(&g_shared_mu);
      return 1;
    }
    rc = n > BH__LOG_BATCH_BYTES ? -EMSGSIZE : bh__lring_put(r, p, n);
    pthread_mutex_unlock(&g_shared_mu);
  }
  if (rc != 0) {
    bh__drop(1);
    return 0;
  }
  /* published, g_dirty, fence, g_waiting: pairs with bh__writer_wait();
   * the lock is taken only when the writer sleeps, never while it writes
   * or pauses */
  atomic_exchange(&g_dirty, 1);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&g_waiting, memory_order_relaxed)) {
    pthread_mutex_lock(&g_mu);
    pthread_cond_signal(&g_cv_work);
    pthread_mutex_unlock(&g_mu);
  }
  return 0;
}

/* The line's buffer back to the thread (kept for the next line unless it
 * grew large), or freed when it was a buffer of its own. */
static void bh__log_release(bh__logline *l) {
  if (!l->lent) {
    bh__buf_free(&l->b);
    return;
  }
  l->lent = 0;
  g_tls.lent = 0;
  if (l->b.cap > BH__LOG_SCRATCH_KEEP) {
    bh__buf_free(&l->b);
    bh__buf_init(&g_tls.scratch);
    return;
  }
  g_tls.scratch = l->b;
  bh__logtls_keyed(&g_tls);
}

/* A finished line: queued for the writer thread, or written here when the
 * log is synchronous (or closed meanwhile). */
static void bh__log_submit(bh__logline *l) {
  if (bh__buf_failed(&l->b)) {
    bh__log_release(l);
    bh__drop(1);
    return;
  }
  if (atomic_load_explicit(&g_mode, memory_order_relaxed) == BH__LOG_ASYNC &&
      bh__log_queue(l->b.data, l->b.len) == 0) {
    bh__log_release(l);
    return;
  }
  if (atomic_load_explicit(&g_mode, memory_order_relaxed) != BH__LOG_OFF)
    bh__write_sync(l->b.data, l->b.len);
  bh__log_release(l);
}

/* "2026-01-02T03:04:05.678Z". The formatted seconds are cached per thread:
 * gmtime_r once a second instead of once a line. */
static void bh__log_time(char out[25]) {
  static _Thread_local time_t cached_sec = (time_t)-1;
  static _Thread_local char cached[21]; /* "YYYY-MM-DDTHH:MM:SS." */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* by hand: fixed width, and no format-truncation reasoning needed */
    int v[6] = {(tm.tm_year + 1900) % 10000,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec};
    static const char sep[] = "--T::.";
    char *o = cached;
    for (int i = 0; i < 6; i++) {
      if (i == 0) {
        *o++ = (char)('0' + v[0] / 1000);
        *o++ = (char)('0' + v[0] / 100 % 10);
      }
      *o++ = (char)('0' + v[i] / 10 % 10);
      *o++ = (char)('0' + v[i] % 10);
      *o++ = sep[i];
    }
    *o = '\0';
    cached_sec = ts.tv_sec;
  }
  unsigned ms = (unsigned)(ts.tv_nsec / 1000000L);
  memcpy(out, cached, 20);
  out[20] = (char)('0' + ms / 100);
  out[21] = (char)('0' + ms / 10 % 10);
  out[22] = (char)('0' + ms % 10);
  out[23] = 'Z';
  out[24] = '\0';
}

void bh__log_begin(bh__logline *l, int level, const char *event) {
  bh__log_begin_sized(l, level, event, 0);
}

void bh__log_begin_sized(bh__logline *l, int level, const char *event,
                         size_t size) {
  bh__buf_init(&l->b);
  l->level = level;
  l->lent = 0;
  l->skip = level < atomic_load_explicit(&g_min, memory_order_relaxed) ||
            atomic_load_explicit(&g_mode, memory_order_relaxed) == BH__LOG_OFF;
  if (l->skip) return;
  if (!g_tls.lent) {
    /* the thread's buffer, grown by earlier lines: usually no allocation */
    g_tls.lent = 1;
    l->lent = 1;
    l->b = g_tls.scratch;
    l->b.len = 0;
    l->b.failed = 0;
  }
  if (size && l->b.cap <= size) bh__buf_grow(&l->b, size);
  if (level < BH__DEBUG) level = BH__DEBUG;
  if (level > BH__ERROR) level = BH__ERROR;
  char t[25];
  bh__log_time(t);
  /* time, level, event under the format's names; the pieces' lengths
   * known at compile time */
#define BH__LK(lit)                                                            \
  { lit, sizeof(lit) - 1 }
  static const struct {
    const char *s;
    size_t n;
  } keys[3][3] = {
      {BH__LK("{\"time\":\""), BH__LK("\",\"level\":\""),
       BH__LK("\",\"event\":")},
      {BH__LK("{\"@timestamp\":\""), BH__LK("\",\"log.level\":\""),
       BH__LK("\",\"event.action\":")},
      {BH__LK("{\"timestamp\":\""), BH__LK("\",\"severity_text\":\""),
       BH__LK("\",\"event.name\":")},
  };
#undef BH__LK
  int f = g_format >= 0 && g_format < 3 ? g_format : 0;
  bh__buf_append(&l->b, keys[f][0].s, keys[f][0].n);
  bh__buf_append(&l->b, t, 24);
  bh__buf_append(&l->b, keys[f][1].s, keys[f][1].n);
  bh__buf_puts(&l->b, g_level_names[level]);
  bh__buf_append(&l->b, keys[f][2].s, keys[f][2].n);
  bh__buf_json_str(&l->b, event);
}

void bh__log_str(bh__logline *l, const char *key, const char *value) {
  if (l->skip) return;
  bh__buf_json_key(&l->b, key);
  bh__buf_json_str(&l->b, value);
}

void bh__log_int(bh__logline *l, const char *key, int64_t value) {
  if (l->skip) return;
  bh__buf_json_key(&l->b, key);
  bh__buf_i64(&l->b, value);
}

void bh__log_kstr(bh__logline *l, const bh__jkey *key, const char *value) {
  if (l->skip) return;
  bh__buf_json_kv(&l->b, key, value);
}

void bh__log_kint(bh__logline *l, const bh__jkey *key, int64_t value) {
  if (l->skip) return;
  bh__buf_append(&l->b, key->s, key->n);
  bh__buf_i64(&l->b, value);
}

void bh__log_kraw(bh__logline *l, const bh__jkey *key, const char *value) {
  if (l->skip) return;
  size_t n = strlen(value);
  bh__buf *b = &l->b;
  if ((b->failed || b->cap - b->len <= key->n + n + 2) &&
      bh__buf_grow(b, key->n + n + 2) != 0)
    return;
  char *o = b->data + b->len;
  memcpy(o, key->s, key->n);
  o[key->n] = '"';
  memcpy(o + key->n + 1, value, n);
  o[key->n + 1 + n] = '"';
  b->len += key->n + n + 2;
  b->data[b->len] = '\0';
}

void bh__log_end(bh__logline *l) {
  if (l->skip) {
    bh__log_release(l);
    return;
  }
  bh__buf_puts(&l->b, "}\n");
  bh__log_submit(l);
}

void bh__logf(int level, const char *event, const char *fmt, ...) {
  bh__logline l;
  bh__log_begin(&l, level, event);
  if (l.skip) return;
  /* most messages fit the stack buffer; longer ones take one allocation */
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) {
    bh__log_str(&l, "msg", "");
  } else if ((size_t)n < sizeof(small)) {
    bh__buf_puts(&l.b, ",\"msg\":");
    bh__buf_json_strn(&l.b, small, (size_t)n);
  } else {
    bh__buf tmp;
    bh__buf_init(&tmp);
    va_start(ap, fmt);
    bh__buf_vprintf(&tmp, fmt, ap);
    va_end(ap);
    bh__buf_puts(&l.b, ",\"msg\":");
    if (bh__buf_failed(&tmp))
      l.b.failed = 1;
    else
      bh__buf_json_strn(&l.b, tmp.data, tmp.len);
    bh__buf_free(&tmp);
  }
  bh__log_end(&l);
}
