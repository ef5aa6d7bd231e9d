#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/arena.h"
#include "check.h"
#include "counting_alloc.h"
#include "policy/ratelimit.h"

static bh__rl_policy bh__pol(const char *name, uint32_t quota,
                             uint32_t window_s, uint32_t burst) {
  bh__rl_policy p;
  memset(&p, 0, sizeof(p));
  snprintf(p.name, sizeof(p.name), "%s", name);
  p.quota = quota;
  p.window_s = window_s;
  p.burst = burst;
  p.key = BH__RL_KEY_CLIENT;
  return p;
}

static bh__rl_result bh__take(bh__rl_table *t, const char *key, uint64_t now) {
  bh__rl_result r;
  memset(&r, 0xff, sizeof(r));
  CHECK_INT(bh__rl_take(t, key, now, &r), 0);
  CHECK(r.allowed == 0 || r.allowed == 1);
  if (r.allowed)
    CHECK_INT(r.retry_after_s, 0);
  else
    CHECK(r.retry_after_s >= 1);
  return r;
}

static void test_burst_then_refusal(void) {
  bh__rl_policy p = bh__pol("burst", 10, 60, 0); /* burst = quota */
  bh__rl_table *t = bh__rl_table_new(&p, 100);
  CHECK(t != NULL);
  uint64_t now = 1000000;
  for (int i = 0; i < 10; i++) {
    bh__rl_result r = bh__take(t, "10.0.0.1", now);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(r.remaining, 9 - i);
    /* One token refills in 6 s: i+1 missing take 6*(i+1) s. */
    CHECK_INT(r.reset_s, 6 * (i + 1));
  }
  bh__rl_result r = bh__take(t, "10.0.0.1", now);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.remaining, 0);
  CHECK_INT(r.reset_s, 60);
  CHECK_INT(r.retry_after_s, 6);
  /* Refusals do not dig a hole: still one token in 6 s. */
  for (int i = 0; i < 100; i++)
    bh__take(t, "10.0.0.1", now);
  r = bh__take(t, "10.0.0.1", now + 1);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 6); /* 5.999 s, rounded up */
  r = bh__take(t, "10.0.0.1", now + 5001);
  CHECK_INT(r.retry_after_s, 1);
  r = bh__take(t, "10.0.0.1", now + 5999);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 1); /* >= 1 even for 1 ms */
  r = bh__take(t, "10.0.0.1", now + 6000);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, 0);
  CHECK_INT(r.reset_s, 60);
  /* Another key is untouched. */
  r = bh__take(t, "10.0.0.2", now + 6000);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, 9);
  bh__rl_table_free(t);
}

static void test_refill(void) {
  bh__rl_policy p = bh__pol("api", 10, 60, 0);
  bh__rl_table *t = bh__rl_table_new(&p, 100);
  uint64_t now = 5000;
  for (int i = 0; i < 10; i++)
    bh__take(t, "k", now);
  /* Half a window: 5 tokens back. */
  bh__rl_result r = bh__take(t, "k", now + 30000);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, 4);
  CHECK_INT(r.reset_s, 36);
  /* Long idle: full, never more than burst. */
  r = bh__take(t, "k", now + 10000000);
  CHECK_INT(r.remaining, 9);
  CHECK_INT(r.reset_s, 6);
  /* Fractions accumulate: 3 s is half a token, twice is one. */
  for (int i = 0; i < 9; i++)
    bh__take(t, "k", now + 10000000);
  r = bh__take(t, "k", now + 10003000);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 3);
  r = bh__take(t, "k", now + 10006000);
  CHECK_INT(r.allowed, 1);
  /* A clock that steps back refills nothing and breaks nothing. */
  r = bh__take(t, "k", now);
  CHECK_INT(r.allowed, 0);
  r = bh__take(t, "k", now + 10012000);
  CHECK_INT(r.allowed, 1);
  /* Huge times do not overflow. */
  r = bh__take(t, "k", UINT64_MAX - 1);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, 9);
  r = bh__take(t, "k", UINT64_MAX);
  CHECK_INT(r.remaining, 8);
  bh__rl_table_free(t);

  /* Sub-second refill: 3 per second. */
  p = bh__pol("fast", 3, 1, 3);
  t = bh__rl_table_new(&p, 10);
  for (int i = 0; i < 3; i++)
    CHECK_INT(bh__take(t, "x", 0).allowed, 1);
  CHECK_INT(bh__take(t, "x", 333).allowed, 0); /* 0.999 token */
  r = bh__take(t, "x", 334);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, 0);
  CHECK_INT(r.reset_s, 1);
  r = bh__take(t, "x", 334);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 1);
  /* 300 takes, one every 333.4 ms, all allowed at the exact rate. */
  int ok = 0;
  for (int i = 1; i <= 300; i++)
    ok += bh__take(t, "y", 10000 + (uint64_t)i * 3334 / 10).allowed;
  CHECK_INT(ok, 300);
  bh__rl_table_free(t);
}

