#include "http/validate.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Re-encodings handed out by bh__body_json, kept so the borrowed strings
 * live as long as the body and a second call for a field costs nothing. */
typedef struct bh__json_cache {
  struct bh__json_cache *next;
  char *field;
  char *json;
} bh__json_cache;

struct bh__body {
  json_t *root; /* always an object */
  bh__json_cache *cache;
};

static const char bh__detail_json[] = "The request body is not valid JSON.";
static const char bh__detail_object[] =
    "The request body must be a JSON object.";
static const char bh__detail_fields[] = "The request body has invalid fields.";

/* strdup needs POSIX 2008; the core builds as plain C11 too. */
static char *bh__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}

typedef struct bh__errs {
  bh__field_error *v;
  size_t n, cap;
} bh__errs;

static int bh__errs_add(bh__errs *e, const char *field, const char *code) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 8;
    bh__field_error *v = realloc(e->v, cap * sizeof(*v));
    if (v == NULL) return -ENOMEM;
    e->v = v;
    e->cap = cap;
  }
  char *f = bh__strdup(field);
  if (f == NULL) return -ENOMEM;
  e->v[e->n].field = f;
  e->v[e->n].code = code;
  e->n++;
  return 0;
}

void bh__field_errors_free(bh__field_error *errs, size_t n) {
  if (errs == NULL) return;
  for (size_t i = 0; i < n; i++)
    free(errs[i].field);
  free(errs);
}

/* Plugins read strings as C strings: an embedded NUL would silently cut
 * the value (and any check made on the full length would be a lie). */
static int bh__is_c_string(const json_t *v) {
  return json_is_string(v) &&
         strlen(json_string_value(v)) == json_string_length(v);
}

/* min/max as element counts or byte lengths; max 0 means unbounded. */
static const char *bh__check_len(const bh_field *f, size_t len) {
  if (f->min > 0 && (uint64_t)f->min > len) return BH_FIELD_ERR_TOO_SHORT;
  if (f->max > 0 && (uint64_t)f->max < len) return BH_FIELD_ERR_TOO_LONG;
  return NULL;
}

/* min/max as values. max 0 means no upper bound (plugin.h), and min 0 with
 * max 0 means no bounds at all, so a zeroed bh_field accepts any value. */
static const char *bh__check_range_i(const bh_field *f, int64_t v) {
  if (f->min == 0 && f->max == 0) return NULL;
  if (v < f->min || (f->max != 0 && v > f->max))
    return BH_FIELD_ERR_OUT_OF_RANGE;
  return NULL;
}

static const char *bh__check_range_d(const bh_field *f, double v) {
  if (f->min == 0 && f->max == 0) return NULL;
  if (v < (double)f->min || (f->max != 0 && v > (double)f->max))
    return BH_FIELD_ERR_OUT_OF_RANGE;
  return NULL;
}

static const char *bh__check_string(const bh_field *f, const json_t *v) {
  if (!bh__is_c_string(v)) return BH_FIELD_ERR_TYPE;
  const char *code = bh__check_len(f, json_string_length(v));
  if (code != NULL || f->one_of == NULL) return code;
  const char *s = json_string_value(v);
  for (const char *const *o = f->one_of; *o != NULL; o++)
    if (strcmp(*o, s) == 0) return NULL;
  return BH_FIELD_ERR_NOT_ALLOWED;
}

/* The one error code for field f holding v (present, not null), or NULL. */
static const char *bh__check_value(const bh_field *f, const json_t *v) {
  switch (f->type) {
  case BH_FIELD_STRING: return bh__check_string(f, v);
  case BH_FIELD_INT:
    if (!json_is_integer(v)) return BH_FIELD_ERR_TYPE;
    return bh__check_range_i(f, json_integer_value(v));
  case BH_FIELD_NUMBER:
    if (!json_is_number(v)) return BH_FIELD_ERR_TYPE;
    return bh__check_range_d(f, json_number_value(v));
  case BH_FIELD_BOOL: return json_is_boolean(v) ? NULL : BH_FIELD_ERR_TYPE;
  case BH_FIELD_OBJECT: return json_is_object(v) ? NULL : BH_FIELD_ERR_TYPE;
  case BH_FIELD_ARRAY:
    if (!json_is_array(v)) return BH_FIELD_ERR_TYPE;
    return bh__check_len(f, json_array_size(v));
  case BH_FIELD_STRING_ARRAY: {
    if (!json_is_array(v)) return BH_FIELD_ERR_TYPE;
    size_t i;
    const json_t *el;
    json_array_foreach(v, i, el) {
      if (!bh__is_c_string(el)) return BH_FIELD_ERR_TYPE;
    }
    return bh__check_len(f, json_array_size(v));
  }
  }
  /* An unknown type in the shape is the plugin's bug: never accept. */
  return BH_FIELD_ERR_TYPE;
}

static int bh__declared(const bh_body_shape *shape, const char *key) {
  for (size_t i = 0; i < shape->nfields; i++)
    if (shape->fields[i].name && strcmp(shape->fields[i].name, key) == 0)
      return 1;
  return 0;
}

