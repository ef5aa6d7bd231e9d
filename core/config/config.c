/*
 * Configuration loader. libinih does the tokenizing; a scan of our own over
 * the same text mirrors inih's line rules so every value keeps its line
 * number (Debian builds inih without INI_HANDLER_LINENO) and so duplicate
 * keys can be told apart from multi-line continuations, which inih reports
 * identically.
 */
#include "config/config.h"

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
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "config/loader.h"

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
static void bh__vfail(bh__cfg_loader *ld, int rc, int line, const char *var,
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

int bh__cfg_fail_at(bh__cfg_loader *ld, int line, const char *sec,
                    const char *key, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bh__vfail(ld, -EINVAL, line, NULL, sec, key, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

int bh__cfg_fail_oom(bh__cfg_loader *ld) {
  if (!ld->rc) {
    ld->rc = -ENOMEM;
    ld->err_line = -1;
    if (ld->err && ld->errlen)
      snprintf(ld->err, ld->errlen, "%s: out of memory", ld->file);
  }
  return -ENOMEM;
}

/* Room for one more element in a malloc'd array; 0 or -ENOMEM. The
 * memcpy keeps the T ** -> void * round trip free of aliasing trouble. */
int bh__cfg_grow(void *arrp, size_t n, size_t size) {
  void *old, *a;
  memcpy(&old, arrp, sizeof old);
  if (!(a = realloc(old, (n + 1) * size))) return -ENOMEM;
  memcpy(arrp, &a, sizeof a);
  return 0;
}

/* BULKHEAD_<SECTION>_<KEY>; NULL when it would not fit. */
static const char *bh__env_name(char *out, size_t n, const char *sec,
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
int bh__cfg_fail_kv(bh__cfg_loader *ld, const bh__section *s, const bh__kv *kv,
                    const char *fmt, ...) {
  char var[256];
  va_list ap;
  va_start(ap, fmt);
  bh__vfail(ld, -EINVAL, kv->line,
            kv->line ? NULL : bh__env_name(var, sizeof var, s->name, kv->key),
            s->name, kv->key, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* A user value made safe to quote in a one-line message. */
const char *bh__cfg_shown(const char *v, char *buf, size_t n) {
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

int bh__cfg_has_ctl(const char *v) {
  for (; *v; v++)
    if ((unsigned char)*v < 0x20 || *v == 0x7f) return 1;
  return 0;
}

/* ---- sections and keys ------------------------------------------------ */

bh__section *bh__cfg_find_section(bh__config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nsections; i++)
    if (strcmp(cfg->sections[i].name, name) == 0) return &cfg->sections[i];
  return NULL;
}

bh__kv *bh__cfg_find_kv(const bh__section *s, const char *key) {
  for (size_t i = 0; s && i < s->nkv; i++)
    if (strcmp(s->kv[i].key, key) == 0) return &s->kv[i];
  return NULL;
}

static bh__section *bh__add_section(bh__config *cfg, const char *name,
                                    size_t len, int line) {
  if (GROW(cfg->sections, cfg->nsections)) return NULL;
  bh__section *s = &cfg->sections[cfg->nsections];
  memset(s, 0, sizeof(*s));
  if (!(s->name = strndup(name, len))) return NULL;
  s->line = line;
  cfg->nsections++;
  return s;
}

static bh__kv *bh__add_kv(bh__section *s, const char *key, const char *value,
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
int bh__cfg_set_env_kv(bh__cfg_loader *ld, const char *sec, const char *key) {
  char var[256];
  const char *v;
  if (!bh__env_name(var, sizeof var, sec, key) || !(v = getenv(var))) return 0;
  bh__section *s = bh__cfg_find_section(ld->cfg, sec);
  if (!s && !(s = bh__add_section(ld->cfg, sec, strlen(sec), 0)))
    return bh__cfg_fail_oom(ld);
  bh__kv *kv = bh__cfg_find_kv(s, key);
  if (!kv) return bh__add_kv(s, key, v, 0) ? 0 : bh__cfg_fail_oom(ld);
  char *dup = strdup(v);
  if (!dup) return bh__cfg_fail_oom(ld);
  free(kv->value);
  kv->value = dup;
  kv->line = 0;
  return 0;
}

/* ---- the line scan ----------------------------------------------------- */

/* inih's find_chars_or_comment: stops at one of `chars` or at a ';' that
 * follows whitespace (an inline comment). */
static const char *bh__find_cc(const char *s, const char *chars) {
  int was_space = 0;
  while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
    was_space = isspace((unsigned char)*s);
    s++;
  }
  return s;
}

static int bh__push_event(bh__cfg_loader *ld, int line, int cont) {
  if (GROW(ld->ev, ld->nev)) return bh__cfg_fail_oom(ld);
  ld->ev[ld->nev++] = (bh__cfg_event){line, cont};
  return 0;
}

/* inih will stop on this line too; keep a better word for it. */
static void bh__syntax(bh__cfg_loader *ld, int line, const char *msg) {
  if (!ld->syn_line) ld->syn_line = line, ld->syn_msg = msg;
}

/* Walks the text with inih's rules (ini.c, r55): records section headers
 * (rejecting a repeated one), the order of handler calls with their lines,
 * and what inih would mishandle silently. */
static int bh__scan(bh__cfg_loader *ld, const char *text, size_t len) {
  char line[INI_MAX_LINE + 1];
  char prev[INI_NAME_MAX] = "";
  int lineno = 0, blank_after_key = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', end - p);
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    lineno++;
    if (memchr(p, '\0', n))
      return bh__cfg_fail_at(ld, lineno, NULL, NULL, "NUL byte in the file");
    if (n + 1 >= INI_MAX_LINE)
      return bh__cfg_fail_at(
          ld, lineno, NULL, NULL,
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
        return bh__cfg_fail_at(
            ld, lineno, NULL, NULL,
            "indented line would continue the value of '%s'; "
            "remove the indentation",
            prev);
      if (bh__push_event(ld, lineno, 1)) return ld->rc;
    } else if (*s == '[') {
      const char *close = bh__find_cc(s + 1, "]");
      if (*close != ']') {
        bh__syntax(ld, lineno, "section header without a closing ']'");
        continue;
      }
      const char *rest = close + 1;
      while (isspace((unsigned char)*rest))
        rest++;
      if (*rest && *rest != ';' && *rest != '#')
        return bh__cfg_fail_at(ld, lineno, NULL, NULL, "text after ']'");
      size_t nlen = (size_t)(close - s - 1);
      if (nlen == 0 || nlen >= INI_NAME_MAX)
        return bh__cfg_fail_at(ld, lineno, NULL, NULL,
                               "section name must be 1 to %d bytes",
                               INI_NAME_MAX - 1);
      char name[INI_NAME_MAX];
      memcpy(name, s + 1, nlen);
      name[nlen] = '\0';
      bh__section *dup = bh__cfg_find_section(ld->cfg, name);
      if (dup)
        return bh__cfg_fail_at(
            ld, lineno, name, NULL,
            "section repeated (first on line %d); put all its "
            "keys under one header",
            dup->line);
      if (!bh__add_section(ld->cfg, name, nlen, lineno))
        return bh__cfg_fail_oom(ld);
      *prev = '\0';
      blank_after_key = 0;
    } else {
      const char *sep = bh__find_cc(s, "=:");
      if (*sep != '=' && *sep != ':') {
        bh__syntax(ld, lineno, "expected 'key = value' or '[section]'");
        continue;
      }
      const char *ke = sep;
      while (ke > s && isspace((unsigned char)ke[-1]))
        ke--;
      if ((size_t)(ke - s) >= INI_NAME_MAX)
        return bh__cfg_fail_at(ld, lineno, NULL, NULL,
                               "key longer than %d bytes", INI_NAME_MAX - 1);
      memcpy(prev, s, ke - s);
      prev[ke - s] = '\0';
      blank_after_key = 0;
      if (bh__push_event(ld, lineno, 0)) return ld->rc;
    }
  }
  return 0;
}

/* inih's callback: one call per scanned event, in the same order. */
static int bh__on_value(void *user, const char *sec, const char *key,
                        const char *value) {
  bh__cfg_loader *ld = user;
  if (ld->rc) return 1;
  if (ld->cursor >= ld->nev) {
    bh__cfg_fail_at(ld, 0, NULL, NULL,
                    "internal error: line tracking out of step");
    return 0;
  }
  const bh__cfg_event *ev = &ld->ev[ld->cursor++];
  bh__section *s = *sec ? bh__cfg_find_section(ld->cfg, sec) : NULL;
  if (!s) {
    bh__cfg_fail_at(ld, ev->line, NULL, key, "key outside of any [section]");
    return 0;
  }
  if (ev->cont && s->nkv) {
    /* A continuation joins the value with a newline, as configparser. */
    bh__kv *kv = &s->kv[s->nkv - 1];
    size_t a = strlen(kv->value), b = strlen(value);
    char *v = realloc(kv->value, a + b + 2);
    if (!v) return bh__cfg_fail_oom(ld), 0;
    v[a] = '\n';
    memcpy(v + a + 1, value, b + 1);
    kv->value = v;
    return 1;
  }
  if (!*key) {
    bh__cfg_fail_at(ld, ev->line, sec, NULL, "empty key name");
    return 0;
  }
  const bh__kv *dup = bh__cfg_find_kv(s, key);
  if (dup) {
    bh__cfg_fail_at(ld, ev->line, sec, key,
                    "duplicate key (first set on line %d)", dup->line);
    return 0;
  }
  if (!bh__add_kv(s, key, value, ev->line)) return bh__cfg_fail_oom(ld), 0;
  return 1;
}

/* ---- load / free / lookup ---------------------------------------------- */

static int bh__check_sections(bh__cfg_loader *ld) {
  static const char *const raw[] = {"upstream.", "rate_limit.", "composite."};
  for (size_t i = 0; i < ld->cfg->nsections; i++) {
    const bh__section *s = &ld->cfg->sections[i];
    if (strcmp(s->name, "server") == 0 || strcmp(s->name, "auth") == 0 ||
        strcmp(s->name, "redis") == 0 || strcmp(s->name, "store") == 0)
      continue;
    if (strncmp(s->name, "plugin.", 7) == 0) {
      if (!bh__cfg_valid_plugin_name(s->name + 7))
        return bh__cfg_fail_at(ld, s->line, s->name, NULL,
                               "plugin name must match [a-z][a-z0-9_]{0,31}");
      continue;
    }
    int ok = 0;
    for (size_t j = 0; j < 3 && !ok; j++) {
      size_t n = strlen(raw[j]);
      ok = strncmp(s->name, raw[j], n) == 0 && s->name[n] != '\0';
    }
    if (!ok)
      return bh__cfg_fail_at(
          ld, s->line, s->name, NULL,
          "unknown section (expected server, auth, redis, store, "
          "plugin.NAME, upstream.NAME, rate_limit.NAME or composite.NAME)");
  }
  return 0;
}

/* read(2) on a directory fails with EISDIR, which is the message we want. */
static int bh__read_all(const char *path, bh__buf *b) {
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
  bh__cfg_loader ld = {
      .cfg = cfg, .file = path ? path : EMBEDDED, .err = err, .errlen = errlen};
  bh__buf text;
  bh__buf_init(&text);
  memset(cfg, 0, sizeof(*cfg));
  if (err && errlen) err[0] = '\0';
  if (path) {
    int rc = bh__read_all(path, &text);
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
    bh__cfg_fail_oom(&ld);
    goto out;
  }
  if (bh__scan(&ld, src, len)) goto out;
  int line = ini_parse_string(src, bh__on_value, &ld);
  if (line < 0) {
    bh__cfg_fail_oom(&ld);
  } else if (line > 0 && ld.rc != -ENOMEM && (!ld.rc || ld.err_line != line)) {
    /* inih stopped on a line the handler did not reject: syntax. */
    ld.rc = 0;
    bh__cfg_fail_at(&ld, line, NULL, NULL, "%s",
                    line == ld.syn_line ? ld.syn_msg : "syntax error");
  } else if (!ld.rc && ld.cursor != ld.nev) {
    bh__cfg_fail_at(&ld, 0, NULL, NULL,
                    "internal error: line tracking out of step");
  }
  if (ld.rc || bh__check_sections(&ld) || bh__cfg_load_server(&ld)) goto out;
  for (size_t i = 0; i < cfg->nsections; i++)
    if (strncmp(cfg->sections[i].name, "plugin.", 7) == 0 &&
        bh__cfg_load_plugin(&ld, i))
      goto out;
  /* Sections no longer move: point each plugin at its own. */
  for (size_t i = 0; i < cfg->nplugins; i++) {
    char name[64];
    snprintf(name, sizeof name, "plugin.%s", cfg->plugins[i].name);
    cfg->plugins[i].section = bh__cfg_find_section(cfg, name);
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
  free(cfg->trusted_proxies);
  cfg->trusted_proxies = NULL;
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
    for (size_t j = 0; j < p->nroutes; j++) {
      free(p->routes[j].method);
      free(p->routes[j].pattern);
      free(p->routes[j].rate_limit);
    }
    free(p->routes);
    free(p->rate_limit);
    free(p->name);
    free(p->path);
  }
  free(cfg->plugins);
  memset(cfg, 0, sizeof(*cfg));
}

const bh__section *bh__config_section(const bh__config *cfg, const char *name) {
  if (!cfg || !name) return NULL;
  return bh__cfg_find_section((bh__config *)cfg, name);
}

const char *bh__config_get_at(const bh__config *cfg, const char *section,
                              const char *key, int *line) {
  char var[256];
  const char *v;
  *line = -1;
  if (!cfg || !section || !key) return NULL;
  if (bh__env_name(var, sizeof var, section, key) && (v = getenv(var))) {
    *line = 0;
    return v;
  }
  const bh__kv *kv = bh__cfg_find_kv(bh__config_section(cfg, section), key);
  if (kv == NULL) return NULL;
  *line = kv->line;
  return kv->value;
}

const char *bh__config_get(const bh__config *cfg, const char *section,
                           const char *key) {
  int line;
  return bh__config_get_at(cfg, section, key, &line);
}

int bh__config_line(const bh__section *s, const char *key) {
  int line = 0;
  for (size_t i = 0; s && i < s->nkv; i++)
    if (strcmp(s->kv[i].key, key) == 0) line = s->kv[i].line;
  return line;
}

const char *bh__config_env_name(char *out, size_t n, const char *section,
                                const char *key) {
  return bh__env_name(out, n, section, key);
}
