/*
 * One hiredis connection per process, on the process's own loop
 * (redis_uv.c), so a check never blocks the loop: the command
 * is written when the socket is writable and the answer read when it
 * arrives. Redis answers a connection's commands in order, so the checks
 * waiting for an answer form a FIFO whose head has the nearest deadline:
 * one timer serves them all. A check not answered within timeout_ms is
 * decided by the caller on local buckets, and so is every check while this
 * process is down; its late answer is dropped when it comes.
 *
 * Down: a connection lost or refused, an answer late or wrong. The process
 * flags itself in the shared mapping, and the daemon says one log line when
 * its first process goes down and one when its last comes back. While
 * down, a timer re-makes the connection (host names resolved off the loop)
 * or sends one PING at a time, with a backoff doubling up to
 * reconnect_max_ms; a PING answered within the probe limit brings the
 * process back to the shared buckets.
 *
 * The bucket script is sent by SCRIPT LOAD on each connection and run with
 * EVALSHA; before its digest is known, and once after a NOSCRIPT (a server
 * restarted or flushed), the script goes whole with EVAL.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "base/log.h"
#include "proc/daemon-t.h"
#include "state/shm.h"
#include "upstream/redis.h"
#include "upstream/redis_uv.h"

#define BH__REDIS_BACKOFF_MIN_MS 100
/* A PING this late (still unanswered) means the connection is wedged: it
 * is dropped and made anew. */
#define BH__REDIS_PROBE_STUCK_MS 3000
#define BH__REDIS_KEY_PREFIX "bulkhead:rl:"

/*
 * The token bucket on the server (used by redis.c only): the same integer
 * arithmetic as policy/ratelimit.c -- one token is window_ms units, quota
 * units come back per millisecond, the bucket holds burst * window_ms --
 * with the server's clock (TIME), so every instance reads one clock. One
 * EVALSHA is the whole check: refill, take, answer, expiry.
 *
 * KEYS[1] the bucket; ARGV cap, one token (window_ms), quota. Returns
 * {allowed, remaining, reset_s, retry_after_s} as bh__rl_result has them.
 * Numbers are written with %.0f: redis.call would print a Lua number with
 * 14 significant digits, and a bucket reaches 8.64e14 units.
 */
static const char bh__redis_bucket_lua[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local cap = tonumber(ARGV[1])\n"
    "local win = tonumber(ARGV[2])\n"
    "local q = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local v = redis.call('HMGET', KEYS[1], 'tok', 'last')\n"
    "local tok = tonumber(v[1])\n"
    "local last = tonumber(v[2])\n"
    "if tok == nil or last == nil then tok = cap; last = now end\n"
    "if now > last then\n"
    "  tok = math.min(cap, tok + (now - last) * q)\n"
    "  last = now\n"
    "end\n"
    "local allowed = 0\n"
    "if tok >= win then tok = tok - win; allowed = 1 end\n"
    "local per_s = q * 1000\n"
    "local retry = 0\n"
    "if allowed == 0 then retry = math.max(1, math.ceil((win - tok) / per_s)) "
    "end\n"
    "redis.call('HSET', KEYS[1], 'tok', string.format('%.0f', tok), 'last',\n"
    "           string.format('%.0f', last))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tok) / q) + 1000)\n"
    "return {allowed, math.floor(tok / win), math.ceil((cap - tok) / per_s), "
    "retry}\n";

typedef struct bh__rcheck {
  struct bh__redis *r;
  struct bh__rcheck *prev, *next; /* the waiting FIFO */
  uint64_t deadline;              /* loop time */
  int waiting;                    /* in the FIFO, cb not called yet */
  int resent;                     /* sent again as EVAL after NOSCRIPT */
  bh__redis_take_cb cb;
  void *arg;
  char key[192];
  char cap[24], win[24], quota[24];
} bh__rcheck;

struct bh__redis {
  bh__daemon *d;
  uv_loop_t *loop;
  const bh__redis_conf *conf;
  redisAsyncContext *ac;
  int connected;
  int shared; /* checks go to the server */
  int stopping;
  int resolving;
  int probing;
  uint64_t probe_sent_ns;
  uint32_t backoff_ms;
  int handles;            /* timers and a resolution still open: freed at 0 */
  uv_timer_t wait_timer;  /* the oldest waiting check's deadline */
  uv_timer_t retry_timer; /* reconnect or probe while down */
  uv_getaddrinfo_t gai;
  char sha[48];
  bh__rcheck *head, *tail;
};

static void bh__redis_connect(struct bh__redis *r);
static void bh__redis_drop(struct bh__redis *r);

/* Flags this process down (or up) in the shared mapping; the daemon's
 * transitions are counted and logged once, by whichever process makes
 * them. */
static void bh__redis_flag(struct bh__redis *r, int down, const char *why) {
  if (bh__shm_g == NULL) return;
  bh__shm_lock();
  volatile int32_t *mine =
      bh__shm_self ? &bh__shm_self->redis_down : &bh__shm_g->redis.single_down;
  int before = bh__shm_redis_down();
  *mine = down;
  int after = bh__shm_redis_down();
  bh__shm_redis *s = &bh__shm_g->redis;
  int change = (before == 0) != (after == 0);
  if (change) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->changed_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (after)
      s->down_total++;
    else
      s->up_total++;
  }
  if (down && why) snprintf(s->last_error, sizeof(s->last_error), "%s", why);
  bh__shm_unlock();
  if (!change) return;
  if (after)
    bh__logf(BH__WARN, "rate_limit_fallback",
             "redis %s: %s; rate limits with backend = redis use this "
             "instance's local buckets until it answers again",
             r->conf->shown, why ? why : "unreachable");
  else
    bh__logf(BH__INFO, "rate_limit_shared",
             "redis %s answers again; rate limits with backend = redis are "
             "shared again",
             r->conf->shown);
}

