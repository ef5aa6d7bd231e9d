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
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"

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
static const bh_body_shape shape = {fields, BH_COUNT(fields), 0};

static const char system_prompt[] =
    "You write short, courteous public replies to customer reviews on "
    "behalf of a small business. Answer in the language of the review. "
    "Never invent facts, offers, refunds or promises. Output only the reply "
    "text, without a greeting line for the business itself.";

/* One draft in flight. */
typedef struct ai_call {
  ai_plugin *ap;
  bh_req *req;
  int started;           /* our event-stream head went out */
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
static int request_body(bh_json *j, const ai_plugin *ap, const char *review,
                        const char *tone, const char *business, int stream) {
  size_t n = strlen(review) + strlen(business) + 64;
  char *prompt = malloc(n);
  bh_json_init(j, 0);
  if (prompt == NULL) return -ENOMEM;
  snprintf(prompt, n, "Business: %s\nTone: %s\n\nReview:\n%s", business, tone,
           review);
  bh_json_obj(j);
  bh_json_kstr(j, "model", ap->cfg.model);
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

/* {"<key>": text} */
static void one_field(bh_json *j, const char *key, const char *text,
                      size_t len) {
  bh_json_init(j, 0);
  bh_json_obj(j);
  bh_json_kstrn(j, key, text, len);
  bh_json_end(j);
}

/* ---- buffered ----------------------------------------------------------- */

static void draft_done(bh_req *req, const bh_upstream_result *res, void *data) {
  ai_call *c = data;
  ai_plugin *ap = c->ap;
  call_free(c);
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status >= 300) {
    ai_provider_failed(ap, req, res);
    return;
  }
  /* the provider's answer is parsed with jansson: the SDK's getters read
   * request bodies, not upstream ones */
  json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
  json_t *content = json_object_get(doc, "content");
  bh_json out;
  int have = 0;
  if (json_is_array(content)) {
    /* the text blocks, in order, are the draft */
    size_t i, total = 0;
    json_t *b;
    json_array_foreach(content, i, b) {
      const char *t = json_string_value(json_object_get(b, "text"));
      const char *ty = json_string_value(json_object_get(b, "type"));
      if (t && ty && strcmp(ty, "text") == 0) total += strlen(t);
    }
    char *draft = malloc(total + 1);
    if (draft) {
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
      if (o) {
        one_field(&out, "draft", draft, o);
        have = 1;
      }
      free(draft);
    }
  }
  json_decref(doc);
  if (!have) {
    bh_log(ap->ctx, BH_LOG_WARN,
           "the AI provider's answer has no text "
           "(request %s)",
           bh_req_id(req));
    bh_problem(req, "ai.invalid_response", NULL);
    return;
  }
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

/* One event whose data is {"<key>": text}. */
static int emit_json(ai_call *c, const char *event, const char *key,
                     const char *text, size_t len) {
  bh_json j;
  one_field(&j, key, text, len);
  const char *s = bh_json_done(&j, NULL);
  int rc = s ? emit(c, event, s) : -1;
  bh_json_free(&j);
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
      rc = emit_json(c, "delta", "text", t, tl);
      if (rc < 0) c->gone = 1;
    }
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
  } /* message_start, ping, content_block_start/stop, message_delta */
  json_decref(doc);
  return rc;
}

static int on_chunk(bh_req *req, int status, const char *buf, size_t len,
                    void *data) {
  ai_call *c = data;
  (void)status;
  if (!c->started) {
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
    call_free(c);
    if (start_rc) /* ends req (or releases it when the client is gone) */
      bh_problem(req,
                 start_rc == -ENOMEM ? "generic.internal" : "ai.unavailable",
                 NULL);
    else if (res->outcome == BH_OUTCOME_RESPONSE && res->status < 300)
      bh_problem(req, "ai.invalid_response", NULL); /* an empty 2xx */
    else
      ai_provider_failed(ap, req, res);
    return;
  }
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
    emit_json(c, "done", "draft", c->text ? c->text : "", c->tlen);
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
  const char *accept = bh_req_header(req, "accept");
  int stream = ap->can_stream && accept && strstr(accept, "text/event-stream");
  ai_call *c = calloc(1, sizeof(*c));
  bh_json body;
  if (c == NULL || request_body(&body, ap, review, tone, business, stream)) {
    if (c) bh_json_free(&body);
    free(c);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  c->ap = ap;
  c->req = req;
  const char *headers[] = {"content-type: application/json", ap->version_header,
                           stream ? "accept: text/event-stream"
                                  : "accept: application/json",
                           ap->key_header, NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "POST",
                            .path = "/v1/messages",
                            .headers = headers,
                            .body = body.buf,
                            .body_len = body.len};
  int rc = stream ? bh_upstream_stream(req, ap->provider, &rq, on_chunk,
                                       stream_done, c)
                  : bh_upstream_call(req, ap->provider, &rq, draft_done, c);
  bh_json_free(&body); /* copied by the call */
  if (rc != 0) {
    call_free(c);
    bh_problem(req, rc == -EINVAL ? "generic.internal" : "ai.unavailable",
               NULL);
  }
}
