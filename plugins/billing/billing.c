/*
 * billing: checkout and customer-portal sessions and the subscription view,
 * in front of a payment provider with Stripe's API shape, and the provider's
 * signed event callbacks.
 *
 * The point of the plugin is to tell the user the truth about which failure
 * they hit. An account with no billing record on file is told so (400
 * billing.no_billing_account, "contact support") before any provider call;
 * a provider that is down, slow, rate limiting or refusing our key each
 * gets its own code. The user -> provider customer mapping lives in the
 * plugin's own SQLite file (billing_store.c).
 *
 * Mount: /v1/billing. Config ([plugin.billing], see etc/bulkhead.ini):
 * secret_key and webhook_secret come from the environment
 * (BULKHEAD_PLUGIN_BILLING_SECRET_KEY) or as "@env:VAR" / "@file:PATH",
 * never the file itself; the provider's address is [upstream.billing] url.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"

billing_plugin *billing_get(bh_req *req) {
  return bh_data(bh_req_ctx(req));
}

/* ---- status routes ----------------------------------------------------- */

static void status_get(bh_req *req, void *data) {
  (void)data;
  billing_plugin *bp = billing_get(req);
  int down = bp && billing_store_down(&bp->store);
  bh_respond_json(req, 200,
                  down
                      ? "{\"plugin\":\"billing\",\"version\":\"" BILLING_VERSION
                        "\",\"status\":\"degraded\",\"store\":\"unavailable\"}"
                      : "{\"plugin\":\"billing\",\"version\":\"" BILLING_VERSION
                        "\",\"status\":\"ok\"}");
}

static void provider_done(bh_req *req, const bh_upstream_result *res,
                          void *data) {
  (void)data;
  if (res->outcome == BH_OUTCOME_RESPONSE && res->status < 300) {
    bh_respond_json(req, 200,
                    "{\"plugin\":\"billing\",\"version\":\"" BILLING_VERSION
                    "\",\"provider\":\"ok\"}");
    return;
  }
  billing_provider_failed(billing_get(req), req, res);
}

/* GET /v1/billing/provider-status: the provider's balance endpoint is the
 * cheapest authenticated call, so it proves both reachability and our key. */
static void provider_get(bh_req *req, void *data) {
  (void)data;
  billing_plugin *bp = billing_get(req);
  const char *headers[] = {bp->auth_header, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "GET",
                            .path = "/v1/balance",
                            .headers = bp->auth_header ? headers : NULL};
  if (bh_upstream_call(req, bp->provider, &rq, provider_done, NULL) != 0)
    bh_problem(req, "billing.payment_unavailable", NULL);
}

static const bh_route routes[] = {
    BH_ROUTE("GET", "/v1/billing/status", status_get),
    BH_ROUTE("GET", "/v1/billing/provider-status", provider_get),
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/billing/checkout-session",
     .handler = billing_checkout_post,
     .flags = BH_ROUTE_AUTH_REQUIRED,
     .max_body_bytes = 4096},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/billing/portal-session",
     .handler = billing_portal_post,
     .flags = BH_ROUTE_AUTH_REQUIRED,
     .max_body_bytes = 1024},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/billing/subscription",
     .handler = billing_subscription_get,
     .flags = BH_ROUTE_AUTH_REQUIRED},
    /* the provider's callbacks prove themselves with a signature, not a
     * session; the body is taken as it came, since that is what is signed */
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/billing/provider-events",
     .handler = billing_events_post,
     .flags = BH_ROUTE_RAW_BODY,
     .max_body_bytes = 512 * 1024},
};

/* ---- error map ---------------------------------------------------------- */

#define NO_BILLING_ACCOUNT                                                     \
  .code = "billing.no_billing_account", .http_status = 400,                    \
  .detail = "No billing account is on file for this account. This usually "    \
            "means the plan was set up manually. Contact support to set up "   \
            "billing."
#define PAYMENT_UNAVAILABLE                                                    \
  .code = "billing.payment_unavailable", .http_status = 503,                   \
  .detail = "Payment processing is temporarily unavailable.", .retryable = 1
#define MISCONFIGURED                                                          \
  .code = "billing.misconfigured", .http_status = 503,                         \
  .detail = "Billing is not configured correctly on this server. Contact "     \
            "support."
#define INVALID_PRICE                                                          \
  .code = "billing.invalid_price", .http_status = 400,                         \
  .detail = "This plan is not available."

/* A missing billing account and a payment outage are different truths for
 * the user: one needs support, the other a retry. Keep them apart. First
 * matching row wins, so specific rows (a body field) come before their
 * status, and statuses before their class. */
