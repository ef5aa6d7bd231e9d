#include "http/router.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A trie with one level per path segment. Each node has sorted literal
 * children (binary search), at most one "{param}" child and at most one "*"
 * child. Param names are not part of the trie: "/a/{id}" and "/a/{x}" reach
 * the same node, which is exactly the conflict rule, and each route entry
 * keeps its own names so a match reports the names of the route it found.
 */

typedef struct bh__rentry {
  const char *method; /* interned in the router's method table */
  void *route;
  char **names; /* one per param the route's pattern declares */
  size_t nnames;
} bh__rentry;

typedef struct bh__rnode {
  char *seg; /* literal text, for literal children only */
  size_t seglen;
  struct bh__rnode **kids; /* literal children, sorted by segment bytes */
  size_t nkids, capkids;
  struct bh__rnode *param;
  struct bh__rnode *wild; /* terminal: "*" is always the last segment */
  bh__rentry *ents;
  size_t nents, capents;
} bh__rnode;

struct bh__router {
  bh__rnode root;
  /* Every distinct method, sorted: the 405 Allow list is built from it
   * without allocating, and entries point into it instead of copying. */
  char **methods;
  size_t nmethods, capmethods;
};

/* Static, so a match can hand it out as a borrowed name. */
static const char bh__wild_name[] = "*";

/* Own copy helper: strndup needs POSIX 2008, the core builds as plain C11
 * too. */
