#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "problem/problem.h"

/* Encodes p, checks it parses back as one JSON object, and returns the text
 * (static storage, valid until the next call). */
static const char *bh__enc(const bh__problem *p, int flat) {
  static char text[4096];
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__problem_encode(p, flat, &b), 0);
  CHECK(b.len < sizeof(text));
  json_error_t err;
  json_t *doc = json_loads(b.data, 0, &err);
  if (doc == NULL) fprintf(stderr, "invalid JSON (%s): %s\n", err.text, b.data);
  CHECK(doc != NULL && json_is_object(doc));
  json_decref(doc);
  snprintf(text, sizeof(text), "%s", b.data ? b.data : "");
  bh__buf_free(&b);
  return text;
}

/* The member `key` of the problem object (under "extensions" when nested)
 * as a string, after a jansson round trip. */
static const char *bh__get(const bh__problem *p, int flat, const char *key) {
  static char val[1024];
  bh__buf b;
  bh__buf_init(&b);
  bh__problem_encode(p, flat, &b);
  json_t *doc = json_loads(b.data, 0, NULL);
  bh__buf_free(&b);
  val[0] = '\0';
  if (doc == NULL) return NULL;
  json_t *o = json_object_get(doc, key);
  if (o == NULL && !flat)
    o = json_object_get(json_object_get(doc, "extensions"), key);
  const char *s = json_string_value(o);
  if (s) snprintf(val, sizeof(val), "%s", s);
  json_decref(doc);
  return s ? val : NULL;
}

static void test_full_shapes(void) {
  bh__field_error errs[] = {
      {"email", BH_FIELD_ERR_REQUIRED},
      {"plan", BH_FIELD_ERR_NOT_ALLOWED},
  };
  bh__ext ext[] = {{"plugin", "billing"}, {"upstream", "payments"}};
  bh__problem p = {
      .status = 503,
      .code = "billing.payment_unavailable",
      .detail = "Payment processing is temporarily unavailable.",
      .instance = "/v1/billing/portal-session",
      .retryable = 1,
      .retry_after = 30,
      .request_id = "01JDABC",
      .errors = errs,
      .nerrors = 2,
      .ext = ext,
      .next = 2,
  };
  CHECK_STR(bh__enc(&p, 0),
            "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
            "\"status\":503,\"detail\":\"Payment processing is temporarily "
            "unavailable.\",\"instance\":\"/v1/billing/portal-session\","
            "\"extensions\":{\"code\":\"billing.payment_unavailable\","
            "\"retryable\":true,\"retryAfterSeconds\":30,\"requestId\":"
            "\"01JDABC\",\"plugin\":\"billing\",\"upstream\":\"payments\","
            "\"errors\":[{\"field\":\"email\",\"code\":\"request.field_"
            "required\"},{\"field\":\"plan\",\"code\":\"request.field_not_"
            "allowed\"}]}}");
  CHECK_STR(bh__enc(&p, 1),
            "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
            "\"status\":503,\"detail\":\"Payment processing is temporarily "
            "unavailable.\",\"instance\":\"/v1/billing/portal-session\","
            "\"code\":\"billing.payment_unavailable\","
            "\"retryable\":true,\"retryAfterSeconds\":30,\"requestId\":"
            "\"01JDABC\",\"plugin\":\"billing\",\"upstream\":\"payments\","
            "\"errors\":[{\"field\":\"email\",\"code\":\"request.field_"
            "required\"},{\"field\":\"plan\",\"code\":\"request.field_not_"
            "allowed\"}]}");
}

static void test_minimal(void) {
  /* everything optional absent; retry_after < 0 means no member */
  bh__problem p = {.status = 404, .code = "route.not_found", .retry_after = -1};
  CHECK_STR(bh__enc(&p, 0),
            "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,"
            "\"extensions\":{\"code\":\"route.not_found\",\"retryable\":"
            "false}}");
  CHECK_STR(bh__enc(&p, 1),
            "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,"
            "\"code\":\"route.not_found\",\"retryable\":false}");
  /* an explicit title wins; retry_after 0 is a known value */
  p.title = "Gone Fishing";
  p.retry_after = 0;
  CHECK_STR(bh__enc(&p, 1),
            "{\"type\":\"about:blank\",\"title\":\"Gone Fishing\",\"status\":"
            "404,\"code\":\"route.not_found\",\"retryable\":false,"
            "\"retryAfterSeconds\":0}");
  /* nerrors 0 with a non-NULL array: no member */
  bh__field_error e = {"x", BH_FIELD_ERR_TYPE};
  p.errors = &e;
  p.nerrors = 0;
  CHECK(strstr(bh__enc(&p, 0), "errors") == NULL);
}

