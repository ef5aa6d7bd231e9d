#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "http/validate.h"

#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* The errors of the last failed run as "field=code;..." (code without its
 * "request.field_" prefix), so a whole report compares in one check. */
static char bh__report[4096];

/* Validates doc (a C string) against the shape; returns the rc, fills
 * bh__report, and frees everything except a successful body, which goes
 * to *out (or is freed when out is NULL). */
static int bh__run_n(const char *doc, size_t len, const bh_body_shape *shape,
                     bh__body **out) {
  bh__body_result res;
  memset(&res, 0x5a, sizeof(res));
  int rc = bh__body_validate(doc, len, shape, &res);
  bh__report[0] = '\0';
  if (rc == 0) {
    CHECK(res.body != NULL);
    CHECK(res.errors == NULL);
    CHECK_INT(res.nerrors, 0);
    if (out)
      *out = res.body;
    else
      bh__body_free(res.body);
    return rc;
  }
  CHECK(res.body == NULL);
  CHECK(res.detail != NULL);
  size_t used = 0;
  for (size_t i = 0; i < res.nerrors; i++) {
    const char *code = res.errors[i].code;
    if (strncmp(code, "request.field_", 14) == 0) code += 14;
    int n = snprintf(bh__report + used, sizeof(bh__report) - used, "%s%s=%s",
                     i ? ";" : "", res.errors[i].field, code);
    if (n > 0 && (size_t)n < sizeof(bh__report) - used) used += (size_t)n;
  }
  if (rc == -EINVAL && res.nerrors > 0)
    CHECK_STR(res.detail, "The request body has invalid fields.");
  if (rc == -EINVAL && res.nerrors == 0) CHECK(res.errors == NULL);
  bh__field_errors_free(res.errors, res.nerrors);
  return rc;
}

static int bh__run(const char *doc, const bh_body_shape *shape,
                   bh__body **out) {
  return bh__run_n(doc, strlen(doc), shape, out);
}

/* Detail for a document that fails before field checks. */
static const char *bh__detail(const char *doc, size_t len,
                              const bh_body_shape *shape) {
  bh__body_result res;
  int rc = bh__body_validate(doc, len, shape, &res);
  CHECK_INT(rc, -EINVAL);
  CHECK_INT(res.nerrors, 0);
  CHECK(res.errors == NULL);
  CHECK(res.body == NULL);
  bh__field_errors_free(res.errors, res.nerrors);
  return res.detail;
}

