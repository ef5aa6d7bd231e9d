/*
 * Configuration loader. libinih does the tokenizing; a scan of our own over
 * the same text mirrors inih's line rules so every value keeps its line
 * number (Debian builds inih without INI_HANDLER_LINENO) and so duplicate
 * keys can be told apart from multi-line continuations, which inih reports
 * identically.
 */
#include "config.h"
#include "ratelimit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

const char bh__config_default[] =
    "; Embedded default: every first-party plugin, listening on loopback.\n"
    "[server]\n"
    "listen = 127.0.0.1:8080\n"
    "admin_listen = 127.0.0.1:9901\n"
    "data_dir = ./bulkhead-data\n"
    "\n"
    "; sessions: every [auth] key at its default (a generated secret)\n"
    "[auth]\n"
    "\n"
    "[plugin.auth]\n"
    "mount = /v1/auth, /v1/api-keys\n"
    "\n"
    "[plugin.billing]\n"
    "mount = /v1/billing\n"
    "\n"
    "[plugin.webhooks]\n"
    "mount = /v1/webhooks\n"
    "\n"
    "[plugin.ai]\n"
    "mount = /v1/ai\n"
    "\n"
    "; Providers: the demo simulator's address, so the zero-config daemon\n"
    "; never calls out. scripts/run.sh starts the simulator and points\n"
    "; these at it with BULKHEAD_UPSTREAM_<NAME>_URL.\n"
    "[upstream.billing]\n"
    "url = http://127.0.0.1:8090\n"
    "\n"
    "[upstream.ai]\n"
    "url = http://127.0.0.1:8090\n";

#define EMBEDDED "(embedded default)"
/* A config file is small; the cap keeps `-c /dev/zero` from eating RAM. */
#define MAX_FILE_BYTES (4u << 20)
/* inih's fixed buffers (its defaults; Debian does not change them): longer
 * lines are split and longer names truncated silently, so refuse them. */
#define INI_NAME_MAX 50

/* One line inih hands to the handler, in order. */
typedef struct event {
  int line;
  int cont; /* continuation of the previous key's value */
} event;

typedef struct loader {
  bh__config *cfg;
  const char *file;
  char *err;
  size_t errlen;
  int rc;       /* first error, 0 while none */
  int err_line; /* its line, to match ini_parse's answer */
  event *ev;
  size_t nev, cursor;
  int syn_line; /* first line the scan found malformed */
  const char *syn_msg;
} loader;

static void vfail(loader *ld, int rc, int line, const char *var,
                  const char *sec, const char *key, const char *fmt,
                  va_list ap) {
  if (ld->rc) return; /* the first error is the one worth reading */
  ld->rc = rc;
  ld->err_line = line;
  if (!ld->err || !ld->errlen) return;
  int n;
  if (var)
    n = snprintf(ld->err, ld->errlen, "ENV %s: ", var);
  else if (line > 0)
    n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->file, line);
  else
    n = snprintf(ld->err, ld->errlen, "%s: ", ld->file);
  if (n >= 0 && (size_t)n < ld->errlen && sec)
    n += snprintf(ld->err + n, ld->errlen - n, "[%s]%s%s: ", sec,
                  key ? " " : "", key ? key : "");
  else if (n >= 0 && (size_t)n < ld->errlen && key)
    n += snprintf(ld->err + n, ld->errlen - n, "%s: ", key);
  if (n >= 0 && (size_t)n < ld->errlen)
    vsnprintf(ld->err + n, ld->errlen - n, fmt, ap);
}

