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
 *   magic_link, smtp_*, magic_link_*  the email magic-link sign-in
 *                (magic.c; every key documented in etc/bulkhead.ini)
 *
 * Verifying a session needs neither this plugin nor the IdP: the core's
 * middleware does it. Only login depends on the IdP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "auth_plugin.h"

auth_state auth_g;

void auth_reply(bh_req *req, int status, bh_json *j) {
  bh_set_header(req, "Cache-Control", "no-store");
  bh_respond_json(req, status, j);
}

void auth_scopes_put(bh_json *j, const char *scopes) {
  bh_json_arr(j);
  for (const char *s = scopes ? scopes : ""; *s;) {
    while (*s == ' ')
      s++;
    size_t n = strcspn(s, " ");
    if (n) bh_json_strn(j, s, n);
    s += n;
  }
  bh_json_end(j);
}

void auth_token_reply(bh_req *req, const bh_identity_result *res,
                      int with_refresh, const char *redirect) {
  int64_t now = (int64_t)time(NULL);
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_sensitive(&j); /* tokens */
  bh_json_obj(&j);
  bh_json_kobj(&j, "user");
  bh_json_kstr(&j, "id", res->user_id);
  bh_json_end(&j);
  bh_json_kstr(&j, "accessToken", res->access_token);
  bh_json_kstr(&j, "tokenType", "Bearer");
  bh_json_kint(&j, "expiresIn", res->access_expires_at - now);
  bh_json_kint(&j, "expiresAt", res->access_expires_at);
  if (with_refresh) {
    bh_json_kstr(&j, "refreshToken", res->refresh_token);
    bh_json_kint(&j, "refreshExpiresAt", res->refresh_expires_at);
  }
  if (redirect && redirect[0]) bh_json_kstr(&j, "redirect", redirect);
  bh_json_end(&j);
  auth_reply(req, 200, &j);
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
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kobj(&j, "user");
  bh_json_kstr(&j, "id", p->user_id);
  bh_json_end(&j);
  bh_json_kobj(&j, "session");
  bh_json_kstr(&j, "id", p->session_id[0] ? p->session_id : NULL);
  bh_json_kstr(&j, "kind", kind_name(p->kind));
  bh_json_key(&j, "scopes");
  auth_scopes_put(&j, p->scopes);
  if (p->expires_at)
    bh_json_kint(&j, "expiresAt", p->expires_at);
  else
    bh_json_knull(&j, "expiresAt");
  bh_json_end(&j);
  bh_json_end(&j);
  auth_reply(req, 200, &j);
}

/* The auth plugin's own routes are never refreshed silently: a client
 * refreshes them explicitly (POST /v1/auth/refresh). */
#define AUTHED (BH_ROUTE_AUTH_REQUIRED | BH_ROUTE_NO_AUTO_REFRESH)

static const bh_route routes[] = {
    BH_ROUTE("GET", "/v1/auth/status", status_get),
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
     .code = "auth.magic_link_not_needed",
     .http_status = 409,
     .detail = "The identity provider is available: sign in with your "
               "password."},
    {.on = BH_ON_CODE,
     .code = "auth.email_unavailable",
     .http_status = 503,
     .detail = "Sign-in emails cannot be sent right now. Try again later.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "auth.magic_link_invalid",
     .http_status = 401,
     .detail = "This sign-in link is not valid or was already used. Ask for "
               "a new one."},
    {.on = BH_ON_CODE,
     .code = "auth.magic_link_expired",
     .http_status = 401,
     .detail = "This sign-in link has expired. Ask for a new one."},
    {.on = BH_ON_CODE,
     .code = "auth.invalid_redirect",
     .http_status = 400,
     .detail = "redirect must be a path of this site, such as /dashboard."},
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

/* ---- the identity provider failed ------------------------------------- */

/* The Problem the core answers for `res` (or for auth.idp_unavailable):
 * its code and status, read back with jansson (parsing only). */
static const char *idp_problem_code(bh_req *req, const bh_upstream_result *res,
                                    int *status, char *code, size_t codelen) {
  char buf[2048];
  int n = bh_problem_json(req, res ? NULL : "auth.idp_unavailable", NULL, res,
                          buf, sizeof(buf));
  json_t *doc = n > 0 && (size_t)n < sizeof(buf)
                    ? json_loadb(buf, (size_t)n, 0, NULL)
                    : NULL;
  json_t *ext = json_object_get(doc, "extensions");
  json_t *where = json_is_object(ext) ? ext : doc; /* problem_flat or not */
  const char *c = json_string_value(json_object_get(where, "code"));
  *status = (int)json_integer_value(json_object_get(doc, "status"));
  snprintf(code, codelen, "%s", c ? c : "");
  json_decref(doc);
  return code;
}

