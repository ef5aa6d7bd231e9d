/*
 * Token buckets in a fixed-size hash table with LRU eviction.
 *
 * Tokens are kept in exact integer units: one token = window_ms units, so a
 * policy of `quota` tokens per window refills exactly `quota` units per
 * millisecond. No floating point, no drift, and every answer (remaining,
 * reset, Retry-After) is reproducible to the millisecond in tests.
 *
 * Keys come from clients (API keys, principals, addresses), so the table
 * hashes them with SipHash-2-4 under a per-table random key: nobody can aim
 * many keys at one chain. The slot array is sized once from max_keys, never
 * rehashed; a take of a known key is a lookup plus a list splice.
 *
 * Every allocation (the table, its slot array, the entries with their key
 * copies) goes through the bh__allocator the table was created with, kept
 * inside it, so a table built on a bh__arena in the shared mapping is one
 * table for every process; the SipHash key, drawn at creation, lives in
 * the table too. No static mutable state. Not thread-safe: shared tables
 * are used under the caller's shared lock.
 */
#include "policy/ratelimit.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Keys longer than this are stored as a prefix plus a keyed hash of the
 * whole key, so a client cannot make the table hold huge strings. */
#define BH__RL_KEY_MAX 256
#define BH__RL_HASHED_PREFIX (BH__RL_KEY_MAX - 33) /* + '~' + 32 hex */
#define BH__RL_MAX_SLOTS ((size_t)1 << 22)

typedef struct bh__rl_entry {
  struct bh__rl_entry *hnext;       /* hash chain */
  struct bh__rl_entry *prev, *next; /* LRU list; head = most recent */
  uint64_t hash;
  uint64_t tokens;  /* in units of 1/window_ms token */
  uint64_t last_ms; /* time tokens was last brought up to date */
  uint16_t klen;
  uint8_t hashed; /* key is the digest form of a longer key */
  char key[];
} bh__rl_entry;

struct bh__rl_table {
  bh__allocator a;
  bh__rl_policy policy;
  uint64_t win_ms; /* one token, in units */
  uint64_t cap;    /* burst * win_ms */
  uint64_t k0, k1; /* SipHash key */
  bh__rl_entry **slots;
  size_t mask;
  size_t count, max_keys;
  bh__rl_entry *head, *tail;
};

/* SipHash-2-4 (Aumasson & Bernstein), 64-bit output. */
#define BH__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define BH__SIPROUND                                                           \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = BH__ROTL(v1, 13);                                                     \
    v1 ^= v0;                                                                  \
    v0 = BH__ROTL(v0, 32);                                                     \
    v2 += v3;                                                                  \
    v3 = BH__ROTL(v3, 16);                                                     \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = BH__ROTL(v3, 21);                                                     \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = BH__ROTL(v1, 17);                                                     \
    v1 ^= v2;                                                                  \
    v2 = BH__ROTL(v2, 32);                                                     \
  } while (0)

