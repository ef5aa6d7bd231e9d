/*
 * Circuit breaker: a time-bucketed sliding window plus a small state
 * machine. Everything is lazy (no timers): stale buckets are reset when
 * touched, and open -> half-open happens in allow() once open_ms has passed,
 * so the struct needs no clock and can live in shared memory.
 *
 * Choices the header leaves open:
 * - A call is slow when duration_ms > slow_call_ms; a slow call is counted
 *   as slow whether or not it also failed (as resilience4j does).
 * - Thresholds compare exactly (failures * 100 >= pct * calls), so 5 of 10
 *   failures trips a 50% breaker with no rounding surprises.
 * - Tripping keeps the window (the admin API can still show why it
 *   tripped); closing from half-open clears it, as the header says.
 * - Half-open admits trial calls while inflight + successes <
 *   half_open_calls: exactly half_open_calls trials per half-open period,
 *   never more than that at once. A refused caller in half-open is told to
 *   come back in BH__BREAKER_HALF_OPEN_RETRY_MS.
 * - Without a per-call token a record cannot say in which state its call
 *   was admitted. In half-open, a record only counts as a trial result
 *   while trials are in flight; otherwise it came from an earlier state and
 *   only feeds the window statistics. half_open_inflight never underflows.
 * - A trial whose record never comes (its worker crashed between allow and
 *   record) would wedge half-open forever. Trials are therefore presumed
 *   lost once a half-open period has lasted open_ms with no slot free: the
 *   period restarts (transition_ms = now, no transition counted).
 * - Operator modes map to states so the reported state matches behaviour:
 *   FORCED_OPEN -> open (retry_after = open_ms, a hint: only the operator
 *   ends it); DISABLED and METRICS_ONLY -> closed; AUTO from FORCED_OPEN ->
 *   closed with a clean window, AUTO from the others keeps the window.
 * - Each process adds its outcomes to its own shard of the window (a
 *   success while closed needs nothing else: no lock, no shared line
 *   written), so two workers calling the same upstream do not bounce the
 *   window's cache lines between them. Sums read every shard that has
 *   counted. A shard is only ever written by its process, so clearing the
 *   window cannot zero it from outside: it bumps the generation instead, a
 *   shard of an older generation reads as empty, and its process zeroes it
 *   before its next count. A sum taken while another process is rolling a
 *   bucket over may miss that process's last count or two; the verdict
 *   only ever moves on the next failure.
 */
#include "policy/breaker.h"

#include <errno.h>
#include <string.h>

/* Retry-After hint when half-open has no trial slot left: trials are
 * usually quick, so this is short, but long enough not to invite a storm. */
#define BH__BREAKER_HALF_OPEN_RETRY_MS 1000

void bh__breaker_cfg_defaults(bh__breaker_cfg *cfg) {
  if (cfg->window_ms == 0) cfg->window_ms = 10000;
  if (cfg->min_calls == 0) cfg->min_calls = 10;
  if (cfg->failure_rate_pct == 0) cfg->failure_rate_pct = 50;
  if (cfg->slow_rate_pct == 0) cfg->slow_rate_pct = 100;
  if (cfg->slow_call_ms == 0) cfg->slow_call_ms = 5000;
  if (cfg->open_ms == 0) cfg->open_ms = 30000;
  if (cfg->half_open_calls == 0) cfg->half_open_calls = 5;
}

void bh__breaker_init(bh__breaker *b, const bh__breaker_cfg *cfg) {
  memset(b, 0, sizeof(*b));
  if (cfg) b->cfg = *cfg;
  bh__breaker_cfg_defaults(&b->cfg);
  b->state = BH__BREAKER_CLOSED;
  b->mode = BH__BREAKER_AUTO;
}

/* Bucket length; at least 1 ms so tiny windows still work. */
static uint64_t bh__bucket_ms(const bh__breaker *b) {
  uint64_t ms = b->cfg.window_ms / BH__BREAKER_BUCKETS;
  return ms ? ms : 1;
}

#define BH__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define BH__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static void bh__clear_window(bh__breaker *b) {
  BH__STORE(&b->gen, BH__LOAD(&b->gen) + 1);
}

