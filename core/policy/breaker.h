/*
 * Circuit breaker per upstream: closed / open / half-open on failure rate
 * and slow-call rate over a sliding time window, with a minimum number of
 * calls; plus the operator overrides forced_open, disabled and metrics_only.
 *
 * Plain data, no pointers and no clock of its own (callers pass now_ms), so
 * the struct can live in shared memory and be unit-tested deterministically.
 * Not thread-safe: callers serialise access (one loop, or a lock in shm),
 * except for the two _fast calls, which take no lock: each process counts
 * its calls in a window shard of its own (base/shard.h), and the verdicts
 * read the sum of the shards.
 */
#ifndef BH_CORE_BREAKER_H
#define BH_CORE_BREAKER_H

#include <stdint.h>

#include "base/shard.h"

#define BH__BREAKER_BUCKETS 10

enum bh__breaker_state {
  BH__BREAKER_CLOSED = 0,
  BH__BREAKER_OPEN,
  BH__BREAKER_HALF_OPEN
};

/* Operator modes (admin API). AUTO is normal operation. */
enum bh__breaker_mode {
  BH__BREAKER_AUTO = 0,
  BH__BREAKER_FORCED_OPEN, /* every call refused */
  BH__BREAKER_DISABLED,    /* every call allowed, nothing counted */
  BH__BREAKER_METRICS_ONLY /* counted and reported, never trips */
};

typedef struct bh__breaker_cfg {
  uint32_t window_ms;        /* sliding window length, default 10000 */
  uint32_t min_calls;        /* no verdict below this many calls, default 10 */
  uint32_t failure_rate_pct; /* trip at >= this failure %, default 50 */
  uint32_t slow_rate_pct;    /* trip at >= this slow-call %, default 100 */
  uint32_t slow_call_ms;     /* a call slower than this is slow, default 5000 */
  uint32_t open_ms;          /* open -> half-open after, default 30000 */
  uint32_t half_open_calls;  /* trial calls allowed in half-open, default 5 */
} bh__breaker_cfg;

typedef struct bh__breaker_bucket {
  uint64_t start_ms; /* bucket start, aligned to window_ms / BUCKETS */
  uint32_t calls, failures, slow;
} bh__breaker_bucket;

/* One process's calls in the window, on cache lines of its own: written by
 * that process only, read by any process deciding (under the lock). */
typedef struct __attribute__((aligned(BH__CACHELINE))) bh__breaker_shard {
  uint32_t gen; /* the window generation its buckets count for */
  bh__breaker_bucket buckets[BH__BREAKER_BUCKETS];
} bh__breaker_shard;

typedef struct bh__breaker {
  bh__breaker_cfg cfg;
  int state;                   /* enum bh__breaker_state */
  int mode;                    /* enum bh__breaker_mode */
  uint64_t opened_ms;          /* when it last opened */
  uint64_t transition_ms;      /* time of the last state change */
  uint64_t transitions;        /* count of state changes */
  uint32_t half_open_inflight; /* trial calls admitted, not yet recorded */
  uint32_t half_open_ok;       /* successful trials in this half-open period */
  uint32_t gen;     /* window generation: clearing the window bumps it, and
                       a shard of another generation counts as empty */
  uint32_t nshards; /* shards [0, nshards) have counted something */
  bh__breaker_shard shards[BH__SHARDS];
} bh__breaker;

/* Fills defaults for every zero field. */
void bh__breaker_cfg_defaults(bh__breaker_cfg *cfg);
void bh__breaker_init(bh__breaker *b, const bh__breaker_cfg *cfg);

/* May a call go out now? 0: yes (the caller must later call
 * bh__breaker_record exactly once for it); -EAGAIN: refused, and
 * *retry_after_ms is the time until a trial call may be admitted (>= 1). An
 * open breaker whose open_ms has passed moves to half-open here and admits
 * up to half_open_calls trial calls at once. */
int bh__breaker_allow(bh__breaker *b, uint64_t now_ms,
                      uint64_t *retry_after_ms);

/* Records the outcome of an admitted call. In half-open: any failure
 * re-opens; half_open_calls successes close (and clear the window). In
 * closed: once calls in the window >= min_calls and the failure or slow
 * rate reaches its threshold, it opens (never in METRICS_ONLY). */
void bh__breaker_record(bh__breaker *b, uint64_t now_ms, int failed,
                        uint32_t duration_ms);

/* The common path, with no lock and nothing written: 0 when the call may go
 * out for sure (closed in AUTO, or DISABLED / METRICS_ONLY); -EAGAIN when
 * it is refused for sure (FORCED_OPEN, or open with open_ms not yet
 * passed), with *retry_after_ms as bh__breaker_allow gives it; -EBUSY when
 * the answer may change the state (open_ms passed, half-open) and the
 * caller must take the lock and ask bh__breaker_allow. */
int bh__breaker_allow_fast(const bh__breaker *b, uint64_t now_ms,
                           uint64_t *retry_after_ms);
/* 1 when the outcome was recorded with no lock: a success that is not slow
 * while closed in AUTO, or any outcome outside AUTO (counted in this
 * process's shard only); 0 when it can change the state (a failure, a slow
 * call, half-open) and the caller must take the lock and call
 * bh__breaker_record, nothing recorded. */
int bh__breaker_record_fast(bh__breaker *b, uint64_t now_ms, int failed,
                            uint32_t duration_ms);

/* Operator override. Setting AUTO from FORCED_OPEN returns to closed with a
 * clean window. */
void bh__breaker_set_mode(bh__breaker *b, int mode, uint64_t now_ms);

/* Window statistics (calls, failure and slow rates in percent). */
/* Failed calls / calls in the window, 0..1 (0 with no calls): the exact
 * ratio, not the whole percentage bh__breaker_stats rounds down to. */
double bh__breaker_failure_ratio(const bh__breaker *b, uint64_t now_ms);
void bh__breaker_stats(const bh__breaker *b, uint64_t now_ms, uint32_t *calls,
                       uint32_t *failure_pct, uint32_t *slow_pct);

const char *bh__breaker_state_name(int state);
const char *bh__breaker_mode_name(int mode);
/* "auto"|"forced_open"|"disabled"|"metrics_only"|"closed" (= auto) ->
 * mode, or -EINVAL. */
int bh__breaker_mode_parse(const char *s);

#endif
