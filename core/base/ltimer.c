#include "base/ltimer.h"

static void bh__ltimer_fire(uv_timer_t *t) {
  bh__ltimer *lt = (bh__ltimer *)t;
  lt->armed = 0;
  if (!lt->set) return; /* stopped since: nothing is due */
  uint64_t now = uv_now(t->loop);
  if (now < lt->deadline) {
    /* moved later since it was armed: wait for the rest */
    lt->armed = 1;
    lt->due = lt->deadline;
    uv_timer_start(t, bh__ltimer_fire, lt->deadline - now, 0);
    return;
  }
  lt->set = 0;
  lt->cb(t);
}

int bh__ltimer_init(uv_loop_t *loop, bh__ltimer *lt) {
  lt->cb = NULL;
  lt->deadline = lt->due = 0;
  lt->set = lt->armed = 0;
  return uv_timer_init(loop, &lt->t);
}

void bh__ltimer_start(bh__ltimer *lt, uv_timer_cb cb, uint64_t ms) {
  uint64_t d = uv_now(lt->t.loop) + ms;
  lt->cb = cb;
  lt->deadline = d;
  lt->set = 1;
  if (lt->armed && lt->due <= d) return;
  lt->armed = 1;
  lt->due = d;
  uv_timer_start(&lt->t, bh__ltimer_fire, ms, 0);
}

void bh__ltimer_stop(bh__ltimer *lt) {
  lt->set = 0;
}
