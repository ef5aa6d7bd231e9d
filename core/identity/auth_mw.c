/*
 * The session middleware: runs before the handler of every route flagged
 * BH_ROUTE_AUTH_REQUIRED and decides who the caller is.
 *
 *   Authorization: Bearer <jwt>  verified in memory; refused -> 401
 *   <api key header>             looked up in the store (its thread)
 *   session cookie               verified in memory; unsafe methods must
 *                                pass the Origin / Sec-Fetch-Site check
 *   expired or missing session cookie + refresh cookie
 *                                rotated in the store (silent refresh): new
 *                                cookies on this very response, then the
 *                                handler runs as if nothing happened
 *   nothing valid                401 Problem for API clients; a browser
 *                                navigation gets 302 to the login page
 *
 * A valid access token costs no I/O at all: the identity provider and the
 * store may both be down and logged-in users keep working. Its session
 * must not be in the revoked-session set (auth_revoked.c: shared memory,
 * no lock), so a logout ends its access tokens at once.
 *
 * Cookie names: __Host-session / __Host-refresh with cookie_secure (the
 * prefix makes browsers refuse them unless Secure, Path=/ and without
 * Domain, so a sibling subdomain cannot plant one), __session / __refresh
 * without (plain-http development). A Cookie header (or several) naming
 * one of them twice is refused as 401 auth.ambiguous_credentials: which
 * copy is ours cannot be told, and trying each would let a planted cookie
 * pick the session.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "config/config.h"
#include "config/loader.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "identity/auth.h"
#include "identity/store.h"
#include "identity/store_ops.h"
#include "obs/telemetry.h"
#include "proc/daemon-t.h"

#define BH__COOKIE_SESSION "__session"
#define BH__COOKIE_REFRESH "__refresh"
#define BH__COOKIE_HOST_SESSION "__Host-session"
#define BH__COOKIE_HOST_REFRESH "__Host-refresh"
/* Cookies outlive their tokens by a week, so an expired refresh token is
 * still presented and the answer can say "session expired" rather than
 * "who are you". */
#define BH__COOKIE_EXTRA_S (7 * 86400)
#define BH__MAX_TOKEN 4096

const bh_principal *bh__auth_principal(bh_req *req) {
  return req->authn ? &req->authn->p : NULL;
}

/* snprintf("%s") without printf: this runs on every authenticated
 * request. Truncates to size - 1 bytes, always terminated; the length. */
