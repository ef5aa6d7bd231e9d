#include <stdint.h>
#include <string.h>

#include "base/shard.h"
#include "bulkhead/plugin.h"
#include "check.h"
#include "policy/retry.h"

static bh__retry_cfg bh__cfg(void) {
  bh__retry_cfg cfg;
  memset(&cfg, 0xa5, sizeof(cfg)); /* defaults must set every field */
  bh__retry_cfg_defaults(&cfg);
  return cfg;
}

/* splitmix64: a fixed, portable sequence of "random" values. */
static uint64_t bh__rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void test_defaults(void) {
  bh__retry_cfg c = bh__cfg();
  CHECK_INT(c.max_retries, 2);
  CHECK_INT(c.base_ms, 100);
  CHECK_INT(c.cap_ms, 2000);
  CHECK_INT(c.budget_pct, 20);
  CHECK_INT(c.budget_min, 3);
  CHECK_INT(c.budget_window_ms, 10000);
  CHECK_INT(c.max_retry_after_s, 30);
}

static void test_methods(void) {
  const char *ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    CHECK_INT(bh__retry_method_ok(ok[i], 0), 1);
    CHECK_INT(bh__retry_method_ok(ok[i], 1), 1);
  }
  CHECK_INT(bh__retry_method_ok("POST", 0), 0);
  CHECK_INT(bh__retry_method_ok("PATCH", 0), 0);
  CHECK_INT(bh__retry_method_ok("POST", 1), 1);
  CHECK_INT(bh__retry_method_ok("PATCH", 1), 1);
  /* Never: CONNECT, unknown methods, wrong case, prefixes. */
  CHECK_INT(bh__retry_method_ok("CONNECT", 0), 0);
  CHECK_INT(bh__retry_method_ok("CONNECT", 1), 0);
  CHECK_INT(bh__retry_method_ok("PROPFIND", 1), 0);
  CHECK_INT(bh__retry_method_ok("get", 0), 0);
  CHECK_INT(bh__retry_method_ok("post", 1), 0);
  CHECK_INT(bh__retry_method_ok("GETX", 0), 0);
  CHECK_INT(bh__retry_method_ok("GE", 0), 0);
  CHECK_INT(bh__retry_method_ok("", 1), 0);
  CHECK_INT(bh__retry_method_ok(NULL, 1), 0);
}

static void test_outcomes(void) {
  int yes[] = {408, 429, 502, 503, 504};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
    CHECK_INT(bh__retry_outcome_ok(0, yes[i]), 1);
  int no[] = {0,   200, 201, 204, 301, 304, 400, 401, 403, 404, 409,
              413, 422, 425, 500, 501, 505, 507, 511, 599, -1};
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
    CHECK_INT(bh__retry_outcome_ok(0, no[i]), 0);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_CONNECT, 0), 1);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_DNS, 0), 1);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_RESET, 0), 1);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_CONNECT | BH_TRANSPORT_DNS, 0),
            1);
  /* The deadline is spent / TLS fails the same way again. */
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_TIMEOUT, 0), 0);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_TLS, 0), 0);
  CHECK_INT(
      bh__retry_outcome_ok(BH_TRANSPORT_CONNECT | BH_TRANSPORT_TIMEOUT, 0), 0);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_ANY, 503), 0);
  /* A transport failure decides alone: no status rescues or spoils it. */
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_TIMEOUT, 503), 0);
  CHECK_INT(bh__retry_outcome_ok(BH_TRANSPORT_RESET, 200), 1);
  /* Unknown transport bits alone are not a reason to retry. */
  CHECK_INT(bh__retry_outcome_ok(1u << 7, 0), 0);
}

