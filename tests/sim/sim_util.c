/* Small helpers: growable buffers, JSON string escaping, UTF-8, URLs. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

void sim_buf_reserve(sim_buf *b, size_t extra) {
  /* +1 keeps room for a terminating NUL that callers may add. */
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) {
    fprintf(stderr, "bulkhead-sim: out of memory\n");
    abort();
  }
  b->data = p;
  b->cap = cap;
}

void sim_buf_append(sim_buf *b, const void *p, size_t n) {
  if (n == 0) return;
  sim_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void sim_buf_puts(sim_buf *b, const char *s) {
  sim_buf_append(b, s, strlen(s));
}

void sim_buf_printf(sim_buf *b, const char *fmt, ...) {
  va_list ap;
  sim_buf_reserve(b, 128);
  va_start(ap, fmt);
  int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= b->cap - b->len) {
    sim_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
}

void sim_buf_free(sim_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void sim_buf_trim(sim_buf *b, size_t keep_cap) {
  b->len = 0;
  if (b->cap > keep_cap) sim_buf_free(b);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned min;
  unsigned cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2, min = 0x80, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, min = 0x800, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

int sim_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    size_t l = utf8_seq(p + i, n - i);
    if (l == 0) return 0;
    i += l;
  }
  return 1;
}

size_t sim_utf8_cut(const char *s, size_t n, size_t max) {
  if (n <= max) return n;
  size_t i = max;
  /* Step back over continuation bytes to the start of the cut sequence. */
  while (i > 0 && i > max - 4 && ((unsigned char)s[i] & 0xC0) == 0x80)
    i--;
  return i;
}

void sim_buf_json_str(sim_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  sim_buf_reserve(b, n + 2);
  b->data[b->len++] = '"';
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    /* Copy runs of plain ASCII in one go: this is the hot path. */
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
      i++;
    sim_buf_append(b, s + start, i - start);
    if (i >= n) break;
    unsigned char c = p[i];
    if (c >= 0x80) {
      size_t l = utf8_seq(p + i, n - i);
      if (l) {
        sim_buf_append(b, s + i, l);
        i += l;
      } else {
        sim_buf_append(b, "\\ufffd", 6);
        i++;
      }
      continue;
    }
    char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
    size_t el = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      esc[1] = 'u', esc[2] = '0', esc[3] = '0';
      esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
      el = 6;
    }
    sim_buf_append(b, esc, el);
    i++;
  }
  sim_buf_append(b, "\"", 1);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t sim_url_decode(char *s, size_t n, int plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int h, l;
    if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
        (l = hexval(s[i + 2])) >= 0) {
      s[o++] = (char)(h * 16 + l);
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      s[o++] = ' ';
    } else {
      s[o++] = s[i];
    }
  }
  return o;
}

void sim_base64(sim_buf *b, const unsigned char *p, size_t n) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  sim_buf_reserve(b, (n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    char q[4] = {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
    sim_buf_append(b, q, 4);
  }
  if (i < n) {
    unsigned v = (unsigned)p[i] << 16;
    if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
    char q[4] = {t[v >> 18], t[(v >> 12) & 63],
                 i + 1 < n ? t[(v >> 6) & 63] : '=', '='};
    sim_buf_append(b, q, 4);
  }
}

json_t *sim_json_bytes(const char *s, size_t n) {
  if (sim_utf8_valid(s, n)) return json_stringn_nocheck(s, n);
  /* Re-encode through the escaper, which replaces invalid bytes. */
  sim_buf tmp = {0};
  sim_buf_json_str(&tmp, s, n);
  json_t *v = json_loadb(tmp.data, tmp.len, JSON_DECODE_ANY, NULL);
  sim_buf_free(&tmp);
  return v ? v : json_string("");
}

uint64_t sim_wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

int sim_strcaseeq(const char *a, size_t alen, const char *b) {
  return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

void sim_log(const char *fmt, ...) {
  va_list ap;
  fputs("bulkhead-sim: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}