static const bh_error_row errors[] = {
    /* named by the handlers */
    {.on = BH_ON_CODE, NO_BILLING_ACCOUNT},
    {.on = BH_ON_CODE,
     .code = "billing.store_unavailable",
     .http_status = 503,
     .detail = "Billing records are temporarily unavailable. Try again "
               "shortly.",
     .retryable = 1},
    {.on = BH_ON_CODE, INVALID_PRICE},
    {.on = BH_ON_CODE,
     .code = "billing.provider_bad_response",
     .http_status = 502,
     .detail = "The payment provider sent an answer that could not be read.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "billing.signature_invalid",
     .http_status = 400,
     .detail = "The event signature is missing or does not match."},
    {.on = BH_ON_CODE,
     .code = "billing.signature_expired",
     .http_status = 400,
     .detail = "The event signature's timestamp is outside the tolerance."},
    {.on = BH_ON_CODE,
     .code = "billing.invalid_event",
     .http_status = 400,
     .detail = "The body is not a provider event."},
    /* the provider's own refusals */
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.param",
     .body_value = "customer",
     NO_BILLING_ACCOUNT}, /* the customer on file is gone at the provider */
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.param",
     .body_value = "line_items[0][price]",
     INVALID_PRICE},
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.type",
     .body_value = "idempotency_error",
     .code = "billing.idempotency_key_reused",
     .http_status = 409,
     .detail = "This Idempotency-Key was already used for a different "
               "request."},
    {.on = BH_ON_STATUS,
     .status = 402,
     .body_field = "error.code",
     .body_value = "expired_card",
     .code = "billing.card_expired",
     .http_status = 402,
     .detail = "The card has expired. Use another payment method."},
    {.on = BH_ON_STATUS,
     .status = 402,
     .body_field = "error.code",
     .body_value = "card_declined",
     .code = "billing.card_declined",
     .http_status = 402,
     .detail = "The card was declined. Try another payment method."},
    {.on = BH_ON_STATUS,
     .status = 402,
     .code = "billing.payment_failed",
     .http_status = 402,
     .detail = "The payment could not be completed with this payment "
               "method."},
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.type",
     .body_value = "invalid_request_error",
     .code = "billing.invalid_request",
     .http_status = 400,
     .detail = "The payment provider refused the request as invalid."},
    /* our key: nothing the user can do, and ops must know at once */
    {.on = BH_ON_STATUS, .status = 401, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 403, MISCONFIGURED},
    {.on = BH_ON_STATUS,
     .status = 429,
     PAYMENT_UNAVAILABLE,
     .pass_retry_after = 1},
    {.on = BH_ON_TRANSPORT,
     .transport = BH_TRANSPORT_TIMEOUT,
     .code = "billing.payment_timeout",
     .http_status = 504,
     .detail = "The payment provider did not respond in time.",
     .retryable = 1},
    {.on = BH_ON_TRANSPORT, .transport = BH_TRANSPORT_ANY, PAYMENT_UNAVAILABLE},
    {.on = BH_ON_BREAKER_OPEN, PAYMENT_UNAVAILABLE},
    {.on = BH_ON_RATE_LIMITED, PAYMENT_UNAVAILABLE},
    {.on = BH_ON_STATUS_CLASS,
     .status = 5,
     PAYMENT_UNAVAILABLE,
     .pass_retry_after = 1},
    {.on = BH_ON_STATUS_CLASS,
     .status = 4,
     .code = "billing.provider_rejected",
     .http_status = 502,
     .detail = "The payment provider rejected the request."},
};

/* ---- config ------------------------------------------------------------- */

/* A secret from a free key with the core's rule (bh_secret_get: the
 * environment override BULKHEAD_PLUGIN_BILLING_<KEY>, "@env:VAR" or
 * "@file:PATH" with one trailing line break dropped), then ours: it goes
 * into a header, so no spaces or control bytes. 0 and *out (NULL when the
 * key is absent or empty), or -EINVAL with the reason logged; the secret
 * itself is never logged. */
static int secret_get(bh_ctx *ctx, const char *key, char **out) {
  const char *raw = bh_config(ctx, key);
  char *v = NULL;
  size_t n = 0;
  *out = NULL;
  if (raw == NULL || raw[0] == '\0') return 0;
  if (bh_secret_get(ctx, key, &v, &n) < 0) return -EINVAL; /* logged */
  int ok = n > 0 && n < 4096;
  for (size_t i = 0; ok && i < n; i++)
    if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f) ok = 0;
  if (ok) *out = billing_strdup(v);
  bh_secret_free(ctx, v, n);
  if (!ok) {
    bh_log(ctx, BH_LOG_ERROR,
           "%s: empty, too long, or has spaces or control bytes", key);
    return -EINVAL;
  }
  return *out ? 0 : -ENOMEM;
}

