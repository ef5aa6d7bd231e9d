/*
 * auth: login, refresh, logout, "me" and API keys, in front of the identity
 * provider (IdP).
 *
 * Skeleton: it loads, declares the codes it will own and serves one status
 * route. Ops configure its mounts in [plugin.auth]: /v1/auth and
 * /v1/api-keys. Session verification itself lives in the core and needs no
 * upstream, so only the login path depends on the IdP.
 */
#include <bulkhead/plugin.h>

#define AUTH_VERSION "0.1.0"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"auth\",\"version\":\"" AUTH_VERSION
                  "\",\"status\":\"ok\"}");
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/auth/status",
     .handler = status_get},
};

/* The core owns auth.unauthenticated, auth.session_expired and
 * auth.forbidden; these are the plugin's own. */
static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "auth.invalid_credentials",
     .http_status = 401,
     .detail = "The email or password is incorrect."},
    {.on = BH_ON_CODE,
     .code = "auth.user_disabled",
     .http_status = 403,
     .detail = "This account is disabled. Contact support."},
    {.on = BH_ON_CODE,
     .code = "auth.idp_unavailable",
     .http_status = 503,
     .detail = "Authentication service unavailable.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "auth.too_many_attempts",
     .http_status = 429,
     .detail = "Too many sign-in attempts. Try again later.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "auth.idp_timeout",
     .http_status = 504,
     .detail = "The authentication service did not respond in time.",
     .retryable = 1},
};

static int auth_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO, "auth %s ready: %zu routes, %zu codes", AUTH_VERSION,
         COUNT(routes), COUNT(errors));
  return 0;
}

/* Called after init() whether it succeeded or not. Nothing is allocated
 * yet; the real plugin frees its state here. */
static void auth_fini(bh_ctx *ctx) {
  (void)ctx;
}

static int auth_health(bh_ctx *ctx, const char **why) {
  (void)ctx;
  (void)why;
  return 0;
}

static const bh_plugin_desc auth_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "auth",
    .version = AUTH_VERSION,
    .init = auth_init,
    .fini = auth_fini,
    .health = auth_health,
};

BH_PLUGIN_ENTRY(auth_desc)
