/*
 * Inside config/: the loader's state and the helpers config.c (reading,
 * scanning, lookup) and sections.c ([server], [plugin.NAME]) share.
 * Nothing outside this folder includes it.
 */
#ifndef BH_CORE_CONFIG_LOADER_H
#define BH_CORE_CONFIG_LOADER_H

#include <stddef.h>

#include "config/config.h"

/* inih's fixed buffers (its defaults; Debian does not change them): longer
 * lines are split and longer names truncated silently, so refuse them. */
#define INI_NAME_MAX 50

/* One line inih hands to the handler, in order. */
typedef struct bh__cfg_event {
  int line;
  int cont; /* continuation of the previous key's value */
} bh__cfg_event;

typedef struct bh__cfg_loader {
  bh__config *cfg;
  const char *file;
  char *err;
  size_t errlen;
  int rc;       /* first error, 0 while none */
  int err_line; /* its line, to match ini_parse's answer */
  bh__cfg_event *ev;
  size_t nev, cursor;
  int syn_line; /* first line the scan found malformed */
  const char *syn_msg;
} bh__cfg_loader;

/* ASCII only: the daemon may run under any locale. */
#define IS_LOWER(c) ((c) >= 'a' && (c) <= 'z')
#define IS_UPPER(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

#define GROW(arr, n) bh__cfg_grow(&(arr), (n), sizeof(*(arr)))

/* config.c */
int bh__cfg_grow(void *arrp, size_t n, size_t size);
/* The first error wins; each returns the errno it recorded. */
int bh__cfg_fail_at(bh__cfg_loader *ld, int line, const char *sec,
                    const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An error about a stored value: its line, or the variable it came from. */
int bh__cfg_fail_kv(bh__cfg_loader *ld, const bh__section *s, const bh__kv *kv,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int bh__cfg_fail_oom(bh__cfg_loader *ld);
/* A user value made safe to quote in a one-line message. */
const char *bh__cfg_shown(const char *v, char *buf, size_t n);
/* 1 when v holds a control byte. */
int bh__cfg_has_ctl(const char *v);
bh__section *bh__cfg_find_section(bh__config *cfg, const char *name);
bh__kv *bh__cfg_find_kv(const bh__section *s, const char *key);
/* Stores an environment override in the section, as a line-0 value. */
int bh__cfg_set_env_kv(bh__cfg_loader *ld, const char *sec, const char *key);

/* sections.c */
/* [server]: every key typed and checked into ld->cfg. */
int bh__cfg_load_server(bh__cfg_loader *ld);
/* A plugin name: [a-z][a-z0-9_]{0,31}. */
int bh__cfg_valid_plugin_name(const char *n);
/* [plugin.NAME], section si: enabled, path, mounts, required. */
int bh__cfg_load_plugin(bh__cfg_loader *ld, size_t si);

#endif
