/*
 * Server-sent events (the WHATWG event-stream format) parsed as bytes
 * arrive, whatever the chunk boundaries: lines end in LF, CRLF or CR;
 * "event:" names the event, "data:" lines accumulate, a blank line
 * dispatches, ":" starts a comment. Bounded: a provider that never ends a
 * line cannot make us buffer without limit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"

#define AI_SSE_MAX (256 * 1024)

static int grow(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  if (need > AI_SSE_MAX) return -E2BIG;
  size_t n = *cap ? *cap : 256;
  while (n < need)
    n *= 2;
  char *p = realloc(*b, n);
  if (p == NULL) return -ENOMEM;
  *b = p;
  *cap = n;
  return 0;
}

static int line_done(ai_sse *p, ai_sse_fn fn, void *arg) {
  const char *l = p->line ? p->line : "";
  size_t n = p->llen;
  p->llen = 0;
  if (n == 0) { /* dispatch */
    if (!p->has_data) {
      p->event[0] = '\0';
      return 0;
    }
    int rc = grow(&p->data, &p->dcap, p->dlen + 1);
    if (rc) return rc;
    p->data[p->dlen] = '\0';
    rc = fn(arg, p->event, p->data, p->dlen);
    p->event[0] = '\0';
    p->dlen = 0;
    p->has_data = 0;
    return rc < 0 ? rc : 0;
  }
  if (l[0] == ':') return 0; /* comment */
  const char *colon = memchr(l, ':', n);
  size_t fl = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vl = colon ? n - fl - 1 : 0;
  if (vl && *v == ' ') v++, vl--;
  if (fl == 5 && memcmp(l, "event", 5) == 0) {
    if (vl >= sizeof(p->event)) vl = sizeof(p->event) - 1;
    memcpy(p->event, v, vl);
    p->event[vl] = '\0';
  } else if (fl == 4 && memcmp(l, "data", 4) == 0) {
    int rc = grow(&p->data, &p->dcap, p->dlen + vl + 2);
    if (rc) return rc;
    if (p->has_data) p->data[p->dlen++] = '\n';
    memcpy(p->data + p->dlen, v, vl);
    p->dlen += vl;
    p->has_data = 1;
  } /* id, retry and unknown fields mean nothing to us */
  return 0;
}

int ai_sse_feed(ai_sse *p, const char *buf, size_t len, ai_sse_fn fn,
                void *arg) {
  for (size_t i = 0; i < len; i++) {
    char c = buf[i];
    int after_cr = p->after_cr;
    p->after_cr = c == '\r';
    if (c == '\n' && after_cr) continue; /* CRLF is one line end */
    if (c == '\n' || c == '\r') {
      int rc = line_done(p, fn, arg);
      if (rc) return rc;
      continue;
    }
    int rc = grow(&p->line, &p->lcap, p->llen + 2);
    if (rc) return rc;
    p->line[p->llen++] = c;
  }
  return 0;
}

void ai_sse_free(ai_sse *p) {
  free(p->line);
  free(p->data);
  memset(p, 0, sizeof(*p));
}
