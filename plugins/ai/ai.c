/*
 * ai: draft replies through an LLM provider.
 *
 * Skeleton: it loads, declares the codes it will own and serves one status
 * route. Ops mount it at /v1/ai in [plugin.ai]; the provider's key comes from
 * a BULKHEAD_PLUGIN_AI_<KEY> environment override, never the file.
 */
#include <bulkhead/plugin.h>

#define AI_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"ai\",\"version\":\"" AI_VERSION
                  "\",\"status\":\"ok\"}");
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/ai/status",
     .handler = status_get},
};

/* ai.timeout is also what the core answers when a handler of this plugin
 * overruns its route deadline. */
static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "ai.rate_limited",
     .http_status = 429,
     .detail = "The AI service is busy. Try again shortly.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "ai.unavailable",
     .http_status = 503,
     .detail = "The AI service is temporarily unavailable.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "ai.timeout",
     .http_status = 504,
     .detail = "The AI service did not respond in time.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "ai.bad_upstream_request",
     .http_status = 502,
     .detail = "The AI service could not handle this request."},
    {.on = BH_ON_CODE,
     .code = "ai.misconfigured",
     .http_status = 503,
     .detail = "The AI service is not configured on this server."},
};

static int ai_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "ai %s ready: %zu routes, %zu codes", AI_VERSION,
         COUNT(routes), COUNT(errors));
  return 0;
}

/* Called after init() whether it succeeded or not. Nothing is allocated
 * yet; the real plugin frees its state here. */
static void ai_fini(bh_ctx *ctx) {
  (void)ctx;
}

static int ai_health(bh_ctx *ctx, const char **why) {
  (void)ctx;
  (void)why;
  return 0;
}

static const bh_plugin_desc ai_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "ai",
    .version = AI_VERSION,
    .init = ai_init,
    .fini = ai_fini,
    .health = ai_health,
};

BH_PLUGIN_ENTRY(ai_desc)