static size_t bh__copy_field(char *dst, size_t size, const char *src) {
  size_t n = strnlen(src, size - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
  return n;
}

/* "<prefix><value>" into line (size bytes, the prefix fits): its length */
static uint16_t bh__id_line(char *line, size_t size, const char *prefix,
                            size_t pl, const char *v) {
  memcpy(line, prefix, pl);
  return (uint16_t)(pl + bh__copy_field(line + pl, size - pl, v));
}

/* The principal's fields and the identity lines into a (not its p). */
static void bh__authn_fill(bh__authn *a, const char *user, const char *sid,
                           const char *scopes, const char *key_id) {
  a->user_len = bh__id_line(a->user_line, sizeof(a->user_line), BH__IDL_USER,
                            BH__IDL_USER_N, user ? user : "");
  a->scopes_len =
      bh__id_line(a->scopes_line, sizeof(a->scopes_line), BH__IDL_SCOPES,
                  BH__IDL_SCOPES_N, scopes ? scopes : "");
  /* a value the core sets from its own state goes upstream only without
   * control bytes (refused at the source; this keeps a header line one
   * line whatever changes there) */
  a->send_user = !bh__cfg_has_ctl(a->user_line + BH__IDL_USER_N);
  a->send_scopes = a->scopes_len > BH__IDL_SCOPES_N &&
                   !bh__cfg_has_ctl(a->scopes_line + BH__IDL_SCOPES_N);
  bh__copy_field(a->session_id, sizeof(a->session_id), sid ? sid : "");
  bh__copy_field(a->key_id, sizeof(a->key_id), key_id ? key_id : "");
}

/* a (filled) becomes req's caller. */
static bh__authn *bh__authn_attach(bh_req *req, bh__authn *a, int kind,
                                   int64_t exp) {
  memset(&a->p, 0, sizeof(a->p));
  a->p.size = sizeof(a->p);
  a->p.kind = kind;
  a->p.user_id = a->user_line + BH__IDL_USER_N;
  a->p.session_id = a->session_id;
  a->p.scopes = a->scopes_line + BH__IDL_SCOPES_N;
  a->p.key_id = a->key_id;
  a->p.expires_at = exp;
  req->authn = a;
  req->principal_id = a->p.user_id; /* rate limits keyed by principal */
  return a;
}

/* Every field bh__authn_fill writes is written before it is read: no
 * zeroing of the ~800 bytes per request. The block is the request's own
 * (authn_mem, freed or kept with it). */
static bh__authn *bh__authn_get(bh_req *req) {
  if (req->authn) return req->authn;
  /* the block a reused request kept (http/request.c) */
  if (req->authn_mem == NULL) req->authn_mem = malloc(sizeof(bh__authn));
  return req->authn_mem;
}

static bh__authn *bh__authn_set(bh_req *req, int kind, const char *user,
                                const char *sid, const char *scopes,
                                const char *key_id, int64_t exp) {
  bh__authn *a = bh__authn_get(req);
  if (a == NULL) return NULL;
  bh__authn_fill(a, user, sid, scopes, key_id);
  return bh__authn_attach(req, a, kind, exp);
}

/* What every hit of a cached token would recompute, built once at insert
 * (the token cache's prep callback): the revoked-set key of its session,
 * and the principal's fields as bh__authn_fill renders them. */
typedef struct bh__authn_pre {
  uint64_t sid_key[2];
  uint8_t has_sid, send_user, send_scopes;
  uint16_t user_len, scopes_len, sid_len;
  char text[]; /* user line, scopes line, session id: each NUL-terminated */
} bh__authn_pre;

size_t bh__authn_prep(const bh__claims *c, void *out, size_t room) {
  bh__authn a;
  bh__authn_fill(&a, c->sub, c->sid, c->scope, NULL);
  size_t sl = strlen(a.session_id);
  size_t need = sizeof(bh__authn_pre) + a.user_len + a.scopes_len + sl + 3;
  if (need > room) return 0;
  bh__authn_pre *p = out;
  p->has_sid = c->sid[0] != '\0';
  if (p->has_sid) bh__revoked_key(c->sid, p->sid_key);
  p->send_user = a.send_user;
  p->send_scopes = a.send_scopes;
  p->user_len = a.user_len;
  p->scopes_len = a.scopes_len;
  p->sid_len = (uint16_t)sl;
  char *t = p->text;
  memcpy(t, a.user_line, a.user_len + 1u);
  t += a.user_len + 1u;
  memcpy(t, a.scopes_line, a.scopes_len + 1u);
  t += a.scopes_len + 1u;
  memcpy(t, a.session_id, sl + 1);
  return need;
}

/* bh__authn_set from a cached token's prebuilt fields: three copies of
 * known length instead of rendering them again. */
static bh__authn *bh__authn_set_pre(bh_req *req, int kind,
                                    const bh__authn_pre *p, int64_t exp) {
  bh__authn *a = bh__authn_get(req);
  if (a == NULL) return NULL;
  const char *t = p->text;
  memcpy(a->user_line, t, p->user_len + 1u);
  t += p->user_len + 1u;
  memcpy(a->scopes_line, t, p->scopes_len + 1u);
  t += p->scopes_len + 1u;
  memcpy(a->session_id, t, p->sid_len + 1u);
  a->key_id[0] = '\0';
  a->user_len = p->user_len;
  a->scopes_len = p->scopes_len;
  a->send_user = p->send_user;
  a->send_scopes = p->send_scopes;
  return bh__authn_attach(req, a, kind, exp);
}

int bh__authn_copy(bh_req *to, const bh_req *from) {
  const bh__authn *a = from->authn;
  if (a == NULL) return -ENOENT;
  return bh__authn_set(to, a->p.kind, a->p.user_id, a->session_id, a->p.scopes,
                       a->key_id[0] ? a->key_id : NULL, a->p.expires_at)
             ? 0
             : -ENOMEM;
}

/* ---------------------------------------------------------------------- */
/* Cookies                                                                 */
/* ---------------------------------------------------------------------- */

const char *bh__cookie_name(int refresh) {
  bh__auth *a = bh__auth_get();
  int host = a && a->conf->cookie_secure;
  return refresh ? (host ? BH__COOKIE_HOST_REFRESH : BH__COOKIE_REFRESH)
                 : (host ? BH__COOKIE_HOST_SESSION : BH__COOKIE_SESSION);
}

int bh__cookie_scan(const char *s, const char *name, const char **value,
                    size_t *vlen) {
  size_t nl = strlen(name);
  int found = 0;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == ';')
      s++;
    const char *eq = strchr(s, '=');
    const char *end = s + strcspn(s, ";");
    const char *ne = eq && eq < end ? eq : end;
    while (ne > s && (ne[-1] == ' ' || ne[-1] == '\t'))
      ne--;
    if (eq && eq < end && (size_t)(ne - s) == nl && memcmp(s, name, nl) == 0) {
      const char *v = eq + 1;
      while (v < end && (*v == ' ' || *v == '\t'))
        v++;
      size_t vl = (size_t)(end - v);
      while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
      if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') v++, vl -= 2;
      if (found++ == 0) {
        *value = v;
        *vlen = vl;
      }
    }
    s = end;
  }
  return found;
}

