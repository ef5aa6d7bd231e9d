/*
 * bulkhead plugin SDK: the JSON writer (ABI 1.3, header only). Included by
 * plugin.h; a plugin never includes it on its own.
 *
 * Header only on purpose: no service slot, so it works on any 1.x core,
 * costs no call through the table per value, and the core's own encoder
 * (base/buf.c) escapes with the same code. Memory is the plugin's (malloc),
 * so nothing crosses the ABI but the finished text.
 *
 *   bh_json j;
 *   bh_json_init(&j, 0);
 *   bh_json_obj(&j);
 *   bh_json_kstr(&j, "name", name);      (NULL writes null)
 *   bh_json_kint(&j, "count", 3);
 *   bh_json_karr(&j, "tags");
 *   bh_json_str(&j, "a");
 *   bh_json_end(&j);                     (closes the array)
 *   bh_json_end(&j);                     (closes the object)
 *   bh_respond_json(req, 200, &j);       (sends and frees it)
 *
 * Errors are sticky: after the first one every call returns it and writes
 * nothing, so a builder checks once, at the end (bh_json_done, or
 * bh_respond_json, which answers generic.internal). -EINVAL: misuse (a
 * value where a key is due, a key outside an object, an end with nothing
 * open, a second top-level value); -E2BIG: nesting deeper than
 * BH_JSON_MAX_DEPTH; -ENOSPC: the text would pass the limit given to
 * bh_json_init; -ENOMEM.
 *
 * Strings, by the rule of the core's own encoder (the unit test holds the
 * two to the same output): '"' and '\' escaped, \n \r \t, every other
 * control byte and the HTML-special '<' '>' '&' as \u00XX (so an answer
 * is safe to inline in a page); valid UTF-8 copied as is; each byte of an
 * ill-formed sequence (a stray continuation byte, a truncated or overlong
 * sequence, a surrogate, a code point past U+10FFFF) becomes \ufffd.
 */
#ifndef BULKHEAD_JSON_H
#define BULKHEAD_JSON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BH_JSON_MAX_DEPTH 32
#define BH_JSON_DEFAULT_MAX ((size_t)1 << 20) /* 1 MiB */

typedef struct bh_json {
  char *buf; /* NUL-terminated text so far; owned (malloc) */
  size_t len;
  size_t cap;
  size_t max; /* the limit on len */
  int err;    /* 0 or the first error, sticky */
  unsigned depth;
  int want_value; /* a key was written: its value is next */
  int done;       /* a complete top-level value was written */
  int wipe;       /* bh_json_sensitive: no copy of the text left behind */
  /* per open level: 'o' or 'a', and whether it has a member yet */
  unsigned char kind[BH_JSON_MAX_DEPTH];
  unsigned char nonempty[BH_JSON_MAX_DEPTH];
} bh_json;

/* `max`: the largest text allowed, in bytes; 0: BH_JSON_DEFAULT_MAX. */
static inline void bh_json_init(bh_json *j, size_t max) {
  memset(j, 0, sizeof(*j));
  j->max = max ? max : BH_JSON_DEFAULT_MAX;
}

/* Zeroes n bytes in a way the compiler keeps (the memory is freed next). */
static inline void bh__json_zero(char *p, size_t n) {
  volatile char *v = p;
  while (n--)
    *v++ = 0;
}

/* For text that holds a secret (a password going upstream, tokens going
 * to the client): growing copies instead of realloc() and wipes the old
 * buffer, and bh_json_free wipes the text. Call right after bh_json_init. */
static inline void bh_json_sensitive(bh_json *j) {
  j->wipe = 1;
}

/* Frees the text. The writer may be reused after bh_json_init. */
static inline void bh_json_free(bh_json *j) {
  if (j->wipe && j->buf) bh__json_zero(j->buf, j->cap);
  free(j->buf);
  j->buf = NULL;
  j->len = j->cap = 0;
}

static inline int bh_json_error(const bh_json *j) {
  return j->err;
}

static inline int bh__json_fail(bh_json *j, int err) {
  if (j->err == 0) j->err = err;
  return j->err;
}