static void bh__redis_retry_tick(uv_timer_t *t);

/* While down, the retry timer runs (once per backoff step). */
static void bh__redis_retry_arm(struct bh__redis *r) {
  if (r->stopping || r->shared || uv_is_active((uv_handle_t *)&r->retry_timer))
    return;
  uv_timer_start(&r->retry_timer, bh__redis_retry_tick, r->backoff_ms, 0);
}

static void bh__redis_down(struct bh__redis *r, const char *why) {
  if (r->stopping) return;
  if (r->shared) {
    r->shared = 0;
    r->backoff_ms = BH__REDIS_BACKOFF_MIN_MS;
    bh__redis_flag(r, 1, why);
  } else if (why && bh__shm_g) {
    bh__shm_lock();
    snprintf(bh__shm_g->redis.last_error, sizeof(bh__shm_g->redis.last_error),
             "%s", why);
    bh__shm_unlock();
  }
  bh__redis_retry_arm(r);
}

static void bh__redis_up(struct bh__redis *r) {
  if (r->shared || r->stopping) return;
  r->shared = 1;
  r->backoff_ms = BH__REDIS_BACKOFF_MIN_MS;
  uv_timer_stop(&r->retry_timer);
  bh__redis_flag(r, 0, NULL);
}

/* ---- checks --------------------------------------------------------- */

static void bh__rcheck_unlink(struct bh__redis *r, bh__rcheck *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    r->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    r->tail = c->prev;
  c->prev = c->next = NULL;
}

static void bh__rcheck_decide(bh__rcheck *c, int rc, const bh__rl_result *res,
                              const char *why) {
  struct bh__redis *r = c->r;
  if (!c->waiting) return;
  c->waiting = 0;
  bh__rcheck_unlink(r, c);
  if (rc && rc != -ECANCELED) bh__redis_down(r, why);
  c->cb(c->arg, rc, res);
}

static int bh__rcheck_send(struct bh__redis *r, bh__rcheck *c);
static void bh__redis_script_reply(redisAsyncContext *ac, void *reply,
                                   void *priv);

static int bh__reply_result(const redisReply *rep, bh__rl_result *res) {
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) return -EPROTO;
  long long v[4];
  for (int i = 0; i < 4; i++) {
    if (rep->element[i]->type != REDIS_REPLY_INTEGER) return -EPROTO;
    v[i] = rep->element[i]->integer;
    if (v[i] < 0) return -EPROTO;
    if (v[i] > UINT32_MAX) v[i] = UINT32_MAX;
  }
  res->allowed = v[0] != 0;
  res->remaining = (uint32_t)v[1];
  res->reset_s = (uint32_t)v[2];
  res->retry_after_s = res->allowed ? 0 : (uint32_t)(v[3] ? v[3] : 1);
  return 0;
}

