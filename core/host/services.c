/*
 * The services table handed to plugins (include/bulkhead/plugin.h). Each
 * slot checks what a plugin could get wrong — a second end call, a
 * registration outside init(), a header that would split the response — and
 * answers with a negative errno rather than trusting the caller.
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

static bh__plugin *bh__ctx_plugin(bh_ctx *ctx) {
  return ctx->plugin;
}

/* 0 on p's loop thread. Elsewhere -EPERM, and one line (once per plugin)
 * naming the plugin, the service and the rule: a plugin's own thread
 * hands its results back with a wakeup. */
static int bh__thread_check(bh__plugin *p, const char *slot) {
  if (p == NULL || pthread_equal(pthread_self(), p->loop_thread)) return 0;
  if (!p->thread_warned) {
    p->thread_warned = 1;
    bh__logf(BH__ERROR, "plugin_wrong_thread",
             "plugin %s: %s called off the loop thread: services run on the "
             "worker's loop thread only (wakeup_send excepted; hand results "
             "back with a wakeup)",
             p->name, slot);
  }
  return -EPERM;
}
#define BH__ON_LOOP(p, slot)                                                   \
  do {                                                                         \
    int bh__trc = bh__thread_check((p), (slot));                               \
    if (bh__trc) return bh__trc;                                               \
  } while (0)

/* --- plugin context ---------------------------------------------------- */

static void svc_log(bh_ctx *ctx, int level, const char *fmt, ...) {
  static const int map[] = {BH__DEBUG, BH__INFO, BH__WARN, BH__ERROR};
  if (level < 0 || level > 3) level = BH_LOG_ERROR;
  bh__buf msg;
  bh__buf_init(&msg);
  va_list ap;
  va_start(ap, fmt);
  bh__buf_vprintf(&msg, fmt, ap);
  va_end(ap);
  bh__logline l;
  bh__log_begin(&l, map[level], "plugin_log");
  bh__log_str(&l, "plugin", bh__ctx_plugin(ctx)->name);
  bh__log_str(&l, "msg", msg.data ? msg.data : "");
  bh__log_end(&l);
  bh__buf_free(&msg);
}

static const char *svc_config_get(bh_ctx *ctx, const char *key) {
  bh__plugin *p = bh__ctx_plugin(ctx);
  return bh__config_get(p->d->cfg, p->conf->section->name, key);
}

static void svc_set_data(bh_ctx *ctx, void *data) {
  bh__ctx_plugin(ctx)->data = data;
}

static void *svc_get_data(bh_ctx *ctx) {
  return bh__ctx_plugin(ctx)->data;
}

static const char *svc_data_dir(bh_ctx *ctx) {
  return bh__ctx_plugin(ctx)->data_dir;
}

/* --- registration ------------------------------------------------------ */

static int svc_route_add(bh_ctx *ctx, const bh_route *r) {
  BH__ON_LOOP(ctx->plugin, "route_add");
  bh__plugin *p = bh__ctx_plugin(ctx);
  if (!p->in_init) return -EPERM;
  return bh__route_register(p, r);
}

/* Copies `n` elements of `size` bytes into `n` zeroed elements of `want`
 * bytes: a plugin built against an older header passes smaller elements,
 * whose missing tail fields read as zero. */
static void *bh__normalize(const void *src, size_t n, size_t size,
                           size_t want) {
  char *out = calloc(n ? n : 1, want);
  if (out == NULL) return NULL;
  for (size_t i = 0; i < n; i++)
    memcpy(out + i * want, (const char *)src + i * size,
           size < want ? size : want);
  return out;
}

static int svc_error_map(bh_ctx *ctx, const bh_error_row *rows, size_t n,
                         size_t row_size) {
  BH__ON_LOOP(ctx->plugin, "error_map");
  bh__plugin *p = bh__ctx_plugin(ctx);
  if (!p->in_init) return -EPERM;
  if ((rows == NULL && n > 0) ||
      row_size < offsetof(bh_error_row, pass_retry_after) + sizeof(int) ||
      row_size > sizeof(bh_error_row)) {
    bh__reg_fail(p, "error map: bad row size %zu", row_size);
    return -EINVAL;
  }
  bh_error_row *norm = bh__normalize(rows, n, row_size, sizeof(*norm));
  if (norm == NULL) return -ENOMEM;
  char why[256] = "";
  int rc = bh__errmap_register(p, norm, n, why, sizeof(why));
  free(norm);
  if (rc != 0) {
    bh__errmap_free(p);
    bh__reg_fail(p, "%s", why[0] ? why : strerror(-rc));
  }
  return rc;
}

