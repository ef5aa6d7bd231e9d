/*
 * Connections of the core's HTTP/1.1 client (h1.c), pooled per upstream
 * per worker: keep-alive reuse (most recently used first), at most
 * max_idle idle ones for idle_timeout_ms, at most max_connections in all
 * (further calls wait their turn), an idle connection the upstream closes
 * dropped at once. Addresses come from uv_getaddrinfo (the loop's thread
 * pool), cached for dns_ttl_ms; a connect failure tries the next address.
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/h1.h"
#include "upstream/limits.h"

int bh__h1_usable(struct bh_upstream *u) {
  return !u->transport_curl && strncmp(u->base_url, "http://", 7) == 0;
}

/* http://host[:port][/prefix]; -EINVAL for what libcurl should keep (user
 * info, an odd authority). */
static int bh__h1_parse_url(bh__h1pool *p, const char *url) {
  const char *a = url + 7;
  size_t al = strcspn(a, "/?#");
  if (al == 0 || al >= sizeof(p->authority) || memchr(a, '@', al))
    return -EINVAL;
  memcpy(p->authority, a, al);
  p->authority[al] = '\0';
  const char *hp = p->authority, *port = NULL;
  size_t hl;
  if (hp[0] == '[') {
    const char *e = strchr(hp, ']');
    if (e == NULL) return -EINVAL;
    hl = (size_t)(e - hp - 1);
    memcpy(p->host, hp + 1, hl);
    if (e[1] == ':')
      port = e + 2;
    else if (e[1] != '\0')
      return -EINVAL;
  } else {
    const char *col = strchr(hp, ':');
    hl = col ? (size_t)(col - hp) : strlen(hp);
    memcpy(p->host, hp, hl);
    if (col) port = col + 1;
  }
  p->host[hl] = '\0';
  if (hl == 0) return -EINVAL;
  if (port) {
    size_t pl = strlen(port);
    if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl) return -EINVAL;
    memcpy(p->port, port, pl + 1);
  } else {
    strcpy(p->port, "80");
  }
  const char *path = a + al;
  if (strlen(path) >= sizeof(p->prefix) || strpbrk(path, "?#")) return -EINVAL;
  strcpy(p->prefix, path);
  return 0;
}

static bh__h1pool *bh__h1_pool_get(bh__call *call) {
  struct bh_upstream *u = call->u;
  if (u->pool) return u->pool;
  bh__h1pool *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  if (bh__h1_parse_url(p, u->base_url) != 0) {
    free(p);
    u->transport_curl = 1; /* libcurl takes it from now on */
    return NULL;
  }
  p->cl = call->cl;
  p->u = u;
  p->next = call->cl->pools;
  call->cl->pools = p;
  u->pool = p;
  bh__h1_settings_ready();
  return p;
}

static void bh__h1_pool_maybe_free(bh__h1pool *p) {
  if (!p->dead || p->nalloc || p->resolving) return;
  free(p);
}

/* ---------------------------------------------------------------------- */
/* Connections                                                             */
/* ---------------------------------------------------------------------- */

static void bh__h1_conn_freed(uv_handle_t *h) {
  bh__h1conn *c = h->data;
  if (--c->handles) return;
  bh__h1pool *p = c->pool;
  bh__buf_free(&c->head);
  bh__buf_free(&c->name);
  bh__buf_free(&c->val);
  bh__buf_free(&c->line);
  free(c->rbuf);
  free(c);
  p->nalloc--;
  bh__h1_pool_maybe_free(p);
}

static void bh__h1_idle_remove(bh__h1conn *c) {
  bh__h1pool *p = c->pool;
  if (c->prev)
    c->prev->next = c->next;
  else if (p->idle == c)
    p->idle = c->next;
  else
    return;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  p->nidle--;
}

static void bh__h1_serve(bh__h1pool *p);

void bh__h1_conn_close(bh__h1conn *c) {
  if (c->closing) return;
  c->closing = 1;
  bh__h1pool *p = c->pool;
  if (c->call == NULL) bh__h1_idle_remove(c);
  if (c->call) {
    c->call->h1 = NULL;
    c->call = NULL;
  }
  p->nconns--;
  uv_close((uv_handle_t *)&c->tcp, bh__h1_conn_freed);
  uv_close(bh__ltimer_handle(&c->timer), bh__h1_conn_freed);
  /* a slot is free: the next waiting call may have it */
  if (!p->dead) bh__h1_serve(p);
}

