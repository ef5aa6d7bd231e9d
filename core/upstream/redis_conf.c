/*
 * [redis]: where the shared rate-limit buckets live. The URL goes through
 * the one secrets resolver (config/secret.c) since it may hold a password;
 * only its password-less form (`shown`) is ever logged or shown.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/secret.h"
#include "upstream/redis.h"

static int bh__rc_num(const char *v, unsigned long lo, unsigned long hi,
                      unsigned long *out) {
  char *end;
  if (v == NULL || v[0] < '0' || v[0] > '9') return -EINVAL;
  unsigned long n = strtoul(v, &end, 10);
  if (*end || n < lo || n > hi) return -EINVAL;
  *out = n;
  return 0;
}

static int bh__rc_unix(const char *rest, bh__redis_conf *c, char *why,
                       size_t whylen) {
  const char *q = strchr(rest, '?');
  size_t plen = q ? (size_t)(q - rest) : strlen(rest);
  if (plen == 0 || rest[0] != '/') {
    snprintf(why, whylen, "expected unix:///absolute/path/to/socket");
    return -EINVAL;
  }
  c->unix_path = strndup(rest, plen);
  if (c->unix_path == NULL) return -ENOMEM;
  if (q) {
    unsigned long db;
    if (strncmp(q, "?db=", 4) || bh__rc_num(q + 4, 0, 1000, &db)) {
      snprintf(why, whylen, "unix URL: the only query is ?db=N");
      return -EINVAL;
    }
    c->db = (int)db;
  }
  snprintf(c->shown, sizeof(c->shown), "unix://%s", rest);
  return 0;
}

/* [[user]:password@] of a redis:// URL; *hostp moves past it. */
static int bh__rc_userinfo(const char **hostp, bh__redis_conf *c) {
  const char *h = *hostp;
  const char *at = strrchr(h, '@');
  const char *slash = strchr(h, '/');
  if (at == NULL || (slash && slash < at)) return 0;
  const char *colon = memchr(h, ':', (size_t)(at - h));
  if (colon == NULL) {
    /* redis://password@host, as some clients accept */
    c->password = strndup(h, (size_t)(at - h));
  } else {
    if (colon > h) c->user = strndup(h, (size_t)(colon - h));
    c->password = strndup(colon + 1, (size_t)(at - colon - 1));
    if (colon > h && c->user == NULL) return -ENOMEM;
  }
  if (c->password == NULL) return -ENOMEM;
  *hostp = at + 1;
  return 0;
}

int bh__redis_url_parse(const char *url, bh__redis_conf *c, char *why,
                        size_t whylen) {
  c->port = 6379;
  if (strncmp(url, "unix://", 7) == 0)
    return bh__rc_unix(url + 7, c, why, whylen);
  if (strncmp(url, "redis://", 8) != 0) {
    snprintf(why, whylen,
             "expected redis://[[user]:password@]host[:port][/db] or "
             "unix:///path");
    return -EINVAL;
  }
  const char *h = url + 8;
  int rc = bh__rc_userinfo(&h, c);
  if (rc) return rc;
  const char *slash = strchr(h, '/');
  size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
  char hostport[256];
  if (hlen == 0 || hlen >= sizeof(hostport)) {
    snprintf(why, whylen, "redis URL has no host");
    return -EINVAL;
  }
  memcpy(hostport, h, hlen);
  hostport[hlen] = '\0';
  char *host = hostport, *port = NULL;
  if (host[0] == '[') { /* [::1]:6379 */
    char *close = strchr(host, ']');
    if (close == NULL) {
      snprintf(why, whylen, "redis URL: unclosed [ in the host");
      return -EINVAL;
    }
    *close = '\0';
    host++;
    if (close[1] == ':')
      port = close + 2;
    else if (close[1] != '\0') {
      snprintf(why, whylen, "redis URL: junk after the host");
      return -EINVAL;
    }
  } else if ((port = strrchr(host, ':')) != NULL) {
    *port++ = '\0';
  }
  unsigned long n;
  if (port && bh__rc_num(port, 1, 65535, &n)) {
    snprintf(why, whylen, "redis URL: port must be 1..65535");
    return -EINVAL;
  }
  if (port) c->port = (int)n;
  if (slash && slash[1] && bh__rc_num(slash + 1, 0, 1000, &n)) {
    snprintf(why, whylen, "redis URL: the path is a database number");
    return -EINVAL;
  }
  if (slash && slash[1]) c->db = (int)n;
  if (host[0] == '\0') {
    snprintf(why, whylen, "redis URL has no host");
    return -EINVAL;
  }
  if ((c->host = strdup(host)) == NULL) return -ENOMEM;
  snprintf(c->shown, sizeof(c->shown), "redis://%.40s%s%s%.100s:%d/%d",
           c->user ? c->user : "", c->password ? ":***" : "",
           c->user || c->password ? "@" : "", host, c->port, c->db);
  return 0;
}