int bh__cookie_get(bh_req *req, const char *name, char *out, size_t outlen) {
  const char *v = NULL;
  size_t vl = 0;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    if (strcmp(req->headers[i].name, "cookie") != 0) continue;
    const char *hv;
    size_t hl;
    int n = bh__cookie_scan(req->headers[i].value, name, &hv, &hl);
    if (n && found == 0) v = hv, vl = hl;
    found += n;
  }
  if (found > 1) return -EEXIST;             /* which one is ours? neither */
  if (found == 0 || vl == 0) return -ENOENT; /* none, or a cleared one */
  if (vl >= outlen) return -ENOSPC;
  memcpy(out, v, vl);
  out[vl] = '\0';
  return 0;
}

static void bh__cookie_line(bh__buf *b, const bh__auth_conf *c,
                            const char *name, const char *value, long age) {
  bh__buf_printf(b,
                 "Set-Cookie: %s=%s; Path=/; Max-Age=%ld; HttpOnly;%s "
                 "SameSite=Lax\r\n",
                 name, value ? value : "", value ? age : 0L,
                 c->cookie_secure ? " Secure;" : "");
}

void bh__cookies_set(bh_req *req, const char *access, const char *refresh) {
  bh__auth *a = bh__auth_get();
  if (a == NULL) return;
  long age = (long)a->conf->refresh_ttl_s + BH__COOKIE_EXTRA_S;
  bh__cookie_line(&req->resp_headers, a->conf, bh__cookie_name(0), access, age);
  bh__cookie_line(&req->resp_headers, a->conf, bh__cookie_name(1), refresh,
                  age);
}

/* ---------------------------------------------------------------------- */
/* Request shape                                                           */
/* ---------------------------------------------------------------------- */

static int bh__safe_method(const char *m) {
  return m && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ||
               strcmp(m, "OPTIONS") == 0 || strcmp(m, "TRACE") == 0);
}