static void bh__rcheck_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  bh__rcheck *c = priv;
  struct bh__redis *r = c->r;
  redisReply *rep = reply;
  if (c->waiting && rep && rep->type == REDIS_REPLY_ERROR &&
      strncmp(rep->str, "NOSCRIPT", 8) == 0 && !c->resent) {
    /* the server lost the script (restart, SCRIPT FLUSH): once whole */
    c->resent = 1;
    if (r->sha[0] && r->ac) {
      /* once per loss: the checks after this one use EVALSHA again */
      r->sha[0] = '\0';
      redisAsyncCommand(r->ac, bh__redis_script_reply, r, "SCRIPT LOAD %s",
                        bh__redis_bucket_lua);
    }
    if (bh__rcheck_send(r, c) == 0) return;
  }
  if (c->waiting) {
    bh__rl_result res;
    char why[200];
    if (rep == NULL) {
      bh__rcheck_decide(c, r->stopping ? -ECANCELED : -ECONNRESET, NULL,
                        "connection lost");
    } else if (rep->type == REDIS_REPLY_ERROR) {
      snprintf(why, sizeof(why), "script error: %.160s", rep->str);
      bh__rcheck_decide(c, -EPROTO, NULL, why);
    } else if (bh__reply_result(rep, &res) != 0) {
      bh__rcheck_decide(c, -EPROTO, NULL, "unexpected answer to the script");
    } else {
      bh__rcheck_decide(c, 0, &res, NULL);
    }
  }
  free(c);
}

static int bh__rcheck_send(struct bh__redis *r, bh__rcheck *c) {
  if (r->ac == NULL) return -ENOTCONN;
  int rc;
  if (r->sha[0])
    rc = redisAsyncCommand(r->ac, bh__rcheck_reply, c,
                           "EVALSHA %s 1 %s %s %s %s", r->sha, c->key, c->cap,
                           c->win, c->quota);
  else
    rc = redisAsyncCommand(r->ac, bh__rcheck_reply, c, "EVAL %s 1 %s %s %s %s",
                           bh__redis_bucket_lua, c->key, c->cap, c->win,
                           c->quota);
  return rc == REDIS_OK ? 0 : -EIO;
}

static void bh__redis_wait_tick(uv_timer_t *t) {
  struct bh__redis *r = t->data;
  uint64_t now = uv_now(r->loop);
  char why[96];
  snprintf(why, sizeof(why), "no answer within timeout_ms = %u",
           (unsigned)r->conf->timeout_ms);
  while (r->head && r->head->deadline <= now) {
    if (bh__shm_g) bh__shm_count(&bh__shm_g->redis.timeouts_total);
    bh__rcheck_decide(r->head, -ETIMEDOUT, NULL, why);
  }
  if (r->head)
    uv_timer_start(t, bh__redis_wait_tick, r->head->deadline - now, 0);
}

int bh__redis_shared(const struct bh__redis *r) {
  return r && r->shared && r->ac != NULL && !r->stopping;
}

int bh__redis_take(struct bh__redis *r, const bh__rl_policy *p, const char *key,
                   bh__redis_take_cb cb, void *arg) {
  if (!bh__redis_shared(r)) return -ENOTCONN;
  bh__rcheck *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  c->r = r;
  c->cb = cb;
  c->arg = arg;
  uint64_t burst = p->burst ? p->burst : p->quota;
  uint64_t win = (uint64_t)p->window_s * 1000;
  snprintf(c->key, sizeof(c->key), BH__REDIS_KEY_PREFIX "%s:%s", p->name, key);
  snprintf(c->cap, sizeof(c->cap), "%llu", (unsigned long long)(burst * win));
  snprintf(c->win, sizeof(c->win), "%llu", (unsigned long long)win);
  snprintf(c->quota, sizeof(c->quota), "%u", (unsigned)p->quota);
  if (bh__rcheck_send(r, c) != 0) {
    free(c);
    return -EIO;
  }
  c->waiting = 1;
  c->deadline = uv_now(r->loop) + r->conf->timeout_ms;
  c->prev = r->tail;
  if (r->tail)
    r->tail->next = c;
  else
    r->head = c;
  r->tail = c;
  if (!uv_is_active((uv_handle_t *)&r->wait_timer))
    uv_timer_start(&r->wait_timer, bh__redis_wait_tick, r->conf->timeout_ms, 0);
  return 0;
}

/* ---- the connection -------------------------------------------------- */

/* A PING answered within this long brings a process back: a few deadlines,
 * so one slow answer under load does not keep it out. */
static uint64_t bh__redis_probe_limit_ms(const struct bh__redis *r) {
  uint64_t ms = (uint64_t)r->conf->timeout_ms * 10;
  return ms < 100 ? 100 : ms;
}