static int long_get(bh_ctx *ctx, const char *key, long def, long lo, long hi,
                    long *out) {
  const char *v = bh_config(ctx, key);
  *out = def;
  if (v == NULL) return 0;
  char *end = NULL;
  long n = strtol(v, &end, 10);
  if (end == v || *end != '\0' || n < lo || n > hi) {
    bh_log(ctx, BH_LOG_ERROR, "%s = %.32s: expected an integer in %ld..%ld",
           key, v, lo, hi);
    return -EINVAL;
  }
  *out = n;
  return 0;
}

static int url_ok(const char *u) {
  if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0) return 0;
  for (; *u; u++)
    if ((unsigned char)*u <= ' ' || *u == 0x7f) return 0;
  return 1;
}

/* "price_a, price_b" -> the allow-list. */
static int prices_get(bh_ctx *ctx, billing_config *c) {
  const char *v = bh_config(ctx, "prices");
  if (v == NULL) return 0;
  for (const char *s = v; *s;) {
    while (*s == ' ' || *s == ',')
      s++;
    size_t n = strcspn(s, " ,");
    if (n == 0) break;
    char **p = realloc(c->prices, (c->nprices + 1) * sizeof(*p));
    if (p == NULL) return -ENOMEM;
    c->prices = p;
    if ((p[c->nprices] = strndup(s, n)) == NULL) return -ENOMEM;
    c->nprices++;
    s += n;
  }
  return 0;
}

static int config_load(bh_ctx *ctx, billing_config *c) {
  long v;
  int rc;
  if ((rc = secret_get(ctx, "secret_key", &c->secret_key)) < 0 ||
      (rc = secret_get(ctx, "webhook_secret", &c->webhook_secret)) < 0)
    return rc;
  if ((rc = long_get(ctx, "webhook_tolerance_s", 300, 1, 86400, &v)) < 0)
    return rc;
  c->tolerance_s = v;
  if ((rc = long_get(ctx, "busy_timeout_ms", 5000, 0, 60000, &v)) < 0)
    return rc;
  c->busy_timeout_ms = (int)v;
  if ((rc = long_get(ctx, "rate_limited_retry_after_s", 2, 1, 3600, &v)) < 0)
    return rc;
  c->rate_limited_retry_after_s = v;
  c->mode = bh_config(ctx, "checkout_mode");
  if (c->mode == NULL) c->mode = "subscription";
  if (strcmp(c->mode, "subscription") != 0 && strcmp(c->mode, "payment") != 0) {
    bh_log(ctx, BH_LOG_ERROR,
           "checkout_mode = %.32s: expected subscription "
           "or payment",
           c->mode);
    return -EINVAL;
  }
  static const char *const urls[] = {"success_url", "cancel_url",
                                     "portal_return_url"};
  const char **dst[] = {&c->success_url, &c->cancel_url, &c->portal_return_url};
  for (size_t i = 0; i < BH_COUNT(urls); i++) {
    *dst[i] = bh_config(ctx, urls[i]);
    if (*dst[i] && !url_ok(*dst[i])) {
      bh_log(ctx, BH_LOG_ERROR, "%s: not an http(s) URL", urls[i]);
      return -EINVAL;
    }
  }
  c->api_version = bh_config(ctx, "api_version");
  if (c->api_version && (strlen(c->api_version) > 64 ||
                         strpbrk(c->api_version, "\r\n") != NULL)) {
    bh_log(ctx, BH_LOG_ERROR, "api_version: not a version string");
    return -EINVAL;
  }
  if ((rc = prices_get(ctx, c)) < 0) return rc;
  const char *dir = bh_data_dir(ctx);
  const char *db = bh_config(ctx, "database");
  if (db == NULL) db = "billing.db";
  size_t n = strlen(dir) + strlen(db) + 2;
  if ((c->db_path = malloc(n)) == NULL) return -ENOMEM;
  if (db[0] == '/')
    snprintf(c->db_path, n, "%s", db);
  else
    snprintf(c->db_path, n, "%s/%s", dir, db);
  return 0;
}