/* --- request accessors ------------------------------------------------- */

static const char *svc_req_method(bh_req *r) {
  return r->method;
}
static const char *svc_req_path(bh_req *r) {
  return r->path;
}
static const char *svc_req_query(bh_req *r) {
  return r->query;
}
static const char *svc_req_id(bh_req *r) {
  return r->id;
}
static const char *svc_req_client_addr(bh_req *r) {
  return r->client_addr;
}

static const char *svc_req_header(bh_req *r, const char *name) {
  return bh__req_header(r, name);
}

static const char *svc_req_body(bh_req *r, size_t *len) {
  if (len) *len = r->body.len;
  return r->body.data ? r->body.data : "";
}

static bh_ctx *svc_req_ctx(bh_req *r) {
  return r->plugin ? &r->plugin->ctx : NULL;
}

static int bh__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into *out (allocated). 0; -EINVAL when it
 * decodes to a NUL byte (plugins treat parameters as C strings); -ENOMEM. */
static int bh__pct_decode(const char *s, size_t n, char **out) {
  char *o = malloc(n + 1);
  *out = NULL;
  if (o == NULL) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && bh__hexval(s[i + 1]) >= 0 &&
        bh__hexval(s[i + 2]) >= 0) {
      char c = (char)(bh__hexval(s[i + 1]) * 16 + bh__hexval(s[i + 2]));
      if (c == '\0') {
        free(o);
        return -EINVAL;
      }
      o[k++] = c;
      i += 2;
    } else {
      o[k++] = s[i];
    }
  }
  o[k] = '\0';
  *out = o;
  return 0;
}

/* A decoded parameter a plugin may join into a path, a query or a file
 * name: no '\', '?' or '#', no "." or ".." segment, and for a {name}
 * capture (one segment) no '/'. A "*" tail keeps its '/' separators. */
static int bh__param_ok(const char *v, int tail) {
  if (strpbrk(v, tail ? "\\?#" : "/\\?#")) return 0;
  for (const char *seg = v;;) {
    size_t l = strcspn(seg, "/");
    if ((l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
      return 0;
    if (seg[l] == '\0') return 1;
    seg += l + 1;
  }
}

int bh__params_decode(bh_req *r) {
  if (r->match.nparams == 0 || r->params) return 0;
  r->params = calloc(r->match.nparams, sizeof(char *));
  if (r->params == NULL) return -ENOMEM;
  for (size_t i = 0; i < r->match.nparams; i++) {
    const bh__param *pm = &r->match.params[i];
    int rc = bh__pct_decode(r->path + pm->off, pm->len, &r->params[i]);
    if (rc) return rc;
    if (!bh__param_ok(r->params[i], strcmp(pm->name, "*") == 0)) return -EINVAL;
  }
  return 0;
}

static const char *svc_req_param(bh_req *r, const char *name) {
  /* every value was decoded and checked before the handler ran */
  for (size_t i = 0; r->params && i < r->match.nparams; i++)
    if (strcmp(r->match.params[i].name, name) == 0) return r->params[i];
  return NULL;
}

/* --- ending a request -------------------------------------------------- */

/* Releases the plugin's hold. -EALREADY for a second end call; -ECANCELED
 * when the core already answered (deadline) or the client went away. */
static int bh__end_begin(bh_req *r) {
  BH__ON_LOOP(r->plugin, "an end call");
  if (!r->plugin_holds) return -EALREADY;
  r->plugin_holds = 0;
  if (r->answered || !bh__req_live(r)) {
    bh__req_unref(r);
    return -ECANCELED;
  }
  /* a section's deadline is its composite's to stop, once it has the
   * answer */
  if (r->conn) uv_timer_stop(&r->conn->timer);
  return 0;
}

static int bh__token_ok(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c <= 32 || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c)) return 0;
  }
  return 1;
}

static int bh__value_ok(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 32 && c != '\t') || c == 127) return 0;
  }
  return 1;
}