static char *bh__strndup(const char *s, size_t len) {
  char *d = malloc(len + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

bh__router *bh__router_new(void) {
  return calloc(1, sizeof(bh__router));
}

static void bh__rnode_clear(bh__rnode *n) {
  for (size_t i = 0; i < n->nkids; i++) {
    bh__rnode_clear(n->kids[i]);
    free(n->kids[i]);
  }
  free(n->kids);
  if (n->param) {
    bh__rnode_clear(n->param);
    free(n->param);
  }
  if (n->wild) {
    bh__rnode_clear(n->wild);
    free(n->wild);
  }
  for (size_t i = 0; i < n->nents; i++) {
    for (size_t j = 0; j < n->ents[i].nnames; j++)
      free(n->ents[i].names[j]);
    free(n->ents[i].names);
  }
  free(n->ents);
  free(n->seg);
}

void bh__router_free(bh__router *r) {
  if (r == NULL) return;
  bh__rnode_clear(&r->root);
  for (size_t i = 0; i < r->nmethods; i++)
    free(r->methods[i]);
  free(r->methods);
  free(r);
}

/* ---------------------------------------------------------------------- */
/* Pattern syntax                                                          */
/* ---------------------------------------------------------------------- */

enum { BH__SEG_LIT, BH__SEG_PARAM, BH__SEG_WILD };

static int bh__is_ident(const char *s, size_t len) {
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

/* Bytes a literal segment may not hold: pattern syntax, query/fragment
 * delimiters (a path never contains them) and controls or spaces (a typo
 * that could never match a request line). */
static int bh__lit_byte_ok(unsigned char c) {
  return c > 0x20 && c != 0x7f && c != '{' && c != '}' && c != '*' &&
         c != '?' && c != '#';
}

/* Length of the segment starting at s (up to '/' or the end). */
static size_t bh__seg_len(const char *s) {
  const char *e = strchr(s, '/');
  return e ? (size_t)(e - s) : strlen(s);
}

static int bh__seg_kind(const char *s, size_t len) {
  if (len == 1 && s[0] == '*') return BH__SEG_WILD;
  if (s[0] == '{') return BH__SEG_PARAM;
  return BH__SEG_LIT;
}

const char *bh__router_pattern_why(const char *pattern) {
  if (pattern == NULL || pattern[0] != '/') return "a pattern starts with '/'";
  if (pattern[1] == '\0') return NULL; /* "/" is the root route */
  size_t nparams = 0;
  const char *s = pattern + 1;
  for (;;) {
    size_t len = bh__seg_len(s);
    int last = s[len] == '\0';
    /* Covers "//" and a trailing slash: both would need empty segments. */
    if (len == 0) return "no empty segment (\"//\" or a trailing '/')";
    switch (bh__seg_kind(s, len)) {
    case BH__SEG_WILD:
      if (!last) return "'*' only as the last segment";
      nparams++;
      break;
    case BH__SEG_PARAM:
      if (len < 3 || s[len - 1] != '}' || !bh__is_ident(s + 1, len - 2))
        return "a parameter segment is {name}, name [A-Za-z_][A-Za-z0-9_]*";
      /* Duplicate names would make req_param() ambiguous. */
      for (const char *p = pattern + 1; p < s;) {
        size_t plen = bh__seg_len(p);
        if (plen == len && memcmp(p, s, len) == 0)
          return "a parameter name appears once";
        p += plen + 1;
      }
      nparams++;
      break;
    default:
      for (size_t i = 0; i < len; i++)
        if (!bh__lit_byte_ok((unsigned char)s[i]))
          return "a literal segment has no space, control byte, {, }, *, ? or "
                 "#";
      break;
    }
    if (nparams > BH__ROUTER_MAX_PARAMS) return "at most 8 parameters";
    if (last) return NULL;
    s += len + 1;
  }
}

int bh__router_pattern_valid(const char *pattern) {
  return bh__router_pattern_why(pattern) ? -EINVAL : 0;
}

static int bh__method_valid(const char *m) {
  if (m == NULL || m[0] == '\0') return 0;
  for (; *m; m++)
    if (*m < 'A' || *m > 'Z') return 0;
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Building                                                                */
/* ---------------------------------------------------------------------- */

static int bh__seg_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c != 0) return c;
  return alen < blen ? -1 : alen > blen;
}

/* Index of the child equal to seg, or ~insertion point when absent. */
static size_t bh__kid_find(const bh__rnode *n, const char *seg, size_t len,
                           int *found) {
  size_t lo = 0, hi = n->nkids;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const bh__rnode *k = n->kids[mid];
    int c = bh__seg_cmp(seg, len, k->seg, k->seglen);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  *found = 0;
  return lo;
}

/* Room for one more element in arr (n used, *cap allocated). Returns the
 * possibly moved array, or NULL with arr untouched on failure. */
static void *bh__grow(void *arr, size_t n, size_t *cap, size_t elem) {
  if (n < *cap) return arr;
  size_t ncap = *cap ? *cap * 2 : 4;
  if (ncap > SIZE_MAX / elem) return NULL;
  void *p = realloc(arr, ncap * elem);
  if (p != NULL) *cap = ncap;
  return p;
}

static bh__rnode *bh__kid_get(bh__rnode *n, const char *seg, size_t len) {
  int found;
  size_t at = bh__kid_find(n, seg, len, &found);
  if (found) return n->kids[at];
  bh__rnode **kids = bh__grow(n->kids, n->nkids, &n->capkids, sizeof(*kids));
  if (kids == NULL) return NULL;
  n->kids = kids;
  bh__rnode *k = calloc(1, sizeof(*k));
  if (k == NULL) return NULL;
  k->seg = bh__strndup(seg, len);
  if (k->seg == NULL) {
    free(k);
    return NULL;
  }
  k->seglen = len;
  memmove(&n->kids[at + 1], &n->kids[at], (n->nkids - at) * sizeof(*n->kids));
  n->kids[at] = k;
  n->nkids++;
  return k;
}

static bh__rnode *bh__slot_get(bh__rnode **slot) {
  if (*slot == NULL) *slot = calloc(1, sizeof(**slot));
  return *slot;
}

static const char *bh__method_intern(bh__router *r, const char *method) {
  size_t lo = 0, hi = r->nmethods;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(method, r->methods[mid]);
    if (c == 0) return r->methods[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  char **methods =
      bh__grow(r->methods, r->nmethods, &r->capmethods, sizeof(*methods));
  if (methods == NULL) return NULL;
  r->methods = methods;
  char *m = bh__strndup(method, strlen(method));
  if (m == NULL) return NULL;
  memmove(&r->methods[lo + 1], &r->methods[lo],
          (r->nmethods - lo) * sizeof(*r->methods));
  r->methods[lo] = m;
  r->nmethods++;
  return m;
}

/* Copies the param names of pattern in order; "*" is stored as NULL and
 * reported with the static name. */
static int bh__names_copy(const char *pattern, bh__rentry *e) {
  char *names[BH__ROUTER_MAX_PARAMS];
  size_t n = 0;
  for (const char *s = pattern + 1; *s != '\0';) {
    size_t len = bh__seg_len(s);
    int kind = bh__seg_kind(s, len);
    if (kind != BH__SEG_LIT) {
      names[n] = kind == BH__SEG_PARAM ? bh__strndup(s + 1, len - 2) : NULL;
      if (kind == BH__SEG_PARAM && names[n] == NULL) goto oom;
      n++;
    }
    s += len + (s[len] == '/');
  }
  e->names = n ? malloc(n * sizeof(*e->names)) : NULL;
  if (n && e->names == NULL) goto oom;
  if (n) memcpy(e->names, names, n * sizeof(*names));
  e->nnames = n;
  return 0;
oom:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  return -ENOMEM;
}

int bh__router_add(bh__router *r, const char *method, const char *pattern,
                   void *route, void **conflict) {
  if (conflict) *conflict = NULL;
  if (r == NULL || !bh__method_valid(method) ||
      bh__router_pattern_valid(pattern) != 0)
    return -EINVAL;
  /* Nodes created before a later failure stay behind empty: harmless, as
   * only entries make a node match. */
  bh__rnode *n = &r->root;
  if (pattern[1] != '\0') {
    for (const char *s = pattern + 1;; s++) {
      size_t len = bh__seg_len(s);
      switch (bh__seg_kind(s, len)) {
      case BH__SEG_WILD: n = bh__slot_get(&n->wild); break;
      case BH__SEG_PARAM: n = bh__slot_get(&n->param); break;
      default: n = bh__kid_get(n, s, len); break;
      }
      if (n == NULL) return -ENOMEM;
      s += len;
      if (*s == '\0') break;
    }
  }
  for (size_t i = 0; i < n->nents; i++) {
    if (strcmp(n->ents[i].method, method) == 0) {
      if (conflict) *conflict = n->ents[i].route;
      return -EEXIST;
    }
  }
  bh__rentry *ents = bh__grow(n->ents, n->nents, &n->capents, sizeof(*ents));
  if (ents == NULL) return -ENOMEM;
  n->ents = ents;
  bh__rentry e = {.route = route};
  e.method = bh__method_intern(r, method);
  if (e.method == NULL || bh__names_copy(pattern, &e) != 0) return -ENOMEM;
  n->ents[n->nents++] = e;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Matching                                                                */
/* ---------------------------------------------------------------------- */

/* The entry of n serving method, HEAD served by GET when there is no HEAD
 * route of its own. NULL method: any entry (does the path exist at all). */
static const bh__rentry *bh__node_entry(const bh__rnode *n,
                                        const char *method) {
  const bh__rentry *get = NULL;
  if (n == NULL || n->nents == 0) return NULL;
  if (method == NULL) return &n->ents[0];
  for (size_t i = 0; i < n->nents; i++) {
    const char *em = n->ents[i].method;
    if (strcmp(em, method) == 0) return &n->ents[i];
    if (em[0] == 'G' && strcmp(em, "GET") == 0) get = &n->ents[i];
  }
  return strcmp(method, "HEAD") == 0 ? get : NULL;
}

/* Depth-first, most specific child first: the first success is the best
 * match, and a dead end falls back to the next less specific child. pos is
 * the '/' before the next segment, or plen when none is left. Recursion
 * depth is bounded by the longest pattern, not by the request path. */
static const bh__rentry *bh__walk(const bh__rnode *n, const char *path,
                                  size_t pos, size_t plen, const char *method,
                                  bh__match *m, size_t np) {
  const bh__rentry *e;
  if (pos == plen) {
    if ((e = bh__node_entry(n, method)) != NULL) return e;
    if ((e = bh__node_entry(n->wild, method)) != NULL) {
      m->params[np] = (bh__param){bh__wild_name, plen, 0};
      return e;
    }
    return NULL;
  }
  size_t start = pos + 1, end = start;
  while (end < plen && path[end] != '/')
    end++;
  size_t len = end - start;
  if (n->nkids) {
    int found;
    size_t at = bh__kid_find(n, path + start, len, &found);
    if (found &&
        (e = bh__walk(n->kids[at], path, end, plen, method, m, np)) != NULL)
      return e;
  }
  if (n->param && len > 0 && np < BH__ROUTER_MAX_PARAMS) {
    m->params[np] = (bh__param){NULL, start, len}; /* named on success */
    if ((e = bh__walk(n->param, path, end, plen, method, m, np + 1)) != NULL)
      return e;
  }
  if ((e = bh__node_entry(n->wild, method)) != NULL &&
      np < BH__ROUTER_MAX_PARAMS) {
    m->params[np] = (bh__param){bh__wild_name, start, plen - start};
    return e;
  }
  return NULL;
}

static const bh__rentry *bh__lookup(const bh__router *r, const char *method,
                                    const char *path, bh__match *m) {
  size_t plen = strlen(path);
  /* "/" has no segments; anything else starts with the '/' of its first. */
  size_t pos = plen == 1 ? 1 : 0;
  return bh__walk(&r->root, path, pos, plen, method, m, 0);
}

/* Appends ", name" (or the first name) only if it fits whole, so a short
 * buffer yields a shorter list rather than a cut method name. */
static void bh__allow_put(char *allow, size_t allow_len, size_t *used,
                          const char *name) {
  size_t sep = *used ? 2 : 0, nlen = strlen(name);
  if (allow == NULL || *used + sep + nlen + 1 > allow_len) return;
  if (sep) memcpy(allow + *used, ", ", 2);
  memcpy(allow + *used + sep, name, nlen + 1);
  *used += sep + nlen;
}

int bh__router_match(const bh__router *r, const char *method, const char *path,
                     bh__match *m, char *allow, size_t allow_len) {
  if (allow && allow_len) allow[0] = '\0';
  m->route = NULL;
  m->nparams = 0;
  if (r == NULL || method == NULL || path == NULL || path[0] != '/')
    return BH__ROUTE_NOT_FOUND;
  const bh__rentry *e = bh__lookup(r, method, path, m);
  if (e != NULL) {
    m->route = e->route;
    m->nparams = e->nnames;
    for (size_t i = 0; i < e->nnames; i++)
      m->params[i].name = e->names[i] ? e->names[i] : bh__wild_name;
    return BH__ROUTE_FOUND;
  }
  if (bh__lookup(r, NULL, path, m) == NULL) return BH__ROUTE_NOT_FOUND;
  /* Another method would succeed. A method belongs in Allow exactly when a
   * request with it would be served, so ask the same question per known
   * method, in sorted order, slotting in HEAD when GET (or HEAD) serves. */
  size_t used = 0;
  int head = bh__lookup(r, "HEAD", path, m) != NULL, head_done = 0;
  for (size_t i = 0; i < r->nmethods; i++) {
    const char *name = r->methods[i];
    if (head && !head_done && strcmp("HEAD", name) <= 0) {
      bh__allow_put(allow, allow_len, &used, "HEAD");
      head_done = 1;
    }
    if (strcmp(name, "HEAD") == 0) continue;
    if (bh__lookup(r, name, path, m) != NULL)
      bh__allow_put(allow, allow_len, &used, name);
  }
  if (head && !head_done) bh__allow_put(allow, allow_len, &used, "HEAD");
  m->route = NULL;
  m->nparams = 0;
  return BH__ROUTE_METHOD_NOT_ALLOWED;
}
