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

static void bh__hex64(uint64_t v, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    out[i] = hex[v & 15];
    v >>= 4;
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
