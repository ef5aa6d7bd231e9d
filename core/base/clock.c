/*
 * The monotonic clock. libuv's high-resolution clock (CLOCK_MONOTONIC),
 * read directly: the loop's cached time would make a handler's latency
 * depend on where in the iteration it ran.
 */
#include <uv.h>

#include "base/clock.h"

uint64_t bh__now_ns(void) {
  return uv_hrtime();
}