static int fail_at(loader *ld, int line, const char *sec, const char *key,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail_at(loader *ld, int line, const char *sec, const char *key,
                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(ld, -EINVAL, line, NULL, sec, key, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static int fail_oom(loader *ld) {
  if (!ld->rc) {
    ld->rc = -ENOMEM;
    ld->err_line = -1;
    if (ld->err && ld->errlen)
      snprintf(ld->err, ld->errlen, "%s: out of memory", ld->file);
  }
  return -ENOMEM;
}

/* ASCII only: the daemon may run under any locale. */
#define IS_LOWER(c) ((c) >= 'a' && (c) <= 'z')
#define IS_UPPER(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* Room for one more element in a malloc'd array; 0 or -ENOMEM. The
 * memcpy keeps the T ** -> void * round trip free of aliasing trouble. */
static int grow(void *arrp, size_t n, size_t size) {
  void *old, *a;
  memcpy(&old, arrp, sizeof old);
  if (!(a = realloc(old, (n + 1) * size))) return -ENOMEM;
  memcpy(arrp, &a, sizeof a);
  return 0;
}
#define GROW(arr, n) grow(&(arr), (n), sizeof(*(arr)))

/* BULKHEAD_<SECTION>_<KEY>; NULL when it would not fit. */
static const char *env_name(char *out, size_t n, const char *sec,
                            const char *key) {
  size_t ls = strlen(sec), lk = strlen(key);
  if (ls + lk + 11 > n) return NULL;
  memcpy(out, "BULKHEAD_", 9);
  char *p = out + 9;
  for (size_t i = 0; i < ls + 1 + lk; i++) {
    char c = i < ls ? sec[i] : i == ls ? '_' : key[i - ls - 1];
    *p++ = IS_LOWER(c)                  ? (char)(c - 'a' + 'A')
           : IS_UPPER(c) || IS_DIGIT(c) ? c
                                        : '_';
  }
  *p = '\0';
  return out;
}

/* An error about a stored value: its line, or the variable it came from. */
static int fail_kv(loader *ld, const bh__section *s, const bh__kv *kv,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail_kv(loader *ld, const bh__section *s, const bh__kv *kv,
                   const char *fmt, ...) {
  char var[256];
  va_list ap;
  va_start(ap, fmt);
  vfail(ld, -EINVAL, kv->line,
        kv->line ? NULL : env_name(var, sizeof var, s->name, kv->key), s->name,
        kv->key, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* A user value made safe to quote in a one-line message. */
static const char *shown(const char *v, char *buf, size_t n) {
  size_t i = 0;
  for (; v[i] && i + 4 < n; i++)
    buf[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
  if (v[i]) {
    memcpy(buf + i, "...", 3);
    i += 3;
  }
  buf[i] = '\0';
  return buf;
}

static int has_ctl(const char *v) {
  for (; *v; v++)
    if ((unsigned char)*v < 0x20 || *v == 0x7f) return 1;
  return 0;
}

/* ---- sections and keys ------------------------------------------------ */

static bh__section *find_section(bh__config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nsections; i++)
    if (strcmp(cfg->sections[i].name, name) == 0) return &cfg->sections[i];
  return NULL;
}

static bh__kv *find_kv(const bh__section *s, const char *key) {
  for (size_t i = 0; s && i < s->nkv; i++)
    if (strcmp(s->kv[i].key, key) == 0) return &s->kv[i];
  return NULL;
}

static bh__section *add_section(bh__config *cfg, const char *name, size_t len,
                                int line) {
  if (GROW(cfg->sections, cfg->nsections)) return NULL;
  bh__section *s = &cfg->sections[cfg->nsections];
  memset(s, 0, sizeof(*s));
  if (!(s->name = strndup(name, len))) return NULL;
  s->line = line;
  cfg->nsections++;
  return s;
}

static bh__kv *add_kv(bh__section *s, const char *key, const char *value,
                      int line) {
  if (GROW(s->kv, s->nkv)) return NULL;
  bh__kv *kv = &s->kv[s->nkv];
  kv->key = strdup(key);
  kv->value = strdup(value);
  kv->line = line;
  if (!kv->key || !kv->value) {
    free(kv->key);
    free(kv->value);
    return NULL;
  }
  s->nkv++;
  return kv;
}

/* Stores an environment override in the section, as a line-0 value. */
static int set_env_kv(loader *ld, const char *sec, const char *key) {
  char var[256];
  const char *v;
  if (!env_name(var, sizeof var, sec, key) || !(v = getenv(var))) return 0;
  bh__section *s = find_section(ld->cfg, sec);
  if (!s && !(s = add_section(ld->cfg, sec, strlen(sec), 0)))
    return fail_oom(ld);
  bh__kv *kv = find_kv(s, key);
  if (!kv) return add_kv(s, key, v, 0) ? 0 : fail_oom(ld);
  char *dup = strdup(v);
  if (!dup) return fail_oom(ld);
  free(kv->value);
  kv->value = dup;
  kv->line = 0;
  return 0;
}

/* ---- the line scan ----------------------------------------------------- */

/* inih's find_chars_or_comment: stops at one of `chars` or at a ';' that
 * follows whitespace (an inline comment). */
static const char *find_cc(const char *s, const char *chars) {
  int was_space = 0;
  while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
    was_space = isspace((unsigned char)*s);
    s++;
  }
  return s;
}

static int push_event(loader *ld, int line, int cont) {
  if (GROW(ld->ev, ld->nev)) return fail_oom(ld);
  ld->ev[ld->nev++] = (event){line, cont};
  return 0;
}

/* inih will stop on this line too; keep a better word for it. */
static void syntax(loader *ld, int line, const char *msg) {
  if (!ld->syn_line) ld->syn_line = line, ld->syn_msg = msg;
}

/* Walks the text with inih's rules (ini.c, r55): records section headers
 * (rejecting a repeated one), the order of handler calls with their lines,
 * and what inih would mishandle silently. */
static int scan(loader *ld, const char *text, size_t len) {
  char line[INI_MAX_LINE + 1];
  char prev[INI_NAME_MAX] = "";
  int lineno = 0, blank_after_key = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', end - p);
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    lineno++;
    if (memchr(p, '\0', n))
      return fail_at(ld, lineno, NULL, NULL, "NUL byte in the file");
    if (n + 1 >= INI_MAX_LINE)
      return fail_at(ld, lineno, NULL, NULL,
                     "line longer than %d bytes (split a long value over "
                     "indented continuation lines)",
                     INI_MAX_LINE - 2);
    memcpy(line, p, n);
    line[n] = '\0';
    p = nl ? nl + 1 : end;

    char *s = line;
    if (lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
      *--e = '\0';
    while (*s && isspace((unsigned char)*s))
      s++;

    if (*s == '\0' || *s == ';' || *s == '#') {
      if (*s == '\0' && *prev) blank_after_key = 1;
    } else if (*prev && s > line) {
      /* inih reads any indented line after a key as more of its value, a
       * header or "key = value" included: refuse the surprising cases. */
      if (*s == '[' || blank_after_key)
        return fail_at(ld, lineno, NULL, NULL,
                       "indented line would continue the value of '%s'; "
                       "remove the indentation",
                       prev);
      if (push_event(ld, lineno, 1)) return ld->rc;
    } else if (*s == '[') {
      const char *close = find_cc(s + 1, "]");
      if (*close != ']') {
        syntax(ld, lineno, "section header without a closing ']'");
        continue;
      }
      const char *rest = close + 1;
      while (isspace((unsigned char)*rest))
        rest++;
      if (*rest && *rest != ';' && *rest != '#')
        return fail_at(ld, lineno, NULL, NULL, "text after ']'");
      size_t nlen = (size_t)(close - s - 1);
      if (nlen == 0 || nlen >= INI_NAME_MAX)
        return fail_at(ld, lineno, NULL, NULL,
                       "section name must be 1 to %d bytes", INI_NAME_MAX - 1);
      char name[INI_NAME_MAX];
      memcpy(name, s + 1, nlen);
      name[nlen] = '\0';
      bh__section *dup = find_section(ld->cfg, name);
      if (dup)
        return fail_at(ld, lineno, name, NULL,
                       "section repeated (first on line %d); put all its "
                       "keys under one header",
                       dup->line);
      if (!add_section(ld->cfg, name, nlen, lineno)) return fail_oom(ld);
      *prev = '\0';
      blank_after_key = 0;
    } else {
      const char *sep = find_cc(s, "=:");
      if (*sep != '=' && *sep != ':') {
        syntax(ld, lineno, "expected 'key = value' or '[section]'");
        continue;
      }
      const char *ke = sep;
      while (ke > s && isspace((unsigned char)ke[-1]))
        ke--;
      if ((size_t)(ke - s) >= INI_NAME_MAX)
        return fail_at(ld, lineno, NULL, NULL, "key longer than %d bytes",
                       INI_NAME_MAX - 1);
      memcpy(prev, s, ke - s);
      prev[ke - s] = '\0';
      blank_after_key = 0;
      if (push_event(ld, lineno, 0)) return ld->rc;
    }
  }
  return 0;
}

/* inih's callback: one call per scanned event, in the same order. */
static int on_value(void *user, const char *sec, const char *key,
                    const char *value) {
  loader *ld = user;
  if (ld->rc) return 1;
  if (ld->cursor >= ld->nev) {
    fail_at(ld, 0, NULL, NULL, "internal error: line tracking out of step");
    return 0;
  }
  const event *ev = &ld->ev[ld->cursor++];
  bh__section *s = *sec ? find_section(ld->cfg, sec) : NULL;
  if (!s) {
    fail_at(ld, ev->line, NULL, key, "key outside of any [section]");
    return 0;
  }
  if (ev->cont && s->nkv) {
    /* A continuation joins the value with a newline, as configparser. */
    bh__kv *kv = &s->kv[s->nkv - 1];
    size_t a = strlen(kv->value), b = strlen(value);
    char *v = realloc(kv->value, a + b + 2);
    if (!v) return fail_oom(ld), 0;
    v[a] = '\n';
    memcpy(v + a + 1, value, b + 1);
    kv->value = v;
    return 1;
  }
  if (!*key) {
    fail_at(ld, ev->line, sec, NULL, "empty key name");
    return 0;
  }
  const bh__kv *dup = find_kv(s, key);
  if (dup) {
    fail_at(ld, ev->line, sec, key, "duplicate key (first set on line %d)",
            dup->line);
    return 0;
  }
  if (!add_kv(s, key, value, ev->line)) return fail_oom(ld), 0;
  return 1;
}

/* ---- value parsers ----------------------------------------------------- */

/* Strict decimal: digits only, no sign, no spaces, no suffix. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
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

static int valid_hostname(const char *h) {
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
  } else if (!valid_hostname(tmp)) {
    return -EINVAL; /* an unbracketed IPv6 address lands here too */
  }
  uint64_t p;
  if (strlen(colon + 1) > 5 || parse_u64(colon + 1, 65535, &p)) return -EINVAL;
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
  K_WORKERS
};

typedef struct skey {
  const char *name;
  enum kind kind;
  size_t off;
  const char *def; /* parsed like a file value; NULL: stays NULL */
  uint64_t min, max;
  const char *what; /* K_NUM: "a size in bytes" ... */
  int is_size;      /* K_NUM: size_t field, else uint32_t */
} skey;

#define OFF(f) offsetof(bh__config, f)
#define TEXT 0, 0, NULL, 0
#define BYTES "a size in bytes", 1
#define MS 100, 3600000, "a duration in milliseconds", 0
/* The one place the [server] defaults live (config.h repeats them). */
static const skey server_keys[] = {
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
    {"login_page", K_PAGE, OFF(login_page), "/login", TEXT},
    {"workers", K_WORKERS, OFF(workers), "1", TEXT},
    {"drain_timeout_ms", K_NUM, OFF(drain_timeout_ms), "10000", MS},
    {"plugin_hang_ms", K_NUM, OFF(plugin_hang_ms), "5000", MS},
    {"quarantine_after", K_NUM, OFF(quarantine_after), "3", 1, 1000,
     "a number of crashes or hangs", 0},
    {"quarantine_window_s", K_NUM, OFF(quarantine_window_s), "60", 1, 86400,
     "a duration in seconds", 0},
};
#define NSERVER_KEYS (sizeof server_keys / sizeof server_keys[0])

static int set_str(loader *ld, char **field, const char *v) {
  char *dup = strdup(v);
  if (!dup) return fail_oom(ld);
  free(*field);
  *field = dup;
  return 0;
}

static int server_value(loader *ld, const bh__section *s, const bh__kv *kv,
                        const skey *k) {
  char *base = (char *)ld->cfg;
  const char *v = kv->value;
  char q[80];
  if (has_ctl(v) && k->kind != K_TOKEN)
    return fail_kv(ld, s, kv, "control character or line break in '%s'",
                   shown(v, q, sizeof q));
  switch (k->kind) {
  case K_ADDR: {
    char host[64];
    struct in_addr a4;
    if (bh__config_parse_addr(v, host, sizeof host, NULL))
      return fail_kv(ld, s, kv,
                     "expected host:port or [ipv6]:port with a port between "
                     "0 and 65535, got '%s'",
                     shown(v, q, sizeof q));
    /* The listener does not resolve names: say so now, not at bind. */
    if (v[0] != '[' && strcmp(host, "localhost") != 0 &&
        inet_pton(AF_INET, host, &a4) != 1)
      return fail_kv(ld, s, kv,
                     "expected an IP address or localhost to listen on, "
                     "got '%s'",
                     shown(v, q, sizeof q));
    return set_str(ld, (char **)(base + k->off), v);
  }
  case K_PATH:
  case K_LOG:
    if (!*v) return fail_kv(ld, s, kv, "must not be empty");
    return set_str(ld, (char **)(base + k->off), v);
  case K_TOKEN:
    /* Never echo the token: error lines end up in logs. */
    if (strlen(v) < 16 || has_ctl(v))
      return fail_kv(ld, s, kv,
                     "must be at least 16 printable characters (got %zu)",
                     strlen(v));
    return set_str(ld, (char **)(base + k->off), v);
  case K_STYLE:
    if (strcmp(v, "nested") && strcmp(v, "flat"))
      return fail_kv(ld, s, kv, "expected nested or flat, got '%s'",
                     shown(v, q, sizeof q));
    *(int *)(base + k->off) = strcmp(v, "flat") == 0;
    return 0;
  case K_NUM: {
    uint64_t n;
    if (parse_u64(v, k->max, &n) || n < k->min)
      return fail_kv(ld, s, kv, "expected %s between %llu and %llu, got '%s'",
                     k->what, (unsigned long long)k->min,
                     (unsigned long long)k->max, shown(v, q, sizeof q));
    if (k->is_size)
      *(size_t *)(base + k->off) = (size_t)n;
    else
      *(uint32_t *)(base + k->off) = (uint32_t)n;
    return 0;
  }
  case K_LEVEL: {
    int lv = bh__log_level_parse(v);
    if (lv < 0)
      return fail_kv(ld, s, kv, "expected debug, info, warn or error, got '%s'",
                     shown(v, q, sizeof q));
    *(int *)(base + k->off) = lv;
    return 0;
  }
  case K_WORKERS: {
    uint64_t n;
    if (strcmp(v, "auto") == 0) {
      *(int *)(base + k->off) = -1;
      return 0;
    }
    if (parse_u64(v, 64, &n))
      return fail_kv(ld, s, kv,
                     "expected auto or a number of worker processes between "
                     "0 and 64, got '%s'",
                     shown(v, q, sizeof q));
    *(int *)(base + k->off) = (int)n;
    return 0;
  }
  case K_PAGE:
    /* It becomes a Location header: "//x" and "/\\x" leave the site. */
    if (v[0] != '/' || v[1] == '/' || v[1] == '\\' || strpbrk(v, " \t"))
      return fail_kv(ld, s, kv,
                     "expected a local path starting with a single '/' "
                     "(e.g. /login), got '%s'",
                     shown(v, q, sizeof q));
    return set_str(ld, (char **)(base + k->off), v);
  }
  return 0;
}

static int load_server(loader *ld) {
  static const bh__section defaults = {.name = "server"};
  for (size_t i = 0; i < NSERVER_KEYS; i++) {
    const skey *k = &server_keys[i];
    bh__kv d = {(char *)k->name, (char *)k->def, -1};
    if (d.value && server_value(ld, &defaults, &d, k)) return ld->rc;
  }
  for (size_t i = 0; i < NSERVER_KEYS; i++)
    if (set_env_kv(ld, "server", server_keys[i].name)) return ld->rc;
  const bh__section *s = find_section(ld->cfg, "server");
  for (size_t i = 0; s && i < s->nkv; i++) {
    const skey *k = NULL;
    for (size_t j = 0; j < NSERVER_KEYS && !k; j++)
      if (strcmp(server_keys[j].name, s->kv[i].key) == 0) k = &server_keys[j];
    if (!k) return fail_kv(ld, s, &s->kv[i], "unknown key");
    if (server_value(ld, s, &s->kv[i], k)) return ld->rc;
  }
  return 0;
}

/* ---- [plugin.NAME] ----------------------------------------------------- */

static int valid_plugin_name(const char *n) {
  size_t len = strlen(n);
  if (len < 1 || len > 32 || !IS_LOWER(n[0])) return 0;
  for (; *n; n++)
    if (!IS_LOWER(*n) && !IS_DIGIT(*n) && *n != '_') return 0;
  return 1;
}

static const char *mount_problem(const char *m) {
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
static int mounts_overlap(const char *a, const char *b) {
  return strcmp(a, b) == 0;
}

static int parse_mounts(loader *ld, const bh__section *s, const bh__kv *kv,
                        bh__plugin_conf *p) {
  char q[80];
  const char *v = kv->value;
  for (;;) {
    const char *comma = strchr(v, ',');
    const char *e = comma ? comma : v + strlen(v);
    while (v < e && isspace((unsigned char)*v))
      v++;
    while (e > v && isspace((unsigned char)e[-1]))
      e--;
    if (v == e) return fail_kv(ld, s, kv, "empty entry in the mount list");
    char *m = strndup(v, (size_t)(e - v));
    if (!m) return fail_oom(ld);
    if (GROW(p->mounts, p->nmounts)) {
      free(m);
      return fail_oom(ld);
    }
    char **a = p->mounts;
    a[p->nmounts++] = m;
    const char *why = mount_problem(m);
    if (why)
      return fail_kv(ld, s, kv, "mount '%s' %s", shown(m, q, sizeof q), why);
    for (size_t i = 0; i + 1 < p->nmounts; i++)
      if (strcmp(a[i], m) == 0)
        return fail_kv(ld, s, kv, "mount '%s' listed twice",
                       shown(m, q, sizeof q));
    if (!comma) return 0;
    v = comma + 1;
  }
}

static int plugin_bool(loader *ld, const bh__section *s, const bh__kv *kv,
                       int *out) {
  char q[80];
  int b = bh__config_bool(kv->value);
  if (b < 0)
    return fail_kv(ld, s, kv,
                   "expected true/false, yes/no, on/off or 1/0, got '%s'",
                   shown(kv->value, q, sizeof q));
  *out = b;
  return 0;
}

static int load_plugin(loader *ld, size_t si) {
  static const char *const typed[] = {"enabled", "path", "mount", "required"};
  bh__config *c = ld->cfg;
  const char *name = c->sections[si].name + strlen("plugin.");
  for (size_t i = 0; i < 4; i++)
    if (set_env_kv(ld, c->sections[si].name, typed[i])) return ld->rc;
  /* Taken after the overrides: they may have grown this section. */
  const bh__section *s = &c->sections[si];
  if (GROW(c->plugins, c->nplugins)) return fail_oom(ld);
  bh__plugin_conf *p = &c->plugins[c->nplugins++];
  memset(p, 0, sizeof(*p));
  p->enabled = 1;
  p->line = s->line;
  if (!(p->name = strdup(name))) return fail_oom(ld);

  const bh__kv *mount = NULL;
  for (size_t i = 0; i < s->nkv; i++) {
    const bh__kv *kv = &s->kv[i];
    if (strcmp(kv->key, "enabled") == 0) {
      if (plugin_bool(ld, s, kv, &p->enabled)) return ld->rc;
    } else if (strcmp(kv->key, "required") == 0) {
      if (plugin_bool(ld, s, kv, &p->required)) return ld->rc;
    } else if (strcmp(kv->key, "path") == 0) {
      if (!*kv->value || has_ctl(kv->value))
        return fail_kv(ld, s, kv,
                       "expected a file name or path of the plugin's .so");
      if (set_str(ld, &p->path, kv->value)) return ld->rc;
    } else if (strcmp(kv->key, "mount") == 0) {
      mount = kv;
      if (parse_mounts(ld, s, kv, p)) return ld->rc;
    }
    /* Any other key belongs to the plugin, read via bh__config_get. */
  }
  if (!p->path) {
    size_t n = strlen(name) + 4;
    if (!(p->path = malloc(n))) return fail_oom(ld);
    snprintf(p->path, n, "%s.so", name);
  }
  if (p->enabled && !p->nmounts)
    return fail_at(ld, s->line, s->name, "mount",
                   "required when the plugin is enabled (e.g. mount = /v1/%s)",
                   name);
  if (p->required && !p->enabled)
    return fail_kv(ld, s, find_kv(s, "required"),
                   "a required plugin cannot be disabled");

  /* Two enabled plugins must never claim the same prefix. */
  for (size_t i = 0; p->enabled && i + 1 < c->nplugins; i++) {
    const bh__plugin_conf *o = &c->plugins[i];
    for (size_t j = 0; o->enabled && j < o->nmounts; j++)
      for (size_t k = 0; k < p->nmounts; k++)
        if (mounts_overlap(o->mounts[j], p->mounts[k]))
          return fail_kv(ld, s, mount,
                         "mount '%s' is already mounted by [plugin.%s]",
                         p->mounts[k], o->name);
  }
  return 0;
}

/* ---- load / free / lookup ---------------------------------------------- */

static int check_sections(loader *ld) {
  static const char *const raw[] = {"upstream.", "rate_limit."};
  for (size_t i = 0; i < ld->cfg->nsections; i++) {
    const bh__section *s = &ld->cfg->sections[i];
    if (strcmp(s->name, "server") == 0 || strcmp(s->name, "auth") == 0)
      continue;
    if (strncmp(s->name, "plugin.", 7) == 0) {
      if (!valid_plugin_name(s->name + 7))
        return fail_at(ld, s->line, s->name, NULL,
                       "plugin name must match [a-z][a-z0-9_]{0,31}");
      continue;
    }
    int ok = 0;
    for (size_t j = 0; j < 2 && !ok; j++) {
      size_t n = strlen(raw[j]);
      ok = strncmp(s->name, raw[j], n) == 0 && s->name[n] != '\0';
    }
    if (!ok)
      return fail_at(ld, s->line, s->name, NULL,
                     "unknown section (expected server, auth, plugin.NAME, "
                     "upstream.NAME or rate_limit.NAME)");
  }
  return 0;
}

/* read(2) on a directory fails with EISDIR, which is the message we want. */
static int read_all(const char *path, bh__buf *b) {
  int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
  if (fd < 0) return -errno;
  for (;;) {
    char chunk[16384];
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      rc = r < 0 ? -errno : 0;
      break;
    }
    if (b->len + (size_t)r > MAX_FILE_BYTES) rc = -EFBIG;
    if (rc || bh__buf_append(b, chunk, (size_t)r)) {
      rc = rc ? rc : -ENOMEM;
      break;
    }
  }
  close(fd);
  return rc;
}

int bh__config_load(const char *path, bh__config *cfg, char *err,
                    size_t errlen) {
  loader ld = {
      .cfg = cfg, .file = path ? path : EMBEDDED, .err = err, .errlen = errlen};
  bh__buf text;
  bh__buf_init(&text);
  memset(cfg, 0, sizeof(*cfg));
  if (err && errlen) err[0] = '\0';
  if (path) {
    int rc = read_all(path, &text);
    if (rc) {
      if (err && errlen)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
      bh__buf_free(&text);
      return rc;
    }
  }
  const char *src = !path ? bh__config_default : text.len ? text.data : "";
  size_t len = path ? text.len : sizeof bh__config_default - 1;
  if (!(cfg->source = strdup(ld.file))) {
    fail_oom(&ld);
    goto out;
  }
  if (scan(&ld, src, len)) goto out;
  int line = ini_parse_string(src, on_value, &ld);
  if (line < 0) {
    fail_oom(&ld);
  } else if (line > 0 && ld.rc != -ENOMEM && (!ld.rc || ld.err_line != line)) {
    /* inih stopped on a line the handler did not reject: syntax. */
    ld.rc = 0;
    fail_at(&ld, line, NULL, NULL, "%s",
            line == ld.syn_line ? ld.syn_msg : "syntax error");
  } else if (!ld.rc && ld.cursor != ld.nev) {
    fail_at(&ld, 0, NULL, NULL, "internal error: line tracking out of step");
  }
  if (ld.rc || check_sections(&ld) || load_server(&ld)) goto out;
  for (size_t i = 0; i < cfg->nsections; i++)
    if (strncmp(cfg->sections[i].name, "plugin.", 7) == 0 &&
        load_plugin(&ld, i))
      goto out;
  for (size_t i = 0; i < cfg->nsections && !ld.rc; i++) {
    const bh__section *s = &cfg->sections[i];
    char why[512];
    int rc = 0;
    if (strncmp(s->name, "upstream.", 9) == 0) {
      rc = bh__upstream_config_check(cfg, s, why, sizeof why);
    } else if (strncmp(s->name, "rate_limit.", 11) == 0) {
      bh__rl_policy pol;
      rc = bh__limit_policy_parse(cfg, s->name + 11, &pol, why, sizeof why);
    }
    if (rc) {
      ld.rc = rc;
      if (err && errlen) snprintf(err, errlen, "%s", why);
    }
  }
  if (ld.rc) goto out;
  /* [auth]: secrets and key files resolved now, so -t and a reload refuse
   * what a worker would (auth_conf.c) */
  {
    int rc = bh__auth_conf_load(cfg, &cfg->auth, err, errlen);
    if (rc) {
      ld.rc = rc;
      goto out;
    }
  }
  /* Sections no longer move: point each plugin at its own. */
  for (size_t i = 0; i < cfg->nplugins; i++) {
    char name[64];
    snprintf(name, sizeof name, "plugin.%s", cfg->plugins[i].name);
    cfg->plugins[i].section = find_section(cfg, name);
  }
out:
  bh__buf_free(&text);
  free(ld.ev);
  if (ld.rc) bh__config_free(cfg);
  return ld.rc;
}

void bh__config_free(bh__config *cfg) {
  if (!cfg) return;
  char **strs[] = {&cfg->source,     &cfg->listen,     &cfg->admin_listen,
                   &cfg->data_dir,   &cfg->plugin_dir, &cfg->admin_token,
                   &cfg->log_target, &cfg->login_page, &cfg->metrics_token};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    free(*strs[i]);
  for (size_t i = 0; i < cfg->nsections; i++) {
    bh__section *s = &cfg->sections[i];
    for (size_t j = 0; j < s->nkv; j++) {
      free(s->kv[j].key);
      free(s->kv[j].value);
    }
    free(s->kv);
    free(s->name);
  }
  free(cfg->sections);
  for (size_t i = 0; i < cfg->nplugins; i++) {
    bh__plugin_conf *p = &cfg->plugins[i];
    for (size_t j = 0; j < p->nmounts; j++)
      free(p->mounts[j]);
    free(p->mounts);
    free(p->name);
    free(p->path);
  }
  free(cfg->plugins);
  bh__auth_conf_free(cfg->auth);
  memset(cfg, 0, sizeof(*cfg));
}

const bh__section *bh__config_section(const bh__config *cfg, const char *name) {
  if (!cfg || !name) return NULL;
  return find_section((bh__config *)cfg, name);
}

const char *bh__config_get(const bh__config *cfg, const char *section,
                           const char *key) {
  char var[256];
  const char *v;
  if (!cfg || !section || !key) return NULL;
  if (env_name(var, sizeof var, section, key) && (v = getenv(var))) return v;
  const bh__kv *kv = find_kv(bh__config_section(cfg, section), key);
  return kv ? kv->value : NULL;
}
