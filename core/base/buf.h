/*
 * Growable byte buffer with JSON string escaping; the one way the core builds
 * response bodies, log lines and admin documents.
 *
 * Out-of-memory is sticky: after a failed append every later append is a
 * no-op and bh__buf_failed() is true, so builders check once at the end.
 */
#ifndef BH_CORE_BUF_H
#define BH_CORE_BUF_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bh__buf {
  char *data; /* NUL-terminated when len > 0 */
  size_t len;
  size_t cap;
  int failed;
} bh__buf;

void bh__buf_init(bh__buf *b);
void bh__buf_free(bh__buf *b);
void bh__buf_reset(bh__buf *b); /* len = 0, keeps memory */
/* Buffers kept for reuse from one request to the next keep at most this
 * much room: a larger one is freed, so one large request never pins its
 * memory. */
#define BH__BUF_KEEP_MAX 16384
/* Empties b for reuse: its block kept (NUL-terminated, empty) when its
 * room is at most BH__BUF_KEEP_MAX and no append failed, else freed. 1
 * when a block was kept. */
int bh__buf_empty_keep(bh__buf *b);
int bh__buf_failed(const bh__buf *b);

/* The slow path of the appends below: grows the buffer so `extra` more
 * bytes and a NUL fit. 0 or -ENOMEM (and the buffer is failed). */
int bh__buf_grow(bh__buf *b, size_t extra);

/* 0 or -ENOMEM. The data is copied. Inline: the request path appends
 * short pieces by the dozen, and a call per piece showed in profiles. */
static inline int bh__buf_append(bh__buf *b, const void *data, size_t len) {
  if (b->failed || b->cap - b->len <= len) {
    if (bh__buf_grow(b, len) != 0) return -ENOMEM;
  }
  if (len) __builtin_memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}
static inline int bh__buf_puts(bh__buf *b, const char *s) {
  return bh__buf_append(b, s, __builtin_strlen(s));
}
static inline int bh__buf_putc(bh__buf *b, char c) {
  return bh__buf_append(b, &c, 1);
}
int bh__buf_printf(bh__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int bh__buf_vprintf(bh__buf *b, const char *fmt, va_list ap);
int bh__buf_u64(bh__buf *b, uint64_t v);
int bh__buf_i64(bh__buf *b, int64_t v);

/* Appends `s` as a quoted JSON string: ", \ and control characters escaped,
 * "<" ">" "&" escaped as \u003c.. so echoed text is safe in any context,
 * invalid UTF-8 replaced by U+FFFD. NULL encodes as null. */
int bh__buf_json_str(bh__buf *b, const char *s);
int bh__buf_json_strn(bh__buf *b, const char *s, size_t len);
/* ,"key": -- the separator and an object key, escaped only if it needs it
 * (keys are names from the code: usually one append). */
int bh__buf_json_key(bh__buf *b, const char *key);

/* An object key the code spells, framed once at compile time as ,"key":
 * (BH__JKEY("name"), plain characters only): appended with no scan. */
typedef struct bh__jkey {
  const char *s;
  size_t n;
} bh__jkey;
#define BH__JKEY_LIT(lit) ",\"" lit "\":"
#define BH__JKEY(lit)                                                          \
  { BH__JKEY_LIT(lit), sizeof(BH__JKEY_LIT(lit)) - 1 }
/* ,"key": of a literal key, one append */
#define bh__buf_key(b, lit)                                                    \
  bh__buf_append((b), BH__JKEY_LIT(lit), sizeof(BH__JKEY_LIT(lit)) - 1)
/* The framed key and `value` as a JSON string (null when NULL), with one
 * room check when nothing needs escaping. */
int bh__buf_json_kv(bh__buf *b, const bh__jkey *key, const char *value);

/* Hands the data to the caller (free() it); the buffer is reset. NULL when
 * empty or failed. */
char *bh__buf_steal(bh__buf *b, size_t *len);

#endif
