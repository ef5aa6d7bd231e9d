/*
 * The shared rate-limit backend (redis.c, redis_conf.c): [redis] parsed
 * at config load, one asynchronous hiredis connection per process on its
 * own loop, and the token-bucket script run in one round trip. When the
 * server is unreachable or slower than timeout_ms the process flags itself
 * down (state/shm.h) and its limits run on local buckets until a probe
 * answers in time again; the connection is re-made in the background.
 */
#ifndef BH_CORE_UPSTREAM_REDIS_H
#define BH_CORE_UPSTREAM_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "policy/ratelimit.h"

typedef struct bh__daemon bh__daemon;
struct bh__redis;

typedef struct bh__redis_conf {
  char *host;                /* TCP host, or NULL with unix_path */
  int port;                  /* 6379 */
  char *unix_path;           /* unix:///path/to/redis.sock */
  char *user;                /* ACL user (AUTH user password), or NULL */
  char *password;            /* NULL: no AUTH; wiped when freed */
  int db;                    /* SELECT db when > 0 */
  uint32_t timeout_ms;       /* 5: a check waits this long at most */
  uint32_t reconnect_max_ms; /* 5000: backoff ceiling */
  char shown[192];           /* the URL without its password */
} bh__redis_conf;

/* Parses [redis] (url with "@env:" / "@file:", timeout_ms,
 * reconnect_max_ms). *out is NULL when there is no [redis] section. 0, or
 * -errno with "file:line: [redis] key: ..." in err. */
int bh__redis_conf_load(const bh__config *cfg, bh__redis_conf **out, char *err,
                        size_t errlen);
void bh__redis_conf_free(bh__redis_conf *c);
/* Parses one URL: redis://[[user]:password@]host[:port][/db] or
 * unix:///path[?db=N]. 0 or -EINVAL with the reason in why (which never
 * holds the password). */
int bh__redis_url_parse(const char *url, bh__redis_conf *c, char *why,
                        size_t whylen);

/* Starts this process's connection when the configuration has [redis]
 * (d->redis stays NULL otherwise). 0 or -errno; a server that cannot be
 * reached is not an error: it is tried again in the background. */
int bh__redis_start(bh__daemon *d, const bh__redis_conf *conf);
/* Closes the connection and its timers; every check still waiting is
 * answered with -ECANCELED first. Idempotent. */
void bh__redis_stop(bh__daemon *d);

/* Called once per check: rc 0 with the server's answer, or -errno (timed
 * out, connection lost, script error) and the caller decides locally. */
typedef void (*bh__redis_take_cb)(void *arg, int rc, const bh__rl_result *r);

/* 1 while checks go to the server; 0 while this process is down. */
int bh__redis_shared(const struct bh__redis *r);
/* Takes one token of policy p for `key` on the server. 0: cb is called
 * exactly once later, within timeout_ms; -errno (down, out of memory):
 * nothing was sent and cb is never called. */
int bh__redis_take(struct bh__redis *r, const bh__rl_policy *p, const char *key,
                   bh__redis_take_cb cb, void *arg);

#endif
