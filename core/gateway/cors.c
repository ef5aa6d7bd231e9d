/*
 * CORS for the API listener. Each mount has a policy: its [plugin.NAME]
 * cors_* keys, each falling back to the same key of [server]. For an
 * allowed origin every answer carries Access-Control-Allow-Origin (and the
 * credentials and exposed-headers lines), Problems included, or the
 * browser hides the Problem from the page; a preflight is answered here,
 * before the session check and the rate limit, since browsers send it
 * without credentials. A disallowed origin gets no Access-Control-* line
 * and its request is otherwise served as without CORS.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "gateway/composite.h"
#include "gateway/cors.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "http/router.h"
#include "proc/daemon-t.h"

#define BH__CORS_DEFAULT_HEADERS "Authorization, Content-Type, X-Request-ID"
#define BH__CORS_DEFAULT_EXPOSE                                                \
  "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy"
#define BH__CORS_DEFAULT_MAX_AGE 600
#define BH__CORS_MAX_AGE_MAX 86400

typedef struct bh__cors_policy {
  char *name; /* plugin name; NULL for [server] */
  char **origins;
  size_t norigins;
  int any;         /* cors_origins = * */
  int credentials; /* cors_credentials */
  char *headers;   /* "A, B" or "" */
  char *expose;    /* "A, B" or "" */
  uint32_t max_age;
} bh__cors_policy;

struct bh__cors_conf {
  bh__cors_policy server;
  bh__cors_policy *mounts; /* one per [plugin.NAME] */
  size_t nmounts;
};

