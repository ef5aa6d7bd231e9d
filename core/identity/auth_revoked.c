/*
 * The revoked-session set: sessions revoked (logout, refresh-token reuse)
 * while access tokens of theirs may still be unexpired. Access tokens are
 * verified in memory with no store read, so without this set a logged-out
 * token would keep working until its exp.
 *
 * One table for the whole daemon, in the shared mapping (created by the
 * master, or the single process, before workers fork; a worker that
 * revokes a session adds it and every worker sees it on its next request).
 * At start the sessions the store revoked within the longest access-token
 * lifetime are loaded into it.
 *
 * Entries are a 16-byte BLAKE2b digest of the session id and the time
 * until which a token of that session can still be valid (revocation time
 * + access_ttl_s + leeway_s); an expired entry's slot is reused. Lookups
 * take no lock: writers (under the shared lock) publish `until` last and
 * clear it first, readers load it first. Each id has a neighbourhood of
 * BH__RVK_PROBE slots from its home slot, so a lookup costs at most that
 * many probes whatever the load.
 *
 * When a neighbourhood is full of live entries a new revocation cannot be
 * recorded. The set then fails closed: every access token issued at or
 * before that moment is refused (the caller refreshes, and the store
 * refuses a revoked session's refresh) until the longest token lifetime
 * has passed. Never an eviction: that would bring a revoked token back.
 */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "identity/auth.h"
#include "state/shm.h"

#define BH__RVK_PROBE 64

typedef struct bh__rvk_entry {
  uint64_t h1, h2;
  int64_t until; /* 0: empty */
} bh__rvk_entry;

typedef struct bh__rvk {
  uint32_t cap;
  int64_t overflow_iat;   /* tokens issued at or before this are refused */
  int64_t overflow_until; /* ... until then */
  uint64_t overflows;     /* revocations that found no slot */
  bh__rvk_entry e[];
} bh__rvk;

static bh__rvk *g_rvk;
static int g_rvk_local; /* not shared (no mapping): malloc'd */

void bh__revoked_key(const char *sid, uint64_t h[2]) {
  unsigned char d[16];
  crypto_generichash(d, sizeof(d), (const unsigned char *)sid, strlen(sid),
                     NULL, 0);
  memcpy(&h[0], d, 8);
  memcpy(&h[1], d + 8, 8);
  if (h[0] == 0 && h[1] == 0) h[1] = 1;
}

static void *bh__rvk_make(const bh__allocator *a, void *arg) {
  uint32_t cap = *(const uint32_t *)arg;
  size_t n = sizeof(bh__rvk) + (size_t)cap * sizeof(bh__rvk_entry);
  bh__rvk *t = a->alloc(a->ctx, n);
  if (t) {
    memset(t, 0, n);
    t->cap = cap;
  }
  return t;
}

int bh__revoked_init(uint32_t capacity) {
  if (g_rvk) return 0;
  if (capacity < BH__RVK_PROBE) capacity = BH__RVK_PROBE;
  if (bh__shm_g) {
    bh__shm_lock();
    g_rvk = bh__shm_named_get("auth:revoked", bh__rvk_make, &capacity);
    bh__shm_unlock();
  } else {
    g_rvk = calloc(1, sizeof(bh__rvk) + capacity * sizeof(bh__rvk_entry));
    if (g_rvk) g_rvk->cap = capacity, g_rvk_local = 1;
  }
  return g_rvk ? 0 : -ENOMEM;
}

void bh__revoked_reset(void) {
  if (g_rvk_local) free(g_rvk);
  g_rvk = NULL;
  g_rvk_local = 0;
}

static void bh__rvk_lock(void) {
  if (!g_rvk_local) bh__shm_lock();
}
static void bh__rvk_unlock(void) {
  if (!g_rvk_local) bh__shm_unlock();
}

int bh__revoked_add(const char *sid, int64_t until, int64_t now) {
  if (g_rvk == NULL || sid == NULL || sid[0] == '\0') return 0;
  uint64_t h[2];
  bh__revoked_key(sid, h);
  bh__rvk *t = g_rvk;
  uint32_t home = (uint32_t)(h[0] % t->cap);
  int rc = 0;
  bh__rvk_lock();
  bh__rvk_entry *slot = NULL;
  for (uint32_t i = 0; i < BH__RVK_PROBE; i++) {
    bh__rvk_entry *e = &t->e[(home + i) % t->cap];
    int64_t u = __atomic_load_n(&e->until, __ATOMIC_ACQUIRE);
    if (u > now && e->h1 == h[0] && e->h2 == h[1]) {
      if (until > u) __atomic_store_n(&e->until, until, __ATOMIC_RELEASE);
      bh__rvk_unlock();
      return 0;
    }
    if (u <= now && slot == NULL) slot = e;
  }
  if (slot) {
    __atomic_store_n(&slot->until, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->h1, h[0], __ATOMIC_RELAXED);
    __atomic_store_n(&slot->h2, h[1], __ATOMIC_RELAXED);
    __atomic_store_n(&slot->until, until, __ATOMIC_RELEASE);
  } else {
    /* no room: fail closed (see the top of this file) */
    __atomic_store_n(&t->overflow_iat, now, __ATOMIC_RELEASE);
    if (until > t->overflow_until)
      __atomic_store_n(&t->overflow_until, until, __ATOMIC_RELEASE);
    t->overflows++;
    rc = -ENOSPC;
  }
  bh__rvk_unlock();
  if (rc)
    bh__logf(BH__WARN, "revoked_set_full",
             "the revoked-session set is full around this session: every "
             "access token issued until now is refused until it is "
             "refreshed; raise [auth] revoked_sessions_max");
  return rc;
}

int bh__revoked_check(const char *sid, int64_t iat, int64_t now) {
  if (sid == NULL || sid[0] == '\0')
    return bh__revoked_check_key(NULL, iat, now);
  uint64_t h[2];
  bh__revoked_key(sid, h);
  return bh__revoked_check_key(h, iat, now);
}

int bh__revoked_check_key(const uint64_t *h, int64_t iat, int64_t now) {
  bh__rvk *t = g_rvk;
  if (t == NULL) return 0;
  if (now < __atomic_load_n(&t->overflow_until, __ATOMIC_ACQUIRE) &&
      iat <= __atomic_load_n(&t->overflow_iat, __ATOMIC_ACQUIRE))
    return BH__REVOKED_UNSURE;
  if (h == NULL) return 0;
  uint32_t home = (uint32_t)(h[0] % t->cap);
  for (uint32_t i = 0; i < BH__RVK_PROBE; i++) {
    bh__rvk_entry *e = &t->e[(home + i) % t->cap];
    int64_t u = __atomic_load_n(&e->until, __ATOMIC_ACQUIRE);
    uint64_t h1 = __atomic_load_n(&e->h1, __ATOMIC_RELAXED);
    uint64_t h2 = __atomic_load_n(&e->h2, __ATOMIC_RELAXED);
    if (u > now && h1 == h[0] && h2 == h[1]) return BH__REVOKED;
    /* a slot never used: an insert takes the first free slot of the
     * neighbourhood, so nothing of ours lies beyond it */
    if (h1 == 0 && h2 == 0) break;
  }
  return 0;
}

int64_t bh__revoked_span(const bh__auth_conf *c) {
  /* the longest an access token issued now is accepted */
  return (int64_t)c->access_ttl_s + c->leeway_s;
}