static void test_burst_above_quota(void) {
  /* 100 per hour, bursts of 20. */
  bh__rl_policy p = bh__pol("hourly", 100, 3600, 20);
  bh__rl_table *t = bh__rl_table_new(&p, 10);
  bh__rl_result r;
  for (int i = 0; i < 20; i++) {
    r = bh__take(t, "user-1", 0);
    CHECK_INT(r.allowed, 1);
  }
  CHECK_INT(r.remaining, 0);
  CHECK_INT(r.reset_s, 720); /* 20 tokens at 36 s each */
  r = bh__take(t, "user-1", 0);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 36);

  /* Burst below quota: 1 token capacity, 60 per minute. */
  p = bh__pol("strict", 60, 60, 1);
  bh__rl_table_free(t);
  t = bh__rl_table_new(&p, 10);
  CHECK_INT(bh__take(t, "a", 0).allowed, 1);
  r = bh__take(t, "a", 500);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 1);
  CHECK_INT(r.reset_s, 1);
  CHECK_INT(bh__take(t, "a", 1000).allowed, 1);
  bh__rl_table_free(t);
}

static const char *bh__hdr(const bh__rl_policy *p, const bh__rl_result *r) {
  static char text[512];
  bh__buf b;
  bh__buf_init(&b);
  bh__rl_headers(p, r, NULL, &b);
  CHECK(!bh__buf_failed(&b));
  snprintf(text, sizeof(text), "%s", b.data ? b.data : "");
  bh__buf_free(&b);
  return text;
}

static void test_headers(void) {
  bh__rl_policy p = bh__pol("burst", 100, 60, 0);
  bh__rl_result r = {1, 42, 30, 0};
  CHECK_STR(bh__hdr(&p, &r), "RateLimit-Policy: \"burst\";q=100;w=60\r\n"
                             "RateLimit: \"burst\";r=42;t=30\r\n");
  r = (bh__rl_result){0, 0, 60, 7};
  CHECK_STR(bh__hdr(&p, &r), "RateLimit-Policy: \"burst\";q=100;w=60\r\n"
                             "RateLimit: \"burst\";r=0;t=60\r\n"
                             "Retry-After: 7\r\n");
  /* The partition key, an sf-binary on both fields; never a break-out. */
  {
    bh__buf pb;
    bh__buf_init(&pb);
    r = (bh__rl_result){1, 3, 5, 0};
    bh__rl_headers(&p, &r, "q83v\r\n\";x", &pb);
    CHECK_STR(pb.data, "RateLimit-Policy: \"burst\";q=100;w=60;pk=:q83vx:\r\n"
                       "RateLimit: \"burst\";r=3;t=5;pk=:q83vx:\r\n");
    bh__buf_free(&pb);
  }
  /* Appends: existing content is kept. */
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "X: 1\r\n");
  r = (bh__rl_result){1, 4294967295u, 4294967295u, 0};
  bh__rl_headers(&p, &r, NULL, &b);
  CHECK_STR(b.data, "X: 1\r\nRateLimit-Policy: \"burst\";q=100;w=60\r\n"
                    "RateLimit: \"burst\";r=4294967295;t=4294967295\r\n");
  bh__buf_free(&b);
  /* A hostile name can never break out of the sf-string or the line. */
  bh__rl_policy bad = bh__pol("a\"b\\c\r\nX: y", 1, 1, 0);
  r = (bh__rl_result){1, 0, 1, 0};
  CHECK_STR(bh__hdr(&bad, &r),
            "RateLimit-Policy: \"a\\\"b\\\\cX: y\";q=1;w=1\r\n"
            "RateLimit: \"a\\\"b\\\\cX: y\";r=0;t=1\r\n");
  /* A name filling the whole array without a NUL is read to its end. */
  memset(bad.name, 'n', sizeof(bad.name));
  char want[80];
  want[0] = '"';
  memset(want + 1, 'n', sizeof(bad.name));
  snprintf(want + 1 + sizeof(bad.name), sizeof(want) - 1 - sizeof(bad.name),
           "\";q=1;w=1\r\n");
  CHECK(strncmp(bh__hdr(&bad, &r) + strlen("RateLimit-Policy: "), want,
                strlen(want)) == 0);

  /* A real take feeds the headers, and Retry-After equals the result. */
  bh__rl_table *t = bh__rl_table_new(&p, 4);
  bh__rl_result got = bh__take(t, "c", 0);
  CHECK_STR(bh__hdr(&p, &got), "RateLimit-Policy: \"burst\";q=100;w=60\r\n"
                               "RateLimit: \"burst\";r=99;t=1\r\n");
  for (int i = 0; i < 99; i++)
    bh__take(t, "c", 0);
  got = bh__take(t, "c", 0);
  CHECK_STR(bh__hdr(&p, &got), "RateLimit-Policy: \"burst\";q=100;w=60\r\n"
                               "RateLimit: \"burst\";r=0;t=60\r\n"
                               "Retry-After: 1\r\n");
  bh__rl_table_free(t);
}

