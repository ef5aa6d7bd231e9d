/*
 * The access log: one JSON line per answered request, in the field names
 * of the configured log_format, and the request's metrics with it.
 * Called once per request by the answer paths (response.c), just before
 * the bytes leave.
 */
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "obs/telemetry.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

/* The access-log line's field names, per log_format (base/log.h): ours,
 * Elastic Common Schema, OpenTelemetry semantic conventions (flat dotted
 * keys, which both accept). A table rather than branches: the line costs
 * what it did with one set of names. */
enum {
  F_REQID,
  F_METHOD,
  F_PATH,
  F_STATUS,
  F_CODE,
  F_PLUGIN,
  F_LISTENER,
  F_DURATION,
  F_CLIENT,
  F_PEER,
  F_UA,
  F_REQ_BYTES,
  F_RESP_BYTES,
  F_UPSTREAM,
  F_UP_STATUS,
  F_UP_US,
  F_RETRIES,
  F_PRINCIPAL,
  F_TRACE,
  F_SPAN,
  F_FALLBACKS,
  F_ROUTE,
  F_COMPOSITE,
  F_SECTION,
  F_COUNT
};
/* framed at compile time as ,"key": (one append per field) */
static const bh__jkey bh__access_keys[3][F_COUNT] = {
    {BH__JKEY("requestId"),      BH__JKEY("method"),
     BH__JKEY("path"),           BH__JKEY("status"),
     BH__JKEY("code"),           BH__JKEY("plugin"),
     BH__JKEY("listener"),       BH__JKEY("durationUs"),
     BH__JKEY("clientAddr"),     BH__JKEY("peerAddr"),
     BH__JKEY("userAgent"),      BH__JKEY("requestBytes"),
     BH__JKEY("responseBytes"),  BH__JKEY("upstream"),
     BH__JKEY("upstreamStatus"), BH__JKEY("upstreamUs"),
     BH__JKEY("retries"),        BH__JKEY("principal"),
     BH__JKEY("traceId"),        BH__JKEY("spanId"),
     BH__JKEY("fallbacks"),      BH__JKEY("route"),
     BH__JKEY("composite"),      BH__JKEY("section")},
    {BH__JKEY("http.request.id"),
     BH__JKEY("http.request.method"),
     BH__JKEY("url.path"),
     BH__JKEY("http.response.status_code"),
     BH__JKEY("error.code"),
     BH__JKEY("bulkhead.plugin"),
     BH__JKEY("bulkhead.listener"),
     BH__JKEY("event.duration"),
     BH__JKEY("client.ip"),
     BH__JKEY("source.ip"),
     BH__JKEY("user_agent.original"),
     BH__JKEY("http.request.body.bytes"),
     BH__JKEY("http.response.body.bytes"),
     BH__JKEY("bulkhead.upstream.name"),
     BH__JKEY("bulkhead.upstream.status_code"),
     BH__JKEY("bulkhead.upstream.duration_us"),
     BH__JKEY("bulkhead.upstream.retries"),
     BH__JKEY("user.id"),
     BH__JKEY("trace.id"),
     BH__JKEY("span.id"),
     BH__JKEY("bulkhead.upstream.fallbacks"),
     BH__JKEY("http.route"),
     BH__JKEY("bulkhead.composite"),
     BH__JKEY("bulkhead.section")},
    {BH__JKEY("bulkhead.request_id"),
     BH__JKEY("http.request.method"),
     BH__JKEY("url.path"),
     BH__JKEY("http.response.status_code"),
     BH__JKEY("error.type"),
     BH__JKEY("bulkhead.plugin"),
     BH__JKEY("bulkhead.listener"),
     BH__JKEY("bulkhead.duration_us"),
     BH__JKEY("client.address"),
     BH__JKEY("network.peer.address"),
     BH__JKEY("user_agent.original"),
     BH__JKEY("http.request.body.size"),
     BH__JKEY("http.response.body.size"),
     BH__JKEY("bulkhead.upstream.name"),
     BH__JKEY("bulkhead.upstream.status_code"),
     BH__JKEY("bulkhead.upstream.duration_us"),
     BH__JKEY("bulkhead.upstream.retries"),
     BH__JKEY("user.id"),
     BH__JKEY("trace_id"),
     BH__JKEY("span_id"),
     BH__JKEY("bulkhead.upstream.fallbacks"),
     BH__JKEY("http.route"),
     BH__JKEY("bulkhead.composite"),
     BH__JKEY("bulkhead.section")},
};

