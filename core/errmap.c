/*
 * Error-map tables: checked when a plugin registers them, copied, and kept
 * as the plugin's part of the code catalogue. A bad table fails the load
 * with the precise reason, so a mistake shows at deploy time and not as a
 * misleading answer during an outage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon.h"
#include "upstream.h"

static char *bh__dup(const char *s) {
  return s ? strdup(s) : NULL;
}

static int bh__snake(const char *s) {
  if (!(*s >= 'a' && *s <= 'z')) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  return 1;
}

static int bh__streq(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

/* A 4xx the client may simply retry: timeout, conflict, too early, rate
 * limited. Any other retryable 4xx would tell front ends to hammer a
 * request that cannot succeed. */
static int bh__retryable_4xx_ok(int status) {
  return status == 408 || status == 409 || status == 425 || status == 429;
}

static int bh__row_check(const bh__plugin *p, const bh_error_row *r, size_t i,
                         char *why, size_t whylen) {
  size_t nl = strlen(p->name);
#define BH__FAIL(...)                                                          \
  do {                                                                         \
    int off = snprintf(why, whylen, "error map row %zu: ", i);                 \
    if (off > 0 && (size_t)off < whylen)                                       \
      snprintf(why + off, whylen - (size_t)off, __VA_ARGS__);                  \
    return -EINVAL;                                                            \
  } while (0)
  if (r->code == NULL) BH__FAIL("code is missing");
  if (strncmp(r->code, p->name, nl) != 0 || r->code[nl] != '.')
    BH__FAIL("code '%.64s' must start with '%s.'", r->code, p->name);
  if (strlen(r->code) > 63 || !bh__snake(r->code + nl + 1))
    BH__FAIL("code '%.64s' is not '<plugin>.<lower_snake_case>'", r->code);
  if (bh__problem_core_code(r->code))
    BH__FAIL("code '%s' is a core code", r->code);
  if (r->http_status < 400 || r->http_status > 599)
    BH__FAIL("code '%s': status %d is not 4xx or 5xx", r->code, r->http_status);
  if (r->retryable && r->http_status < 500 &&
      !bh__retryable_4xx_ok(r->http_status))
    BH__FAIL("code '%s': a retryable %d would make clients repeat a request "
             "that cannot succeed (only 408, 409, 425, 429 may be retryable)",
             r->code, r->http_status);
  switch (r->on) {
  case BH_ON_CODE:
  case BH_ON_BREAKER_OPEN:
  case BH_ON_RATE_LIMITED:
    if (r->body_field)
      BH__FAIL("code '%s': body_field needs a status match", r->code);
    break;
  case BH_ON_TRANSPORT:
    if (r->transport == 0 || (r->transport & ~(uint32_t)BH_TRANSPORT_ANY))
      BH__FAIL("code '%s': transport mask 0x%x is invalid", r->code,
               r->transport);
    if (r->body_field)
      BH__FAIL("code '%s': body_field needs a status match", r->code);
    break;
  case BH_ON_STATUS:
    if (r->status < 100 || r->status > 599)
      BH__FAIL("code '%s': upstream status %d is invalid", r->code, r->status);
    break;
  case BH_ON_STATUS_CLASS:
    if (r->status < 1 || r->status > 5)
      BH__FAIL("code '%s': status class %d is not 1..5", r->code, r->status);
    break;
  default: BH__FAIL("code '%s': unknown match kind %d", r->code, r->on);
  }
  if ((r->body_field == NULL) != (r->body_value == NULL))
    BH__FAIL("code '%s': body_field and body_value go together", r->code);
  return 0;
#undef BH__FAIL
}

static int bh__code_add(bh__plugin *p, const char *code, int status,
                        const char *title, const char *detail, int retryable) {
  bh__code *n = realloc(p->codes, (p->ncodes + 1) * sizeof(*n));
  if (n == NULL) return -ENOMEM;
  p->codes = n;
  bh__code *c = &n[p->ncodes];
  c->code = bh__dup(code);
  c->status = status;
  c->title = bh__dup(title);
  c->detail = bh__dup(detail);
  c->retryable = retryable;
  if (c->code == NULL) return -ENOMEM;
  p->ncodes++;
  return 0;
}