static void test_escaping(void) {
  bh__problem p = {
      .status = 400,
      .code = "request.invalid_body",
      .detail = "say \"hi\" \\ <script>alert(1)</script> & \x01\n\t\x1f",
      .instance = "/v1/\xff\xfe/x\xc3\x28y",
      .retry_after = -1,
      .request_id = "id\"\\",
  };
  const char *s = bh__enc(&p, 0);
  CHECK(strstr(s, "\"detail\":\"say \\\"hi\\\" \\\\ \\u003cscript\\u003e"
                  "alert(1)\\u003c/script\\u003e \\u0026 \\u0001\\n\\t"
                  "\\u001f\"") != NULL);
  CHECK(strstr(s, "<script>") == NULL);
  CHECK(strstr(s, "\"instance\":\"/v1/\\ufffd\\ufffd/x\\ufffd(y\"") != NULL);
  CHECK(strstr(s, "\"requestId\":\"id\\\"\\\\\"") != NULL);
  /* the round trip gives the original text back where it was valid */
  CHECK_STR(bh__get(&p, 0, "detail"),
            "say \"hi\" \\ <script>alert(1)</script> & \x01\n\t\x1f");
  CHECK_STR(bh__get(&p, 0, "instance"),
            "/v1/\xef\xbf\xbd\xef\xbf\xbd/x\xef\xbf\xbd(y");
  CHECK_STR(bh__get(&p, 0, "requestId"), "id\"\\");
  /* valid multibyte UTF-8 passes through */
  p.detail = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  CHECK_STR(bh__get(&p, 1, "detail"), p.detail);

  /* hostile ext keys/values and field names are escaped too */
  bh__ext ext[] = {{"k\"<", "v\">"}};
  bh__field_error errs[] = {{"a\"b</x>", BH_FIELD_ERR_UNKNOWN}};
  p.ext = ext;
  p.next = 1;
  p.errors = errs;
  p.nerrors = 1;
  s = bh__enc(&p, 1);
  CHECK(strstr(s, "\"k\\\"\\u003c\":\"v\\\"\\u003e\"") != NULL);
  CHECK(strstr(s, "{\"field\":\"a\\\"b\\u003c/x\\u003e\"") != NULL);
  CHECK_STR(bh__get(&p, 1, "k\"<"), "v\">");
}

static void test_ext_reserved(void) {
  /* an ext member may not shadow a member the encoder owns */
  bh__ext ext[] = {{"code", "evil.code"},
                   {NULL, "x"},
                   {"status", "1"},
                   {"extra", NULL},
                   {"ok", "yes"}};
  bh__problem p = {.status = 500,
                   .code = "generic.internal",
                   .retry_after = -1,
                   .ext = ext,
                   .next = 5};
  CHECK_STR(bh__enc(&p, 1),
            "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
            "\"status\":500,\"code\":\"generic.internal\",\"retryable\":false,"
            "\"extra\":null,\"ok\":\"yes\"}");
  /* a NULL code still yields a contract-conforming document */
  p.code = NULL;
  p.next = 0;
  CHECK_STR(bh__get(&p, 0, "code"), "generic.internal");
}

static void test_oom_sticky(void) {
  bh__buf b;
  bh__buf_init(&b);
  b.failed = 1;
  bh__problem p = {
      .status = 500, .code = "generic.internal", .retry_after = -1};
  CHECK_INT(bh__problem_encode(&p, 0, &b), -ENOMEM);
  bh__buf_free(&b);
}

static void test_catalogue(void) {
  size_t n = 0;
  const bh__code *all = bh__problem_core_codes(&n);
  CHECK_INT(n, 29);
  for (size_t i = 0; i < n; i++) {
    CHECK(bh__problem_core_code(all[i].code) == &all[i]);
    CHECK(all[i].status >= 400 && all[i].status <= 599);
    CHECK(all[i].detail != NULL && all[i].detail[0] != '\0');
    CHECK(strcmp(bh__status_reason(all[i].status), "Unknown") != 0);
    CHECK(strchr(all[i].code, '.') != NULL);
    /* a retryable 4xx must be one of the retry-safe statuses */
    if (all[i].retryable && all[i].status < 500)
      CHECK(all[i].status == 408 || all[i].status == 429);
    for (size_t j = i + 1; j < n; j++)
      CHECK(strcmp(all[i].code, all[j].code) != 0);
  }
  const bh__code *c = bh__problem_core_code("rate_limit.exceeded");
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->status, 429);
    CHECK_INT(c->retryable, 1);
    CHECK(c->title == NULL);
    CHECK_STR(c->detail, "Too many requests. Please retry later.");
  }
  c = bh__problem_core_code("auth.session_revoked");
  CHECK(c != NULL && c->status == 401 && c->retryable == 0);
  c = bh__problem_core_code("admin.not_ready");
  CHECK(c != NULL && c->status == 503 && c->retryable == 1);
  c = bh__problem_core_code("generic.timeout");
  CHECK(c != NULL && c->status == 504 && c->retryable == 1);
  c = bh__problem_core_code("request.headers_too_large");
  CHECK(c != NULL && c->status == 431);
  CHECK(bh__problem_core_code("nope.nope") == NULL);
  CHECK(bh__problem_core_code("") == NULL);
  CHECK(bh__problem_core_code(NULL) == NULL);
  CHECK(bh__problem_core_code("generic.internal ") == NULL);

  size_t nf = 0;
  while (bh__field_error_codes[nf])
    nf++;
  CHECK_INT(nf, 7);
  CHECK_STR(bh__field_error_codes[0], BH_FIELD_ERR_REQUIRED);
  CHECK_STR(bh__field_error_codes[6], BH_FIELD_ERR_NOT_ALLOWED);
}

