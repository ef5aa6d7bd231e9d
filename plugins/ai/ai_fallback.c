/*
 * LLM provider fallback: [plugin.ai] fallback = NAME[, NAME...] names
 * further [upstream.NAME] providers with the same (Anthropic-shaped) API,
 * each with its own key and model ([plugin.ai] NAME.api_key, NAME.model)
 * and, being an upstream of its own, its own breaker, retry budget and
 * rate limit.
 *
 * What goes on to the next provider is what a different provider may not
 * suffer: the provider said "slow down" (429) or "down" (529, 5xx), it
 * could not be reached or did not answer in time, or our side refused to
 * call it (its breaker is open, its local rate limit is spent). What never
 * does is what would fail the same way anywhere, or what ops must see:
 * our request refused (400, 413, other 4xx) and our key or model refused
 * (401, 403, 404).
 *
 * When every provider failed the client hears the primary's Problem, the
 * truthful code of the service it asked for, with every attempt in
 * extensions.attempts and the shortest Retry-After among them: the
 * soonest any of them may serve again.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"

/* ---- config ------------------------------------------------------------- */

static int provider_load(ai_plugin *ap, const char *name) {
  bh_ctx *ctx = ap->ctx;
  if (ap->nprov == AI_MAX_PROVIDERS) {
    bh_log(ctx, BH_LOG_ERROR, "fallback: at most %d providers",
           AI_MAX_PROVIDERS - 1);
    return -EINVAL;
  }
  for (size_t i = 0; i < ap->nprov; i++)
    if (strcmp(ap->prov[i].name, name) == 0) {
      bh_log(ctx, BH_LOG_ERROR, "fallback: %.48s is named twice", name);
      return -EINVAL;
    }
  ai_provider *p = &ap->prov[ap->nprov++];
  if ((p->name = strdup(name)) == NULL) return -ENOMEM;
  char key[96];
  snprintf(key, sizeof(key), "%s.api_key", name);
  int rc = ai_secret_get(ctx, key, &p->api_key);
  if (rc < 0) return rc;
  if ((rc = ai_key_header(p->api_key, &p->key_header)) < 0) return rc;
  snprintf(key, sizeof(key), "%s.model", name);
  p->model = bh_config(ctx, key);
  if (p->model == NULL) p->model = ap->cfg.model;
  if (!ai_name_ok(p->model, 128)) {
    bh_log(ctx, BH_LOG_ERROR, "%s: not a model name", key);
    return -EINVAL;
  }
  /* no default address: a fallback is somebody else's service */
  bh_upstream_def def = {.size = sizeof(def),
                         .name = p->name,
                         .connect_timeout_ms = 3000,
                         .timeout_ms = 60000};
  if ((rc = bh_upstream_add(ctx, &def, &p->up)) < 0) return rc;
  if (p->api_key == NULL)
    bh_log(ctx, BH_LOG_WARN, "%s.api_key: none, calls carry no key", name);
  return 0;
}

int ai_fallback_load(ai_plugin *ap) {
  const char *v = bh_config(ap->ctx, "fallback");
  if (v == NULL) return 0;
  if (!ap->can_fallback) {
    bh_log(ap->ctx, BH_LOG_ERROR,
           "fallback: this core cannot count "
           "fallbacks (ABI 1.3 needed)");
    return -ENOTSUP;
  }
  /* "ai_b, ai_c": names separated by commas and spaces */
  while (*v) {
    while (*v == ',' || *v == ' ' || *v == '\t')
      v++;
    size_t n = strcspn(v, ", \t");
    if (n == 0) break;
    char name[64];
    if (n >= sizeof(name)) {
      bh_log(ap->ctx, BH_LOG_ERROR, "fallback: a name is too long");
      return -EINVAL;
    }
    memcpy(name, v, n);
    name[n] = '\0';
    int rc = provider_load(ap, name);
    if (rc < 0) return rc;
    v += n;
  }
  return 0;
}

void ai_fallback_free(ai_plugin *ap) {
  for (size_t i = 0; i < ap->nprov; i++) {
    ai_provider *p = &ap->prov[i];
    if (p->key_header) explicit_bzero(p->key_header, strlen(p->key_header));
    if (p->api_key) explicit_bzero(p->api_key, strlen(p->api_key));
    free(p->key_header);
    free(p->api_key);
    free(p->name);
  }
  memset(ap->prov, 0, sizeof(ap->prov));
  ap->nprov = 0;
}

/* ---- one request's attempts --------------------------------------------- */