static void test_not_json(void) {
  bh_field f[] = {{.name = "a", .type = BH_FIELD_INT}};
  bh_body_shape s = {f, NF(f), 0};
  const char *json = "The request body is not valid JSON.";
  const char *obj = "The request body must be a JSON object.";
  CHECK_STR(bh__detail("", 0, &s), json);
  CHECK_STR(bh__detail(NULL, 0, &s), json);
  CHECK_STR(bh__detail("{}", 0, &s), json);
  CHECK_STR(bh__detail("{", 1, &s), json);
  CHECK_STR(bh__detail("{\"a\":1} x", 9, &s), json);
  CHECK_STR(bh__detail("{\"a\":1}{}", 9, &s), json);
  CHECK_STR(bh__detail("{'a':1}", 7, &s), json);
  CHECK_STR(bh__detail("{\"a\":01}", 8, &s), json);
  CHECK_STR(bh__detail("{\"a\":NaN}", 9, &s), json);
  CHECK_STR(bh__detail("{\"a\":1,}", 8, &s), json);
  CHECK_STR(bh__detail("\xff", 1, &s), json);
  CHECK_STR(bh__detail("{\"a\":\"\xc3\x28\"}", 10, &s), json);
  /* Duplicate keys are rejected, at any depth. */
  CHECK_STR(bh__detail("{\"a\":1,\"a\":2}", 13, &s), json);
  CHECK_STR(bh__detail("{\"o\":{\"k\":1,\"k\":1}}", 19, &s), json);
  /* Numbers past int64 elsewhere in the body: every field still reads
   * exactly, an INT field from its own digits, data as sent. */
  {
    bh_field g[] = {{.name = "a", .type = BH_FIELD_INT},
                    {.name = "d", .type = BH_FIELD_OBJECT}};
    bh_body_shape gs = {g, NF(g), 0};
    bh__body *b = NULL;
    CHECK_INT(bh__run("{\"a\":9007199254740993,\"d\":{\"big\":"
                      "9223372036854775808,\"f\":0.1,\"e\":1E400}}",
                      &gs, &b),
              -EINVAL); /* 1E400 overflows a double: not representable */
    CHECK_INT(bh__run("{\"a\":9007199254740993,\"d\":{\"big\":"
                      "9223372036854775808,\"f\":0.1,\"neg\":"
                      "-99999999999999999999999}}",
                      &gs, &b),
              0);
    int64_t iv = 0;
    CHECK_INT(bh__body_int(b, "a", &iv), 0);
    CHECK(iv == 9007199254740993LL);
    CHECK_STR(bh__body_json(b, "d"), "{\"big\":9223372036854775808,\"f\":0.1,"
                                     "\"neg\":-99999999999999999999999}");
    bh__body_free(b);
    CHECK_INT(
        bh__run("{\"a\":1.5,\"d\":{\"x\":18446744073709551616}}", &gs, NULL),
        -EINVAL);
    CHECK_STR(bh__report, "a=type");
  }
  /* Too large for int64: valid JSON, out of range for an INT field. */
  CHECK_INT(bh__run("{\"a\":99999999999999999999}", &s, NULL), -EINVAL);
  CHECK_STR(bh__report, "a=out_of_range");
  /* A NUL byte in a key cannot be represented. */
  CHECK_STR(bh__detail("{\"a\\u0000b\":1}", 14, &s), json);
  /* A raw NUL byte in the document (len counts it). */
  CHECK_STR(bh__detail("{\"a\":1}\0", 8, &s), json);

  CHECK_STR(bh__detail("[]", 2, &s), obj);
  CHECK_STR(bh__detail("[{\"a\":1}]", 9, &s), obj);
  CHECK_STR(bh__detail("1", 1, &s), obj);
  CHECK_STR(bh__detail("\"s\"", 3, &s), obj);
  CHECK_STR(bh__detail("null", 4, &s), obj);
  CHECK_STR(bh__detail(" true ", 6, &s), obj);

  /* Whitespace around an object is fine; len bounds the document. */
  CHECK_INT(bh__run_n(" {\"a\" : 1}\n garbage", 11, &s, NULL), 0);
  CHECK_INT(bh__run("{}", &s, NULL), 0);
  CHECK_INT(bh__run("{}", NULL, NULL), 0);
  CHECK_INT(bh__run("{\"x\":1}", NULL, NULL), -EINVAL);
  CHECK_STR(bh__report, "x=unknown");
}

static void test_types(void) {
  static const struct {
    bh_field_type type;
    const char *doc;
    int ok;
  } cases[] = {
      {BH_FIELD_STRING, "\"x\"", 1},
      {BH_FIELD_STRING, "\"\"", 1},
      {BH_FIELD_STRING, "1", 0},
      {BH_FIELD_STRING, "true", 0},
      {BH_FIELD_STRING, "[\"x\"]", 0},
      {BH_FIELD_STRING, "{}", 0},
      {BH_FIELD_STRING, "\"a\\u0000\"", 0},
      {BH_FIELD_INT, "1", 1},
      {BH_FIELD_INT, "-9223372036854775808", 1},
      {BH_FIELD_INT, "0", 1},
      {BH_FIELD_INT, "1.0", 0},
      {BH_FIELD_INT, "1e2", 0},
      {BH_FIELD_INT, "\"1\"", 0},
      {BH_FIELD_INT, "true", 0},
      {BH_FIELD_NUMBER, "1", 1},
      {BH_FIELD_NUMBER, "1.5", 1},
      {BH_FIELD_NUMBER, "-2e-3", 1},
      {BH_FIELD_NUMBER, "\"1.5\"", 0},
      {BH_FIELD_NUMBER, "false", 0},
      {BH_FIELD_BOOL, "true", 1},
      {BH_FIELD_BOOL, "false", 1},
      {BH_FIELD_BOOL, "0", 0},
      {BH_FIELD_BOOL, "\"true\"", 0},
      {BH_FIELD_OBJECT, "{}", 1},
      {BH_FIELD_OBJECT, "{\"k\":[1]}", 1},
      {BH_FIELD_OBJECT, "[]", 0},
      {BH_FIELD_OBJECT, "\"{}\"", 0},
      {BH_FIELD_ARRAY, "[]", 1},
      {BH_FIELD_ARRAY, "[1,\"a\",null]", 1},
      {BH_FIELD_ARRAY, "{}", 0},
      {BH_FIELD_ARRAY, "\"[]\"", 0},
      {BH_FIELD_STRING_ARRAY, "[]", 1},
      {BH_FIELD_STRING_ARRAY, "[\"a\",\"b\"]", 1},
      {BH_FIELD_STRING_ARRAY, "[\"a\",1]", 0},
      {BH_FIELD_STRING_ARRAY, "[null]", 0},
      {BH_FIELD_STRING_ARRAY, "[[\"a\"]]", 0},
      {BH_FIELD_STRING_ARRAY, "[\"a\",\"b\\u0000c\"]", 0},
      {BH_FIELD_STRING_ARRAY, "\"a\"", 0},
      {(bh_field_type)99, "1", 0},
  };
  for (size_t i = 0; i < NF(cases); i++) {
    bh_field f[] = {{.name = "v", .type = cases[i].type}};
    bh_body_shape s = {f, NF(f), 0};
    char doc[128];
    snprintf(doc, sizeof(doc), "{\"v\":%s}", cases[i].doc);
    int rc = bh__run(doc, &s, NULL);
    if ((rc == 0) != cases[i].ok)
      fprintf(stderr, "type %d with %s: rc %d\n", (int)cases[i].type,
              cases[i].doc, rc);
    CHECK_INT(rc, cases[i].ok ? 0 : -EINVAL);
    if (!cases[i].ok) CHECK_STR(bh__report, "v=type");
  }
}