void auth_idp_failed(bh_req *req, const bh_upstream_result *res) {
  int status = 0;
  char code[96];
  idp_problem_code(req, res, &status, code, sizeof(code));
  int idp = strcmp(code, "auth.idp_unavailable") == 0;
  if (idp) auth_magic_idp_state(1);
  bh_json j;
  bh_json_init(&j, 0);
  if (idp && auth_magic_enabled() && status >= 400) {
    /* the same Problem, plus where the portal can send the user */
    bh_json_obj(&j);
    bh_json_kstr(&j, "fallback", "magic_link");
    bh_json_end(&j);
  }
  const char *members = bh_json_done(&j, NULL); /* NULL: nothing added */
  bh_problem_with(req, res ? NULL : "auth.idp_unavailable", NULL, res, members,
                  -1);
  bh_json_free(&j);
}

/* ---- config of the magic link ----------------------------------------- */

/* A secret from a free key with the core's rule (bh_secret_get: the
 * value, "@env:VAR" or "@file:PATH" with one trailing line break
 * dropped), then ours: no control bytes. 0 and *out (NULL when absent or
 * empty), or -EINVAL with the reason logged; the secret itself never is. */
static int secret_get(bh_ctx *ctx, const char *key, char **out) {
  const char *raw = bh_config(ctx, key);
  char *v = NULL;
  size_t n = 0;
  *out = NULL;
  if (raw == NULL || raw[0] == '\0') return 0;
  if (bh_secret_get(ctx, key, &v, &n) < 0) return -EINVAL; /* logged */
  int ok = n > 0 && n < 1024;
  for (size_t i = 0; ok && i < n; i++)
    if ((unsigned char)v[i] < ' ' || v[i] == 0x7f) ok = 0;
  if (ok) *out = strdup(v);
  bh_secret_free(ctx, v, n);
  if (!ok) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] %s: empty, too long, or has control bytes", key);
    return -EINVAL;
  }
  return *out ? 0 : -ENOMEM;
}

static int num_get(bh_ctx *ctx, const char *key, int64_t def, int64_t lo,
                   int64_t hi, int64_t *out) {
  const char *v = bh_config(ctx, key);
  *out = def;
  if (v == NULL) return 0;
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] %s = '%.32s': expected an integer in %lld..%lld", key,
           v, (long long)lo, (long long)hi);
    return -EINVAL;
  }
  *out = n;
  return 0;
}

static void magic_free(auth_magic *m) {
  if (m->smtp_password)
    sodium_memzero(m->smtp_password, strlen(m->smtp_password));
  free(m->smtp_url);
  free(m->smtp_from);
  free(m->smtp_user);
  free(m->smtp_password);
  free(m->link_base);
  memset(m, 0, sizeof(*m));
}

