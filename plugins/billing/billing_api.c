/*
 * The user routes: POST checkout-session, POST portal-session, GET
 * subscription. Each first asks the store for the caller's provider
 * customer (off the loop), then calls the provider.
 *
 * The order matters for the truth of the answer: an account without a
 * customer on file gets billing.no_billing_account from the local lookup,
 * before any provider call, so it can never be mistaken for an outage.
 *
 * Provider requests are Stripe-shaped: form-encoded POST bodies, the secret
 * key as a Bearer token, and an Idempotency-Key on every POST, which is what
 * lets the core retry them (BH_CALL_RETRY_SAFE): every attempt of one call
 * carries the same key, so the provider creates at most one session.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"

char *billing_strdup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- form encoding ------------------------------------------------------ */

typedef struct form {
  char *d;
  size_t len, cap;
  int failed;
} form;

static void form_put(form *f, const char *s, size_t n) {
  if (f->failed) return;
  if (f->len + n + 1 > f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 256;
    while (cap < f->len + n + 1)
      cap *= 2;
    char *d = realloc(f->d, cap);
    if (d == NULL) {
      f->failed = 1;
      return;
    }
    f->d = d;
    f->cap = cap;
  }
  memcpy(f->d + f->len, s, n);
  f->len += n;
  f->d[f->len] = '\0';
}

/* application/x-www-form-urlencoded: unreserved bytes as they are, the
 * rest percent-encoded (brackets in keys too; the provider decodes them). */
static void form_enc(form *f, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      form_put(f, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      form_put(f, e, 3);
    }
  }
}

static void form_add(form *f, const char *key, const char *value) {
  if (value == NULL) return;
  if (f->len) form_put(f, "&", 1);
  form_enc(f, key);
  form_put(f, "=", 1);
  form_enc(f, value);
}

/* ---- idempotency keys --------------------------------------------------- */

static void hex_of(const unsigned char *b, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[2 * n] = '\0';
}

/* The key every attempt of this provider call carries. When the client
 * sent its own Idempotency-Key, the key is derived from it (scoped to the
 * user and the route), so a client's retry of the same request reaches the
 * provider as the same request too; otherwise it is random per request. */
static char *idem_key(bh_req *req, const char *user, const char *route) {
  unsigned char h[16];
  const char *ck = bh_req_header(req, "idempotency-key");
  size_t cl = ck ? strlen(ck) : 0;
  int ok = cl > 0 && cl <= 255;
  for (size_t i = 0; ok && i < cl; i++)
    if ((unsigned char)ck[i] < 0x21 || (unsigned char)ck[i] > 0x7e) ok = 0;
  if (ok) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)route,
                              strlen(route) + 1);
    crypto_generichash_update(&st, (const unsigned char *)user,
                              strlen(user) + 1);
    crypto_generichash_update(&st, (const unsigned char *)ck, cl);
    crypto_generichash_final(&st, h, sizeof(h));
  } else {
    randombytes_buf(h, sizeof(h));
  }
  char *out = malloc(4 + 2 * sizeof(h) + 1);
  if (out) {
    memcpy(out, "bh_", 3);
    hex_of(h, sizeof(h), out + 3);
  }
  return out;
}

/* ---- answering ---------------------------------------------------------- */

/* Short provider identifiers of an error body (type, code, param), for the
 * log: never its message, which may quote what the user sent. */
static void error_ids(const bh_upstream_result *res, char *out, size_t n) {
  json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
  json_t *e = json_object_get(doc, "error");
  const char *t = json_string_value(json_object_get(e, "type"));
  const char *c = json_string_value(json_object_get(e, "code"));
  const char *p = json_string_value(json_object_get(e, "param"));
  snprintf(out, n, "type=%.40s code=%.40s param=%.60s", t ? t : "-",
           c ? c : "-", p ? p : "-");
  json_decref(doc);
}

