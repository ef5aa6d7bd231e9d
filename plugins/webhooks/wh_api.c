/*
 * The HTTP API, on the loop thread: each handler checks its input (the
 * core checks the JSON shape, these checks are what a shape cannot say),
 * turns the request into a job for the store thread, and returns. The
 * answer goes out when the job comes back (wh_api_job_done, called by the
 * store's job queue on the loop), or at once when the input is refused.
 *
 * Ownership: every endpoint, event and delivery belongs to one owner, the
 * user id of the principal (the SDK's principal names a user, no tenant).
 * Each job carries the caller's owner and every query is scoped to it, so
 * another owner's id answers 404 exactly as an id that never existed.
 * Events fan out to the owner's own endpoints only. A caller holding the
 * scope webhooks:publish (a back-end service) may name another owner in
 * the event's "owner" field and publish to that owner's endpoints; anyone
 * else naming an owner not their own gets 403 auth.forbidden (whatever the
 * owner: no oracle either).
 *
 * Errors, all through the plugin's error map: webhooks.unavailable (503,
 * the store failed or is overloaded), webhooks.endpoint_not_found and
 * webhooks.delivery_not_found (404), webhooks.invalid_url (400, naming the
 * field, one generic detail whatever the cause, which is logged),
 * webhooks.invalid_event_type (400), webhooks.invalid_query (400).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh.h"

#define WH_TYPE_MAX 128
#define WH_OWNER_MAX 255
#define WH_PUBLISH_SCOPE "webhooks:publish"
#define WH_PAGE_DEFAULT 20
#define WH_PAGE_MAX 100

/* ---- shapes ------------------------------------------------------------- */

static const bh_field ep_create_fields[] = {
    {.name = "url",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 2048},
    {.name = "events",
     .type = BH_FIELD_STRING_ARRAY,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 100},
    {.name = "description",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_NULLABLE,
     .min = 0,
     .max = 512},
};
static const bh_body_shape ep_create_shape = {ep_create_fields, 3, 0};

static const bh_field ep_patch_fields[] = {
    {.name = "url", .type = BH_FIELD_STRING, .min = 1, .max = 2048},
    {.name = "events", .type = BH_FIELD_STRING_ARRAY, .min = 1, .max = 100},
    {.name = "description", .type = BH_FIELD_STRING, .min = 0, .max = 512},
    {.name = "enabled", .type = BH_FIELD_BOOL},
};
static const bh_body_shape ep_patch_shape = {ep_patch_fields, 4, 0};

static const bh_field event_fields[] = {
    {.name = "type",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = WH_TYPE_MAX},
    {.name = "data", .type = BH_FIELD_OBJECT, .flags = BH_FIELD_REQUIRED},
    {.name = "idempotencyKey",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_NULLABLE,
     .min = 1,
     .max = 255},
    /* the owner to publish for: only with WH_PUBLISH_SCOPE, unless it is
     * the caller's own user id */
    {.name = "owner",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_NULLABLE,
     .min = 1,
     .max = WH_OWNER_MAX},
};
static const bh_body_shape event_shape = {event_fields, 4, 0};

/* ---- helpers ------------------------------------------------------------ */

static int type_ok(const char *t, int star_ok) {
  if (star_ok && strcmp(t, "*") == 0) return 1;
  size_t n = strlen(t);
  if (n == 0 || n > WH_TYPE_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || !strchr("._:-", c))) return 0;
  }
  return 1;
}

/* The caller's user id, the owner of what it creates and sees; NULL after
 * answering when the principal names no user. */
static const char *caller(bh_req *req) {
  const bh_principal *p = bh_req_principal(req);
  if (p == NULL || p->user_id == NULL || p->user_id[0] == '\0') {
    bh_problem(req, "auth.unauthenticated", NULL);
    return NULL;
  }
  return p->user_id;
}

/* `scopes` (space-separated) holds `want` as a whole word. */
static int has_scope(const char *scopes, const char *want) {
  size_t n = strlen(want);
  for (const char *p = scopes; p && *p;) {
    while (*p == ' ')
      p++;
    size_t len = strcspn(p, " ");
    if (len == n && memcmp(p, want, n) == 0) return 1;
    p += len;
  }
  return 0;
}