static uint64_t bh__siphash(uint64_t k0, uint64_t k1, const void *data,
                            size_t len) {
  const unsigned char *p = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  uint64_t b = (uint64_t)len << 56;
  size_t full = len - len % 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--)
      m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    BH__SIPROUND;
    BH__SIPROUND;
    v0 ^= m;
  }
  for (size_t j = 0; j < len % 8; j++)
    b |= (uint64_t)p[full + j] << (8 * j);
  v3 ^= b;
  BH__SIPROUND;
  BH__SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  BH__SIPROUND;
  BH__SIPROUND;
  BH__SIPROUND;
  BH__SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static void bh__rl_seed(bh__rl_table *t) {
  uint64_t k[2];
  if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
    /* No entropy yet (early boot): still distinct per table and run. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uintptr_t)t;
    k[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ULL ^ (uintptr_t)&ts;
  }
  t->k0 = k[0];
  t->k1 = k[1];
}

bh__rl_table *bh__rl_table_new(const bh__rl_policy *policy, size_t max_keys) {
  return bh__rl_table_new_with(policy, max_keys, &bh__libc_allocator);
}

bh__rl_table *bh__rl_table_new_with(const bh__rl_policy *policy,
                                    size_t max_keys, const bh__allocator *a) {
  if (a == NULL) a = &bh__libc_allocator;
  if (policy == NULL || max_keys == 0 || policy->quota == 0 ||
      policy->window_s == 0) {
    errno = EINVAL;
    return NULL;
  }
  uint64_t burst = policy->burst ? policy->burst : policy->quota;
  uint64_t win_ms = (uint64_t)policy->window_s * 1000;
  /* cap + elapsed * quota must stay far from 2^64. */
  if (burst > ((uint64_t)1 << 62) / win_ms) {
    errno = EINVAL;
    return NULL;
  }
  bh__rl_table *t = a->alloc(a->ctx, sizeof(*t));
  if (t == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  memset(t, 0, sizeof(*t));
  t->a = *a; /* a copy: the caller's struct may not outlive the table */
  t->policy = *policy;
  t->policy.burst = (uint32_t)burst;
  t->policy.name[sizeof(t->policy.name) - 1] = '\0';
  t->win_ms = win_ms;
  t->cap = burst * win_ms;
  t->max_keys = max_keys;
  size_t n = 16;
  while (n < max_keys && n < BH__RL_MAX_SLOTS)
    n <<= 1;
  t->slots = a->alloc(a->ctx, n * sizeof(*t->slots)); /* n <= 2^22 */
  if (t->slots == NULL) {
    a->free(a->ctx, t);
    errno = ENOMEM;
    return NULL;
  }
  memset(t->slots, 0, n * sizeof(*t->slots));
  t->mask = n - 1;
  bh__rl_seed(t);
  return t;
}

void bh__rl_table_free(bh__rl_table *t) {
  if (t == NULL) return;
  for (bh__rl_entry *e = t->head, *next; e; e = next) {
    next = e->next;
    t->a.free(t->a.ctx, e);
  }
  t->a.free(t->a.ctx, t->slots);
  /* The allocator lives inside the block being freed. */
  bh__allocator a = t->a;
  a.free(a.ctx, t);
}

static void bh__lru_unlink(bh__rl_table *t, bh__rl_entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    t->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    t->tail = e->prev;
  e->prev = e->next = NULL;
}

static void bh__lru_push_front(bh__rl_table *t, bh__rl_entry *e) {
  e->prev = NULL;
  e->next = t->head;
  if (t->head) t->head->prev = e;
  t->head = e;
  if (t->tail == NULL) t->tail = e;
}

static void bh__rl_evict_lru(bh__rl_table *t) {
  bh__rl_entry *e = t->tail;
  if (e == NULL) return;
  bh__lru_unlink(t, e);
  bh__rl_entry **pp = &t->slots[e->hash & t->mask];
  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp) *pp = e->hnext;
  t->count--;
  t->a.free(t->a.ctx, e);
}

/* Brings tokens up to now_ms. A clock that went back refills nothing. */
static void bh__rl_refill(const bh__rl_table *t, bh__rl_entry *e,
                          uint64_t now_ms) {
  if (now_ms <= e->last_ms) return;
  uint64_t elapsed = now_ms - e->last_ms;
  e->last_ms = now_ms;
  uint64_t deficit = t->cap - e->tokens;
  uint64_t q = t->policy.quota;
  if (elapsed >= (deficit + q - 1) / q)
    e->tokens = t->cap;
  else
    e->tokens += elapsed * q; /* < deficit, no overflow */
}

