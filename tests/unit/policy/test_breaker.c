#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/shard.h"
#include "check.h"
#include "policy/breaker.h"

/* Default thresholds but a small min_calls and trial count, so each test
 * reads as a short story. Window 10 s, buckets of 1 s. */
static void bh__mk(bh__breaker *b, uint32_t min_calls, uint32_t half_open) {
  bh__breaker_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.min_calls = min_calls;
  cfg.half_open_calls = half_open;
  bh__breaker_init(b, &cfg);
}

/* Records n calls at now (the caller has been admitted each time). */
static void bh__rec(bh__breaker *b, uint64_t now, int n, int failed,
                    uint32_t dur) {
  for (int i = 0; i < n; i++)
    bh__breaker_record(b, now, failed, dur);
}

static int bh__allow(bh__breaker *b, uint64_t now) {
  uint64_t ra = 12345;
  int rc = bh__breaker_allow(b, now, &ra);
  if (rc == 0)
    CHECK_INT(ra, 0);
  else
    CHECK(ra >= 1);
  return rc;
}

static void test_defaults(void) {
  bh__breaker_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  bh__breaker_cfg_defaults(&cfg);
  CHECK_INT(cfg.window_ms, 10000);
  CHECK_INT(cfg.min_calls, 10);
  CHECK_INT(cfg.failure_rate_pct, 50);
  CHECK_INT(cfg.slow_rate_pct, 100);
  CHECK_INT(cfg.slow_call_ms, 5000);
  CHECK_INT(cfg.open_ms, 30000);
  CHECK_INT(cfg.half_open_calls, 5);
  /* Non-zero fields are kept. */
  cfg.failure_rate_pct = 30;
  cfg.window_ms = 0;
  bh__breaker_cfg_defaults(&cfg);
  CHECK_INT(cfg.failure_rate_pct, 30);
  CHECK_INT(cfg.window_ms, 10000);

  bh__breaker b;
  bh__breaker_init(&b, NULL);
  CHECK_INT(b.cfg.min_calls, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.mode, BH__BREAKER_AUTO);
  CHECK_INT(b.transitions, 0);
  CHECK_INT(bh__allow(&b, 1000), 0);
}

static void test_min_calls(void) {
  bh__breaker b;
  bh__breaker_init(&b, NULL); /* min_calls 10 */
  uint64_t t = 100000;
  /* Nine failures in a row: 100% failure, but below min_calls. */
  bh__rec(&b, t, 9, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  uint32_t calls, fp, sp;
  bh__breaker_stats(&b, t, &calls, &fp, &sp);
  CHECK_INT(calls, 9);
  CHECK_INT(fp, 100);
  CHECK_INT(sp, 0);
  /* The tenth call reaches min_calls: now it trips. */
  bh__rec(&b, t, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.opened_ms, t);
  CHECK_INT(b.transitions, 1);
  CHECK_INT(b.transition_ms, t);
}

static void test_exact_threshold(void) {
  bh__breaker b;
  bh__breaker_init(&b, NULL);
  uint64_t t = 50000;
  /* 5 successes then 4 failures: 9 calls, below min_calls. */
  bh__rec(&b, t, 5, 0, 10);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  /* A success: 10 calls, 40% -> closed. */
  bh__rec(&b, t, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  /* A failure: 11 calls, 5 failures = 45% -> closed. */
  bh__rec(&b, t, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  /* A failure: 12 calls, 6 failures = exactly 50% -> open. */
  bh__rec(&b, t, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);

  /* Exactly at threshold with min_calls: 5 of 10. */
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t, 5, 0, 10);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__rec(&b, t, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);

  /* Rates that would round up to the threshold do not trip: 33 of 67 is
   * 49.25%. */
  bh__breaker_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.min_calls = 67;
  bh__breaker_init(&b, &cfg);
  bh__rec(&b, t, 34, 0, 10);
  bh__rec(&b, t, 33, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
}

static void test_slow_calls(void) {
  bh__breaker b;
  bh__breaker_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.slow_rate_pct = 60;
  cfg.slow_call_ms = 1000;
  bh__breaker_init(&b, &cfg);
  uint64_t t = 70000;
  /* Exactly slow_call_ms is not slow; one more millisecond is. */
  bh__rec(&b, t, 4, 0, 1000);
  uint32_t calls, fp, sp;
  bh__breaker_stats(&b, t, &calls, &fp, &sp);
  CHECK_INT(sp, 0);
  bh__rec(&b, t, 5, 0, 1001); /* 9 calls, 5 slow */
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__rec(&b, t, 1, 0, 1001); /* 10 calls, 6 slow = 60% */
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  bh__breaker_stats(&b, t, &calls, &fp, &sp);
  CHECK_INT(calls, 10);
  CHECK_INT(fp, 0);
  CHECK_INT(sp, 60);

  /* Default slow threshold is 100%: one fast call keeps it closed. */
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t, 1, 0, 10);
  bh__rec(&b, t, 20, 0, 6000);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t, 10, 0, 6000);
  CHECK_INT(b.state, BH__BREAKER_OPEN);

  /* A slow failure counts for both rates. */
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t, 2, 1, 9000);
  bh__breaker_stats(&b, t, &calls, &fp, &sp);
  CHECK_INT(fp, 100);
  CHECK_INT(sp, 100);
}

