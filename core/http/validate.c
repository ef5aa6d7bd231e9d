#include "http/validate.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The fields' text handed out by bh__body_json, kept so the borrowed
 * strings live as long as the body and a second call costs nothing. */
typedef struct bh__json_cache {
  struct bh__json_cache *next;
  char *field;
  char *json;
} bh__json_cache;

/* The body's own text. jansson validates it, but the text is what a field
 * is handed out as (bh__body_json): a re-encoding would change numbers
 * (0.1 -> 0.10000000000000001) and cannot hold integers of 2^63 and up,
 * which jansson then reads as reals (big). */
typedef struct bh__raw {
  const char *data;
  size_t len;
  int big; /* parsed with JSON_DECODE_INT_AS_REAL: an integer overflowed */
} bh__raw;

struct bh__body {
  json_t *root; /* always an object */
  bh__json_cache *cache;
  char *text; /* a copy of the body */
  bh__raw raw;
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

/* ---- the text of a top-level member, found by a scan over text jansson
 * has already accepted (so only well-formed JSON is ever walked) ---- */

static const char *bh__ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

static const char *bh__str_end(const char *p, const char *e) {
  for (p++; p < e; p++) {
    if (*p == '\\')
      p++;
    else if (*p == '"')
      return p + 1;
  }
  return e;
}

static const char *bh__value_end(const char *p, const char *e) {
  if (p < e && *p == '"') return bh__str_end(p, e);
  if (p < e && (*p == '{' || *p == '[')) {
    int depth = 0;
    while (p < e) {
      if (*p == '"') {
        p = bh__str_end(p, e);
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
      p++;
    }
    return e;
  }
  while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
         *p != '\t' && *p != '\n' && *p != '\r')
    p++;
  return p;
}

/* Does the key literal [k, ke) (quotes included) spell `field`? */
static int bh__key_is(const char *k, const char *ke, const char *field) {
  size_t n = (size_t)(ke - k) - 2, fl = strlen(field);
  if (memchr(k + 1, '\\', n) == NULL)
    return n == fl && memcmp(k + 1, field, n) == 0;
  json_t *s =
      json_loadb(k, (size_t)(ke - k), JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  int same = json_is_string(s) && json_string_length(s) == fl &&
             memcmp(json_string_value(s), field, fl) == 0;
  json_decref(s);
  return same;
}

/* The exact text of member `field` of the top-level object; 0 with *v and
 * *vlen, or -ENOENT. Members are unique (JSON_REJECT_DUPLICATES). */
static int bh__raw_member(const bh__raw *r, const char *field, const char **v,
                          size_t *vlen) {
  const char *p = r->data, *e = r->data + r->len;
  p = bh__ws(p, e);
  if (p >= e || *p != '{') return -ENOENT;
  for (p = bh__ws(p + 1, e); p < e && *p == '"';) {
    const char *k = p, *ke = bh__str_end(p, e);
    p = bh__ws(ke, e);
    if (p >= e || *p != ':') return -ENOENT;
    const char *vs = bh__ws(p + 1, e), *ve = bh__value_end(vs, e);
    if (bh__key_is(k, ke, field)) {
      *v = vs;
      *vlen = (size_t)(ve - vs);
      return 0;
    }
    p = bh__ws(ve, e);
    if (p < e && *p == ',') p = bh__ws(p + 1, e);
  }
  return -ENOENT;
}

/* An integer field of a body parsed with ints as reals: its own digits.
 * 0, -EINVAL (not an integer literal) or -ERANGE. */
static int bh__raw_int(const bh__raw *r, const char *field, int64_t *out) {
  const char *v;
  size_t n;
  char buf[32];
  if (bh__raw_member(r, field, &v, &n) != 0) return -EINVAL;
  if (n == 0 || memchr(v, '.', n) || memchr(v, 'e', n) || memchr(v, 'E', n))
    return -EINVAL;
  if (n >= sizeof(buf)) return -ERANGE; /* digits only, too many of them */
  memcpy(buf, v, n);
  buf[n] = '\0';
  errno = 0;
  char *end;
  long long x = strtoll(buf, &end, 10);
  if (errno == ERANGE) return -ERANGE;
  if (*end) return -EINVAL;
  *out = (int64_t)x;
  return 0;
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
static const char *bh__check_value(const bh_field *f, const json_t *v,
                                   const bh__raw *raw) {
  switch (f->type) {
  case BH_FIELD_STRING: return bh__check_string(f, v);
  case BH_FIELD_INT:
    if (raw->big && json_is_real(v)) {
      int64_t i;
      int rc = bh__raw_int(raw, f->name, &i);
      if (rc == -ERANGE) return BH_FIELD_ERR_OUT_OF_RANGE;
      if (rc) return BH_FIELD_ERR_TYPE;
      return bh__check_range_i(f, i);
    }
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
                            const bh__raw *raw, bh__errs *errs) {
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
      code = bh__check_value(f, v, raw);
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
  const size_t flags =
      JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY;
  bh__raw raw = {data, len, 0};
  json_t *root = json_loadb(data, len, flags, &jerr);
  if (root == NULL && json_error_code(&jerr) == json_error_numeric_overflow) {
    /* an integer past int64 is valid JSON: read numbers as reals to
     * validate, the text keeps the digits (bh__raw_int, bh__body_json) */
    raw.big = 1;
    root = json_loadb(data, len, flags | JSON_DECODE_INT_AS_REAL, &jerr);
  }
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
  int rc =
      bh__check_fields(root, shape ? shape : &bh__empty_shape, &raw, &errs);
  if (rc == 0 && errs.n == 0) {
    bh__body *b = calloc(1, sizeof(*b));
    char *text = b ? malloc(len) : NULL;
    if (text != NULL) {
      memcpy(text, data, len);
      b->root = root;
      b->text = text;
      b->raw = (bh__raw){text, len, raw.big};
      res->body = b;
      return 0;
    }
    free(b);
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
  free(b->text);
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
  if (b->raw.big && json_is_real(v))
    return bh__raw_int(&b->raw, field, out) == 0 ? 0 : -EINVAL;
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
  const char *t;
  size_t tn;
  c->json = NULL;
  if (bh__raw_member(&b->raw, field, &t, &tn) == 0 &&
      (c->json = malloc(tn + 1))) {
    memcpy(c->json, t, tn);
    c->json[tn] = '\0';
  }
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

/* The value at RFC 6901 pointer `ptr` ("" is the root), or NULL with *rc
 * -ENOENT (no such member or element) or -EINVAL (malformed pointer). */
static json_t *bh__pointer(const bh__body *b, const char *ptr, int *rc) {
  json_t *v = b->root;
  char tok[256];
  *rc = -EINVAL;
  if (*ptr != '\0' && *ptr != '/') return NULL;
  while (*ptr == '/') {
    size_t n = 0;
    for (ptr++; *ptr && *ptr != '/'; ptr++) {
      char c = *ptr;
      if (c == '~') {
        if (ptr[1] != '0' && ptr[1] != '1') return NULL;
        c = *++ptr == '0' ? '~' : '/';
      }
      if (n + 1 >= sizeof(tok)) return NULL;
      tok[n++] = c;
    }
    tok[n] = '\0';
    if (json_is_object(v)) {
      v = json_object_get(v, tok);
    } else if (json_is_array(v)) {
      /* an index: digits, no leading zero */
      if (n == 0 || n > 18 || (tok[0] == '0' && n > 1) ||
          strspn(tok, "0123456789") != n)
        return NULL;
      v = json_array_get(v, (size_t)strtoull(tok, NULL, 10));
    } else {
      v = NULL;
    }
    if (v == NULL) {
      *rc = -ENOENT;
      return NULL;
    }
  }
  *rc = 0;
  return v;
}

int bh__body_get(bh__body *b, const char *ptr, bh_body_value *out) {
  int rc;
  if (b == NULL || ptr == NULL || out == NULL) return -EINVAL;
  json_t *v = bh__pointer(b, ptr, &rc);
  if (v == NULL) return rc;
  memset(out, 0, sizeof(*out));
  out->size = sizeof(*out);
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    out->type = BH_FIELD_OBJECT;
    out->count = json_object_size(v);
    break;
  case JSON_ARRAY:
    out->type = BH_FIELD_ARRAY;
    out->count = json_array_size(v);
    break;
  case JSON_STRING:
    out->type = BH_FIELD_STRING;
    out->str = json_string_value(v);
    out->len = json_string_length(v);
    break;
  case JSON_INTEGER:
    out->type = BH_FIELD_INT;
    out->i = (int64_t)json_integer_value(v);
    out->num = (double)out->i;
    break;
  case JSON_REAL:
    /* with raw.big every number is a real: an integral one that fits
     * int64 still reads as an integer */
    out->num = json_real_value(v);
    out->type = BH_FIELD_NUMBER;
    if (b->raw.big && out->num == (double)(int64_t)out->num &&
        out->num >= -9223372036854775808.0 &&
        out->num < 9223372036854775808.0) {
      out->type = BH_FIELD_INT;
      out->i = (int64_t)out->num;
    }
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    out->type = BH_FIELD_BOOL;
    out->b = json_is_true(v);
    out->num = 0;
    break;
  default: out->type = BH_VALUE_NULL;
  }
  return 0;
}

const char *bh__body_key_at(bh__body *b, const char *ptr, size_t i) {
  int rc;
  if (b == NULL || ptr == NULL) return NULL;
  json_t *v = bh__pointer(b, ptr, &rc);
  if (!json_is_object(v)) return NULL;
  /* jansson keeps insertion (document) order */
  size_t k = 0;
  const char *key;
  json_t *val;
  json_object_foreach(v, key, val) {
    (void)val;
    if (k++ == i) return key;
  }
  return NULL;
}
