/*
 * auth: login, refresh, logout, "me" and API keys, in front of the
 * identity provider (IdP).
 *
 * Ops mount it at /v1/auth and /v1/api-keys. [plugin.auth] keys:
 *   idp          local (default: the embedded provider, users created with
 *                `bulkhead user add EMAIL`) or identity_toolkit (a Google
 *                identity toolkit / Firebase Auth style REST API at
 *                [upstream.auth] url)
 *   idp_api_key  the toolkit's API key, sent as ?key=; give it as
 *                BULKHEAD_PLUGIN_AUTH_IDP_API_KEY, not in the file
 *   idp_throttled_retry_after_s  Retry-After when the IdP itself reports
 *                too many attempts (default 60)
 *
 * Verifying a session needs neither this plugin nor the IdP: the core's
 * middleware does it. Only login depends on the IdP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_plugin.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

auth_state auth_g;

void auth_reply(bh_req *req, int status, json_t *doc) {
  char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (body == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  bh_set_header(req, "Cache-Control", "no-store");
  bh_respond(req, status, NULL, body, strlen(body));
  free(body);
}

json_t *auth_scopes_json(const char *scopes) {
  json_t *arr = json_array();
  for (const char *s = scopes ? scopes : ""; arr && *s;) {
    while (*s == ' ')
      s++;
    size_t n = strcspn(s, " ");
    if (n) json_array_append_new(arr, json_stringn(s, n));
    s += n;
  }
  return arr;
}

json_t *auth_token_doc(const bh_identity_result *res, int with_refresh) {
  int64_t now = (int64_t)time(NULL);
  json_t *doc =
      json_pack("{s:{s:s},s:s,s:s,s:I,s:I}", "user", "id", res->user_id,
                "accessToken", res->access_token, "tokenType", "Bearer",
                "expiresIn", (json_int_t)(res->access_expires_at - now),
                "expiresAt", (json_int_t)res->access_expires_at);
  if (doc && with_refresh) {
    json_object_set_new(doc, "refreshToken", json_string(res->refresh_token));
    json_object_set_new(doc, "refreshExpiresAt",
                        json_integer(res->refresh_expires_at));
  }
  return doc;
}

void auth_fail(bh_req *req, int status, const char *code) {
  if (code) {
    bh_problem(req, code, NULL);
    return;
  }
  switch (status) {
  case -ENOTSUP:
  case -EIO: bh_problem(req, "auth.session_store_unavailable", NULL); return;
  case -EPERM: bh_problem(req, "auth.csrf_rejected", NULL); return;
  case -EEXIST: bh_problem(req, "auth.ambiguous_credentials", NULL); return;
  case -ENOENT: bh_problem(req, "auth.unauthenticated", NULL); return;
  case -EALREADY: return; /* already answered */
  default: bh_problem(req, "generic.internal", NULL);
  }
}

static void status_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  "{\"plugin\":\"auth\",\"version\":\"" AUTH_VERSION
                  "\",\"status\":\"ok\"}");
}

static const char *kind_name(int kind) {
  switch (kind) {
  case BH_AUTH_BEARER: return "bearer";
  case BH_AUTH_COOKIE: return "cookie";
  case BH_AUTH_API_KEY: return "api_key";
  default: return "none";
  }
}

/* GET /v1/auth/me: who the middleware says the caller is. No email or
 * other personal data: the IdP holds those. */
static void me_get(bh_req *req, void *data) {
  (void)data;
  const bh_principal *p = bh_req_principal(req);
  if (p == NULL) {
    bh_problem(req, "auth.unauthenticated", NULL);
    return;
  }
  json_t *doc = json_pack(
      "{s:{s:s},s:{s:o,s:s,s:o,s:o}}", "user", "id", p->user_id, "session",
      "id", p->session_id[0] ? json_string(p->session_id) : json_null(), "kind",
      kind_name(p->kind), "scopes", auth_scopes_json(p->scopes), "expiresAt",
      p->expires_at ? json_integer(p->expires_at) : json_null());
  auth_reply(req, 200, doc);
}

/* The auth plugin's own routes are never refreshed silently: a client
 * refreshes them explicitly (POST /v1/auth/refresh). */
#define AUTHED (BH_ROUTE_AUTH_REQUIRED | BH_ROUTE_NO_AUTO_REFRESH)

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/auth/status",
     .handler = status_get},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/auth/login",
     .handler = auth_login,
     .max_body_bytes = 8192},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/auth/refresh",
     .handler = auth_refresh,
     .max_body_bytes = 4096},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/auth/logout",
     .handler = auth_logout,
     .max_body_bytes = 4096},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/auth/me",
     .handler = me_get,
     .flags = AUTHED},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/v1/api-keys",
     .handler = auth_keys_create,
     .flags = AUTHED,
     .max_body_bytes = 8192},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/v1/api-keys",
     .handler = auth_keys_list,
     .flags = AUTHED},
    {.size = sizeof(bh_route),
     .method = "DELETE",
     .pattern = "/v1/api-keys/{id}",
     .handler = auth_keys_delete,
     .flags = AUTHED},
};

#define IDP_UNAVAILABLE                                                        \
  .code = "auth.idp_unavailable", .http_status = 503,                          \
  .detail = "Authentication service unavailable.", .retryable = 1
#define IDP_MISCONFIGURED                                                      \
  .code = "auth.idp_misconfigured", .http_status = 503,                        \
  .detail = "Sign-in is not configured correctly on this server. Contact "     \
            "support."

