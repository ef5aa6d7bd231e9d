/*
 * The router's types (router.c): what a match hands back, embedded in
 * every request.
 */
#ifndef BH_CORE_HTTP_ROUTER_T_H
#define BH_CORE_HTTP_ROUTER_T_H

#include <stddef.h>

#define BH__ROUTER_MAX_PARAMS 8

typedef struct bh__router bh__router;

typedef struct bh__param {
  const char *name; /* borrowed from the router (pattern's name; "*" for
                       the tail) */
  size_t off, len;  /* span inside the matched path */
} bh__param;

typedef struct bh__match {
  void *route; /* the pointer given to bh__router_add */
  size_t nparams;
  bh__param params[BH__ROUTER_MAX_PARAMS];
} bh__match;

enum bh__match_result {
  BH__ROUTE_FOUND = 0,
  BH__ROUTE_NOT_FOUND = 1,
  BH__ROUTE_METHOD_NOT_ALLOWED = 2
};

#endif
