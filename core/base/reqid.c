/*
 * Request ids: a sane incoming X-Request-ID is kept so one id follows a
 * request across services; anything else gets a fresh ULID (time-ordered,
 * 26 Crockford base32 characters).
 */
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/reqid.h"

#define BH__REQID_MAX 64

static int bh__reqid_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
          c == ':'))
      return 0;
    if (n >= BH__REQID_MAX) return 0;
  }
  return n > 0;
}

/* The random part comes from a generator seeded once from the OS rather
 * than a syscall per request: ids must be unique, not secret. */
static uint64_t bh__rng_state[2];

uint64_t bh__rng_next(void) {
  if (bh__rng_state[0] == 0 && bh__rng_state[1] == 0) {
    randombytes_buf(bh__rng_state, sizeof(bh__rng_state));
    bh__rng_state[0] |= 1;
  }
  /* xorshift128+ */
  uint64_t s1 = bh__rng_state[0];
  const uint64_t s0 = bh__rng_state[1];
  bh__rng_state[0] = s0;
  s1 ^= s1 << 23;
  bh__rng_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return bh__rng_state[1] + s0;
}

void bh__reqid_reseed(void) {
  bh__rng_state[0] = bh__rng_state[1] = 0;
}

/* A refused client id is replaced, and said so: the log shows its first
 * BH__REQID_MAX bytes, anything but printable ASCII as \xHH, and its
 * length, so an operator can see why a caller's id did not come through
 * without the line carrying a hostile value whole. */
static void bh__reqid_refused(const char *incoming, const char *fresh) {
  char shown[BH__REQID_MAX * 4 + 1];
  size_t o = 0, n = strlen(incoming);
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n && i < BH__REQID_MAX; i++) {
    unsigned char c = (unsigned char)incoming[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      shown[o++] = (char)c;
    } else {
      shown[o++] = '\\';
      shown[o++] = 'x';
      shown[o++] = hex[c >> 4];
      shown[o++] = hex[c & 15];
    }
  }
  shown[o] = '\0';
  bh__logline l;
  bh__log_begin(&l, BH__WARN, "request_id_replaced");
  bh__log_str(&l, "refused", shown);
  bh__log_int(&l, "refusedLength", (int64_t)n);
  bh__log_int(&l, "truncated", n > BH__REQID_MAX);
  bh__log_str(&l, "requestId", fresh);
  bh__log_str(&l, "rule", "1-64 characters of A-Z a-z 0-9 - _ . :");
  bh__log_end(&l);
}

void bh__reqid(const char *incoming, char *out, size_t outlen) {
  static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  if (incoming && bh__reqid_ok(incoming) && strlen(incoming) < outlen) {
    strcpy(out, incoming);
    return;
  }
  if (incoming && outlen >= 27) {
    bh__reqid(NULL, out, outlen);
    bh__reqid_refused(incoming, out);
    return;
  }
  if (outlen < 27) {
    if (outlen) out[0] = '\0';
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  uint64_t r1 = bh__rng_next(), r2 = bh__rng_next();
  /* 48 bits of time: 10 chars; 80 random bits: 16 chars */
  for (int i = 9; i >= 0; i--) {
    out[i] = b32[ms & 31];
    ms >>= 5;
  }
  for (int i = 0; i < 16; i++) {
    uint64_t *r = i < 12 ? &r1 : &r2;
    out[10 + i] = b32[*r & 31];
    *r >>= 5;
  }
  out[26] = '\0';
}
