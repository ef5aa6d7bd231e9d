/*
 * POST /v1/ai/draft-reply {"review", "tone", "businessName"} -> {"draft"}.
 *
 * One Messages API call per request. Buffered by default; with
 * "Accept: text/event-stream" the draft is relayed as the provider writes
 * it, as server-sent events of our own:
 *
 *   event: delta   data: {"text": "..."}        a piece of the draft
 *   event: done    data: {"draft": "..."}       the whole draft; the end
 *   event: error   data: <Problem JSON>         the end, on a failure
 *
 * Until the provider's first byte of a 2xx answer nothing is committed, so
 * a failure before it gets an ordinary Problem with its HTTP status (and a
 * retry where the core may). After it the status line has gone: a failure
 * (a reset, the timeout, the provider's own in-stream "error" event) ends
 * the stream with "event: error" carrying the same Problem JSON the
 * buffered request would have been answered with.
 *
 * A failure before anything went to the client may go on to the next
 * provider (ai_fallback.c); the answer names the one that served it
 * (X-Served-By, "provider" in the JSON and the "done" event). With a token
 * budget, a spent one refuses the draft before any provider is called, and
 * the provider's reported usage (input + output tokens; a stream's from its
 * message_start and final message_delta) is charged afterwards.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define AI_DRAFT_MAX (64 * 1024) /* text kept for the final "done" event */

static const char *const tones[] = {"friendly", "formal", NULL};
static const bh_field fields[] = {
    {.name = "review",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 4000},
    {.name = "tone", .type = BH_FIELD_STRING, .one_of = tones},
    {.name = "businessName",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 120},
};
static const bh_body_shape shape = {fields, COUNT(fields), 0};

static const char system_prompt[] =
    "You write short, courteous public replies to customer reviews on "
    "behalf of a small business. Answer in the language of the review. "
    "Never invent facts, offers, refunds or promises. Output only the reply "
    "text, without a greeting line for the business itself.";

/* One draft in flight. */
typedef struct ai_call {
  ai_plugin *ap;
  bh_req *req;
  const char *review, *tone, *business; /* borrowed from the request body */
  int stream;
  ai_tries tries;
  long long in_tokens, out_tokens; /* the provider's reported usage */
  int started;                     /* our event-stream head went out */
  int start_rc;          /* stream_start()'s refusal, answered at the end */
  int finished;          /* the provider's message_stop arrived */
  int gone;              /* the client left: the upstream was stopped */
  const char *fail_code; /* the provider's in-stream error, mapped */
  int broken;            /* the provider's stream could not be read */
  ai_sse sse;
  char *text;
  size_t tlen, tcap;
} ai_call;

static void call_free(ai_call *c) {
  ai_tries_free(&c->tries);
  ai_sse_free(&c->sse);
  free(c->text);
  free(c);
}

/* Printable text: no control bytes but (where allowed) tab and line ends,
 * and something besides white space. */
static int text_ok(const char *s, int multiline) {
  int seen = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\t' || (multiline && (c == '\n' || c == '\r'))) continue;
    if (c < 0x20 || c == 0x7f) return 0;
    if (c != ' ') seen = 1;
  }
  return seen;
}

/* The Messages API request into j: 0, or the writer's error. */
static int request_body(bh_json *j, const ai_plugin *ap, const char *model,
                        const char *review, const char *tone,
                        const char *business, int stream) {
  size_t n = strlen(review) + strlen(business) + 64;
  char *prompt = malloc(n);
  bh_json_init(j, 0);
  if (prompt == NULL) return -ENOMEM;
  snprintf(prompt, n, "Business: %s\nTone: %s\n\nReview:\n%s", business, tone,
           review);
  bh_json_obj(j);
  bh_json_kstr(j, "model", model);
  bh_json_kint(j, "max_tokens", ap->cfg.max_tokens);
  bh_json_kstr(j, "system", system_prompt);
  bh_json_karr(j, "messages");
  bh_json_obj(j);
  bh_json_kstr(j, "role", "user");
  bh_json_kstr(j, "content", prompt);
  bh_json_end(j);
  bh_json_end(j);
  if (stream) bh_json_kbool(j, "stream", 1);
  bh_json_end(j);
  free(prompt);
  return bh_json_done(j, NULL) ? 0 : bh_json_error(j);
}

/* {"draft": text, "provider": name}: the answer, buffered or streamed. */
static void draft_json(bh_json *j, const char *text, size_t len,
                       const char *provider) {
  bh_json_init(j, 0);
  bh_json_obj(j);
  bh_json_kstrn(j, "draft", text, len);
  bh_json_kstr(j, "provider", provider);
  bh_json_end(j);
}