/* This process's shard, zeroed first if it counted for an older window. */
static bh__breaker_shard *bh__own_shard(bh__breaker *b) {
  uint32_t k = bh__shard_self > 0 && bh__shard_self < BH__SHARDS
                   ? (uint32_t)bh__shard_self
                   : 0;
  bh__breaker_shard *sh = &b->shards[k];
  uint32_t gen = BH__LOAD(&b->gen);
  if (BH__LOAD(&sh->gen) != gen) {
    for (int i = 0; i < BH__BREAKER_BUCKETS; i++) {
      bh__breaker_bucket *q = &sh->buckets[i];
      BH__STORE(&q->calls, 0);
      BH__STORE(&q->failures, 0);
      BH__STORE(&q->slow, 0);
      BH__STORE(&q->start_ms, 0);
    }
    /* the zeroes before the generation that makes them count */
    __atomic_store_n(&sh->gen, gen, __ATOMIC_RELEASE);
  }
  uint32_t n = BH__LOAD(&b->nshards);
  while (n <= k &&
         !__atomic_compare_exchange_n(&b->nshards, &n, k + 1, 0,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return sh;
}

static void bh__set_state(bh__breaker *b, int state, uint64_t now_ms) {
  if (b->state == state) return;
  BH__STORE(&b->state, state);
  b->transition_ms = now_ms;
  b->transitions++;
  /* Trial bookkeeping belongs to one half-open period only. */
  b->half_open_inflight = 0;
  b->half_open_ok = 0;
  if (state == BH__BREAKER_OPEN) BH__STORE(&b->opened_ms, now_ms);
}

/* Adds one outcome to the bucket covering now_ms, resetting the bucket if
 * it still holds an older period. A sample older than the data already in
 * its slot is a whole window old (slots repeat every window), so it is
 * dropped rather than allowed to wipe newer counts. */
static void bh__window_add(bh__breaker *b, uint64_t now_ms, int failed,
                           uint32_t duration_ms) {
  uint64_t bms = bh__bucket_ms(b);
  uint64_t start = now_ms - now_ms % bms;
  bh__breaker_shard *sh = bh__own_shard(b);
  bh__breaker_bucket *k = &sh->buckets[(now_ms / bms) % BH__BREAKER_BUCKETS];
  /* plain loads of our own values; stores other processes may read */
  if (k->start_ms != start) {
    if (k->start_ms > start) return;
    BH__STORE(&k->calls, 0);
    BH__STORE(&k->failures, 0);
    BH__STORE(&k->slow, 0);
    BH__STORE(&k->start_ms, start);
  }
  /* Saturate: a stuck clock must not wrap counts to zero. */
  if (k->calls == UINT32_MAX) return;
  BH__STORE(&k->calls, k->calls + 1);
  if (failed) BH__STORE(&k->failures, k->failures + 1);
  if (duration_ms > b->cfg.slow_call_ms) BH__STORE(&k->slow, k->slow + 1);
}

/* Sums the buckets inside the window ending at now_ms (the current bucket
 * and the BUCKETS - 1 before it). */
static void bh__window_sum(const bh__breaker *b, uint64_t now_ms,
                           uint64_t *calls, uint64_t *failures,
                           uint64_t *slow) {
  uint64_t bms = bh__bucket_ms(b);
  uint64_t span = bms * BH__BREAKER_BUCKETS;
  *calls = *failures = *slow = 0;
  uint32_t gen = BH__LOAD(&b->gen), n = BH__LOAD(&b->nshards);
  for (uint32_t s = 0; s < n && s < BH__SHARDS; s++) {
    const bh__breaker_shard *sh = &b->shards[s];
    if (__atomic_load_n(&sh->gen, __ATOMIC_ACQUIRE) != gen) continue;
    for (int i = 0; i < BH__BREAKER_BUCKETS; i++) {
      const bh__breaker_bucket *k = &sh->buckets[i];
      uint64_t start = BH__LOAD(&k->start_ms);
      uint32_t c = BH__LOAD(&k->calls);
      if (c == 0 || start > now_ms) continue;
      if (now_ms - start >= span) continue;
      *calls += c;
      *failures += BH__LOAD(&k->failures);
      *slow += BH__LOAD(&k->slow);
    }
  }
}

static int bh__should_trip(const bh__breaker *b, uint64_t now_ms) {
  uint64_t calls, failures, slow;
  bh__window_sum(b, now_ms, &calls, &failures, &slow);
  if (calls == 0 || calls < b->cfg.min_calls) return 0;
  return failures * 100 >= (uint64_t)b->cfg.failure_rate_pct * calls ||
         slow * 100 >= (uint64_t)b->cfg.slow_rate_pct * calls;
}

int bh__breaker_allow(bh__breaker *b, uint64_t now_ms,
                      uint64_t *retry_after_ms) {
  uint64_t dummy;
  if (retry_after_ms == NULL) retry_after_ms = &dummy;
  *retry_after_ms = 0;

  switch (b->mode) {
  case BH__BREAKER_DISABLED:
  case BH__BREAKER_METRICS_ONLY: return 0;
  case BH__BREAKER_FORCED_OPEN:
    *retry_after_ms = b->cfg.open_ms ? b->cfg.open_ms : 1;
    return -EAGAIN;
  default: break;
  }

  if (b->state == BH__BREAKER_CLOSED) return 0;

  if (b->state == BH__BREAKER_OPEN) {
    uint64_t until = b->opened_ms + b->cfg.open_ms;
    if (now_ms < until) {
      uint64_t left = until - now_ms;
      /* A clock behind opened_ms must not promise more than open_ms. */
      if (left > b->cfg.open_ms) left = b->cfg.open_ms;
      *retry_after_ms = left ? left : 1;
      return -EAGAIN;
    }
    bh__set_state(b, BH__BREAKER_HALF_OPEN, now_ms);
  }

  /* Half-open. */
  uint64_t used = (uint64_t)b->half_open_inflight + b->half_open_ok;
  if (used >= b->cfg.half_open_calls && b->half_open_inflight > 0 &&
      now_ms >= b->transition_ms &&
      now_ms - b->transition_ms >= b->cfg.open_ms) {
    /* The outstanding trials are presumed lost: start the period over. */
    b->half_open_inflight = 0;
    b->half_open_ok = 0;
    b->transition_ms = now_ms;
    used = 0;
  }
  if (used < b->cfg.half_open_calls) {
    b->half_open_inflight++;
    return 0;
  }
  *retry_after_ms = BH__BREAKER_HALF_OPEN_RETRY_MS;
  return -EAGAIN;
}

void bh__breaker_record(bh__breaker *b, uint64_t now_ms, int failed,
                        uint32_t duration_ms) {
  if (b->mode == BH__BREAKER_DISABLED) return;
  bh__window_add(b, now_ms, failed, duration_ms);
  if (b->mode != BH__BREAKER_AUTO) return;

  switch (b->state) {
  case BH__BREAKER_CLOSED:
    /* only a failed or slow call can be the one that trips it */
    if ((failed || duration_ms > b->cfg.slow_call_ms) &&
        bh__should_trip(b, now_ms))
      bh__set_state(b, BH__BREAKER_OPEN, now_ms);
    break;
  case BH__BREAKER_HALF_OPEN:
    /* No trial in flight: this call was admitted before half-open. */
    if (b->half_open_inflight == 0) break;
    b->half_open_inflight--;
    if (failed) {
      bh__set_state(b, BH__BREAKER_OPEN, now_ms);
      break;
    }
    if (++b->half_open_ok >= b->cfg.half_open_calls) {
      bh__set_state(b, BH__BREAKER_CLOSED, now_ms);
      bh__clear_window(b);
    }
    break;
  default:
    /* Open: a straggler admitted while closed; statistics only. */
    break;
  }
}

int bh__breaker_allow_fast(const bh__breaker *b, uint64_t now_ms,
                           uint64_t *retry_after_ms) {
  *retry_after_ms = 0;
  int mode = BH__LOAD(&b->mode);
  switch (mode) {
  case BH__BREAKER_DISABLED:
  case BH__BREAKER_METRICS_ONLY: return 0;
  case BH__BREAKER_FORCED_OPEN:
    *retry_after_ms = b->cfg.open_ms ? b->cfg.open_ms : 1;
    return -EAGAIN;
  default: break;
  }
  int state = BH__LOAD(&b->state);
  if (state == BH__BREAKER_CLOSED) return 0;
  if (state == BH__BREAKER_OPEN) {
    /* as bh__breaker_allow, up to the move to half-open, which is the
     * locked call's */
    uint64_t until = BH__LOAD(&b->opened_ms) + b->cfg.open_ms;
    if (now_ms < until) {
      uint64_t left = until - now_ms;
      if (left > b->cfg.open_ms) left = b->cfg.open_ms;
      *retry_after_ms = left ? left : 1;
      return -EAGAIN;
    }
  }
  return -EBUSY;
}

int bh__breaker_record_fast(bh__breaker *b, uint64_t now_ms, int failed,
                            uint32_t duration_ms) {
  int mode = BH__LOAD(&b->mode);
  if (mode == BH__BREAKER_DISABLED) return 1;
  /* outside AUTO the record only counts (bh__breaker_record) */
  if (mode == BH__BREAKER_AUTO &&
      (failed || duration_ms > b->cfg.slow_call_ms ||
       BH__LOAD(&b->state) != BH__BREAKER_CLOSED))
    return 0;
  bh__window_add(b, now_ms, failed, duration_ms);
  return 1;
}

void bh__breaker_set_mode(bh__breaker *b, int mode, uint64_t now_ms) {
  if (mode < BH__BREAKER_AUTO || mode > BH__BREAKER_METRICS_ONLY) return;
  int prev = b->mode;
  BH__STORE(&b->mode, mode);
  switch (mode) {
  case BH__BREAKER_FORCED_OPEN:
    bh__set_state(b, BH__BREAKER_OPEN, now_ms);
    /* Already open: the operator's decision still restarts the clock. */
    BH__STORE(&b->opened_ms, now_ms);
    break;
  case BH__BREAKER_DISABLED:
  case BH__BREAKER_METRICS_ONLY:
    bh__set_state(b, BH__BREAKER_CLOSED, now_ms);
    break;
  default:
    /* "closed" from an operator means closed now, with a clean window,
     * whatever tripped it or was counted before */
    (void)prev;
    bh__set_state(b, BH__BREAKER_CLOSED, now_ms);
    b->half_open_inflight = 0;
    b->half_open_ok = 0;
    bh__clear_window(b);
    break;
  }
}

double bh__breaker_failure_ratio(const bh__breaker *b, uint64_t now_ms) {
  uint64_t c, f, s;
  bh__window_sum(b, now_ms, &c, &f, &s);
  return c ? (double)f / (double)c : 0.0;
}

void bh__breaker_stats(const bh__breaker *b, uint64_t now_ms, uint32_t *calls,
                       uint32_t *failure_pct, uint32_t *slow_pct) {
  uint64_t c, f, s;
  bh__window_sum(b, now_ms, &c, &f, &s);
  if (calls) *calls = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
  if (failure_pct) *failure_pct = c ? (uint32_t)(f * 100 / c) : 0;
  if (slow_pct) *slow_pct = c ? (uint32_t)(s * 100 / c) : 0;
}

const char *bh__breaker_state_name(int state) {
  switch (state) {
  case BH__BREAKER_CLOSED: return "closed";
  case BH__BREAKER_OPEN: return "open";
  case BH__BREAKER_HALF_OPEN: return "half_open";
  default: return "unknown";
  }
}

const char *bh__breaker_mode_name(int mode) {
  switch (mode) {
  case BH__BREAKER_AUTO: return "auto";
  case BH__BREAKER_FORCED_OPEN: return "forced_open";
  case BH__BREAKER_DISABLED: return "disabled";
  case BH__BREAKER_METRICS_ONLY: return "metrics_only";
  default: return "unknown";
  }
}

int bh__breaker_mode_parse(const char *s) {
  if (s == NULL) return -EINVAL;
  if (strcmp(s, "auto") == 0 || strcmp(s, "closed") == 0)
    return BH__BREAKER_AUTO;
  if (strcmp(s, "forced_open") == 0) return BH__BREAKER_FORCED_OPEN;
  if (strcmp(s, "disabled") == 0) return BH__BREAKER_DISABLED;
  if (strcmp(s, "metrics_only") == 0) return BH__BREAKER_METRICS_ONLY;
  return -EINVAL;
}