static void test_window_slides(void) {
  bh__breaker b;
  bh__breaker_init(&b, NULL); /* 10 s window, 1 s buckets */
  uint64_t t = 1000000;
  /* 9 failures at t. */
  bh__rec(&b, t, 9, 1, 10);
  uint32_t calls;
  bh__breaker_stats(&b, t + 9999, &calls, NULL, NULL);
  CHECK_INT(calls, 9);
  /* 10 s later they are out of the window: stats forget them... */
  bh__breaker_stats(&b, t + 10000, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  /* ...and one more failure does not trip on stale data. */
  bh__rec(&b, t + 10000, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__breaker_stats(&b, t + 10000, &calls, NULL, NULL);
  CHECK_INT(calls, 1);

  /* Spread over the window, calls add up across buckets. */
  bh__breaker_init(&b, NULL);
  for (int i = 0; i < 9; i++)
    bh__rec(&b, t + (uint64_t)i * 1000, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__breaker_stats(&b, t + 8000, &calls, NULL, NULL);
  CHECK_INT(calls, 9);
  /* At t+9000 all nine are still in (t is 9 s old). */
  bh__rec(&b, t + 9000, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);

  /* Same sequence, but the tenth lands when the first bucket has left. */
  bh__breaker_init(&b, NULL);
  for (int i = 0; i < 9; i++)
    bh__rec(&b, t + (uint64_t)i * 1000, 1, 1, 10);
  bh__rec(&b, t + 10000, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__breaker_stats(&b, t + 10000, &calls, NULL, NULL);
  CHECK_INT(calls, 9);

  /* Old successes slide out, leaving a failure majority. */
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t, 20, 0, 10);
  bh__rec(&b, t + 5000, 9, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__rec(&b, t + 10500, 1, 1, 10); /* successes gone: 10 of 10 failed */
  CHECK_INT(b.state, BH__BREAKER_OPEN);

  /* A record older than its slot's data is dropped, not allowed to wipe
   * newer counts. */
  bh__breaker_init(&b, NULL);
  bh__rec(&b, t + 10000, 3, 0, 10);
  bh__rec(&b, t, 1, 1, 10); /* same slot, one window earlier */
  bh__breaker_stats(&b, t + 10000, &calls, NULL, NULL);
  CHECK_INT(calls, 3);
}

static void test_open_refuses(void) {
  bh__breaker b;
  bh__mk(&b, 4, 2);
  uint64_t t = 200000;
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  uint64_t ra = 0;
  CHECK_INT(bh__breaker_allow(&b, t, &ra), -EAGAIN);
  CHECK_INT(ra, 30000);
  CHECK_INT(bh__breaker_allow(&b, t + 12345, &ra), -EAGAIN);
  CHECK_INT(ra, 30000 - 12345);
  CHECK_INT(bh__breaker_allow(&b, t + 29999, &ra), -EAGAIN);
  CHECK_INT(ra, 1);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  /* A clock behind opened_ms never promises more than open_ms. */
  CHECK_INT(bh__breaker_allow(&b, t - 5000, &ra), -EAGAIN);
  CHECK_INT(ra, 30000);
  /* NULL retry_after is tolerated. */
  CHECK_INT(bh__breaker_allow(&b, t + 1, NULL), -EAGAIN);
  /* A straggler recorded while open changes nothing. */
  bh__rec(&b, t + 100, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.transitions, 1);
  /* At opened + open_ms: half-open, and the call is a trial. */
  CHECK_INT(bh__breaker_allow(&b, t + 30000, &ra), 0);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(b.transitions, 2);
  CHECK_INT(b.transition_ms, t + 30000);
  CHECK_INT(b.half_open_inflight, 1);
}

static void test_half_open(void) {
  bh__breaker b;
  bh__mk(&b, 4, 3);
  uint64_t t = 300000;
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  uint64_t h = t + 30000;
  /* Exactly three trials, then refusals with the short hint. */
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(bh__allow(&b, h), 0);
  uint64_t ra = 0;
  CHECK_INT(bh__breaker_allow(&b, h + 1, &ra), -EAGAIN);
  CHECK_INT(ra, 1000);
  CHECK_INT(b.half_open_inflight, 3);
  /* Two successes: still half-open, and no new slots (3 per period). */
  bh__rec(&b, h + 10, 2, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(b.half_open_ok, 2);
  CHECK_INT(b.half_open_inflight, 1);
  CHECK_INT(bh__allow(&b, h + 20), -EAGAIN);
  /* Third success closes and clears the window. */
  bh__rec(&b, h + 30, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.transitions, 3); /* closed->open->half->closed */
  CHECK_INT(b.transition_ms, h + 30);
  CHECK_INT(b.half_open_inflight, 0);
  CHECK_INT(b.half_open_ok, 0);
  uint32_t calls;
  bh__breaker_stats(&b, h + 30, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  CHECK_INT(bh__allow(&b, h + 40), 0);

  /* A failed trial re-opens at once, with a fresh open period. */
  bh__mk(&b, 4, 3);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(bh__allow(&b, h), 0);
  bh__rec(&b, h + 500, 1, 0, 10);
  bh__rec(&b, h + 700, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.opened_ms, h + 700);
  CHECK_INT(b.transitions, 3); /* closed->open->half->open */
  CHECK_INT(b.half_open_inflight, 0);
  CHECK_INT(b.half_open_ok, 0);
  CHECK_INT(bh__breaker_allow(&b, h + 1700, &ra), -EAGAIN);
  CHECK_INT(ra, 29000);
  CHECK_INT(bh__allow(&b, h + 30700), 0);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(b.transitions, 4);
}

static void test_no_underflow(void) {
  bh__breaker b;
  bh__mk(&b, 4, 2);
  uint64_t t = 400000;
  /* Six calls admitted while closed; four fail and trip it. */
  for (int i = 0; i < 6; i++)
    CHECK_INT(bh__allow(&b, t), 0);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  /* Move to half-open with no trial yet (a refused probe is impossible
   * here: the first allow after open_ms is itself a trial). */
  uint64_t h = t + 30000;
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(b.half_open_inflight, 1);
  bh__rec(&b, h + 1, 1, 0, 10); /* the trial succeeds */
  CHECK_INT(b.half_open_inflight, 0);
  CHECK_INT(b.half_open_ok, 1);
  /* The two closed-era stragglers land now: no trial is in flight, so they
   * neither count as trials nor underflow anything. */
  bh__rec(&b, h + 2, 1, 1, 10);
  bh__rec(&b, h + 3, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(b.half_open_inflight, 0);
  CHECK_INT(b.half_open_ok, 1);
  /* Many more stray records: still no underflow. */
  for (int i = 0; i < 100; i++)
    bh__rec(&b, h + 4, 1, i & 1, 10);
  CHECK_INT(b.half_open_inflight, 0);
  CHECK(b.half_open_inflight < 1000);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  /* The second trial closes it. */
  CHECK_INT(bh__allow(&b, h + 5), 0);
  bh__rec(&b, h + 6, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);

  /* Trials from a re-opened period recording later change nothing. */
  bh__mk(&b, 4, 2);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(bh__allow(&b, h), 0);
  bh__rec(&b, h + 1, 1, 1, 10); /* re-opens */
  bh__rec(&b, h + 2, 1, 0, 10); /* the other trial, now a straggler */
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.half_open_inflight, 0);
  CHECK_INT(b.half_open_ok, 0);
}

static void test_lost_trials(void) {
  bh__breaker b;
  bh__mk(&b, 4, 2);
  uint64_t t = 500000;
  bh__rec(&b, t, 4, 1, 10);
  uint64_t h = t + 30000;
  CHECK_INT(bh__allow(&b, h), 0);
  CHECK_INT(bh__allow(&b, h), 0);
  /* Both trials vanish (their worker died). Refused for a while... */
  CHECK_INT(bh__allow(&b, h + 29999), -EAGAIN);
  /* ...until a half-open period has lasted open_ms: it restarts. */
  CHECK_INT(bh__allow(&b, h + 30000), 0);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(b.half_open_inflight, 1);
  CHECK_INT(b.transitions, 2); /* a restart is not a state change */
  CHECK_INT(bh__allow(&b, h + 30000), 0);
  CHECK_INT(bh__allow(&b, h + 30000), -EAGAIN);
  bh__rec(&b, h + 30001, 2, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
}

static void test_modes(void) {
  bh__breaker b;
  bh__mk(&b, 4, 2);
  uint64_t t = 600000;
  uint64_t ra = 0;

  /* forced_open: refuses with retry_after = open_ms, whatever the time. */
  bh__breaker_set_mode(&b, BH__BREAKER_FORCED_OPEN, t);
  CHECK_INT(b.mode, BH__BREAKER_FORCED_OPEN);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.transitions, 1);
  CHECK_INT(bh__breaker_allow(&b, t + 1, &ra), -EAGAIN);
  CHECK_INT(ra, 30000);
  CHECK_INT(bh__breaker_allow(&b, t + 1000000, &ra), -EAGAIN);
  CHECK_INT(ra, 30000);
  CHECK_INT(b.state, BH__BREAKER_OPEN); /* never goes half-open */
  /* Records while forced open never change state. */
  bh__rec(&b, t + 1000000, 10, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  /* Back to auto: closed with a clean window. */
  bh__breaker_set_mode(&b, BH__BREAKER_AUTO, t + 1000001);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.transitions, 2);
  uint32_t calls;
  bh__breaker_stats(&b, t + 1000001, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  CHECK_INT(bh__allow(&b, t + 1000001), 0);

  /* disabled: always allowed, nothing counted, never trips. */
  bh__mk(&b, 4, 2);
  bh__rec(&b, t, 4, 1, 10); /* trips first */
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  bh__breaker_set_mode(&b, BH__BREAKER_DISABLED, t + 1);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.transitions, 2);
  bh__breaker_stats(&b, t + 1, &calls, NULL, NULL);
  CHECK_INT(calls, 4); /* the window from before is untouched */
  for (int i = 0; i < 50; i++) {
    CHECK_INT(bh__allow(&b, t + 2), 0);
    bh__rec(&b, t + 2, 1, 1, 99999);
  }
  bh__breaker_stats(&b, t + 2, &calls, NULL, NULL);
  CHECK_INT(calls, 4);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.transitions, 2);

  /* metrics_only: counts, reports, never trips. */
  bh__mk(&b, 4, 2);
  bh__breaker_set_mode(&b, BH__BREAKER_METRICS_ONLY, t);
  CHECK_INT(b.transitions, 0); /* already closed */
  for (int i = 0; i < 50; i++) {
    CHECK_INT(bh__allow(&b, t + 1), 0);
    bh__rec(&b, t + 1, 1, 1, 99999);
  }
  uint32_t fp, sp;
  bh__breaker_stats(&b, t + 1, &calls, &fp, &sp);
  CHECK_INT(calls, 50);
  CHECK_INT(fp, 100);
  CHECK_INT(sp, 100);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.transitions, 0);
  /* Back to auto ("closed" from ops) starts a clean window: what was
   * counted in metrics_only no longer counts, min_calls applies again. */
  bh__breaker_set_mode(&b, BH__BREAKER_AUTO, t + 2);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__breaker_stats(&b, t + 2, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  bh__rec(&b, t + 2, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__rec(&b, t + 2, 3, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  CHECK_INT(b.transitions, 1);
  /* and a success alone never trips, whatever the window holds */
  bh__breaker_set_mode(&b, BH__BREAKER_METRICS_ONLY, t + 3);
  bh__rec(&b, t + 3, 10, 1, 10);
  b.mode = BH__BREAKER_AUTO; /* keep the failures: no operator reset */
  bh__rec(&b, t + 3, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);

  /* metrics_only from half-open: closed, trial bookkeeping dropped. */
  bh__mk(&b, 4, 2);
  bh__rec(&b, t, 4, 1, 10);
  CHECK_INT(bh__allow(&b, t + 30000), 0);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  bh__breaker_set_mode(&b, BH__BREAKER_METRICS_ONLY, t + 30001);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.half_open_inflight, 0);
  bh__rec(&b, t + 30002, 1, 1, 10); /* the trial lands: no effect */
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(b.half_open_inflight, 0);

  /* An unknown mode is ignored. */
  bh__breaker_set_mode(&b, 42, t);
  CHECK_INT(b.mode, BH__BREAKER_METRICS_ONLY);
  bh__breaker_set_mode(&b, -1, t);
  CHECK_INT(b.mode, BH__BREAKER_METRICS_ONLY);
}

static void test_names(void) {
  CHECK_STR(bh__breaker_state_name(BH__BREAKER_CLOSED), "closed");
  CHECK_STR(bh__breaker_state_name(BH__BREAKER_OPEN), "open");
  CHECK_STR(bh__breaker_state_name(BH__BREAKER_HALF_OPEN), "half_open");
  CHECK_STR(bh__breaker_state_name(7), "unknown");
  CHECK_STR(bh__breaker_mode_name(BH__BREAKER_AUTO), "auto");
  CHECK_STR(bh__breaker_mode_name(BH__BREAKER_FORCED_OPEN), "forced_open");
  CHECK_STR(bh__breaker_mode_name(BH__BREAKER_DISABLED), "disabled");
  CHECK_STR(bh__breaker_mode_name(BH__BREAKER_METRICS_ONLY), "metrics_only");
  CHECK_STR(bh__breaker_mode_name(-3), "unknown");
  CHECK_INT(bh__breaker_mode_parse("auto"), BH__BREAKER_AUTO);
  CHECK_INT(bh__breaker_mode_parse("closed"), BH__BREAKER_AUTO);
  CHECK_INT(bh__breaker_mode_parse("forced_open"), BH__BREAKER_FORCED_OPEN);
  CHECK_INT(bh__breaker_mode_parse("disabled"), BH__BREAKER_DISABLED);
  CHECK_INT(bh__breaker_mode_parse("metrics_only"), BH__BREAKER_METRICS_ONLY);
  CHECK_INT(bh__breaker_mode_parse("open"), -EINVAL);
  CHECK_INT(bh__breaker_mode_parse("AUTO"), -EINVAL);
  CHECK_INT(bh__breaker_mode_parse(""), -EINVAL);
  CHECK_INT(bh__breaker_mode_parse("disabled "), -EINVAL);
  CHECK_INT(bh__breaker_mode_parse(NULL), -EINVAL);
}

static void test_tiny_window(void) {
  /* A window shorter than the bucket count still works (1 ms buckets). */
  bh__breaker b;
  bh__breaker_cfg cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.window_ms = 5;
  cfg.min_calls = 2;
  bh__breaker_init(&b, &cfg);
  bh__rec(&b, 1000, 1, 1, 1);
  uint32_t calls;
  bh__breaker_stats(&b, 1009, &calls, NULL, NULL);
  CHECK_INT(calls, 1);
  bh__breaker_stats(&b, 1010, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  bh__rec(&b, 1010, 1, 1, 1);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  bh__rec(&b, 1011, 1, 1, 1);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
}

/* Per-process window shards: the lock-free calls count in the caller's
 * shard only, verdicts and statistics add every shard up, clearing the
 * window (half-open -> closed) empties the other processes' shards too,
 * and every outcome that can change the state is left to the locked
 * call. */
/* bh__breaker_allow_fast's verdict, checked against bh__breaker_allow's
 * on a copy whenever it gives one (-EBUSY: only the locked call knows). */
static int bh__fast(const bh__breaker *b, uint64_t now) {
  uint64_t ra = 12345, ra2 = 54321;
  int rc = bh__breaker_allow_fast(b, now, &ra);
  if (rc != -EBUSY) {
    static bh__breaker copy;
    copy = *b;
    CHECK_INT(bh__breaker_allow(&copy, now, &ra2), rc);
    CHECK_INT(ra, ra2);
    CHECK_INT(copy.state, b->state);
  }
  return rc;
}

static void test_shards(void) {
  static bh__breaker b; /* 16 KiB: not on the stack */
  CHECK_INT(sizeof(bh__breaker_shard) % BH__CACHELINE, 0);
  CHECK_INT((uintptr_t)&b.shards[1] % BH__CACHELINE, 0);
  bh__mk(&b, 10, 2);
  uint64_t t = 100000;
  bh__shard_self = 1;
  CHECK_INT(bh__fast(&b, t), 0);
  for (int i = 0; i < 5; i++)
    CHECK_INT(bh__breaker_record_fast(&b, t, 0, 10), 1);
  CHECK_INT(b.shards[1].buckets[0].calls + b.shards[1].buckets[1].calls +
                b.shards[1].buckets[2].calls + b.shards[1].buckets[3].calls +
                b.shards[1].buckets[4].calls + b.shards[1].buckets[5].calls +
                b.shards[1].buckets[6].calls + b.shards[1].buckets[7].calls +
                b.shards[1].buckets[8].calls + b.shards[1].buckets[9].calls,
            5);
  for (int i = 0; i < BH__BREAKER_BUCKETS; i++) {
    CHECK_INT(b.shards[0].buckets[i].calls, 0);
    CHECK_INT(b.shards[2].buckets[i].calls, 0);
  }
  /* a slow success or a failure may trip it: the locked call's */
  CHECK_INT(bh__breaker_record_fast(&b, t, 0, 6000), 0);
  CHECK_INT(bh__breaker_record_fast(&b, t, 1, 10), 0);
  /* another worker's failures: 5 of 10 calls across both shards trip it */
  bh__shard_self = 2;
  bh__rec(&b, t + 1, 4, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  uint32_t calls = 0, fail = 0;
  bh__breaker_stats(&b, t + 1, &calls, &fail, NULL);
  CHECK_INT(calls, 9);
  CHECK_INT(fail, 44);
  bh__rec(&b, t + 1, 1, 1, 10);
  CHECK_INT(b.state, BH__BREAKER_OPEN);
  /* open, for both: refused with no lock until open_ms has passed */
  bh__shard_self = 1;
  CHECK_INT(bh__fast(&b, t + 2), -EAGAIN);
  CHECK_INT(bh__fast(&b, t + 1 + 29999), -EAGAIN);
  CHECK_INT(bh__fast(&b, t + 1 + 30000), -EBUSY);
  CHECK(bh__allow(&b, t + 2) < 0);
  CHECK_INT(bh__breaker_record_fast(&b, t + 2, 0, 10), 0);
  /* half-open: trials are the locked calls' too */
  uint64_t t2 = t + 1 + 30000;
  CHECK_INT(bh__allow(&b, t2), 0);
  CHECK_INT(b.state, BH__BREAKER_HALF_OPEN);
  CHECK_INT(bh__fast(&b, t2), -EBUSY);
  CHECK_INT(bh__breaker_record_fast(&b, t2, 0, 10), 0);
  bh__rec(&b, t2, 1, 0, 10);
  bh__shard_self = 2;
  CHECK_INT(bh__allow(&b, t2), 0);
  bh__rec(&b, t2, 1, 0, 10);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  /* closing cleared the window, shard 1's old counts included */
  bh__breaker_stats(&b, t2, &calls, NULL, NULL);
  CHECK_INT(calls, 0);
  bh__shard_self = 1;
  CHECK_INT(bh__breaker_record_fast(&b, t2, 0, 10), 1);
  bh__breaker_stats(&b, t2, &calls, &fail, NULL);
  CHECK_INT(calls, 1);
  CHECK_INT(fail, 0);
  /* outside AUTO: disabled counts nothing, metrics_only counts and never
   * trips, both with no lock */
  bh__breaker_set_mode(&b, BH__BREAKER_DISABLED, t2);
  CHECK_INT(bh__fast(&b, t2), 0);
  CHECK_INT(bh__breaker_record_fast(&b, t2, 1, 10), 1);
  bh__breaker_stats(&b, t2, &calls, NULL, NULL);
  CHECK_INT(calls, 1);
  bh__breaker_set_mode(&b, BH__BREAKER_METRICS_ONLY, t2);
  for (int i = 0; i < 20; i++)
    CHECK_INT(bh__breaker_record_fast(&b, t2, 1, 10), 1);
  bh__breaker_stats(&b, t2, &calls, &fail, NULL);
  CHECK_INT(calls, 21);
  CHECK_INT(b.state, BH__BREAKER_CLOSED);
  CHECK_INT(bh__fast(&b, t2), 0);
  bh__breaker_set_mode(&b, BH__BREAKER_FORCED_OPEN, t2);
  CHECK_INT(bh__fast(&b, t2), -EAGAIN);
  CHECK_INT(bh__fast(&b, t2 + 100000), -EAGAIN);
  bh__shard_self = 0;
}

int main(void) {
  test_defaults();
  test_min_calls();
  test_exact_threshold();
  test_slow_calls();
  test_window_slides();
  test_open_refuses();
  test_half_open();
  test_no_underflow();
  test_lost_trials();
  test_modes();
  test_names();
  test_tiny_window();
  test_shards();
  return check_finish("breaker");
}
