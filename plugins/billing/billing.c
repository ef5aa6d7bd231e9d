/*
 * billing: checkout and customer-portal sessions and the subscription view,
 * in front of the payment provider (a Stripe-shaped API).
 *
 * Today it registers its provider upstream and error map and serves a
 * status route that asks the provider, so ops (and the demo) see the
 * billing compartment's true state. Ops mount it at /v1/billing; the
 * provider's secret key comes from BULKHEAD_PLUGIN_BILLING_SECRET_KEY,
 * never the file; the provider's address from [upstream.billing] url.
 */
#include <bulkhead/plugin.h>
#include <stdio.h>
#include <string.h>

#define BILLING_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bh_upstream *provider;
static char auth_header[300];

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"billing\",\"version\":\"" BILLING_VERSION
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
  bh_problem_upstream(req, res);
}

/* GET /v1/billing/provider-status: the provider's balance endpoint is the cheapest
 * authenticated call, so it proves both reachability and our key. */
static void provider_get(bh_req *req, void *data) {
  (void)data;
  const char *headers[] = {auth_header[0] ? auth_header : NULL, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "GET",
                            .path = "/v1/balance",
                            .headers = headers};
  if (bh_upstream_call(req, provider, &rq, provider_done, NULL) != 0)
    bh_problem(req, "billing.payment_unavailable", NULL);
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/billing/status",
     .handler = status_get},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/billing/provider-status",
     .handler = provider_get},
};

#define PAYMENT_UNAVAILABLE                                                  \
  .code = "billing.payment_unavailable", .http_status = 503,                 \
  .detail = "Payment processing is temporarily unavailable.", .retryable = 1
#define MISCONFIGURED                                                        \
  .code = "billing.misconfigured", .http_status = 503,                       \
  .detail = "Billing is not configured on this server. Contact support."

/* A missing billing account and a payment outage are different truths for
 * the user: one needs support, the other a retry. Keep them apart. First
 * matching row wins. */
static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "billing.no_billing_account",
     .http_status = 400,
     .detail = "No billing account is on file for this account. Contact "
               "support to set up billing."},
    {.on = BH_ON_STATUS,
     .status = 400,
     .body_field = "error.code",
     .body_value = "resource_missing",
     .code = "billing.no_billing_account",
     .http_status = 400,
     .detail = "No billing account is on file for this account. Contact "
               "support to set up billing."},
    {.on = BH_ON_STATUS,
     .status = 402,
     .code = "billing.card_declined",
     .http_status = 402,
     .detail = "The card was declined. Try another payment method."},
    {.on = BH_ON_STATUS, .status = 401, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 403, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 429, PAYMENT_UNAVAILABLE,
     .pass_retry_after = 1},
    {.on = BH_ON_TRANSPORT,
     .transport = BH_TRANSPORT_TIMEOUT,
     .code = "billing.payment_timeout",
     .http_status = 504,
     .detail = "The payment provider did not respond in time.",
     .retryable = 1},
    {.on = BH_ON_TRANSPORT, .transport = BH_TRANSPORT_ANY, PAYMENT_UNAVAILABLE},
    {.on = BH_ON_BREAKER_OPEN, PAYMENT_UNAVAILABLE},
    {.on = BH_ON_STATUS_CLASS, .status = 5, PAYMENT_UNAVAILABLE,
     .pass_retry_after = 1},
    {.on = BH_ON_STATUS_CLASS, .status = 4,
     .code = "billing.provider_rejected",
     .http_status = 502,
     .detail = "The payment provider rejected the request."},
};

static int billing_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  const char *key = bh_config(ctx, "secret_key");
  if (key && strlen(key) < sizeof(auth_header) - 32)
    snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", key);
  bh_upstream_def def = {
      .size = sizeof(def), .name = "billing", .default_url = "https://api.stripe.com"};
  int rc = bh_upstream_add(ctx, &def, &provider);
  if (rc < 0) return rc;
  if ((rc = bh_error_map(ctx, errors, COUNT(errors))) < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "billing %s ready: %zu routes, %zu error rows%s",
         BILLING_VERSION, COUNT(routes), COUNT(errors),
         key ? "" : " (no secret_key: provider calls are unauthenticated)");
  return 0;
}

/* Called after init() whether it succeeded or not. */
static void billing_fini(bh_ctx *ctx) {
  (void)ctx;
  memset(auth_header, 0, sizeof(auth_header));
}

static const bh_plugin_desc billing_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "billing",
    .version = BILLING_VERSION,
    .init = billing_init,
    .fini = billing_fini,
};

BH_PLUGIN_ENTRY(billing_desc)
