/*
 * ai plugin internals, shared by its files:
 *
 *   ai.c        config, lifecycle, error map, routes, status routes
 *   ai_draft.c  POST /v1/ai/draft-reply: the Messages API call, buffered
 *               or relayed to the client as server-sent events
 *   ai_sse.c    an incremental parser for the provider's event stream
 */
#ifndef AI_H
#define AI_H

#include <bulkhead/plugin.h>
#include <stddef.h>

#define AI_VERSION "0.2.0"

typedef struct ai_config {
  char *api_key;       /* resolved; NULL: none */
  const char *model;   /* borrowed from bh_config() until fini() */
  const char *version; /* anthropic-version */
  long max_tokens;
} ai_config;

typedef struct ai_plugin {
  bh_ctx *ctx;
  ai_config cfg;
  bh_upstream *provider;
  char *key_header;     /* "x-api-key: ..." or NULL */
  char *version_header; /* "anthropic-version: ..." */
  int can_stream;       /* the core has the streaming slots (ABI 1.2) */
} ai_plugin;

/* ai.c */
ai_plugin *ai_get(bh_req *req);
/* Ends req with the error map's answer for a failed provider call, and
 * logs what ops must act on (our key refused, our request refused). */
void ai_provider_failed(ai_plugin *ap, bh_req *req,
                        const bh_upstream_result *res);

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
