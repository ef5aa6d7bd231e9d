/*
 * W3C Trace Context, https://www.w3.org/TR/trace-context/ section 3.2:
 * version-format "00-" trace-id "-" parent-id "-" trace-flags, lowercase
 * hex only; version ff, an all-zero trace id or parent id are invalid; a
 * later version is read as 00 when its first 55 bytes parse and the rest
 * starts with '-'.
 */
#include <errno.h>
#include <string.h>

#include "base/reqid.h"
#include "base/trace.h"

static int bh__lhex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* n lowercase hex digits, not all zero when nonzero is set */
static int bh__hex_field(const char *s, size_t n, int nonzero) {
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    if (!bh__lhex(s[i])) return 0;
    if (s[i] != '0') any = 1;
  }
  return any || !nonzero;
}

int bh__trace_parse(const char *tp, bh__trace *t) {
  if (tp == NULL) return -EINVAL;
  size_t n = strlen(tp);
  if (n < 55 || !bh__hex_field(tp, 2, 0)) return -EINVAL;
  if (tp[0] == 'f' && tp[1] == 'f') return -EINVAL;
  int v00 = tp[0] == '0' && tp[1] == '0';
  /* version 00 is exactly 55 bytes; a later one may add fields */
  if (v00 ? n != 55 : (n > 55 && tp[55] != '-')) return -EINVAL;
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return -EINVAL;
  if (!bh__hex_field(tp + 3, 32, 1) || !bh__hex_field(tp + 36, 16, 1) ||
      !bh__hex_field(tp + 53, 2, 0))
    return -EINVAL;
  memcpy(t->trace_id, tp + 3, 32);
  t->trace_id[32] = '\0';
  memcpy(t->parent_id, tp + 36, 16);
  t->parent_id[16] = '\0';
  t->flags[0] = tp[53];
  t->flags[1] = tp[54];
  t->flags[2] = '\0';
  return 0;
}

/* 16 lowercase hex digits, two per step from a table of the 256 pairs:
 * three ids per request */
static void bh__hex64(uint64_t v, char *out) {
  /* clang-format off */
  static const char pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
  /* clang-format on */
  for (int i = 14; i >= 0; i -= 2) {
    memcpy(out + i, pairs + 2 * (v & 0xff), 2);
    v >>= 8;
  }
}

/* 64 random bits that are not all zero (an all-zero id is invalid) */
static uint64_t bh__nonzero64(void) {
  uint64_t v;
  do
    v = bh__rng_next();
  while (v == 0);
  return v;
}

int bh__trace_start(bh__trace *t, const char *traceparent) {
  int continued = bh__trace_parse(traceparent, t) == 0;
  if (!continued) {
    bh__hex64(bh__rng_next(), t->trace_id);
    bh__hex64(bh__nonzero64(), t->trace_id + 16);
    t->trace_id[32] = '\0';
    t->parent_id[0] = '\0';
    memcpy(t->flags, "00", 3);
  }
  bh__hex64(bh__nonzero64(), t->span_id);
  t->span_id[16] = '\0';
  return continued;
}

int bh__tracestate_ok(const char *ts) {
  size_t n = 0;
  for (; ts[n]; n++) {
    unsigned char c = (unsigned char)ts[n];
    if (n >= BH__TRACESTATE_MAX) return 0;
    if ((c < 0x20 && c != '\t') || c >= 0x7f) return 0;
  }
  return n > 0;
}

void bh__trace_line(const bh__trace *t, char *out) {
  if (t->trace_id[0] == '\0') {
    out[0] = '\0';
    return;
  }
  char *p = out;
  memcpy(p, "traceparent: 00-", 16);
  p += 16;
  memcpy(p, t->trace_id, 32);
  p += 32;
  *p++ = '-';
  memcpy(p, t->span_id, 16);
  p += 16;
  *p++ = '-';
  *p++ = t->flags[0];
  *p++ = t->flags[1];
  *p = '\0';
}