/* The longest User-Agent logged: the rest is cut (a header may be 16 KiB
 * of anything). */
#define BH__UA_MAX 256

void bh__access_log(bh_req *req) {
  int fmt = bh__log_get_format();
  const bh__jkey *k = bh__access_keys[fmt >= 0 && fmt < 3 ? fmt : 0];
  bh__logline l;
  /* most lines fit in 512 bytes (a long user agent or path may grow it) */
  bh__log_begin_sized(&l, BH__INFO, "request", 511);
  if (l.skip) goto counted;
  /* ids the core checked (bh__reqid, bh__trace_parse) or made: plain */
  bh__log_kraw(&l, &k[F_REQID], req->id);
  if (req->trace.trace_id[0]) {
    bh__log_kraw(&l, &k[F_TRACE], req->trace.trace_id);
    bh__log_kraw(&l, &k[F_SPAN], req->trace.span_id);
  }
  bh__log_kstr(&l, &k[F_METHOD], req->method ? req->method : "-");
  /* the path only: a query string may carry tokens */
  bh__log_kstr(&l, &k[F_PATH], req->path ? req->path : "-");
  bh__log_kint(&l, &k[F_STATUS], req->status);
  if (req->code) bh__log_kstr(&l, &k[F_CODE], req->code);
  if (req->plugin) bh__log_kstr(&l, &k[F_PLUGIN], req->plugin->name);
  if (req->fallbacks[0]) bh__log_kstr(&l, &k[F_FALLBACKS], req->fallbacks);
  if (req->route && req->route->pattern)
    bh__log_kstr(&l, &k[F_ROUTE], req->route->pattern);
  if (req->composite) bh__log_kstr(&l, &k[F_COMPOSITE], req->composite);
  if (req->section) bh__log_kstr(&l, &k[F_SECTION], req->section);
  if (req->conn && req->conn->listener->kind == BH__LISTENER_ADMIN)
    bh__log_kstr(&l, &k[F_LISTENER], "admin");
  int64_t us = (int64_t)((bh__now_ns() - req->start_ns) / 1000);
  /* ECS event.duration is in nanoseconds */
  bh__log_kint(&l, &k[F_DURATION], fmt == BH__LOGFMT_ECS ? us * 1000 : us);
  if (req->client_addr[0]) bh__log_kstr(&l, &k[F_CLIENT], req->client_addr);
  if (req->via_trusted) bh__log_kstr(&l, &k[F_PEER], req->peer_addr);
  const char *ua = bh__req_header(req, "user-agent");
  if (ua) {
    char cut[BH__UA_MAX + 1];
    size_t n = strlen(ua);
    if (n > BH__UA_MAX) {
      memcpy(cut, ua, BH__UA_MAX);
      cut[BH__UA_MAX] = '\0';
      ua = cut;
    }
    bh__log_kstr(&l, &k[F_UA], ua);
  }
  bh__log_kint(&l, &k[F_REQ_BYTES], (int64_t)req->body.len);
  bh__log_kint(&l, &k[F_RESP_BYTES], (int64_t)req->resp_body_bytes);
  if (req->upstream_name[0]) {
    bh__log_kstr(&l, &k[F_UPSTREAM], req->upstream_name);
    if (req->upstream_status)
      bh__log_kint(&l, &k[F_UP_STATUS], req->upstream_status);
    bh__log_kint(&l, &k[F_UP_US], (int64_t)req->upstream_us);
    bh__log_kint(&l, &k[F_RETRIES], req->upstream_retries);
  }
  /* the caller's id only: never a token, a key or a session id */
  if (req->principal_id && req->principal_id[0])
    bh__log_kstr(&l, &k[F_PRINCIPAL], req->principal_id);
counted:
  bh__log_end(&l);
  if (bh__shm_self) bh__shm_self->log_dropped = bh__log_dropped();
  if (req->conn == NULL || req->conn->listener->kind == BH__LISTENER_API)
    bh__metrics_request(req);
}
