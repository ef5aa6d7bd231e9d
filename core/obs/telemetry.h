/*
 * The daemon's metrics (telemetry.c): the series the request path and the
 * upstream client feed, and /metrics rendered from them.
 */
#ifndef BH_CORE_OBS_TELEMETRY_H
#define BH_CORE_OBS_TELEMETRY_H

#include <stdint.h>

#include "base/buf.h"
#include "http/http-t.h"

int bh__telemetry_init(bh__daemon *d);
void bh__telemetry_free(bh__daemon *d);
/* One finished request (access-log time): counts and latency. */
void bh__metrics_request(bh_req *req);
/* One upstream call of the upstream named `upstream`. */
void bh__metrics_upstream(bh__daemon *d, const char *upstream, int outcome,
                          uint32_t transport, int status, uint32_t attempts,
                          uint64_t duration_us);
void bh__metrics_retry(bh__daemon *d, const char *upstream);
void bh__metrics_rate_limited(bh__daemon *d, const char *policy);
/* One lookup in the worker's verified-token cache: a hit or a miss. */
void bh__metrics_token_cache(bh__daemon *d, int hit);
/* Renders /metrics (gauges sampled at render time). */
int bh__metrics_text(bh__daemon *d, bh__buf *out);

#endif
