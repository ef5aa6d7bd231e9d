/*
 * What the files of the services table (services*.c) share: the loop
 * thread check, the start of every end call, and the slots the table in
 * services.c points at. Not for the rest of the core.
 */
#ifndef BH_CORE_HOST_SERVICES_H
#define BH_CORE_HOST_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include "bulkhead/plugin.h"
#include "host/plugin-t.h"
#include "proc/daemon-t.h"

static inline bh__plugin *bh__svc_plugin(bh_ctx *ctx) {
  return ctx->plugin;
}

/* 0 on p's loop thread. Elsewhere -EPERM, and one line (once per plugin)
 * naming the plugin, the service and the rule. */
int bh__svc_thread_check(bh__plugin *p, const char *slot);
#define BH__ON_LOOP(p, slot)                                                   \
  do {                                                                         \
    int bh__trc = bh__svc_thread_check((p), (slot));                           \
    if (bh__trc) return bh__trc;                                               \
  } while (0)

/* services.c: context and registration */
void *bh__svc_normalize(const void *src, size_t n, size_t size, size_t want);

/* services_req.c: request accessors, end calls, strict JSON bodies */
const char *bh__svc_req_method(bh_req *r);
const char *bh__svc_req_path(bh_req *r);
const char *bh__svc_req_query(bh_req *r);
const char *bh__svc_req_id(bh_req *r);
const char *bh__svc_req_client_addr(bh_req *r);
const char *bh__svc_req_header(bh_req *r, const char *name);
const char *bh__svc_req_body(bh_req *r, size_t *len);
bh_ctx *bh__svc_req_ctx(bh_req *r);
const char *bh__svc_req_param(bh_req *r, const char *name);
int bh__svc_end_begin(bh_req *r);
int bh__svc_value_ok(const char *s);
int bh__svc_set_header(bh_req *r, const char *name, const char *value);
int bh__svc_respond(bh_req *r, int status, const char *content_type,
                    const char *body, size_t len);
int bh__svc_problem(bh_req *r, const char *code, const char *detail);
int bh__svc_problem_retry(bh_req *r, const char *code, const char *detail,
                          long retry_after_s);
int bh__svc_body_parse(bh_req *r, const bh_body_shape *in, size_t shape_size,
                       size_t field_size);
const char *bh__svc_body_string(bh_req *r, const char *f);
int bh__svc_body_int(bh_req *r, const char *f, int64_t *out);
int bh__svc_body_bool(bh_req *r, const char *f, int *out);
const char *bh__svc_body_json(bh_req *r, const char *f);
const char *bh__svc_body_string_at(bh_req *r, const char *f, size_t i);
int bh__svc_problem_field(bh_req *r, const char *code, const char *detail,
                          const char *field);
int bh__svc_problem_json(bh_req *r, const char *code, const char *detail,
                         const bh_upstream_result *res, char *buf,
                         size_t buflen);

/* services_upstream.c: upstream calls, proxy routes, streaming */
int bh__svc_upstream_add(bh_ctx *ctx, const bh_upstream_def *def,
                         bh_upstream **out);
int bh__svc_upstream_call(bh_req *r, bh_upstream *u,
                          const bh_upstream_request *call, bh_upstream_cb cb,
                          void *data);
const char *bh__svc_upstream_header(const bh_upstream_result *res,
                                    const char *name);
int bh__svc_problem_upstream(bh_req *r, const bh_upstream_result *res);
int bh__svc_proxy_add(bh_ctx *ctx, const char *prefix, bh_upstream *u,
                      uint32_t flags);
int bh__svc_upstream_stream(bh_req *r, bh_upstream *u,
                            const bh_upstream_request *call,
                            bh_upstream_chunk_fn on_chunk, bh_upstream_cb cb,
                            void *data);
int bh__svc_stream_start(bh_req *r, int status, const char *content_type);
long bh__svc_stream_write(bh_req *r, const char *data, size_t len);
int bh__svc_stream_end(bh_req *r, int failed);

/* services_async.c: wakeups and job queues */
int bh__svc_wakeup_new(bh_ctx *ctx, bh_wakeup_fn cb, void *data,
                       bh_wakeup **out);
int bh__svc_wakeup_send(bh_wakeup *w);
void bh__svc_wakeup_close(bh_wakeup *w);
int bh__svc_jobq_new(bh_ctx *ctx, const bh_jobq_def *def, void *data,
                     bh_jobq **out);
int bh__svc_jobq_submit(bh_jobq *q, bh_job *job);
void bh__svc_jobq_close(bh_jobq *q);

#endif
