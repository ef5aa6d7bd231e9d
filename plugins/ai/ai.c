/*
 * ai: draft replies to customer reviews through an LLM provider with
 * Anthropic's Messages API shape (POST /v1/messages, x-api-key,
 * anthropic-version), buffered or streamed to the client as server-sent
 * events.
 *
 * The error map keeps apart what a user (and the front end) must be told
 * differently: "slow down, try in N seconds" (ai.rate_limited), "down, try
 * later" (ai.unavailable), "too slow" (ai.timeout), and the failures only
 * ops can fix (ai.misconfigured: our key; ai.bad_upstream_request: our
 * request), which are logged for them.
 *
 * Mount: /v1/ai. Config ([plugin.ai], see etc/bulkhead.ini): api_key from
 * the environment (BULKHEAD_PLUGIN_AI_API_KEY) or "@env:VAR" / "@file:PATH",
 * never the file itself; model, max_tokens, anthropic_version; the address
 * is [upstream.ai] url. fallback (further providers, ai_fallback.c) and
 * token_budget (a [rate_limit.NAME] of unit = tokens) need ABI 1.3.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"

ai_plugin *ai_get(bh_req *req) {
  return bh_data(bh_req_ctx(req));
}

/* ---- status routes ------------------------------------------------------ */

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
  ai_provider_failed(ai_get(req), req, res);
}

/* GET /v1/ai/provider-status: listing models proves reachability and key. */
static void provider_get(bh_req *req, void *data) {
  (void)data;
  ai_plugin *ap = ai_get(req);
  const char *headers[] = {ap->version_header, ap->prov[0].key_header, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "GET",
                            .path = "/v1/models",
                            .headers = headers};
  if (bh_upstream_call(req, ap->prov[0].up, &rq, provider_done, NULL) != 0)
    bh_problem(req, "ai.unavailable", NULL);
}

/* ---- error map ---------------------------------------------------------- */

#define UNAVAILABLE                                                            \
  .code = "ai.unavailable", .http_status = 503,                                \
  .detail = "AI replies are temporarily unavailable.", .retryable = 1
#define RATE_LIMITED                                                           \
  .code = "ai.rate_limited", .http_status = 429,                               \
  .detail = "Too many AI requests right now. Try again shortly.",              \
  .retryable = 1
#define MISCONFIGURED                                                          \
  .code = "ai.misconfigured", .http_status = 503,                              \
  .detail = "AI replies are not configured correctly on this server. "         \
            "Contact support."
#define BAD_UPSTREAM_REQUEST                                                   \
  .code = "ai.bad_upstream_request", .http_status = 502,                       \
  .detail = "The AI provider could not process this request."

/* Rate limited and down are different answers: one is "in a few seconds",
 * the other "not now". First matching row wins. */
static const bh_error_row errors[] = {
    /* named by the handler */
    {.on = BH_ON_CODE,
     .code = "ai.invalid_response",
     .http_status = 502,
     .detail = "The AI provider sent an answer that could not be read.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "ai.token_budget_exceeded",
     .http_status = 429,
     .detail = "You have used up your AI allowance for now. Try again "
               "later.",
     .retryable = 1},
    {.on = BH_ON_CODE,
     .code = "ai.invalid_field",
     .http_status = 400,
     .detail = "A field holds only spaces or characters that are not "
               "allowed."},
    /* the provider's answers */
    {.on = BH_ON_STATUS, .status = 429, RATE_LIMITED, .pass_retry_after = 1},
    {.on = BH_ON_STATUS, .status = 529, UNAVAILABLE, .pass_retry_after = 1},
    {.on = BH_ON_STATUS, .status = 400, BAD_UPSTREAM_REQUEST},
    {.on = BH_ON_STATUS, .status = 413, BAD_UPSTREAM_REQUEST},
    {.on = BH_ON_STATUS, .status = 401, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 403, MISCONFIGURED},
    {.on = BH_ON_STATUS, .status = 404, MISCONFIGURED}, /* unknown model */
    {.on = BH_ON_TRANSPORT,
     .transport = BH_TRANSPORT_TIMEOUT,
     .code = "ai.timeout",
     .http_status = 504,
     .detail = "The AI provider did not answer in time.",
     .retryable = 1},
    {.on = BH_ON_TRANSPORT, .transport = BH_TRANSPORT_ANY, UNAVAILABLE},
    {.on = BH_ON_BREAKER_OPEN, UNAVAILABLE},
    {.on = BH_ON_RATE_LIMITED, RATE_LIMITED},
    {.on = BH_ON_STATUS_CLASS, .status = 5, UNAVAILABLE, .pass_retry_after = 1},
    {.on = BH_ON_STATUS_CLASS, .status = 4, BAD_UPSTREAM_REQUEST},
};