/* The core owns auth.unauthenticated, auth.session_expired,
 * auth.session_revoked, auth.forbidden, auth.csrf_rejected and
 * auth.session_store_unavailable; these are the plugin's own. Each tells
 * one truth: a wrong password is not an outage, and an outage is not a
 * wrong password. */
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
     .code = "auth.too_many_attempts",
     .http_status = 429,
     .detail = "Too many sign-in attempts. Try again later.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "auth.scope_not_allowed",
     .http_status = 403,
     .detail = "An API key may carry only scopes your session holds or "
               "scopes this server allows for keys."},
    {.on = BH_ON_CODE,
     .code = "auth.api_key_not_found",
     .http_status = 404,
     .detail = "No API key of yours has this id."},
    {.on = BH_ON_STATUS, .status = 401, IDP_MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 403, IDP_MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 404, IDP_MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 429, IDP_UNAVAILABLE, .pass_retry_after = 1},
    {.on = BH_ON_TRANSPORT, .transport = BH_TRANSPORT_ANY, IDP_UNAVAILABLE},
    {.on = BH_ON_BREAKER_OPEN, IDP_UNAVAILABLE},
    {.on = BH_ON_RATE_LIMITED, IDP_UNAVAILABLE},
    {.on = BH_ON_STATUS_CLASS,
     .status = 5,
     IDP_UNAVAILABLE,
     .pass_retry_after = 1},
    {.on = BH_ON_STATUS_CLASS, .status = 4, IDP_MISCONFIGURED},
};

static int url_encode(char *out, size_t n, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                c == '~';
    if (o + 4 >= n) return -1;
    if (plain) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return 0;
}

/* Whether `path` lies under one of the mounts ops gave the plugin. */
static int mounted(bh_ctx *ctx, const char *path) {
  const char *m = bh_config(ctx, "mount");
  size_t pl = strlen(path);
  while (m && *m) {
    while (*m == ' ' || *m == '\t' || *m == ',')
      m++;
    size_t n = strcspn(m, ", \t");
    if (n && n <= pl && strncmp(path, m, n) == 0 &&
        (path[n] == '/' || path[n] == '\0'))
      return 1;
    m += n;
  }
  return 0;
}

static int auth_init(bh_ctx *ctx, const bh_services *svc) {
  if (!BH_SVC_HAS(svc, local_verify)) {
    bh_log(ctx, BH_LOG_ERROR, "this core has no identity services (ABI 1.2)");
    return -ENOTSUP;
  }
  memset(&auth_g, 0, sizeof(auth_g));
  auth_g.throttled_retry_after = 60;
  const char *idp = bh_config(ctx, "idp");
  if (idp == NULL || strcmp(idp, "local") == 0) {
    auth_g.idp = AUTH_IDP_LOCAL;
  } else if (strcmp(idp, "identity_toolkit") == 0) {
    auth_g.idp = AUTH_IDP_TOOLKIT;
  } else {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] idp: expected local or identity_toolkit");
    return -EINVAL;
  }
  const char *ra = bh_config(ctx, "idp_throttled_retry_after_s");
  if (ra) {
    char *end;
    long v = strtol(ra, &end, 10);
    if (*ra == '\0' || *end || v < 1 || v > 86400) {
      bh_log(ctx, BH_LOG_ERROR,
             "[plugin.auth] idp_throttled_retry_after_s: expected 1..86400");
      return -EINVAL;
    }
    auth_g.throttled_retry_after = v;
  }
  int rc;
  if (auth_g.idp == AUTH_IDP_TOOLKIT) {
    const char *key = bh_config(ctx, "idp_api_key");
    char enc[480];
    if (key && (url_encode(enc, sizeof(enc), key) != 0)) {
      bh_log(ctx, BH_LOG_ERROR, "[plugin.auth] idp_api_key: too long");
      return -EINVAL;
    }
    if (key)
      snprintf(auth_g.key_query, sizeof(auth_g.key_query), "?key=%s", enc);
    bh_upstream_def def = {.size = sizeof(def),
                           .name = "auth",
                           .default_url =
                               "https://identitytoolkit.googleapis.com",
                           .timeout_ms = 5000};
    if ((rc = bh_upstream_add(ctx, &def, &auth_g.upstream)) < 0) return rc;
  }
  if ((rc = bh_error_map(ctx, errors, COUNT(errors))) < 0) return rc;
  /* API keys are served only where ops mounted them: a deployment that
   * mounts /v1/auth alone gets sessions without keys, not a failed load */
  int keys = mounted(ctx, "/v1/api-keys");
  size_t served = 0;
  for (size_t i = 0; i < COUNT(routes); i++) {
    if (!keys && strncmp(routes[i].pattern, "/v1/api-keys", 12) == 0) continue;
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
    served++;
  }
  if (!keys)
    bh_log(ctx, BH_LOG_WARN,
           "/v1/api-keys is not among the mounts: API keys cannot be "
           "created or managed (add it to mount)");
  bh_log(ctx, BH_LOG_INFO, "auth %s ready: %zu routes, identity provider %s%s",
         AUTH_VERSION, served,
         auth_g.idp == AUTH_IDP_LOCAL ? "local" : "identity_toolkit",
         auth_g.idp == AUTH_IDP_TOOLKIT && auth_g.key_query[0] == '\0'
             ? " (no idp_api_key)"
             : "");
  return 0;
}

/* Called after init() whether it succeeded or not. */
static void auth_fini(bh_ctx *ctx) {
  (void)ctx;
  memset(&auth_g, 0, sizeof(auth_g));
}

static const bh_plugin_desc auth_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "auth",
    .version = AUTH_VERSION,
    .init = auth_init,
    .fini = auth_fini,
};

BH_PLUGIN_ENTRY(auth_desc)