static void config_free(billing_config *c) {
  if (c->secret_key) sodium_memzero(c->secret_key, strlen(c->secret_key));
  if (c->webhook_secret)
    sodium_memzero(c->webhook_secret, strlen(c->webhook_secret));
  free(c->secret_key);
  free(c->webhook_secret);
  free(c->db_path);
  for (size_t i = 0; i < c->nprices; i++)
    free(c->prices[i]);
  free(c->prices);
  memset(c, 0, sizeof(*c));
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The store finished a job: go on with it on the loop. */
static void on_done(bh_job *job, void *data) {
  billing_plugin *bp = ((billing_store *)data)->owner;
  billing_job *j = (billing_job *)(void *)job;
  if (bp->closing) {
    /* shutting down: never start a provider call now (the end call
     * releases a request whose client is gone) */
    bh_problem(j->req, "billing.store_unavailable", NULL);
    billing_job_free(j);
  } else if (j->route == BILLING_EVENTS) {
    billing_events_done(bp, j);
  } else {
    billing_api_lookup_done(bp, j);
  }
}

static int billing_init(bh_ctx *ctx, const bh_services *svc) {
  if (!BH_SVC_HAS(svc, jobq_new) || !BH_SVC_HAS(svc, req_principal) ||
      !BH_SVC_HAS(svc, problem_retry)) {
    bh_log(ctx, BH_LOG_ERROR,
           "this core lacks job queues or identity (ABI 1.3)");
    return -ENOTSUP;
  }
  if (sodium_init() < 0) return -EIO;
  billing_plugin *bp = calloc(1, sizeof(*bp));
  if (bp == NULL) return -ENOMEM;
  bp->ctx = ctx;
  bp->svc = svc;
  bh_set_data(ctx, bp);
  int rc = config_load(ctx, &bp->cfg);
  if (rc < 0) return rc;
  if (bp->cfg.secret_key) {
    size_t n = strlen(bp->cfg.secret_key) + 32;
    if ((bp->auth_header = malloc(n)) == NULL) return -ENOMEM;
    snprintf(bp->auth_header, n, "Authorization: Bearer %s",
             bp->cfg.secret_key);
  }
  if (bp->cfg.api_version) {
    size_t n = strlen(bp->cfg.api_version) + 32;
    if ((bp->version_header = malloc(n)) == NULL) return -ENOMEM;
    snprintf(bp->version_header, n, "Stripe-Version: %s", bp->cfg.api_version);
  }
  bh_upstream_def def = {.size = sizeof(def),
                         .name = "billing",
                         .default_url = "https://api.stripe.com"};
  if ((rc = bh_upstream_add(ctx, &def, &bp->provider)) < 0) return rc;
  if ((rc = bh_error_map(ctx, errors, BH_COUNT(errors))) < 0) return rc;
  if ((rc = bh_routes_add(ctx, routes, BH_COUNT(routes))) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "billing %s ready: %zu routes, %zu error rows%s%s",
         BILLING_VERSION, BH_COUNT(routes), BH_COUNT(errors),
         bp->cfg.secret_key ? ""
                            : "; no secret_key: provider calls carry no "
                              "key of ours",
         bp->cfg.webhook_secret ? ""
                                : "; no webhook_secret: provider events "
                                  "are refused");
  return 0;
}

static int billing_start(bh_ctx *ctx) {
  billing_plugin *bp = bh_data(ctx);
  int rc = billing_store_start(&bp->store, &bp->cfg, ctx, on_done, bp);
  if (rc < 0) {
    bh_log(ctx, BH_LOG_ERROR, "cannot start the store thread: %s",
           strerror(-rc));
    return rc;
  }
  return 0;
}

static int billing_health(bh_ctx *ctx, const char **why) {
  billing_plugin *bp = bh_data(ctx);
  if (bp && billing_store_down(&bp->store)) {
    *why = "the billing database is unavailable";
    return -EIO;
  }
  return 0;
}

/* Called after init() whether it succeeded or not. */
static void billing_fini(bh_ctx *ctx) {
  billing_plugin *bp = bh_data(ctx);
  if (bp == NULL) return;
  /* queued work still runs; what finished unclaimed is answered now (the
   * end calls release requests whose client is gone) */
  bp->closing = 1;
  billing_store_stop(&bp->store);
  if (bp->auth_header) sodium_memzero(bp->auth_header, strlen(bp->auth_header));
  free(bp->auth_header);
  free(bp->version_header);
  config_free(&bp->cfg);
  free(bp);
  bh_set_data(ctx, NULL);
}

static const bh_plugin_desc billing_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "billing",
    .version = BILLING_VERSION,
    .init = billing_init,
    .start = billing_start,
    .fini = billing_fini,
    .health = billing_health,
    .store_schema = &billing_pg_schema,
};

BH_PLUGIN_ENTRY(billing_desc)