static void bh__redis_probe_reply(redisAsyncContext *ac, void *reply,
                                  void *priv) {
  struct bh__redis *r = priv;
  redisReply *rep = reply;
  r->probing = 0;
  if (rep == NULL || ac != r->ac) return;
  uint64_t rtt_ms = (uv_hrtime() - r->probe_sent_ns) / 1000000;
  if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0 &&
      rtt_ms <= bh__redis_probe_limit_ms(r))
    bh__redis_up(r);
}

static void bh__redis_probe(struct bh__redis *r) {
  if (r->ac == NULL || r->probing) return;
  if (redisAsyncCommand(r->ac, bh__redis_probe_reply, r, "PING") != REDIS_OK)
    return;
  r->probing = 1;
  r->probe_sent_ns = uv_hrtime();
}

static void bh__redis_retry_tick(uv_timer_t *t) {
  struct bh__redis *r = t->data;
  if (r->stopping || r->shared) return;
  uint64_t now_ns = uv_hrtime();
  if (r->ac && r->probing &&
      (now_ns - r->probe_sent_ns) / 1000000 > BH__REDIS_PROBE_STUCK_MS)
    bh__redis_drop(r); /* wedged: made anew below */
  if (r->ac == NULL) {
    if (!r->resolving) bh__redis_connect(r);
  } else if (r->connected) {
    bh__redis_probe(r);
  } else if ((now_ns - r->probe_sent_ns) / 1000000 > BH__REDIS_PROBE_STUCK_MS) {
    bh__redis_drop(r); /* a connect that never completes */
    bh__redis_connect(r);
  }
  r->backoff_ms *= 2;
  if (r->backoff_ms > r->conf->reconnect_max_ms)
    r->backoff_ms = r->conf->reconnect_max_ms;
  bh__redis_retry_arm(r);
}

/* AUTH and SELECT: a refusal drops the connection (tried again later). */
static void bh__redis_setup_reply(redisAsyncContext *ac, void *reply,
                                  void *priv) {
  struct bh__redis *r = priv;
  redisReply *rep = reply;
  if (rep == NULL || rep->type != REDIS_REPLY_ERROR || ac != r->ac) return;
  char why[200];
  snprintf(why, sizeof(why), "connection set-up refused: %.160s", rep->str);
  bh__redis_drop(r);
  bh__redis_down(r, why);
}

static void bh__redis_script_reply(redisAsyncContext *ac, void *reply,
                                   void *priv) {
  struct bh__redis *r = priv;
  redisReply *rep = reply;
  if (rep == NULL || ac != r->ac) return;
  if (rep->type == REDIS_REPLY_STRING && rep->len < sizeof(r->sha))
    snprintf(r->sha, sizeof(r->sha), "%s", rep->str);
}

static void bh__redis_on_connect(const redisAsyncContext *ac, int status) {
  struct bh__redis *r = ac->data;
  if (ac != r->ac) return;
  if (status != REDIS_OK) {
    char why[200];
    snprintf(why, sizeof(why), "cannot connect: %.160s", ac->errstr);
    r->ac = NULL; /* hiredis frees it after this callback */
    r->connected = 0;
    bh__redis_down(r, why);
    return;
  }
  r->connected = 1;
  if (!r->shared) bh__redis_probe(r);
}

static void bh__redis_on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  struct bh__redis *r = ac->data;
  if (ac != r->ac) return; /* dropped by us */
  char why[200];
  snprintf(why, sizeof(why), "connection lost: %.160s",
           ac->errstr[0] ? ac->errstr : "closed by the server");
  r->ac = NULL;
  r->connected = 0;
  r->probing = 0;
  r->sha[0] = '\0';
  bh__redis_down(r, why);
}

