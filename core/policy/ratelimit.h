/*
 * Token-bucket rate limits per named policy, keyed by principal, API key or
 * client address. Answers carry the IETF draft's structured fields:
 *   RateLimit-Policy: "<name>";q=<quota>;w=<window seconds>
 *   RateLimit: "<name>";r=<remaining>;t=<seconds until full>
 */
#ifndef BH_CORE_RATELIMIT_H
#define BH_CORE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/buf.h"

/* What a token of the policy is: one request, or (unit = tokens) one
 * provider token a plugin charges after the fact (an LLM's usage). */
enum bh__rl_unit { BH__RL_UNIT_REQUESTS = 0, BH__RL_UNIT_TOKENS = 1 };

enum bh__rl_key {
  BH__RL_KEY_CLIENT = 0,
  BH__RL_KEY_API_KEY,
  BH__RL_KEY_PRINCIPAL
};

/* Where a route's buckets live: this instance's memory (shared by its
 * workers), or the [redis] server shared by every instance. */
enum bh__rl_backend { BH__RL_BACKEND_LOCAL = 0, BH__RL_BACKEND_REDIS };

typedef struct bh__rl_policy {
  char name[48];     /* [a-z0-9_]+ */
  uint32_t quota;    /* tokens refilled per window */
  uint32_t window_s; /* refill window in seconds */
  uint32_t burst;    /* bucket capacity (>= 1); default = quota */
  int key;           /* enum bh__rl_key */
  int backend;       /* enum bh__rl_backend */
  int unit;          /* enum bh__rl_unit */
} bh__rl_policy;

typedef struct bh__rl_table bh__rl_table;

/* A table holds the buckets of one policy. max_keys bounds memory: past it
 * the least recently used bucket is evicted (a full bucket is equivalent to
 * an absent one, so eviction of idle keys is harmless). */
bh__rl_table *bh__rl_table_new(const bh__rl_policy *policy, size_t max_keys);
/* The same, with every allocation of the table (itself, its slots, its
 * entries) through `a`, which is copied into it; NULL means libc. NULL
 * with errno EINVAL or ENOMEM. A table on a shared arena serves every
 * process mapping it; the caller holds the shared lock around each call.
 * Out of memory in take first evicts the least recently used bucket and
 * retries, so a full arena does not turn every new key into an error. */
bh__rl_table *bh__rl_table_new_with(const bh__rl_policy *policy,
                                    size_t max_keys, const bh__allocator *a);
/* Frees through the table's allocator. */
void bh__rl_table_free(bh__rl_table *t);

typedef struct bh__rl_result {
  int allowed;
  uint32_t remaining;     /* whole tokens left after this request */
  uint32_t reset_s;       /* seconds until the bucket is full again (ceil) */
  uint32_t retry_after_s; /* when refused: seconds until one token (ceil,
                             >= 1); 0 when allowed */
} bh__rl_result;

/* Takes one token for `key` at now_ms. 0, or -ENOMEM. */
int bh__rl_take(bh__rl_table *t, const char *key, uint64_t now_ms,
                bh__rl_result *res);

/* Charges n tokens for `key` at now_ms, a cost known only afterwards (the
 * provider tokens an LLM answer used): takes what is there, down to an
 * empty bucket, never below (allowed = 1 when all n were there). n = 0
 * only looks: allowed = at least one token is left. 0, or -ENOMEM. */
int bh__rl_charge(bh__rl_table *t, const char *key, uint64_t n, uint64_t now_ms,
                  bh__rl_result *res);

/* Gives back one token taken from `key` (capped at the burst): a charge
 * made in advance that turned out not to apply. 0, or -ENOENT when the key
 * has no bucket (evicted: it is full anyway). */
int bh__rl_give(bh__rl_table *t, const char *key, uint64_t now_ms);

/* Appends the RateLimit-Policy and RateLimit header lines ("Name: v\r\n"),
 * and Retry-After when refused; a tokens policy says qu="tokens". pk: the
 * partition key as base64 (the sf-binary's content), or NULL for none. */
void bh__rl_headers(const bh__rl_policy *p, const bh__rl_result *r,
                    const char *pk, bh__buf *out);

/* Parses "client" | "api_key" | "principal"; -EINVAL otherwise. */
int bh__rl_key_parse(const char *s);
/* Parses "requests" | "tokens"; -EINVAL otherwise. */
int bh__rl_unit_parse(const char *s);

#endif
