/*
 * RFC 9457 Problem JSON encoder and the core code catalogue.
 *
 * The encoder writes straight into the caller's buffer: no intermediate
 * document, no allocation besides the buffer growth, so the error path costs
 * no more than a success response.
 */
#include "problem/problem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Titles are NULL on purpose: the title of a core code is the reason phrase
 * of its status, so clients that only look at "title" still read HTTP. */
static const bh__code bh__core_codes[] = {
    {"request.invalid_body", 400, NULL, "The request body is invalid.", 0},
    {"request.bad_request", 400, NULL, "The request is malformed.", 0},
    {"auth.unauthenticated", 401, NULL, "Authentication is required.", 0},
    {"auth.token_expired", 401, NULL,
     "The access token has expired. Refresh it and try again.", 0},
    {"auth.session_expired", 401, NULL,
     "Your session has expired. Please sign in again.", 0},
    {"auth.session_revoked", 401, NULL,
     "This session was revoked. Please sign in again.", 0},
    {"auth.ambiguous_credentials", 401, NULL,
     "A session cookie appears more than once in this request.", 0},
    {"auth.forbidden", 403, NULL, "You are not allowed to do this.", 0},
    {"auth.csrf_rejected", 403, NULL, "The request origin is not allowed.", 0},
    {"auth.session_store_unavailable", 503, NULL,
     "Sessions cannot be checked right now. Please retry shortly.", 1},
    {"route.not_found", 404, NULL, "No route matches this path.", 0},
    {"route.method_not_allowed", 405, NULL,
     "This method is not allowed on this path.", 0},
    {"request.timeout", 408, NULL, "The request was not received in time.", 1},
    {"request.too_large", 413, NULL, "The request body is too large.", 0},
    {"request.unsupported_media_type", 415, NULL,
     "The request body must be JSON (Content-Type: application/json).", 0},
    {"rate_limit.exceeded", 429, NULL, "Too many requests. Please retry later.",
     1},
    {"request.headers_too_large", 431, NULL,
     "The request headers are too large.", 0},
    {"generic.internal", 500, NULL, "An internal error occurred.", 0},
    {"plugin.unavailable", 503, NULL,
     "This service is temporarily unavailable.", 1},
    {"server.overloaded", 503, NULL,
     "The server is overloaded. Please retry later.", 1},
    {"generic.timeout", 504, NULL, "The service did not answer in time.", 1},
    {"composite.section_failed", 502, NULL,
     "A section's answer was cut short or too large.", 1},
    {"admin.not_ready", 503, NULL, "Required plugins are not running.", 1},
    {"admin.unauthorized", 401, NULL, "A valid admin token is required.", 0},
    {"admin.upstream_not_found", 404, NULL, "No upstream has this name.", 0},
    {"admin.plugin_not_found", 404, NULL, "No plugin has this name.", 0},
    {"admin.reload_refused", 400, NULL,
     "The new configuration is invalid; the running one stays.", 0},
    {"admin.workers_required", 409, NULL,
     "This needs worker processes (workers >= 1).", 0},
    {"admin.reload_in_progress", 409, NULL,
     "A reload is already in progress. Please retry once it is done.", 0},
};

#define BH__NCORE (sizeof(bh__core_codes) / sizeof(bh__core_codes[0]))

const char *const bh__field_error_codes[] = {
    BH_FIELD_ERR_REQUIRED,    BH_FIELD_ERR_TYPE,
    BH_FIELD_ERR_UNKNOWN,     BH_FIELD_ERR_TOO_SHORT,
    BH_FIELD_ERR_TOO_LONG,    BH_FIELD_ERR_OUT_OF_RANGE,
    BH_FIELD_ERR_NOT_ALLOWED, NULL,
};

const bh__code *bh__problem_core_codes(size_t *n) {
  if (n) *n = BH__NCORE;
  return bh__core_codes;
}

const bh__code *bh__problem_core_code(const char *code) {
  if (code == NULL) return NULL;
  for (size_t i = 0; i < BH__NCORE; i++)
    if (strcmp(bh__core_codes[i].code, code) == 0) return &bh__core_codes[i];
  return NULL;
}

/* The IANA HTTP status code registry, with the RFC 9110 phrases. Codes the
 * registry marks "(Unused)" (306, 418) or that are only temporary are not
 * listed: they answer "Unknown" like any unregistered code. */
const char *bh__status_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 102: return "Processing";
  case 103: return "Early Hints";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 207: return "Multi-Status";
  case 208: return "Already Reported";
  case 226: return "IM Used";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 305: return "Use Proxy";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 423: return "Locked";
  case 424: return "Failed Dependency";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 506: return "Variant Also Negotiates";
  case 507: return "Insufficient Storage";
  case 508: return "Loop Detected";
  case 510: return "Not Extended";
  case 511: return "Network Authentication Required";
  default: return "Unknown";
  }
}

/* Member names the encoder writes itself. An ext[] entry with one of these
 * keys would make a duplicate member (which parsers resolve differently, so
 * a client could read another code than the log shows): it is skipped. */
int bh__problem_reserved_key(const char *k) {
  static const char *const keys[] = {
      "type",      "title",     "status",
      "detail",    "instance",  "extensions",
      "code",      "retryable", "retryAfterSeconds",
      "requestId", "traceId",   "spanId",
      "errors",
  };
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcmp(k, keys[i]) == 0) return 1;
  return 0;
}

/* The encoder in the three pieces a prebuilt Problem (bh__problem_pre)
 * needs: the constant head (title, status, detail), the constant middle
 * (code, retryable) and the per-request tail; the instance sits between
 * head and middle. bh__problem_encode and bh__problem_encode_pre write the
 * same pieces, so their bytes cannot differ. Keys are static literals
 * here: one append each (bh__buf_key). */