double bh__accept_q(const char *accept, const char *type) {
  double best = 0;
  size_t tl = strlen(type);
  for (const char *s = accept; *s;) {
    while (*s == ' ' || *s == ',')
      s++;
    const char *end = s + strcspn(s, ",");
    const char *semi = memchr(s, ';', (size_t)(end - s));
    const char *te = semi ? semi : end;
    while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
      te--;
    if ((size_t)(te - s) == tl && strncasecmp(s, type, tl) == 0) {
      double q = 1.0;
      for (const char *p = semi; p != NULL;) {
        const char *x = p + 1;
        while (x < end && (*x == ' ' || *x == '\t'))
          x++;
        if (x + 1 < end && (x[0] == 'q' || x[0] == 'Q') && x[1] == '=')
          q = strtod(x + 2, NULL);
        p = memchr(x, ';', (size_t)(end - x));
      }
      if (q > best) best = q;
    }
    s = end;
  }
  return best;
}

/* A browser navigating (a page load, not fetch()): GET whose Accept
 * prefers HTML, or any GET the browser marks as a navigation. */
static int bh__browser_nav(bh_req *req) {
  if (!req->method ||
      (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")))
    return 0;
  const char *mode = bh__req_header(req, "sec-fetch-mode");
  if (mode && strcasecmp(mode, "navigate") == 0) return 1;
  const char *acc = bh__req_header(req, "accept");
  if (acc == NULL) return 0;
  double html = bh__accept_q(acc, "text/html");
  double xhtml = bh__accept_q(acc, "application/xhtml+xml");
  double json = bh__accept_q(acc, "application/json");
  double pjson = bh__accept_q(acc, "application/problem+json");
  if (xhtml > html) html = xhtml;
  if (pjson > json) json = pjson;
  return html > 0 && html > json;
}

int bh__csrf_check(bh_req *req) {
  if (bh__safe_method(req->method)) return 0;
  bh__auth *a = bh__auth_get();
  const char *origin = bh__req_header(req, "origin");
  if (origin && strcmp(origin, "null") != 0) {
    for (size_t i = 0; a && i < a->conf->norigins; i++)
      if (strcasecmp(origin, a->conf->origins[i]) == 0) return 0;
    /* same origin: the page came from this very host */
    const char *host = bh__req_header(req, "host");
    const char *oh = strncasecmp(origin, "https://", 8) == 0  ? origin + 8
                     : strncasecmp(origin, "http://", 7) == 0 ? origin + 7
                                                              : NULL;
    if (host && oh && strcasecmp(oh, host) == 0) return 0;
    return -EPERM;
  }
  const char *site = bh__req_header(req, "sec-fetch-site");
  if (site) return strcasecmp(site, "same-origin") == 0 ? 0 : -EPERM;
  /* cookies without either header: not a browser request we can vouch
   * for; such clients use Authorization: Bearer or an API key */
  return -EPERM;
}

/* ---------------------------------------------------------------------- */
/* Answers                                                                 */
/* ---------------------------------------------------------------------- */

static void bh__pct(bh__buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~' || c == '/') {
      bh__buf_putc(b, (char)c);
    } else {
      bh__buf_putc(b, '%');
      bh__buf_putc(b, hex[c >> 4]);
      bh__buf_putc(b, hex[c & 15]);
    }
  }
}

static void bh__log_refusal(bh_req *req, const char *code, const char *why) {
  bh__logline l;
  bh__log_begin(&l, BH__DEBUG, "auth_refused");
  bh__log_str(&l, "requestId", req->id);
  bh__log_str(&l, "code", code);
  bh__log_str(&l, "reason", why);
  bh__log_end(&l);
}

/* Refuses the request: 302 to the login page for a browser navigation,
 * else the Problem for `code`. clear: also expire both cookies. */
