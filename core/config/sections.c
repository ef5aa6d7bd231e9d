/*
 * The typed sections of the configuration: [server] (one table of keys,
 * their defaults and limits) and [plugin.NAME] (enabled, path, mounts,
 * required), checked as config.c loads them.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/cidr.h"
#include "base/log.h"
#include "config/loader.h"

/* ---- value parsers ----------------------------------------------------- */

/* Strict decimal: digits only, no sign, no spaces, no suffix. */
static int bh__parse_u64(const char *s, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  if (!*s) return -EINVAL;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -EINVAL;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > max) return -ERANGE;
  }
  *out = v;
  return 0;
}

int bh__config_bool(const char *s) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return 1;
    if (strcasecmp(s, no[i]) == 0) return 0;
  }
  return -EINVAL;
}

static int bh__valid_hostname(const char *h) {
  if (!*h) return 0;
  for (; *h; h++)
    if (!IS_LOWER(*h) && !IS_UPPER(*h) && !IS_DIGIT(*h) && *h != '-' &&
        *h != '.')
      return 0;
  return 1;
}

int bh__config_parse_addr(const char *s, char *host, size_t hostlen,
                          int *port) {
  if (!s) return -EINVAL;
  const char *h = s, *colon;
  size_t hlen;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':') return -EINVAL;
    h = s + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return -EINVAL;
    hlen = (size_t)(colon - s);
  }
  char tmp[256];
  if (hlen == 0 || hlen >= sizeof tmp) return -EINVAL;
  memcpy(tmp, h, hlen);
  tmp[hlen] = '\0';
  if (*s == '[') {
    struct in6_addr a6;
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return -EINVAL;
  } else if (!bh__valid_hostname(tmp)) {
    return -EINVAL; /* an unbracketed IPv6 address lands here too */
  }
  uint64_t p;
  if (strlen(colon + 1) > 5 || bh__parse_u64(colon + 1, 65535, &p))
    return -EINVAL;
  if (host) {
    if (hostlen <= hlen) return -EINVAL;
    memcpy(host, tmp, hlen + 1);
  }
  if (port) *port = (int)p;
  return 0;
}

