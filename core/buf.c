#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bh__buf_init(bh__buf *b) { memset(b, 0, sizeof(*b)); }

void bh__buf_free(bh__buf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

void bh__buf_reset(bh__buf *b) {
  b->len = 0;
  b->failed = 0;
  if (b->data) b->data[0] = '\0';
}

int bh__buf_failed(const bh__buf *b) { return b->failed; }

static int bh__buf_reserve(bh__buf *b, size_t extra) {
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

int bh__buf_append(bh__buf *b, const void *data, size_t len) {
  if (bh__buf_reserve(b, len) != 0) return -ENOMEM;
  if (len) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int bh__buf_puts(bh__buf *b, const char *s) {
  return bh__buf_append(b, s, strlen(s));
}

int bh__buf_putc(bh__buf *b, char c) { return bh__buf_append(b, &c, 1); }

int bh__buf_vprintf(bh__buf *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n < 0) {
    b->failed = 1;
    return -EINVAL;
  }
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
  char tmp[24];
  size_t i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
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

int bh__buf_json_strn(bh__buf *b, const char *str, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  if (bh__buf_putc(b, '"') != 0) return -ENOMEM;
  size_t i = 0, run = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' &&
        c != '>' && c != '&') {
      i++;
      run++;
      continue;
    }
    bh__buf_append(b, s + i - run, run);
    run = 0;
    if (c >= 0x80) {
      size_t n = bh__utf8_seq(s + i, len - i);
      if (n == 0) {
        bh__buf_puts(b, "\\ufffd");
        i++;
      } else {
        bh__buf_append(b, s + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
    case '"': bh__buf_puts(b, "\\\""); break;
    case '\\': bh__buf_puts(b, "\\\\"); break;
    case '\n': bh__buf_puts(b, "\\n"); break;
    case '\r': bh__buf_puts(b, "\\r"); break;
    case '\t': bh__buf_puts(b, "\\t"); break;
    default: {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      bh__buf_append(b, e, 6);
    }
    }
    i++;
  }
  bh__buf_append(b, s + i - run, run);
  return bh__buf_putc(b, '"');
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
