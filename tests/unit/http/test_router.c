#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "http/router.h"

/* Distinct non-NULL values to stand for route pointers; never deref'd. */
#define R(i) ((void *)(uintptr_t)(0x1000 + (i)))

static int bh__add(bh__router *r, const char *method, const char *pattern,
                   void *route) {
  void *conflict = R(63);
  int rc = bh__router_add(r, method, pattern, route, &conflict);
  if (rc != -EEXIST) CHECK(conflict == NULL);
  return rc;
}

/* Route found for method + path, or NULL. */
static void *bh__find(const bh__router *r, const char *method, const char *path,
                      bh__match *m) {
  char allow[128];
  int rc = bh__router_match(r, method, path, m, allow, sizeof(allow));
  return rc == BH__ROUTE_FOUND ? m->route : NULL;
}

/* The text of param i of the last match. */
static const char *bh__pv(const bh__match *m, const char *path, size_t i) {
  static char buf[256];
  if (i >= m->nparams || m->params[i].len >= sizeof(buf)) return "(none)";
  memcpy(buf, path + m->params[i].off, m->params[i].len);
  buf[m->params[i].len] = '\0';
  return buf;
}

static void test_pattern_syntax(void) {
  const char *good[] = {"/",
                        "/a",
                        "/v1/billing/subscription",
                        "/v1/api-keys/{id}",
                        "/v1/proxy/*",
                        "/*",
                        "/{a}/{b_2}/{_c}/*",
                        "/a/{x}/b",
                        "/files/v1.2~x%20y",
                        "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}",
                        "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/*",
                        NULL};
  const char *bad[] = {"",
                       "a",
                       "a/b",
                       "//",
                       "/a//b",
                       "/a/",
                       "/a/b/",
                       "/*/a",
                       "/a/*/*",
                       "/a*",
                       "/a/b*",
                       "/a/*b",
                       "/{}",
                       "/{",
                       "/}",
                       "/{a",
                       "/a}",
                       "/x{a}",
                       "/{a}x",
                       "/{a}}",
                       "/{{a}}",
                       "/{1a}",
                       "/{a-b}",
                       "/{a b}",
                       "/{a}/{a}",
                       "/a b",
                       "/a?b",
                       "/a#b",
                       "/a\tb",
                       "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
                       "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/*",
                       NULL};
  for (size_t i = 0; good[i]; i++) {
    int rc = bh__router_pattern_valid(good[i]);
    if (rc != 0) fprintf(stderr, "should be valid: %s\n", good[i]);
    CHECK_INT(rc, 0);
  }
  for (size_t i = 0; bad[i]; i++) {
    int rc = bh__router_pattern_valid(bad[i]);
    if (rc != -EINVAL) fprintf(stderr, "should be invalid: %s\n", bad[i]);
    CHECK_INT(rc, -EINVAL);
  }
  CHECK_INT(bh__router_pattern_valid(NULL), -EINVAL);

  bh__router *r = bh__router_new();
  CHECK(r != NULL);
  for (size_t i = 0; bad[i]; i++)
    CHECK_INT(bh__add(r, "GET", bad[i], R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "get", "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "", "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "GE T", "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "GET1", "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "M-SEARCH", "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, NULL, "/a", R(0)), -EINVAL);
  CHECK_INT(bh__add(r, "GET", NULL, R(0)), -EINVAL);
  /* Rejected adds leave nothing behind. */
  bh__match m;
  CHECK_INT(bh__router_match(r, "GET", "/a", &m, NULL, 0), BH__ROUTE_NOT_FOUND);
  CHECK_INT(bh__add(r, "PROPFIND", "/a", R(1)), 0);
  CHECK(bh__find(r, "PROPFIND", "/a", &m) == R(1));
  bh__router_free(r);
  bh__router_free(NULL);
}

static void test_literal_and_root(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  CHECK_INT(bh__add(r, "GET", "/", R(0)), 0);
  CHECK_INT(bh__add(r, "GET", "/a", R(1)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/b", R(2)), 0);
  CHECK_INT(bh__add(r, "GET", "/ab", R(3)), 0);
  CHECK(bh__find(r, "GET", "/", &m) == R(0));
  CHECK_INT(m.nparams, 0);
  CHECK(bh__find(r, "GET", "/a", &m) == R(1));
  CHECK(bh__find(r, "GET", "/a/b", &m) == R(2));
  CHECK(bh__find(r, "GET", "/ab", &m) == R(3));
  CHECK(bh__find(r, "GET", "/a/", &m) == NULL);
  CHECK(bh__find(r, "GET", "/a/b/", &m) == NULL);
  CHECK(bh__find(r, "GET", "//", &m) == NULL);
  CHECK(bh__find(r, "GET", "/a//b", &m) == NULL);
  CHECK(bh__find(r, "GET", "/A", &m) == NULL);
  CHECK(bh__find(r, "GET", "/b", &m) == NULL);
  CHECK(bh__find(r, "GET", "/a/b/c", &m) == NULL);
  CHECK(bh__find(r, "GET", "", &m) == NULL);
  CHECK(bh__find(r, "GET", "a", &m) == NULL);
  CHECK_INT(bh__router_match(r, "GET", "/zz", &m, NULL, 0),
            BH__ROUTE_NOT_FOUND);
  CHECK(m.route == NULL);
  CHECK_INT(m.nparams, 0);
  bh__router_free(r);
}

static void test_params(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  CHECK_INT(bh__add(r, "GET", "/v1/api-keys/{id}", R(1)), 0);
  CHECK_INT(bh__add(r, "GET", "/v1/users/{user}/keys/{key_id}", R(2)), 0);
  const char *p = "/v1/api-keys/k_123";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "id");
  CHECK_INT(m.params[0].off, 13);
  CHECK_INT(m.params[0].len, 5);
  CHECK_STR(bh__pv(&m, p, 0), "k_123");

  p = "/v1/users/u%2F1/keys/abc";
  CHECK(bh__find(r, "GET", p, &m) == R(2));
  CHECK_INT(m.nparams, 2);
  CHECK_STR(m.params[0].name, "user");
  CHECK_STR(bh__pv(&m, p, 0), "u%2F1");
  CHECK_STR(m.params[1].name, "key_id");
  CHECK_STR(bh__pv(&m, p, 1), "abc");

  /* A param is exactly one non-empty segment. */
  CHECK(bh__find(r, "GET", "/v1/api-keys/", &m) == NULL);
  CHECK(bh__find(r, "GET", "/v1/api-keys", &m) == NULL);
  CHECK(bh__find(r, "GET", "/v1/api-keys/a/b", &m) == NULL);
  CHECK(bh__find(r, "GET", "/v1/users//keys/x", &m) == NULL);

  /* Same shape, other names: each route reports its own names. */
  CHECK_INT(bh__add(r, "DELETE", "/v1/api-keys/{key}", R(3)), 0);
  CHECK(bh__find(r, "DELETE", "/v1/api-keys/zz", &m) == R(3));
  CHECK_STR(m.params[0].name, "key");
  CHECK(bh__find(r, "GET", "/v1/api-keys/zz", &m) == R(1));
  CHECK_STR(m.params[0].name, "id");

  /* The maximum number of params. */
  CHECK_INT(bh__add(r, "GET", "/m/{a}/{b}/{c}/{d}/{e}/{f}/{g}/*", R(4)), 0);
  p = "/m/1/2/3/4/5/6/7/x/y/z";
  CHECK(bh__find(r, "GET", p, &m) == R(4));
  CHECK_INT(m.nparams, BH__ROUTER_MAX_PARAMS);
  CHECK_STR(m.params[6].name, "g");
  CHECK_STR(bh__pv(&m, p, 6), "7");
  CHECK_STR(m.params[7].name, "*");
  CHECK_STR(bh__pv(&m, p, 7), "x/y/z");
  bh__router_free(r);
}

static void test_wildcard(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  CHECK_INT(bh__add(r, "GET", "/v1/proxy/*", R(1)), 0);
  const char *p = "/v1/proxy/a/b/c";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "*");
  CHECK_STR(bh__pv(&m, p, 0), "a/b/c");
  p = "/v1/proxy/a";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_STR(bh__pv(&m, p, 0), "a");
  /* Zero segments: the capture is empty and sits at the end of the path. */
  p = "/v1/proxy";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_INT(m.nparams, 1);
  CHECK_INT(m.params[0].off, strlen(p));
  CHECK_INT(m.params[0].len, 0);
  p = "/v1/proxy/";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_INT(m.params[0].off, strlen(p));
  CHECK_INT(m.params[0].len, 0);
  p = "/v1/proxy/a//b/";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_STR(bh__pv(&m, p, 0), "a//b/");
  CHECK(bh__find(r, "GET", "/v1/prox", &m) == NULL);
  CHECK(bh__find(r, "GET", "/v1/proxyz/a", &m) == NULL);
  CHECK(bh__find(r, "GET", "/v1", &m) == NULL);

  /* A root wildcard catches everything, "/" included. */
  CHECK_INT(bh__add(r, "GET", "/*", R(2)), 0);
  CHECK(bh__find(r, "GET", "/", &m) == R(2));
  CHECK_INT(m.params[0].off, 1);
  CHECK_INT(m.params[0].len, 0);
  CHECK(bh__find(r, "GET", "/v1", &m) == R(2));
  CHECK_STR(bh__pv(&m, "/v1", 0), "v1");
  CHECK(bh__find(r, "GET", "/v1/proxy/q", &m) == R(1));
  /* ...but "/" itself wins over it. */
  CHECK_INT(bh__add(r, "GET", "/", R(3)), 0);
  CHECK(bh__find(r, "GET", "/", &m) == R(3));
  CHECK_INT(m.nparams, 0);
  bh__router_free(r);
}

static void test_precedence(void) {
  /* Added least specific first: insertion order must not matter. */
  bh__router *r = bh__router_new();
  bh__match m;
  CHECK_INT(bh__add(r, "GET", "/a/*", R(1)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/{x}", R(2)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/b", R(3)), 0);
  CHECK(bh__find(r, "GET", "/a/b", &m) == R(3));
  CHECK_INT(m.nparams, 0);
  CHECK(bh__find(r, "GET", "/a/c", &m) == R(2));
  CHECK_STR(m.params[0].name, "x");
  CHECK(bh__find(r, "GET", "/a/b/c", &m) == R(1));
  CHECK_STR(bh__pv(&m, "/a/b/c", 0), "b/c");
  CHECK(bh__find(r, "GET", "/a", &m) == R(1));
  bh__router_free(r);

  /* Added most specific first. */
  r = bh__router_new();
  CHECK_INT(bh__add(r, "GET", "/a/b", R(3)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/{x}", R(2)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/*", R(1)), 0);
  CHECK(bh__find(r, "GET", "/a/b", &m) == R(3));
  CHECK(bh__find(r, "GET", "/a/c", &m) == R(2));
  CHECK(bh__find(r, "GET", "/a/c/d", &m) == R(1));
  bh__router_free(r);
}

static void test_backtracking(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  CHECK_INT(bh__add(r, "GET", "/a/{x}/c", R(1)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/b/d", R(2)), 0);
  CHECK(bh__find(r, "GET", "/a/b/d", &m) == R(2));
  CHECK_INT(m.nparams, 0);
  /* The literal "b" branch dead-ends; the param branch takes over. */
  const char *p = "/a/b/c";
  CHECK(bh__find(r, "GET", p, &m) == R(1));
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "x");
  CHECK_STR(bh__pv(&m, p, 0), "b");
  CHECK(bh__find(r, "GET", "/a/z/c", &m) == R(1));
  CHECK(bh__find(r, "GET", "/a/z/d", &m) == NULL);

  /* Deeper: literal, then param, then wildcard fallbacks. */
  CHECK_INT(bh__add(r, "GET", "/a/{x}/{y}/e", R(3)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/b/{z}/f", R(4)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/*", R(5)), 0);
  p = "/a/b/q/e";
  CHECK(bh__find(r, "GET", p, &m) == R(3));
  CHECK_INT(m.nparams, 2);
  CHECK_STR(m.params[0].name, "x");
  CHECK_STR(bh__pv(&m, p, 0), "b");
  CHECK_STR(m.params[1].name, "y");
  CHECK_STR(bh__pv(&m, p, 1), "q");
  p = "/a/b/q/f";
  CHECK(bh__find(r, "GET", p, &m) == R(4));
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "z");
  CHECK_STR(bh__pv(&m, p, 0), "q");
  p = "/a/b/q/g";
  CHECK(bh__find(r, "GET", p, &m) == R(5));
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "*");
  CHECK_STR(bh__pv(&m, p, 0), "b/q/g");

  /* Method-aware: a less specific route serving the method wins over a
   * more specific one that does not. */
  CHECK_INT(bh__add(r, "POST", "/a/{x}", R(6)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/k", R(7)), 0);
  CHECK(bh__find(r, "POST", "/a/k", &m) == R(6));
  CHECK(bh__find(r, "GET", "/a/k", &m) == R(7));
  bh__router_free(r);
}

static void test_head_and_405(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  char allow[128];
  CHECK_INT(bh__add(r, "POST", "/items", R(1)), 0);
  CHECK_INT(bh__add(r, "GET", "/items", R(2)), 0);
  CHECK_INT(bh__add(r, "DELETE", "/items/{id}", R(3)), 0);
  CHECK_INT(bh__add(r, "PUT", "/items/{id}", R(4)), 0);
  CHECK_INT(bh__add(r, "HEAD", "/only-head", R(5)), 0);
  CHECK_INT(bh__add(r, "GET", "/both", R(6)), 0);
  CHECK_INT(bh__add(r, "HEAD", "/both", R(7)), 0);
  CHECK_INT(bh__add(r, "PATCH", "/x/*", R(8)), 0);
  CHECK_INT(bh__add(r, "GET", "/x/{id}", R(9)), 0);

  /* HEAD falls back to GET, but a HEAD route of its own wins. */
  CHECK(bh__find(r, "HEAD", "/items", &m) == R(2));
  CHECK(bh__find(r, "HEAD", "/both", &m) == R(7));
  CHECK(bh__find(r, "GET", "/both", &m) == R(6));
  CHECK(bh__find(r, "HEAD", "/only-head", &m) == R(5));
  CHECK(bh__find(r, "HEAD", "/items/1", &m) == NULL);

  memset(allow, 'x', sizeof(allow));
  CHECK_INT(bh__router_match(r, "PATCH", "/items", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "GET, HEAD, POST");
  CHECK(m.route == NULL);
  CHECK_INT(m.nparams, 0);

  CHECK_INT(bh__router_match(r, "GET", "/items/7", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "DELETE, PUT");
  CHECK_INT(bh__router_match(r, "HEAD", "/items/7", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "DELETE, PUT");

  /* An explicit HEAD route without GET. */
  CHECK_INT(bh__router_match(r, "GET", "/only-head", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "HEAD");
  CHECK_INT(bh__router_match(r, "POST", "/both", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "GET, HEAD");

  /* Allow is the union over every route matching the path. */
  CHECK(bh__find(r, "GET", "/x/1", &m) == R(9));
  CHECK(bh__find(r, "PATCH", "/x/1", &m) == R(8));
  CHECK_INT(bh__router_match(r, "PUT", "/x/1", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "GET, HEAD, PATCH");
  CHECK_INT(bh__router_match(r, "PUT", "/x/1/2", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "PATCH");

  /* Unknown path: 404 with an empty Allow. */
  strcpy(allow, "junk");
  CHECK_INT(bh__router_match(r, "GET", "/nope", &m, allow, sizeof(allow)),
            BH__ROUTE_NOT_FOUND);
  CHECK_STR(allow, "");
  /* A method the router never saw still gets 405 on a known path. */
  CHECK_INT(bh__router_match(r, "BREW", "/items", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "GET, HEAD, POST");

  /* Short buffers keep whole names only; NULL is accepted. */
  char small[10];
  CHECK_INT(bh__router_match(r, "PATCH", "/items", &m, small, sizeof(small)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(small, "GET, HEAD");
  CHECK_INT(bh__router_match(r, "PATCH", "/items", &m, small, 3),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(small, "");
  CHECK_INT(bh__router_match(r, "PATCH", "/items", &m, NULL, 0),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  bh__router_free(r);

  /* HEAD sorts after every method the router knows. */
  r = bh__router_new();
  CHECK_INT(bh__add(r, "GET", "/z", R(1)), 0);
  CHECK_INT(bh__add(r, "DELETE", "/z", R(2)), 0);
  CHECK_INT(bh__router_match(r, "POST", "/z", &m, allow, sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "DELETE, GET, HEAD");
  bh__router_free(r);
}

static void test_conflicts(void) {
  bh__router *r = bh__router_new();
  void *conflict = NULL;
  CHECK_INT(bh__add(r, "GET", "/a/{id}", R(1)), 0);
  CHECK_INT(bh__router_add(r, "GET", "/a/{x}", R(2), &conflict), -EEXIST);
  CHECK(conflict == R(1));
  CHECK_INT(bh__router_add(r, "GET", "/a/{id}", R(2), &conflict), -EEXIST);
  CHECK(conflict == R(1));
  /* NULL conflict pointer is allowed. */
  CHECK_INT(bh__router_add(r, "GET", "/a/{id}", R(2), NULL), -EEXIST);
  /* Same pattern, other method; other shapes on the same method. */
  CHECK_INT(bh__add(r, "POST", "/a/{x}", R(3)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/b", R(4)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/*", R(5)), 0);
  CHECK_INT(bh__add(r, "GET", "/a/{id}/*", R(6)), 0);
  CHECK_INT(bh__router_add(r, "GET", "/a/*", R(7), &conflict), -EEXIST);
  CHECK(conflict == R(5));
  CHECK_INT(bh__router_add(r, "GET", "/a/{q}/*", R(7), &conflict), -EEXIST);
  CHECK(conflict == R(6));
  CHECK_INT(bh__router_add(r, "GET", "/a/b", R(7), &conflict), -EEXIST);
  CHECK(conflict == R(4));
  CHECK_INT(bh__router_add(r, "POST", "/a/{zz}", R(7), &conflict), -EEXIST);
  CHECK(conflict == R(3));
  /* The original routes are untouched. */
  bh__match m;
  CHECK(bh__find(r, "GET", "/a/q", &m) == R(1));
  CHECK_STR(m.params[0].name, "id");
  bh__router_free(r);
}

static void test_many_routes(void) {
  bh__router *r = bh__router_new();
  bh__match m;
  static const char *methods[] = {"GET", "POST", "PUT", "DELETE"};
  char pat[64], path[64];
  int ok = 1;
  for (int i = 0; i < 500; i++) {
    for (int j = 0; j < 4; j++) {
      snprintf(pat, sizeof(pat), "/svc%d/items/{id}/op%d", i, j);
      /* The route pointer encodes (i, j) so any mix-up shows. */
      if (bh__add(r, methods[j], pat, R(i * 4 + j)) != 0) ok = 0;
    }
    snprintf(pat, sizeof(pat), "/svc%d/*", i);
    if (bh__add(r, "GET", pat, R(100000 + i)) != 0) ok = 0;
  }
  CHECK(ok);
  char id[16];
  for (int i = 499; i >= 0; i--) {
    for (int j = 0; j < 4; j++) {
      snprintf(id, sizeof(id), "id%d", i);
      snprintf(path, sizeof(path), "/svc%d/items/%s/op%d", i, id, j);
      if (bh__find(r, methods[j], path, &m) != R(i * 4 + j) || m.nparams != 1 ||
          strcmp(bh__pv(&m, path, 0), id) != 0)
        ok = 0;
    }
    snprintf(path, sizeof(path), "/svc%d/items/x/op9", i);
    if (bh__find(r, "GET", path, &m) != R(100000 + i)) ok = 0;
  }
  CHECK_INT(bh__router_match(r, "GET", "/svc500/x", &m, NULL, 0),
            BH__ROUTE_NOT_FOUND);
  char allow[64];
  CHECK_INT(
      bh__router_match(r, "GET", "/svc7/items/1/op1", &m, allow, sizeof(allow)),
      BH__ROUTE_FOUND); /* the wildcard serves GET */
  CHECK_INT(bh__router_match(r, "PATCH", "/svc7/items/1/op1", &m, allow,
                             sizeof(allow)),
            BH__ROUTE_METHOD_NOT_ALLOWED);
  CHECK_STR(allow, "GET, HEAD, POST");
  bh__router_free(r);
}

int main(void) {
  test_pattern_syntax();
  test_literal_and_root();
  test_params();
  test_wildcard();
  test_precedence();
  test_backtracking();
  test_head_and_405();
  test_conflicts();
  test_many_routes();
  return check_finish("test_router");
}