static void bh__deny(bh_req *req, const char *code, int clear,
                     const char *why) {
  bh__log_refusal(req, code, why);
  if (clear) bh__cookies_set(req, NULL, NULL);
  int auth_code = strcmp(code, "auth.unauthenticated") == 0 ||
                  strcmp(code, "auth.session_expired") == 0 ||
                  strcmp(code, "auth.session_revoked") == 0;
  if (auth_code && bh__browser_nav(req)) {
    bh__buf loc;
    bh__buf_init(&loc);
    bh__buf_puts(&loc, "Location: ");
    bh__buf_puts(&loc, req->d->cfg->login_page);
    bh__buf_putc(&loc, strchr(req->d->cfg->login_page, '?') ? '&' : '?');
    if (strcmp(code, "auth.session_expired") == 0) {
      bh__buf_puts(&loc, "reason=session_expired");
    } else if (strcmp(code, "auth.session_revoked") == 0) {
      bh__buf_puts(&loc, "reason=session_revoked");
    } else {
      /* back to where the user was, but only ever on this site: a path
       * that a browser would read as another host becomes "/" */
      const char *p = req->path;
      int local = p && p[0] == '/' && p[1] != '/' && p[1] != '\\' &&
                  strlen(p) + strlen(req->query) < 2048;
      bh__buf_puts(&loc, "redirect=");
      if (local) {
        bh__pct(&loc, p);
        if (req->query[0]) {
          bh__buf_puts(&loc, "%3F");
          bh__pct(&loc, req->query);
        }
      } else {
        bh__buf_puts(&loc, "%2F");
      }
    }
    bh__buf_puts(&loc, "\r\nCache-Control: no-store\r\n");
    if (!bh__buf_failed(&loc)) {
      req->code = code;
      bh__respond(req, 302, "text/plain; charset=utf-8", "", 0, loc.data);
      bh__buf_free(&loc);
      return;
    }
    bh__buf_free(&loc);
  }
  if (strcmp(code, "auth.token_expired") == 0)
    /* RFC 6750 3.1: the client can tell "refresh now" from "sign in" */
    bh__buf_puts(&req->resp_headers,
                 "WWW-Authenticate: Bearer error=\"invalid_token\", "
                 "error_description=\"expired\"\r\n");
  else if (auth_code || strcmp(code, "auth.ambiguous_credentials") == 0)
    bh__buf_puts(&req->resp_headers,
                 "WWW-Authenticate: Bearer realm=\"bulkhead\"\r\n");
  bh__respond_code(req, code);
}

/* ---------------------------------------------------------------------- */
/* Asynchronous checks: API keys and silent refresh                        */
/* ---------------------------------------------------------------------- */

enum { BH__MW_APIKEY = 1, BH__MW_REFRESH = 2 };

typedef struct bh__mwjob {
  bh__sjob job;
  bh_req *req;
  void (*resume)(bh_req *req); /* the rest of the request path */
  int kind;
  char
      cred[BH__APIKEY_MAX > BH__REFRESH_MAX ? BH__APIKEY_MAX : BH__REFRESH_MAX];
  int64_t now, ttl, grace;
  int rc;
  bh__sess sess;
  bh__keyrec key;
  char *access; /* signed on the store thread */
  int64_t access_exp;
} bh__mwjob;

static void bh__mw_work(bh__sconn *db, bh__sjob *sj) {
  bh__mwjob *j = (bh__mwjob *)sj;
  if (j->kind == BH__MW_APIKEY)
    j->rc = bh__op_apikey_auth(db, j->cred, j->now, &j->key);
  else
    j->rc =
        bh__op_session_refresh(db, j->cred, j->now, j->ttl, j->grace, &j->sess);
  if (j->kind == BH__MW_REFRESH && j->rc == BH__RT_OK) {
    j->access = bh__auth_issue(j->sess.user_id, j->sess.session_id,
                               j->sess.scopes, j->now, &j->access_exp);
    if (j->access == NULL) j->rc = BH__RT_ERROR;
  }
}

