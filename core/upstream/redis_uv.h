/*
 * hiredis's event hooks on a libuv loop (redis_uv.c); used by redis.c
 * only.
 */
#ifndef BH_CORE_UPSTREAM_REDIS_UV_H
#define BH_CORE_UPSTREAM_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Polls the context's socket on `loop`; the poll handle is closed when
 * hiredis frees the context. 0 or a negative errno. */
int bh__redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
