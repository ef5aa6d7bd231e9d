/*
 * Configuration: one INI file (libinih), or the embedded default when no
 * file is given. Sections:
 *   [server]            listeners, limits, paths, logs (typed, checked)
 *   [plugin.<name>]     enabled, path, mount, required, + free keys
 *   [auth], [upstream.<name>], [rate_limit.<name>]  kept as raw key/values
 *                       for the modules that own them (identity/auth_conf.c,
 *                       upstream/upstream_config.c, upstream/limits.c), whose
 *                       checks proc/load.c runs after parsing
 * Environment overrides: BULKHEAD_<SECTION>_<KEY>, section and key upper-
 * cased with every non-alphanumeric byte as '_' (BULKHEAD_SERVER_ADMIN_TOKEN,
 * BULKHEAD_PLUGIN_BILLING_SECRET_KEY). They win over the file and may supply
 * keys the file does not have, which is how secrets stay out of it.
 */
#ifndef BH_CORE_CONFIG_H
#define BH_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct bh__kv {
  char *key;
  char *value;
  int line; /* 0 when the value came from the environment */
} bh__kv;

typedef struct bh__section {
  char *name; /* "server", "plugin.auth", "upstream.idp" ... */
  int line;
  bh__kv *kv;
  size_t nkv;
} bh__section;

/* One line of a plugin's `routes` key: "METHOD PATTERN key=value ...",
 * overriding what the plugin's code declares for that route. */
typedef struct bh__route_conf {
  char *method;
  char *pattern;    /* exactly as the plugin registers it */
  char *rate_limit; /* NULL: as declared (or the mount's) */
  int retries;      /* -1: the mount's or the upstream's */
  int line;
} bh__route_conf;

typedef struct bh__plugin_conf {
  char *name;    /* from the section name */
  int enabled;   /* default 1 */
  char *path;    /* default "<name>.so"; relative paths resolve against
                    server.plugin_dir */
  char **mounts; /* "mount = /v1/auth, /v1/api-keys"; at least one */
  size_t nmounts;
  int required;           /* default 0 */
  char *rate_limit;       /* policy for routes that declare none */
  int retries;            /* upstream retries of its calls; -1: upstream's */
  bh__route_conf *routes; /* `routes` lines */
  size_t nroutes;
  const bh__section *section; /* all keys, free ones included */
  int line;
} bh__plugin_conf;

typedef struct bh__config {
  char *source; /* file path, or "(embedded default)" */

  /* [server] */
  char *listen;            /* "127.0.0.1:8080" */
  char *admin_listen;      /* "127.0.0.1:9901" */
  char *data_dir;          /* "./bulkhead-data" */
  char *plugin_dir;        /* NULL: next to the executable */
  char *admin_token;       /* NULL: admin API open (it listens on loopback) */
  char *metrics_token;     /* NULL: GET /metrics needs no token */
  int problem_flat;        /* problem_style = nested | flat */
  size_t max_header_bytes; /* 16384 */
  size_t max_body_bytes;   /* 1048576 */
  uint32_t header_timeout_ms;       /* 10000 */
  uint32_t body_timeout_ms;         /* 30000 */
  uint32_t keepalive_timeout_ms;    /* 75000 */
  uint32_t handler_timeout_ms;      /* 30000 */
  uint32_t max_connections;         /* 10000 */
  uint32_t max_connections_per_ip;  /* 0 = no per-address cap */
  uint32_t send_timeout_ms;         /* 30000: no write progress -> close */
  uint32_t keepalive_requests;      /* 1000 answers per connection */
  uint32_t lingering_time_ms;       /* 30000; 0 = no lingering close */
  uint32_t lingering_timeout_ms;    /* 5000 between reads while lingering */
  size_t lingering_max_bytes;       /* 16 MiB discarded at most */
  char *log_target;                 /* "stdout" */
  int log_level;                    /* BH__INFO */
  int log_format;                   /* log_format: enum bh__log_format */
  struct bh__cidr *trusted_proxies; /* whose X-Forwarded-For counts */
  size_t ntrusted_proxies;          /* 0: nobody's (the default) */
  char *login_page; /* "/login" (used by the session middleware) */
  int workers;      /* worker processes: 1; 0 = one process; -1 = auto */
  uint32_t drain_timeout_ms;    /* 10000 */
  uint32_t plugin_hang_ms;      /* 5000: a callback running longer is a hang */
  uint32_t quarantine_after;    /* 3 charges (crashes or hangs) ... */
  uint32_t quarantine_window_s; /* 60 ... within this window */

  struct bh__auth_conf *auth;   /* [auth], resolved by proc/load.c (identity/
                                   auth_conf.c); NULL after bh__config_load */
  struct bh__cors_conf *cors;   /* cors_* of [server] and [plugin.NAME],
                                   resolved by proc/load.c (gateway/cors.c);
                                   NULL after bh__config_load: no CORS */
  struct bh__redis_conf *redis; /* [redis], resolved by proc/load.c
                                   (upstream/redis_conf.c); NULL: none */

  bh__section *sections;
  size_t nsections;
  bh__plugin_conf *plugins; /* in file order */
  size_t nplugins;
} bh__config;

/* The configuration compiled into the binary (all first-party plugins). */
extern const char bh__config_default[];

/* Loads `path`, or the embedded default when path is NULL; applies the
 * environment overrides; checks every [server] key and every plugin
 * section (the other sections are checked by their owners: proc/load.c).
 * On error returns -EINVAL (or -ENOENT / -EACCES for the file)
 * and writes one line "FILE:LINE: [SECTION] KEY: problem" to err. */
int bh__config_load(const char *path, bh__config *cfg, char *err,
                    size_t errlen);
void bh__config_free(bh__config *cfg);

/* A section by name, or NULL. */
const bh__section *bh__config_section(const bh__config *cfg, const char *name);

/* A key of a section with the environment override applied at lookup time;
 * NULL when absent. Borrowed until bh__config_free (env values until the
 * environment changes). */
const char *bh__config_get(const bh__config *cfg, const char *section,
                           const char *key);
/* The same, and where the value came from in *line: its line in the file,
 * 0 from the environment, -1 absent. The one lookup every section's owner
 * uses (config.c, auth_conf.c, upstream_config.c, limits.c). */
const char *bh__config_get_at(const bh__config *cfg, const char *section,
                              const char *key, int *line);
/* The file line of `key` in section s, 0 when the file does not have it. */
int bh__config_line(const bh__section *s, const char *key);
/* The override's variable, BULKHEAD_<SECTION>_<KEY> (upper-cased, every
 * other byte '_'), in out; NULL when it does not fit. */
const char *bh__config_env_name(char *out, size_t n, const char *section,
                                const char *key);
/* true/yes/on/1 -> 1, false/no/off/0 -> 0 (any case), else -EINVAL. */
int bh__config_bool(const char *s);
/* Parses "host:port" / "[v6]:port"; 0 or -EINVAL. port 0 = ephemeral. */
int bh__config_parse_addr(const char *s, char *host, size_t hostlen, int *port);
/* 1 when `addr` (host:port) is localhost, 127.0.0.0/8 or [::1]. */
int bh__addr_is_loopback(const char *addr);
/* -EINVAL with a one-line `err` when admin_listen is not loopback and no
 * admin_token is set. */
int bh__config_admin_check(const bh__config *cfg, char *err, size_t errlen);

#endif