static void test_eviction(void) {
  /* 1 token per hour: a key's state shows whether it was evicted. */
  bh__rl_policy p = bh__pol("tight", 1, 3600, 1);
  const size_t max = 64;
  bh__rl_table *t = bh__rl_table_new(&p, max);
  char key[32];
  CHECK_INT(bh__take(t, "victim", 0).allowed, 1);
  CHECK_INT(bh__take(t, "victim", 1).allowed, 0);
  /* max - 1 other keys: the victim is still there. */
  for (size_t i = 0; i < max - 1; i++) {
    snprintf(key, sizeof(key), "k%zu", i);
    CHECK_INT(bh__take(t, key, 2).allowed, 1);
  }
  CHECK_INT(bh__take(t, "victim", 3).allowed, 0); /* and now most recent */
  /* max - 1 more: k0.. are evicted first (LRU), victim survives. */
  for (size_t i = 0; i < max - 1; i++) {
    snprintf(key, sizeof(key), "n%zu", i);
    CHECK_INT(bh__take(t, key, 4).allowed, 1);
  }
  CHECK_INT(bh__take(t, "victim", 5).allowed, 0);
  snprintf(key, sizeof(key), "k%zu", (size_t)0);
  CHECK_INT(bh__take(t, key, 6).allowed, 1); /* evicted: a fresh bucket */
  /* One more round of new keys pushes the victim out. */
  for (size_t i = 0; i < max; i++) {
    snprintf(key, sizeof(key), "m%zu", i);
    CHECK_INT(bh__take(t, key, 7).allowed, 1);
  }
  CHECK_INT(bh__take(t, "victim", 8).allowed, 1);
  /* The most recent max keys are all still present. */
  for (size_t i = 1; i < max; i++) {
    snprintf(key, sizeof(key), "m%zu", i);
    CHECK_INT(bh__take(t, key, 9).allowed, 0);
  }
  bh__rl_table_free(t);

  /* Many keys through a small table: memory stays bounded (ASan would
   * report leaks) and each new key starts full. */
  t = bh__rl_table_new(&p, 1000);
  for (uint64_t i = 0; i < 200000; i++) {
    snprintf(key, sizeof(key), "client-%llu", (unsigned long long)i);
    bh__rl_result r = bh__take(t, key, i);
    CHECK_INT(r.allowed, 1);
    if (!r.allowed) break;
  }
  /* Hot keys in a churn of cold ones stay (they are always recent). */
  int hot_refused = 0;
  for (uint64_t i = 0; i < 10000; i++) {
    snprintf(key, sizeof(key), "cold-%llu", (unsigned long long)i);
    bh__take(t, key, 300000);
    if (i % 100 == 0) hot_refused += !bh__take(t, "hot", 300000).allowed;
  }
  CHECK_INT(hot_refused, 99); /* only the first one was allowed */
  bh__rl_table_free(t);

  /* max_keys 1: every new key replaces the last. */
  t = bh__rl_table_new(&p, 1);
  CHECK_INT(bh__take(t, "a", 0).allowed, 1);
  CHECK_INT(bh__take(t, "a", 0).allowed, 0);
  CHECK_INT(bh__take(t, "b", 0).allowed, 1);
  CHECK_INT(bh__take(t, "a", 0).allowed, 1);
  bh__rl_table_free(t);
}

