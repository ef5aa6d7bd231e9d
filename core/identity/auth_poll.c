/*
 * The revoked-session poll (see auth.h): on a shared store, the sessions
 * other instances revoked (logout, refresh-token reuse, disablement) are
 * read every BH__REVOKED_POLL_MS into this instance's revoked-session set,
 * so an access token of theirs stops passing here within that bound (plus
 * the poll's own round trip). Each read goes back BH__POLL_OVERLAP_S
 * before the previous one: instances' clocks differ a little and a
 * revocation committed late is still seen. On SQLite every instance is
 * this one, so there is no poll.
 */
#include <string.h>

#include "identity/auth.h"
#include "identity/store.h"
#include "identity/store_ops.h"

#define BH__POLL_OVERLAP_S 10

typedef struct bh__rpoll {
  bh__sjob job;
  uv_timer_t timer;
  bh__store *store;
  int64_t span, since, now;
  int busy, on, closing;
} bh__rpoll;

static bh__rpoll g_poll;

static void bh__rpoll_add(const char *sid, int64_t at, void *arg) {
  bh__rpoll *p = arg;
  bh__revoked_add(sid, at + p->span, p->now);
}

static void bh__rpoll_work(bh__sconn *c, bh__sjob *sj) {
  bh__rpoll *p = (bh__rpoll *)(void *)sj;
  p->now = bh__store_now();
  if (bh__op_revoked_since(c, p->since, bh__rpoll_add, p) == 0)
    p->since = p->now - BH__POLL_OVERLAP_S;
}

static void bh__rpoll_done(bh__sjob *sj) {
  ((bh__rpoll *)(void *)sj)->busy = 0;
}

static void bh__rpoll_tick(uv_timer_t *t) {
  bh__rpoll *p = t->data;
  if (p->busy) return; /* the store is slow: one read at a time */
  p->job.work = bh__rpoll_work;
  p->job.done = bh__rpoll_done;
  if (bh__store_submit(p->store, &p->job) == 0) p->busy = 1;
}

void bh__revoked_poll_start(uv_loop_t *loop, bh__store *s,
                            const bh__auth_conf *c) {
  /* a timer still closing from a stop in this loop turn: no poll */
  if (g_poll.on || g_poll.closing || s == NULL) return;
  memset(&g_poll, 0, sizeof(g_poll));
  g_poll.store = s;
  g_poll.span = bh__revoked_span(c);
  g_poll.since = bh__store_now() - BH__POLL_OVERLAP_S;
  if (uv_timer_init(loop, &g_poll.timer) != 0) return;
  g_poll.timer.data = &g_poll;
  uv_unref((uv_handle_t *)&g_poll.timer); /* never keeps a worker alive */
  uv_timer_start(&g_poll.timer, bh__rpoll_tick, BH__REVOKED_POLL_MS,
                 BH__REVOKED_POLL_MS);
  g_poll.on = 1;
}

static void bh__rpoll_closed(uv_handle_t *h) {
  ((bh__rpoll *)h->data)->closing = 0;
}

void bh__revoked_poll_stop(void) {
  if (!g_poll.on) return;
  g_poll.on = 0;
  g_poll.closing = 1;
  /* a read in flight still ends: the store's stop runs its done */
  uv_close((uv_handle_t *)&g_poll.timer, bh__rpoll_closed);
}
