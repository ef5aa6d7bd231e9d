/*
 * A timeout that is moved often but rarely fires (a connection's idle,
 * header and handler deadlines; an upstream connection's answer and idle
 * timeouts). Setting a deadline no earlier than the one the libuv timer is
 * already armed for only records it, and stopping only forgets it: the
 * timer fires at the earliest deadline set since it last fired, then
 * re-arms for what is left or does nothing. Each start and stop of a libuv
 * timer is a heap insert or removal; a request moved these deadlines four
 * to six times. The callback runs in the same loop turn a plain timer of
 * the current deadline would have fired in.
 */
#ifndef BH_CORE_BASE_LTIMER_H
#define BH_CORE_BASE_LTIMER_H

#include <stdint.h>
#include <uv.h>

typedef struct bh__ltimer {
  uv_timer_t t; /* first: the handle to uv_close; t.data is the caller's */
  uv_timer_cb cb;
  uint64_t deadline; /* loop ms the callback is due, when set */
  uint64_t due;      /* loop ms t fires at, when armed */
  unsigned set : 1;
  unsigned armed : 1;
} bh__ltimer;

int bh__ltimer_init(uv_loop_t *loop, bh__ltimer *lt);
/* cb(&lt->t) once `ms` from the loop's now, unless moved or stopped. */
void bh__ltimer_start(bh__ltimer *lt, uv_timer_cb cb, uint64_t ms);
void bh__ltimer_stop(bh__ltimer *lt);
/* The handle to close (uv_close) with its owner. */
static inline uv_handle_t *bh__ltimer_handle(bh__ltimer *lt) {
  return (uv_handle_t *)&lt->t;
}

#endif