static void test_keys(void) {
  bh__rl_policy p = bh__pol("k", 1, 3600, 1);
  bh__rl_table *t = bh__rl_table_new(&p, 100);
  /* The empty key and keys that differ only at the end are distinct. */
  CHECK_INT(bh__take(t, "", 0).allowed, 1);
  CHECK_INT(bh__take(t, "", 0).allowed, 0);
  CHECK_INT(bh__take(t, "ab", 0).allowed, 1);
  CHECK_INT(bh__take(t, "abc", 0).allowed, 1);
  CHECK_INT(bh__take(t, "ab", 0).allowed, 0);

  /* Long keys (> 256 bytes) are hashed but still told apart, even with a
   * shared prefix far longer than the cap. */
  static char a[4096], b[4096], c[257], d[258];
  memset(a, 'x', sizeof(a) - 1);
  memcpy(b, a, sizeof(b));
  b[sizeof(b) - 2] = 'y';
  CHECK_INT(bh__take(t, a, 0).allowed, 1);
  CHECK_INT(bh__take(t, b, 0).allowed, 1);
  CHECK_INT(bh__take(t, a, 0).allowed, 0);
  CHECK_INT(bh__take(t, b, 0).allowed, 0);
  /* Exactly 256 bytes is stored as is; 257 is hashed; both distinct. */
  memset(c, 'x', sizeof(c) - 1);
  memset(d, 'x', sizeof(d) - 1);
  CHECK_INT(bh__take(t, c, 0).allowed, 1);
  CHECK_INT(bh__take(t, d, 0).allowed, 1);
  CHECK_INT(bh__take(t, c, 0).allowed, 0);
  CHECK_INT(bh__take(t, d, 0).allowed, 0);
  /* Binary-ish bytes are fine. */
  CHECK_INT(bh__take(t, "\xff\x01\x7f", 0).allowed, 1);
  CHECK_INT(bh__take(t, "\xff\x01\x7f", 0).allowed, 0);
  /* Bad arguments. */
  bh__rl_result r;
  CHECK_INT(bh__rl_take(t, NULL, 0, &r), -EINVAL);
  CHECK_INT(bh__rl_take(t, "a", 0, NULL), -EINVAL);
  CHECK_INT(bh__rl_take(NULL, "a", 0, &r), -EINVAL);
  bh__rl_table_free(t);
  bh__rl_table_free(NULL);

  CHECK_INT(bh__rl_key_parse("client"), BH__RL_KEY_CLIENT);
  CHECK_INT(bh__rl_key_parse("api_key"), BH__RL_KEY_API_KEY);
  CHECK_INT(bh__rl_key_parse("principal"), BH__RL_KEY_PRINCIPAL);
  CHECK_INT(bh__rl_key_parse("Client"), -EINVAL);
  CHECK_INT(bh__rl_key_parse("apikey"), -EINVAL);
  CHECK_INT(bh__rl_key_parse(""), -EINVAL);
  CHECK_INT(bh__rl_key_parse("client "), -EINVAL);
  CHECK_INT(bh__rl_key_parse(NULL), -EINVAL);
}