int bh__addr_is_loopback(const char *addr) {
  char host[64];
  struct in_addr a4;
  struct in6_addr a6;
  if (bh__config_parse_addr(addr, host, sizeof host, NULL)) return 0;
  if (strcasecmp(host, "localhost") == 0) return 1;
  if (inet_pton(AF_INET, host, &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Without a token the admin API obeys whoever reaches it: only loopback
 * may, and even there the listener checks Host and Origin (admin.c). Run
 * on the final addresses (after --admin-listen, and on reload with the
 * listener that stays), so not inside bh__config_load. */
int bh__config_admin_check(const bh__config *cfg, char *err, size_t errlen) {
  if (cfg->admin_token || bh__addr_is_loopback(cfg->admin_listen)) return 0;
  snprintf(err, errlen,
           "%s: [server] admin_listen = %s is not a loopback address and "
           "[server] admin_token is not set: anyone who reaches it could "
           "reload the daemon or force breakers open; set admin_token or "
           "listen on 127.0.0.1",
           cfg->source, cfg->admin_listen);
  return -EINVAL;
}

/* ---- [server] ---------------------------------------------------------- */

enum kind {
  K_ADDR,
  K_PATH,
  K_TOKEN,
  K_STYLE,
  K_NUM,
  K_LOG,
  K_LEVEL,
  K_PAGE,
  K_WORKERS,
  K_LOGFMT,
  K_CIDRS,
  K_OWNED /* kept as text, checked by its owner (cors_*: gateway/cors.c) */
};

typedef struct bh__skey {
  const char *name;
  enum kind kind;
  size_t off;
  const char *def; /* parsed like a file value; NULL: stays NULL */
  uint64_t min, max;
  const char *what; /* K_NUM: "a size in bytes" ... */
  int is_size;      /* K_NUM: size_t field, else uint32_t */
} bh__skey;

#define OFF(f) offsetof(bh__config, f)
#define TEXT 0, 0, NULL, 0
#define BYTES "a size in bytes", 1
#define MS 100, 3600000, "a duration in milliseconds", 0
/* The one place the [server] defaults live (config.h repeats them). */
static const bh__skey server_keys[] = {
    {"listen", K_ADDR, OFF(listen), "127.0.0.1:8080", TEXT},
    {"admin_listen", K_ADDR, OFF(admin_listen), "127.0.0.1:9901", TEXT},
    {"data_dir", K_PATH, OFF(data_dir), "./bulkhead-data", TEXT},
    {"plugin_dir", K_PATH, OFF(plugin_dir), NULL, TEXT},
    {"admin_token", K_TOKEN, OFF(admin_token), NULL, TEXT},
    {"metrics_token", K_TOKEN, OFF(metrics_token), NULL, TEXT},
    {"problem_style", K_STYLE, OFF(problem_flat), "nested", TEXT},
    {"max_header_bytes", K_NUM, OFF(max_header_bytes), "16384", 1024, 1048576,
     BYTES},
    {"max_body_bytes", K_NUM, OFF(max_body_bytes), "1048576", 0, 1073741824,
     BYTES},
    {"header_timeout_ms", K_NUM, OFF(header_timeout_ms), "10000", MS},
    {"body_timeout_ms", K_NUM, OFF(body_timeout_ms), "30000", MS},
    {"keepalive_timeout_ms", K_NUM, OFF(keepalive_timeout_ms), "75000", MS},
    {"handler_timeout_ms", K_NUM, OFF(handler_timeout_ms), "30000", MS},
    {"max_connections", K_NUM, OFF(max_connections), "10000", 1, 1000000,
     "a number of connections", 0},
    {"max_connections_per_ip", K_NUM, OFF(max_connections_per_ip), "0", 0,
     1000000, "a number of connections", 0},
    {"send_timeout_ms", K_NUM, OFF(send_timeout_ms), "30000", MS},
    {"keepalive_requests", K_NUM, OFF(keepalive_requests), "1000", 1,
     1000000000, "a number of requests", 0},
    {"lingering_time_ms", K_NUM, OFF(lingering_time_ms), "30000", 0, 3600000,
     "a duration in milliseconds", 0},
    {"lingering_timeout_ms", K_NUM, OFF(lingering_timeout_ms), "5000", MS},
    {"lingering_max_bytes", K_NUM, OFF(lingering_max_bytes), "16777216", 0,
     1073741824, BYTES},
    {"log", K_LOG, OFF(log_target), "stdout", TEXT},
    {"log_level", K_LEVEL, OFF(log_level), "info", TEXT},
    {"log_format", K_LOGFMT, OFF(log_format), "bulkhead", TEXT},
    {"trusted_proxies", K_CIDRS, OFF(trusted_proxies), "", TEXT},
    {"login_page", K_PAGE, OFF(login_page), "/login", TEXT},
    {"workers", K_WORKERS, OFF(workers), "1", TEXT},
    {"drain_timeout_ms", K_NUM, OFF(drain_timeout_ms), "10000", MS},
    {"plugin_hang_ms", K_NUM, OFF(plugin_hang_ms), "5000", MS},
    {"quarantine_after", K_NUM, OFF(quarantine_after), "3", 1, 1000,
     "a number of crashes or hangs", 0},
    {"quarantine_window_s", K_NUM, OFF(quarantine_window_s), "60", 1, 86400,
     "a duration in seconds", 0},
    /* the defaults of every mount's CORS policy, read and checked by
     * gateway/cors.c through bh__config_get_at (proc/load.c runs it) */
    {"cors_origins", K_OWNED, 0, NULL, TEXT},
    {"cors_credentials", K_OWNED, 0, NULL, TEXT},
    {"cors_headers", K_OWNED, 0, NULL, TEXT},
    {"cors_expose", K_OWNED, 0, NULL, TEXT},
    {"cors_max_age", K_OWNED, 0, NULL, TEXT},
};
#define NSERVER_KEYS (sizeof server_keys / sizeof server_keys[0])

static int bh__set_str(bh__cfg_loader *ld, char **field, const char *v) {
  char *dup = strdup(v);
  if (!dup) return bh__cfg_fail_oom(ld);
  free(*field);
  *field = dup;
  return 0;
}

static int bh__server_value(bh__cfg_loader *ld, const bh__section *s,
                            const bh__kv *kv, const bh__skey *k) {
  char *base = (char *)ld->cfg;
  const char *v = kv->value;
  char q[80];
  if (bh__cfg_has_ctl(v) && k->kind != K_TOKEN)
    return bh__cfg_fail_kv(ld, s, kv, "control character or line break in '%s'",
                           bh__cfg_shown(v, q, sizeof q));
  switch (k->kind) {
  case K_ADDR: {
    char host[64];
    struct in_addr a4;
    if (bh__config_parse_addr(v, host, sizeof host, NULL))
      return bh__cfg_fail_kv(
          ld, s, kv,
          "expected host:port or [ipv6]:port with a port between "
          "0 and 65535, got '%s'",
          bh__cfg_shown(v, q, sizeof q));
    /* The listener does not resolve names: say so now, not at bind. */
    if (v[0] != '[' && strcmp(host, "localhost") != 0 &&
        inet_pton(AF_INET, host, &a4) != 1)
      return bh__cfg_fail_kv(
          ld, s, kv,
          "expected an IP address or localhost to listen on, "
          "got '%s'",
          bh__cfg_shown(v, q, sizeof q));
    return bh__set_str(ld, (char **)(base + k->off), v);
  }
  case K_PATH:
  case K_LOG:
    if (!*v) return bh__cfg_fail_kv(ld, s, kv, "must not be empty");
    return bh__set_str(ld, (char **)(base + k->off), v);
  case K_TOKEN:
    /* Never echo the token: error lines end up in logs. */
    if (strlen(v) < 16 || bh__cfg_has_ctl(v))
      return bh__cfg_fail_kv(
          ld, s, kv, "must be at least 16 printable characters (got %zu)",
          strlen(v));
    return bh__set_str(ld, (char **)(base + k->off), v);
  case K_STYLE:
    if (strcmp(v, "nested") && strcmp(v, "flat"))
      return bh__cfg_fail_kv(ld, s, kv, "expected nested or flat, got '%s'",
                             bh__cfg_shown(v, q, sizeof q));
    *(int *)(base + k->off) = strcmp(v, "flat") == 0;
    return 0;
  case K_NUM: {
    uint64_t n;
    if (bh__parse_u64(v, k->max, &n) || n < k->min)
      return bh__cfg_fail_kv(
          ld, s, kv, "expected %s between %llu and %llu, got '%s'", k->what,
          (unsigned long long)k->min, (unsigned long long)k->max,
          bh__cfg_shown(v, q, sizeof q));
    if (k->is_size)
      *(size_t *)(base + k->off) = (size_t)n;
    else
      *(uint32_t *)(base + k->off) = (uint32_t)n;
    return 0;
  }
  case K_LEVEL: {
    int lv = bh__log_level_parse(v);
    if (lv < 0)
      return bh__cfg_fail_kv(ld, s, kv,
                             "expected debug, info, warn or error, got '%s'",
                             bh__cfg_shown(v, q, sizeof q));
    *(int *)(base + k->off) = lv;
    return 0;
  }
  case K_WORKERS: {
    uint64_t n;
    if (strcmp(v, "auto") == 0) {
      *(int *)(base + k->off) = -1;
      return 0;
    }
    if (bh__parse_u64(v, 64, &n))
      return bh__cfg_fail_kv(
          ld, s, kv,
          "expected auto or a number of worker processes between "
          "0 and 64, got '%s'",
          bh__cfg_shown(v, q, sizeof q));
    *(int *)(base + k->off) = (int)n;
    return 0;
  }
  case K_PAGE:
    /* It becomes a Location header: "//x" and "/\\x" leave the site. */
    if (v[0] != '/' || v[1] == '/' || v[1] == '\\' || strpbrk(v, " \t"))
      return bh__cfg_fail_kv(ld, s, kv,
                             "expected a local path starting with a single '/' "
                             "(e.g. /login), got '%s'",
                             bh__cfg_shown(v, q, sizeof q));
    return bh__set_str(ld, (char **)(base + k->off), v);
  case K_LOGFMT: {
    int f = bh__log_format_parse(v);
    if (f < 0)
      return bh__cfg_fail_kv(ld, s, kv,
                             "expected bulkhead, ecs or otel, got '%s'",
                             bh__cfg_shown(v, q, sizeof q));
    *(int *)(base + k->off) = f;
    return 0;
  }
  case K_CIDRS: {
    bh__config *cfg = ld->cfg;
    bh__cidr *list;
    size_t n;
    char bad[64];
    int rc = bh__cidr_list(v, &list, &n, bad);
    if (rc == -ENOMEM) return bh__cfg_fail_oom(ld);
    if (rc)
      return bh__cfg_fail_kv(
          ld, s, kv,
          "expected a list of IPv4 or IPv6 addresses or CIDR ranges "
          "(10.0.0.0/8, ::1), got '%s'",
          bh__cfg_shown(bad, q, sizeof q));
    free(cfg->trusted_proxies);
    cfg->trusted_proxies = list;
    cfg->ntrusted_proxies = n;
    return 0;
  }
  case K_OWNED: return 0;
  }
  return 0;
}

int bh__cfg_load_server(bh__cfg_loader *ld) {
  static const bh__section defaults = {.name = "server"};
  for (size_t i = 0; i < NSERVER_KEYS; i++) {
    const bh__skey *k = &server_keys[i];
    bh__kv d = {(char *)k->name, (char *)k->def, -1};
    if (d.value && bh__server_value(ld, &defaults, &d, k)) return ld->rc;
  }
  for (size_t i = 0; i < NSERVER_KEYS; i++)
    if (bh__cfg_set_env_kv(ld, "server", server_keys[i].name)) return ld->rc;
  const bh__section *s = bh__cfg_find_section(ld->cfg, "server");
  for (size_t i = 0; s && i < s->nkv; i++) {
    const bh__skey *k = NULL;
    for (size_t j = 0; j < NSERVER_KEYS && !k; j++)
      if (strcmp(server_keys[j].name, s->kv[i].key) == 0) k = &server_keys[j];
    if (!k) return bh__cfg_fail_kv(ld, s, &s->kv[i], "unknown key");
    if (bh__server_value(ld, s, &s->kv[i], k)) return ld->rc;
  }
  return 0;
}

/* ---- [plugin.NAME] ----------------------------------------------------- */

int bh__cfg_valid_plugin_name(const char *n) {
  size_t len = strlen(n);
  if (len < 1 || len > 32 || !IS_LOWER(n[0])) return 0;
  for (; *n; n++)
    if (!IS_LOWER(*n) && !IS_DIGIT(*n) && *n != '_') return 0;
  return 1;
}

static const char *bh__mount_problem(const char *m) {
  if (m[0] != '/') return "must be an absolute path starting with '/'";
  if (m[1] == '\0')
    return "would capture every route; mount a prefix such as /v1/NAME";
  if (m[strlen(m) - 1] == '/') return "must not end with '/'";
  if (strstr(m, "..")) return "must not contain '..'";
  if (strchr(m, '*')) return "must not contain '*' (mounts are prefixes)";
  if (strstr(m, "//")) return "must not contain an empty segment ('//')";
  for (; *m; m++)
    if ((unsigned char)*m <= 0x20 || *m == 0x7f || *m == '?' || *m == '#')
      return "must not contain whitespace, control characters, '?' or '#'";
  return NULL;
}

/* Nested mounts are allowed (the longest prefix owns a path, so a plugin
 * can serve a sub-tree of another's); only the same prefix twice is
 * ambiguous. */
static int bh__mounts_overlap(const char *a, const char *b) {
  return strcmp(a, b) == 0;
}

static int bh__parse_mounts(bh__cfg_loader *ld, const bh__section *s,
                            const bh__kv *kv, bh__plugin_conf *p) {
  char q[80];
  const char *v = kv->value;
  for (;;) {
    const char *comma = strchr(v, ',');
    const char *e = comma ? comma : v + strlen(v);
    while (v < e && isspace((unsigned char)*v))
      v++;
    while (e > v && isspace((unsigned char)e[-1]))
      e--;
    if (v == e)
      return bh__cfg_fail_kv(ld, s, kv, "empty entry in the mount list");
    char *m = strndup(v, (size_t)(e - v));
    if (!m) return bh__cfg_fail_oom(ld);
    if (GROW(p->mounts, p->nmounts)) {
      free(m);
      return bh__cfg_fail_oom(ld);
    }
    char **a = p->mounts;
    a[p->nmounts++] = m;
    const char *why = bh__mount_problem(m);
    if (why)
      return bh__cfg_fail_kv(ld, s, kv, "mount '%s' %s",
                             bh__cfg_shown(m, q, sizeof q), why);
    for (size_t i = 0; i + 1 < p->nmounts; i++)
      if (strcmp(a[i], m) == 0)
        return bh__cfg_fail_kv(ld, s, kv, "mount '%s' listed twice",
                               bh__cfg_shown(m, q, sizeof q));
    if (!comma) return 0;
    v = comma + 1;
  }
}

static int bh__plugin_bool(bh__cfg_loader *ld, const bh__section *s,
                           const bh__kv *kv, int *out) {
  char q[80];
  int b = bh__config_bool(kv->value);
  if (b < 0)
    return bh__cfg_fail_kv(
        ld, s, kv, "expected true/false, yes/no, on/off or 1/0, got '%s'",
        bh__cfg_shown(kv->value, q, sizeof q));
  *out = b;
  return 0;
}

/* A policy name as [rate_limit.NAME] can spell it. */
static int bh__policy_name_ok(const char *n, size_t len) {
  if (len < 1 || len > 31) return 0;
  for (size_t i = 0; i < len; i++)
    if (!IS_LOWER(n[i]) && !IS_DIGIT(n[i]) && n[i] != '_' && n[i] != '-')
      return 0;
  return 1;
}

static int bh__retries_value(const char *v, size_t len) {
  if (len < 1 || len > 2) return -1;
  int n = 0;
  for (size_t i = 0; i < len; i++) {
    if (!IS_DIGIT(v[i])) return -1;
    n = n * 10 + (v[i] - '0');
  }
  return n <= 10 ? n : -1;
}

/* `routes`: one route per line, "METHOD PATTERN rate_limit=NAME retries=N"
 * (either option or both). Route keys in the INI key itself would not fit:
 * inih truncates a key at 49 bytes, shorter than many route patterns. */
static int bh__parse_routes(bh__cfg_loader *ld, const bh__section *s,
                            const bh__kv *kv, bh__plugin_conf *p) {
  char q[80];
  const char *v = kv->value;
  int n = 0;
  while (*v) {
    const char *eol = strchr(v, '\n');
    const char *end = eol ? eol : v + strlen(v);
    char *line = strndup(v, (size_t)(end - v));
    if (!line) return bh__cfg_fail_oom(ld);
    v = eol ? eol + 1 : end;
    char *save = NULL, *tok = strtok_r(line, " \t", &save);
    if (tok == NULL) {
      free(line);
      continue;
    }
    n++;
    if (GROW(p->routes, p->nroutes)) {
      free(line);
      return bh__cfg_fail_oom(ld);
    }
    bh__route_conf *rc = &p->routes[p->nroutes++];
    memset(rc, 0, sizeof(*rc));
    rc->retries = -1;
    rc->line = kv->line;
    int bad = 0;
    for (const char *m = tok; *m; m++)
      bad |= !(*m >= 'A' && *m <= 'Z');
    char *pat = strtok_r(NULL, " \t", &save);
    if (bad || strlen(tok) > 16 || pat == NULL || pat[0] != '/') {
      int r = bh__cfg_fail_kv(
          ld, s, kv,
          "route %d: expected 'METHOD /pattern rate_limit=NAME retries=N', "
          "got '%s'",
          n, bh__cfg_shown(tok, q, sizeof q));
      free(line);
      return r;
    }
    rc->method = strdup(tok);
    rc->pattern = strdup(pat);
    int any = 0;
    for (char *o; (o = strtok_r(NULL, " \t", &save));) {
      char *eq = strchr(o, '=');
      size_t vl = eq ? strlen(eq + 1) : 0;
      if (eq && strncmp(o, "rate_limit=", 11) == 0 &&
          bh__policy_name_ok(eq + 1, vl) && !rc->rate_limit) {
        rc->rate_limit = strdup(eq + 1);
      } else if (eq && strncmp(o, "retries=", 8) == 0 && rc->retries < 0 &&
                 bh__retries_value(eq + 1, vl) >= 0) {
        rc->retries = bh__retries_value(eq + 1, vl);
      } else {
        int r = bh__cfg_fail_kv(ld, s, kv,
                                "route %s %s: '%s': expected rate_limit=NAME "
                                "or retries=0..10, each once",
                                rc->method, rc->pattern,
                                bh__cfg_shown(o, q, sizeof q));
        free(line);
        return r;
      }
      any = 1;
    }
    for (size_t i = 0; i + 1 < p->nroutes; i++)
      if (rc->method && rc->pattern &&
          strcmp(p->routes[i].method, rc->method) == 0 &&
          strcmp(p->routes[i].pattern, rc->pattern) == 0) {
        int r = bh__cfg_fail_kv(ld, s, kv, "route %s %s listed twice",
                                rc->method, rc->pattern);
        free(line);
        return r;
      }
    free(line);
    if (!rc->method || !rc->pattern) return bh__cfg_fail_oom(ld);
    if (!any)
      return bh__cfg_fail_kv(ld, s, kv,
                             "route %s %s: nothing to set (rate_limit=NAME "
                             "or retries=N)",
                             rc->method, rc->pattern);
  }
  return 0;
}

int bh__cfg_load_plugin(bh__cfg_loader *ld, size_t si) {
  static const char *const typed[] = {"enabled",  "path",       "mount",
                                      "required", "rate_limit", "retries",
                                      "routes"};
  bh__config *c = ld->cfg;
  const char *name = c->sections[si].name + strlen("plugin.");
  for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++)
    if (bh__cfg_set_env_kv(ld, c->sections[si].name, typed[i])) return ld->rc;
  /* Taken after the overrides: they may have grown this section. */
  const bh__section *s = &c->sections[si];
  if (GROW(c->plugins, c->nplugins)) return bh__cfg_fail_oom(ld);
  bh__plugin_conf *p = &c->plugins[c->nplugins++];
  memset(p, 0, sizeof(*p));
  p->enabled = 1;
  p->retries = -1;
  p->line = s->line;
  if (!(p->name = strdup(name))) return bh__cfg_fail_oom(ld);

  const bh__kv *mount = NULL;
  char q[80];
  for (size_t i = 0; i < s->nkv; i++) {
    const bh__kv *kv = &s->kv[i];
    if (strcmp(kv->key, "enabled") == 0) {
      if (bh__plugin_bool(ld, s, kv, &p->enabled)) return ld->rc;
    } else if (strcmp(kv->key, "required") == 0) {
      if (bh__plugin_bool(ld, s, kv, &p->required)) return ld->rc;
    } else if (strcmp(kv->key, "path") == 0) {
      if (!*kv->value || bh__cfg_has_ctl(kv->value))
        return bh__cfg_fail_kv(
            ld, s, kv, "expected a file name or path of the plugin's .so");
      if (bh__set_str(ld, &p->path, kv->value)) return ld->rc;
    } else if (strcmp(kv->key, "mount") == 0) {
      mount = kv;
      if (bh__parse_mounts(ld, s, kv, p)) return ld->rc;
    } else if (strcmp(kv->key, "rate_limit") == 0) {
      if (!bh__policy_name_ok(kv->value, strlen(kv->value)))
        return bh__cfg_fail_kv(
            ld, s, kv, "expected the NAME of a [rate_limit.NAME] section");
      if (bh__set_str(ld, &p->rate_limit, kv->value)) return ld->rc;
    } else if (strcmp(kv->key, "retries") == 0) {
      p->retries = bh__retries_value(kv->value, strlen(kv->value));
      if (p->retries < 0)
        return bh__cfg_fail_kv(ld, s, kv,
                               "expected an integer between 0 and 10, got '%s'",
                               bh__cfg_shown(kv->value, q, sizeof q));
    } else if (strcmp(kv->key, "routes") == 0) {
      if (bh__parse_routes(ld, s, kv, p)) return ld->rc;
    }
    /* Any other key belongs to the plugin, read via bh__config_get. */
  }
  if (!p->path) {
    size_t n = strlen(name) + 4;
    if (!(p->path = malloc(n))) return bh__cfg_fail_oom(ld);
    snprintf(p->path, n, "%s.so", name);
  }
  if (p->enabled && !p->nmounts)
    return bh__cfg_fail_at(
        ld, s->line, s->name, "mount",
        "required when the plugin is enabled (e.g. mount = /v1/%s)", name);
  if (p->required && !p->enabled)
    return bh__cfg_fail_kv(ld, s, bh__cfg_find_kv(s, "required"),
                           "a required plugin cannot be disabled");

  /* Two enabled plugins must never claim the same prefix. */
  for (size_t i = 0; p->enabled && i + 1 < c->nplugins; i++) {
    const bh__plugin_conf *o = &c->plugins[i];
    for (size_t j = 0; o->enabled && j < o->nmounts; j++)
      for (size_t k = 0; k < p->nmounts; k++)
        if (bh__mounts_overlap(o->mounts[j], p->mounts[k]))
          return bh__cfg_fail_kv(
              ld, s, mount,
              "mount '%s' is already mounted by [plugin.%s]: "
              "one plugin per prefix (prefixes may nest)",
              p->mounts[k], o->name);
  }
  return 0;
}
