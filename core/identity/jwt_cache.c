/*
 * The verified-token cache (jwt_cache.h): a chained hash table over a
 * fixed array of entries, linked in LRU order. A lookup compares the whole
 * token; the bucket comes from SipHash, with a per-process random key, of
 * the token's last BH__JWT_CACHE_HASHED bytes only (hashing all ~300 bytes
 * of a typical token was ~1 300 instructions per request).
 *
 * Why a suffix cannot be used to flood one chain: only tokens that passed
 * verification are ever inserted, and a verified token's last bytes are
 * its signature (an HMAC or an RS256 / ES256 signature over the rest),
 * which no client can choose without the issuer's key. A forged token
 * sharing a cached token's suffix lands in that token's chain but never
 * joins it, so it costs one walk of a chain it cannot lengthen, plus one
 * full comparison per entry of equal hash and length, then a verification
 * (which every forged token costs anyway). And the key is random per
 * process, so not even the issuer can aim valid tokens at one bucket.
 */
#include "identity/jwt_cache.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define BH__NIL UINT32_MAX

typedef struct bh__jce {
  char *token; /* NULL: free; the prep callback's bytes follow it */
  uint32_t len;
  uint32_t pre_len;    /* at token + BH__PRE_OFF(len); 0: none */
  uint32_t chain;      /* next in the bucket */
  uint32_t prev, next; /* LRU: head the most recent */
  uint64_t hash;
  bh__claims claims;
} bh__jce;

/* The prep bytes start 8-aligned after the token */
#define BH__PRE_OFF(len) (((size_t)(len) + 7) & ~(size_t)7)

struct bh__jwt_cache {
  uint32_t cap, n, mask;
  uint32_t hashed; /* last bytes of a token that pick its bucket */
  bh__jwt_prep_fn prep;
  uint32_t *buckets;
  bh__jce *e;
  uint32_t head, tail, free_head; /* free list through .chain */
  uint64_t hits, misses;
  unsigned char key[crypto_shorthash_KEYBYTES];
};

bh__jwt_cache *bh__jwt_cache_new(uint32_t capacity) {
  return bh__jwt_cache_new_ex(capacity, 0, NULL);
}

bh__jwt_cache *bh__jwt_cache_new_ex(uint32_t capacity, uint32_t hashed,
                                    bh__jwt_prep_fn prep) {
  if (capacity == 0) return NULL;
  bh__jwt_cache *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->hashed = hashed ? hashed : BH__JWT_CACHE_HASHED;
  c->prep = prep;
  uint32_t nb = 1;
  while (nb < capacity && nb < (1u << 30))
    nb <<= 1;
  c->cap = capacity;
  c->mask = nb - 1;
  c->buckets = malloc(sizeof(uint32_t) * nb);
  c->e = calloc(capacity, sizeof(bh__jce));
  if (c->buckets == NULL || c->e == NULL) {
    free(c->buckets);
    free(c->e);
    free(c);
    return NULL;
  }
  crypto_shorthash_keygen(c->key);
  c->n = 0;
  bh__jwt_cache_flush(c);
  return c;
}

void bh__jwt_cache_flush(bh__jwt_cache *c) {
  if (c == NULL) return;
  for (uint32_t i = 0; i <= c->mask; i++)
    c->buckets[i] = BH__NIL;
  for (uint32_t i = 0; i < c->cap; i++) {
    free(c->e[i].token);
    c->e[i].token = NULL;
    c->e[i].chain = i + 1 < c->cap ? i + 1 : BH__NIL;
  }
  c->free_head = 0;
  c->head = c->tail = BH__NIL;
  c->n = 0;
}

void bh__jwt_cache_free(bh__jwt_cache *c) {
  if (c == NULL) return;
  bh__jwt_cache_flush(c);
  free(c->buckets);
  free(c->e);
  free(c);
}

static void bh__lru_unlink(bh__jwt_cache *c, uint32_t i) {
  bh__jce *e = &c->e[i];
  if (e->prev != BH__NIL)
    c->e[e->prev].next = e->next;
  else
    c->head = e->next;
  if (e->next != BH__NIL)
    c->e[e->next].prev = e->prev;
  else
    c->tail = e->prev;
}

