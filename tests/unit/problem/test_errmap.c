/*
 * core/problem/errmap.c: a plugin's error map checked at registration (each
 * refusal names the row and the reason), the default codes, and upstream
 * outcomes matched to codes (rows first, in order; then the defaults).
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "host/plugin-t.h"
#include "problem/errmap.h"

static bh__plugin t_plugin(void) {
  bh__plugin p;
  memset(&p, 0, sizeof(p));
  p.name = "idp";
  return p;
}

static int t_register_one(const bh_error_row *row, char *why, size_t len) {
  bh__plugin p = t_plugin();
  why[0] = '\0';
  int rc = bh__errmap_register(&p, row, 1, why, len);
  bh__errmap_free(&p);
  return rc;
}

static void test_rows_refused(void) {
  char why[256];
  bh_error_row r = {.on = BH_ON_CODE, .code = "billing.x", .http_status = 400};
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "row 0") && strstr(why, "must start with 'idp.'"));
  r.code = "idp.Bad-Name";
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "lower_snake_case") != NULL);
  r.code = "idp.ok";
  r.http_status = 302;
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "not 4xx or 5xx") != NULL);
  r.http_status = 400;
  r.retryable = 1;
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "only 408, 409, 425, 429") != NULL);
  r.retryable = 0;
  r.on = BH_ON_TRANSPORT;
  r.transport = 0x100;
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "transport mask") != NULL);
  r.on = BH_ON_STATUS_CLASS;
  r.status = 7;
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  r.on = BH_ON_STATUS;
  r.status = 401;
  r.body_field = "error";
  CHECK_INT(t_register_one(&r, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "go together") != NULL);
  r.body_value = "invalid_grant";
  CHECK_INT(t_register_one(&r, why, sizeof why), 0);
  /* one code, two answers */
  bh_error_row two[] = {
      {.on = BH_ON_STATUS,
       .status = 401,
       .code = "idp.denied",
       .http_status = 401},
      {.on = BH_ON_STATUS,
       .status = 403,
       .code = "idp.denied",
       .http_status = 403},
  };
  bh__plugin p = t_plugin();
  CHECK_INT(bh__errmap_register(&p, two, 2, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "row 1") && strstr(why, "different answer (row 0)"));
  bh__errmap_free(&p);
}

static const bh_error_row rows[] = {
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.type",
     .body_value = "invalid_grant",
     .code = "idp.bad_grant",
     .http_status = 401},
    {.on = BH_ON_STATUS_CLASS,
     .status = 4,
     .code = "idp.rejected",
     .http_status = 422},
    {.on = BH_ON_STATUS,
     .status = 503,
     .code = "idp.busy",
     .http_status = 503,
     .retryable = 1,
     .pass_retry_after = 1},
    {.on = BH_ON_TRANSPORT,
     .transport = BH_TRANSPORT_DNS,
     .code = "idp.dns",
     .http_status = 502},
    {.on = BH_ON_CODE, .code = "idp.custom", .http_status = 409},
};

static int malformed;
static const char *t_match(const bh__plugin *p, int outcome, uint32_t transport,
                           int status, const char *body, long retry_after,
                           long *ra_out, char *buf, size_t len) {
  bh_upstream_result res;
  memset(&res, 0, sizeof(res));
  res.size = sizeof(res);
  res.outcome = outcome;
  res.transport = transport;
  res.status = status;
  res.body = body;
  res.body_len = body ? strlen(body) : 0;
  res.retry_after = retry_after;
  bh__mapped m = {NULL, -2};
  bh__errmap_match(p, &res, malformed, &m, buf, len);
  *ra_out = m.retry_after;
  return m.code;
}