static void bh__mw_refreshed(bh_req *req, bh__mwjob *j) {
  switch (j->rc) {
  case BH__RT_OK:
    bh__cookies_set(req, j->access, j->sess.refresh);
    /* whatever the handler answers carries credentials: never cached */
    bh__buf_puts(&req->resp_headers, "Cache-Control: no-store\r\n");
    if (!bh__authn_set(req, BH_AUTH_COOKIE, j->sess.user_id, j->sess.session_id,
                       j->sess.scopes, NULL, j->access_exp)) {
      bh__respond_code(req, "generic.internal");
      return;
    }
    j->resume(req);
    return;
  case BH__RT_GRACE:
    /* a concurrent request rotated this token a moment ago and its answer
     * carries the new cookies: serve this one without new ones */
    if (!bh__authn_set(req, BH_AUTH_COOKIE, j->sess.user_id, j->sess.session_id,
                       j->sess.scopes, NULL, 0)) {
      bh__respond_code(req, "generic.internal");
      return;
    }
    j->resume(req);
    return;
  case BH__RT_EXPIRED:
    bh__deny(req, "auth.session_expired", 1, "refresh token expired");
    return;
  case BH__RT_REUSED:
    bh__auth_revoked(j->sess.session_id);
    bh__logf(BH__WARN, "refresh_reuse",
             "request %s: a spent refresh token was presented again; "
             "session %s revoked",
             req->id, j->sess.session_id);
    bh__deny(req, "auth.session_revoked", 1, "refresh token reused");
    return;
  case BH__RT_REVOKED:
    bh__deny(req, "auth.session_revoked", 1, "session revoked");
    return;
  case BH__RT_UNKNOWN:
    bh__deny(req, "auth.unauthenticated", 1, "unknown refresh token");
    return;
  default: bh__respond_code(req, "auth.session_store_unavailable");
  }
}

static void bh__mw_done(bh__sjob *sj) {
  bh__mwjob *j = (bh__mwjob *)sj;
  bh_req *req = j->req;
  /* answered meanwhile (deadline) or the client left: nothing to do */
  if (!req->answered && bh__req_live(req)) {
    if (j->kind == BH__MW_REFRESH) {
      bh__mw_refreshed(req, j);
    } else if (j->rc == 0) {
      if (bh__authn_set(req, BH_AUTH_API_KEY, j->key.user_id, NULL,
                        j->key.scopes, j->key.id, 0))
        j->resume(req);
      else
        bh__respond_code(req, "generic.internal");
    } else if (j->rc == -ENOENT) {
      bh__log_refusal(req, "auth.unauthenticated",
                      "unknown or revoked API key");
      bh__buf_puts(&req->resp_headers,
                   "WWW-Authenticate: Bearer realm=\"bulkhead\"\r\n");
      bh__respond_code(req, "auth.unauthenticated");
    } else {
      bh__respond_code(req, "auth.session_store_unavailable");
    }
  }
  bh__req_unref(req);
  if (j->access) {
    sodium_memzero(j->access, strlen(j->access));
    free(j->access);
  }
  sodium_memzero(j, sizeof(*j));
  free(j);
}

static int bh__mw_submit(bh_req *req, bh__auth *a, int kind, const char *cred,
                         void (*resume)(bh_req *req)) {
  if (a->store == NULL) {
    bh__respond_code(req, "auth.session_store_unavailable");
    return -1;
  }
  bh__mwjob *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    bh__respond_code(req, "generic.internal");
    return -1;
  }
  j->job.work = bh__mw_work;
  j->job.done = bh__mw_done;
  j->req = req;
  j->resume = resume;
  j->kind = kind;
  snprintf(j->cred, sizeof(j->cred), "%s", cred);
  j->now = bh__store_now();
  j->ttl = a->conf->refresh_ttl_s;
  j->grace = a->conf->refresh_grace_s;
  req->refs++;
  if (bh__store_submit(a->store, &j->job) != 0) {
    req->refs--;
    free(j);
    bh__respond_code(req, "auth.session_store_unavailable");
    return -1;
  }
  /* the store is another compartment: the route's deadline covers it */
  bh__req_deadline(req, req->route->timeout_ms);
  return 1;
}