void billing_provider_failed(billing_plugin *bp, bh_req *req,
                             const bh_upstream_result *res) {
  bh_ctx *ctx = bp->ctx;
  if (res->outcome == BH_OUTCOME_CANCELED) {
    bh_problem(req, "billing.payment_unavailable", NULL); /* releases req */
    return;
  }
  if (res->outcome == BH_OUTCOME_RESPONSE) {
    char ids[200];
    if (res->status == 401 || res->status == 403) {
      /* our key is wrong or lacks rights: every billing call fails until
       * ops fix it, so say so loudly (never the key itself) */
      error_ids(res, ids, sizeof(ids));
      bh_log(ctx, BH_LOG_ERROR,
             "MISCONFIGURED: the payment provider refused our secret key "
             "(HTTP %d, %s, request %s); check [plugin.billing] secret_key",
             res->status, ids, bh_req_id(req));
    } else if (res->status == 429 && res->retry_after < 0) {
      /* the provider asked us to slow down without saying for how long */
      bh_problem_retry(req, "billing.payment_unavailable", NULL,
                       bp->cfg.rate_limited_retry_after_s);
      return;
    } else if (res->status >= 400 && res->status < 500 && res->status != 402 &&
               res->status != 429) {
      error_ids(res, ids, sizeof(ids));
      bh_log(ctx, BH_LOG_WARN,
             "the payment provider refused a request "
             "(HTTP %d, %s, request %s)",
             res->status, ids, bh_req_id(req));
    }
  }
  bh_problem_upstream(req, res);
}

/* The provider's answers are parsed with jansson: the SDK's getters read
 * request bodies, not upstream ones. Ours are built with the SDK's writer. */
static json_t *provider_doc(const bh_upstream_result *res) {
  json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
  if (doc && !json_is_object(doc)) {
    json_decref(doc);
    doc = NULL;
  }
  return doc;
}

/* A session the provider created: its URL (and id) for the front end. */
static void session_done(bh_req *req, const bh_upstream_result *res,
                         void *data) {
  billing_job *j = data;
  billing_plugin *bp = billing_get(req);
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status >= 300) {
    billing_provider_failed(bp, req, res);
    billing_job_free(j);
    return;
  }
  json_t *doc = provider_doc(res);
  const char *url = json_string_value(json_object_get(doc, "url"));
  const char *id = json_string_value(json_object_get(doc, "id"));
  if (url == NULL) {
    bh_log(bp->ctx, BH_LOG_WARN,
           "the payment provider's session has no url "
           "(request %s)",
           bh_req_id(req));
    bh_problem(req, "billing.provider_bad_response", NULL);
  } else {
    bh_json w;
    bh_json_init(&w, 0);
    bh_json_obj(&w);
    if (j->route == BILLING_CHECKOUT) bh_json_kstr(&w, "id", id);
    bh_json_kstr(&w, "url", url);
    bh_json_end(&w);
    bh_respond_json(req, 200, &w);
  }
  json_decref(doc);
  billing_job_free(j);
}

/* The newest subscription of the customer, as the front end needs it. */
static void subscription_done(bh_req *req, const bh_upstream_result *res,
                              void *data) {
  billing_job *j = data;
  billing_plugin *bp = billing_get(req);
  billing_job_free(j);
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status >= 300) {
    billing_provider_failed(bp, req, res);
    return;
  }
  json_t *doc = provider_doc(res);
  json_t *list = json_object_get(doc, "data");
  if (!json_is_array(list)) {
    json_decref(doc);
    bh_problem(req, "billing.provider_bad_response", NULL);
    return;
  }
  json_t *sub = json_array_get(list, 0);
  json_t *items = json_object_get(json_object_get(sub, "items"), "data");
  json_t *price = json_object_get(json_array_get(items, 0), "price");
  const char *pid = json_string_value(json_object_get(price, "id"));
  const char *status = json_string_value(json_object_get(sub, "status"));
  json_t *end = json_object_get(sub, "current_period_end");
  bh_json w;
  bh_json_init(&w, 0);
  bh_json_obj(&w);
  bh_json_kstr(&w, "status",
               sub == NULL ? "none"
               : status    ? status
                           : "unknown");
  if (pid) {
    bh_json_kobj(&w, "plan");
    bh_json_kstr(&w, "priceId", pid);
    bh_json_kstr(&w, "name",
                 json_string_value(json_object_get(price, "nickname")));
    bh_json_end(&w);
  } else {
    bh_json_knull(&w, "plan");
  }
  if (json_is_integer(end))
    bh_json_kint(&w, "currentPeriodEnd", json_integer_value(end));
  else
    bh_json_knull(&w, "currentPeriodEnd");
  bh_json_kbool(&w, "cancelAtPeriodEnd",
                json_is_true(json_object_get(sub, "cancel_at_period_end")));
  bh_json_end(&w);
  json_decref(doc);
  bh_respond_json(req, 200, &w);
}

