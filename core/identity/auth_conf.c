/*
 * The [auth] section: how access tokens are signed and checked, session
 * lifetimes, cookies and the CSRF origins. Read once per configuration
 * load (so `-t` and a reload refuse what a worker would), with the same
 * environment overrides as every section (BULKHEAD_AUTH_<KEY>) and the
 * "@env:NAME" / "@file:PATH" indirections upstream headers use, so the
 * secret never has to sit in the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/secret.h"
#include "identity/auth.h"

typedef struct bh__aload {
  const bh__config *cfg;
  const bh__section *sec;
  char *err;
  size_t errlen;
} bh__aload;

static const char *const bh__auth_keys[] = {"jwt_secret",
                                            "jwt_alg",
                                            "jwt_private_key",
                                            "jwt_public_key",
                                            "issuer",
                                            "audience",
                                            "access_ttl_s",
                                            "refresh_ttl_s",
                                            "leeway_s",
                                            "refresh_grace_s",
                                            "cookie_secure",
                                            "csrf_origins",
                                            "api_key_header",
                                            "store",
                                            "login_max_failures",
                                            "login_max_failures_per_address",
                                            "login_lockout_s",
                                            "api_key_scopes",
                                            "revoked_sessions_max",
                                            "token_cache_size",
                                            NULL};

static void bh__env_name(const char *key, char *out, size_t n) {
  if (bh__config_env_name(out, n, "auth", key) == NULL && n) out[0] = '\0';
}

/* The value of `key` (environment first) and where it came from. */
static const char *bh__aget(bh__aload *ld, const char *key, int *line) {
  return bh__config_get_at(ld->cfg, "auth", key, line);
}

static int bh__afail(bh__aload *ld, const char *key, int line, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
static int bh__afail(bh__aload *ld, const char *key, int line, const char *fmt,
                     ...) {
  if (ld->err == NULL || ld->errlen == 0) return -EINVAL;
  int n;
  if (line == 0) {
    char var[64];
    bh__env_name(key, var, sizeof(var));
    n = snprintf(ld->err, ld->errlen, "ENV %s: [auth] %s: ", var, key);
  } else if (line > 0) {
    n = snprintf(ld->err, ld->errlen, "%s:%d: [auth] %s: ", ld->cfg->source,
                 line, key);
  } else {
    n = snprintf(ld->err, ld->errlen, "%s: [auth] %s: ", ld->cfg->source, key);
  }
  if (n >= 0 && (size_t)n < ld->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

/* A secret value: literal, "@env:NAME" or "@file:PATH" (config/secret.c). */
static int bh__resolve(bh__aload *ld, const char *key, int line, const char *v,
                       char **out, size_t *outlen) {
  char why[256];
  int rc = bh__secret_resolve(v, out, outlen, why, sizeof(why));
  if (rc == 0 || rc == -ENOMEM) return rc;
  return bh__afail(ld, key, line, "%s", why);
}

/* A key file: a path, "@file:PATH" or "@env:NAME" (the PEM itself). */
static int bh__key_file(bh__aload *ld, const char *key, char **out,
                        size_t *outlen) {
  int line;
  const char *v = bh__aget(ld, key, &line);
  if (v == NULL) return 0;
  if (*v == '\0') return bh__afail(ld, key, line, "must not be empty");
  if (strncmp(v, "@env:", 5) == 0 || strncmp(v, "@file:", 6) == 0)
    return bh__resolve(ld, key, line, v, out, outlen);
  int rc = bh__secret_read_file(v, out, outlen);
  if (rc == -ENOMEM) return rc;
  if (rc)
    return bh__afail(ld, key, line, "cannot read %s: %s", v, strerror(-rc));
  return 0;
}

static int bh__num(bh__aload *ld, const char *key, uint32_t def, uint32_t lo,
                   uint32_t hi, uint32_t *out) {
  int line;
  const char *v = bh__aget(ld, key, &line);
  *out = def;
  if (v == NULL) return 0;
  uint64_t n = 0;
  const char *s = v;
  for (; *s >= '0' && *s <= '9' && n <= hi; s++)
    n = n * 10 + (uint64_t)(*s - '0');
  if (*v == '\0' || *s != '\0' || n < lo || n > hi)
    return bh__afail(ld, key, line, "expected a number between %u and %u", lo,
                     hi);
  *out = (uint32_t)n;
  return 0;
}

static int bh__text(bh__aload *ld, const char *key, const char *def,
                    char **out) {
  int line;
  const char *v = bh__aget(ld, key, &line);
  if (v == NULL) v = def;
  size_t n = strlen(v);
  if (n == 0 || n > 255)
    return bh__afail(ld, key, line, "expected 1 to 255 characters");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x21 || v[i] == 0x7f || v[i] == '"' ||
        v[i] == '\\')
      return bh__afail(ld, key, line,
                       "expected printable characters without spaces, quotes "
                       "or backslashes");
  *out = strdup(v);
  return *out ? 0 : -ENOMEM;
}

/* "scheme://host[:port]", lower-cased, no path: what browsers send as
 * Origin. */
static int bh__origins(bh__aload *ld, bh__auth_conf *c) {
  int line;
  const char *v = bh__aget(ld, "csrf_origins", &line);
  if (v == NULL) return 0;
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0') break;
    size_t n = strcspn(p, ", \t");
    char *o = strndup(p, n);
    char **list = realloc(c->origins, (c->norigins + 1) * sizeof(*list));
    if (o == NULL || list == NULL) {
      free(o);
      if (list) c->origins = list;
      return -ENOMEM;
    }
    c->origins = list;
    c->origins[c->norigins++] = o;
    for (char *s = o; *s; s++)
      if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
    const char *host = strncmp(o, "https://", 8) == 0  ? o + 8
                       : strncmp(o, "http://", 7) == 0 ? o + 7
                                                       : NULL;
    int bad = host == NULL || *host == '\0' || strpbrk(host, "/?#@\"\\");
    for (const char *h = host; !bad && *h; h++)
      bad = (unsigned char)*h < 0x21 || *h == 0x7f;
    if (bad)
      return bh__afail(ld, "csrf_origins", line,
                       "expected a comma-separated list of origins such as "
                       "https://portal.example.com (scheme, host, optional "
                       "port, no path)");
    p += n;
  }
  return 0;
}

/* A scope as API keys carry it: 1 to 64 of a-z 0-9 : . _ - (the auth
 * plugin's own rule for the scopes of a key). */
static int bh__scope_ok(const char *s, size_t n) {
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == ':' || s[i] == '.' || s[i] == '_' || s[i] == '-'))
      return 0;
  return 1;
}