void bh__redis_conf_free(bh__redis_conf *c) {
  if (c == NULL) return;
  free(c->host);
  free(c->unix_path);
  free(c->user);
  if (c->password) {
    sodium_memzero(c->password, strlen(c->password));
    free(c->password);
  }
  free(c);
}

static int bh__rc_fail(const bh__config *cfg, const bh__section *s,
                       const char *key, const char *what, char *err,
                       size_t errlen) {
  snprintf(err, errlen, "%s:%d: [redis] %s: %s", cfg->source,
           s == NULL ? 0
           : key     ? bh__config_line(s, key)
                     : s->line,
           key ? key : "", what);
  return -EINVAL;
}

static int bh__rc_keys(const bh__config *cfg, const bh__section *s, char *err,
                       size_t errlen) {
  static const char *const keys[] = {"url", "timeout_ms", "reconnect_max_ms",
                                     NULL};
  for (size_t i = 0; i < s->nkv; i++) {
    int known = 0;
    for (size_t k = 0; keys[k]; k++)
      known |= strcmp(s->kv[i].key, keys[k]) == 0;
    if (!known) {
      snprintf(err, errlen, "%s:%d: [redis] %s: unknown key", cfg->source,
               s->kv[i].line, s->kv[i].key);
      return -EINVAL;
    }
  }
  return 0;
}

static int bh__rc_nums(const bh__config *cfg, const bh__section *s,
                       bh__redis_conf *c, char *err, size_t errlen) {
  unsigned long n;
  const char *v = bh__config_get(cfg, "redis", "timeout_ms");
  c->timeout_ms = 5;
  if (v && bh__rc_num(v, 1, 10000, &n))
    return bh__rc_fail(cfg, s, "timeout_ms",
                       "expected milliseconds between 1 and 10000", err,
                       errlen);
  if (v) c->timeout_ms = (uint32_t)n;
  v = bh__config_get(cfg, "redis", "reconnect_max_ms");
  c->reconnect_max_ms = 5000;
  if (v && bh__rc_num(v, 100, 600000, &n))
    return bh__rc_fail(cfg, s, "reconnect_max_ms",
                       "expected milliseconds between 100 and 600000", err,
                       errlen);
  if (v) c->reconnect_max_ms = (uint32_t)n;
  return 0;
}

int bh__redis_conf_load(const bh__config *cfg, bh__redis_conf **out, char *err,
                        size_t errlen) {
  *out = NULL;
  /* BULKHEAD_REDIS_URL alone is a [redis] section too */
  const bh__section *s = bh__config_section(cfg, "redis");
  const char *raw = bh__config_get(cfg, "redis", "url");
  if (s == NULL && raw == NULL) return 0;
  int rc = s ? bh__rc_keys(cfg, s, err, errlen) : 0;
  if (rc) return rc;
  if (raw == NULL || raw[0] == '\0')
    return bh__rc_fail(cfg, s, "url", "required (redis://host:port)", err,
                       errlen);
  bh__redis_conf *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  char why[256] = "";
  char *url = NULL;
  size_t ulen = 0;
  rc = bh__secret_resolve(raw, &url, &ulen, why, sizeof(why));
  if (rc == 0) rc = bh__redis_url_parse(url, c, why, sizeof(why));
  bh__secret_free(url, ulen);
  if (rc == 0)
    rc = bh__rc_nums(cfg, s, c, err, errlen);
  else if (rc != -ENOMEM)
    bh__rc_fail(cfg, s, "url", why, err, errlen);
  if (rc) {
    bh__redis_conf_free(c);
    return rc;
  }
  *out = c;
  return 0;
}
