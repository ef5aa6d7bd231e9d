/*
 * The tokens this process verified already (the Envoy jwt_authn model): a
 * bounded LRU keyed by the whole token string, so a token that differs by
 * one byte from a cached one is verified from scratch (the bucket is picked
 * from the token's last bytes only: jwt_cache.c says why that is safe). A hit
 * skips the signature and the JSON; exp, nbf and iat are checked again on every
 * hit. Tokens over BH__JWT_CACHE_MAX_TOKEN bytes are never cached. One cache
 * per worker (its loop thread only): nothing is shared between processes.
 * Flushed whenever the keys change.
 */
#ifndef BH_CORE_IDENTITY_JWT_CACHE_H
#define BH_CORE_IDENTITY_JWT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "identity/jwt_token.h"

#define BH__JWT_CACHE_MAX_TOKEN 4096
/* Bytes at the end of a token (its signature) that pick its bucket */
#define BH__JWT_CACHE_HASHED 16
/* Most bytes a prep callback may derive from one token's claims */
#define BH__JWT_CACHE_MAX_PRE 1024

typedef struct bh__jwt_cache bh__jwt_cache;

/* What the cache's owner computes from a token's claims on every request
 * (the principal as it copies it, the lines it sends upstream...): built
 * once, when the token is cached, into `out` (room bytes, 8-aligned), and
 * handed back on every hit. Returns the bytes used, 0 for nothing. */
typedef size_t (*bh__jwt_prep_fn)(const bh__claims *c, void *out, size_t room);

/* A cache of `capacity` tokens (0: NULL, no cache; the calls below then
 * verify every token). NULL on no memory too. */
bh__jwt_cache *bh__jwt_cache_new(uint32_t capacity);
/* The same with the number of last bytes hashed (tests: a short suffix
 * makes two valid tokens that share it easy to find; 0: the default) and
 * an optional prep callback. */
bh__jwt_cache *bh__jwt_cache_new_ex(uint32_t capacity, uint32_t hashed,
                                    bh__jwt_prep_fn prep);
void bh__jwt_cache_free(bh__jwt_cache *c);
/* Forgets every token (the keys changed). */
void bh__jwt_cache_flush(bh__jwt_cache *c);

/* bh__jwt_verify through the cache: a hit copies the cached claims after
 * the times check (an entry found expired is dropped), a miss verifies and
 * caches the token when it is good. c may be NULL. */
int bh__jwt_verify_cached(const bh__jwt_keys *k, bh__jwt_cache *c,
                          const char *token, int64_t now, bh__claims *out);
/* The same, and *pre set to what the prep callback built for this token
 * when it is (now) cached, else NULL (no cache, no prep, not cached). It
 * stays valid until the next call into the cache: copy what is needed. */
int bh__jwt_verify_pre(const bh__jwt_keys *k, bh__jwt_cache *c,
                       const char *token, int64_t now, bh__claims *out,
                       const void **pre);

/* Hits, misses and entries, for the tests and /metrics. */
void bh__jwt_cache_stats(const bh__jwt_cache *c, uint64_t *hits,
                         uint64_t *misses, uint32_t *entries);

#endif