static int bh__check_fields(const json_t *root, const bh_body_shape *shape,
                            bh__errs *errs) {
  for (size_t i = 0; i < shape->nfields; i++) {
    const bh_field *f = &shape->fields[i];
    if (f->name == NULL) continue;
    const json_t *v = json_object_get(root, f->name);
    const char *code = NULL;
    if (v == NULL) {
      if (f->flags & BH_FIELD_REQUIRED) code = BH_FIELD_ERR_REQUIRED;
    } else if (json_is_null(v)) {
      /* null is a value of its own type: only NULLABLE fields take it. */
      if (!(f->flags & BH_FIELD_NULLABLE)) code = BH_FIELD_ERR_TYPE;
    } else {
      code = bh__check_value(f, v);
    }
    if (code != NULL && bh__errs_add(errs, f->name, code) != 0) return -ENOMEM;
  }
  if (shape->allow_unknown) return 0;
  /* jansson keeps object members in document order. */
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)root, key, v) {
    if (!bh__declared(shape, key) &&
        bh__errs_add(errs, key, BH_FIELD_ERR_UNKNOWN) != 0)
      return -ENOMEM;
  }
  return 0;
}

int bh__body_validate(const char *data, size_t len, const bh_body_shape *shape,
                      bh__body_result *res) {
  memset(res, 0, sizeof(*res));
  if (data == NULL || len == 0) {
    res->detail = bh__detail_json;
    return -EINVAL;
  }
  /* JSON_ALLOW_NUL so a NUL inside a string is a field type error naming
   * the field, not an anonymous parse failure; DECODE_ANY so a scalar
   * document gets the "must be an object" answer. */
  json_error_t jerr;
  json_t *root = json_loadb(
      data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
      &jerr);
  if (root == NULL) {
    /* Not the client's fault when jansson says so; it often reports an
     * allocation failure as a syntax error, which then reads as 400. */
    if (json_error_code(&jerr) == json_error_out_of_memory) return -ENOMEM;
    res->detail = bh__detail_json;
    return -EINVAL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    res->detail = bh__detail_object;
    return -EINVAL;
  }
  static const bh_body_shape bh__empty_shape = {NULL, 0, 0};
  bh__errs errs = {NULL, 0, 0};
  int rc = bh__check_fields(root, shape ? shape : &bh__empty_shape, &errs);
  if (rc == 0 && errs.n == 0) {
    bh__body *b = calloc(1, sizeof(*b));
    if (b != NULL) {
      b->root = root;
      res->body = b;
      return 0;
    }
    rc = -ENOMEM;
  }
  json_decref(root);
  if (rc != 0) {
    bh__field_errors_free(errs.v, errs.n);
    return rc;
  }
  res->detail = bh__detail_fields;
  res->errors = errs.v;
  res->nerrors = errs.n;
  return -EINVAL;
}

void bh__body_free(bh__body *b) {
  if (b == NULL) return;
  while (b->cache) {
    bh__json_cache *c = b->cache;
    b->cache = c->next;
    free(c->field);
    free(c->json);
    free(c);
  }
  json_decref(b->root);
  free(b);
}

/* ---------------------------------------------------------------------- */
/* Getters                                                                 */
/* ---------------------------------------------------------------------- */

/* Strings with an embedded NUL (possible in undeclared fields when the
 * shape allows unknown ones) read as "another type" rather than a cut C
 * string. */

/* The field's value, NULL when absent or null. */
static json_t *bh__get(const bh__body *b, const char *field) {
  if (b == NULL || field == NULL) return NULL;
  json_t *v = json_object_get(b->root, field);
  return json_is_null(v) ? NULL : v;
}

const char *bh__body_string(bh__body *b, const char *field) {
  json_t *v = bh__get(b, field);
  return bh__is_c_string(v) ? json_string_value(v) : NULL;
}

int bh__body_int(bh__body *b, const char *field, int64_t *out) {
  json_t *v = bh__get(b, field);
  if (v == NULL) return -ENOENT;
  if (!json_is_integer(v)) return -EINVAL;
  *out = (int64_t)json_integer_value(v);
  return 0;
}

int bh__body_bool(bh__body *b, const char *field, int *out) {
  json_t *v = bh__get(b, field);
  if (v == NULL) return -ENOENT;
  if (!json_is_boolean(v)) return -EINVAL;
  *out = json_is_true(v);
  return 0;
}

const char *bh__body_json(bh__body *b, const char *field) {
  json_t *v = bh__get(b, field);
  if (v == NULL) return NULL;
  for (bh__json_cache *c = b->cache; c; c = c->next)
    if (strcmp(c->field, field) == 0) return c->json;
  bh__json_cache *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->field = bh__strdup(field);
  c->json = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (c->field == NULL || c->json == NULL) {
    free(c->field);
    free(c->json);
    free(c);
    return NULL;
  }
  c->next = b->cache;
  b->cache = c;
  return c->json;
}

const char *bh__body_string_at(bh__body *b, const char *field, size_t i) {
  json_t *el = json_array_get(bh__get(b, field), i);
  return bh__is_c_string(el) ? json_string_value(el) : NULL;
}
