/*
 * Retry policy shared by every upstream: what may be retried, how long to
 * wait, and a budget so an outage never multiplies load.
 */
#ifndef BH_CORE_RETRY_H
#define BH_CORE_RETRY_H

#include <stdint.h>

#include "base/shard.h"

typedef struct bh__retry_cfg {
  uint32_t max_retries; /* retries after the first attempt, default 2 */
  uint32_t base_ms;     /* backoff base, default 100 */
  uint32_t cap_ms;      /* backoff cap, default 2000 */
  uint32_t
      budget_pct; /* retries <= pct of requests in the window, default 20 */
  uint32_t budget_min;        /* retries always allowed per window, default 3 */
  uint32_t budget_window_ms;  /* default 10000 */
  uint32_t max_retry_after_s; /* longest upstream Retry-After honoured, 30 */
} bh__retry_cfg;

/* Sets every field to its default (not only zero ones: 0 is a valid
 * max_retries or budget_min); apply config overrides after it. */
void bh__retry_cfg_defaults(bh__retry_cfg *cfg);

/* Methods safe to repeat (RFC 9110 idempotent): GET HEAD OPTIONS PUT DELETE
 * TRACE. A POST/PATCH only when the caller marked it (Idempotency-Key). */
int bh__retry_method_ok(const char *method, int marked_safe);

/* Outcomes worth another try: transport kinds connect / DNS / reset before
 * any response byte (transport = bh_transport_kind mask; timeout is NOT
 * retried: the deadline is spent), or HTTP 408, 429, 502, 503, 504. */
int bh__retry_outcome_ok(uint32_t transport, int status);

/* Full-jitter exponential backoff for retry number `attempt` (1 = first
 * retry): rand in [0, min(cap, base * 2^(attempt-1))]. `rnd` is a uniform
 * 64-bit random value supplied by the caller (testable). If the upstream
 * sent Retry-After (retry_after_ms >= 0), the wait is at least that; a
 * Retry-After above max_retry_after_s means "do not retry": returns -1. */
int64_t bh__retry_delay_ms(const bh__retry_cfg *cfg, uint32_t attempt,
                           uint64_t rnd, int64_t retry_after_ms);

/* One process's requests in the budget's window, on cache lines of its
 * own (base/shard.h): every call counts one, so a shared counter would be
 * a line two workers write per call. Written by that process only. */
typedef struct __attribute__((aligned(BH__CACHELINE))) bh__retry_budget_shard {
  uint64_t window_start_ms; /* a multiple of the window, like the budget's */
  uint32_t requests_prev, requests_cur;
} bh__retry_budget_shard;

/* Retry budget (Envoy-like, over a sliding window of requests). Plain
 * data so it can live in shared memory. */
typedef struct bh__retry_budget {
  uint64_t window_start_ms;
  /* two-bucket sliding window; requests_* are the shards' sum as of the
   * last bh__retry_budget_take */
  uint32_t requests_prev, requests_cur;
  uint32_t retries_prev, retries_cur;
  uint32_t nshards; /* shards [0, nshards) have counted */
  bh__retry_budget_shard shards[BH__SHARDS];
} bh__retry_budget;

/* Counts one request in this process's shard: no lock needed, whatever
 * other processes do at the same time. */
void bh__retry_budget_request(bh__retry_budget *b, const bh__retry_cfg *cfg,
                              uint64_t now_ms);
/* Under the caller's lock: 1 and the retry counted, or 0 when the budget is
 * spent. Allowed while
 * retries in the window < max(budget_min, budget_pct% of requests). */
int bh__retry_budget_take(bh__retry_budget *b, const bh__retry_cfg *cfg,
                          uint64_t now_ms);

/* Parses a Retry-After value: delta-seconds or an HTTP-date (relative to
 * now_s, the Unix time). Returns seconds >= 0, or -1 when unparsable. */
int64_t bh__retry_after_parse(const char *value, int64_t now_s);

#endif
