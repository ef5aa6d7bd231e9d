/*
 * Upstream answer heads: what of a status line or a header field may be
 * relayed to the client, and the "name: value\r\n" block the call keeps
 * (bh__upstream_head_line for libcurl's whole lines, bh__upstream_head_field
 * for llhttp's name and value).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "upstream/upstream.h"

/* RFC 9110 5.6.2 tchar: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA. A
 * table: one lookup per byte of every upstream header name. */
/* clang-format off */
static const unsigned char bh__tchar_tab[256] = {
#define BH__T16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    BH__T16(0), BH__T16(0),                         /* 0x00..0x1f */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /*  !"#$%&'()*+,-./ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0-9 :;<=>? */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* @ A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* P-Z [\]^_ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* ` a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* p-z {|}~ DEL */
    BH__T16(0), BH__T16(0), BH__T16(0), BH__T16(0), /* 0x80..0xff */
    BH__T16(0), BH__T16(0), BH__T16(0), BH__T16(0),
#undef BH__T16
};
/* clang-format on */

/* Field-value and reason-phrase bytes: HTAB, SP, VCHAR, obs-text. A
 * bare CR, LF, NUL or any other control byte would be relayed into the
 * client's answer, where a CR-splitting parser sees a header we never
 * sent (response splitting). */
static int bh__vchar_ok(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* 1 when the n bytes at v are all field-value bytes (bh__vchar_ok). Eight
 * at a time: a word with no byte below 0x20 and no DEL is all good (a tab,
 * rare in values, sends that word to the byte check). */
static int bh__value_ok(const char *v, size_t n) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, d;
    memcpy(&x, v + i, 8);
    d = x ^ (ones * 0x7f);
    if ((((x - ones * 0x20) & ~x) | ((d - ones) & ~d)) & highs) {
      for (size_t j = i; j < i + 8; j++)
        if (!bh__vchar_ok((unsigned char)v[j])) return 0;
    }
  }
  for (; i < n; i++)
    if (!bh__vchar_ok((unsigned char)v[i])) return 0;
  return 1;
}

int bh__upstream_head_field(bh__buf *block, const char *name, size_t nl,
                            const char *v, size_t vl) {
  /* name ":" OWS value OWS. A name that is not a token (empty, spaces
   * before the colon, an obs-fold continuation line) is refused, not
   * guessed at (RFC 9112 5.1, 5.2) */
  if (nl == 0) return -EPROTO;
  while (vl && (*v == ' ' || *v == '\t'))
    v++, vl--;
  while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
    vl--;
  if (!bh__value_ok(v, vl)) return -EPROTO;
  /* "name: value\r\n", the name checked and lower-cased in one pass,
   * written in place; the length counted only once the name is good */
  size_t need = nl + 2 + vl + 2;
  if ((block->failed || block->cap - block->len <= need) &&
      bh__buf_grow(block, need) != 0)
    return -ENOMEM;
  char *o = block->data + block->len;
  for (size_t i = 0; i < nl; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!bh__tchar_tab[c]) {
      block->data[block->len] = '\0';
      return -EPROTO;
    }
    o[i] = (char)(c | ((unsigned)(c - 'A') < 26u ? 0x20 : 0));
  }
  o += nl;
  *o++ = ':';
  *o++ = ' ';
  if (vl) memcpy(o, v, vl);
  o += vl;
  *o++ = '\r';
  *o++ = '\n';
  *o = '\0';
  block->len += need;
  return 0;
}

int bh__upstream_head_line(bh__buf *block, const char *line, size_t len) {
  /* one terminator: LF or CRLF (libcurl hands over whole lines) */
  if (len && line[len - 1] == '\n') len--;
  if (len && line[len - 1] == '\r') len--;
  if (len == 0) return 0; /* the blank line ending the head */
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    /* a status line: HTTP/<version> SP 3DIGIT [SP reason]; a new one
     * (after 1xx) starts a new head */
    size_t i = 5;
    while (i < len && ((line[i] >= '0' && line[i] <= '9') || line[i] == '.'))
      i++;
    if (i == 5 || i + 4 > len || line[i] != ' ' || line[i + 1] < '1' ||
        line[i + 1] > '5' || line[i + 2] < '0' || line[i + 2] > '9' ||
        line[i + 3] < '0' || line[i + 3] > '9')
      return -EPROTO;
    i += 4;
    if (i < len && line[i] != ' ') return -EPROTO;
    for (; i < len; i++)
      if (!bh__vchar_ok((unsigned char)line[i])) return -EPROTO;
    bh__buf_reset(block);
    return 0;
  }
  const char *colon = memchr(line, ':', len);
  if (colon == NULL) return -EPROTO;
  size_t nl = (size_t)(colon - line);
  return bh__upstream_head_field(block, line, nl, colon + 1, len - nl - 1);
}
