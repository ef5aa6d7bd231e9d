/*
 * The services of ABI 1.3 (include/bulkhead/plugin.h): the core's secret
 * resolver for a plugin's own keys, an upstream header copied into the
 * caller's buffer, any value of a parsed body by JSON Pointer, and a
 * Problem with the plugin's own extension members. The table itself is in
 * services.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "config/secret.h"
#include "host/host.h"
#include "host/services.h"
#include "http/http.h"
#include "http/validate.h"
#include "problem/errmap.h"
#include "proc/daemon-t.h"
#include "upstream/upstream.h"

int bh__svc_secret_get(bh_ctx *ctx, const char *key, char **out,
                       size_t *outlen) {
  if (ctx == NULL || key == NULL || out == NULL || outlen == NULL)
    return -EINVAL;
  bh__plugin *p = ctx->plugin;
  *out = NULL;
  *outlen = 0;
  const char *v = bh__config_get(p->d->cfg, p->conf->section->name, key);
  if (v == NULL) return -ENOENT;
  char why[256] = "";
  int rc = bh__secret_resolve(v, out, outlen, why, sizeof(why));
  if (rc != 0) {
    /* the reason names the variable or the file, never the value */
    char msg[400];
    snprintf(msg, sizeof(msg), "[plugin.%s] %s: %s", p->name, key,
             why[0] ? why : strerror(-rc));
    bh__logline l;
    bh__log_begin(&l, BH__ERROR, "plugin_secret");
    bh__log_str(&l, "plugin", p->name);
    bh__log_str(&l, "msg", msg);
    bh__log_end(&l);
  }
  return rc;
}

void bh__svc_secret_free(char *secret, size_t len) {
  bh__secret_free(secret, len);
}

int bh__svc_upstream_header_get(const bh_upstream_result *res, const char *name,
                                char *buf, size_t buflen) {
  if (res == NULL || name == NULL || (buf == NULL && buflen)) return -EINVAL;
  return bh__result_header_copy(res, name, buf, buflen);
}

int bh__svc_body_get(bh_req *r, const char *ptr, bh_body_value *out,
                     size_t out_size) {
  if (r == NULL || out == NULL ||
      out_size < offsetof(bh_body_value, count) + sizeof(size_t))
    return -EINVAL;
  if (r->json == NULL) return -EINVAL;
  bh_body_value v;
  int rc = bh__body_get(r->json, ptr, &v);
  if (rc) return rc;
  size_t n = out_size < sizeof(v) ? out_size : sizeof(v);
  v.size = (uint32_t)n;
  memcpy(out, &v, n);
  return 0;
}

const char *bh__svc_body_key_at(bh_req *r, const char *ptr, size_t i) {
  return r && r->json ? bh__body_key_at(r->json, ptr, i) : NULL;
}

/* Refused members are the plugin's bug: one line, and an honest 500, as
 * respond() does with bad arguments. */
static void bh__members_refused(bh_req *r, const char *why) {
  bh__logf(BH__ERROR, "plugin_bad_problem", "plugin %s: problem_with %s",
           r->plugin ? r->plugin->name : "?", why);
  bh__respond_code(r, "generic.internal");
}

int bh__svc_problem_with(bh_req *r, const char *code, const char *detail,
                         const bh_upstream_result *res,
                         const char *members_json, long retry_after_s) {
  if (r == NULL) return -EINVAL;
  int rc = bh__svc_end_begin(r);
  if (rc) return rc;
  bh__buf members;
  bh__buf_init(&members);
  char why[128];
  rc = bh__problem_members(members_json, &members, why, sizeof(why));
  if (rc) {
    bh__buf_free(&members);
    bh__members_refused(r, rc == -ENOMEM ? "out of memory" : why);
    bh__req_unref(r);
    return rc;
  }
  bh__problem extra = {
      .retry_after = -1, .members = members.data, .nmembers = members.len};
  char mapped[96];
  if (res && r->plugin) {
    bh__mapped m;
    bh__errmap_match(r->plugin, res, bh__result_malformed(res), &m, mapped,
                     sizeof(mapped));
    code = m.code;
    detail = NULL;
    extra.retry_after = m.retry_after;
  }
  if (retry_after_s >= 0) extra.retry_after = retry_after_s;
  bh__respond_problem_pb(r, code ? code : "generic.internal", detail, &extra);
  bh__buf_free(&members);
  bh__req_unref(r);
  return 0;
}