int bh__errmap_register(bh__plugin *p, const bh_error_row *rows, size_t n,
                        char *why, size_t whylen) {
  if (p->rows != NULL || p->ncodes != 0) {
    snprintf(why, whylen, "error map registered twice");
    return -EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = bh__row_check(p, &rows[i], i, why, whylen);
    if (rc) return rc;
    /* one code may answer several outcomes, but always the same way */
    for (size_t j = 0; j < i; j++) {
      const bh_error_row *o = &rows[j];
      if (strcmp(o->code, rows[i].code) != 0) continue;
      if (o->http_status != rows[i].http_status ||
          !!o->retryable != !!rows[i].retryable ||
          !bh__streq(o->title, rows[i].title) ||
          !bh__streq(o->detail, rows[i].detail)) {
        snprintf(why, whylen,
                 "error map row %zu: code '%s' is defined again with a "
                 "different answer (row %zu)",
                 i, rows[i].code, j);
        return -EINVAL;
      }
    }
  }
  p->rows = calloc(n ? n : 1, sizeof(*p->rows));
  if (p->rows == NULL) return -ENOMEM;
  p->nrows = n;
  for (size_t i = 0; i < n; i++) {
    bh_error_row *r = &p->rows[i];
    *r = rows[i];
    r->code = bh__dup(rows[i].code);
    r->title = bh__dup(rows[i].title);
    r->detail = bh__dup(rows[i].detail);
    r->body_field = bh__dup(rows[i].body_field);
    r->body_value = bh__dup(rows[i].body_value);
    r->retryable = !!r->retryable;
    if (bh__errmap_code(p, r->code) == NULL &&
        bh__code_add(p, r->code, r->http_status, r->title, r->detail,
                     r->retryable) != 0)
      return -ENOMEM;
  }
  return 0;
}

int bh__errmap_defaults(bh__plugin *p) {
  /* Codes the core answers on a plugin's behalf when its map is silent. */
  static const struct {
    const char *reason;
    int status;
    const char *detail;
  } defs[] = {
      {"timeout", 504, "The service did not answer in time."},
      {"upstream_unavailable", 503, "The service is temporarily unavailable."},
      {"upstream_timeout", 504, "The service did not answer in time."},
      {"upstream_error", 502, "The service answered with an error."},
  };
  char code[96];
  for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
    snprintf(code, sizeof(code), "%s.%s", p->name, defs[i].reason);
    if (bh__errmap_code(p, code)) continue;
    if (bh__code_add(p, code, defs[i].status, NULL, defs[i].detail, 1))
      return -ENOMEM;
  }
  return 0;
}

void bh__errmap_free(bh__plugin *p) {
  for (size_t i = 0; i < p->nrows; i++) {
    bh_error_row *r = &p->rows[i];
    free((char *)r->code);
    free((char *)r->title);
    free((char *)r->detail);
    free((char *)r->body_field);
    free((char *)r->body_value);
  }
  free(p->rows);
  p->rows = NULL;
  p->nrows = 0;
  for (size_t i = 0; i < p->ncodes; i++) {
    free((char *)p->codes[i].code);
    free((char *)p->codes[i].title);
    free((char *)p->codes[i].detail);
  }
  free(p->codes);
  p->codes = NULL;
  p->ncodes = 0;
}

const bh__code *bh__errmap_code(const bh__plugin *p, const char *code) {
  for (size_t i = 0; i < p->ncodes; i++)
    if (strcmp(p->codes[i].code, code) == 0) return &p->codes[i];
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Matching upstream outcomes                                              */
/* ---------------------------------------------------------------------- */

/* The string at a dotted path ("error.type") of a JSON document; numbers
 * compare as their decimal text (identity providers put codes there). */
static int bh__json_path_eq(json_t *root, const char *path, const char *want) {
  char key[128];
  json_t *cur = root;
  const char *s = path;
  while (cur && *s) {
    size_t n = strcspn(s, ".");
    if (n >= sizeof(key)) return 0;
    memcpy(key, s, n);
    key[n] = '\0';
    cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
    s += n;
    if (*s == '.') s++;
  }
  if (cur == NULL) return 0;
  if (json_is_string(cur)) return strcmp(json_string_value(cur), want) == 0;
  if (json_is_integer(cur)) {
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(cur));
    return strcmp(num, want) == 0;
  }
  return 0;
}