/* ---- provider calls ----------------------------------------------------- */

static void call_provider(billing_plugin *bp, billing_job *j) {
  bh_req *req = j->req;
  form f = {0};
  char path[512];
  const char *method = "POST";
  bh_upstream_cb cb = session_done;
  if (j->route == BILLING_CHECKOUT) {
    char qty[24];
    snprintf(qty, sizeof(qty), "%lld", (long long)j->quantity);
    form_add(&f, "mode", bp->cfg.mode);
    form_add(&f, "line_items[0][price]", j->price_id);
    form_add(&f, "line_items[0][quantity]", qty);
    form_add(&f, "success_url", bp->cfg.success_url);
    form_add(&f, "cancel_url", bp->cfg.cancel_url);
    if (j->customer_id) {
      form_add(&f, "customer", j->customer_id);
    } else {
      /* comes back in the completed-checkout event: that is how a new
       * customer is tied to this user */
      form_add(&f, "client_reference_id", j->user_id);
      form_add(&f, "metadata[user_id]", j->user_id);
    }
    snprintf(path, sizeof(path), "/v1/checkout/sessions");
  } else if (j->route == BILLING_PORTAL) {
    form_add(&f, "customer", j->customer_id);
    form_add(&f, "return_url", bp->cfg.portal_return_url);
    snprintf(path, sizeof(path), "/v1/billing_portal/sessions");
  } else {
    form q = {0};
    form_add(&q, "customer", j->customer_id);
    form_add(&q, "status", "all");
    form_add(&q, "limit", "1");
    int ok = !q.failed && q.len + 20 < sizeof(path);
    if (ok) snprintf(path, sizeof(path), "/v1/subscriptions?%s", q.d);
    free(q.d);
    if (!ok) f.failed = 1;
    method = "GET";
    cb = subscription_done;
  }
  if (f.failed) {
    free(f.d);
    bh_problem(req, "generic.internal", NULL);
    billing_job_free(j);
    return;
  }
  char idem[64] = "";
  if (j->idem_key)
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", j->idem_key);
  const char *headers[5];
  size_t n = 0;
  if (bp->auth_header) headers[n++] = bp->auth_header;
  if (bp->version_header) headers[n++] = bp->version_header;
  if (j->route != BILLING_SUBSCRIPTION) {
    headers[n++] = "Content-Type: application/x-www-form-urlencoded";
    headers[n++] = idem;
  }
  headers[n] = NULL;
  bh_upstream_request rq = {
      .size = sizeof(rq),
      .method = method,
      .path = path,
      .headers = headers,
      .body = f.d,
      .body_len = f.len,
      .flags = j->route != BILLING_SUBSCRIPTION ? BH_CALL_RETRY_SAFE : 0,
  };
  int rc = bh_upstream_call(req, bp->provider, &rq, cb, j);
  free(f.d);
  if (rc != 0) {
    /* no callback: the request is still ours (the end call releases it
     * when the core already answered) */
    bh_problem(
        req, rc == -EINVAL ? "generic.internal" : "billing.payment_unavailable",
        NULL);
    billing_job_free(j);
  }
}