/* ceil(units / (quota * 1000)): units of refill, in seconds. */
static uint32_t bh__rl_secs(const bh__rl_table *t, uint64_t units) {
  uint64_t per_s = (uint64_t)t->policy.quota * 1000;
  uint64_t s = (units + per_s - 1) / per_s;
  return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static const char hexdig[] = "0123456789abcdef";

typedef struct bh__rl_name {
  char digest[BH__RL_KEY_MAX];
  const char *key;
  size_t klen;
  uint8_t hashed;
  uint64_t hash;
} bh__rl_name;

/* The table's name for `key` (a long one hashed) and the slot of its
 * chain; *found is its bucket or NULL. */
static bh__rl_entry **bh__rl_find(bh__rl_table *t, const char *key,
                                  bh__rl_name *n, bh__rl_entry **found) {
  char *digest = n->digest;
  size_t klen = strlen(key);
  uint8_t hashed = 0;
  if (klen > BH__RL_KEY_MAX) {
    /* Prefix for humans reading the table, 128 keyed bits for identity. */
    uint64_t h[2] = {bh__siphash(t->k0, t->k1, key, klen),
                     bh__siphash(t->k1, t->k0, key, klen)};
    memcpy(digest, key, BH__RL_HASHED_PREFIX);
    char *o = digest + BH__RL_HASHED_PREFIX;
    *o++ = '~';
    for (int i = 0; i < 2; i++)
      for (int sh = 60; sh >= 0; sh -= 4)
        *o++ = hexdig[(h[i] >> sh) & 0xf];
    key = digest;
    klen = (size_t)(o - digest);
    hashed = 1;
  }
  uint64_t hash = bh__siphash(t->k0, t->k1, key, klen);
  bh__rl_entry **slot = &t->slots[hash & t->mask];
  bh__rl_entry *e = *slot;
  while (e && !(e->hash == hash && e->klen == klen && e->hashed == hashed &&
                memcmp(e->key, key, klen) == 0))
    e = e->hnext;
  n->key = key;
  n->klen = klen;
  n->hashed = hashed;
  n->hash = hash;
  *found = e;
  return slot;
}

int bh__rl_give(bh__rl_table *t, const char *key, uint64_t now_ms) {
  if (t == NULL || key == NULL) return -EINVAL;
  bh__rl_name n;
  bh__rl_entry *e;
  bh__rl_find(t, key, &n, &e);
  if (e == NULL) return -ENOENT; /* evicted meanwhile: already full */
  bh__rl_refill(t, e, now_ms);
  e->tokens = t->cap - e->tokens < t->win_ms ? t->cap : e->tokens + t->win_ms;
  return 0;
}

/* The bucket of `key`, brought up to now_ms and made the most recent; an
 * unseen key gets a full one. NULL when out of memory. */
static bh__rl_entry *bh__rl_entry_get(bh__rl_table *t, const char *key,
                                      uint64_t now_ms) {
  bh__rl_name n;
  bh__rl_entry *e;
  bh__rl_entry **slot = bh__rl_find(t, key, &n, &e);
  if (e) {
    if (e != t->head) {
      bh__lru_unlink(t, e);
      bh__lru_push_front(t, e);
    }
    bh__rl_refill(t, e, now_ms);
    return e;
  }
  /* Allocate before evicting so a failure loses nothing. */
  size_t esize = sizeof(*e) + n.klen + 1;
  e = t->a.alloc(t->a.ctx, esize);
  if (e == NULL && t->count > 0) {
    /* Out of memory, which in a shared arena can be other tables' doing:
     * give up the least recently used bucket rather than fail (the caller
     * fails open) for every new key from now on. */
    bh__rl_evict_lru(t);
    e = t->a.alloc(t->a.ctx, esize);
  }
  if (e == NULL) return NULL;
  if (t->count >= t->max_keys) bh__rl_evict_lru(t);
  memcpy(e->key, n.key, n.klen);
  e->key[n.klen] = '\0';
  e->klen = (uint16_t)n.klen;
  e->hashed = n.hashed;
  e->hash = n.hash;
  e->tokens = t->cap; /* an unseen key is a full bucket */
  e->last_ms = now_ms;
  e->hnext = *slot; /* slot is still valid: eviction only unlinks */
  *slot = e;
  bh__lru_push_front(t, e);
  t->count++;
  return e;
}

/* remaining / reset of `e`, and Retry-After (one token away) if refused */
static void bh__rl_fill(const bh__rl_table *t, const bh__rl_entry *e,
                        int allowed, bh__rl_result *res) {
  res->allowed = allowed;
  res->remaining = (uint32_t)(e->tokens / t->win_ms);
  res->reset_s = bh__rl_secs(t, t->cap - e->tokens);
  res->retry_after_s = 0;
  if (!allowed) {
    uint64_t need = e->tokens < t->win_ms ? t->win_ms - e->tokens : 1;
    uint32_t s = bh__rl_secs(t, need);
    res->retry_after_s = s ? s : 1;
  }
}

int bh__rl_take(bh__rl_table *t, const char *key, uint64_t now_ms,
                bh__rl_result *res) {
  if (t == NULL || key == NULL || res == NULL) return -EINVAL;
  bh__rl_entry *e = bh__rl_entry_get(t, key, now_ms);
  if (e == NULL) return -ENOMEM;
  int allowed = e->tokens >= t->win_ms;
  if (allowed) e->tokens -= t->win_ms;
  bh__rl_fill(t, e, allowed, res);
  return 0;
}

int bh__rl_charge(bh__rl_table *t, const char *key, uint64_t n, uint64_t now_ms,
                  bh__rl_result *res) {
  if (t == NULL || key == NULL || res == NULL) return -EINVAL;
  bh__rl_entry *e = bh__rl_entry_get(t, key, now_ms);
  if (e == NULL) return -ENOMEM;
  if (n == 0) {
    bh__rl_fill(t, e, e->tokens >= t->win_ms, res);
    return 0;
  }
  /* n past what a full bucket holds takes all of it (and n * win_ms
   * could overflow) */
  int allowed = n <= t->cap / t->win_ms && e->tokens >= n * t->win_ms;
  e->tokens = allowed ? e->tokens - n * t->win_ms : 0;
  bh__rl_fill(t, e, allowed, res);
  return 0;
}

/* The policy name as an RFC 8941 sf-string: " and \ escaped, anything not
 * printable ASCII dropped, so a bad name can never split a header. */
static void bh__rl_sf_string(bh__buf *out, const char *name, size_t max) {
  bh__buf_putc(out, '"');
  for (size_t i = 0; i < max && name[i]; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c < 0x20 || c > 0x7e) continue;
    if (c == '"' || c == '\\') bh__buf_putc(out, '\\');
    bh__buf_putc(out, (char)c);
  }
  bh__buf_putc(out, '"');
}