static void bh__h1_connect_cb(uv_connect_t *r, int status);

/* A new connection for call, to the pool's addresses from index ai. */
static void bh__h1_conn_open(bh__h1pool *p, bh__call *call,
                             const struct sockaddr_storage *addrs, int naddrs,
                             int ai) {
  bh__h1conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    call->h1_rc = CURLE_OUT_OF_MEMORY;
    uv_timer_start(&call->timer, bh__h1_deferred, 0, 0);
    return;
  }
  c->pool = p;
  memcpy(c->addrs, addrs, (size_t)naddrs * sizeof(*addrs));
  c->naddrs = naddrs;
  c->ai = ai;
  bh__buf_init(&c->head);
  bh__buf_init(&c->name);
  bh__buf_init(&c->val);
  bh__buf_init(&c->line);
  uv_loop_t *loop = p->cl->d->loop;
  uv_tcp_init(loop, &c->tcp);
  bh__ltimer_init(loop, &c->timer);
  c->tcp.data = c->timer.t.data = c->creq.data = c;
  c->handles = 2;
  p->nconns++;
  p->nalloc++;
  c->call = call;
  call->h1 = c;
  /* the connect timeout, within what the attempt has left */
  uint64_t now = bh__ms(p->cl);
  uint64_t left = call->h1_deadline > now ? call->h1_deadline - now : 1;
  if (p->u->connect_timeout_ms < left) left = p->u->connect_timeout_ms;
  bh__ltimer_start(&c->timer, bh__h1_timeout, left);
  int rc =
      uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->addrs[ai],
                     bh__h1_connect_cb);
  if (rc) bh__h1_fail(c, CURLE_COULDNT_CONNECT);
}

static void bh__h1_connect_cb(uv_connect_t *r, int status) {
  bh__h1conn *c = r->data;
  if (c->closing || c->call == NULL) return;
  if (status == 0) {
    bh__h1_connected(c);
    return;
  }
  bh__call *call = c->call;
  if (c->ai + 1 < c->naddrs) {
    /* the next address, on a new socket (a failed one cannot connect
     * again) */
    bh__h1pool *p = c->pool;
    struct sockaddr_storage addrs[BH__H1_MAX_ADDRS];
    int n = c->naddrs, ai = c->ai + 1;
    memcpy(addrs, c->addrs, sizeof(addrs));
    bh__h1_conn_close(c); /* busy: not in the idle list */
    bh__h1_conn_open(p, call, addrs, n, ai);
    return;
  }
  bh__h1_fail(c, status == UV_ETIMEDOUT ? CURLE_OPERATION_TIMEDOUT
                                        : CURLE_COULDNT_CONNECT);
}

void bh__h1_timeout(uv_timer_t *t) {
  bh__h1conn *c = t->data;
  if (c->closing) return;
  if (c->call == NULL) {
    bh__h1_conn_close(c); /* idle_timeout_ms */
    return;
  }
  bh__h1_fail(c, CURLE_OPERATION_TIMEDOUT);
}

void bh__h1_deferred(uv_timer_t *t) {
  bh__call *call = t->data;
  bh__attempt_done(call, call->h1_rc);
}

void bh__h1_fail(bh__h1conn *c, CURLcode rc) {
  bh__call *call = c->call;
  bh__h1_conn_close(c); /* detaches the call */
  if (call) {
    call->h1_rc = rc;
    uv_timer_start(&call->timer, bh__h1_deferred, 0, 0);
  }
}

/* Safe to send again: nothing reached the upstream's application, or it
 * would do no harm twice. */
static int bh__h1_resendable(bh__call *call) {
  return !(call->flags & BH_CALL_NO_RETRY) &&
         bh__retry_method_ok(call->method, call->flags & BH_CALL_RETRY_SAFE);
}