/* Room for n more bytes and the NUL. */
static inline int bh__json_reserve(bh_json *j, size_t n) {
  if (j->err) return j->err;
  if (n > j->max - j->len) return bh__json_fail(j, -ENOSPC);
  if (j->len + n + 1 <= j->cap) return 0;
  size_t cap = j->cap ? j->cap : 256;
  while (cap < j->len + n + 1)
    cap *= 2;
  char *b;
  if (j->wipe) {
    b = (char *)malloc(cap);
    if (b && j->buf) {
      memcpy(b, j->buf, j->len + 1);
      bh__json_zero(j->buf, j->cap);
      free(j->buf);
    }
  } else {
    b = (char *)realloc(j->buf, cap);
  }
  if (b == NULL) return bh__json_fail(j, -ENOMEM);
  j->buf = b;
  j->cap = cap;
  return 0;
}

static inline int bh__json_put(bh_json *j, const char *s, size_t n) {
  if (bh__json_reserve(j, n)) return j->err;
  memcpy(j->buf + j->len, s, n);
  j->len += n;
  j->buf[j->len] = '\0';
  return 0;
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left,
 * s[0] >= 0x80), or 0: overlongs, surrogates, code points past U+10FFFF,
 * truncated sequences and stray continuation bytes are ill-formed. */
static inline size_t bh__utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xbf; /* bounds of byte 2 */
  size_t need;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (n < need || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return need;
}

/* A byte a JSON string carries as it is: printable ASCII (DEL too) but
 * '"', '\\' and the HTML-special '<', '>' and '&'. */
static inline int bh__json_plain_byte(unsigned char c) {
  return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' &&
         c != '>' && c != '&';
}

/* Appends s[0..n) as the body of a JSON string (no quotes), by the rule
 * the core's own encoder follows, byte for byte. */
static inline int bh_json_escape(bh_json *j, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  while (p < e && j->err == 0) {
    const unsigned char *run = p;
    while (p < e && bh__json_plain_byte(*p))
      p++;
    if (p > run) bh__json_put(j, (const char *)run, (size_t)(p - run));
    if (p == e) break;
    unsigned char c = *p;
    if (c >= 0x80) {
      size_t k = bh__utf8_len(p, (size_t)(e - p));
      if (k) {
        bh__json_put(j, (const char *)p, k);
        p += k;
      } else {
        bh__json_put(j, "\\ufffd", 6); /* one per ill-formed byte */
        p++;
      }
      continue;
    }
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    size_t el = 6;
    if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t') {
      esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : (char)c;
      el = 2;
    }
    bh__json_put(j, esc, el);
    p++;
  }
  return j->err;
}

/* Before any value: the separator, and the checks of where it may go. */
static inline int bh__json_value(bh_json *j) {
  if (j->err) return j->err;
  if (j->depth == 0) {
    if (j->done) return bh__json_fail(j, -EINVAL);
    return 0;
  }
  unsigned d = j->depth - 1;
  if (j->kind[d] == 'o') {
    if (!j->want_value) return bh__json_fail(j, -EINVAL);
    j->want_value = 0;
    return 0;
  }
  if (j->nonempty[d]) return bh__json_put(j, ",", 1);
  j->nonempty[d] = 1;
  return 0;
}

/* After a scalar, or the end of a container: a top-level value is done. */
static inline int bh__json_after(bh_json *j) {
  if (j->err == 0 && j->depth == 0) j->done = 1;
  return j->err;
}

static inline int bh_json_key(bh_json *j, const char *key) {
  if (j->err) return j->err;
  if (key == NULL || j->depth == 0 || j->kind[j->depth - 1] != 'o' ||
      j->want_value)
    return bh__json_fail(j, -EINVAL);
  if (j->nonempty[j->depth - 1]) bh__json_put(j, ",", 1);
  j->nonempty[j->depth - 1] = 1;
  bh__json_put(j, "\"", 1);
  bh_json_escape(j, key, strlen(key));
  bh__json_put(j, "\":", 2);
  j->want_value = j->err == 0;
  return j->err;
}

static inline int bh__json_open(bh_json *j, char kind) {
  if (bh__json_value(j)) return j->err;
  if (j->depth == BH_JSON_MAX_DEPTH) return bh__json_fail(j, -E2BIG);
  if (bh__json_put(j, kind == 'o' ? "{" : "[", 1)) return j->err;
  j->kind[j->depth] = (unsigned char)kind;
  j->nonempty[j->depth] = 0;
  j->depth++;
  return 0;
}

static inline int bh_json_obj(bh_json *j) {
  return bh__json_open(j, 'o');
}
static inline int bh_json_arr(bh_json *j) {
  return bh__json_open(j, 'a');
}