static int bh__row_matches(const bh_error_row *r, const bh_upstream_result *res,
                           json_t **body, int *body_parsed) {
  switch (r->on) {
  case BH_ON_BREAKER_OPEN: return res->outcome == BH_OUTCOME_BREAKER_OPEN;
  case BH_ON_RATE_LIMITED: return res->outcome == BH_OUTCOME_RATE_LIMITED;
  case BH_ON_TRANSPORT:
    return res->outcome == BH_OUTCOME_TRANSPORT &&
           (r->transport & res->transport) != 0;
  case BH_ON_STATUS:
  case BH_ON_STATUS_CLASS:
    if (res->outcome != BH_OUTCOME_RESPONSE) return 0;
    if (r->on == BH_ON_STATUS ? res->status != r->status
                              : res->status / 100 != r->status)
      return 0;
    if (r->body_field == NULL) return 1;
    if (!*body_parsed) {
      *body_parsed = 1;
      *body = json_loadb(res->body, res->body_len, 0, NULL);
    }
    return *body && bh__json_path_eq(*body, r->body_field, r->body_value);
  default: return 0;
  }
}

void bh__errmap_match(const bh__plugin *p, const bh_upstream_result *res,
                      bh__mapped *out, char *codebuf, size_t codelen) {
  json_t *body = NULL;
  int parsed = 0;
  if (res->outcome == BH_OUTCOME_TRANSPORT && bh__result_malformed(res)) {
    /* the upstream answered, but with a head we refuse to relay: its
     * fault, not a reset, whatever the plugin's transport rows say */
    snprintf(codebuf, codelen, "%s.upstream_error", p->name);
    out->code = codebuf;
    out->retry_after = -1;
    return;
  }
  int local = res->outcome == BH_OUTCOME_BREAKER_OPEN ||
              res->outcome == BH_OUTCOME_RATE_LIMITED;
  for (size_t i = 0; i < p->nrows; i++) {
    const bh_error_row *r = &p->rows[i];
    if (!bh__row_matches(r, res, &body, &parsed)) continue;
    json_decref(body);
    out->code = r->code;
    /* a local refusal always knows when to come back */
    out->retry_after = (r->pass_retry_after || local) ? res->retry_after : -1;
    return;
  }
  json_decref(body);
  const char *reason;
  out->retry_after = -1;
  switch (res->outcome) {
  case BH_OUTCOME_BREAKER_OPEN:
  case BH_OUTCOME_RATE_LIMITED:
    reason = "upstream_unavailable";
    out->retry_after = res->retry_after;
    break;
  case BH_OUTCOME_TRANSPORT:
    reason = res->transport == BH_TRANSPORT_TIMEOUT ? "upstream_timeout"
                                                    : "upstream_unavailable";
    break;
  case BH_OUTCOME_RESPONSE:
    if (res->status == 429 || res->status == 503) {
      reason = "upstream_unavailable";
      out->retry_after = res->retry_after;
    } else if (res->status == 504) {
      reason = "upstream_timeout";
    } else if (res->status >= 400) {
      reason = "upstream_error";
    } else {
      out->code = "generic.internal";
      return;
    }
    break;
  default: out->code = "generic.timeout"; return;
  }
  snprintf(codebuf, codelen, "%s.%s", p->name, reason);
  out->code = codebuf;
}

int bh__errmap_status_mapped(const bh__plugin *p, int status) {
  for (size_t i = 0; i < p->nrows; i++) {
    const bh_error_row *r = &p->rows[i];
    if ((r->on == BH_ON_STATUS && r->status == status) ||
        (r->on == BH_ON_STATUS_CLASS && r->status == status / 100))
      return 1;
  }
  return 0;
}