static void test_reasons(void) {
  CHECK_STR(bh__status_reason(100), "Continue");
  CHECK_STR(bh__status_reason(200), "OK");
  CHECK_STR(bh__status_reason(204), "No Content");
  CHECK_STR(bh__status_reason(304), "Not Modified");
  CHECK_STR(bh__status_reason(308), "Permanent Redirect");
  CHECK_STR(bh__status_reason(402), "Payment Required");
  CHECK_STR(bh__status_reason(408), "Request Timeout");
  CHECK_STR(bh__status_reason(409), "Conflict");
  CHECK_STR(bh__status_reason(410), "Gone");
  CHECK_STR(bh__status_reason(413), "Content Too Large");
  CHECK_STR(bh__status_reason(415), "Unsupported Media Type");
  CHECK_STR(bh__status_reason(422), "Unprocessable Content");
  CHECK_STR(bh__status_reason(425), "Too Early");
  CHECK_STR(bh__status_reason(428), "Precondition Required");
  CHECK_STR(bh__status_reason(429), "Too Many Requests");
  CHECK_STR(bh__status_reason(431), "Request Header Fields Too Large");
  CHECK_STR(bh__status_reason(451), "Unavailable For Legal Reasons");
  CHECK_STR(bh__status_reason(500), "Internal Server Error");
  CHECK_STR(bh__status_reason(502), "Bad Gateway");
  CHECK_STR(bh__status_reason(503), "Service Unavailable");
  CHECK_STR(bh__status_reason(504), "Gateway Timeout");
  CHECK_STR(bh__status_reason(511), "Network Authentication Required");
  /* not in the IANA registry (or marked unused) */
  CHECK_STR(bh__status_reason(529), "Unknown");
  CHECK_STR(bh__status_reason(418), "Unknown");
  CHECK_STR(bh__status_reason(306), "Unknown");
  CHECK_STR(bh__status_reason(0), "Unknown");
  CHECK_STR(bh__status_reason(-1), "Unknown");
  CHECK_STR(bh__status_reason(999), "Unknown");
  /* every title the encoder can produce for a core code is valid JSON */
  size_t n = 0;
  const bh__code *all = bh__problem_core_codes(&n);
  for (size_t i = 0; i < n; i++) {
    bh__problem p = {.status = all[i].status,
                     .code = all[i].code,
                     .detail = all[i].detail,
                     .retryable = all[i].retryable,
                     .retry_after = -1};
    CHECK_STR(bh__get(&p, 0, "title"), bh__status_reason(all[i].status));
    CHECK_STR(bh__get(&p, 0, "code"), all[i].code);
  }
}

/* problem_with's members: checked, re-encoded with the core's escaping,
 * then appended inside extensions (or at the top level when flat). */
static void test_members(void) {
  char why[128];
  bh__buf m;
  bh__buf_init(&m);
  CHECK_INT(bh__problem_members("{\"fallback\": \"<x>\", \"n\": [1, {\"a\": "
                                "null}]}",
                                &m, why, sizeof(why)),
            0);
  CHECK_STR(m.data, ",\"fallback\":\"\\u003cx\\u003e\",\"n\":[1,{\"a\":null}]");
  bh__problem p = {.status = 503,
                   .code = "x.y",
                   .retry_after = -1,
                   .members = m.data,
                   .nmembers = m.len};
  CHECK_STR(bh__enc(&p, 0),
            "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
            "\"status\":503,\"extensions\":{\"code\":\"x.y\",\"retryable\":"
            "false,\"fallback\":\"\\u003cx\\u003e\",\"n\":[1,{\"a\":null}]}}");
  CHECK_STR(bh__enc(&p, 1),
            "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\","
            "\"status\":503,\"code\":\"x.y\",\"retryable\":false,"
            "\"fallback\":\"\\u003cx\\u003e\",\"n\":[1,{\"a\":null}]}");
  bh__buf_free(&m);
  static const char *const bad[] = {"{\"code\":\"a\"}",
                                    "{\"retryAfterSeconds\":1}",
                                    "{\"status\":1}",
                                    "{\"a\":1,\"a\":2}",
                                    "[1]",
                                    "\"s\"",
                                    "{",
                                    "{\"a\":\"\xff\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    bh__buf_init(&m);
    CHECK_INT(bh__problem_members(bad[i], &m, why, sizeof(why)), -EINVAL);
    CHECK(why[0] != '\0');
    bh__buf_free(&m);
  }
  bh__buf_init(&m);
  CHECK_INT(bh__problem_members(NULL, &m, why, sizeof(why)), 0);
  CHECK(m.len == 0);
  bh__buf_free(&m);
}

