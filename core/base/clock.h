/*
 * The monotonic clock every layer reads for durations (request latency,
 * upstream elapsed time, metrics). Wall-clock time is not here: the shared
 * state keeps its own millisecond clock (state/shm.h).
 */
#ifndef BH_CORE_BASE_CLOCK_H
#define BH_CORE_BASE_CLOCK_H

#include <stdint.h>

/* Nanoseconds from an arbitrary origin; never goes back. */
uint64_t bh__now_ns(void);

#endif
