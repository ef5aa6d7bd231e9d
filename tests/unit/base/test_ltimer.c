/* The lazily re-armed timer on a real loop: a later deadline waits for the
 * later time, an earlier one re-arms, a stop means no callback, the
 * callback may start it again, and it fires in the same loop turn as a
 * plain timer of the same deadline. */
#include <stdint.h>
#include <uv.h>

#include "base/ltimer.h"
#include "check.h"

static int g_fired;
static uint64_t g_fired_at;
static int g_again; /* restarts left from inside the callback */

static void bh__on_fire(uv_timer_t *t) {
  g_fired++;
  g_fired_at = uv_now(t->loop);
  if (g_again > 0) {
    g_again--;
    bh__ltimer_start((bh__ltimer *)t, bh__on_fire, 10);
  }
}

static uint64_t g_plain_at;
static void bh__on_plain(uv_timer_t *t) {
  g_plain_at = uv_now(t->loop);
}

static void bh__reset(void) {
  g_fired = 0;
  g_fired_at = 0;
  g_again = 0;
}

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bh__ltimer lt;
  CHECK_INT(bh__ltimer_init(&loop, &lt), 0);

  /* moved later: no callback at the first deadline */
  bh__reset();
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  bh__ltimer_start(&lt, bh__on_fire, 30);
  bh__ltimer_start(&lt, bh__on_fire, 120);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 1);
  CHECK(g_fired_at >= t0 + 120);

  /* moved earlier: re-armed for the earlier time */
  bh__reset();
  uv_update_time(&loop);
  t0 = uv_now(&loop);
  bh__ltimer_start(&lt, bh__on_fire, 500);
  bh__ltimer_start(&lt, bh__on_fire, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 1);
  CHECK(g_fired_at >= t0 + 20);
  CHECK(g_fired_at < t0 + 400);

  /* stopped: the armed timer runs out with no callback */
  bh__reset();
  bh__ltimer_start(&lt, bh__on_fire, 20);
  bh__ltimer_stop(&lt);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 0);
  /* stopped, then started again later than the armed time */
  bh__ltimer_start(&lt, bh__on_fire, 10);
  bh__ltimer_stop(&lt);
  uv_update_time(&loop);
  t0 = uv_now(&loop);
  bh__ltimer_start(&lt, bh__on_fire, 60);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 1);
  CHECK(g_fired_at >= t0 + 60);

  /* started again from its own callback */
  bh__reset();
  g_again = 2;
  bh__ltimer_start(&lt, bh__on_fire, 5);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 3);

  /* the same turn as a plain timer of the same deadline, after moves */
  bh__reset();
  uv_timer_t plain;
  uv_timer_init(&loop, &plain);
  uv_update_time(&loop);
  bh__ltimer_start(&lt, bh__on_fire, 15);
  bh__ltimer_start(&lt, bh__on_fire, 40);
  bh__ltimer_start(&lt, bh__on_fire, 70);
  uv_timer_start(&plain, bh__on_plain, 70, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(g_fired, 1);
  CHECK(g_plain_at > 0 && g_fired_at == g_plain_at);

  uv_close((uv_handle_t *)&plain, NULL);
  uv_close(bh__ltimer_handle(&lt), NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  return check_finish("test_ltimer");
}