/* A job for the caller, scoped to its owner; NULL after answering. */
static wh_job *job_for(bh_req *req, wh_plugin *wp, wh_op op) {
  const char *owner = caller(req);
  if (owner == NULL) return NULL;
  wh_job *j = wh_job_new(op, req, &wp->cfg);
  if (j && (j->owner = strdup(owner)) == NULL) {
    wh_job_free(j);
    j = NULL;
  }
  if (j == NULL) bh_problem(req, "generic.internal", NULL);
  return j;
}

/* Ends req with the store's verdict on its way back; the job is the
 * request's until then. */
static void submit(bh_req *req, wh_plugin *wp, wh_job *j) {
  if (j == NULL) return; /* answered by job_for */
  if (wh_store_submit(&wp->store, j) != 0) {
    wh_job_free(j);
    bh_problem(req, "webhooks.unavailable", NULL);
  }
}

static void answer(wh_job *j) {
  bh_req *req = j->req;
  if (j->code) {
    bh_problem(req, j->code, NULL);
    return;
  }
  if (j->replayed) bh_set_header(req, "Idempotent-Replayed", "true");
  bh_respond(req, j->status, NULL, j->body, strlen(j->body));
}

void wh_api_job_done(wh_plugin *wp, wh_job *j) {
  if (j->op == WH_OP_STREAM_POLL || j->op == WH_OP_STREAM_PRUNE) {
    wh_streams_job_done(wp, j); /* it frees the job */
    return;
  }
  answer(j);
  wh_job_free(j);
}

/* The {id} of the route, or NULL after answering not_found: an id this
 * plugin could never have made names nothing. */
static const char *route_id(bh_req *req, const char *not_found) {
  const char *id = bh_req_param(req, "id");
  if (!wh_id_ok(id)) {
    bh_problem(req, not_found, NULL);
    return NULL;
  }
  return id;
}

/* Copies events[] into the job, deduplicated; 0, or -EINVAL after
 * answering, -ENOMEM. */
static int take_events(bh_req *req, wh_job *j) {
  size_t n = 0;
  while (bh_body_string_at(req, "events", n))
    n++;
  j->events = calloc(n ? n : 1, sizeof(char *));
  if (j->events == NULL) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *t = bh_body_string_at(req, "events", i);
    if (!type_ok(t, 1)) {
      bh_problem_field(req, "webhooks.invalid_event_type", NULL, "events");
      return -EINVAL;
    }
    int dup = 0;
    for (size_t k = 0; k < j->nevents && !dup; k++)
      dup = strcmp(j->events[k], t) == 0;
    if (dup) continue;
    if ((j->events[j->nevents] = strdup(t)) == NULL) return -ENOMEM;
    j->nevents++;
  }
  return 0;
}

/* Checks a URL from the body; 0, or -EINVAL after answering. The caller
 * gets the one generic detail; the log names the cause (never the URL:
 * its path or query may hold a token of the receiver's). */
static int url_ok(bh_req *req, wh_plugin *wp, const char *url) {
  const char *why;
  if (wh_url_check(&wp->cfg, url, &why) == 0) return 0;
  bh_log(wp->ctx, BH_LOG_WARN, "webhook endpoint URL refused (request %s): %s",
         bh_req_id(req), why);
  bh_problem_field(req, "webhooks.invalid_url", NULL, "url");
  return -EINVAL;
}

static char *dup_or_null(const char *s, int *oom) {
  if (s == NULL) return NULL;
  char *d = strdup(s);
  if (d == NULL) *oom = 1;
  return d;
}

/* ---- endpoints ---------------------------------------------------------- */