static void bh__lru_front(bh__jwt_cache *c, uint32_t i) {
  bh__jce *e = &c->e[i];
  e->prev = BH__NIL;
  e->next = c->head;
  if (c->head != BH__NIL) c->e[c->head].prev = i;
  c->head = i;
  if (c->tail == BH__NIL) c->tail = i;
}

static void bh__remove(bh__jwt_cache *c, uint32_t i) {
  bh__jce *e = &c->e[i];
  uint32_t *pp = &c->buckets[e->hash & c->mask];
  while (*pp != i)
    pp = &c->e[*pp].chain;
  *pp = e->chain;
  bh__lru_unlink(c, i);
  free(e->token);
  e->token = NULL;
  e->chain = c->free_head;
  c->free_head = i;
  c->n--;
}

int bh__jwt_verify_cached(const bh__jwt_keys *k, bh__jwt_cache *c,
                          const char *token, int64_t now, bh__claims *out) {
  const void *pre;
  return bh__jwt_verify_pre(k, c, token, now, out, &pre);
}

/* A good token just verified, with its claims, into the cache (the least
 * recently used one makes room); *pre set to its prep bytes. Not cached,
 * and *pre left NULL, when out of memory. */
static void bh__insert(bh__jwt_cache *c, const char *token, size_t len,
                       uint64_t h, const bh__claims *cl, const void **pre) {
  _Alignas(8) unsigned char scratch[BH__JWT_CACHE_MAX_PRE];
  size_t pl = c->prep ? c->prep(cl, scratch, sizeof(scratch)) : 0;
  if (pl > sizeof(scratch)) pl = 0;
  char *copy = malloc(BH__PRE_OFF(len) + pl);
  if (copy == NULL) return;
  memcpy(copy, token, len);
  if (pl) memcpy(copy + BH__PRE_OFF(len), scratch, pl);
  if (c->free_head == BH__NIL) bh__remove(c, c->tail);
  uint32_t i = c->free_head;
  bh__jce *e = &c->e[i];
  c->free_head = e->chain;
  e->token = copy;
  e->len = (uint32_t)len;
  e->pre_len = (uint32_t)pl;
  e->hash = h;
  e->claims = *cl;
  e->chain = c->buckets[h & c->mask];
  c->buckets[h & c->mask] = i;
  bh__lru_front(c, i);
  c->n++;
  if (pl) *pre = copy + BH__PRE_OFF(len);
}

int bh__jwt_verify_pre(const bh__jwt_keys *k, bh__jwt_cache *c,
                       const char *token, int64_t now, bh__claims *out,
                       const void **pre) {
  *pre = NULL;
  size_t len = token ? strnlen(token, BH__JWT_CACHE_MAX_TOKEN + 1) : 0;
  if (c == NULL || len == 0 || len > BH__JWT_CACHE_MAX_TOKEN)
    return bh__jwt_verify(k, token, now, out);
  /* the bucket from the signature's last bytes (see the top) */
  size_t hl = len < c->hashed ? len : c->hashed;
  uint64_t h;
  crypto_shorthash((unsigned char *)&h,
                   (const unsigned char *)token + (len - hl), hl, c->key);
  for (uint32_t i = c->buckets[h & c->mask]; i != BH__NIL; i = c->e[i].chain) {
    bh__jce *e = &c->e[i];
    if (e->hash != h || e->len != len || memcmp(e->token, token, len) != 0)
      continue;
    int rc = bh__jwt_times_ok(k, &e->claims, now);
    if (rc != BH__JWT_OK) {
      /* expired: gone; not yet valid (iat ahead of a clock that stepped
       * back): refused this time, kept */
      if (rc == BH__JWT_EXPIRED) bh__remove(c, i);
      return rc;
    }
    c->hits++;
    bh__lru_unlink(c, i);
    bh__lru_front(c, i);
    *out = e->claims;
    if (e->pre_len) *pre = e->token + BH__PRE_OFF(len);
    return BH__JWT_OK;
  }
  c->misses++;
  int rc = bh__jwt_verify(k, token, now, out);
  if (rc != BH__JWT_OK) return rc; /* only good tokens are cached */
  bh__insert(c, token, len, h, out, pre);
  return rc;
}

void bh__jwt_cache_stats(const bh__jwt_cache *c, uint64_t *hits,
                         uint64_t *misses, uint32_t *entries) {
  *hits = c ? c->hits : 0;
  *misses = c ? c->misses : 0;
  *entries = c ? c->n : 0;
}