static void test_delay_bounds(void) {
  bh__retry_cfg c = bh__cfg();
  uint64_t seed = 42;
  const int64_t ceil_for[] = {0, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
  for (uint32_t n = 1; n <= 8; n++) {
    int64_t lo = INT64_MAX, hi = -1;
    for (int i = 0; i < 20000; i++) {
      int64_t d = bh__retry_delay_ms(&c, n, bh__rnd(&seed), -1);
      CHECK(d >= 0 && d <= ceil_for[n]);
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    /* Full jitter really spreads over the whole range. */
    CHECK(lo <= ceil_for[n] / 20);
    CHECK(hi >= ceil_for[n] - ceil_for[n] / 20);
  }
  /* Edges of rnd: both ends of the range are reachable. */
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, -1), 0);
  CHECK_INT(bh__retry_delay_ms(&c, 1, 100, -1), 100);
  CHECK_INT(bh__retry_delay_ms(&c, 1, 101, -1), 0);
  CHECK(bh__retry_delay_ms(&c, 1, UINT64_MAX, -1) <= 100);
  /* Huge attempt numbers stay at the cap, without overflow. */
  for (uint32_t n = 30; n < 40; n++)
    CHECK(bh__retry_delay_ms(&c, n, UINT64_MAX - n, -1) <= 2000);
  CHECK(bh__retry_delay_ms(&c, UINT32_MAX, UINT64_MAX, -1) <= 2000);
  CHECK_INT(bh__retry_delay_ms(&c, UINT32_MAX, 2000, -1), 2000);
  /* Attempt 0 is read as the first retry. */
  CHECK(bh__retry_delay_ms(&c, 0, UINT64_MAX, -1) <= 100);
  /* Many random configs: always within [0, min(cap, base*2^(n-1))]. */
  for (int i = 0; i < 20000; i++) {
    bh__retry_cfg r = c;
    r.base_ms = (uint32_t)(bh__rnd(&seed) % 5000);
    r.cap_ms = (uint32_t)(bh__rnd(&seed) % 60000);
    uint32_t n = 1 + (uint32_t)(bh__rnd(&seed) % 40);
    uint64_t bound = r.cap_ms;
    if (n - 1 < 32 && ((uint64_t)r.base_ms << (n - 1)) < bound)
      bound = (uint64_t)r.base_ms << (n - 1);
    int64_t d = bh__retry_delay_ms(&r, n, bh__rnd(&seed), -1);
    CHECK(d >= 0 && (uint64_t)d <= bound);
  }
  /* Cap below base: the cap wins. */
  bh__retry_cfg r = c;
  r.base_ms = 500;
  r.cap_ms = 50;
  CHECK_INT(bh__retry_delay_ms(&r, 1, 50, -1), 50);
  CHECK_INT(bh__retry_delay_ms(&r, 1, 51, -1), 0);
}

static void test_delay_retry_after(void) {
  bh__retry_cfg c = bh__cfg();
  uint64_t seed = 7;
  /* Retry-After is a floor. */
  for (int i = 0; i < 1000; i++) {
    int64_t d = bh__retry_delay_ms(&c, 1, bh__rnd(&seed), 5000);
    CHECK_INT(d, 5000);
    d = bh__retry_delay_ms(&c, 5, bh__rnd(&seed), 50);
    CHECK(d >= 50 && d <= 1600);
  }
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, 0), 0);
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, 30000), 30000);
  /* Longer than max_retry_after_s: do not retry. */
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, 30001), -1);
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, INT64_MAX), -1);
  /* Any negative value means "no Retry-After". */
  CHECK(bh__retry_delay_ms(&c, 1, 100, -5) == 100);
  c.max_retry_after_s = 0;
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, 1), -1);
  CHECK_INT(bh__retry_delay_ms(&c, 1, 0, 0), 0);
}

