/*
 * The services of ABI 1.3 (include/bulkhead/plugin.h): the core's secret
 * resolver for a plugin's own keys, an upstream header copied into the
 * caller's buffer, and any value of a parsed body by JSON Pointer. The
 * table itself is in services.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "config/secret.h"
#include "host/host.h"
#include "http/http.h"
#include "http/validate.h"
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