/* ---- buffered ----------------------------------------------------------- */

static int call_start(ai_call *c);

/* The token budget's charge: input and output tokens as the provider
 * reported them. */
static void charge(ai_call *c) {
  ai_plugin *ap = c->ap;
  long long n = c->in_tokens + c->out_tokens;
  if (ap->cfg.token_budget && n > 0)
    bh_budget_charge(c->req, ap->cfg.token_budget, (uint64_t)n, 0, NULL);
}

static long long usage_of(json_t *usage, const char *key) {
  json_t *v = json_object_get(usage, key);
  return json_is_integer(v) && json_integer_value(v) > 0
             ? (long long)json_integer_value(v)
             : 0;
}

/* The provider's failure before anything went to the client: the next
 * provider, or the answer. Frees c. */
static void call_failed(ai_call *c, const bh_upstream_result *res) {
  ai_plugin *ap = c->ap;
  bh_req *req = c->req;
  if (ai_tries_next(ap, req, &c->tries, res)) {
    if (call_start(c) == 0) return;
    call_free(c);
    bh_problem(req, "ai.unavailable", NULL);
    return;
  }
  ai_tries_fail(ap, req, &c->tries, res);
  call_free(c);
}

/* The text blocks, in order, are the draft; NULL when there is none. */
static char *draft_text(json_t *content) {
  if (!json_is_array(content)) return NULL;
  size_t i, total = 0;
  json_t *b;
  json_array_foreach(content, i, b) {
    const char *t = json_string_value(json_object_get(b, "text"));
    const char *ty = json_string_value(json_object_get(b, "type"));
    if (t && ty && strcmp(ty, "text") == 0) total += strlen(t);
  }
  char *draft = malloc(total + 1);
  if (draft == NULL) return NULL;
  size_t o = 0;
  json_array_foreach(content, i, b) {
    const char *t = json_string_value(json_object_get(b, "text"));
    const char *ty = json_string_value(json_object_get(b, "type"));
    if (t && ty && strcmp(ty, "text") == 0) {
      memcpy(draft + o, t, strlen(t));
      o += strlen(t);
    }
  }
  draft[o] = '\0';
  if (o == 0) {
    free(draft);
    return NULL;
  }
  return draft;
}

static void draft_done(bh_req *req, const bh_upstream_result *res, void *data) {
  ai_call *c = data;
  ai_plugin *ap = c->ap;
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status >= 300) {
    call_failed(c, res);
    return;
  }
  json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
  json_t *usage = json_object_get(doc, "usage");
  c->in_tokens = usage_of(usage, "input_tokens");
  c->out_tokens = usage_of(usage, "output_tokens");
  charge(c);
  const char *served = ap->prov[c->tries.idx].name;
  char *draft = draft_text(json_object_get(doc, "content"));
  json_decref(doc);
  bh_json out;
  if (draft) draft_json(&out, draft, strlen(draft), served);
  free(draft);
  if (draft == NULL) {
    bh_log(ap->ctx, BH_LOG_WARN,
           "the AI provider %s's answer has no text (request %s)", served,
           bh_req_id(req));
    call_free(c);
    bh_problem(req, "ai.invalid_response", NULL);
    return;
  }
  ai_served_by(ap, req, &c->tries);
  call_free(c);
  bh_respond_json(req, 200, &out);
}

/* ---- streamed ----------------------------------------------------------- */

/* One event of ours; 0, or -1 when the client is gone. */
static int emit(ai_call *c, const char *event, const char *data) {
  size_t el = strlen(event), dl = strlen(data), cap = el + dl + 32;
  char *buf = malloc(cap);
  if (buf == NULL) return -1;
  int n = snprintf(buf, cap, "event: %s\ndata: %s\n\n", event, data);
  long rc = bh_stream_write(c->req, buf, (size_t)n);
  free(buf);
  return rc < 0 ? -1 : 0;
}

/* One event whose data is what j holds; frees j. */
static int emit_json(ai_call *c, const char *event, bh_json *j) {
  const char *s = bh_json_done(j, NULL);
  int rc = s ? emit(c, event, s) : -1;
  bh_json_free(j);
  return rc;
}

/* The end of the stream on a failure: the Problem the buffered request
 * would have had. */
