/*
 * webhooks: the endpoint registry and a durable at-least-once dispatcher.
 *
 * Skeleton: it loads, declares the codes it will own and serves one status
 * route. Ops mount it at /v1/webhooks in [plugin.webhooks].
 */
#include <bulkhead/plugin.h>

#define WEBHOOKS_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"webhooks\",\"version\":\"" WEBHOOKS_VERSION
                  "\",\"status\":\"ok\"}");
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/webhooks/status",
     .handler = status_get},
};

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "webhooks.unavailable",
     .http_status = 503,
     .detail = "Webhooks are temporarily unavailable.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "webhooks.endpoint_not_found",
     .http_status = 404,
     .detail = "No webhook endpoint with this id exists."},
    {.on = BH_ON_CODE,
     .code = "webhooks.invalid_url",
     .http_status = 400,
     .detail = "The webhook endpoint URL is not valid."},
};

static int webhooks_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "webhooks %s ready: %zu routes, %zu codes",
         WEBHOOKS_VERSION, COUNT(routes), COUNT(errors));
  return 0;
}

/* Called after init() whether it succeeded or not. Nothing is allocated
 * yet; the real plugin frees its state here. */
static void webhooks_fini(bh_ctx *ctx) {
  (void)ctx;
}

static int webhooks_health(bh_ctx *ctx, const char **why) {
  (void)ctx;
  (void)why;
  return 0;
}

static const bh_plugin_desc webhooks_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "webhooks",
    .version = WEBHOOKS_VERSION,
    .init = webhooks_init,
    .fini = webhooks_fini,
    .health = webhooks_health,
};

BH_PLUGIN_ENTRY(webhooks_desc)