static void test_required_nullable(void) {
  bh_field f[] = {
      {.name = "req", .type = BH_FIELD_STRING, .flags = BH_FIELD_REQUIRED},
      {.name = "opt", .type = BH_FIELD_INT},
      {.name = "rn",
       .type = BH_FIELD_STRING,
       .flags = BH_FIELD_REQUIRED | BH_FIELD_NULLABLE},
      {.name = "on", .type = BH_FIELD_OBJECT, .flags = BH_FIELD_NULLABLE},
  };
  bh_body_shape s = {f, NF(f), 0};
  bh__body *b = NULL;
  CHECK_INT(bh__run("{\"req\":\"x\",\"rn\":null}", &s, &b), 0);
  CHECK(bh__body_string(b, "rn") == NULL);
  int64_t iv = 42;
  CHECK_INT(bh__body_int(b, "opt", &iv), -ENOENT);
  CHECK_INT(iv, 42);
  bh__body_free(b);
  CHECK_INT(
      bh__run("{\"req\":\"x\",\"rn\":\"y\",\"on\":null,\"opt\":3}", &s, NULL),
      0);
  CHECK_INT(bh__run("{\"req\":\"x\",\"rn\":\"y\",\"on\":{}}", &s, NULL), 0);

  CHECK_INT(bh__run("{}", &s, NULL), -EINVAL);
  CHECK_STR(bh__report, "req=required;rn=required");
  /* null is not absence: a non-nullable field rejects it as a type error,
   * required or not. */
  CHECK_INT(bh__run("{\"req\":null,\"rn\":\"y\",\"opt\":null}", &s, NULL),
            -EINVAL);
  CHECK_STR(bh__report, "req=type;opt=type");
}

