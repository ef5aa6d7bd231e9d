/*
 * The upstream client: libcurl's multi interface driven by the libuv loop
 * (the socket/timer callback pattern of curl's multi_socket API). One poll
 * handle per upstream socket for the socket's whole life, one timer for
 * libcurl's timeouts; finished transfers go to the calls (upstream.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/client.h"
#include "upstream/h1.h"

/* ---------------------------------------------------------------------- */
/* curl <-> libuv glue                                                     */
/* ---------------------------------------------------------------------- */

static void bh__sock_closed(uv_handle_t *h) {
  free(h->data);
}

static bh__sock *bh__sock_get(bh__client *cl, curl_socket_t fd) {
  return fd >= 0 && (size_t)fd < cl->nsocks ? cl->socks[fd] : NULL;
}

static void bh__poll_cb(uv_poll_t *h, int status, int events);

/* Watches `events` (0: nothing) on sk, touching epoll only on a change. */
static void bh__sock_watch(bh__sock *sk, int events) {
  if (events == sk->events) return;
  if (events)
    uv_poll_start(&sk->poll, events, bh__poll_cb);
  else
    uv_poll_stop(&sk->poll);
  sk->events = events;
}

static void bh__poll_cb(uv_poll_t *h, int status, int events) {
  bh__sock *sk = h->data;
  bh__client *cl = sk->cl;
  if (!sk->curl_active) {
    /* an idle pooled connection became readable: the upstream closed it
     * or sent something unasked. Stop watching (a level-triggered poll
     * would spin); libcurl's own liveness check at reuse decides its fate */
    bh__sock_watch(sk, 0);
    return;
  }
  int flags = 0, running = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(cl->multi, sk->fd, flags, &running);
  bh__check_multi(cl);
}

static int bh__curl_socket(CURL *e, curl_socket_t s, int what, void *userp,
                           void *socketp) {
  bh__client *cl = userp;
  (void)e;
  (void)socketp;
  bh__sock *sk = bh__sock_get(cl, s);
  if (what == CURL_POLL_REMOVE) {
    /* the transfer is over; the connection may go back to the pool. Keep
     * watching for readability only (an unchanged watch costs nothing),
     * so an upstream closing it is noticed and the watch dropped then */
    if (sk) {
      sk->curl_active = 0;
      bh__sock_watch(sk, sk->events & UV_READABLE);
    }
    return 0;
  }
  if (sk == NULL) {
    if (s < 0) return -1;
    if ((size_t)s >= cl->nsocks) {
      size_t n = cl->nsocks ? cl->nsocks : 64;
      while (n <= (size_t)s)
        n *= 2;
      bh__sock **v = realloc(cl->socks, n * sizeof(*v));
      if (v == NULL) return -1;
      memset(v + cl->nsocks, 0, (n - cl->nsocks) * sizeof(*v));
      cl->socks = v;
      cl->nsocks = n;
    }
    sk = calloc(1, sizeof(*sk));
    if (sk == NULL) return -1;
    sk->fd = s;
    sk->cl = cl;
    if (uv_poll_init_socket(cl->d->loop, &sk->poll, s) != 0) {
      free(sk);
      return -1;
    }
    sk->poll.data = sk;
    cl->socks[s] = sk;
  }
  sk->curl_active = 1;
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  bh__sock_watch(sk, events);
  return 0;
}

/* libcurl closes every socket it opened through here (set on each easy
 * handle; a connection keeps the callback of the handle that opened it,
 * even in the pool): the poll handle goes first, then the socket. */
int bh__curl_closesocket(void *clientp, curl_socket_t fd) {
  bh__client *cl = clientp;
  bh__sock *sk = bh__sock_get(cl, fd);
  if (sk) {
    cl->socks[fd] = NULL;
    /* uv_close drops the fd from epoll at once; the memory goes later */
    uv_close((uv_handle_t *)&sk->poll, bh__sock_closed);
  }
  return close(fd);
}

static void bh__multi_timeout(uv_timer_t *t) {
  bh__client *cl = t->data;
  int running = 0;
  curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  bh__check_multi(cl);
}

static int bh__curl_timer(CURLM *m, long timeout_ms, void *userp) {
  bh__client *cl = userp;
  (void)m;
  if (timeout_ms < 0)
    uv_timer_stop(&cl->timer);
  else
    uv_timer_start(&cl->timer, bh__multi_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

int bh__client_init(bh__daemon *d) {
  static int global_done;
  if (!global_done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -EIO;
    global_done = 1;
  }
  bh__client *cl = calloc(1, sizeof(*cl));
  if (cl == NULL) return -ENOMEM;
  cl->d = d;
  cl->multi = curl_multi_init();
  if (cl->multi == NULL) {
    free(cl);
    return -ENOMEM;
  }
  uv_timer_init(d->loop, &cl->timer);
  cl->timer.data = cl;
  uv_check_init(d->loop, &cl->soon);
  cl->soon.data = cl;
  uv_idle_init(d->loop, &cl->soon_wake);
  cl->soon_wake.data = cl;
  cl->open_handles = 3;
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, bh__curl_socket);
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, bh__curl_timer);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
  /* keep-alive pool: idle connections are kept and reused per host */
  curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 256L);
  curl_multi_setopt(cl->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  d->client = cl;
  return 0;
}

void bh__check_multi(bh__client *cl) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    bh__call *call = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
    if (call) bh__attempt_done(call, msg->data.result);
  }
}

static void bh__client_free(uv_handle_t *h) {
  bh__client *cl = h->data;
  if (--cl->open_handles > 0) return;
  free(cl);
  /* the calls' timers closed before these handles: every block is back */
  bh__call_mem_free_all();
}

void bh__client_close(bh__daemon *d) {
  bh__client *cl = d->client;
  if (cl == NULL) return;
  cl->closing = 1;
  while (cl->calls) {
    cl->calls->outcome = BH_OUTCOME_CANCELED;
    bh__call_finish(cl->calls);
  }
  bh__h1_close_all(cl);
  while (cl->neasy)
    curl_easy_cleanup(cl->easy_pool[--cl->neasy]);
  /* closes the pooled connections, through bh__curl_closesocket */
  curl_multi_cleanup(cl->multi);
  for (size_t i = 0; i < cl->nsocks; i++) {
    /* a socket libcurl never closed (it should not happen): its handle
     * must still be closed before the loop is */
    if (cl->socks[i])
      uv_close((uv_handle_t *)&cl->socks[i]->poll, bh__sock_closed);
  }
  free(cl->socks);
  cl->socks = NULL;
  cl->nsocks = 0;
  uv_close((uv_handle_t *)&cl->timer, bh__client_free);
  uv_close((uv_handle_t *)&cl->soon, bh__client_free);
  uv_close((uv_handle_t *)&cl->soon_wake, bh__client_free);
  d->client = NULL;
}