static void emit_problem(ai_call *c, const char *code,
                         const bh_upstream_result *res) {
  char buf[2048];
  int n = bh_problem_json(c->req, code, NULL, res, buf, sizeof(buf));
  if (n > 0 && (size_t)n < sizeof(buf)) emit(c, "error", buf);
}

static const char *in_stream_code(const char *type) {
  if (type && strcmp(type, "rate_limit_error") == 0) return "ai.rate_limited";
  return "ai.unavailable"; /* overloaded_error, api_error, anything else */
}

/* One event of the provider's stream. */
static int on_event(void *arg, const char *event, const char *data,
                    size_t len) {
  ai_call *c = arg;
  json_t *doc = json_loadb(data, len, 0, NULL);
  const char *type = json_string_value(json_object_get(doc, "type"));
  if (type == NULL) type = event;
  int rc = 0;
  if (strcmp(type, "content_block_delta") == 0) {
    json_t *d = json_object_get(doc, "delta");
    const char *t = json_string_value(json_object_get(d, "text"));
    if (t && *t) {
      size_t tl = strlen(t);
      if (c->tlen + tl < AI_DRAFT_MAX) {
        if (c->tlen + tl + 1 > c->tcap) {
          size_t cap = c->tcap ? c->tcap : 1024;
          while (cap < c->tlen + tl + 1)
            cap *= 2;
          char *p = realloc(c->text, cap);
          if (p) c->text = p, c->tcap = cap;
        }
        if (c->tlen + tl + 1 <= c->tcap) {
          memcpy(c->text + c->tlen, t, tl + 1);
          c->tlen += tl;
        }
      }
      bh_json j;
      bh_json_init(&j, 0);
      bh_json_obj(&j);
      bh_json_kstrn(&j, "text", t, tl);
      bh_json_end(&j);
      rc = emit_json(c, "delta", &j);
      if (rc < 0) c->gone = 1;
    }
  } else if (strcmp(type, "message_start") == 0) {
    json_t *u = json_object_get(json_object_get(doc, "message"), "usage");
    c->in_tokens = usage_of(u, "input_tokens");
    c->out_tokens = usage_of(u, "output_tokens");
  } else if (strcmp(type, "message_delta") == 0) {
    /* the final usage: output so far (cumulative), input when restated */
    json_t *u = json_object_get(doc, "usage");
    if (usage_of(u, "input_tokens")) c->in_tokens = usage_of(u, "input_tokens");
    if (usage_of(u, "output_tokens"))
      c->out_tokens = usage_of(u, "output_tokens");
  } else if (strcmp(type, "message_stop") == 0) {
    c->finished = 1;
  } else if (strcmp(type, "error") == 0) {
    const char *et = json_string_value(
        json_object_get(json_object_get(doc, "error"), "type"));
    c->fail_code = in_stream_code(et);
    bh_log(c->ap->ctx, BH_LOG_WARN,
           "the AI provider failed mid-stream "
           "(%.60s, request %s)",
           et ? et : "-", bh_req_id(c->req));
  } /* ping, content_block_start/stop */
  json_decref(doc);
  return rc;
}

static int on_chunk(bh_req *req, int status, const char *buf, size_t len,
                    void *data) {
  ai_call *c = data;
  (void)status;
  if (!c->started) {
    ai_served_by(c->ap, req, &c->tries);
    bh_set_header(req, "Cache-Control", "no-cache");
    bh_set_header(req, "X-Accel-Buffering", "no"); /* proxies: do not hold */
    int rc = bh_stream_start(req, 200, "text/event-stream; charset=utf-8");
    if (rc != 0) {
      c->start_rc = rc; /* nobody to stream to: stop paying for tokens */
      return -1;
    }
    c->started = 1;
  }
  int rc = ai_sse_feed(&c->sse, buf, len, on_event, c);
  if (rc < 0 && !c->gone) c->broken = 1;
  return rc < 0 ? -1 : 0;
}