static int svc_set_header(bh_req *r, const char *name, const char *value) {
  BH__ON_LOOP(r->plugin, "set_header");
  /* the core owns framing and identity headers */
  static const char *const refused[] = {
      "connection", "keep-alive",   "transfer-encoding", "content-length",
      "upgrade",    "te",           "trailer",           "proxy-connection",
      "date",       "x-request-id", "content-type",      NULL};
  if (!r->plugin_holds || r->answered) return -EALREADY;
  if (name == NULL || value == NULL || !bh__token_ok(name) ||
      !bh__value_ok(value))
    return -EINVAL;
  for (size_t i = 0; refused[i]; i++)
    if (strcasecmp(name, refused[i]) == 0) return -EINVAL;
  bh__buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
  return bh__buf_failed(&r->resp_headers) ? -ENOMEM : 0;
}

static int svc_respond(bh_req *r, int status, const char *content_type,
                       const char *body, size_t len) {
  int rc = bh__end_begin(r);
  if (rc) return rc;
  if (status < 200 || status > 599 ||
      (content_type && !bh__value_ok(content_type)) ||
      (body == NULL && len > 0)) {
    bh__logf(BH__ERROR, "plugin_bad_response",
             "plugin %s ended a request with status %d or a bad content type",
             r->plugin ? r->plugin->name : "?", status);
    bh__respond_code(r, "generic.internal");
    bh__req_unref(r);
    return -EINVAL;
  }
  bh__respond(r, status, content_type, body, len, NULL);
  bh__req_unref(r);
  return 0;
}

static int svc_problem(bh_req *r, const char *code, const char *detail) {
  int rc = bh__end_begin(r);
  if (rc) return rc;
  bh__respond_problem(r, code ? code : "generic.internal", detail, -1, NULL, 0,
                      NULL, 0);
  bh__req_unref(r);
  return 0;
}

/* ABI 1.2: a Problem with Retry-After, the header and retryAfterSeconds
 * always equal. */
static int svc_problem_retry(bh_req *r, const char *code, const char *detail,
                             long retry_after_s) {
  int rc = bh__end_begin(r);
  if (rc) return rc;
  bh__respond_problem(r, code ? code : "generic.internal", detail,
                      retry_after_s < 0 ? -1 : retry_after_s, NULL, 0, NULL, 0);
  bh__req_unref(r);
  return 0;
}

/* --- strict JSON bodies ------------------------------------------------ */

static int svc_body_parse(bh_req *r, const bh_body_shape *in, size_t shape_size,
                          size_t field_size) {
  BH__ON_LOOP(r->plugin, "body_parse");
  if (!r->plugin_holds || r->answered) return -EALREADY;
  if (in == NULL ||
      shape_size < offsetof(bh_body_shape, allow_unknown) + sizeof(int) ||
      shape_size > sizeof(bh_body_shape) ||
      field_size < offsetof(bh_field, one_of) + sizeof(void *) ||
      field_size > sizeof(bh_field) || (in->fields == NULL && in->nfields))
    return -EINVAL;
  bh_body_shape local;
  memset(&local, 0, sizeof(local));
  memcpy(&local, in, shape_size);
  bh_field *fields =
      bh__normalize(in->fields, in->nfields, field_size, sizeof(bh_field));
  if (fields == NULL) return -ENOMEM;
  local.fields = fields;
  const bh_body_shape *shape = &local;
  if (r->json) {
    bh__body_free(r->json);
    r->json = NULL;
  }
  bh__body_result res;
  memset(&res, 0, sizeof(res));
  int rc = bh__body_validate(r->body.data ? r->body.data : "", r->body.len,
                             shape, &res);
  free(fields);
  if (rc == 0) {
    r->json = res.body;
    return 0;
  }
  int end = bh__end_begin(r);
  if (end == 0) {
    bh__respond_problem(
        r, rc == -ENOMEM ? "generic.internal" : "request.invalid_body",
        rc == -ENOMEM ? NULL : res.detail, -1, NULL, 0, res.errors,
        res.nerrors);
    bh__req_unref(r);
  }
  bh__field_errors_free(res.errors, res.nerrors);
  return rc == -ENOMEM ? -ENOMEM : -EINVAL;
}

static const char *svc_body_string(bh_req *r, const char *f) {
  return r->json ? bh__body_string(r->json, f) : NULL;
}
static int svc_body_int(bh_req *r, const char *f, int64_t *out) {
  return r->json ? bh__body_int(r->json, f, out) : -ENOENT;
}
static int svc_body_bool(bh_req *r, const char *f, int *out) {
  return r->json ? bh__body_bool(r->json, f, out) : -ENOENT;
}
static const char *svc_body_json(bh_req *r, const char *f) {
  return r->json ? bh__body_json(r->json, f) : NULL;
}
static const char *svc_body_string_at(bh_req *r, const char *f, size_t i) {
  return r->json ? bh__body_string_at(r->json, f, i) : NULL;
}