/* ---- failures ----------------------------------------------------------- */

/* The provider's error type ("rate_limit_error"), for the log: never its
 * message, which may quote the review. */
static void error_type(const bh_upstream_result *res, char *out, size_t n) {
  json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
  const char *t =
      json_string_value(json_object_get(json_object_get(doc, "error"), "type"));
  snprintf(out, n, "%.60s", t ? t : "-");
  json_decref(doc);
}

void ai_provider_log(ai_plugin *ap, const ai_provider *p, bh_req *req,
                     const bh_upstream_result *res) {
  /* the primary's keys are plain, a fallback's are prefixed with its name */
  const char *pre = p == &ap->prov[0] ? "" : p->name;
  const char *dot = p == &ap->prov[0] ? "" : ".";
  if (res->outcome == BH_OUTCOME_RESPONSE) {
    char type[64];
    int s = res->status;
    if (s == 401 || s == 403 || s == 404) {
      /* our key or model is wrong: every draft fails until ops fix it */
      error_type(res, type, sizeof(type));
      bh_log(ap->ctx, BH_LOG_ERROR,
             "MISCONFIGURED: the AI provider %s refused our %s (HTTP %d, %s, "
             "request %s); check [plugin.ai] %s%s%s",
             p->name, s == 404 ? "model" : "API key", s, type, bh_req_id(req),
             pre, dot, s == 404 ? "model" : "api_key");
    } else if (s >= 400 && s < 500 && s != 429) {
      error_type(res, type, sizeof(type));
      bh_log(ap->ctx, BH_LOG_WARN,
             "the AI provider %s refused our request (HTTP %d, %s, request "
             "%s)",
             p->name, s, type, bh_req_id(req));
    }
  }
}

void ai_provider_failed(ai_plugin *ap, bh_req *req,
                        const bh_upstream_result *res) {
  if (res->outcome == BH_OUTCOME_CANCELED) {
    bh_problem(req, "ai.unavailable", NULL); /* releases req */
    return;
  }
  ai_provider_log(ap, &ap->prov[0], req, res);
  bh_problem_upstream(req, res);
}

/* ---- config ------------------------------------------------------------- */

/* A secret from a free key (api_key, NAME.api_key): the core's secret rule
 * (bh_secret_get: the environment override BULKHEAD_PLUGIN_AI_<KEY>,
 * "@env:VAR" or "@file:PATH" with one trailing line break dropped), then
 * ours: it goes into a header, so no spaces or control bytes. Never
 * logged. */
int ai_secret_get(bh_ctx *ctx, const char *key, char **out) {
  size_t n = 0;
  char *v = NULL;
  const char *raw = bh_config(ctx, key);
  *out = NULL;
  if (raw == NULL || raw[0] == '\0') return 0; /* calls carry no key */
  int rc = bh_secret_get(ctx, key, &v, &n);
  if (rc < 0) return -EINVAL; /* the core logged which and why */
  int ok = n > 0 && n < 4096;
  for (size_t i = 0; ok && i < n; i++)
    if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f) ok = 0;
  if (ok) *out = strdup(v);
  bh_secret_free(ctx, v, n);
  if (!ok) {
    bh_log(ctx, BH_LOG_ERROR,
           "%s: empty, too long, or has spaces or control bytes", key);
    return -EINVAL;
  }
  return *out ? 0 : -ENOMEM;
}

int ai_name_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '"' || *s == '\\')
      return 0;
  return 1;
}

static int config_load(bh_ctx *ctx, ai_config *c) {
  int rc = ai_secret_get(ctx, "api_key", &c->api_key);
  if (rc < 0) return rc;
  c->model = bh_config(ctx, "model");
  if (c->model == NULL) c->model = "claude-3-5-haiku-latest";
  c->version = bh_config(ctx, "anthropic_version");
  if (c->version == NULL) c->version = "2023-06-01";
  if (!ai_name_ok(c->model, 128) || !ai_name_ok(c->version, 32)) {
    bh_log(ctx, BH_LOG_ERROR, "model or anthropic_version: not a name");
    return -EINVAL;
  }
  c->max_tokens = 512;
  const char *mt = bh_config(ctx, "max_tokens");
  if (mt) {
    char *end = NULL;
    long n = strtol(mt, &end, 10);
    if (end == mt || *end || n < 1 || n > 8192) {
      bh_log(ctx, BH_LOG_ERROR, "max_tokens = %.32s: expected 1..8192", mt);
      return -EINVAL;
    }
    c->max_tokens = n;
  }
  c->token_budget = bh_config(ctx, "token_budget");
  return 0;
}

