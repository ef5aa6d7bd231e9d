/*
 * Strict JSON request bodies: parse, check against a declared shape, report
 * every failing field at once. Backed by jansson; no jansson type leaks out.
 */
#ifndef BH_CORE_VALIDATE_H
#define BH_CORE_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "bulkhead/plugin.h"
#include "problem/problem.h"

typedef struct bh__body bh__body;

typedef struct bh__body_result {
  bh__body *body;          /* on success; free with bh__body_free */
  const char *detail;      /* on failure: static user-safe summary */
  bh__field_error *errors; /* on failure: every failing field; free with
                              bh__field_errors_free */
  size_t nerrors;
} bh__body_result;

/* 0 and res->body set; or -EINVAL with res->detail and res->errors set (an
 * invalid JSON document or a non-object top level has nerrors == 0 and a
 * detail saying so); or -ENOMEM. Unknown fields are reported with
 * BH_FIELD_ERR_UNKNOWN unless shape->allow_unknown. Fields are reported in
 * declaration order, then unknown fields in document order. */
int bh__body_validate(const char *data, size_t len, const bh_body_shape *shape,
                      bh__body_result *res);

void bh__field_errors_free(bh__field_error *errs, size_t n);
void bh__body_free(bh__body *b);

/* Getters. Strings are borrowed until bh__body_free. Absent or null
 * fields: NULL / -ENOENT; a field of another type: NULL / -EINVAL. */
const char *bh__body_string(bh__body *b, const char *field);
int bh__body_int(bh__body *b, const char *field, int64_t *out);
int bh__body_bool(bh__body *b, const char *field, int *out);
const char *bh__body_json(bh__body *b, const char *field);
const char *bh__body_string_at(bh__body *b, const char *field, size_t i);
/* The value at RFC 6901 pointer `ptr` into *out: 0, -ENOENT (absent),
 * -EINVAL (malformed pointer). Strings borrowed until bh__body_free. */
int bh__body_get(bh__body *b, const char *ptr, bh_body_value *out);
/* Member i's name of the object at `ptr` (document order), or NULL. */
const char *bh__body_key_at(bh__body *b, const char *ptr, size_t i);

#endif