static void bh__redis_attach(struct bh__redis *r, redisAsyncContext *ac) {
  char why[200];
  if (ac == NULL || ac->err) {
    snprintf(why, sizeof(why), "cannot connect: %.160s",
             ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    bh__redis_down(r, why);
    return;
  }
  ac->data = r;
  if (bh__redis_uv_attach(ac, r->loop) != 0) {
    redisAsyncFree(ac);
    bh__redis_down(r, "cannot attach the connection to the loop");
    return;
  }
  redisAsyncSetConnectCallback(ac, bh__redis_on_connect);
  redisAsyncSetDisconnectCallback(ac, bh__redis_on_disconnect);
  r->ac = ac;
  r->probe_sent_ns = uv_hrtime(); /* the connect's start, for the retry tick */
  const bh__redis_conf *c = r->conf;
  if (c->password && c->user)
    redisAsyncCommand(ac, bh__redis_setup_reply, r, "AUTH %s %s", c->user,
                      c->password);
  else if (c->password)
    redisAsyncCommand(ac, bh__redis_setup_reply, r, "AUTH %s", c->password);
  if (c->db > 0)
    redisAsyncCommand(ac, bh__redis_setup_reply, r, "SELECT %d", c->db);
  redisAsyncCommand(ac, bh__redis_script_reply, r, "SCRIPT LOAD %s",
                    bh__redis_bucket_lua);
}

static void bh__redis_resolved(uv_getaddrinfo_t *g, int status,
                               struct addrinfo *ai) {
  struct bh__redis *r = g->data;
  r->resolving = 0;
  if (r->stopping) {
    uv_freeaddrinfo(ai);
    if (--r->handles == 0) free(r);
    return;
  }
  r->handles--;
  char ip[INET6_ADDRSTRLEN] = "";
  if (status == 0 && ai) {
    const void *addr =
        ai->ai_family == AF_INET6
            ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
            : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    inet_ntop(ai->ai_family, addr, ip, sizeof(ip));
  }
  uv_freeaddrinfo(ai);
  if (ip[0] == '\0') {
    char why[200];
    snprintf(why, sizeof(why), "cannot resolve %.100s: %s", r->conf->host,
             status ? uv_strerror(status) : "no address");
    bh__redis_down(r, why);
    return;
  }
  bh__redis_attach(r, redisAsyncConnect(ip, r->conf->port));
}

/* A host name is resolved off the loop (hiredis would block in
 * getaddrinfo); an address or a socket path connects at once. */
static void bh__redis_connect(struct bh__redis *r) {
  const bh__redis_conf *c = r->conf;
  if (c->unix_path) {
    bh__redis_attach(r, redisAsyncConnectUnix(c->unix_path));
    return;
  }
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, c->host, buf) == 1 ||
      inet_pton(AF_INET6, c->host, buf) == 1) {
    bh__redis_attach(r, redisAsyncConnect(c->host, c->port));
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r->gai.data = r;
  if (uv_getaddrinfo(r->loop, &r->gai, bh__redis_resolved, c->host, NULL,
                     &hints) != 0) {
    bh__redis_down(r, "cannot start resolving the host");
    return;
  }
  r->resolving = 1;
  r->handles++;
}

/* Drops the connection: its waiting checks are answered with an error by
 * hiredis (synchronously, or once the callback running now returns). */
static void bh__redis_drop(struct bh__redis *r) {
  redisAsyncContext *ac = r->ac;
  if (ac == NULL) return;
  r->ac = NULL;
  r->connected = 0;
  r->probing = 0;
  r->sha[0] = '\0';
  redisAsyncFree(ac);
}

/* ---- life cycle ------------------------------------------------------- */

int bh__redis_start(bh__daemon *d, const bh__redis_conf *conf) {
  d->redis = NULL;
  if (conf == NULL) return 0;
  struct bh__redis *r = calloc(1, sizeof(*r));
  if (r == NULL) return -ENOMEM;
  r->d = d;
  r->loop = d->loop;
  r->conf = conf;
  r->shared = 1; /* until the first failure says otherwise */
  r->backoff_ms = BH__REDIS_BACKOFF_MIN_MS;
  uv_timer_init(d->loop, &r->wait_timer);
  uv_timer_init(d->loop, &r->retry_timer);
  r->wait_timer.data = r->retry_timer.data = r;
  /* neither keeps a draining loop alive */
  uv_unref((uv_handle_t *)&r->wait_timer);
  uv_unref((uv_handle_t *)&r->retry_timer);
  r->handles = 2;
  d->redis = r;
  bh__redis_connect(r);
  return 0;
}

static void bh__redis_closed(uv_handle_t *h) {
  struct bh__redis *r = h->data;
  if (--r->handles == 0) free(r);
}

void bh__redis_stop(bh__daemon *d) {
  struct bh__redis *r = d->redis;
  if (r == NULL) return;
  d->redis = NULL;
  r->stopping = 1;
  bh__redis_drop(r); /* answers every waiting check (-ECANCELED) */
  while (r->head)
    bh__rcheck_decide(r->head, -ECANCELED, NULL, NULL);
  if (r->resolving) uv_cancel((uv_req_t *)&r->gai);
  uv_timer_stop(&r->wait_timer);
  uv_timer_stop(&r->retry_timer);
  uv_close((uv_handle_t *)&r->wait_timer, bh__redis_closed);
  uv_close((uv_handle_t *)&r->retry_timer, bh__redis_closed);
}
