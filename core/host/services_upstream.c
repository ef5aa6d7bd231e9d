/*
 * The upstream services (include/bulkhead/plugin.h): upstream
 * registration and calls, the error map's Problem for a result, proxy
 * routes, and streaming (an upstream read as it arrives, an answer
 * written as it is produced).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/reqid.h"
#include "config/config.h"
#include "host/host.h"
#include "host/services.h"
#include "http/http.h"
#include "http/validate.h"
#include "identity/auth.h"
#include "obs/telemetry.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "state/jobq.h"
#include "state/shm.h"
#include "upstream/limits.h"
#include "upstream/upstream.h"

/* --- upstreams --------------------------------------------------------- */

int bh__svc_upstream_add(bh_ctx *ctx, const bh_upstream_def *def,
                         bh_upstream **out) {
  BH__ON_LOOP(ctx->plugin, "upstream_add");
  bh__plugin *p = bh__svc_plugin(ctx);
  if (!p->in_init) return -EPERM;
  if (out == NULL) return -EINVAL;
  char why[256] = "";
  int rc = bh__upstream_new(p->d, p, def, out, why, sizeof(why));
  if (rc) bh__reg_fail(p, "%s", why[0] ? why : strerror(-rc));
  return rc;
}

int bh__svc_upstream_call(bh_req *r, bh_upstream *u,
                          const bh_upstream_request *call, bh_upstream_cb cb,
                          void *data) {
  BH__ON_LOOP(r ? r->plugin : NULL, "upstream_call");
  if (r == NULL || cb == NULL) return -EINVAL;
  if (!r->plugin_holds) return -EALREADY;
  return bh__call_start(r->d, r, u, call, cb, data, NULL);
}

const char *bh__svc_upstream_header(const bh_upstream_result *res,
                                    const char *name) {
  if (res == NULL || name == NULL) return NULL;
  return bh__result_header(res, name);
}

int bh__svc_problem_upstream(bh_req *r, const bh_upstream_result *res) {
  if (res == NULL) return -EINVAL;
  int rc = bh__svc_end_begin(r);
  if (rc) return rc;
  bh__mapped m;
  char code[96];
  bh__plugin *p = r->plugin;
  bh__errmap_match(p, res, bh__result_malformed(res), &m, code, sizeof(code));
  bh__logline l;
  /* debug: the access line already names plugin and code; a per-request
   * warning would double the log volume exactly during an outage */
  bh__log_begin(&l, BH__DEBUG, "upstream_problem");
  bh__log_str(&l, "requestId", r->id);
  bh__log_str(&l, "plugin", p->name);
  bh__log_int(&l, "outcome", res->outcome);
  if (res->outcome == BH_OUTCOME_RESPONSE)
    bh__log_int(&l, "upstreamStatus", res->status);
  if (res->outcome == BH_OUTCOME_TRANSPORT)
    bh__log_int(&l, "transport", res->transport);
  bh__log_str(&l, "code", m.code);
  bh__log_end(&l);
  bh__respond_problem(r, m.code, NULL, m.retry_after, NULL, 0, NULL, 0);
  bh__req_unref(r);
  return 0;
}

int bh__svc_proxy_add(bh_ctx *ctx, const char *prefix, bh_upstream *u,
                      uint32_t flags) {
  bh__plugin *p = bh__svc_plugin(ctx);
  if (!p->in_init) return -EPERM;
  int rc = bh__proxy_add(p, prefix, u, flags);
  if (rc && p->reg_error == NULL)
    bh__reg_fail(p, "proxy %s: %s", prefix ? prefix : "(null)", strerror(-rc));
  return rc;
}
/* --- streaming (ABI 1.2) ------------------------------------------- */

/* A plugin's streamed upstream call: the core's stream hooks adapted to
 * the plugin's chunk callback. Freed when the call's callback has run. */
typedef struct bh__pstream {
  bh_req *req;
  bh__plugin *plugin;
  bh_upstream_chunk_fn on_chunk;
  bh_upstream_cb cb;
  void *data;
  int status;
} bh__pstream;