void wh_endpoints_post(bh_req *req, void *data) {
  wh_plugin *wp = data;
  if (bh_body_parse(req, &ep_create_shape) < 0) return;
  const char *url = bh_body_string(req, "url");
  if (url_ok(req, wp, url) < 0) return;
  wh_job *j = job_for(req, wp, WH_OP_EP_CREATE);
  if (j == NULL) return;
  int rc = take_events(req, j), oom = 0;
  if (rc == -EINVAL) {
    wh_job_free(j);
    return;
  }
  j->url = dup_or_null(url, &oom);
  j->description = dup_or_null(bh_body_string(req, "description"), &oom);
  if (rc || oom) {
    wh_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  submit(req, wp, j);
}

void wh_endpoint_patch(bh_req *req, void *data) {
  wh_plugin *wp = data;
  const char *id = route_id(req, "webhooks.endpoint_not_found");
  if (id == NULL) return;
  if (bh_body_parse(req, &ep_patch_shape) < 0) return;
  const char *url = bh_body_string(req, "url");
  if (url && url_ok(req, wp, url) < 0) return;
  wh_job *j = job_for(req, wp, WH_OP_EP_PATCH);
  if (j == NULL) return;
  snprintf(j->id, sizeof(j->id), "%s", id);
  int rc = 0, oom = 0;
  if (bh_body_string_at(req, "events", 0)) {
    j->set_events = 1;
    if ((rc = take_events(req, j)) == -EINVAL) {
      wh_job_free(j);
      return;
    }
  }
  j->set_url = url != NULL;
  j->url = dup_or_null(url, &oom);
  const char *desc = bh_body_string(req, "description");
  j->set_description = desc != NULL;
  j->description = dup_or_null(desc, &oom);
  j->set_enabled = bh_body_bool(req, "enabled", &j->enabled) == 0;
  if (rc || oom) {
    wh_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  submit(req, wp, j);
}

static void by_id(bh_req *req, wh_plugin *wp, wh_op op, const char *nf) {
  const char *id = route_id(req, nf);
  if (id == NULL) return;
  wh_job *j = job_for(req, wp, op);
  if (j) snprintf(j->id, sizeof(j->id), "%s", id);
  submit(req, wp, j);
}

void wh_endpoint_get(bh_req *req, void *data) {
  by_id(req, data, WH_OP_EP_GET, "webhooks.endpoint_not_found");
}

void wh_endpoint_delete(bh_req *req, void *data) {
  by_id(req, data, WH_OP_EP_DELETE, "webhooks.endpoint_not_found");
}

void wh_endpoint_rotate(bh_req *req, void *data) {
  by_id(req, data, WH_OP_EP_ROTATE, "webhooks.endpoint_not_found");
}

void wh_delivery_get(bh_req *req, void *data) {
  by_id(req, data, WH_OP_DLV_GET, "webhooks.delivery_not_found");
}

void wh_delivery_retry(bh_req *req, void *data) {
  by_id(req, data, WH_OP_DLV_RETRY, "webhooks.delivery_not_found");
}

/* ---- lists -------------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes a query value (%XX, '+') into out; -1 when it does not fit. */
static int qdecode(const char *s, size_t n, char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '+')
      c = ' ';
    else if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
             hexval(s[i + 2]) >= 0) {
      c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    }
    if (o + 1 >= outlen || c == '\0') return -1;
    out[o++] = c;
  }
  out[o] = '\0';
  return 0;
}

static int parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi) return -1;
  *out = n;
  return 0;
}

/* limit, cursor, and for deliveries status and endpoint; for the stream
 * (deliveries == 2) status, endpoint and lastEventId (what EventSource
 * cannot send as a header on its first request) but no paging. 0, or
 * -EINVAL after answering webhooks.invalid_query naming the parameter. */