void bh__h1_broken(bh__h1conn *c) {
  bh__call *call = c->call;
  if (call && c->reused && !call->h1_resent && bh__h1_resendable(call)) {
    /* the upstream closed a pooled connection as we reused it: once more,
     * on a new connection, not counted as an attempt */
    bh__h1pool *p = c->pool;
    call->h1_resent = 1;
    call->h1 = NULL;
    bh__h1_conn_close(c);
    call->h1_fresh = 1;
    if (p->dead) {
      call->h1_rc = CURLE_RECV_ERROR;
      uv_timer_start(&call->timer, bh__h1_deferred, 0, 0);
      return;
    }
    bh__h1_conn_open(p, call, p->addrs, p->naddrs, 0);
    return;
  }
  bh__h1_fail(c, c->got_bytes || c->writing ? CURLE_RECV_ERROR
                                            : CURLE_GOT_NOTHING);
}

void bh__h1_pool_put(bh__h1conn *c) {
  bh__h1pool *p = c->pool;
  struct bh_upstream *u = p->u;
  if (p->dead || c->read_paused) {
    bh__h1_conn_close(c);
    return;
  }
  c->reused = 1;
  /* a waiting call takes it at once */
  for (bh__call *w = p->wait_head; w; w = w->h1_wait_next) {
    if (w->h1_fresh) continue;
    bh__call **pp = &p->wait_head;
    bh__call *prev = NULL;
    while (*pp != w) {
      prev = *pp;
      pp = &(*pp)->h1_wait_next;
    }
    *pp = w->h1_wait_next;
    if (p->wait_tail == w) p->wait_tail = prev;
    w->h1_waiting = 0;
    w->h1_wait_next = NULL;
    uv_timer_stop(&w->timer);
    bh__h1_assign(c, w);
    return;
  }
  if (p->nidle >= u->max_idle) {
    bh__h1_conn_close(c);
    return;
  }
  c->prev = NULL;
  c->next = p->idle;
  if (p->idle) p->idle->prev = c;
  p->idle = c;
  p->nidle++;
  /* still reading: an upstream closing it is seen at once */
  bh__ltimer_start(&c->timer, bh__h1_timeout, u->idle_timeout_ms);
}

/* ---------------------------------------------------------------------- */
/* Waiting calls, the resolver                                             */
/* ---------------------------------------------------------------------- */

static void bh__h1_wait_remove(bh__call *call) {
  bh__h1pool *p = call->u->pool;
  if (!call->h1_waiting || p == NULL) return;
  bh__call **pp = &p->wait_head, *prev = NULL;
  while (*pp && *pp != call) {
    prev = *pp;
    pp = &(*pp)->h1_wait_next;
  }
  if (*pp) *pp = call->h1_wait_next;
  if (p->wait_tail == call) p->wait_tail = prev;
  call->h1_waiting = 0;
  call->h1_wait_next = NULL;
}

static void bh__h1_wait_timeout(uv_timer_t *t) {
  bh__call *call = t->data;
  bh__h1_wait_remove(call);
  bh__attempt_done(call, CURLE_OPERATION_TIMEDOUT);
}

static void bh__h1_resolve(bh__h1pool *p);

static void bh__h1_gai_cb(uv_getaddrinfo_t *g, int status,
                          struct addrinfo *res) {
  bh__h1pool *p = g->data;
  p->resolving = 0;
  if (p->dead) {
    uv_freeaddrinfo(res);
    bh__h1_pool_maybe_free(p);
    return;
  }
  int n = 0;
  for (struct addrinfo *a = res; status == 0 && a && n < BH__H1_MAX_ADDRS;
       a = a->ai_next) {
    if (a->ai_addrlen > sizeof(p->addrs[0])) continue;
    memset(&p->addrs[n], 0, sizeof(p->addrs[n]));
    memcpy(&p->addrs[n++], a->ai_addr, a->ai_addrlen);
  }
  uv_freeaddrinfo(res);
  if (n == 0) {
    /* every call that needed an address fails, as libcurl's did */
    p->naddrs = 0;
    p->dns_failed = 1;
    while (p->wait_head) {
      bh__call *call = p->wait_head;
      bh__h1_wait_remove(call);
      call->h1_rc = CURLE_COULDNT_RESOLVE_HOST;
      uv_timer_start(&call->timer, bh__h1_deferred, 0, 0);
    }
    return;
  }
  p->naddrs = n;
  p->dns_failed = 0;
  p->addrs_expire_ms = bh__ms(p->cl) + p->u->dns_ttl_ms;
  bh__h1_serve(p);
}