static void test_bad_policies(void) {
  bh__rl_policy p = bh__pol("x", 0, 60, 0);
  errno = 0;
  CHECK(bh__rl_table_new(&p, 10) == NULL);
  CHECK_INT(errno, EINVAL);
  p = bh__pol("x", 10, 0, 0);
  CHECK(bh__rl_table_new(&p, 10) == NULL);
  p = bh__pol("x", 10, 60, 0);
  CHECK(bh__rl_table_new(&p, 0) == NULL);
  CHECK(bh__rl_table_new(NULL, 10) == NULL);
  /* Burst * window so large the integer arithmetic could overflow. */
  p = bh__pol("x", 10, UINT32_MAX, UINT32_MAX);
  CHECK(bh__rl_table_new(&p, 10) == NULL);
  /* Extremes that fit still work. */
  p = bh__pol("x", UINT32_MAX, 1, UINT32_MAX);
  bh__rl_table *t = bh__rl_table_new(&p, 10);
  CHECK(t != NULL);
  bh__rl_result r = bh__take(t, "k", 0);
  CHECK_INT(r.allowed, 1);
  CHECK_INT(r.remaining, UINT32_MAX - 1);
  CHECK_INT(r.reset_s, 1);
  bh__rl_table_free(t);
  p = bh__pol("x", 1, 86400 * 365, 1000);
  t = bh__rl_table_new(&p, 10);
  CHECK(t != NULL);
  for (int i = 0; i < 1000; i++)
    bh__take(t, "k", 0);
  r = bh__take(t, "k", 0);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 86400 * 365);
  CHECK_INT(r.reset_s, UINT32_MAX); /* 1000 years saturates */
  bh__rl_table_free(t);
}

static void test_allocator(void) {
  bh__rl_policy p = bh__pol("a", 1, 3600, 1);
  bh__counting c = {0, 0, 0};
  bh__allocator a = {bh__c_alloc, bh__c_realloc, bh__c_free, &c};
  bh__rl_table *t = bh__rl_table_new_with(&p, 50, &a);
  CHECK(t != NULL);
  memset(&a, 0, sizeof(a)); /* the table kept its own copy */
  CHECK_INT(c.live, 2);     /* the table and its slots */
  char key[32];
  static char longkey[1000];
  memset(longkey, 'k', sizeof(longkey) - 1);
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof(key), "key-%d", i);
    CHECK_INT(bh__take(t, key, 0).allowed, 1);
  }
  CHECK_INT(bh__take(t, longkey, 0).allowed, 1);
  CHECK_INT(bh__take(t, longkey, 0).allowed, 0);
  CHECK_INT(c.live, 2 + 50); /* at most max_keys entries */
  bh__rl_table_free(t);
  CHECK_INT(c.live, 0);

  /* Creation out of memory: NULL, ENOMEM, nothing leaked. */
  for (long k = 1; k <= 2; k++) {
    bh__counting f = {0, 0, k};
    bh__allocator fa = {bh__c_alloc, bh__c_realloc, bh__c_free, &f};
    errno = 0;
    CHECK(bh__rl_table_new_with(&p, 50, &fa) == NULL);
    CHECK_INT(errno, ENOMEM);
    CHECK_INT(f.live, 0);
  }
  /* Entries out of memory with an empty table: -ENOMEM, table intact. */
  bh__counting f = {0, 0, 3};
  bh__allocator fa = {bh__c_alloc, bh__c_realloc, bh__c_free, &f};
  t = bh__rl_table_new_with(&p, 50, &fa);
  CHECK(t != NULL);
  bh__rl_result r;
  CHECK_INT(bh__rl_take(t, "x", 0, &r), -ENOMEM);
  bh__rl_table_free(t);
  CHECK_INT(f.live, 0);

  /* NULL means libc; bad policies are still refused. */
  t = bh__rl_table_new_with(&p, 10, NULL);
  CHECK(t != NULL);
  bh__rl_table_free(t);
  bh__rl_policy bad = bh__pol("x", 0, 60, 0);
  errno = 0;
  CHECK(bh__rl_table_new_with(&bad, 10, &fa) == NULL);
  CHECK_INT(errno, EINVAL);
}

