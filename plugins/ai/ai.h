/*
 * ai plugin internals, shared by its files:
 *
 *   ai.c        config, lifecycle, error map, routes, status routes
 *   ai_draft.c  POST /v1/ai/draft-reply: the Messages API call, buffered
 *               or relayed to the client as server-sent events
 *   ai_fallback.c  the providers in order ([plugin.ai] fallback): which
 *               outcome goes on to the next, the attempts, the answer
 *               when every one failed
 *   ai_sse.c    an incremental parser for the provider's event stream
 */
#ifndef AI_H
#define AI_H

#include <bulkhead/plugin.h>
#include <jansson.h>
#include <stddef.h>

#define AI_VERSION "0.3.0"
#define AI_MAX_PROVIDERS 4 /* the primary and up to three fallbacks */

typedef struct ai_config {
  char *api_key;       /* the primary's, resolved; NULL: none */
  const char *model;   /* borrowed from bh_config() until fini() */
  const char *version; /* anthropic-version */
  long max_tokens;
  const char *token_budget; /* [rate_limit.NAME] unit = tokens, or NULL */
} ai_config;

/* One provider: [upstream.NAME] and its own key and model. */
typedef struct ai_provider {
  char *name; /* "ai" (the primary), "ai_<suffix>" */
  bh_upstream *up;
  char *api_key;     /* NULL: none */
  char *key_header;  /* "x-api-key: ..." or NULL */
  const char *model; /* borrowed from bh_config() until fini() */
} ai_provider;

typedef struct ai_plugin {
  bh_ctx *ctx;
  ai_config cfg;
  ai_provider prov[AI_MAX_PROVIDERS]; /* [0] is the primary */
  size_t nprov;
  char *version_header; /* "anthropic-version: ..." */
  int can_stream;       /* the core has the streaming slots (ABI 1.2) */
  int can_fallback;     /* fallback and budget slots (ABI 1.3) */
} ai_plugin;

/* The providers tried for one request, and what each answered. */
typedef struct ai_tries {
  size_t idx;       /* the provider in use */
  char primary[96]; /* the primary's code, once it failed; "" before */
  bh_json attempts; /* [{"provider", "code"}] of the failed ones (open) */
  int started;      /* attempts holds an open array */
  long retry_after; /* the shortest Retry-After among them, -1 none */
} ai_tries;

/* ai.c */
ai_plugin *ai_get(bh_req *req);
/* Logs what ops must act on in a failed call of provider p (our key
 * refused, our request refused). */
void ai_provider_log(ai_plugin *ap, const ai_provider *p, bh_req *req,
                     const bh_upstream_result *res);
/* Ends req with the error map's answer for a failed provider call, and
 * logs it as ai_provider_log(). */
void ai_provider_failed(ai_plugin *ap, bh_req *req,
                        const bh_upstream_result *res);
/* "x-api-key: KEY" for a resolved key, or NULL; -ENOMEM. */
int ai_key_header(const char *key, char **out);
/* A secret from a free key (its value, "@env:VAR", "@file:PATH"). */
int ai_secret_get(bh_ctx *ctx, const char *key, char **out);
int ai_name_ok(const char *s, size_t max);

/* ai_fallback.c */
/* [plugin.ai] fallback = NAME[, NAME...]: the providers after the
 * primary, each with its NAME.api_key and NAME.model. */
int ai_fallback_load(ai_plugin *ap);
void ai_fallback_free(ai_plugin *ap);
/* Records the failed outcome of the provider in use and says whether the
 * request goes on to the next one: 1 (t->idx moved on; the fallback is
 * counted), or 0 (answer now: ai_tries_fail()). */
int ai_tries_next(ai_plugin *ap, bh_req *req, ai_tries *t,
                  const bh_upstream_result *res);
/* Ends req after the last failure `res`: the error map's answer when only
 * the primary was tried, else the primary's Problem with every attempt
 * and the shortest Retry-After. */
void ai_tries_fail(ai_plugin *ap, bh_req *req, ai_tries *t,
                   const bh_upstream_result *res);
void ai_tries_free(ai_tries *t);
/* X-Served-By: the provider in use. */
void ai_served_by(ai_plugin *ap, bh_req *req, const ai_tries *t);

/* ai_draft.c */
void ai_draft_post(bh_req *req, void *data);

/* ai_sse.c: text/event-stream, fed as it arrives. */
typedef struct ai_sse {
  char *line; /* the current, unfinished line */
  size_t llen, lcap;
  char event[64]; /* the current event's name ("" = message) */
  char *data;     /* its data lines joined with '\n' */
  size_t dlen, dcap;
  int has_data;
  int after_cr; /* the last byte was CR: a LF right after it ends nothing */
} ai_sse;

/* Called once per complete event; `data` is NUL-terminated. A negative
 * return stops the feed and is returned by ai_sse_feed(). */
typedef int (*ai_sse_fn)(void *arg, const char *event, const char *data,
                         size_t len);

/* 0, the callback's negative return, -E2BIG for a line or event past the
 * limit, or -ENOMEM. */
int ai_sse_feed(ai_sse *p, const char *buf, size_t len, ai_sse_fn fn,
                void *arg);
void ai_sse_free(ai_sse *p);

#endif