static void test_bounds(void) {
  const char *const colors[] = {"red", "green", "blue", NULL};
  bh_field f[] = {
      {.name = "s", .type = BH_FIELD_STRING, .min = 2, .max = 4},
      {.name = "smin", .type = BH_FIELD_STRING, .min = 1},
      {.name = "i", .type = BH_FIELD_INT, .min = -5, .max = 10},
      {.name = "imin", .type = BH_FIELD_INT, .min = 3},
      {.name = "iany", .type = BH_FIELD_INT},
      {.name = "n", .type = BH_FIELD_NUMBER, .min = 0, .max = 1},
      {.name = "a", .type = BH_FIELD_ARRAY, .min = 1, .max = 2},
      {.name = "sa", .type = BH_FIELD_STRING_ARRAY, .max = 2},
      {.name = "c", .type = BH_FIELD_STRING, .one_of = colors},
      {.name = "cb", .type = BH_FIELD_STRING, .max = 4, .one_of = colors},
  };
  bh_body_shape s = {f, NF(f), 0};
  static const struct {
    const char *doc;
    const char *report; /* NULL: valid */
  } cases[] = {
      {"{\"s\":\"ab\"}", NULL},
      {"{\"s\":\"abcd\"}", NULL},
      {"{\"s\":\"a\"}", "s=too_short"},
      {"{\"s\":\"abcde\"}", "s=too_long"},
      /* Bounds count bytes: "é" is two. */
      {"{\"s\":\"\xc3\xa9\xc3\xa9\"}", NULL},
      {"{\"s\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}", "s=too_long"},
      {"{\"s\":\"\\u00e9\"}", NULL},
      {"{\"smin\":\"\"}", "smin=too_short"},
      {"{\"smin\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", NULL},
      {"{\"i\":-5,\"imin\":3,\"iany\":-9223372036854775808}", NULL},
      {"{\"i\":10,\"imin\":9223372036854775807,\"iany\":0}", NULL},
      {"{\"i\":-6}", "i=out_of_range"},
      {"{\"i\":11}", "i=out_of_range"},
      {"{\"imin\":2}", "imin=out_of_range"},
      {"{\"n\":0}", NULL},
      {"{\"n\":0.5}", NULL},
      {"{\"n\":1}", NULL},
      {"{\"n\":1.0001}", "n=out_of_range"},
      {"{\"n\":-0.1}", "n=out_of_range"},
      {"{\"a\":[]}", "a=too_short"},
      {"{\"a\":[1,2]}", NULL},
      {"{\"a\":[1,2,3]}", "a=too_long"},
      {"{\"sa\":[]}", NULL},
      {"{\"sa\":[\"x\",\"y\",\"z\"]}", "sa=too_long"},
      {"{\"c\":\"green\"}", NULL},
      {"{\"c\":\"Green\"}", "c=not_allowed"},
      {"{\"c\":\"\"}", "c=not_allowed"},
      {"{\"c\":\"red \"}", "c=not_allowed"},
      {"{\"cb\":\"red\"}", NULL},
      {"{\"cb\":\"pink\"}", "cb=not_allowed"},
      /* One code per field: the length check comes first. */
      {"{\"cb\":\"green\"}", "cb=too_long"},
      {"{\"c\":1}", "c=type"},
  };
  for (size_t i = 0; i < NF(cases); i++) {
    int rc = bh__run(cases[i].doc, &s, NULL);
    if (cases[i].report == NULL) {
      if (rc != 0) fprintf(stderr, "%s: %s\n", cases[i].doc, bh__report);
      CHECK_INT(rc, 0);
    } else {
      CHECK_INT(rc, -EINVAL);
      CHECK_STR(bh__report, cases[i].report);
    }
  }
}

static void test_many_errors_and_unknown(void) {
  bh_field f[] = {
      {.name = "name", .type = BH_FIELD_STRING, .flags = BH_FIELD_REQUIRED},
      {.name = "age", .type = BH_FIELD_INT, .min = 0, .max = 150},
      {.name = "tags", .type = BH_FIELD_STRING_ARRAY},
      {.name = "ok", .type = BH_FIELD_BOOL, .flags = BH_FIELD_REQUIRED},
      {.name = "meta", .type = BH_FIELD_OBJECT},
  };
  bh_body_shape s = {f, NF(f), 0};
  /* Declared order first, whatever the document order, then unknown
   * fields in document order. */
  CHECK_INT(bh__run("{\"zeta\":1,\"tags\":[1],\"age\":200,\"alpha\":{},"
                    "\"meta\":[],\"mid\":null}",
                    &s, NULL),
            -EINVAL);
  CHECK_STR(bh__report, "name=required;age=out_of_range;tags=type;"
                        "ok=required;meta=type;zeta=unknown;alpha=unknown;"
                        "mid=unknown");
  /* Only unknown fields. */
  CHECK_INT(bh__run("{\"name\":\"n\",\"ok\":true,\"b\":1,\"a\":2}", &s, NULL),
            -EINVAL);
  CHECK_STR(bh__report, "b=unknown;a=unknown");
  /* Unknown keys are matched exactly. */
  CHECK_INT(
      bh__run("{\"name\":\"n\",\"ok\":true,\"Name\":1,\"name \":2}", &s, NULL),
      -EINVAL);
  CHECK_STR(bh__report, "Name=unknown;name =unknown");

  /* allow_unknown: they pass and stay readable. */
  s.allow_unknown = 1;
  bh__body *b = NULL;
  CHECK_INT(bh__run("{\"name\":\"n\",\"ok\":false,\"extra\":\"e\",\"nul\":"
                    "\"a\\u0000b\"}",
                    &s, &b),
            0);
  CHECK_STR(bh__body_string(b, "extra"), "e");
  /* A string with a NUL never reads as a (cut) C string. */
  CHECK(bh__body_string(b, "nul") == NULL);
  CHECK_STR(bh__body_json(b, "nul"), "\"a\\u0000b\"");
  bh__body_free(b);
  /* Declared fields are still checked. */
  CHECK_INT(bh__run("{\"name\":3,\"extra\":1}", &s, NULL), -EINVAL);
  CHECK_STR(bh__report, "name=type;ok=required");

  /* Many unknown fields: all reported. */
  s.allow_unknown = 0;
  char doc[8192];
  size_t used =
      (size_t)snprintf(doc, sizeof(doc), "{\"name\":\"n\",\"ok\":true");
  for (int i = 0; i < 300; i++)
    used +=
        (size_t)snprintf(doc + used, sizeof(doc) - used, ",\"u%d\":%d", i, i);
  snprintf(doc + used, sizeof(doc) - used, "}");
  bh__body_result res;
  CHECK_INT(bh__body_validate(doc, strlen(doc), &s, &res), -EINVAL);
  CHECK_INT(res.nerrors, 300);
  if (res.nerrors == 300) {
    CHECK_STR(res.errors[0].field, "u0");
    CHECK_STR(res.errors[299].field, "u299");
    CHECK_STR(res.errors[299].code, BH_FIELD_ERR_UNKNOWN);
  }
  bh__field_errors_free(res.errors, res.nerrors);
  bh__field_errors_free(NULL, 0);
}