static int bh__cors_fail(const bh__config *cfg, const char *sec,
                         const char *key, int line, char *err, size_t errlen,
                         const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int bh__cors_fail(const bh__config *cfg, const char *sec,
                         const char *key, int line, char *err, size_t errlen,
                         const char *fmt, ...) {
  if (err == NULL || errlen == 0) return -EINVAL;
  int n;
  char var[128];
  if (line == 0 && bh__config_env_name(var, sizeof var, sec, key))
    n = snprintf(err, errlen, "ENV %s: [%s] %s: ", var, sec, key);
  else if (line > 0)
    n = snprintf(err, errlen, "%s:%d: [%s] %s: ", cfg->source, line, sec, key);
  else
    n = snprintf(err, errlen, "%s: [%s] %s: ", cfg->source, sec, key);
  if (n >= 0 && (size_t)n < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static void bh__cors_policy_free(bh__cors_policy *p) {
  for (size_t i = 0; i < p->norigins; i++)
    free(p->origins[i]);
  free(p->origins);
  free(p->name);
  free(p->headers);
  free(p->expose);
  memset(p, 0, sizeof(*p));
}

void bh__cors_conf_free(bh__cors_conf *c) {
  if (c == NULL) return;
  bh__cors_policy_free(&c->server);
  for (size_t i = 0; i < c->nmounts; i++)
    bh__cors_policy_free(&c->mounts[i]);
  free(c->mounts);
  free(c);
}

/* What a browser sends as Origin: "http" or "https", "://", a host name
 * or [v6] address in lower case, an optional port, nothing after. The
 * entry is lower-cased in place first (host names are case-insensitive). */
static int bh__origin_ok(char *o) {
  for (char *s = o; *s; s++)
    if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
  const char *h = strncmp(o, "https://", 8) == 0  ? o + 8
                  : strncmp(o, "http://", 7) == 0 ? o + 7
                                                  : NULL;
  if (h == NULL || *h == '\0') return 0;
  const char *p = h;
  if (*p == '[') {
    p += strspn(p + 1, "0123456789abcdef:.") + 1;
    if (*p != ']' || p == h + 1) return 0;
    p++;
  } else {
    p += strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-.");
    if (p == h) return 0;
  }
  if (*p == ':') {
    size_t n = strspn(p + 1, "0123456789");
    if (n == 0 || n > 5 || p[1 + n] != '\0' || atoi(p + 1) < 1 ||
        atoi(p + 1) > 65535)
      return 0;
    return 1;
  }
  return *p == '\0';
}

/* Splits a comma/space separated list; calls `each` for every entry. */
typedef int (*bh__cors_each)(void *arg, const char *v, size_t n);
static int bh__cors_list(const char *v, bh__cors_each each, void *arg) {
  const char *p = v;
  for (;;) {
    p += strspn(p, ", \t");
    if (*p == '\0') return 0;
    size_t n = strcspn(p, ", \t");
    int rc = each(arg, p, n);
    if (rc) return rc;
    p += n;
  }
}

static int bh__cors_add_origin(void *arg, const char *v, size_t n) {
  bh__cors_policy *p = arg;
  if (n == 1 && v[0] == '*') {
    p->any = 1;
    return 0;
  }
  char *o = strndup(v, n);
  char **list = realloc(p->origins, (p->norigins + 1) * sizeof(*list));
  if (o == NULL || list == NULL) {
    free(o);
    if (list) p->origins = list;
    return -ENOMEM;
  }
  p->origins = list;
  p->origins[p->norigins++] = o;
  return bh__origin_ok(o) ? 0 : -EINVAL;
}

/* RFC 9110 tchar, without '*': a wildcard means "any" to a browser only
 * without credentials, so we list names. */
static int bh__cors_add_name(void *arg, const char *v, size_t n) {
  bh__buf *b = arg;
  for (size_t i = 0; i < n; i++)
    if (!strchr("!#$%&'+-.^_`|~", v[i]) &&
        !((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
          (v[i] >= '0' && v[i] <= '9')))
      return -EINVAL;
  if (b->len) bh__buf_append(b, ", ", 2);
  bh__buf_append(b, v, n);
  return bh__buf_failed(b) ? -ENOMEM : 0;
}

static int bh__cors_names(const bh__config *cfg, const char *sec,
                          const char *key, int line, const char *v, char **out,
                          char *err, size_t errlen) {
  bh__buf b;
  bh__buf_init(&b);
  int rc = bh__cors_list(v, bh__cors_add_name, &b);
  if (rc == 0) *out = strdup(b.len ? b.data : "");
  bh__buf_free(&b);
  if (rc == -EINVAL)
    return bh__cors_fail(cfg, sec, key, line, err, errlen,
                         "expected a comma-separated list of header names "
                         "such as Authorization, Content-Type");
  if (rc == 0 && *out == NULL) rc = -ENOMEM;
  return rc;
}

/* One section's policy; `def` ([server]'s, or NULL for [server] itself)
 * supplies each key the section does not set. */
static int bh__cors_policy_load(const bh__config *cfg, const char *sec,
                                const bh__cors_policy *def, bh__cors_policy *p,
                                char *err, size_t errlen) {
  int line = -1, oline = -1, cline = -1;
  const char *v = bh__config_get_at(cfg, sec, "cors_origins", &oline);
  if (v) {
    int rc = bh__cors_list(v, bh__cors_add_origin, p);
    if (rc == -EINVAL || (p->any && p->norigins))
      return bh__cors_fail(
          cfg, sec, "cors_origins", oline, err, errlen,
          "expected '*' alone or a comma-separated list of exact origins "
          "such as https://portal.example.com (http or https, host, "
          "optional port, no path)");
    if (rc) return rc;
  } else if (def) {
    p->any = def->any;
    for (size_t i = 0; i < def->norigins; i++)
      if (bh__cors_add_origin(p, def->origins[i], strlen(def->origins[i])))
        return -ENOMEM;
  }

  v = bh__config_get_at(cfg, sec, "cors_credentials", &cline);
  if (v) {
    int b = bh__config_bool(v);
    if (b < 0)
      return bh__cors_fail(cfg, sec, "cors_credentials", cline, err, errlen,
                           "expected true/false, yes/no, on/off or 1/0");
    p->credentials = b;
  } else if (def) {
    p->credentials = def->credentials;
  }
  if (p->any && p->credentials)
    return bh__cors_fail(
        cfg, sec, v ? "cors_credentials" : "cors_origins", v ? cline : oline,
        err, errlen,
        "cors_origins = * together with cors_credentials = true would let "
        "any site read answers made with its visitors' cookies; list the "
        "exact origins instead");

  static const struct {
    const char *key, *dflt;
    size_t off;
  } lists[] = {
      {"cors_headers", BH__CORS_DEFAULT_HEADERS,
       offsetof(bh__cors_policy, headers)},
      {"cors_expose", BH__CORS_DEFAULT_EXPOSE,
       offsetof(bh__cors_policy, expose)},
  };
  for (size_t i = 0; i < 2; i++) {
    char **field = (char **)((char *)p + lists[i].off);
    v = bh__config_get_at(cfg, sec, lists[i].key, &line);
    if (v == NULL)
      v = def ? *(char *const *)((const char *)def + lists[i].off)
              : lists[i].dflt;
    int rc =
        bh__cors_names(cfg, sec, lists[i].key, line, v, field, err, errlen);
    if (rc) return rc;
  }

  p->max_age = def ? def->max_age : BH__CORS_DEFAULT_MAX_AGE;
  v = bh__config_get_at(cfg, sec, "cors_max_age", &line);
  if (v) {
    size_t n = strspn(v, "0123456789");
    long age = n && n < 7 && v[n] == '\0' ? strtol(v, NULL, 10) : -1;
    if (age < 0 || age > BH__CORS_MAX_AGE_MAX)
      return bh__cors_fail(cfg, sec, "cors_max_age", line, err, errlen,
                           "expected a number of seconds between 0 and %d",
                           BH__CORS_MAX_AGE_MAX);
    p->max_age = (uint32_t)age;
  }
  return 0;
}

static int bh__cors_on(const bh__cors_policy *p) {
  return p->any || p->norigins > 0;
}

int bh__cors_conf_load(const bh__config *cfg, bh__cors_conf **out, char *err,
                       size_t errlen) {
  *out = NULL;
  bh__cors_conf *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  int rc = bh__cors_policy_load(cfg, "server", NULL, &c->server, err, errlen);
  int on = rc == 0 && bh__cors_on(&c->server);
  if (rc == 0 && cfg->nplugins &&
      !(c->mounts = calloc(cfg->nplugins, sizeof(*c->mounts))))
    rc = -ENOMEM;
  for (size_t i = 0; rc == 0 && i < cfg->nplugins; i++) {
    char sec[64];
    snprintf(sec, sizeof sec, "plugin.%s", cfg->plugins[i].name);
    bh__cors_policy *p = &c->mounts[c->nmounts++];
    if (!(p->name = strdup(cfg->plugins[i].name))) rc = -ENOMEM;
    if (rc == 0)
      rc = bh__cors_policy_load(cfg, sec, &c->server, p, err, errlen);
    if (rc == 0 && bh__cors_on(p)) on = 1;
  }
  if (rc == -ENOMEM && err && errlen)
    snprintf(err, errlen, "%s: CORS policies: out of memory", cfg->source);
  if (rc || !on) {
    bh__cors_conf_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* ---- the request path -------------------------------------------------- */

static const bh__cors_policy *bh__cors_policy_for(bh_req *req) {
  const bh__cors_conf *c = req->d->cfg->cors;
  if (c == NULL) return NULL;
  const bh__cors_policy *p = &c->server;
  for (size_t i = 0; req->plugin && i < c->nmounts; i++)
    if (strcmp(c->mounts[i].name, req->plugin->name) == 0) p = &c->mounts[i];
  return bh__cors_on(p) ? p : NULL;
}

/* The allowed origin as it is to be echoed ("*" for any), or NULL. */
static const char *bh__cors_allowed(const bh__cors_policy *p,
                                    const char *origin) {
  if (origin == NULL) return NULL;
  if (p->any) return "*";
  for (size_t i = 0; i < p->norigins; i++)
    if (strcasecmp(origin, p->origins[i]) == 0) return p->origins[i];
  return NULL;
}

/* Vary and, for an allowed origin, the lines both kinds of answer carry. */
static const char *bh__cors_common(bh_req *req, const bh__cors_policy *p) {
  bh__buf *b = &req->cors;
  bh__buf_reset(b);
  /* with a list, the answer depends on Origin: caches must key on it */
  if (!p->any) bh__buf_puts(b, "Vary: Origin\r\n");
  const char *allowed = bh__cors_allowed(p, bh__req_header(req, "origin"));
  if (allowed == NULL) return NULL;
  bh__buf_printf(b, "Access-Control-Allow-Origin: %s\r\n", allowed);
  if (p->credentials)
    bh__buf_puts(b, "Access-Control-Allow-Credentials: true\r\n");
  return allowed;
}

void bh__cors_head(bh_req *req) {
  const bh__cors_policy *p = bh__cors_policy_for(req);
  if (p == NULL) return;
  req->cors_on = 1;
  if (bh__cors_common(req, p) && p->expose[0])
    bh__buf_printf(&req->cors, "Access-Control-Expose-Headers: %s\r\n",
                   p->expose);
}

int bh__cors_preflight(bh_req *req) {
  if (strcmp(req->method, "OPTIONS") != 0 ||
      bh__req_header(req, "origin") == NULL ||
      bh__req_header(req, "access-control-request-method") == NULL)
    return 0;
  const bh__cors_policy *p = bh__cors_policy_for(req);
  if (p == NULL) return 0;
  /* The methods the route table serves at this path: a method no route
   * can have (a space) makes the router list them. */
  bh__match m;
  char allow[sizeof(req->allow)];
  if (bh__router_match(req->d->router, " ", req->path, &m, allow,
                       sizeof allow) == BH__ROUTE_NOT_FOUND) {
    /* a composite route is the core's, not in the route table */
    const char *cm = bh__composite_method(req->d, req->path);
    if (cm == NULL)
      return 0; /* nothing here: the 404 Problem, with the CORS lines */
    snprintf(allow, sizeof allow, "%s", cm);
  }
  char extra[sizeof(allow) + 64];
  if (bh__cors_common(req, p) == NULL) {
    /* not an allowed origin: a plain answer, without Access-Control-* */
    snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    bh__respond(req, 204, NULL, NULL, 0, extra);
    return 1;
  }
  bh__buf *b = &req->cors;
  bh__buf_printf(b, "Access-Control-Allow-Methods: %s\r\n", allow);
  if (p->headers[0])
    bh__buf_printf(b, "Access-Control-Allow-Headers: %s\r\n", p->headers);
  bh__buf_printf(b, "Access-Control-Max-Age: %u\r\n", p->max_age);
  bh__respond(req, 204, NULL, NULL, 0, NULL);
  return 1;
}
