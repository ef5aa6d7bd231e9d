/*
 * Test plugin: auth-required routes that answer who the core's session
 * middleware says the caller is, so tests see the principal (and silent
 * refresh) from a plugin that is not the auth plugin.
 *
 *   GET|POST|DELETE /t/whoami   auth-required: the principal as JSON
 *   GET /t/whoami/open          no auth: {"principal":null}
 *   GET /t/whoami/limited       auth-required, the principal, under the
 *                               policy named by [plugin.whoami] limited_policy
 *                               (none when unset)
 *   * /t/whoami/proxy[/...]     auth-required proxy route to
 *                               [upstream.whoami] (the benchmark's
 *                               authenticated proxy)
 */
#include <bulkhead/plugin.h>
#include <stdio.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const bh_services *svc;

/* JSON string body of s into out (bounded; ill-formed bytes become '?'). */
static void esc(char *out, size_t n, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x80) {
      o += (size_t)snprintf(out + o, n - o, "\\u%04x", c < 0x20 ? c : '?');
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static const char *kind_name(int kind) {
  switch (kind) {
  case BH_AUTH_BEARER: return "bearer";
  case BH_AUTH_COOKIE: return "cookie";
  case BH_AUTH_API_KEY: return "api_key";
  default: return "none";
  }
}

static void whoami(bh_req *req, void *data) {
  (void)data;
  const bh_principal *p = bh_req_principal(req);
  if (p == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  char user[800], sid[400], scopes[3200], key[300], body[5000];
  esc(user, sizeof(user), p->user_id);
  esc(sid, sizeof(sid), p->session_id);
  esc(scopes, sizeof(scopes), p->scopes);
  esc(key, sizeof(key), p->key_id);
  snprintf(body, sizeof(body),
           "{\"kind\":\"%s\",\"userId\":\"%s\",\"sessionId\":\"%s\","
           "\"scopes\":\"%s\",\"keyId\":\"%s\",\"expiresAt\":%lld,"
           "\"method\":\"%s\"}",
           kind_name(p->kind), user, sid, scopes, key, (long long)p->expires_at,
           bh_req_method(req));
  bh_respond_json(req, 200, body);
}

static void open_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200,
                  bh_req_principal(req) ? "{\"principal\":\"unexpected\"}"
                                        : "{\"principal\":null}");
}

static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/whoami",
     .handler = whoami,
     .flags = BH_ROUTE_AUTH_REQUIRED},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/t/whoami",
     .handler = whoami,
     .flags = BH_ROUTE_AUTH_REQUIRED},
    {.size = sizeof(bh_route),
     .method = "DELETE",
     .pattern = "/t/whoami",
     .handler = whoami,
     .flags = BH_ROUTE_AUTH_REQUIRED},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/whoami/open",
     .handler = open_get},
};

static int whoami_init(bh_ctx *ctx, const bh_services *s) {
  svc = s;
  if (!BH_SVC_HAS(s, req_principal)) return -95; /* -ENOTSUP */
  int rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  bh_route limited = {.size = sizeof(bh_route),
                      .method = "GET",
                      .pattern = "/t/whoami/limited",
                      .handler = whoami,
                      .flags = BH_ROUTE_AUTH_REQUIRED,
                      .rate_limit = bh_config(ctx, "limited_policy")};
  if ((rc = bh_route_add(ctx, &limited)) < 0) return rc;
  bh_upstream *u = NULL;
  bh_upstream_def def = {.size = sizeof(def),
                         .name = "whoami",
                         .default_url = "http://127.0.0.1:9"};
  if ((rc = bh_upstream_add(ctx, &def, &u)) < 0) return rc;
  return bh_proxy_add(ctx, "/t/whoami/proxy", u, BH_ROUTE_AUTH_REQUIRED);
}

static void whoami_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc whoami_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "whoami",
    .version = "1.0.0",
    .init = whoami_init,
    .fini = whoami_fini,
};

BH_PLUGIN_ENTRY(whoami_desc)