int ai_key_header(const char *key, char **out) {
  *out = NULL;
  if (key == NULL) return 0;
  size_t n = strlen(key) + 16;
  if ((*out = malloc(n)) == NULL) return -ENOMEM;
  snprintf(*out, n, "x-api-key: %s", key);
  return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int ai_init(bh_ctx *ctx, const bh_services *svc) {
  ai_plugin *ap = calloc(1, sizeof(*ap));
  if (ap == NULL) return -ENOMEM;
  ap->ctx = ctx;
  bh_set_data(ctx, ap);
  /* without the streaming slots (an older core) drafts are buffered */
  ap->can_stream = BH_SVC_HAS(svc, problem_json);
  ap->can_fallback = BH_SVC_HAS(svc, budget_charge);
  int rc = config_load(ctx, &ap->cfg);
  if (rc < 0) return rc;
  ai_provider *pr = &ap->prov[0];
  ap->nprov = 1;
  if ((pr->name = strdup("ai")) == NULL) return -ENOMEM;
  pr->model = ap->cfg.model;
  if ((rc = ai_key_header(ap->cfg.api_key, &pr->key_header)) < 0) return rc;
  size_t n = strlen(ap->cfg.version) + 24;
  if ((ap->version_header = malloc(n)) == NULL) return -ENOMEM;
  snprintf(ap->version_header, n, "anthropic-version: %s", ap->cfg.version);

  /* an LLM answer takes seconds, not milliseconds: the defaults reflect
   * it; [upstream.ai] timeout_ms wins */
  bh_upstream_def def = {.size = sizeof(def),
                         .name = "ai",
                         .default_url = "https://api.anthropic.com",
                         .connect_timeout_ms = 3000,
                         .timeout_ms = 60000};
  if ((rc = bh_upstream_add(ctx, &def, &pr->up)) < 0) return rc;
  if ((rc = ai_fallback_load(ap)) < 0) return rc;
  if (ap->cfg.token_budget) {
    if (!ap->can_fallback) {
      bh_log(ctx, BH_LOG_ERROR, "token_budget: this core has no budgets");
      return -ENOTSUP;
    }
    if ((rc = bh_budget_add(ctx, ap->cfg.token_budget)) < 0) return rc;
  }
  if ((rc = bh_error_map(ctx, errors, BH_COUNT(errors))) < 0) return rc;
  const bh_route routes[] = {
      BH_ROUTE("GET", "/v1/ai/status", status_get),
      BH_ROUTE("GET", "/v1/ai/provider-status", provider_get),
      {.size = sizeof(bh_route),
       .method = "POST",
       .pattern = "/v1/ai/draft-reply",
       .handler = ai_draft_post,
       .flags = BH_ROUTE_AUTH_REQUIRED,
       .max_body_bytes = 16 * 1024,
       /* past the upstream's own timeout, so the provider's outcome (and
        * its code) is what the client hears */
       .timeout_ms = 65000},
  };
  if ((rc = bh_routes_add(ctx, routes, BH_COUNT(routes))) < 0) return rc;
  bh_log(ctx, BH_LOG_INFO,
         "ai %s ready: %zu routes, %zu error rows, model %s, %zu "
         "fallback provider(s)%s%s%s%s",
         AI_VERSION, BH_COUNT(routes), BH_COUNT(errors), ap->cfg.model,
         ap->nprov - 1, ap->cfg.token_budget ? ", token budget " : "",
         ap->cfg.token_budget ? ap->cfg.token_budget : "",
         ap->can_stream ? "" : "; no streaming in this core",
         ap->cfg.api_key ? "" : "; no api_key: provider calls carry no key");
  return 0;
}

static void ai_fini(bh_ctx *ctx) {
  ai_plugin *ap = bh_data(ctx);
  if (ap == NULL) return;
  ai_fallback_free(ap);
  if (ap->cfg.api_key) explicit_bzero(ap->cfg.api_key, strlen(ap->cfg.api_key));
  free(ap->version_header);
  free(ap->cfg.api_key);
  free(ap);
  bh_set_data(ctx, NULL);
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
