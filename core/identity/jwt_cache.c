/*
 * The verified-token cache (jwt_cache.h): a chained hash table over a
 * fixed array of entries, linked in LRU order. The hash is SipHash with a
 * per-process random key, so no client can aim tokens at one chain; a
 * lookup still compares the whole token.
 */
#include "identity/jwt_cache.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define BH__NIL UINT32_MAX

typedef struct bh__jce {
  char *token; /* NULL: free */
  uint32_t len;
  uint32_t chain;      /* next in the bucket */
  uint32_t prev, next; /* LRU: head the most recent */
  uint64_t hash;
  bh__claims claims;
} bh__jce;

struct bh__jwt_cache {
  uint32_t cap, n, mask;
  uint32_t *buckets;
  bh__jce *e;
  uint32_t head, tail, free_head; /* free list through .chain */
  uint64_t hits, misses;
  unsigned char key[crypto_shorthash_KEYBYTES];
};

bh__jwt_cache *bh__jwt_cache_new(uint32_t capacity) {
  if (capacity == 0) return NULL;
  bh__jwt_cache *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
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
  size_t len = token ? strnlen(token, BH__JWT_CACHE_MAX_TOKEN + 1) : 0;
  if (c == NULL || len == 0 || len > BH__JWT_CACHE_MAX_TOKEN)
    return bh__jwt_verify(k, token, now, out);
  uint64_t h;
  crypto_shorthash((unsigned char *)&h, (const unsigned char *)token, len,
                   c->key);
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
    return BH__JWT_OK;
  }
  c->misses++;
  int rc = bh__jwt_verify(k, token, now, out);
  if (rc != BH__JWT_OK) return rc; /* only good tokens are cached */
  char *copy = malloc(len);
  if (copy == NULL) return rc;
  memcpy(copy, token, len);
  if (c->free_head == BH__NIL) bh__remove(c, c->tail);
  uint32_t i = c->free_head;
  bh__jce *e = &c->e[i];
  c->free_head = e->chain;
  e->token = copy;
  e->len = (uint32_t)len;
  e->hash = h;
  e->claims = *out;
  e->chain = c->buckets[h & c->mask];
  c->buckets[h & c->mask] = i;
  bh__lru_front(c, i);
  c->n++;
  return rc;
}

void bh__jwt_cache_stats(const bh__jwt_cache *c, uint64_t *hits,
                         uint64_t *misses, uint32_t *entries) {
  *hits = c ? c->hits : 0;
  *misses = c ? c->misses : 0;
  *entries = c ? c->n : 0;
}
