/*
 * Method + path router. Patterns: literal segments, "{name}" segments
 * (one segment, non-empty), and an optional trailing "*" segment matching
 * the rest of the path (zero or more segments). Literal segments win over
 * "{param}" which wins over "*", segment by segment, so the most specific
 * route matches whatever order routes were added in.
 */
#ifndef BH_CORE_ROUTER_H
#define BH_CORE_ROUTER_H

#include <stddef.h>

#include "http/router-t.h"

bh__router *bh__router_new(void);
void bh__router_free(bh__router *r); /* does not free the route pointers */

/* Checks a pattern's syntax without adding it: 0 or -EINVAL. */
int bh__router_pattern_valid(const char *pattern);
/* The rule `pattern` breaks, as a static phrase, or NULL when valid. */
const char *bh__router_pattern_why(const char *pattern);

/* Adds `route` for method + pattern (both copied). Two patterns conflict
 * when they are the same after renaming params ("/a/{id}" == "/a/{x}") and
 * share the method. Returns 0; -EINVAL bad method or pattern; -EEXIST on a
 * conflict, with *conflict set to the route already there; -ENOMEM. */
int bh__router_add(bh__router *r, const char *method, const char *pattern,
                   void *route, void **conflict);

/* Matches path (no query; already percent-decoded is the caller's choice:
 * the router matches bytes). HEAD falls back to GET routes. On
 * BH__ROUTE_METHOD_NOT_ALLOWED, `allow` receives the methods allowed for the
 * path, comma-separated ("GET, HEAD, POST"), sorted, NUL-terminated. */
int bh__router_match(const bh__router *r, const char *method, const char *path,
                     bh__match *m, char *allow, size_t allow_len);

#endif
