/*
 * Inside upstream/: the core's own HTTP/1.1 client for http:// upstreams
 * (h1.c: requests and answers; h1_pool.c: connections, the per-upstream
 * pool, the resolver cache). Nothing outside this folder includes it.
 */
#ifndef BH_CORE_UPSTREAM_H1_H
#define BH_CORE_UPSTREAM_H1_H

#include <llhttp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/ltimer.h"
#include "upstream/client.h"

#define BH__H1_MAX_ADDRS 8

struct bh__h1conn {
  uv_tcp_t tcp;
  bh__ltimer timer; /* connect, answer or idle timeout */
  uv_connect_t creq;
  uv_write_t wreq;
  bh__h1pool *pool;
  bh__call *call; /* NULL while idle */
  llhttp_t parser;
  struct sockaddr_storage addrs[BH__H1_MAX_ADDRS]; /* left to try */
  int naddrs, ai;
  int connected, closing, reused, writing, in_exec;
  int got_bytes;   /* a byte of this request's answer came in */
  int done;        /* the answer is complete */
  int interim;     /* a 1xx is being parsed */
  int stream_head; /* the stream's on_head ran */
  int want_pause, read_paused;
  int in_value, prev_fold; /* obs-fold detection (h1.c) */
  int body_ready;          /* the head is out: a streamed body may follow */
  int body_open;           /* ... and its end has not been written */
  const char *exec_start;  /* the read being parsed */
  int handles;             /* handles still open, for the free */
  CURLcode err;
  bh__buf head; /* the request head, reused */
  bh__buf name, val, line;
  char *rbuf;
  bh__h1conn *next, *prev; /* the pool's idle list */
};

struct bh__h1pool {
  bh__client *cl;
  struct bh_upstream *u;
  char host[256]; /* for the resolver, without brackets */
  char port[8];
  char authority[300]; /* the Host line */
  char prefix[512];    /* the base URL's path */
  struct sockaddr_storage addrs[BH__H1_MAX_ADDRS];
  int naddrs;
  uint64_t addrs_expire_ms;
  uv_getaddrinfo_t gai;
  int resolving;
  int dns_failed; /* the last resolution failed */
  bh__h1conn *idle;
  size_t nidle, nconns;
  size_t nalloc; /* connections not yet freed (handles closing) */
  bh__call *wait_head, *wait_tail; /* calls waiting for a connection */
  int dead;                        /* the client is closing */
  bh__h1pool *next;                /* the client's list */
};

/* h1_pool.c */
/* 1 when this upstream's calls go on our client (http://, not curl). */
int bh__h1_usable(struct bh_upstream *u);
/* Starts the call's attempt: a pooled connection or a new one. 0 or -errno
 * (nothing started). */
int bh__h1_start(bh__call *call, uint32_t timeout_ms);
/* The attempt is over early (finish, cancel): its connection closes. */
void bh__h1_release(bh__call *call);
void bh__h1_close_all(bh__client *cl);
void bh__h1_pool_put(bh__h1conn *c);
void bh__h1_conn_close(bh__h1conn *c);
/* The attempt failed with rc: the connection closes, the verdict comes on
 * the next loop turn (never inside the caller's stack). */
void bh__h1_fail(bh__h1conn *c, CURLcode rc);
/* The connection died before any byte of an answer: a reused one is
 * replaced once when the request may be sent again. */
void bh__h1_broken(bh__h1conn *c);
void bh__h1_timeout(uv_timer_t *t);
/* call->timer's callback: the verdict in call->h1_rc. */
void bh__h1_deferred(uv_timer_t *t);

/* h1.c */
void bh__h1_assign(bh__h1conn *c, bh__call *call);
void bh__h1_connected(bh__h1conn *c);
void bh__h1_resume(bh__call *call);
void bh__h1_settings_ready(void);

/* h1_body.c */
/* The head of a call with a streamed body went out on c: what was held
 * follows, then the caller hears it may write. */
void bh__h1_body_ready(bh__h1conn *c);

#endif