/* ---------------------------------------------------------------------- */
/* The check                                                               */
/* ---------------------------------------------------------------------- */

/* *pre: the token's prebuilt fields when it is (now) cached, else NULL */
static int bh__verify(bh__auth *a, bh_req *req, const char *token, int64_t now,
                      bh__claims *cl, const bh__authn_pre **pre) {
  const void *p = NULL;
  if (a->tokens == NULL) {
    *pre = NULL;
    return bh__jwt_verify_pre(&a->keys, NULL, token, now, cl, &p);
  }
  /* the cache's own counters tell whether this lookup hit or missed */
  uint64_t h0, m0, h1, m1;
  uint32_t n;
  bh__jwt_cache_stats(a->tokens, &h0, &m0, &n);
  int rc = bh__jwt_verify_pre(&a->keys, a->tokens, token, now, cl, &p);
  bh__jwt_cache_stats(a->tokens, &h1, &m1, &n);
  if (h1 != h0 || m1 != m0) bh__metrics_token_cache(req->d, h1 != h0);
  *pre = p;
  return rc;
}

/* The verified token's caller into req, from its prebuilt fields when it
 * has them. NULL: no memory. */
static bh__authn *bh__authn_token(bh_req *req, int kind, const bh__claims *cl,
                                  const bh__authn_pre *pre) {
  return pre ? bh__authn_set_pre(req, kind, pre, cl->exp)
             : bh__authn_set(req, kind, cl->sub, cl->sid, cl->scope, NULL,
                             cl->exp);
}

const char *bh__bearer_token(const char *authz) {
  if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0) return NULL;
  const char *tok = authz + 7;
  while (*tok == ' ')
    tok++;
  return tok;
}

/* A verified token whose session was revoked since it was issued: the
 * code to refuse it with, or NULL when it stands. pre: the token's
 * prebuilt fields (its session's key computed once), or NULL. */
static const char *bh__revoked_code(const bh__claims *cl,
                                    const bh__authn_pre *pre, int64_t now) {
  int r = pre ? bh__revoked_check_key(pre->has_sid ? pre->sid_key : NULL,
                                      cl->iat, now)
              : bh__revoked_check(cl->sid, cl->iat, now);
  switch (r) {
  case BH__REVOKED: return "auth.session_revoked";
  case BH__REVOKED_UNSURE: return "auth.session_expired";
  default: return NULL;
  }
}

int bh__auth_session_of(bh_req *req, char *sid, size_t n) {
  bh__auth *a = bh__auth_get();
  if (a == NULL) return -ENOENT;
  int64_t now = bh__store_now();
  bh__claims cl;
  const char *tok = bh__bearer_token(bh__req_header(req, "authorization"));
  static char ctok[BH__MAX_TOKEN]; /* the loop thread's */
  int from_cookie = 0;
  if (tok == NULL) {
    int rc = bh__cookie_get(req, bh__cookie_name(0), ctok, sizeof(ctok));
    if (rc) return rc == -EEXIST ? rc : -ENOENT;
    tok = ctok;
    from_cookie = 1;
  }
  const bh__authn_pre *pre;
  if (bh__verify(a, req, tok, now, &cl, &pre) != BH__JWT_OK ||
      cl.sid[0] == '\0')
    return -ENOENT;
  if (from_cookie && bh__csrf_check(req) != 0) return -EPERM;
  snprintf(sid, n, "%s", cl.sid);
  return 0;
}