static void test_budget(void) {
  bh__retry_cfg c = bh__cfg(); /* 20%, floor 3, window 10 s */
  bh__retry_budget b;
  memset(&b, 0, sizeof(b));
  uint64_t t = 1000000; /* a multiple of the window */

  /* No requests at all: the floor still allows 3 retries. */
  CHECK_INT(bh__retry_budget_take(&b, &c, t), 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t), 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t), 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t), 0);
  CHECK_INT(bh__retry_budget_take(&b, &c, t), 0);
  CHECK_INT(b.retries_cur, 3);

  /* 20 requests: 20% = 4 > floor, so exactly one more. */
  for (int i = 0; i < 20; i++)
    bh__retry_budget_request(&b, &c, t + 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 1), 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 1), 0);
  /* 100 requests: 20 retries in all. */
  for (int i = 0; i < 80; i++)
    bh__retry_budget_request(&b, &c, t + 2);
  int got = 0;
  for (int i = 0; i < 50; i++)
    got += bh__retry_budget_take(&b, &c, t + 2);
  CHECK_INT(got, 16);
  CHECK_INT(b.retries_cur, 20);
  CHECK_INT(b.requests_cur, 100);

  /* Next bucket, start: the previous one still weighs fully (20 of 100
   * retries used), so nothing is allowed... */
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 10000), 0);
  CHECK_INT(b.requests_prev, 100);
  CHECK_INT(b.retries_prev, 20);
  CHECK_INT(b.requests_cur, 0);
  /* ...halfway through it weighs half: 50 requests, 10 retries -> 0 left
   * at 20%, but the weight keeps falling. */
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 15000), 0);
  /* At 90%: 10 requests, 2 retries -> floor 3 allows one. */
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 19000), 1);
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 19000), 0);
  /* Two windows later everything is forgotten: the floor again. */
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 30000), 1);
  CHECK_INT(b.requests_prev, 0);
  CHECK_INT(b.retries_prev, 0);
  CHECK_INT(b.retries_cur, 1);
  CHECK_INT(b.window_start_ms, t + 30000);

  /* A steady 10% retry rate never runs out; 30% does. */
  memset(&b, 0, sizeof(b));
  int refused = 0;
  for (uint64_t ms = 0; ms < 100000; ms += 10) {
    bh__retry_budget_request(&b, &c, t + ms);
    if (ms % 100 == 0) refused += !bh__retry_budget_take(&b, &c, t + ms);
  }
  CHECK_INT(refused, 0);
  memset(&b, 0, sizeof(b));
  int allowed = 0, tried = 0;
  for (uint64_t ms = 0; ms < 100000; ms += 10) {
    bh__retry_budget_request(&b, &c, t + ms);
    if (ms % 100 < 30) {
      tried++;
      allowed += bh__retry_budget_take(&b, &c, t + ms);
    }
  }
  /* About 20% of 10000 requests, i.e. two thirds of the 3000 tries. */
  CHECK(allowed > 1800 && allowed < 2200);
  CHECK(allowed < tried);

  /* A clock that steps back neither rolls nor breaks the window. */
  memset(&b, 0, sizeof(b));
  bh__retry_budget_request(&b, &c, t);
  /* requests roll this process's shard; take() lines the budget up */
  uint64_t start = b.shards[0].window_start_ms;
  CHECK_INT(bh__retry_budget_take(&b, &c, t - 5000), 1);
  CHECK_INT(b.window_start_ms, start);

  /* budget_min 0 and pct 0: never. A zero window does not divide by 0. */
  bh__retry_cfg z = c;
  z.budget_min = 0;
  z.budget_pct = 0;
  z.budget_window_ms = 0;
  memset(&b, 0, sizeof(b));
  for (int i = 0; i < 10; i++)
    bh__retry_budget_request(&b, &z, t);
  CHECK_INT(bh__retry_budget_take(&b, &z, t), 0);
}

/* Requests counted per process: each in its own shard (its own cache
 * line), and take() weighs the sum of every shard, also a shard whose
 * process last counted a window ago. */
static void test_budget_shards(void) {
  bh__retry_cfg c = bh__cfg(); /* 20%, floor 3, window 10 s */
  static bh__retry_budget b;
  memset(&b, 0, sizeof(b));
  CHECK_INT(sizeof(bh__retry_budget_shard) % BH__CACHELINE, 0);
  CHECK_INT((uintptr_t)&b.shards[1] % BH__CACHELINE, 0);
  uint64_t t = 1000000;
  bh__shard_self = 1;
  for (int i = 0; i < 60; i++)
    bh__retry_budget_request(&b, &c, t + 1);
  bh__shard_self = 2;
  for (int i = 0; i < 40; i++)
    bh__retry_budget_request(&b, &c, t + 2);
  CHECK_INT(b.shards[1].requests_cur, 60);
  CHECK_INT(b.shards[2].requests_cur, 40);
  CHECK_INT(b.shards[0].requests_cur, 0);
  int got = 0;
  for (int i = 0; i < 50; i++)
    got += bh__retry_budget_take(&b, &c, t + 3);
  CHECK_INT(got, 20); /* 20% of both shards' 100 */
  CHECK_INT(b.requests_cur, 100);
  /* next window: shard 2 counts in it, shard 1 last counted in the one
   * before, which still weighs fully at its start: 20 retries < 20% of
   * 110 requests */
  for (int i = 0; i < 10; i++)
    bh__retry_budget_request(&b, &c, t + 10000);
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 10000), 1);
  CHECK_INT(b.requests_prev, 100);
  CHECK_INT(b.requests_cur, 10);
  CHECK_INT(b.retries_prev, 20);
  /* a take whose clock reads earlier than a shard's window: the shard's
   * window wins, nothing rolls back */
  memset(&b, 0, sizeof(b));
  bh__retry_budget_request(&b, &c, t + 10000);
  bh__shard_self = 1;
  CHECK_INT(bh__retry_budget_take(&b, &c, t + 9999), 1);
  CHECK_INT(b.window_start_ms, t + 10000);
  CHECK_INT(b.requests_cur, 1);
  bh__shard_self = 0;
}

