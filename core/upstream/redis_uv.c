/*
 * hiredis on a libuv loop (used by redis.c through redis_uv.h). hiredis
 * ships an adapter for this, but the one in hiredis 0.14 drops a poll
 * error on the floor: a connect refused by a closed port then never
 * completes, and the context waits forever. Here an error is handed to
 * hiredis as readiness, so it reads the socket's error and fails the
 * connect (or the connection) through its own callbacks.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <uv.h>

#include "upstream/redis_uv.h"

typedef struct bh__redis_uv {
  redisAsyncContext *ac;
  uv_poll_t poll;
  int events;
} bh__redis_uv;

static void bh__ruv_ready(uv_poll_t *h, int status, int events) {
  bh__redis_uv *p = h->data;
  if (status < 0 && p->ac) {
    /* the socket failed: hiredis finds out why when it touches it */
    events = p->events;
    if (!(p->ac->c.flags & REDIS_CONNECTED)) events |= UV_WRITABLE;
  }
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void bh__ruv_update(bh__redis_uv *p) {
  if (p->events)
    uv_poll_start(&p->poll, p->events, bh__ruv_ready);
  else
    uv_poll_stop(&p->poll);
}

static void bh__ruv_add_read(void *priv) {
  bh__redis_uv *p = priv;
  p->events |= UV_READABLE;
  bh__ruv_update(p);
}

static void bh__ruv_del_read(void *priv) {
  bh__redis_uv *p = priv;
  p->events &= ~UV_READABLE;
  bh__ruv_update(p);
}

static void bh__ruv_add_write(void *priv) {
  bh__redis_uv *p = priv;
  p->events |= UV_WRITABLE;
  bh__ruv_update(p);
}

static void bh__ruv_del_write(void *priv) {
  bh__redis_uv *p = priv;
  p->events &= ~UV_WRITABLE;
  bh__ruv_update(p);
}

static void bh__ruv_closed(uv_handle_t *h) {
  free(h->data);
}

static void bh__ruv_cleanup(void *priv) {
  bh__redis_uv *p = priv;
  p->ac = NULL; /* the context is being freed */
  uv_close((uv_handle_t *)&p->poll, bh__ruv_closed);
}

int bh__redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  if (ac->ev.data != NULL) return -EEXIST;
  bh__redis_uv *p = calloc(1, sizeof(*p));
  if (p == NULL) return -ENOMEM;
  int rc = uv_poll_init(loop, &p->poll, ac->c.fd);
  if (rc) {
    free(p);
    return rc;
  }
  p->ac = ac;
  p->poll.data = p;
  ac->ev.data = p;
  ac->ev.addRead = bh__ruv_add_read;
  ac->ev.delRead = bh__ruv_del_read;
  ac->ev.addWrite = bh__ruv_add_write;
  ac->ev.delWrite = bh__ruv_del_write;
  ac->ev.cleanup = bh__ruv_cleanup;
  return 0;
}