void billing_api_lookup_done(billing_plugin *bp, billing_job *j) {
  bh_req *req = j->req;
  if (j->status == -ENOENT && j->route != BILLING_CHECKOUT) {
    bh_problem(req, "billing.no_billing_account", NULL);
    billing_job_free(j);
    return;
  }
  if (j->status != 0 && j->status != -ENOENT) {
    bh_problem(req,
               j->status == -ENOMEM ? "generic.internal"
                                    : "billing.store_unavailable",
               NULL);
    billing_job_free(j);
    return;
  }
  call_provider(bp, j);
}

/* ---- handlers ----------------------------------------------------------- */

/* The caller's user id, or NULL after answering. */
static const char *caller(bh_req *req) {
  const bh_principal *p = bh_req_principal(req);
  if (p == NULL || p->user_id[0] == '\0') {
    bh_problem(req, "auth.unauthenticated", NULL);
    return NULL;
  }
  return p->user_id;
}

static void submit_lookup(bh_req *req, billing_job *j, const char *user) {
  billing_plugin *bp = billing_get(req);
  j->user_id = billing_strdup(user);
  if (j->user_id == NULL ||
      (j->route != BILLING_SUBSCRIPTION && j->idem_key == NULL)) {
    billing_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  int rc = billing_store_submit(&bp->store, j);
  if (rc != 0) {
    billing_job_free(j);
    bh_problem(req, "billing.store_unavailable", NULL);
  }
}

static int price_ok(const billing_config *c, const char *id) {
  for (const char *s = id; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  if (c->nprices == 0) return 1;
  for (size_t i = 0; i < c->nprices; i++)
    if (strcmp(c->prices[i], id) == 0) return 1;
  return 0;
}

static const bh_field checkout_fields[] = {
    {.name = "priceId",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 100},
    {.name = "quantity", .type = BH_FIELD_INT, .min = 1, .max = 100},
};
static const bh_body_shape checkout_shape = {checkout_fields,
                                             BH_COUNT(checkout_fields), 0};

/* POST /v1/billing/checkout-session {"priceId": "...", "quantity": 1} ->
 * {"id": "cs_...", "url": "https://..."} */
void billing_checkout_post(bh_req *req, void *data) {
  (void)data;
  billing_plugin *bp = billing_get(req);
  const char *user = caller(req);
  if (user == NULL) return;
  if (bh_body_parse(req, &checkout_shape) < 0) return;
  const char *price = bh_body_string(req, "priceId");
  if (!price_ok(&bp->cfg, price)) {
    bh_problem_field(req, "billing.invalid_price", NULL, "priceId");
    return;
  }
  billing_job *j = billing_job_new(BILLING_OP_LOOKUP, BILLING_CHECKOUT, req);
  if (j == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  int64_t q = 1;
  if (bh_body_int(req, "quantity", &q) == 0) j->quantity = q;
  j->price_id = billing_strdup(price);
  j->idem_key = idem_key(req, user, "checkout");
  if (j->price_id == NULL) {
    billing_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  submit_lookup(req, j, user);
}

static const bh_body_shape empty_shape = {NULL, 0, 0};

/* POST /v1/billing/portal-session (no body, or {}) -> {"url": "..."} */
void billing_portal_post(bh_req *req, void *data) {
  (void)data;
  const char *user = caller(req);
  if (user == NULL) return;
  size_t len = 0;
  bh_req_body(req, &len);
  if (len && bh_body_parse(req, &empty_shape) < 0) return;
  billing_job *j = billing_job_new(BILLING_OP_LOOKUP, BILLING_PORTAL, req);
  if (j == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  j->idem_key = idem_key(req, user, "portal");
  submit_lookup(req, j, user);
}

/* GET /v1/billing/subscription -> {"status", "plan", "currentPeriodEnd",
 * "cancelAtPeriodEnd"} */
void billing_subscription_get(bh_req *req, void *data) {
  (void)data;
  const char *user = caller(req);
  if (user == NULL) return;
  billing_job *j =
      billing_job_new(BILLING_OP_LOOKUP, BILLING_SUBSCRIPTION, req);
  if (j == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  submit_lookup(req, j, user);
}