static void test_arena(void) {
  size_t size = 512 << 10;
  void *mem = aligned_alloc(64, size);
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  bh__rl_policy p = bh__pol("tight", 1, 3600, 1);
  bh__rl_table *t = bh__rl_table_new_with(&p, 1000, &a);
  bh__rl_table *ref = bh__rl_table_new(&p, 1000);
  CHECK(t != NULL);
  CHECK((char *)t > (char *)mem && (char *)t < (char *)mem + size);

  /* Eviction churn: 200000 keys through 1000 buckets would need ~30 MB
   * without reuse; the arena is 512 KiB and its usage stops growing once
   * the table is full. Answers match a libc table's. */
  char key[32];
  size_t warm = 0;
  int same = 1, fails = 0;
  for (uint64_t i = 0; i < 200000; i++) {
    snprintf(key, sizeof(key), "client-%llu", (unsigned long long)(i % 150000));
    bh__rl_result r1, r2;
    fails += bh__rl_take(t, key, i, &r1) != 0;
    bh__rl_take(ref, key, i, &r2);
    same &= r1.allowed == r2.allowed && r1.remaining == r2.remaining &&
            r1.reset_s == r2.reset_s && r1.retry_after_s == r2.retry_after_s;
    if (i == 1500) warm = bh__arena_used(ar);
  }
  CHECK_INT(fails, 0);
  CHECK(same);
  CHECK(warm > 0);
  CHECK_INT(bh__arena_used(ar), warm);
  /* The most recent keys are still there, and refused. */
  CHECK_INT(bh__take(t, "client-49999", 300000).allowed, 0);
  bh__rl_table_free(ref);
  bh__rl_table_free(t);

  /* Freeing gave everything back: a second table of the same shape and
   * churn (keys of the same lengths, so the same size classes) costs
   * nothing new. */
  t = bh__rl_table_new_with(&p, 1000, &a);
  for (uint64_t i = 0; i < 20000; i++) {
    snprintf(key, sizeof(key), "second-%llu", (unsigned long long)i);
    CHECK_INT(bh__take(t, key, i).allowed, 1);
  }
  CHECK_INT(bh__arena_used(ar), warm);
  bh__rl_table_free(t);
  free(mem);

  /* An arena too small for max_keys: new keys still get a bucket (the
   * least recently used one is given up), so the limit keeps working. */
  size = 16 << 10;
  mem = aligned_alloc(64, size);
  ar = bh__arena_init(mem, size);
  a = bh__arena_allocator(ar);
  t = bh__rl_table_new_with(&p, 100000, &a);
  CHECK(t == NULL); /* the slot array alone does not fit */
  t = bh__rl_table_new_with(&p, 256, &a);
  CHECK(t != NULL);
  fails = 0;
  for (uint64_t i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
    bh__rl_result r;
    fails += bh__rl_take(t, key, 0, &r) != 0 || !r.allowed;
  }
  CHECK_INT(fails, 0);
  CHECK(bh__arena_used(ar) <= size);
  for (uint64_t i = 4990; i < 5000; i++) {
    snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
    CHECK_INT(bh__take(t, key, 1).allowed, 0);
  }
  CHECK_INT(bh__take(t, "k0", 1).allowed, 1); /* long evicted */
  bh__rl_table_free(t);
  free(mem);
}

/* One table, two processes: a token the child takes is gone for the
 * parent, and the keys hash the same (one SipHash key, in the table). */
static void test_shared(void) {
  size_t size = 1 << 20;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  if (mem == MAP_FAILED) return;
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  bh__rl_policy p = bh__pol("shared", 1, 3600, 1);
  bh__rl_table *t = bh__rl_table_new_with(&p, 100, &a);
  CHECK_INT(bh__take(t, "parent", 0).allowed, 1);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    bh__rl_result r;
    int ok = bh__rl_take(t, "child", 0, &r) == 0 && r.allowed;
    ok &= bh__rl_take(t, "parent", 0, &r) == 0 && !r.allowed;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_INT(bh__take(t, "child", 1).allowed, 0);
  CHECK_INT(bh__take(t, "fresh", 1).allowed, 1);
  bh__rl_table_free(t);
  munmap(mem, size);
}

/* A token taken in advance and given back: the bucket is as before, never
 * above its burst, and an unknown key gets nothing (it is full anyway). */
