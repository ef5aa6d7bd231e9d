/*
 * Named rate-limit policies (limits.c): [rate_limit.NAME] parsed and
 * checked, one table per policy and daemon, tokens taken by key.
 */
#ifndef BH_CORE_UPSTREAM_LIMITS_H
#define BH_CORE_UPSTREAM_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "policy/ratelimit.h"

typedef struct bh__daemon bh__daemon;
struct bh__limit;

/* Parses and checks [rate_limit.NAME] (run at config load by proc/load.c,
 * so that `-t` and a reload refuse what a worker would). 0 or -errno, the
 * reason ("file:line: [section] key: ...") in why. */
int bh__limit_policy_parse(const bh__config *cfg, const char *name,
                           bh__rl_policy *out, char *why, size_t whylen);
/* The policy `name`, created from [rate_limit.NAME] on first use; NULL with
 * the reason in why. */
struct bh__limit *bh__limit_get(bh__daemon *d, const char *name, char *why,
                                size_t whylen);
/* The policy `name` if some user created it already, else NULL. */
struct bh__limit *bh__limit_find(bh__daemon *d, const char *name);
void bh__limits_free(bh__daemon *d);
const bh__rl_policy *bh__limit_policy(const struct bh__limit *l);
/* A token for `key`; 0 with the result in r, or -errno (callers fail
 * open). */
int bh__limit_take(struct bh__limit *l, const char *key, uint64_t now_ms,
                   bh__rl_result *r);
/* Charges n tokens (0: only looks) to `key` of a unit = tokens policy
 * (bh__rl_charge); 0 with the result in r, or -errno. */
int bh__limit_charge(struct bh__limit *l, const char *key, uint64_t n,
                     uint64_t now_ms, bh__rl_result *r);
/* Gives back a token taken from `key` (a bucket never exceeds its burst). */
void bh__limit_give(struct bh__limit *l, const char *key, uint64_t now_ms);
/* The result of a check that went to the shared backend. */
typedef void (*bh__limit_cb)(void *arg, const bh__rl_result *r);
/* A token for `key` from the policy's backend. 0: decided now, in r (a
 * local policy, or a redis one while the server is out of reach: this
 * instance's buckets); 1: the server was asked and cb gets the answer
 * once, within [redis] timeout_ms (the local buckets' answer past it);
 * -errno: no answer (callers fail open). */
int bh__limit_take_async(bh__daemon *d, struct bh__limit *l, const char *key,
                         bh__rl_result *r, bh__limit_cb cb, void *arg);
/* A token for `key`; 0, or -EAGAIN with the wait in seconds. */
int bh__limit_take_key(struct bh__limit *l, const char *key, uint64_t now_ms,
                       uint32_t *wait_s);

#endif
