/*
 * The services of a request's life (include/bulkhead/plugin.h): its
 * accessors and decoded route parameters, the end calls (respond and the
 * Problem forms), and strict JSON bodies. Each checks what a plugin could
 * get wrong (a second end call, a header that would split the response).
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

/* --- request accessors ------------------------------------------------- */

const char *bh__svc_req_method(bh_req *r) {
  return r->method;
}
const char *bh__svc_req_path(bh_req *r) {
  return r->path;
}
const char *bh__svc_req_query(bh_req *r) {
  return r->query;
}
const char *bh__svc_req_id(bh_req *r) {
  return r->id;
}
const char *bh__svc_req_client_addr(bh_req *r) {
  return r->client_addr;
}

const char *bh__svc_req_header(bh_req *r, const char *name) {
  return bh__req_header(r, name);
}

const char *bh__svc_req_body(bh_req *r, size_t *len) {
  if (len) *len = r->body.len;
  return r->body.data ? r->body.data : "";
}

bh_ctx *bh__svc_req_ctx(bh_req *r) {
  return r->plugin ? &r->plugin->ctx : NULL;
}

static int bh__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into o (room for n + 1 bytes: decoding never
 * grows). 0; -EINVAL when it decodes to a NUL byte (plugins treat
 * parameters as C strings). */
static int bh__pct_decode(const char *s, size_t n, char *o) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && bh__hexval(s[i + 1]) >= 0 &&
        bh__hexval(s[i + 2]) >= 0) {
      char c = (char)(bh__hexval(s[i + 1]) * 16 + bh__hexval(s[i + 2]));
      if (c == '\0') return -EINVAL;
      o[k++] = c;
      i += 2;
    } else {
      o[k++] = s[i];
    }
  }
  o[k] = '\0';
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

/* The values live in the request's params_mem, the pointer array first,
 * sized once up front (so no pointer moves): one buffer the request keeps
 * when it is reused, no allocation per parameter. */
int bh__params_decode(bh_req *r) {
  if (r->match.nparams == 0 || r->params) return 0;
  size_t need = r->match.nparams * sizeof(char *);
  for (size_t i = 0; i < r->match.nparams; i++)
    need += r->match.params[i].len + 1;
  bh__buf *m = &r->params_mem;
  m->len = 0;
  if (bh__buf_grow(m, need) != 0) return -ENOMEM;
  char **vals = (char **)(void *)m->data; /* malloc'd: aligned */
  char *o = m->data + r->match.nparams * sizeof(char *);
  for (size_t i = 0; i < r->match.nparams; i++) {
    const bh__param *pm = &r->match.params[i];
    vals[i] = o;
    int rc = bh__pct_decode(r->path + pm->off, pm->len, o);
    if (rc) return rc;
    if (!bh__param_ok(o, strcmp(pm->name, "*") == 0)) return -EINVAL;
    o += pm->len + 1;
  }
  r->params = vals;
  return 0;
}

const char *bh__svc_req_param(bh_req *r, const char *name) {
  /* every value was decoded and checked before the handler ran */
  for (size_t i = 0; r->params && i < r->match.nparams; i++)
    if (strcmp(r->match.params[i].name, name) == 0) return r->params[i];
  return NULL;
}

/* --- ending a request -------------------------------------------------- */

/* Releases the plugin's hold. -EALREADY for a second end call; -ECANCELED
 * when the core already answered (deadline) or the client went away. */
int bh__svc_end_begin(bh_req *r) {
  BH__ON_LOOP(r->plugin, "an end call");
  if (!r->plugin_holds) return -EALREADY;
  r->plugin_holds = 0;
  if (r->answered || !bh__req_live(r)) {
    bh__req_unref(r);
    return -ECANCELED;
  }
  /* a section's deadline is its composite's to stop, once it has the
   * answer */
  if (r->conn) bh__ltimer_stop(&r->conn->timer);
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

int bh__svc_value_ok(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 32 && c != '\t') || c == 127) return 0;
  }
  return 1;
}

int bh__svc_set_header(bh_req *r, const char *name, const char *value) {
  BH__ON_LOOP(r->plugin, "set_header");
  /* the core owns framing and identity headers */
  static const char *const refused[] = {
      "connection", "keep-alive",   "transfer-encoding", "content-length",
      "upgrade",    "te",           "trailer",           "proxy-connection",
      "date",       "x-request-id", "content-type",      NULL};
  if (!r->plugin_holds || r->answered) return -EALREADY;
  if (name == NULL || value == NULL || !bh__token_ok(name) ||
      !bh__svc_value_ok(value))
    return -EINVAL;
  for (size_t i = 0; refused[i]; i++)
    if (strcasecmp(name, refused[i]) == 0) return -EINVAL;
  bh__buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
  return bh__buf_failed(&r->resp_headers) ? -ENOMEM : 0;
}

int bh__svc_respond(bh_req *r, int status, const char *content_type,
                    const char *body, size_t len) {
  int rc = bh__svc_end_begin(r);
  if (rc) return rc;
  if (status < 200 || status > 599 ||
      (content_type && !bh__svc_value_ok(content_type)) ||
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

int bh__svc_problem(bh_req *r, const char *code, const char *detail) {
  int rc = bh__svc_end_begin(r);
  if (rc) return rc;
  bh__respond_problem(r, code ? code : "generic.internal", detail, -1, NULL, 0,
                      NULL, 0);
  bh__req_unref(r);
  return 0;
}

/* ABI 1.2: a Problem with Retry-After, the header and retryAfterSeconds
 * always equal. */
int bh__svc_problem_retry(bh_req *r, const char *code, const char *detail,
                          long retry_after_s) {
  int rc = bh__svc_end_begin(r);
  if (rc) return rc;
  bh__respond_problem(r, code ? code : "generic.internal", detail,
                      retry_after_s < 0 ? -1 : retry_after_s, NULL, 0, NULL, 0);
  bh__req_unref(r);
  return 0;
}

/* --- strict JSON bodies ------------------------------------------------ */

int bh__svc_body_parse(bh_req *r, const bh_body_shape *in, size_t shape_size,
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
      bh__svc_normalize(in->fields, in->nfields, field_size, sizeof(bh_field));
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
  int end = bh__svc_end_begin(r);
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

const char *bh__svc_body_string(bh_req *r, const char *f) {
  return r->json ? bh__body_string(r->json, f) : NULL;
}
int bh__svc_body_int(bh_req *r, const char *f, int64_t *out) {
  return r->json ? bh__body_int(r->json, f, out) : -ENOENT;
}
int bh__svc_body_bool(bh_req *r, const char *f, int *out) {
  return r->json ? bh__body_bool(r->json, f, out) : -ENOENT;
}
const char *bh__svc_body_json(bh_req *r, const char *f) {
  return r->json ? bh__body_json(r->json, f) : NULL;
}
const char *bh__svc_body_string_at(bh_req *r, const char *f, size_t i) {
  return r->json ? bh__body_string_at(r->json, f, i) : NULL;
}
int bh__svc_problem_field(bh_req *r, const char *code, const char *detail,
                          const char *field) {
  if (field == NULL) return bh__svc_problem(r, code, detail);
  int rc = bh__svc_end_begin(r);
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
int bh__svc_problem_json(bh_req *r, const char *code, const char *detail,
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
