#include "base/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

void bh__buf_init(bh__buf *b) {
  memset(b, 0, sizeof(*b));
}

void bh__buf_free(bh__buf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

void bh__buf_reset(bh__buf *b) {
  b->len = 0;
  b->failed = 0;
  if (b->data) b->data[0] = '\0';
}

int bh__buf_empty_keep(bh__buf *b) {
  if (b->cap > BH__BUF_KEEP_MAX || b->failed) bh__buf_free(b);
  b->len = 0;
  if (b->data == NULL) return 0;
  b->data[0] = '\0'; /* read as a string while empty */
  return 1;
}

int bh__buf_failed(const bh__buf *b) {
  return b->failed;
}

int bh__buf_grow(bh__buf *b, size_t extra) {
  if (b->failed) return -ENOMEM;
  if (extra > SIZE_MAX - b->len - 1) goto oom;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) goto oom;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (p == NULL) goto oom;
  b->data = p;
  b->cap = cap;
  return 0;
oom:
  b->failed = 1;
  return -ENOMEM;
}

static int bh__buf_reserve(bh__buf *b, size_t extra) {
  if (!b->failed && b->cap - b->len > extra) return 0;
  return bh__buf_grow(b, extra);
}

int bh__buf_vprintf(bh__buf *b, const char *fmt, va_list ap) {
  /* one pass when the result fits the room already there, which is the
   * common case; a second only after growing */
  va_list cp;
  va_copy(cp, ap);
  size_t room = b->failed ? 0 : b->cap - b->len;
  int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, cp);
  va_end(cp);
  if (n < 0) {
    if (room) b->data[b->len] = '\0';
    b->failed = 1;
    return -EINVAL;
  }
  if ((size_t)n < room) {
    b->len += (size_t)n;
    return 0;
  }
  if (room) b->data[b->len] = '\0'; /* undo the truncated attempt */
  if (bh__buf_reserve(b, (size_t)n) != 0) return -ENOMEM;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int bh__buf_printf(bh__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = bh__buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int bh__buf_u64(bh__buf *b, uint64_t v) {
  /* two digits per division: a log line carries half a dozen numbers */
  /* clang-format off */
  static const char pairs[201] =
      "00010203040506070809101112131415161718192021222324"
      "25262728293031323334353637383940414243444546474849"
      "50515253545556575859606162636465666768697071727374"
      "75767778798081828384858687888990919293949596979899";
  /* clang-format on */
  char tmp[24];
  size_t i = sizeof(tmp);
  while (v >= 100) {
    i -= 2;
    memcpy(tmp + i, pairs + 2 * (v % 100), 2);
    v /= 100;
  }
  if (v >= 10) {
    i -= 2;
    memcpy(tmp + i, pairs + 2 * v, 2);
  } else {
    tmp[--i] = (char)('0' + v);
  }
  return bh__buf_append(b, tmp + i, sizeof(tmp) - i);
}

int bh__buf_i64(bh__buf *b, int64_t v) {
  if (v < 0) {
    if (bh__buf_putc(b, '-') != 0) return -ENOMEM;
    return bh__buf_u64(b, (uint64_t)0 - (uint64_t)v);
  }
  return bh__buf_u64(b, (uint64_t)v);
}

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0 if invalid.
 * Rejects overlongs, surrogates and code points past U+10FFFF. */
static size_t bh__utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    if (n >= 2 && (s[1] & 0xc0) == 0x80) return 2;
    return 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0;
    if (c == 0xed && s[1] >= 0xa0) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
        (s[3] & 0xc0) != 0x80)
      return 0;
    if (c == 0xf0 && s[1] < 0x90) return 0;
    if (c == 0xf4 && s[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

/* 1 for the bytes a JSON string may carry as they are: printable ASCII
 * except " \\ < > &. */
/* clang-format off */
static const unsigned char bh__json_plain[256] = {
#define BH__R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    BH__R16(0), BH__R16(0), /* 0x00..0x1f: control */
    /* 0x20..0x2f:  ! " # $ % & ' ( ) * + , - . / */
    1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x30..0x3f: 0-9 : ; < = > ? */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1,
    BH__R16(1), /* 0x40..0x4f */
    /* 0x50..0x5f: P..Z [ \ ] ^ _ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    BH__R16(1), BH__R16(1), /* 0x60..0x7f (DEL is allowed by JSON) */
    BH__R16(0), BH__R16(0), BH__R16(0), BH__R16(0), /* 0x80..0xff */
    BH__R16(0), BH__R16(0), BH__R16(0), BH__R16(0),
#undef BH__R16
};
/* clang-format on */

#define BH__ONES8 0x0101010101010101ull
#define BH__HIGHS8 0x8080808080808080ull

/* Nonzero when a byte of x is zero (exact as a yes/no answer). */
static inline uint64_t bh__zero8(uint64_t x) {
  return (x - BH__ONES8) & ~x & BH__HIGHS8;
}

/* Nonzero when one of the 8 bytes of x needs escaping (see bh__json_plain):
 * a control byte, a byte >= 0x80, or one of " \\ < > &. Eight bytes per
 * step instead of one: log lines and Problems are mostly plain text. */
static inline uint64_t bh__json_special8(uint64_t x) {
  uint64_t m = x & BH__HIGHS8;                   /* >= 0x80 */
  m |= (x - BH__ONES8 * 0x20) & ~x & BH__HIGHS8; /* < 0x20 */
  m |= bh__zero8(x ^ (BH__ONES8 * '"'));
  m |= bh__zero8(x ^ (BH__ONES8 * '\\'));
  m |= bh__zero8(x ^ (BH__ONES8 * '<'));
  m |= bh__zero8(x ^ (BH__ONES8 * '>'));
  m |= bh__zero8(x ^ (BH__ONES8 * '&'));
  return m;
}

#ifdef __SSE2__
/* Nonzero when one of the 16 bytes at p needs escaping (as above). */
static inline int bh__json_special16(const unsigned char *p) {
  const __m128i c1f = _mm_set1_epi8(0x1f);
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i m = _mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f); /* < 0x20 */
  m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
  m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
  m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('<')));
  m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('>')));
  m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('&')));
  return _mm_movemask_epi8(_mm_or_si128(m, v)); /* or >= 0x80 */
}
#endif