/* Closes the innermost open object or array. */
static inline int bh_json_end(bh_json *j) {
  if (j->err) return j->err;
  if (j->depth == 0 || j->want_value) return bh__json_fail(j, -EINVAL);
  j->depth--;
  bh__json_put(j, j->kind[j->depth] == 'o' ? "}" : "]", 1);
  return bh__json_after(j);
}

/* n bytes of s as a string (ill-formed UTF-8 replaced). */
static inline int bh_json_strn(bh_json *j, const char *s, size_t n) {
  if (s == NULL && n) return bh__json_fail(j, -EINVAL);
  if (bh__json_value(j)) return j->err;
  bh__json_put(j, "\"", 1);
  if (n) bh_json_escape(j, s, n);
  bh__json_put(j, "\"", 1);
  return bh__json_after(j);
}

static inline int bh__json_scalar(bh_json *j, const char *text, size_t n) {
  if (bh__json_value(j)) return j->err;
  bh__json_put(j, text, n);
  return bh__json_after(j);
}

static inline int bh_json_null(bh_json *j) {
  return bh__json_scalar(j, "null", 4);
}
/* NULL writes null. */
static inline int bh_json_str(bh_json *j, const char *s) {
  return s ? bh_json_strn(j, s, strlen(s)) : bh_json_null(j);
}
static inline int bh_json_bool(bh_json *j, int v) {
  return v ? bh__json_scalar(j, "true", 4) : bh__json_scalar(j, "false", 5);
}
static inline int bh__json_digits(bh_json *j, int neg, uint64_t v) {
  char d[24];
  size_t i = sizeof(d);
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  if (neg) d[--i] = '-';
  return bh__json_scalar(j, d + i, sizeof(d) - i);
}
static inline int bh_json_int(bh_json *j, int64_t v) {
  /* 0 - (uint64_t)v is |v|, INT64_MIN included */
  return v < 0 ? bh__json_digits(j, 1, 0 - (uint64_t)v)
               : bh__json_digits(j, 0, (uint64_t)v);
}
static inline int bh_json_uint(bh_json *j, uint64_t v) {
  return bh__json_digits(j, 0, v);
}
/* A complete JSON value the plugin got as text from the core (bh_body_json,
 * apikey_list's res->json) or from another bh_json, inserted as is: it is
 * NOT checked, so never pass text from anywhere else. */
static inline int bh_json_raw(bh_json *j, const char *json, size_t n) {
  if (json == NULL || n == 0) return bh__json_fail(j, -EINVAL);
  return bh__json_scalar(j, json, n);
}

/* Key and value in one call. */
static inline int bh_json_kstr(bh_json *j, const char *k, const char *v) {
  return bh_json_key(j, k) ? j->err : bh_json_str(j, v);
}
static inline int bh_json_kstrn(bh_json *j, const char *k, const char *v,
                                size_t n) {
  return bh_json_key(j, k) ? j->err : bh_json_strn(j, v, n);
}
static inline int bh_json_kint(bh_json *j, const char *k, int64_t v) {
  return bh_json_key(j, k) ? j->err : bh_json_int(j, v);
}
static inline int bh_json_kuint(bh_json *j, const char *k, uint64_t v) {
  return bh_json_key(j, k) ? j->err : bh_json_uint(j, v);
}
static inline int bh_json_kbool(bh_json *j, const char *k, int v) {
  return bh_json_key(j, k) ? j->err : bh_json_bool(j, v);
}
static inline int bh_json_knull(bh_json *j, const char *k) {
  return bh_json_key(j, k) ? j->err : bh_json_null(j);
}
static inline int bh_json_kraw(bh_json *j, const char *k, const char *json) {
  if (bh_json_key(j, k)) return j->err;
  return bh_json_raw(j, json, json ? strlen(json) : 0);
}
static inline int bh_json_kobj(bh_json *j, const char *k) {
  return bh_json_key(j, k) ? j->err : bh_json_obj(j);
}
static inline int bh_json_karr(bh_json *j, const char *k) {
  return bh_json_key(j, k) ? j->err : bh_json_arr(j);
}

/* The finished text (borrowed until bh_json_free) and its length, or NULL
 * when an error happened or the value is not complete (something still
 * open, nothing written). */
static inline const char *bh_json_done(bh_json *j, size_t *len) {
  if (j->err == 0 && (!j->done || j->depth)) j->err = -EINVAL;
  if (j->err) return NULL;
  if (len) *len = j->len;
  return j->buf;
}

#endif /* BULKHEAD_JSON_H */