static int bh__pstream_head(bh__call *call, int status, void *data) {
  bh__pstream *ps = data;
  (void)call;
  ps->status = status;
  /* only a success streams: anything else may still be retried or mapped */
  return status >= 200 && status < 300;
}

static int bh__pstream_data(bh__call *call, const char *buf, size_t len,
                            void *data) {
  bh__pstream *ps = data;
  (void)call;
  /* plugin code on the loop: a crash or hang in it is charged to it */
  int64_t mark = bh__shm_enter(ps->plugin->shm_index, BH__CB_UPSTREAM);
  int rc = ps->on_chunk(ps->req, ps->status, buf, len, ps->data);
  bh__shm_leave(mark);
  return rc < 0 ? -1 : 0;
}

static void bh__pstream_done(bh_req *req, const bh_upstream_result *res,
                             void *data) {
  bh__pstream *ps = data;
  bh_upstream_cb cb = ps->cb;
  void *cb_data = ps->data;
  free(ps);
  cb(req, res, cb_data);
}

int bh__svc_upstream_stream(bh_req *r, bh_upstream *u,
                            const bh_upstream_request *call,
                            bh_upstream_chunk_fn on_chunk, bh_upstream_cb cb,
                            void *data) {
  BH__ON_LOOP(r ? r->plugin : NULL, "upstream_stream");
  if (r == NULL || cb == NULL || on_chunk == NULL || r->plugin == NULL)
    return -EINVAL;
  if (!r->plugin_holds) return -EALREADY;
  bh__pstream *ps = calloc(1, sizeof(*ps));
  if (ps == NULL) return -ENOMEM;
  ps->req = r;
  ps->plugin = r->plugin;
  ps->on_chunk = on_chunk;
  ps->cb = cb;
  ps->data = data;
  bh__call_stream st = {
      .on_head = bh__pstream_head, .on_data = bh__pstream_data, .data = ps};
  int rc = bh__call_start(r->d, r, u, call, bh__pstream_done, ps, &st);
  if (rc != 0) free(ps);
  return rc;
}

int bh__svc_stream_start(bh_req *r, int status, const char *content_type) {
  if (!r->plugin_holds) return -EALREADY;
  if (r->answered) return -ECANCELED;
  if (status < 200 || status > 599 || status == 204 || status == 304 ||
      (content_type && !bh__svc_value_ok(content_type)))
    return -EINVAL;
  if (r->sink == NULL && (r->conn == NULL || r->conn->closed))
    return -ECONNRESET;
  bh__buf h;
  bh__buf_init(&h);
  bh__buf_puts(&h, "Content-Type: ");
  bh__buf_puts(&h, content_type ? content_type : "application/octet-stream");
  bh__buf_puts(&h, "\r\n");
  if (bh__buf_failed(&h)) {
    bh__buf_free(&h);
    return -ENOMEM;
  }
  int rc = bh__respond_head(r, status, h.data, -1);
  bh__buf_free(&h);
  if (rc == -ENOMEM) {
    /* nothing left: the plugin may still answer with a Problem */
    r->answered = 0;
    r->streaming = 0;
    r->chunked = 0;
  }
  return rc;
}

long bh__svc_stream_write(bh_req *r, const char *data, size_t len) {
  if (!r->plugin_holds || !r->streaming || (data == NULL && len))
    return -EINVAL;
  return bh__respond_body(r, data, len);
}

int bh__svc_stream_end(bh_req *r, int failed) {
  if (!r->plugin_holds) return -EALREADY;
  if (!r->streaming) return -EINVAL;
  r->plugin_holds = 0;
  int gone = r->sink == NULL && (r->conn == NULL || r->conn->closed);
  bh__respond_end(r, !failed);
  /* a stream the client left stays marked: respond_end had nobody to end */
  r->streaming = 0;
  bh__req_unref(r);
  return gone ? -ECANCELED : 0;
}