static void bh__h1_resolve(bh__h1pool *p) {
  if (p->resolving) return;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  p->gai.data = p;
  p->resolving = 1;
  if (uv_getaddrinfo(p->cl->d->loop, &p->gai, bh__h1_gai_cb, p->host, p->port,
                     &hints) != 0) {
    p->resolving = 0;
    while (p->wait_head) {
      bh__call *call = p->wait_head;
      bh__h1_wait_remove(call);
      call->h1_rc = CURLE_COULDNT_RESOLVE_HOST;
      uv_timer_start(&call->timer, bh__h1_deferred, 0, 0);
    }
  }
}

/* Gives waiting calls what is free: an idle connection, or a new one while
 * under max_connections and the addresses are fresh. */
static void bh__h1_serve(bh__h1pool *p) {
  struct bh_upstream *u = p->u;
  while (p->wait_head) {
    bh__call *call = p->wait_head;
    if (!call->h1_fresh && p->idle) {
      bh__h1conn *c = p->idle;
      bh__h1_idle_remove(c);
      bh__ltimer_stop(&c->timer);
      bh__h1_wait_remove(call);
      uv_timer_stop(&call->timer);
      bh__h1_assign(c, call);
      continue;
    }
    if (u->max_connections && p->nconns >= u->max_connections) {
      /* a call that must have a new connection makes room by closing the
       * oldest idle one */
      if (p->idle == NULL) return;
      bh__h1conn *old = p->idle;
      while (old->next)
        old = old->next;
      bh__h1_conn_close(old);
      continue;
    }
    if (p->naddrs == 0 || bh__ms(p->cl) >= p->addrs_expire_ms) {
      bh__h1_resolve(p);
      return;
    }
    bh__h1_wait_remove(call);
    uv_timer_stop(&call->timer);
    bh__h1_conn_open(p, call, p->addrs, p->naddrs, 0);
  }
}

int bh__h1_start(bh__call *call, uint32_t timeout_ms) {
  bh__h1pool *p = bh__h1_pool_get(call);
  if (p == NULL) return -ENOMEM;
  uint64_t now = bh__ms(call->cl);
  call->h1_deadline = now + timeout_ms;
  call->h1_status = 0;
  call->h1_resent = 0;
  /* a request that must reach the upstream at most once goes on a new
   * connection: a pooled one may be closing under it (as with libcurl's
   * CURLOPT_FRESH_CONNECT before) */
  call->h1_fresh = !bh__h1_resendable(call);
  if (!call->h1_fresh && p->idle && p->wait_head == NULL) {
    bh__h1conn *c = p->idle;
    bh__h1_idle_remove(c);
    bh__ltimer_stop(&c->timer);
    bh__h1_assign(c, call);
    return 0;
  }
  call->h1_waiting = 1;
  call->h1_wait_next = NULL;
  if (p->wait_tail)
    p->wait_tail->h1_wait_next = call;
  else
    p->wait_head = call;
  p->wait_tail = call;
  bh__h1_serve(p);
  if (call->h1_waiting)
    uv_timer_start(&call->timer, bh__h1_wait_timeout, timeout_ms, 0);
  return 0;
}

void bh__h1_release(bh__call *call) {
  bh__h1_wait_remove(call);
  bh__h1conn *c = call->h1;
  if (c) {
    /* mid-request: the connection cannot carry another */
    call->h1 = NULL;
    bh__h1_conn_close(c);
  }
}

void bh__h1_close_all(bh__client *cl) {
  while (cl->pools) {
    bh__h1pool *p = cl->pools;
    cl->pools = p->next;
    p->dead = 1;
    while (p->idle)
      bh__h1_conn_close(p->idle);
    if (p->resolving) uv_cancel((uv_req_t *)&p->gai);
    if (p->u) p->u->pool = NULL;
    p->u = NULL;
    bh__h1_pool_maybe_free(p);
  }
}
