/*
 * billing: checkout and customer-portal sessions and the subscription view,
 * in front of the payment provider.
 *
 * Skeleton: it loads, declares the codes it will own and serves one status
 * route. Ops mount it at /v1/billing in [plugin.billing]; the provider's
 * secret key comes from BULKHEAD_PLUGIN_BILLING_SECRET_KEY, never the file.
 */
#include <bulkhead/plugin.h>

#define BILLING_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"billing\",\"version\":\"" BILLING_VERSION
                  "\",\"status\":\"ok\"}");
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/billing/status",
     .handler = status_get},
};

/* A missing billing account and a payment outage are different truths for
 * the user: one needs support, the other a retry. Keep them apart. */
static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "billing.no_billing_account",
     .http_status = 400,
     .detail = "No billing account is on file for this account. Contact "
               "support to set up billing."},
    {.on = BH_ON_CODE,
     .code = "billing.payment_unavailable",
     .http_status = 503,
     .detail = "Payment processing is temporarily unavailable.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "billing.payment_timeout",
     .http_status = 504,
     .detail = "The payment provider did not respond in time.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "billing.misconfigured",
     .http_status = 503,
     .detail = "Billing is not configured on this server. Contact support."},
};

static int billing_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "billing %s ready: %zu routes, %zu codes",
         BILLING_VERSION, COUNT(routes), COUNT(errors));
  return 0;
}

/* Called after init() whether it succeeded or not. Nothing is allocated
 * yet; the real plugin frees its state here. */
static void billing_fini(bh_ctx *ctx) {
  (void)ctx;
}

static int billing_health(bh_ctx *ctx, const char **why) {
  (void)ctx;
  (void)why;
  return 0;
}

static const bh_plugin_desc billing_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "billing",
    .version = BILLING_VERSION,
    .init = billing_init,
    .fini = billing_fini,
    .health = billing_health,
};

BH_PLUGIN_ENTRY(billing_desc)