static int magic_config(bh_ctx *ctx, auth_magic *m) {
  const char *mode = bh_config(ctx, "magic_link");
  m->mode = AUTH_MAGIC_FALLBACK;
  if (mode && strcmp(mode, "off") == 0)
    m->mode = AUTH_MAGIC_OFF;
  else if (mode && strcmp(mode, "always") == 0)
    m->mode = AUTH_MAGIC_ALWAYS;
  else if (mode && strcmp(mode, "fallback") != 0) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] magic_link = '%.32s': expected fallback, always or "
           "off",
           mode);
    return -EINVAL;
  }
  int64_t v;
  int rc = 0;
  rc |=
      num_get(ctx, "smtp_timeout_ms", 10000, 100, 120000, &m->smtp_timeout_ms);
  rc |= num_get(ctx, "magic_link_ttl_s", 900, 1, 86400, &m->ttl_s);
  rc |= num_get(ctx, "magic_link_window_s", 900, 1, 86400, &m->window_s);
  rc |= num_get(ctx, "magic_link_per_email", 3, 1, 1000, &v);
  m->per_email = (int)v;
  rc |= num_get(ctx, "magic_link_per_address", 10, 1, 100000, &v);
  m->per_address = (int)v;
  rc |= num_get(ctx, "magic_link_verify_failures", 20, 1, 100000, &v);
  m->verify_failures = (int)v;
  if (rc) return -EINVAL;
  const char *url = bh_config(ctx, "smtp_url");
  if (m->mode == AUTH_MAGIC_OFF) return 0;
  if (url == NULL || url[0] == '\0') {
    /* no mail server: no magic link, and an existing config still loads */
    m->mode = AUTH_MAGIC_OFF;
    bh_log(ctx, BH_LOG_INFO,
           "no smtp_url: the magic-link sign-in is off (magic_link = %s)",
           mode ? mode : "fallback");
    return 0;
  }
  if (strncmp(url, "smtp://", 7) != 0 && strncmp(url, "smtps://", 8) != 0) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] smtp_url = '%.64s': expected smtp://host[:port] or "
           "smtps://host[:port]",
           url);
    return -EINVAL;
  }
  const char *from = bh_config(ctx, "smtp_from");
  const char *base = bh_config(ctx, "magic_link_url");
  if (from == NULL || strchr(from, '@') == NULL || strpbrk(from, "<>\r\n ")) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] smtp_from: expected the sender's address, such as "
           "no-reply@example.com (required with smtp_url)");
    return -EINVAL;
  }
  if (base == NULL ||
      (strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0) ||
      strpbrk(base, " \r\n?#")) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] magic_link_url: expected the public base URL the "
           "mail's link starts with, such as https://portal.example.com "
           "(required with smtp_url)");
    return -EINVAL;
  }
  m->smtp_url = strdup(url);
  m->smtp_from = strdup(from);
  m->link_base = strdup(base);
  if (m->link_base) {
    size_t n = strlen(m->link_base);
    while (n > 8 && m->link_base[n - 1] == '/')
      m->link_base[--n] = '\0';
  }
  if (!m->smtp_url || !m->smtp_from || !m->link_base) return -ENOMEM;
  if ((rc = secret_get(ctx, "smtp_username", &m->smtp_user)) < 0 ||
      (rc = secret_get(ctx, "smtp_password", &m->smtp_password)) < 0)
    return rc;
  if (!m->smtp_user != !m->smtp_password) {
    bh_log(ctx, BH_LOG_ERROR,
           "[plugin.auth] smtp_username and smtp_password go together");
    return -EINVAL;
  }
  const char *db = bh_config(ctx, "magic_link_database");
  if (db == NULL) db = "magic_link.db";
  int len = db[0] == '/' ? snprintf(m->db_path, sizeof(m->db_path), "%s", db)
                         : snprintf(m->db_path, sizeof(m->db_path), "%s/%s",
                                    bh_data_dir(ctx), db);
  if (len <= 0 || (size_t)len >= sizeof(m->db_path)) {
    bh_log(ctx, BH_LOG_ERROR, "[plugin.auth] magic_link_database: too long");
    return -EINVAL;
  }
  return 0;
}

static int auth_init(bh_ctx *ctx, const bh_services *svc) {
  if (!BH_SVC_HAS(svc, local_verify) || !BH_SVC_HAS(svc, jobq_new)) {
    bh_log(ctx, BH_LOG_ERROR,
           "this core has no identity services or job queues (ABI 1.3)");
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
  if (sodium_init() < 0) return -EIO;
  if ((rc = magic_config(ctx, &auth_g.magic)) < 0) return rc;
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
  if ((rc = bh_error_map(ctx, errors, BH_COUNT(errors))) < 0) return rc;
  /* API keys are served only where ops mounted them: a deployment that
   * mounts /v1/auth alone gets sessions without keys, not a failed load */
  int keys = mounted(ctx, "/v1/api-keys");
  size_t served = 0;
  for (size_t i = 0; i < BH_COUNT(routes); i++) {
    if (!keys && strncmp(routes[i].pattern, "/v1/api-keys", 12) == 0) continue;
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
    served++;
  }
  if ((rc = auth_magic_routes(ctx)) < 0) return rc;
  served += (size_t)rc;
  if (!keys)
    bh_log(ctx, BH_LOG_WARN,
           "/v1/api-keys is not among the mounts: API keys cannot be "
           "created or managed (add it to mount)");
  static const char *const modes[] = {"off", "fallback", "always"};
  bh_log(ctx, BH_LOG_INFO,
         "auth %s ready: %zu routes, identity provider %s%s, magic link %s",
         AUTH_VERSION, served,
         auth_g.idp == AUTH_IDP_LOCAL ? "local" : "identity_toolkit",
         auth_g.idp == AUTH_IDP_TOOLKIT && auth_g.key_query[0] == '\0'
             ? " (no idp_api_key)"
             : "",
         modes[auth_g.magic.mode]);
  return 0;
}

/* Called after init() whether it succeeded or not. */
static int auth_start(bh_ctx *ctx) {
  return auth_magic_start(ctx);
}

static void auth_fini(bh_ctx *ctx) {
  auth_magic_fini(ctx);
  magic_free(&auth_g.magic);
  memset(&auth_g, 0, sizeof(auth_g));
}

static const bh_plugin_desc auth_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "auth",
    .version = AUTH_VERSION,
    .init = auth_init,
    .start = auth_start,
    .fini = auth_fini,
    .store_schema = &magic_pg_schema,
};

BH_PLUGIN_ENTRY(auth_desc)