static void test_give_back(void) {
  bh__rl_policy p = bh__pol("give", 1, 60, 3);
  bh__rl_table *t = bh__rl_table_new(&p, 100);
  CHECK(t != NULL);
  CHECK_INT(bh__rl_give(t, "nobody", 0), -ENOENT);
  bh__rl_result r = bh__take(t, "a", 0);
  CHECK_INT(r.remaining, 2);
  CHECK_INT(bh__rl_give(t, "a", 0), 0);
  r = bh__take(t, "a", 0);
  CHECK_INT(r.remaining, 2); /* the given-back token was there */
  CHECK_INT(bh__rl_give(t, "a", 0), 0);
  CHECK_INT(bh__rl_give(t, "a", 0), 0); /* capped at the burst */
  for (int i = 2; i >= 0; i--)
    CHECK_INT(bh__take(t, "a", 0).remaining, (uint32_t)i);
  CHECK_INT(bh__take(t, "a", 0).allowed, 0);
  /* half a window later, half a token and one given back: 1.5 */
  CHECK_INT(bh__rl_give(t, "a", 30000), 0);
  CHECK_INT(bh__take(t, "a", 30000).allowed, 1);
  r = bh__take(t, "a", 30000);
  CHECK_INT(r.allowed, 0);
  CHECK_INT(r.retry_after_s, 30);
  /* a long key (stored hashed) is found again too */
  char big[400];
  memset(big, 'k', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CHECK_INT(bh__take(t, big, 0).remaining, 2);
  CHECK_INT(bh__rl_give(t, big, 0), 0);
  CHECK_INT(bh__take(t, big, 0).remaining, 2);
  CHECK_INT(bh__rl_give(NULL, "a", 0), -EINVAL);
  bh__rl_table_free(t);
}

/* unit = tokens: a cost charged afterwards, n at a time, down to empty and
 * never below; a look (n = 0) refuses once less than one token is left,
 * with the wait until one is back. */
static void test_charge(void) {
  bh__rl_policy p = bh__pol("ai_tokens", 100, 60, 0);
  p.unit = BH__RL_UNIT_TOKENS;
  bh__rl_table *t = bh__rl_table_new(&p, 16);
  CHECK(t != NULL);
  bh__rl_result r;
  CHECK_INT(bh__rl_charge(t, "p:u", 0, 0, &r), 0);
  CHECK(r.allowed && r.remaining == 100 && r.reset_s == 0);
  CHECK_INT(bh__rl_charge(t, "p:u", 18, 0, &r), 0);
  CHECK(r.allowed && r.remaining == 82 && r.reset_s == 11); /* 18 * 0.6 s */
  CHECK_INT(bh__rl_charge(t, "p:u", 80, 0, &r), 0);
  CHECK(r.allowed && r.remaining == 2);
  CHECK_INT(bh__rl_charge(t, "p:u", 0, 0, &r), 0);
  CHECK(r.allowed);
  /* more than is left: all of it goes, and the charge says so */
  CHECK_INT(bh__rl_charge(t, "p:u", 18, 0, &r), 0);
  CHECK(!r.allowed && r.remaining == 0 && r.reset_s == 60);
  CHECK_INT(bh__rl_charge(t, "p:u", 0, 0, &r), 0);
  CHECK(!r.allowed && r.retry_after_s == 1); /* one token: 0.6 s */
  CHECK_INT(bh__rl_charge(t, "p:u", 0, 600, &r), 0);
  CHECK(r.allowed && r.remaining == 1);
  /* a huge n empties the bucket without overflowing */
  CHECK_INT(bh__rl_charge(t, "p:v", UINT64_MAX, 0, &r), 0);
  CHECK(!r.allowed && r.remaining == 0);
  /* other keys are their own buckets */
  CHECK_INT(bh__rl_charge(t, "p:w", 0, 0, &r), 0);
  CHECK(r.allowed && r.remaining == 100);
  CHECK_INT(bh__rl_charge(NULL, "p:u", 1, 0, &r), -EINVAL);
  /* the policy field names the unit */
  r = (bh__rl_result){1, 82, 11, 0};
  CHECK_STR(bh__hdr(&p, &r),
            "RateLimit-Policy: \"ai_tokens\";q=100;w=60;qu=\"tokens\"\r\n"
            "RateLimit: \"ai_tokens\";r=82;t=11\r\n");
  CHECK_INT(bh__rl_unit_parse("tokens"), BH__RL_UNIT_TOKENS);
  CHECK_INT(bh__rl_unit_parse("requests"), BH__RL_UNIT_REQUESTS);
  CHECK_INT(bh__rl_unit_parse("bytes"), -EINVAL);
  bh__rl_table_free(t);
}

int main(void) {
  test_burst_then_refusal();
  test_refill();
  test_burst_above_quota();
  test_headers();
  test_eviction();
  test_keys();
  test_bad_policies();
  test_allocator();
  test_arena();
  test_shared();
  test_give_back();
  test_charge();
  return check_finish("ratelimit");
}
