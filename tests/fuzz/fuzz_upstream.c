/*
 * Fuzz target for the upstream response path, without a network: the bytes
 * of an answer's head, handed over one LF-terminated line at a time as
 * libcurl's header callback gets them -> bh__upstream_head_line -> the
 * header block -> what a proxy route relays (bh__proxy_head_lines) and the
 * Retry-After the retry logic reads. Invariants: an accepted block and the
 * relayed lines are "name: value\r\n" lines, names lower-case tokens,
 * values without control bytes but HTAB; nothing relayed is a framing,
 * Connection or Date header; a relayed length is that of the one
 * Content-Length line, with no Transfer-Encoding beside it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "upstream.h"

static int fz_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Checks a block of "name: value\r\n" lines; counts the lines named
 * `count` in *n and keeps the last value of it in val. */
static void fz_check_block(const char *b, size_t len, const char *count,
                           size_t *n, char *val, size_t vallen) {
  if (strlen(b) != len) abort(); /* no NUL inside */
  for (const char *s = b; *s;) {
    const char *eol = strstr(s, "\r\n");
    if (eol == NULL) abort();
    const char *colon = memchr(s, ':', (size_t)(eol - s));
    if (colon == NULL || colon == s || colon[1] != ' ') abort();
    for (const char *p = s; p < colon; p++)
      if (!fz_tchar((unsigned char)*p)) abort();
    for (const char *p = colon + 2; p < eol; p++) {
      unsigned char c = (unsigned char)*p;
      if ((c < 0x20 && c != '\t') || c == 0x7f) abort();
    }
    size_t nl = (size_t)(colon - s);
    if (count && strlen(count) == nl && memcmp(s, count, nl) == 0) {
      (*n)++;
      size_t vl = (size_t)(eol - colon - 2);
      if (vl >= vallen) vl = vallen - 1;
      memcpy(val, colon + 2, vl);
      val[vl] = '\0';
    }
    s = eol + 2;
  }
}

static int fz_has(const char *b, const char *name) {
  size_t n = strlen(name);
  for (const char *s = b; *s;) {
    if (strncmp(s, name, n) == 0 && s[n] == ':') return 1;
    const char *eol = strstr(s, "\r\n");
    if (eol == NULL) return 0;
    s = eol + 2;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bh__buf block;
  bh__buf_init(&block);
  const char *p = (const char *)data, *end = p + size;
  int refused = 0;
  while (p < end && !refused) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    int rc = bh__upstream_head_line(&block, p, n);
    if (rc == -EPROTO)
      refused = 1;
    else if (rc != 0)
      abort(); /* no allocation failure at this size */
    p += n;
  }
  const char *b = block.data ? block.data : "";
  size_t ncl = 0, nra = 0;
  char cl[64] = "", ra[256] = "";
  fz_check_block(b, block.len, "content-length", &ncl, cl, sizeof(cl));
  fz_check_block(b, block.len, "retry-after", &nra, ra, sizeof(ra));
  if (nra) {
    int64_t s = bh__retry_after_parse(ra, 1700000000);
    if (s < -1) abort();
  }
  if (!refused) {
    bh__buf out;
    bh__buf_init(&out);
    long long length = 0;
    if (bh__proxy_head_lines(b, &out, &length) != 0) abort();
    const char *o = out.data ? out.data : "";
    size_t dummy = 0;
    char v[8];
    fz_check_block(o, out.len, NULL, &dummy, v, sizeof(v));
    if (fz_has(o, "content-length") || fz_has(o, "transfer-encoding") ||
        fz_has(o, "connection") || fz_has(o, "keep-alive") ||
        fz_has(o, "date") || fz_has(o, "upgrade") || fz_has(o, "trailer"))
      abort();
    if (length < -1) abort();
    if (length >= 0) {
      /* only from one plain Content-Length and no Transfer-Encoding (the
       * same value repeated counts as one) */
      if (ncl == 0 || fz_has(b, "transfer-encoding")) abort();
      char *e;
      errno = 0;
      long long x = strtoll(cl, &e, 10);
      if (cl[0] < '0' || cl[0] > '9' || *e || errno || x != length) abort();
    }
    bh__buf_free(&out);
  }
  bh__buf_free(&block);
  return 0;
}