static void bh__problem_head(const bh__problem *p, bh__buf *out) {
  const char *title = p->title ? p->title : bh__status_reason(p->status);
  bh__buf_puts(out, "{\"type\":\"about:blank\",\"title\":");
  bh__buf_json_str(out, title);
  bh__buf_key(out, "status");
  bh__buf_i64(out, p->status);
  if (p->detail) {
    bh__buf_key(out, "detail");
    bh__buf_json_str(out, p->detail);
  }
}

static void bh__problem_instance(const bh__problem *p, bh__buf *out) {
  if (p->instance) {
    bh__buf_key(out, "instance");
    bh__buf_json_str(out, p->instance);
  }
}

static void bh__problem_mid(const bh__problem *p, int flat, bh__buf *out) {
  /* code is mandatory in the contract; never emit a Problem without one */
  const char *code = p->code ? p->code : "generic.internal";
  if (flat)
    bh__buf_puts(out, ",\"code\":");
  else
    bh__buf_puts(out, ",\"extensions\":{\"code\":");
  bh__buf_json_str(out, code);
  bh__buf_puts(out,
               p->retryable ? ",\"retryable\":true" : ",\"retryable\":false");
}

static void bh__problem_tail(const bh__problem *p, int flat, bh__buf *out);

int bh__problem_encode(const bh__problem *p, int flat, bh__buf *out) {
  bh__problem_head(p, out);
  bh__problem_instance(p, out);
  bh__problem_mid(p, flat, out);
  bh__problem_tail(p, flat, out);
  return bh__buf_failed(out) ? -ENOMEM : 0;
}

static void bh__problem_tail(const bh__problem *p, int flat, bh__buf *out) {
  if (p->retry_after >= 0) {
    bh__buf_key(out, "retryAfterSeconds");
    bh__buf_i64(out, p->retry_after);
  }
  if (p->request_id) {
    bh__buf_key(out, "requestId");
    bh__buf_json_str(out, p->request_id);
  }
  /* lowercase hex the core made: no escaping needed */
  if (p->trace_id && p->trace_id[0]) {
    bh__buf_key(out, "traceId");
    bh__buf_putc(out, '"');
    bh__buf_puts(out, p->trace_id);
    bh__buf_putc(out, '"');
  }
  if (p->span_id && p->span_id[0]) {
    bh__buf_key(out, "spanId");
    bh__buf_putc(out, '"');
    bh__buf_puts(out, p->span_id);
    bh__buf_putc(out, '"');
  }
  for (size_t i = 0; p->ext && i < p->next; i++) {
    const bh__ext *e = &p->ext[i];
    if (e->key == NULL || bh__problem_reserved_key(e->key)) continue;
    bh__buf_putc(out, ',');
    bh__buf_json_str(out, e->key);
    bh__buf_putc(out, ':');
    bh__buf_json_str(out, e->value);
  }
  if (p->members && p->nmembers) bh__buf_append(out, p->members, p->nmembers);
  if (p->errors && p->nerrors > 0) {
    bh__buf_puts(out, ",\"errors\":[");
    for (size_t i = 0; i < p->nerrors; i++) {
      bh__buf_puts(out, i ? ",{\"field\":" : "{\"field\":");
      bh__buf_json_str(out, p->errors[i].field);
      bh__buf_puts(out, ",\"code\":");
      bh__buf_json_str(out, p->errors[i].code);
      bh__buf_putc(out, '}');
    }
    bh__buf_putc(out, ']');
  }
  if (!flat) bh__buf_putc(out, '}');
  bh__buf_putc(out, '}');
}

/* Copies s (NULL stays NULL) into the entry's own storage. */
static char *bh__pre_dup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static int bh__pre_same(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

void bh__problem_pre_free(bh__problem_pre *pre) {
  free(pre->code);
  free(pre->title);
  free(pre->detail);
  bh__buf_free(&pre->head);
  bh__buf_free(&pre->mid);
  memset(pre, 0, sizeof(*pre));
}

int bh__problem_pre_build(bh__problem_pre *pre, const bh__problem *p,
                          int flat) {
  bh__problem_pre_free(pre);
  bh__buf_init(&pre->head);
  bh__buf_init(&pre->mid);
  pre->status = p->status;
  pre->retryable = p->retryable;
  pre->flat = flat;
  pre->code = bh__pre_dup(p->code);
  pre->title = bh__pre_dup(p->title);
  pre->detail = bh__pre_dup(p->detail);
  bh__problem_head(p, &pre->head);
  bh__problem_mid(p, flat, &pre->mid);
  if ((p->code && !pre->code) || (p->title && !pre->title) ||
      (p->detail && !pre->detail) || bh__buf_failed(&pre->head) ||
      bh__buf_failed(&pre->mid)) {
    bh__problem_pre_free(pre);
    return -ENOMEM;
  }
  pre->built = 1;
  return 0;
}

int bh__problem_pre_match(const bh__problem_pre *pre, const bh__problem *p,
                          int flat) {
  return pre->built && pre->status == p->status &&
         pre->retryable == p->retryable && pre->flat == flat &&
         bh__pre_same(pre->code, p->code) &&
         bh__pre_same(pre->title, p->title) &&
         bh__pre_same(pre->detail, p->detail);
}

int bh__problem_encode_pre(const bh__problem_pre *pre, const bh__problem *p,
                           bh__buf *out) {
  bh__buf_append(out, pre->head.data, pre->head.len);
  bh__problem_instance(p, out);
  bh__buf_append(out, pre->mid.data, pre->mid.len);
  bh__problem_tail(p, pre->flat, out);
  return bh__buf_failed(out) ? -ENOMEM : 0;
}