static void test_nul_strings(void) {
  bh_field f[] = {
      {.name = "s", .type = BH_FIELD_STRING},
      {.name = "sa", .type = BH_FIELD_STRING_ARRAY},
      {.name = "o", .type = BH_FIELD_OBJECT},
  };
  bh_body_shape s = {f, NF(f), 0};
  CHECK_INT(bh__run("{\"s\":\"\\u0000\"}", &s, NULL), -EINVAL);
  CHECK_STR(bh__report, "s=type");
  CHECK_INT(
      bh__run("{\"s\":\"ok\\u0000\",\"sa\":[\"a\",\"\\u0000\"]}", &s, NULL),
      -EINVAL);
  CHECK_STR(bh__report, "s=type;sa=type");
  /* Inside an object it is data, kept exact in the re-encoding. */
  bh__body *b = NULL;
  CHECK_INT(bh__run("{\"o\":{\"k\":\"x\\u0000y\"}}", &s, &b), 0);
  CHECK_STR(bh__body_json(b, "o"), "{\"k\":\"x\\u0000y\"}");
  bh__body_free(b);
  /* Escaped non-NUL controls are fine. */
  CHECK_INT(bh__run("{\"s\":\"a\\u0001\\n\"}", &s, NULL), 0);
}

static void test_getters(void) {
  bh_field f[] = {
      {.name = "s", .type = BH_FIELD_STRING},
      {.name = "i", .type = BH_FIELD_INT},
      {.name = "big", .type = BH_FIELD_INT},
      {.name = "n", .type = BH_FIELD_NUMBER},
      {.name = "ni", .type = BH_FIELD_NUMBER},
      {.name = "t", .type = BH_FIELD_BOOL},
      {.name = "f", .type = BH_FIELD_BOOL},
      {.name = "o", .type = BH_FIELD_OBJECT},
      {.name = "a", .type = BH_FIELD_ARRAY},
      {.name = "sa", .type = BH_FIELD_STRING_ARRAY},
      {.name = "z", .type = BH_FIELD_STRING, .flags = BH_FIELD_NULLABLE},
      {.name = "absent", .type = BH_FIELD_STRING},
  };
  bh_body_shape s = {f, NF(f), 0};
  bh__body *b = NULL;
  const char *doc = "{ \"s\" : \"h\\u00e9llo \\\"q\\\"\", \"i\": -42,"
                    " \"big\": 9223372036854775807, \"n\": 2.5, \"ni\": 7,"
                    " \"t\": true, \"f\": false,"
                    " \"o\": { \"b\": [1, 2, {\"c\": null}], \"a\": \"x\" },"
                    " \"a\": [ 1, \"two\", 3.5, true ],"
                    " \"sa\": [\"x\", \"\", \"z\"], \"z\": null }";
  CHECK_INT(bh__run(doc, &s, &b), 0);
  if (b == NULL) return;

  CHECK_STR(bh__body_string(b, "s"), "h\xc3\xa9llo \"q\"");
  CHECK(bh__body_string(b, "i") == NULL);
  CHECK(bh__body_string(b, "z") == NULL);
  CHECK(bh__body_string(b, "absent") == NULL);
  CHECK(bh__body_string(b, "nope") == NULL);
  CHECK(bh__body_string(b, NULL) == NULL);
  CHECK(bh__body_string(NULL, "s") == NULL);

  int64_t iv = 0;
  CHECK_INT(bh__body_int(b, "i", &iv), 0);
  CHECK_INT(iv, -42);
  CHECK_INT(bh__body_int(b, "big", &iv), 0);
  CHECK(iv == INT64_MAX);
  CHECK_INT(bh__body_int(b, "ni", &iv), 0);
  CHECK_INT(iv, 7);
  CHECK_INT(bh__body_int(b, "n", &iv), -EINVAL);
  CHECK_INT(bh__body_int(b, "s", &iv), -EINVAL);
  CHECK_INT(bh__body_int(b, "z", &iv), -ENOENT);
  CHECK_INT(bh__body_int(b, "absent", &iv), -ENOENT);
  CHECK_INT(bh__body_int(NULL, "i", &iv), -ENOENT);

  int bv = -1;
  CHECK_INT(bh__body_bool(b, "t", &bv), 0);
  CHECK_INT(bv, 1);
  CHECK_INT(bh__body_bool(b, "f", &bv), 0);
  CHECK_INT(bv, 0);
  CHECK_INT(bh__body_bool(b, "i", &bv), -EINVAL);
  CHECK_INT(bh__body_bool(b, "z", &bv), -ENOENT);
  CHECK_INT(bh__body_bool(b, "absent", &bv), -ENOENT);

  /* The text as sent, spacing and escapes kept; the same pointer on a
   * second call. */
  const char *oj = bh__body_json(b, "o");
  CHECK_STR(oj, "{ \"b\": [1, 2, {\"c\": null}], \"a\": \"x\" }");
  CHECK(bh__body_json(b, "o") == oj);
  CHECK_STR(bh__body_json(b, "a"), "[ 1, \"two\", 3.5, true ]");
  CHECK_STR(bh__body_json(b, "sa"), "[\"x\", \"\", \"z\"]");
  CHECK_STR(bh__body_json(b, "i"), "-42");
  CHECK_STR(bh__body_json(b, "s"), "\"h\\u00e9llo \\\"q\\\"\"");
  CHECK(bh__body_json(b, "z") == NULL);
  CHECK(bh__body_json(b, "absent") == NULL);
  CHECK(bh__body_json(NULL, "o") == NULL);
  CHECK(oj == bh__body_json(b, "o"));

  CHECK_STR(bh__body_string_at(b, "sa", 0), "x");
  CHECK_STR(bh__body_string_at(b, "sa", 1), "");
  CHECK_STR(bh__body_string_at(b, "sa", 2), "z");
  CHECK(bh__body_string_at(b, "sa", 3) == NULL);
  CHECK(bh__body_string_at(b, "sa", SIZE_MAX) == NULL);
  CHECK_STR(bh__body_string_at(b, "a", 1), "two");
  CHECK(bh__body_string_at(b, "a", 0) == NULL);
  CHECK(bh__body_string_at(b, "s", 0) == NULL);
  CHECK(bh__body_string_at(b, "o", 0) == NULL);
  CHECK(bh__body_string_at(b, "z", 0) == NULL);
  CHECK(bh__body_string_at(b, "absent", 0) == NULL);
  CHECK(bh__body_string_at(NULL, "sa", 0) == NULL);
  bh__body_free(b);
  bh__body_free(NULL);

  /* Empty arrays and objects. */
  CHECK_INT(bh__run("{\"o\":{},\"a\":[],\"sa\":[]}", &s, &b), 0);
  if (b == NULL) return;
  CHECK_STR(bh__body_json(b, "o"), "{}");
  CHECK_STR(bh__body_json(b, "a"), "[]");
  CHECK(bh__body_string_at(b, "sa", 0) == NULL);
  bh__body_free(b);
}

int main(void) {
  test_not_json();
  test_types();
  test_required_nullable();
  test_bounds();
  test_many_errors_and_unknown();
  test_nul_strings();
  test_getters();
  return check_finish("test_validate");
}