static void test_match(void) {
  char why[256], buf[96];
  long ra;
  bh__plugin p = t_plugin();
  CHECK_INT(bh__errmap_register(&p, rows, 5, why, sizeof why), 0);
  CHECK_INT(bh__errmap_defaults(&p), 0);
  /* catalogue: five distinct codes + four defaults */
  CHECK_INT((int)p.ncodes, 9);
  CHECK_INT(bh__errmap_code(&p, "idp.custom")->status, 409);
  CHECK_INT(bh__errmap_code(&p, "idp.upstream_timeout")->status, 504);
  CHECK(bh__errmap_code(&p, "idp.nope") == NULL);
  /* defaults are added once */
  CHECK_INT(bh__errmap_defaults(&p), 0);
  CHECK_INT((int)p.ncodes, 9);

  /* a body match wins over the class row after it; numbers compare as
   * text; an unparsable body just does not match */
  CHECK_STR(t_match(&p, BH_OUTCOME_RESPONSE, 0, 400,
                    "{\"error\":{\"type\":\"invalid_grant\"}}", -1, &ra, buf,
                    sizeof buf),
            "idp.bad_grant");
  CHECK_STR(t_match(&p, BH_OUTCOME_RESPONSE, 0, 400, "{\"error\":{\"type\":1}}",
                    -1, &ra, buf, sizeof buf),
            "idp.rejected");
  CHECK_STR(t_match(&p, BH_OUTCOME_RESPONSE, 0, 400, "not json", -1, &ra, buf,
                    sizeof buf),
            "idp.rejected");
  /* Retry-After passes only where the row says so */
  CHECK_STR(
      t_match(&p, BH_OUTCOME_RESPONSE, 0, 503, NULL, 30, &ra, buf, sizeof buf),
      "idp.busy");
  CHECK_INT(ra, 30);
  CHECK_STR(
      t_match(&p, BH_OUTCOME_RESPONSE, 0, 404, NULL, 30, &ra, buf, sizeof buf),
      "idp.rejected");
  CHECK_INT(ra, -1);
  CHECK_STR(t_match(&p, BH_OUTCOME_TRANSPORT, BH_TRANSPORT_DNS, 0, NULL, -1,
                    &ra, buf, sizeof buf),
            "idp.dns");
  /* nothing matches: the defaults, by outcome */
  CHECK_STR(t_match(&p, BH_OUTCOME_TRANSPORT, BH_TRANSPORT_TIMEOUT, 0, NULL, -1,
                    &ra, buf, sizeof buf),
            "idp.upstream_timeout");
  CHECK_STR(t_match(&p, BH_OUTCOME_TRANSPORT, BH_TRANSPORT_CONNECT, 0, NULL, -1,
                    &ra, buf, sizeof buf),
            "idp.upstream_unavailable");
  CHECK_STR(t_match(&p, BH_OUTCOME_BREAKER_OPEN, 0, 0, NULL, 12, &ra, buf,
                    sizeof buf),
            "idp.upstream_unavailable");
  CHECK_INT(ra, 12); /* a local refusal always knows when to come back */
  CHECK_STR(
      t_match(&p, BH_OUTCOME_RESPONSE, 0, 504, NULL, -1, &ra, buf, sizeof buf),
      "idp.upstream_timeout");
  CHECK_STR(
      t_match(&p, BH_OUTCOME_RESPONSE, 0, 502, NULL, -1, &ra, buf, sizeof buf),
      "idp.upstream_error");
  CHECK_STR(
      t_match(&p, BH_OUTCOME_RESPONSE, 0, 200, NULL, -1, &ra, buf, sizeof buf),
      "generic.internal");
  CHECK_STR(
      t_match(&p, BH_OUTCOME_CANCELED, 0, 0, NULL, -1, &ra, buf, sizeof buf),
      "generic.timeout");

  /* a head the upstream sent that must not be relayed: its error, even
   * where a transport row would match */
  malformed = 1;
  CHECK_STR(t_match(&p, BH_OUTCOME_TRANSPORT, BH_TRANSPORT_DNS, 0, NULL, -1,
                    &ra, buf, sizeof buf),
            "idp.upstream_error");
  malformed = 0;

  CHECK_INT(bh__errmap_status_mapped(&p, 503), 1);
  CHECK_INT(bh__errmap_status_mapped(&p, 418), 1); /* the 4xx class row */
  CHECK_INT(bh__errmap_status_mapped(&p, 500), 0);
  /* a second table is refused */
  CHECK_INT(bh__errmap_register(&p, rows, 1, why, sizeof why), -EINVAL);
  CHECK(strstr(why, "registered twice") != NULL);
  bh__errmap_free(&p);
  CHECK_INT((int)p.ncodes, 0);
}

int main(void) {
  test_rows_refused();
  test_match();
  return check_finish("test_errmap");
}