/* api_key_scopes: scopes any signed-in user may give a key of theirs,
 * comma- or space-separated, kept space-separated. */
static int bh__key_scopes(bh__aload *ld, bh__auth_conf *c) {
  int line;
  const char *v = bh__aget(ld, "api_key_scopes", &line);
  c->api_key_scopes = calloc(1, v ? strlen(v) + 1 : 1);
  if (c->api_key_scopes == NULL) return -ENOMEM;
  for (const char *p = v; p && *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    size_t n = strcspn(p, ", \t");
    if (n == 0) break;
    if (!bh__scope_ok(p, n))
      return bh__afail(ld, "api_key_scopes", line,
                       "expected scopes of 1 to 64 of a-z, 0-9, ':', '.', "
                       "'_', '-', separated by commas or spaces");
    if (c->api_key_scopes[0]) strcat(c->api_key_scopes, " ");
    strncat(c->api_key_scopes, p, n);
    p += n;
  }
  return 0;
}

/* Signs a probe and verifies it: a private key that does not match the
 * public one, or a PEM libjwt cannot use, fails here and not at the first
 * login. */
static int bh__keys_probe(bh__aload *ld, const bh__auth_conf *c) {
  if (c->private_pem == NULL || c->alg == BH__JWT_HS256) return 0;
  bh__jwt_keys k = {.alg = c->alg,
                    .sign = (const unsigned char *)c->private_pem,
                    .sign_len = c->private_len,
                    .verify = (const unsigned char *)c->public_pem,
                    .verify_len = c->public_len,
                    .issuer = c->issuer,
                    .audience = c->audience};
  bh__claims cl;
  memset(&cl, 0, sizeof(cl));
  snprintf(cl.sub, sizeof(cl.sub), "probe");
  cl.iat = 1000;
  cl.exp = 2000;
  char *tok = NULL;
  int rc = bh__jwt_sign(&k, &cl, &tok);
  if (rc == BH__JWT_OK) rc = bh__jwt_verify(&k, tok, 1500, &cl);
  free(tok);
  if (rc == BH__JWT_NOMEM) return -ENOMEM;
  if (rc != BH__JWT_OK) {
    int line;
    bh__aget(ld, "jwt_private_key", &line);
    return bh__afail(ld, "jwt_private_key", line,
                     "this key and jwt_public_key do not make a working %s "
                     "key pair (%s)",
                     bh__jwt_alg_name(c->alg), bh__jwt_strerror(rc));
  }
  return 0;
}