/* Length of the run of plain bytes at s (at most n). */
static size_t bh__json_plain_run(const unsigned char *s, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  /* 16 bytes per step where the CPU has SSE2 (every x86-64) */
  for (; i + 16 <= n; i += 16)
    if (bh__json_special16(s + i)) break;
  /* the tail as one vector overlapping what was checked: a plain string
   * of 16 bytes or more ends here, without the word or byte loops */
  if (i + 16 > n && i < n && n >= 16 && !bh__json_special16(s + n - 16))
    return n;
#endif
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    if (bh__json_special8(x)) break; /* the byte loop finds which one */
  }
  if (i + 8 > n && i < n && n >= 8) {
    /* the tail as one word overlapping what was checked: plain strings end
     * here without a byte loop */
    uint64_t x;
    memcpy(&x, s + n - 8, 8);
    if (!bh__json_special8(x)) return n;
  }
  while (i < n && bh__json_plain[s[i]])
    i++;
  return i;
}

/* The escaping loop from the first byte that needs it (`i`, after a plain
 * run the caller has checked); the quotes are the caller's. */
static void bh__json_escape_from(bh__buf *b, const unsigned char *s, size_t len,
                                 size_t i) {
  static const char hex[] = "0123456789abcdef";
  if (i) bh__buf_append(b, s, i);
  while (i < len) {
    size_t run = i + bh__json_plain_run(s + i, len - i);
    if (run > i) bh__buf_append(b, s + i, run - i);
    i = run;
    if (i >= len) break;
    unsigned c = s[i];
    if (c >= 0x80) {
      size_t n = bh__utf8_seq(s + i, len - i);
      if (n == 0) {
        bh__buf_append(b, "\\ufffd", 6);
        i++;
      } else {
        bh__buf_append(b, s + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
    case '"': bh__buf_append(b, "\\\"", 2); break;
    case '\\': bh__buf_append(b, "\\\\", 2); break;
    case '\n': bh__buf_append(b, "\\n", 2); break;
    case '\r': bh__buf_append(b, "\\r", 2); break;
    case '\t': bh__buf_append(b, "\\t", 2); break;
    default: {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      bh__buf_append(b, e, 6);
    }
    }
    i++;
  }
}

/* pre + a quoted JSON string. A string with nothing to escape (nearly
 * every one: ids, paths, names) is one room check and one copy; the
 * escaping loop runs only from the first byte that needs it. */
static int bh__json_pre_strn(bh__buf *b, const char *pre, size_t pn,
                             const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  if (len >= SIZE_MAX / 2 || bh__buf_reserve(b, pn + len + 2) != 0)
    return -ENOMEM;
  size_t run = bh__json_plain_run(s, len);
  char *o = b->data + b->len;
  if (pn) memcpy(o, pre, pn);
  o[pn] = '"';
  if (run == len) {
    if (len) memcpy(o + pn + 1, s, len);
    o[pn + 1 + len] = '"';
    b->len += pn + len + 2;
    b->data[b->len] = '\0';
    return 0;
  }
  b->len += pn + 1;
  bh__json_escape_from(b, s, len, run);
  return bh__buf_putc(b, '"');
}

int bh__buf_json_strn(bh__buf *b, const char *str, size_t len) {
  return bh__json_pre_strn(b, NULL, 0, str, len);
}

int bh__buf_json_kv(bh__buf *b, const bh__jkey *key, const char *value) {
  if (value == NULL) {
    bh__buf_append(b, key->s, key->n);
    return bh__buf_puts(b, "null");
  }
  return bh__json_pre_strn(b, key->s, key->n, value, strlen(value));
}

int bh__buf_json_key(bh__buf *b, const char *key) {
  size_t n = strlen(key);
  size_t i = 0;
  while (i < n && bh__json_plain[(unsigned char)key[i]])
    i++;
  if (i < n) {
    /* not a plain name: escaped like any string */
    bh__buf_putc(b, ',');
    bh__buf_json_strn(b, key, n);
    return bh__buf_putc(b, ':');
  }
  /* ,"key": in one append */
  if ((b->failed || b->cap - b->len <= n + 4) && bh__buf_grow(b, n + 4) != 0)
    return -ENOMEM;
  char *o = b->data + b->len;
  o[0] = ',';
  o[1] = '"';
  memcpy(o + 2, key, n);
  o[n + 2] = '"';
  o[n + 3] = ':';
  b->len += n + 4;
  b->data[b->len] = '\0';
  return 0;
}

int bh__buf_json_str(bh__buf *b, const char *s) {
  if (s == NULL) return bh__buf_puts(b, "null");
  return bh__buf_json_strn(b, s, strlen(s));
}

char *bh__buf_steal(bh__buf *b, size_t *len) {
  if (b->failed || b->data == NULL) {
    bh__buf_free(b);
    if (len) *len = 0;
    return NULL;
  }
  char *d = b->data;
  if (len) *len = b->len;
  memset(b, 0, sizeof(*b));
  return d;
}