/* pk: an sf-binary (RFC 9651 3.3.5), base64 between colons; anything
 * outside the base64 alphabet is dropped so it cannot break the field */
static void bh__rl_sf_pk(bh__buf *out, const char *pk) {
  if (pk == NULL || pk[0] == '\0') return;
  bh__buf_puts(out, ";pk=:");
  for (; *pk; pk++)
    if ((*pk >= 'A' && *pk <= 'Z') || (*pk >= 'a' && *pk <= 'z') ||
        (*pk >= '0' && *pk <= '9') || *pk == '+' || *pk == '/' || *pk == '=')
      bh__buf_append(out, pk, 1);
  bh__buf_puts(out, ":");
}

void bh__rl_headers(const bh__rl_policy *p, const bh__rl_result *r,
                    const char *pk, bh__buf *out) {
  /* draft-ietf-httpapi-ratelimit-headers-10: w only on the policy, t only
   * on RateLimit, pk on both when the bucket is one caller's */
  bh__buf_puts(out, "RateLimit-Policy: ");
  bh__rl_sf_string(out, p->name, sizeof(p->name));
  bh__buf_printf(out, ";q=%u;w=%u", (unsigned)p->quota, (unsigned)p->window_s);
  if (p->unit == BH__RL_UNIT_TOKENS) bh__buf_puts(out, ";qu=\"tokens\"");
  bh__rl_sf_pk(out, pk);
  bh__buf_puts(out, "\r\nRateLimit: ");
  bh__rl_sf_string(out, p->name, sizeof(p->name));
  bh__buf_printf(out, ";r=%u;t=%u", (unsigned)r->remaining,
                 (unsigned)r->reset_s);
  bh__rl_sf_pk(out, pk);
  bh__buf_puts(out, "\r\n");
  if (!r->allowed)
    bh__buf_printf(out, "Retry-After: %u\r\n", (unsigned)r->retry_after_s);
}

int bh__rl_key_parse(const char *s) {
  if (s == NULL) return -EINVAL;
  if (strcmp(s, "client") == 0) return BH__RL_KEY_CLIENT;
  if (strcmp(s, "api_key") == 0) return BH__RL_KEY_API_KEY;
  if (strcmp(s, "principal") == 0) return BH__RL_KEY_PRINCIPAL;
  return -EINVAL;
}

int bh__rl_unit_parse(const char *s) {
  if (s == NULL) return -EINVAL;
  if (strcmp(s, "requests") == 0) return BH__RL_UNIT_REQUESTS;
  if (strcmp(s, "tokens") == 0) return BH__RL_UNIT_TOKENS;
  return -EINVAL;
}