/* --- upstreams --------------------------------------------------------- */

static int svc_upstream_add(bh_ctx *ctx, const bh_upstream_def *def,
                            bh_upstream **out) {
  BH__ON_LOOP(ctx->plugin, "upstream_add");
  bh__plugin *p = bh__ctx_plugin(ctx);
  if (!p->in_init) return -EPERM;
  if (out == NULL) return -EINVAL;
  char why[256] = "";
  int rc = bh__upstream_new(p->d, p, def, out, why, sizeof(why));
  if (rc) bh__reg_fail(p, "%s", why[0] ? why : strerror(-rc));
  return rc;
}

static int svc_upstream_call(bh_req *r, bh_upstream *u,
                             const bh_upstream_request *call, bh_upstream_cb cb,
                             void *data) {
  BH__ON_LOOP(r ? r->plugin : NULL, "upstream_call");
  if (r == NULL || cb == NULL) return -EINVAL;
  if (!r->plugin_holds) return -EALREADY;
  return bh__call_start(r->d, r, u, call, cb, data, NULL);
}

static const char *svc_upstream_header(const bh_upstream_result *res,
                                       const char *name) {
  if (res == NULL || name == NULL) return NULL;
  return bh__result_header(res, name);
}

static int svc_problem_upstream(bh_req *r, const bh_upstream_result *res) {
  if (res == NULL) return -EINVAL;
  int rc = bh__end_begin(r);
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

static int svc_proxy_add(bh_ctx *ctx, const char *prefix, bh_upstream *u,
                         uint32_t flags) {
  bh__plugin *p = bh__ctx_plugin(ctx);
  if (!p->in_init) return -EPERM;
  int rc = bh__proxy_add(p, prefix, u, flags);
  if (rc && p->reg_error == NULL)
    bh__reg_fail(p, "proxy %s: %s", prefix ? prefix : "(null)", strerror(-rc));
  return rc;
}

static int svc_problem_field(bh_req *r, const char *code, const char *detail,
                             const char *field) {
  if (field == NULL) return svc_problem(r, code, detail);
  int rc = bh__end_begin(r);
  if (rc) return rc;
  if (code == NULL) code = "generic.internal";
  bh__field_error fe = {.field = (char *)field, .code = code};
  /* an unknown code becomes generic.internal: then name no field either */
  int known = bh__code_find(r->d, r->plugin, code) != NULL;
  bh__respond_problem(r, code, detail, -1, NULL, 0, known ? &fe : NULL,
                      known ? 1 : 0);
  bh__req_unref(r);
  return 0;
}

/* --- wakeups (ABI 1.1) ------------------------------------------------ */

struct bh_wakeup {
  const bh_services *svc; /* bh_handle_head: must stay first */
  uv_async_t async;
  bh__plugin *plugin;
  bh_wakeup_fn cb;
  void *data;
  int closed;
};

static void bh__wakeup_run(uv_async_t *a) {
  bh_wakeup *w = a->data;
  if (w->closed) return;
  bh__plugin *p = w->plugin;
  /* plugin code on the loop: a crash or hang in it is charged to p */
  int64_t mark = bh__shm_enter(p->shm_index, BH__CB_HANDLER);
  w->cb(&p->ctx, w->data);
  bh__shm_leave(mark);
}

static void bh__wakeup_free(uv_handle_t *h) {
  free(h->data);
}

static int svc_wakeup_new(bh_ctx *ctx, bh_wakeup_fn cb, void *data,
                          bh_wakeup **out) {
  BH__ON_LOOP(ctx ? ctx->plugin : NULL, "wakeup_new");
  if (ctx == NULL || cb == NULL || out == NULL) return -EINVAL;
  bh__plugin *p = bh__ctx_plugin(ctx);
  bh_wakeup *w = calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  w->svc = p->d->svc;
  w->plugin = p;
  w->cb = cb;
  w->data = data;
  int rc = uv_async_init(p->d->loop, &w->async, bh__wakeup_run);
  if (rc) {
    free(w);
    return rc;
  }
  w->async.data = w;
  /* like a signal watcher: never what keeps a draining worker running */
  uv_unref((uv_handle_t *)&w->async);
  *out = w;
  return 0;
}

static int svc_wakeup_send(bh_wakeup *w) {
  if (w == NULL) return -EINVAL;
  return uv_async_send(&w->async);
}

static void svc_wakeup_close(bh_wakeup *w) {
  if (w == NULL || w->closed) return;
  w->closed = 1;
  uv_close((uv_handle_t *)&w->async, bh__wakeup_free);
}

/* --- job queues (ABI 1.3 (store)) ----------------------------------- */

/* A plugin's queue: state/jobq.c's, with done() charged to the plugin the
 * way a wakeup callback is. Freed by jobq_close(). */
typedef struct bh__pjobq {
  bh__plugin *plugin;
  bh_jobq_def def; /* the plugin's, copied */
  void *data;
} bh__pjobq;

static void bh__pjobq_start(void *arg) {
  bh__pjobq *w = arg;
  if (w->def.thread_start) w->def.thread_start(w->data);
}

static void bh__pjobq_run(bh_job *batch, void *arg) {
  bh__pjobq *w = arg;
  w->def.run(batch, w->data);
}

static void bh__pjobq_done(bh_job *job, void *arg) {
  bh__pjobq *w = arg;
  int64_t mark = bh__shm_enter(w->plugin->shm_index, BH__CB_HANDLER);
  w->def.done(job, w->data);
  bh__shm_leave(mark);
}

static void bh__pjobq_stop(void *arg) {
  bh__pjobq *w = arg;
  if (w->def.thread_stop) w->def.thread_stop(w->data);
}

static int svc_jobq_new(bh_ctx *ctx, const bh_jobq_def *def, void *data,
                        bh_jobq **out) {
  if (ctx == NULL || def == NULL || out == NULL ||
      def->size < offsetof(bh_jobq_def, thread_stop))
    return -EINVAL;
  bh__plugin *p = bh__ctx_plugin(ctx);
  bh__pjobq *w = calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  memcpy(&w->def, def, def->size < sizeof(w->def) ? def->size : sizeof(w->def));
  if (w->def.run == NULL || w->def.done == NULL) {
    free(w);
    return -EINVAL;
  }
  w->plugin = p;
  w->data = data;
  char name[16];
  snprintf(name, sizeof(name), "%.10s-jobs", p->name);
  bh_jobq_def core = w->def;
  core.size = sizeof(core);
  core.name = def->name ? def->name : name;
  core.thread_start = bh__pjobq_start;
  core.run = bh__pjobq_run;
  core.done = bh__pjobq_done;
  core.thread_stop = bh__pjobq_stop;
  w->def.name = NULL; /* borrowed from the plugin: not kept */
  int rc = bh__jobq_new(p->d->loop, p->d->svc, &core, w, out);
  if (rc) free(w);
  return rc;
}

static int svc_jobq_submit(bh_jobq *q, bh_job *job) {
  return bh__jobq_submit(q, job);
}

static void svc_jobq_close(bh_jobq *q) {
  if (q == NULL) return;
  bh__pjobq *w = bh__jobq_data(q);
  bh__jobq_close(q);
  free(w);
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

static int svc_upstream_stream(bh_req *r, bh_upstream *u,
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

static int svc_stream_start(bh_req *r, int status, const char *content_type) {
  if (!r->plugin_holds) return -EALREADY;
  if (r->answered) return -ECANCELED;
  if (status < 200 || status > 599 || status == 204 || status == 304 ||
      (content_type && !bh__value_ok(content_type)))
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

static long svc_stream_write(bh_req *r, const char *data, size_t len) {
  if (!r->plugin_holds || !r->streaming || (data == NULL && len))
    return -EINVAL;
  return bh__respond_body(r, data, len);
}

static int svc_stream_end(bh_req *r, int failed) {
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

static int svc_problem_json(bh_req *r, const char *code, const char *detail,
                            const bh_upstream_result *res, char *buf,
                            size_t buflen) {
  if (r == NULL || (buf == NULL && buflen)) return -EINVAL;
  bh__mapped m = {NULL, -1};
  char mapped[96];
  long retry_after = -1;
  if (res) {
    if (r->plugin == NULL) return -EINVAL;
    bh__errmap_match(r->plugin, res, bh__result_malformed(res), &m, mapped,
                     sizeof(mapped));
    code = m.code;
    detail = NULL;
    retry_after = m.retry_after;
  }
  const bh__code *cd = bh__code_find(r->d, r->plugin, code ? code : "");
  if (cd == NULL) {
    bh__logf(BH__ERROR, "unknown_code", "plugin %s asked for code %.64s",
             r->plugin ? r->plugin->name : "?", code ? code : "(null)");
    cd = bh__code_find(r->d, NULL, "generic.internal");
    detail = NULL;
    if (cd == NULL) return -ENOENT;
  }
  bh__req_ids(r);
  bh__problem pb = {
      .status = cd->status,
      .code = cd->code,
      .title = cd->title,
      .detail = detail ? detail : cd->detail,
      .instance = r->path,
      .retryable = cd->retryable,
      .retry_after = retry_after,
      .request_id = r->id,
      .trace_id = r->trace.trace_id,
      .span_id = r->trace.span_id,
  };
  bh__buf out;
  bh__buf_init(&out);
  bh__problem_encode(&pb, r->d->cfg->problem_flat, &out);
  if (bh__buf_failed(&out)) {
    bh__buf_free(&out);
    return -ENOMEM;
  }
  r->code = cd->code;
  if (buflen) {
    size_t n = out.len < buflen - 1 ? out.len : buflen - 1;
    memcpy(buf, out.data, n);
    buf[n] = '\0';
  }
  int len = (int)out.len;
  bh__buf_free(&out);
  return len;
}

static const bh_services bh__svc_table = {
    .size = sizeof(bh_services),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .log = svc_log,
    .config_get = svc_config_get,
    .set_data = svc_set_data,
    .get_data = svc_get_data,
    .data_dir = svc_data_dir,
    .route_add = svc_route_add,
    .error_map = svc_error_map,
    .req_method = svc_req_method,
    .req_path = svc_req_path,
    .req_query = svc_req_query,
    .req_param = svc_req_param,
    .req_header = svc_req_header,
    .req_body = svc_req_body,
    .req_id = svc_req_id,
    .req_client_addr = svc_req_client_addr,
    .req_ctx = svc_req_ctx,
    .set_header = svc_set_header,
    .respond = svc_respond,
    .problem = svc_problem,
    .body_parse = svc_body_parse,
    .body_string = svc_body_string,
    .body_int = svc_body_int,
    .body_bool = svc_body_bool,
    .body_json = svc_body_json,
    .body_string_at = svc_body_string_at,
    .upstream_add = svc_upstream_add,
    .upstream_call = svc_upstream_call,
    .upstream_header = svc_upstream_header,
    .problem_upstream = svc_problem_upstream,
    .proxy_add = svc_proxy_add,
    .wakeup_new = svc_wakeup_new,
    .wakeup_send = svc_wakeup_send,
    .wakeup_close = svc_wakeup_close,
    .problem_field = svc_problem_field,
    .req_principal = bh__svc_req_principal,
    .problem_retry = svc_problem_retry,
    .session_create = bh__svc_session_create,
    .session_refresh = bh__svc_session_refresh,
    .session_revoke = bh__svc_session_revoke,
    .apikey_create = bh__svc_apikey_create,
    .apikey_list = bh__svc_apikey_list,
    .apikey_revoke = bh__svc_apikey_revoke,
    .login_guard = bh__svc_login_guard,
    .local_verify = bh__svc_local_verify,
    .upstream_stream = svc_upstream_stream,
    .stream_start = svc_stream_start,
    .stream_write = svc_stream_write,
    .stream_end = svc_stream_end,
    .problem_json = svc_problem_json,
    .secret_get = bh__svc_secret_get,
    .secret_free = bh__svc_secret_free,
    .upstream_header_get = bh__svc_upstream_header_get,
    .body_get = bh__svc_body_get,
    .body_key_at = bh__svc_body_key_at,
    .upstream_fallback = bh__svc_upstream_fallback,
    .budget_add = bh__svc_budget_add,
    .budget_charge = bh__svc_budget_charge,
    .composite_add = bh__svc_composite_add,
    .jobq_new = svc_jobq_new,
    .jobq_submit = svc_jobq_submit,
    .jobq_close = svc_jobq_close,
    .store_info = bh__svc_store_info,
    .store_connect = bh__svc_store_connect,
    .store_disconnect = bh__svc_store_disconnect,
};

const bh_services *bh__services(void) {
  return &bh__svc_table;
}
