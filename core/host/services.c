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

/* 0 on p's loop thread. Elsewhere -EPERM, and one line (once per plugin)
 * naming the plugin, the service and the rule: a plugin's own thread
 * hands its results back with a wakeup. */
int bh__svc_thread_check(bh__plugin *p, const char *slot) {
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
  bh__log_str(&l, "plugin", bh__svc_plugin(ctx)->name);
  bh__log_str(&l, "msg", msg.data ? msg.data : "");
  bh__log_end(&l);
  bh__buf_free(&msg);
}

static const char *svc_config_get(bh_ctx *ctx, const char *key) {
  bh__plugin *p = bh__svc_plugin(ctx);
  return bh__config_get(p->d->cfg, p->conf->section->name, key);
}

static void svc_set_data(bh_ctx *ctx, void *data) {
  bh__svc_plugin(ctx)->data = data;
}

static void *svc_get_data(bh_ctx *ctx) {
  return bh__svc_plugin(ctx)->data;
}

static const char *svc_data_dir(bh_ctx *ctx) {
  return bh__svc_plugin(ctx)->data_dir;
}

/* --- registration ------------------------------------------------------ */

static int svc_route_add(bh_ctx *ctx, const bh_route *r) {
  BH__ON_LOOP(ctx->plugin, "route_add");
  bh__plugin *p = bh__svc_plugin(ctx);
  if (!p->in_init) return -EPERM;
  return bh__route_register(p, r);
}

/* Copies `n` elements of `size` bytes into `n` zeroed elements of `want`
 * bytes: a plugin built against an older header passes smaller elements,
 * whose missing tail fields read as zero. */
void *bh__svc_normalize(const void *src, size_t n, size_t size, size_t want) {
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
  bh__plugin *p = bh__svc_plugin(ctx);
  if (!p->in_init) return -EPERM;
  if ((rows == NULL && n > 0) ||
      row_size < offsetof(bh_error_row, pass_retry_after) + sizeof(int) ||
      row_size > sizeof(bh_error_row)) {
    bh__reg_fail(p, "error map: bad row size %zu", row_size);
    return -EINVAL;
  }
  bh_error_row *norm = bh__svc_normalize(rows, n, row_size, sizeof(*norm));
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

const bh_services bh__svc_table = {
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
    .req_method = bh__svc_req_method,
    .req_path = bh__svc_req_path,
    .req_query = bh__svc_req_query,
    .req_param = bh__svc_req_param,
    .req_header = bh__svc_req_header,
    .req_body = bh__svc_req_body,
    .req_id = bh__svc_req_id,
    .req_client_addr = bh__svc_req_client_addr,
    .req_ctx = bh__svc_req_ctx,
    .set_header = bh__svc_set_header,
    .respond = bh__svc_respond,
    .problem = bh__svc_problem,
    .body_parse = bh__svc_body_parse,
    .body_string = bh__svc_body_string,
    .body_int = bh__svc_body_int,
    .body_bool = bh__svc_body_bool,
    .body_json = bh__svc_body_json,
    .body_string_at = bh__svc_body_string_at,
    .upstream_add = bh__svc_upstream_add,
    .upstream_call = bh__svc_upstream_call,
    .upstream_header = bh__svc_upstream_header,
    .problem_upstream = bh__svc_problem_upstream,
    .proxy_add = bh__svc_proxy_add,
    .wakeup_new = bh__svc_wakeup_new,
    .wakeup_send = bh__svc_wakeup_send,
    .wakeup_close = bh__svc_wakeup_close,
    .problem_field = bh__svc_problem_field,
    .req_principal = bh__svc_req_principal,
    .problem_retry = bh__svc_problem_retry,
    .session_create = bh__svc_session_create,
    .session_refresh = bh__svc_session_refresh,
    .session_revoke = bh__svc_session_revoke,
    .apikey_create = bh__svc_apikey_create,
    .apikey_list = bh__svc_apikey_list,
    .apikey_revoke = bh__svc_apikey_revoke,
    .login_guard = bh__svc_login_guard,
    .local_verify = bh__svc_local_verify,
    .upstream_stream = bh__svc_upstream_stream,
    .stream_start = bh__svc_stream_start,
    .stream_write = bh__svc_stream_write,
    .stream_end = bh__svc_stream_end,
    .problem_json = bh__svc_problem_json,
    .secret_get = bh__svc_secret_get,
    .secret_free = bh__svc_secret_free,
    .upstream_header_get = bh__svc_upstream_header_get,
    .body_get = bh__svc_body_get,
    .body_key_at = bh__svc_body_key_at,
    .upstream_fallback = bh__svc_upstream_fallback,
    .budget_add = bh__svc_budget_add,
    .budget_charge = bh__svc_budget_charge,
    .composite_add = bh__svc_composite_add,
    .jobq_new = bh__svc_jobq_new,
    .jobq_submit = bh__svc_jobq_submit,
    .jobq_close = bh__svc_jobq_close,
    .store_info = bh__svc_store_info,
    .store_connect = bh__svc_store_connect,
    .store_disconnect = bh__svc_store_disconnect,
    .problem_with = bh__svc_problem_with,
};

const bh_services *bh__services(void) {
  return &bh__svc_table;
}