/* The prebuilt path writes exactly the encoder's bytes, for Problems with
 * and without each optional member, in both shapes; an entry matches only
 * a Problem with the same constant parts (by content: a detail changed
 * behind the same pointer does not match). */
static void test_prebuilt(void) {
  static const bh__field_error errs[] = {{"email", BH_FIELD_ERR_REQUIRED},
                                         {"a\"b", BH_FIELD_ERR_TYPE}};
  static const bh__ext ext[] = {{"upstream", "pay\nments"}};
  char detail[64] = "Payment processing is \"temporarily\" unavailable.";
  bh__problem ps[] = {
      {.status = 503,
       .code = "billing.payment_unavailable",
       .detail = detail,
       .instance = "/v1/billing/portal-session",
       .retryable = 1,
       .retry_after = 30,
       .request_id = "01JD0000000000000000000000",
       .trace_id = "0af7651916cd43dd8448eb211c80319c",
       .span_id = "b7ad6b7169203331"},
      {.status = 503,
       .code = "up_one.unavailable",
       .instance = "/t/up_one/get/\"x\\y\u00e9",
       .retryable = 1,
       .retry_after = -1,
       .request_id = "r-1"},
      {.status = 400,
       .code = "request.invalid_body",
       .title = "Bad \"Body\"",
       .retry_after = -1,
       .errors = errs,
       .nerrors = 2,
       .ext = ext,
       .next = 1,
       .members = ",\"limit\":5",
       .nmembers = 10},
      {.status = 599, .retry_after = 0},
  };
  for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
    for (int flat = 0; flat < 2; flat++) {
      bh__problem_pre pre;
      memset(&pre, 0, sizeof(pre));
      CHECK_INT(bh__problem_pre_build(&pre, &ps[i], flat), 0);
      CHECK_INT(bh__problem_pre_match(&pre, &ps[i], flat), 1);
      CHECK_INT(bh__problem_pre_match(&pre, &ps[i], !flat), 0);
      /* the per-request members change, the entry still serves */
      bh__problem q = ps[i];
      for (int k = 0; k < 3; k++) {
        if (k == 1) {
          q.instance = "/other/path";
          q.request_id = "another-id";
          q.retry_after = 7;
        }
        if (k == 2) {
          q.instance = NULL;
          q.trace_id = q.span_id = NULL;
          q.request_id = NULL;
        }
        CHECK_INT(bh__problem_pre_match(&pre, &q, flat), 1);
        bh__buf a, b;
        bh__buf_init(&a);
        bh__buf_init(&b);
        CHECK_INT(bh__problem_encode(&q, flat, &a), 0);
        CHECK_INT(bh__problem_encode_pre(&pre, &q, &b), 0);
        CHECK_STR(b.data, a.data);
        bh__buf_free(&a);
        bh__buf_free(&b);
      }
      /* a different constant part: no match */
      q = ps[i];
      q.status++;
      CHECK_INT(bh__problem_pre_match(&pre, &q, flat), 0);
      q = ps[i];
      q.retryable = !q.retryable;
      CHECK_INT(bh__problem_pre_match(&pre, &q, flat), 0);
      q = ps[i];
      q.code = "other.code";
      CHECK_INT(bh__problem_pre_match(&pre, &q, flat), 0);
      q = ps[i];
      q.title = "Other";
      CHECK_INT(bh__problem_pre_match(&pre, &q, flat), 0);
      bh__problem_pre_free(&pre);
      CHECK_INT(bh__problem_pre_match(&pre, &ps[i], flat), 0);
    }
  /* same detail pointer, other text: the entry kept its own copy */
  bh__problem_pre pre;
  memset(&pre, 0, sizeof(pre));
  CHECK_INT(bh__problem_pre_build(&pre, &ps[0], 0), 0);
  detail[0] = 'X';
  CHECK_INT(bh__problem_pre_match(&pre, &ps[0], 0), 0);
  bh__problem_pre_free(&pre);
}

int main(void) {
  test_prebuilt();
  test_members();
  test_full_shapes();
  test_minimal();
  test_escaping();
  test_ext_reserved();
  test_oom_sticky();
  test_catalogue();
  test_reasons();
  return check_finish("test_problem");
}