/* What another provider may not suffer (see the top of the file). */
static int retryable(const bh_upstream_result *res) {
  switch (res->outcome) {
  case BH_OUTCOME_RESPONSE: return res->status == 429 || res->status >= 500;
  case BH_OUTCOME_TRANSPORT:
  case BH_OUTCOME_BREAKER_OPEN:
  case BH_OUTCOME_RATE_LIMITED: return 1;
  default: return 0; /* canceled: the request was answered already */
  }
}

/* The Problem members of extensions ("extensions" or, with flat Problems,
 * the document itself). */
static json_t *problem_ext(json_t *doc) {
  json_t *ext = json_object_get(doc, "extensions");
  return json_is_object(ext) ? ext : doc;
}

/* Records the attempt of the provider in use that ended with `res`: the
 * code and Retry-After of the core's Problem for it, read back with
 * jansson (parsing only). */
static void attempt_add(ai_plugin *ap, bh_req *req, ai_tries *t,
                        const bh_upstream_result *res) {
  char buf[2048];
  int n = bh_problem_json(req, NULL, NULL, res, buf, sizeof(buf));
  json_t *doc = n > 0 && (size_t)n < sizeof(buf)
                    ? json_loadb(buf, (size_t)n, 0, NULL)
                    : NULL;
  json_t *ext = problem_ext(doc);
  const char *code = json_string_value(json_object_get(ext, "code"));
  json_t *ra = json_object_get(ext, "retryAfterSeconds");
  if (json_is_integer(ra) && json_integer_value(ra) >= 0 &&
      (t->retry_after < 0 || json_integer_value(ra) < t->retry_after))
    t->retry_after = (long)json_integer_value(ra);
  if (!t->started) {
    bh_json_init(&t->attempts, 0);
    bh_json_arr(&t->attempts);
    t->started = 1;
  }
  bh_json_obj(&t->attempts);
  bh_json_kstr(&t->attempts, "provider", ap->prov[t->idx].name);
  bh_json_kstr(&t->attempts, "code", code ? code : "generic.internal");
  bh_json_end(&t->attempts);
  if (t->idx == 0 && code) snprintf(t->primary, sizeof(t->primary), "%s", code);
  json_decref(doc);
}

int ai_tries_next(ai_plugin *ap, bh_req *req, ai_tries *t,
                  const bh_upstream_result *res) {
  if (!retryable(res) || t->idx + 1 >= ap->nprov) return 0;
  ai_provider_log(ap, &ap->prov[t->idx], req, res);
  attempt_add(ap, req, t, res);
  if (t->primary[0] == '\0') return 0; /* out of memory: answer as today */
  bh_upstream_fallback(req, ap->prov[t->idx].up, ap->prov[t->idx + 1].up);
  bh_log(ap->ctx, BH_LOG_INFO, "falling back from %s to %s (request %s)",
         ap->prov[t->idx].name, ap->prov[t->idx + 1].name, bh_req_id(req));
  t->idx++;
  return 1;
}

void ai_tries_fail(ai_plugin *ap, bh_req *req, ai_tries *t,
                   const bh_upstream_result *res) {
  if (t->idx == 0 || t->primary[0] == '\0' ||
      res->outcome == BH_OUTCOME_CANCELED) {
    ai_provider_failed(ap, req, res);
    return;
  }
  ai_provider_log(ap, &ap->prov[t->idx], req, res);
  attempt_add(ap, req, t, res);
  /* the primary's Problem (and so its code in the access log), with every
   * attempt and the shortest Retry-After, header and member alike */
  bh_json m;
  bh_json_init(&m, 0);
  bh_json_obj(&m);
  bh_json_end(&t->attempts); /* the array */
  size_t alen = 0;
  const char *attempts = bh_json_done(&t->attempts, &alen);
  if (attempts) {
    bh_json_key(&m, "attempts");
    bh_json_raw(&m, attempts, alen);
  }
  bh_json_end(&m);
  const char *members = attempts ? bh_json_done(&m, NULL) : NULL;
  if (members == NULL)
    bh_problem(req, "ai.unavailable", NULL);
  else
    bh_problem_with(req, t->primary, NULL, NULL, members, t->retry_after);
  bh_json_free(&m);
}

void ai_tries_free(ai_tries *t) {
  if (t->started) bh_json_free(&t->attempts);
  t->started = 0;
  t->primary[0] = '\0';
}

void ai_served_by(ai_plugin *ap, bh_req *req, const ai_tries *t) {
  bh_set_header(req, "X-Served-By", ap->prov[t->idx].name);
}