static int bh__conf_fill(bh__aload *ld, bh__auth_conf *c) {
  int line, rc;
  for (size_t i = 0; ld->sec && i < ld->sec->nkv; i++) {
    int known = 0;
    for (size_t j = 0; bh__auth_keys[j] && !known; j++)
      known = strcmp(bh__auth_keys[j], ld->sec->kv[i].key) == 0;
    if (!known)
      return bh__afail(ld, ld->sec->kv[i].key, ld->sec->kv[i].line,
                       "unknown key");
  }
  const char *v = bh__aget(ld, "jwt_alg", &line);
  c->alg = v ? bh__jwt_alg_parse(v) : BH__JWT_HS256;
  if (c->alg == 0)
    return bh__afail(ld, "jwt_alg", line, "expected HS256, RS256 or ES256");
  if ((rc = bh__text(ld, "issuer", "bulkhead", &c->issuer)) ||
      (rc = bh__text(ld, "audience", "bulkhead", &c->audience)) ||
      (rc = bh__text(ld, "api_key_header", "X-API-Key", &c->api_key_header)) ||
      (rc = bh__text(ld, "store", "identity.db", &c->store_file)))
    return rc;
  for (char *s = c->api_key_header; *s; s++)
    if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
  if ((rc = bh__num(ld, "access_ttl_s", 900, 1, 86400, &c->access_ttl_s)) ||
      (rc = bh__num(ld, "refresh_ttl_s", 2592000, 1, 31536000,
                    &c->refresh_ttl_s)) ||
      (rc = bh__num(ld, "leeway_s", 30, 0, 300, &c->leeway_s)) ||
      (rc = bh__num(ld, "refresh_grace_s", 5, 0, 300, &c->refresh_grace_s)) ||
      (rc = bh__num(ld, "login_max_failures", 5, 1, 1000,
                    &c->login_max_failures)) ||
      (rc = bh__num(ld, "login_max_failures_per_address", 50, 1, 100000,
                    &c->login_max_failures_per_address)) ||
      (rc = bh__num(ld, "login_lockout_s", 300, 1, 86400,
                    &c->login_lockout_s)) ||
      (rc = bh__num(ld, "revoked_sessions_max", 65536, 64, 1048576,
                    &c->revoked_sessions_max)) ||
      (rc = bh__num(ld, "token_cache_size", 4096, 0, 1048576,
                    &c->token_cache_size)) ||
      (rc = bh__key_scopes(ld, c)))
    return rc;
  v = bh__aget(ld, "cookie_secure", &line);
  c->cookie_secure = 1;
  if (v) {
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on") || !strcmp(v, "1"))
      c->cookie_secure = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off") || !strcmp(v, "0"))
      c->cookie_secure = 0;
    else
      return bh__afail(ld, "cookie_secure", line, "expected true or false");
  }
  if ((rc = bh__origins(ld, c))) return rc;

  v = bh__aget(ld, "jwt_secret", &line);
  if (c->alg == BH__JWT_HS256) {
    int l2;
    if (bh__aget(ld, "jwt_private_key", &l2) ||
        bh__aget(ld, "jwt_public_key", &l2))
      return bh__afail(ld, "jwt_private_key", l2,
                       "key files are for jwt_alg = RS256 or ES256; HS256 "
                       "uses jwt_secret");
    if (v == NULL) return 0; /* generated under data_dir at start */
    char *sec = NULL;
    size_t n = 0;
    if ((rc = bh__resolve(ld, "jwt_secret", line, v, &sec, &n))) return rc;
    if (n < BH__AUTH_MIN_SECRET) {
      sodium_memzero(sec, n);
      free(sec);
      /* never the value: error lines end up in logs */
      return bh__afail(ld, "jwt_secret", line,
                       "must be at least %d bytes (got %zu); generate one "
                       "with: head -c 32 /dev/urandom | base64",
                       BH__AUTH_MIN_SECRET, n);
    }
    c->secret = (unsigned char *)sec;
    c->secret_len = n;
    return 0;
  }
  if (v)
    return bh__afail(ld, "jwt_secret", line,
                     "not used with jwt_alg = %s (give jwt_public_key and "
                     "jwt_private_key)",
                     bh__jwt_alg_name(c->alg));
  if ((rc = bh__key_file(ld, "jwt_private_key", &c->private_pem,
                         &c->private_len)) ||
      (rc = bh__key_file(ld, "jwt_public_key", &c->public_pem, &c->public_len)))
    return rc;
  if (c->public_pem == NULL) {
    bh__aget(ld, "jwt_alg", &line);
    return bh__afail(ld, "jwt_public_key", line,
                     "required with jwt_alg = %s (a PEM file)",
                     bh__jwt_alg_name(c->alg));
  }
  return bh__keys_probe(ld, c);
}

int bh__auth_conf_load(const bh__config *cfg, bh__auth_conf **out, char *err,
                       size_t errlen) {
  bh__aload ld = {.cfg = cfg,
                  .sec = bh__config_section(cfg, "auth"),
                  .err = err,
                  .errlen = errlen};
  *out = NULL;
  bh__auth_conf *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  int rc = bh__conf_fill(&ld, c);
  if (rc == 0) rc = bh__store_conf_load(cfg, c, err, errlen);
  if (rc) {
    if (rc == -ENOMEM && err && errlen)
      snprintf(err, errlen, "%s: [auth]: out of memory", cfg->source);
    bh__auth_conf_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void bh__auth_conf_free(bh__auth_conf *c) {
  if (c == NULL) return;
  if (c->secret) sodium_memzero(c->secret, c->secret_len);
  if (c->private_pem) sodium_memzero(c->private_pem, c->private_len);
  free(c->secret);
  free(c->private_pem);
  free(c->public_pem);
  free(c->issuer);
  free(c->audience);
  free(c->api_key_header);
  free(c->store_file);
  bh__secret_free(c->store_url, c->store_url_len);
  free(c->api_key_scopes);
  for (size_t i = 0; i < c->norigins; i++)
    free(c->origins[i]);
  free(c->origins);
  free(c);
}
