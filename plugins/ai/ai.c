/*
 * ai: draft replies through an LLM provider (an Anthropic-shaped Messages
 * API).
 *
 * Today it registers its provider upstream and error map and serves a
 * status route that asks the provider. Ops mount it at /v1/ai; the API key
 * comes from BULKHEAD_PLUGIN_AI_API_KEY, the address from [upstream.ai] url.
 */
#include <bulkhead/plugin.h>
#include <stdio.h>
#include <string.h>

#define AI_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bh_upstream *provider;
static char key_header[300];

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"ai\",\"version\":\"" AI_VERSION
                  "\",\"status\":\"ok\"}");
}

static void provider_done(bh_req *req, const bh_upstream_result *res,
                        void *data) {
  (void)data;
  if (res->outcome == BH_OUTCOME_RESPONSE && res->status < 300) {
    bh_respond_json(req, 200,
                    "{\"plugin\":\"ai\",\"version\":\"" AI_VERSION
                    "\",\"provider\":\"ok\"}");
    return;
  }
  bh_problem_upstream(req, res);
}

static void provider_get(bh_req *req, void *data) {
  (void)data;
  const char *headers[] = {"anthropic-version: 2023-06-01",
                           key_header[0] ? key_header : NULL, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "GET",
                            .path = "/v1/models",
                            .headers = headers};
  if (bh_upstream_call(req, provider, &rq, provider_done, NULL) != 0)
    bh_problem(req, "ai.unavailable", NULL);
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/ai/status",
     .handler = status_get},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/ai/provider-status",
     .handler = provider_get},
};

#define UNAVAILABLE                                                          \
  .code = "ai.unavailable", .http_status = 503,                              \
  .detail = "AI replies are temporarily unavailable.", .retryable = 1
#define MISCONFIGURED                                                        \
  .code = "ai.misconfigured", .http_status = 503,                            \
  .detail = "AI replies are not configured on this server."

/* Rate limited and down are different answers: one is "in a few seconds",
 * the other "not now". */
static const bh_error_row errors[] = {
    {.on = BH_ON_STATUS,
     .status = 429,
     .code = "ai.rate_limited",
     .http_status = 429,
     .detail = "Too many AI requests right now. Try again shortly.",
     .retryable = 1,
     .pass_retry_after = 1},
    {.on = BH_ON_STATUS, .status = 529, UNAVAILABLE, .pass_retry_after = 1},
    {.on = BH_ON_STATUS,
     .status = 400,
     .code = "ai.bad_upstream_request",
     .http_status = 502,
     .detail = "The AI provider could not process this request."},
    {.on = BH_ON_STATUS, .status = 401, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 403, MISCONFIGURED},
    {.on = BH_ON_TRANSPORT,
     .transport = BH_TRANSPORT_TIMEOUT,
     .code = "ai.timeout",
     .http_status = 504,
     .detail = "The AI provider did not answer in time.",
     .retryable = 1},
    {.on = BH_ON_TRANSPORT, .transport = BH_TRANSPORT_ANY, UNAVAILABLE},
    {.on = BH_ON_BREAKER_OPEN, UNAVAILABLE},
    {.on = BH_ON_STATUS_CLASS, .status = 5, UNAVAILABLE, .pass_retry_after = 1},
};

static int ai_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  const char *key = bh_config(ctx, "api_key");
  if (key && strlen(key) < sizeof(key_header) - 16)
    snprintf(key_header, sizeof(key_header), "x-api-key: %s", key);
  bh_upstream_def def = {
      .size = sizeof(def), .name = "ai", .default_url = "https://api.anthropic.com"};
  int rc = bh_upstream_add(ctx, &def, &provider);
  if (rc < 0) return rc;
  if ((rc = bh_error_map(ctx, errors, COUNT(errors))) < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "ai %s ready: %zu routes, %zu error rows",
         AI_VERSION, COUNT(routes), COUNT(errors));
  return 0;
}

static void ai_fini(bh_ctx *ctx) {
  (void)ctx;
  memset(key_header, 0, sizeof(key_header));
}

static const bh_plugin_desc ai_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "ai",
    .version = AI_VERSION,
    .init = ai_init,
    .fini = ai_fini,
};

BH_PLUGIN_ENTRY(ai_desc)
