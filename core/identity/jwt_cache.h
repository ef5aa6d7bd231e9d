/*
 * The tokens this process verified already (the Envoy jwt_authn model): a
 * bounded LRU keyed by the whole token string, so a token that differs by
 * one byte from a cached one is verified from scratch. A hit skips the
 * signature and the JSON; exp, nbf and iat are checked again on every hit.
 * Tokens over BH__JWT_CACHE_MAX_TOKEN bytes are never cached. One cache
 * per worker (its loop thread only): nothing is shared between processes.
 * Flushed whenever the keys change.
 */
#ifndef BH_CORE_IDENTITY_JWT_CACHE_H
#define BH_CORE_IDENTITY_JWT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "identity/jwt_token.h"

#define BH__JWT_CACHE_MAX_TOKEN 4096

typedef struct bh__jwt_cache bh__jwt_cache;

/* A cache of `capacity` tokens (0: NULL, no cache; the calls below then
 * verify every token). NULL on no memory too. */
bh__jwt_cache *bh__jwt_cache_new(uint32_t capacity);
void bh__jwt_cache_free(bh__jwt_cache *c);
/* Forgets every token (the keys changed). */
void bh__jwt_cache_flush(bh__jwt_cache *c);

/* bh__jwt_verify through the cache: a hit copies the cached claims after
 * the times check (an entry found expired is dropped), a miss verifies and
 * caches the token when it is good. c may be NULL. */
int bh__jwt_verify_cached(const bh__jwt_keys *k, bh__jwt_cache *c,
                          const char *token, int64_t now, bh__claims *out);

/* Hits, misses and entries, for the tests and /metrics. */
void bh__jwt_cache_stats(const bh__jwt_cache *c, uint64_t *hits,
                         uint64_t *misses, uint32_t *entries);

#endif