int bh__auth_check(bh_req *req, const bh__auth_next *next) {
  bh__auth *a = bh__auth_get();
  if (a == NULL) {
    /* no keys in this process (-t, or a failed start): fail closed */
    bh__deny(req, "auth.unauthenticated", 0, "authentication not configured");
    return -1;
  }
  int64_t now = bh__store_now();
  bh__claims cl;
  const char *authz = bh__req_header(req, "authorization");
  if (authz) {
    const char *tok = bh__bearer_token(authz);
    if (tok == NULL) {
      bh__deny(req, "auth.unauthenticated", 0, "not a bearer credential");
      return -1;
    }
    const bh__authn_pre *pre;
    int rc = bh__verify(a, req, tok, now, &cl, &pre);
    if (rc != BH__JWT_OK) {
      /* the verifier says "expired" only of a token that is otherwise
       * good (signature and every other claim): only that one may read
       * differently from no token at all */
      bh__deny(req,
               rc == BH__JWT_EXPIRED ? "auth.token_expired"
                                     : "auth.unauthenticated",
               0, bh__jwt_strerror(rc));
      return -1;
    }
    const char *revoked = bh__revoked_code(&cl, pre, now);
    if (revoked) {
      bh__deny(req, revoked, 0, "session revoked");
      return -1;
    }
    if (!bh__authn_token(req, BH_AUTH_BEARER, &cl, pre)) {
      bh__respond_code(req, "generic.internal");
      return -1;
    }
    return 0;
  }
  const char *key = bh__req_header(req, a->conf->api_key_header);
  if (key) {
    if (*key == '\0' || strlen(key) >= BH__APIKEY_MAX) {
      bh__deny(req, "auth.unauthenticated", 0, "malformed API key");
      return -1;
    }
    /* the address pays before the lookup (the gateway's gate): invalid-key
     * floods are limited and cost no store work past the limit */
    if (next->gate && next->gate(req) != 0) return -1;
    return bh__mw_submit(req, a, BH__MW_APIKEY, key, next->resume);
  }
  static char tok[BH__MAX_TOKEN]; /* the loop thread's: one check at a time */
  char refresh[BH__REFRESH_MAX];
  int src = bh__cookie_get(req, bh__cookie_name(0), tok, sizeof(tok));
  int rrc = bh__cookie_get(req, bh__cookie_name(1), refresh, sizeof(refresh));
  if (src == -EEXIST || rrc == -EEXIST) {
    bh__deny(req, "auth.ambiguous_credentials", 0,
             "a session cookie appears twice");
    return -1;
  }
  int has_session = src == 0;
  int has_refresh = rrc == 0;
  const char *why = "no credentials";
  const char *revoked = NULL;
  if (has_session) {
    const bh__authn_pre *pre;
    int rc = bh__verify(a, req, tok, now, &cl, &pre);
    if (rc == BH__JWT_OK &&
        (revoked = bh__revoked_code(&cl, pre, now)) == NULL) {
      if (bh__csrf_check(req) != 0) {
        bh__deny(req, "auth.csrf_rejected", 0, "origin check failed");
        return -1;
      }
      if (!bh__authn_token(req, BH_AUTH_COOKIE, &cl, pre)) {
        bh__respond_code(req, "generic.internal");
        return -1;
      }
      return 0;
    }
    why = revoked ? "session revoked" : bh__jwt_strerror(rc);
  }
  /* a revoked session's refresh token is refused by the store, which
   * then says so; an unsure one (the set overflowed) is refreshed */
  if (has_refresh) {
    if (req->route->flags & BH_ROUTE_NO_AUTO_REFRESH) {
      bh__deny(req, revoked ? revoked : "auth.unauthenticated", 0,
               "access token invalid; this route is never refreshed "
               "silently");
      return -1;
    }
    if (bh__csrf_check(req) != 0) {
      bh__deny(req, "auth.csrf_rejected", 0, "origin check failed");
      return -1;
    }
    return bh__mw_submit(req, a, BH__MW_REFRESH, refresh, next->resume);
  }
  bh__deny(req, revoked ? revoked : "auth.unauthenticated", has_session, why);
  return -1;
}
