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
/* One fallback of `plugin` from upstream `from` to upstream `to`. */
void bh__metrics_fallback(bh__daemon *d, const char *plugin, const char *from,
                          const char *to);
void bh__metrics_rate_limited(bh__daemon *d, const char *policy);
/* One lookup in the worker's verified-token cache: a hit or a miss. */
void bh__metrics_token_cache(bh__daemon *d, int hit);
/* Renders /metrics (gauges sampled at render time): Prometheus text
 * 0.0.4, or OpenMetrics 1.0 text when openmetrics is set. */
int bh__metrics_text(bh__daemon *d, bh__buf *out, int openmetrics);

#endif