static void stream_done(bh_req *req, const bh_upstream_result *res,
                        void *data) {
  ai_call *c = data;
  ai_plugin *ap = c->ap;
  if (!c->started) {
    int start_rc = c->start_rc;
    if (start_rc) { /* ends req (or releases it when the client is gone) */
      call_free(c);
      bh_problem(req,
                 start_rc == -ENOMEM ? "generic.internal" : "ai.unavailable",
                 NULL);
    } else if (res->outcome == BH_OUTCOME_RESPONSE && res->status < 300) {
      call_free(c);
      bh_problem(req, "ai.invalid_response", NULL); /* an empty 2xx */
    } else {
      call_failed(c, res); /* nothing sent yet: the next provider may */
    }
    return;
  }
  /* tokens spent are charged however the stream ended */
  charge(c);
  if (c->gone) {
    bh_stream_end(req, 1);
  } else if (c->broken) {
    bh_log(ap->ctx, BH_LOG_WARN,
           "the AI provider's event stream could not "
           "be read (request %s)",
           bh_req_id(req));
    emit_problem(c, "ai.invalid_response", NULL);
    bh_stream_end(req, 0);
  } else if (c->fail_code) {
    emit_problem(c, c->fail_code, NULL);
    bh_stream_end(req, 0);
  } else if (res->outcome == BH_OUTCOME_CANCELED) {
    bh_stream_end(req, 1); /* shutting down: nobody to tell */
  } else if (res->outcome == BH_OUTCOME_RESPONSE && c->finished) {
    bh_json j;
    draft_json(&j, c->text ? c->text : "", c->text ? c->tlen : 0,
               ap->prov[c->tries.idx].name);
    emit_json(c, "done", &j);
    bh_stream_end(req, 0);
  } else if (res->outcome == BH_OUTCOME_RESPONSE) {
    bh_log(ap->ctx, BH_LOG_WARN,
           "the AI provider ended its stream without "
           "message_stop (request %s)",
           bh_req_id(req));
    emit_problem(c, "ai.unavailable", NULL);
    bh_stream_end(req, 0);
  } else {
    /* a reset or the timeout after the first byte: the error map's code,
     * as a buffered request would have had it */
    emit_problem(c, NULL, res);
    bh_stream_end(req, 0);
  }
  call_free(c);
}

/* ---- the handler -------------------------------------------------------- */

/* Calls the provider in use (c->tries.idx). 0, or a negative errno with
 * nothing started. */
static int call_start(ai_call *c) {
  ai_plugin *ap = c->ap;
  const ai_provider *p = &ap->prov[c->tries.idx];
  bh_json body;
  int brc = request_body(&body, ap, p->model, c->review, c->tone, c->business,
                         c->stream);
  if (brc) {
    bh_json_free(&body);
    return brc < 0 ? brc : -ENOMEM;
  }
  const char *headers[] = {"content-type: application/json", ap->version_header,
                           c->stream ? "accept: text/event-stream"
                                     : "accept: application/json",
                           p->key_header, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "POST",
                            .path = "/v1/messages",
                            .headers = headers,
                            .body = body.buf,
                            .body_len = body.len};
  int rc = c->stream ? bh_upstream_stream(c->req, p->up, &rq, on_chunk,
                                          stream_done, c)
                     : bh_upstream_call(c->req, p->up, &rq, draft_done, c);
  bh_json_free(&body); /* copied by the call */
  return rc;
}

/* The token budget, before anything is spent: 0 go on, or -1 answered. */
static int budget_ok(ai_plugin *ap, bh_req *req) {
  if (ap->cfg.token_budget == NULL) return 0;
  long ra = -1;
  int rc =
      bh_budget_charge(req, ap->cfg.token_budget, 0, BH_BUDGET_HEADERS, &ra);
  if (rc != -EAGAIN) return 0; /* a failure to count fails open */
  bh_problem_retry(req, "ai.token_budget_exceeded", NULL, ra);
  return -1;
}

void ai_draft_post(bh_req *req, void *data) {
  (void)data;
  ai_plugin *ap = ai_get(req);
  if (bh_body_parse(req, &shape) < 0) return;
  const char *review = bh_body_string(req, "review");
  const char *business = bh_body_string(req, "businessName");
  const char *tone = bh_body_string(req, "tone");
  if (tone == NULL) tone = "friendly";
  if (!text_ok(review, 1)) {
    bh_problem_field(req, "ai.invalid_field", NULL, "review");
    return;
  }
  if (!text_ok(business, 0)) {
    bh_problem_field(req, "ai.invalid_field", NULL, "businessName");
    return;
  }
  if (budget_ok(ap, req) < 0) return;
  const char *accept = bh_req_header(req, "accept");
  ai_call *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  c->ap = ap;
  c->req = req;
  c->review = review;
  c->tone = tone;
  c->business = business;
  c->stream = ap->can_stream && accept && strstr(accept, "text/event-stream");
  c->tries.retry_after = -1;
  int rc = call_start(c);
  if (rc != 0) {
    call_free(c);
    bh_problem(req, rc == -EINVAL ? "generic.internal" : "ai.unavailable",
               NULL);
  }
}