static void test_retry_after_parse(void) {
  int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
  CHECK_INT(bh__retry_after_parse("0", now), 0);
  CHECK_INT(bh__retry_after_parse("120", now), 120);
  CHECK_INT(bh__retry_after_parse("007", now), 7);
  CHECK_INT(bh__retry_after_parse(" 5\t", now), 5);
  CHECK_INT(bh__retry_after_parse("9223372036854775807", now), INT64_MAX);
  CHECK_INT(bh__retry_after_parse("9223372036854775808", now), -1);
  CHECK_INT(bh__retry_after_parse("99999999999999999999999", now), -1);
  CHECK_INT(bh__retry_after_parse("-1", now), -1);
  CHECK_INT(bh__retry_after_parse("+1", now), -1);
  CHECK_INT(bh__retry_after_parse("1.5", now), -1);
  CHECK_INT(bh__retry_after_parse("12abc", now), -1);
  CHECK_INT(bh__retry_after_parse("1 2", now), -1);
  CHECK_INT(bh__retry_after_parse("0x10", now), -1);
  CHECK_INT(bh__retry_after_parse("", now), -1);
  CHECK_INT(bh__retry_after_parse("   ", now), -1);
  CHECK_INT(bh__retry_after_parse("soon", now), -1);
  CHECK_INT(bh__retry_after_parse(NULL, now), -1);

  /* HTTP dates, relative to now. */
  CHECK_INT(bh__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
  CHECK_INT(bh__retry_after_parse("Sun, 06 Nov 1994 08:50:37 GMT", now), 60);
  CHECK_INT(bh__retry_after_parse("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400);
  CHECK_INT(bh__retry_after_parse(" Sun, 06 Nov 1994 09:49:37 GMT ", now),
            3600);
  /* In the past: 0, not negative. */
  CHECK_INT(bh__retry_after_parse("Sat, 05 Nov 1994 08:49:37 GMT", now), 0);
  CHECK_INT(bh__retry_after_parse("Thu, 01 Jan 1970 00:00:00 GMT", now), 0);
  /* Absolute values against now = 0. */
  CHECK_INT(bh__retry_after_parse("Thu, 01 Jan 1970 00:00:01 GMT", 0), 1);
  CHECK_INT(bh__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", 0),
            784111777);
  CHECK_INT(bh__retry_after_parse("Tue, 29 Feb 2000 00:00:00 GMT", 0),
            951782400);
  CHECK_INT(bh__retry_after_parse("Fri, 31 Dec 2100 23:59:59 GMT", 0),
            4133980799LL);
  CHECK_INT(bh__retry_after_parse("Wed, 01 Mar 2028 12:00:00 GMT", 0),
            1835524800LL);
  /* Leap second is accepted. */
  CHECK_INT(bh__retry_after_parse("Sat, 31 Dec 2016 23:59:60 GMT", 0),
            1483228800LL);
  /* Malformed dates. */
  const char *bad[] = {
      "Sun, 06 Nov 1994 08:49:37 UTC",  "Sun, 06 Nov 1994 08:49:37",
      "Sun 06 Nov 1994 08:49:37 GMT",   "Sun, 6 Nov 1994 08:49:37 GMT",
      "Xyz, 06 Nov 1994 08:49:37 GMT",  "Sun, 06 Foo 1994 08:49:37 GMT",
      "Sun, 06 nov 1994 08:49:37 GMT",  "Sun, 32 Dec 1994 08:49:37 GMT",
      "Sun, 00 Dec 1994 08:49:37 GMT",  "Sun, 29 Feb 1900 08:49:37 GMT",
      "Sun, 31 Apr 1994 08:49:37 GMT",  "Sun, 06 Nov 1994 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:60:00 GMT",  "Sun, 06 Nov 1994 08:49:61 GMT",
      "Sun, 06 Nov 94 08:49:37 GMT",    "Sun, 06 Nov 1994 08-49-37 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMTX", "Sunday, 06-Nov-94 08:49:37 GMT",
      "Sun Nov  6 08:49:37 1994",       "Sun, 0a Nov 1994 08:49:37 GMT",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t v = bh__retry_after_parse(bad[i], now);
    if (v != -1) fprintf(stderr, "accepted: %s\n", bad[i]);
    CHECK_INT(v, -1);
  }
  /* 29 Feb in a leap year that is a multiple of 400 and of 4. */
  CHECK(bh__retry_after_parse("Tue, 29 Feb 2000 00:00:00 GMT", 0) > 0);
  CHECK(bh__retry_after_parse("Thu, 29 Feb 2024 00:00:00 GMT", 0) > 0);
  CHECK_INT(bh__retry_after_parse("Thu, 29 Feb 2023 00:00:00 GMT", 0), -1);
  /* A far-past now cannot overflow. */
  CHECK(bh__retry_after_parse("Fri, 31 Dec 9999 23:59:59 GMT", INT64_MIN) > 0);
}

int main(void) {
  test_defaults();
  test_methods();
  test_outcomes();
  test_delay_bounds();
  test_delay_retry_after();
  test_budget();
  test_budget_shards();
  test_retry_after_parse();
  return check_finish("retry");
}