static int parse_query(bh_req *req, wh_job *j, int deliveries) {
  static const char *const states[] = {"pending", "succeeded", "failed", NULL};
  const char *q = bh_req_query(req);
  j->limit = WH_PAGE_DEFAULT;
  while (q && *q) {
    size_t len = strcspn(q, "&");
    const char *eq = memchr(q, '=', len);
    size_t klen = eq ? (size_t)(eq - q) : len;
    char key[16], val[WH_ID_MAX];
    const char *bad = NULL;
    if (klen < sizeof(key) && qdecode(q, klen, key, sizeof(key)) == 0) {
      int ok = eq && qdecode(eq + 1, len - klen - 1, val, sizeof(val)) == 0;
      if (deliveries == 2 && strcmp(key, "lastEventId") == 0) {
        if (!ok || parse_int(val, 0, INT64_MAX, &j->cursor))
          bad = "lastEventId";
      } else if (deliveries == 2 &&
                 (strcmp(key, "limit") == 0 || strcmp(key, "cursor") == 0)) {
        /* a stream has no pages */
      } else if (strcmp(key, "limit") == 0) {
        if (!ok || parse_int(val, 1, WH_PAGE_MAX, &j->limit)) bad = "limit";
      } else if (strcmp(key, "cursor") == 0) {
        if (!ok || parse_int(val, 1, INT64_MAX, &j->cursor)) bad = "cursor";
      } else if (deliveries && strcmp(key, "status") == 0) {
        int known = 0;
        for (size_t i = 0; ok && states[i]; i++)
          known |= strcmp(val, states[i]) == 0;
        if (known && strlen(val) < sizeof(j->status_filter))
          memcpy(j->status_filter, val, strlen(val) + 1);
        else
          bad = "status";
      } else if (deliveries && strcmp(key, "endpoint") == 0) {
        if (ok && wh_id_ok(val))
          snprintf(j->endpoint_filter, sizeof(j->endpoint_filter), "%s", val);
        else
          bad = "endpoint";
      }
    }
    if (bad) {
      char detail[160];
      snprintf(detail, sizeof(detail),
               "The query parameter '%s' is not valid%s.", bad,
               strcmp(bad, "limit") == 0    ? " (1 to 100)"
               : strcmp(bad, "status") == 0 ? " (pending, succeeded or failed)"
                                            : "");
      bh_problem_field(req, "webhooks.invalid_query", detail, bad);
      return -EINVAL;
    }
    q += len;
    if (*q == '&') q++;
  }
  return 0;
}

int wh_api_stream_query(bh_req *req, wh_job *j) {
  return parse_query(req, j, 2);
}

wh_job *wh_api_job(bh_req *req, wh_plugin *wp, wh_op op) {
  return job_for(req, wp, op);
}

static void list(bh_req *req, wh_plugin *wp, wh_op op, int deliveries) {
  wh_job *j = job_for(req, wp, op);
  if (j && parse_query(req, j, deliveries) < 0) {
    wh_job_free(j);
    return;
  }
  submit(req, wp, j);
}

void wh_endpoints_list(bh_req *req, void *data) {
  list(req, data, WH_OP_EP_LIST, 0);
}

void wh_deliveries_list(bh_req *req, void *data) {
  list(req, data, WH_OP_DLV_LIST, 1);
}

/* ---- events ------------------------------------------------------------- */

void wh_events_post(bh_req *req, void *data) {
  wh_plugin *wp = data;
  if (bh_body_parse(req, &event_shape) < 0) return;
  const char *type = bh_body_string(req, "type");
  if (!type_ok(type, 0)) {
    bh_problem_field(req, "webhooks.invalid_event_type", NULL, "type");
    return;
  }
  /* the owner published for: the caller's own, or with the publish scope
   * any owner named */
  const char *self = caller(req);
  if (self == NULL) return;
  const char *named = bh_body_string(req, "owner");
  if (named && strcmp(named, self) != 0 &&
      !has_scope(bh_req_principal(req)->scopes, WH_PUBLISH_SCOPE)) {
    bh_problem(req, "auth.forbidden",
               "Publishing events for another owner needs the "
               "webhooks:publish scope.");
    return;
  }
  const char *payload = bh_body_json(req, "data");
  wh_job *j = wh_job_new(WH_OP_EVENT_CREATE, req, &wp->cfg);
  int oom = j == NULL || payload == NULL;
  if (j) {
    j->owner = dup_or_null(named ? named : self, &oom);
    j->type = dup_or_null(type, &oom);
    j->data = dup_or_null(payload, &oom);
    j->idem_key = dup_or_null(bh_body_string(req, "idempotencyKey"), &oom);
  }
  if (oom) {
    wh_job_free(j);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  submit(req, wp, j);
}
