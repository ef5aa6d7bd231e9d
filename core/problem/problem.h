/*
 * RFC 9457 Problem JSON: the one encoder every error response of the daemon
 * goes through, and the code catalogue (core codes + every plugin's map).
 */
#ifndef BH_CORE_PROBLEM_H
#define BH_CORE_PROBLEM_H

#include <stddef.h>

#include "base/buf.h"

/* One catalogue entry. Strings are static for core codes and owned by the
 * plugin registry for plugin codes. */
typedef struct bh__code {
  const char *code; /* "<area>.<reason>" */
  int status;
  const char *title;  /* NULL: reason phrase of status */
  const char *detail; /* default user-safe detail */
  int retryable;
} bh__code;

/* The core's own codes (DESIGN.md table), static. */
const bh__code *bh__problem_core_codes(size_t *n);
/* A core code by name, or NULL. */
const bh__code *bh__problem_core_code(const char *code);
/* Standard reason phrase ("Service Unavailable"), "Unknown" if none. */
const char *bh__status_reason(int status);

/* Codes used only inside extensions.errors[] entries. */
#define BH_FIELD_ERR_REQUIRED "request.field_required"
#define BH_FIELD_ERR_TYPE "request.field_type"
#define BH_FIELD_ERR_UNKNOWN "request.field_unknown"
#define BH_FIELD_ERR_TOO_SHORT "request.field_too_short"
#define BH_FIELD_ERR_TOO_LONG "request.field_too_long"
#define BH_FIELD_ERR_OUT_OF_RANGE "request.field_out_of_range"
#define BH_FIELD_ERR_NOT_ALLOWED "request.field_not_allowed"
/* NULL-terminated list of the field codes above, for the catalogue. */
extern const char *const bh__field_error_codes[];

typedef struct bh__field_error {
  char *field;      /* owned by whoever built the array */
  const char *code; /* one of BH_FIELD_ERR_* (static) */
} bh__field_error;

/* Extra string members placed in extensions (or top level when flat). */
typedef struct bh__ext {
  const char *key;
  const char *value;
} bh__ext;

typedef struct bh__problem {
  int status;
  const char *code;
  const char *title;    /* NULL: bh__status_reason(status) */
  const char *detail;   /* NULL: omitted */
  const char *instance; /* request path (no query), NULL: omitted */
  int retryable;
  long retry_after;       /* seconds, < 0 unknown (then no member/header) */
  const char *request_id; /* NULL: omitted */
  const char *trace_id;   /* W3C trace id, NULL or "": omitted */
  const char *span_id;    /* the gateway's span, NULL or "": omitted */
  const bh__field_error *errors;
  size_t nerrors;
  const bh__ext *ext; /* up to next string extensions */
  size_t next;
  /* Further members as JSON text, each ",\"key\":value" (what
   * bh__problem_members made: checked, compact), or NULL. */
  const char *members;
  size_t nmembers;
} bh__problem;

/* Appends the JSON document for `p` to `out`. flat = 0: extension members
 * nested under "extensions" (default shape); flat = 1: at top level as RFC
 * 9457 allows. Every echoed string is escaped. 0 or -ENOMEM. */
int bh__problem_encode(const bh__problem *p, int flat, bh__buf *out);

/* A Problem's constant parts encoded once: everything before the instance
 * (type, title, status, detail) and between the instance and the
 * per-request members (code, retryable). A breaker-open 503 is the same
 * Problem for every request but its instance, ids and Retry-After; with
 * this only those are encoded per request, and the bytes are those of
 * bh__problem_encode (the same code writes both). The keyed strings are
 * copied, so a match compares content, never addresses. */
typedef struct bh__problem_pre {
  int built;
  int status, retryable, flat;
  char *code, *title, *detail; /* the key, copied (NULL as given) */
  bh__buf head, mid;
} bh__problem_pre;

/* Builds pre for p's constant parts (any previous content freed). 0 or
 * -ENOMEM (pre then left empty). */
int bh__problem_pre_build(bh__problem_pre *pre, const bh__problem *p, int flat);
/* 1 when pre was built for the same status, code, title, detail,
 * retryable and shape as p. */
int bh__problem_pre_match(const bh__problem_pre *pre, const bh__problem *p,
                          int flat);
/* bh__problem_encode(p, pre->flat, out) through the prebuilt parts; the
 * caller checked bh__problem_pre_match. 0 or -ENOMEM. */
int bh__problem_encode_pre(const bh__problem_pre *pre, const bh__problem *p,
                           bh__buf *out);
void bh__problem_pre_free(bh__problem_pre *pre);

/* Whether `key` names a member the encoder writes itself (type, title,
 * status, detail, instance, extensions, code, retryable,
 * retryAfterSeconds, requestId, traceId, spanId, errors). */
int bh__problem_reserved_key(const char *key);

/* members.c: checks `json`, a plugin's JSON object of extra extension
 * members, and appends them to `out` as bh__problem.members wants them
 * (",\"k\":v" each, compact). 0; -EINVAL (not one JSON object, a
 * duplicate or a member the encoder owns: `why` names it), -E2BIG (past
 * BH__PROBLEM_MEMBERS_MAX bytes), -ENOMEM. */
#define BH__PROBLEM_MEMBERS_MAX 16384
int bh__problem_members(const char *json, bh__buf *out, char *why,
                        size_t whylen);

#endif
