/*
 * Serving a composite route. Each section is a request of its own with no
 * connection (bh__sink): built from the caller's request (its headers, so
 * its credentials and address), it takes the API's normal path
 * (dispatch.c: routing, plugin state, the session step, the rate limit,
 * the handler under its route's deadline) and its answer, written by the
 * one encoder, comes back here instead of going to a socket. All sections
 * start at once on this worker's loop; the answer leaves as soon as every
 * section has answered or run out of time.
 *
 * The session check runs once for the whole composite, on a probe request
 * that carries the caller's credentials: a silent refresh happens at most
 * once, its cookies go out once on the composite's answer, and no section
 * ever sees another's Set-Cookie (a section's own header lines are never
 * relayed). Sections on an auth-required route are let in as the probe
 * was, or get the probe's refusal in their slot.
 *
 * Deadlines: every section has the composite's timeout_ms (a section not
 * done by then gets generic.timeout in its slot, its upstream calls are
 * cancelled), and the route's own deadline when that is shorter
 * ("<plugin>.timeout", as on the normal path). One timer per composite,
 * armed for the earliest of them.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/composite.h"
#include "gateway/dispatch.h"
#include "http/http.h"
#include "identity/auth.h"
#include "proc/daemon-t.h"
#include "upstream/upstream.h"

enum { BH__PROBE_NONE = 0, BH__PROBE_PENDING, BH__PROBE_OK, BH__PROBE_DENIED };

struct bh__cmp;

typedef struct bh__csec {
  struct bh__cmp *m;
  const bh__csec_def *def;
  bh_req *req;
  int done;
  int status;
  const char *code; /* a catalogue string (static) */
  int problem;      /* its slot holds "problem" rather than "body" */
  char *json;       /* the JSON value its slot carries */
  char *core;       /* the core's header lines of its answer */
  uint64_t due;     /* loop ms of its route deadline; 0: none before end */
} bh__csec;

typedef struct bh__cmp {
  bh_req *parent;
  const bh__cdef *def;
  uv_timer_t timer;
  uint64_t end; /* loop ms: every section's deadline */
  size_t ndone;
  int busy; /* inside a loop over the sections: finishing waits */
  int finished;
  bh_req *probe;
  int probe_state;
  int refreshed; /* the probe's check refreshed the session */
  int deny_status;
  const char *deny_code;
  char *deny_ctype, *deny_body, *deny_core;
  size_t deny_len;
  bh__csec secs[];
} bh__cmp;

static void bh__csec_answer(bh_req *req, const char *ctype, const char *body,
                            size_t len, const char *core);
static void bh__csec_deadline(bh_req *req, uint32_t ms);
static void bh__probe_answer(bh_req *req, const char *ctype, const char *body,
                             size_t len, const char *core);
static void bh__probe_deadline(bh_req *req, uint32_t ms);
static void bh__probe_ok(bh_req *req);
static void bh__cmp_maybe_finish(bh__cmp *m);
static void bh__cmp_arm(bh__cmp *m);

static const bh__sink bh__csec_sink = {bh__csec_answer, bh__csec_deadline, 0};
static const bh__sink bh__probe_sink = {bh__probe_answer, bh__probe_deadline,
                                        1};
static const bh__auth_next bh__probe_next = {
    .resume = bh__probe_ok,
    .gate = bh__limit_gate,
};

int bh__is_section(const bh_req *req) {
  return req->sink == &bh__csec_sink;
}

/* ---------------------------------------------------------------------- */
/* Section requests                                                        */
/* ---------------------------------------------------------------------- */

/* Headers a section does not inherit: it has no body, its id and its
 * media type are the composite's choice, and it is never a browser
 * navigation (a refusal is a Problem in its slot, not a redirect). */
static int bh__skip_header(const char *name) {
  static const char *const skip[] = {
      "content-length", "transfer-encoding", "expect",          "accept",
      "sec-fetch-mode", "x-request-id",      "content-type",    "connection",
      "keep-alive",     "upgrade",           "idempotency-key", NULL};
  for (size_t i = 0; skip[i]; i++)
    if (strcmp(name, skip[i]) == 0) return 1;
  return 0;
}

static void bh__pair(bh__buf *b, const char *name, const char *value) {
  bh__buf_append(b, name, strlen(name) + 1);
  bh__buf_append(b, value, strlen(value) + 1);
}

/* A request with no connection for METHOD target, carrying the parent's
 * headers (as http/parse.c lays them out in raw), answering to sink. */
static bh_req *bh__sub_new(bh__cmp *m, const char *method, const char *target,
                           const bh__sink *sink, void *data) {
  bh_req *p = m->parent;
  bh_req *r = bh__req_new();
  if (r == NULL) return NULL;
  r->svc = p->svc;
  r->d = p->d;
  r->refs = 1; /* the composite's */
  r->start_ns = bh__now_ns();
  r->sink = sink;
  r->sink_data = data;
  r->composite = m->def->name;
  r->method = method;
  memcpy(r->client_addr, p->client_addr, sizeof(r->client_addr));
  bh__buf *raw = &r->raw;
  bh__buf_append(raw, target, strlen(target) + 1);
  size_t n = 2;
  for (size_t i = 0; i < p->nheaders; i++) {
    if (bh__skip_header(p->headers[i].name)) continue;
    bh__pair(raw, p->headers[i].name, p->headers[i].value);
    n++;
  }
  bh__pair(raw, "x-request-id", p->id);
  bh__pair(raw, "accept", "application/json");
  if (bh__buf_failed(raw) || bh__req_headers_alloc(r, n) != 0) {
    bh__req_unref(r);
    return NULL;
  }
  const char *s = raw->data + strlen(raw->data) + 1;
  for (size_t i = 0; i < n; i++) {
    r->headers[i].name = s;
    s += strlen(s) + 1;
    r->headers[i].value = s;
    s += strlen(s) + 1;
  }
  r->nheaders = n;
  r->url_len = strlen(target);
  r->headers_done = 1;
  memcpy(r->id, p->id, sizeof(r->id));
  return r;
}

/* ---------------------------------------------------------------------- */
/* Section answers                                                         */
/* ---------------------------------------------------------------------- */

/* The JSON value a slot carries: the body verbatim when it is JSON, null
 * when empty, else the body as a JSON string. */
static char *bh__slot_value(const char *body, size_t len) {
  if (len == 0) return strdup("null");
  json_error_t err;
  json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &err);
  if (j) {
    json_decref(j);
    return strndup(body, len);
  }
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_json_strn(&b, body, len);
  return bh__buf_steal(&b, NULL);
}

static void bh__csec_record(bh__csec *s, const char *ctype, const char *body,
                            size_t len, const char *core) {
  s->done = 1;
  s->m->ndone++;
  s->status = s->req->status;
  s->code = s->req->code;
  s->problem =
      s->status >= 400 ||
      (ctype && strncasecmp(ctype, "application/problem+json", 24) == 0);
  /* 204 and 304 carry no body, whatever the handler gave */
  int bodiless = s->status == 204 || s->status == 304;
  s->json = bh__slot_value(body, bodiless ? 0 : len);
  s->core = core ? strdup(core) : NULL;
}

static void bh__csec_answer(bh_req *req, const char *ctype, const char *body,
                            size_t len, const char *core) {
  bh__csec *s = req->sink_data;
  if (s == NULL || s->done) return;
  bh__csec_record(s, ctype, body, len, core);
  bh__cmp_maybe_finish(s->m);
}

static void bh__csec_deadline(bh_req *req, uint32_t ms) {
  bh__csec *s = req->sink_data;
  if (s == NULL || s->done) return;
  uint64_t due = uv_now(req->d->loop) + ms;
  /* the composite's own end comes first: that one is generic.timeout */
  s->due = due < s->m->end ? due : 0;
  if (s->due) bh__cmp_arm(s->m);
}

/* A section whose streamed answer was still being gathered: nothing of it
 * went anywhere, so the encoder may answer it afresh. */
static void bh__csec_unstream(bh_req *req) {
  if (!req->streaming) return;
  req->streaming = 0;
  req->answered = 0;
}

static void bh__csec_expire(bh__csec *s) {
  bh_req *req = s->req;
  bh__csec_unstream(req);
  if (!req->answered) {
    bh__logline l;
    bh__log_begin(&l, BH__WARN, "section_timeout");
    bh__log_str(&l, "requestId", req->id);
    bh__log_str(&l, "composite", s->m->def->name);
    bh__log_str(&l, "section", s->def->key);
    bh__log_end(&l);
    bh__respond_code(req, "generic.timeout");
  }
  /* nobody is waiting for these answers any more */
  bh__calls_cancel(req);
  if (!s->done) {
    /* answered before without reaching us: still a timeout in its slot */
    static const char late[] =
        "{\"status\":504,\"extensions\":{\"code\":\"generic.timeout\","
        "\"retryable\":true}}";
    req->status = 504;
    req->code = "generic.timeout";
    bh__csec_record(s, "application/problem+json", late, sizeof(late) - 1,
                    NULL);
  }
}

static void bh__cmp_tick(uv_timer_t *t) {
  bh__cmp *m = t->data;
  uint64_t now = uv_now(t->loop);
  m->busy++;
  for (size_t i = 0; i < m->def->nsecs; i++) {
    bh__csec *s = &m->secs[i];
    if (s->done) continue;
    if (s->due && s->due <= now) {
      /* the route's own deadline, as on the normal path */
      s->due = 0;
      bh__csec_unstream(s->req);
      bh__dispatch_deadline(s->req);
    } else if (now >= m->end) {
      bh__csec_expire(s);
    }
  }
  m->busy--;
  bh__cmp_maybe_finish(m);
  if (!m->finished) bh__cmp_arm(m);
}

static void bh__cmp_arm(bh__cmp *m) {
  uint64_t next = m->end;
  for (size_t i = 0; i < m->def->nsecs; i++)
    if (!m->secs[i].done && m->secs[i].due && m->secs[i].due < next)
      next = m->secs[i].due;
  uint64_t now = uv_now(m->timer.loop);
  uv_timer_start(&m->timer, bh__cmp_tick, next > now ? next - now : 0, 0);
}

/* ---------------------------------------------------------------------- */
/* The one session check                                                   */
/* ---------------------------------------------------------------------- */

static void bh__cmp_start(bh__cmp *m) {
  m->busy++;
  for (size_t i = 0; i < m->def->nsecs; i++)
    if (!m->secs[i].done) bh__dispatch_hooks.on_request(m->secs[i].req);
  m->busy--;
  bh__cmp_maybe_finish(m);
  if (!m->finished) bh__cmp_arm(m);
}

/* The probe's cookie lines (a refresh's new cookies, or their clearing)
 * and Cache-Control go out once, on the composite's answer. */
static void bh__probe_headers(bh__cmp *m) {
  const bh__buf *h = &m->probe->resp_headers;
  for (size_t off = 0; off < h->len;) {
    const char *l = h->data + off;
    const char *nl = memchr(l, '\n', h->len - off);
    size_t ll = nl ? (size_t)(nl - l) + 1 : h->len - off;
    if (strncasecmp(l, "set-cookie:", 11) == 0) m->refreshed = 1;
    if (strncasecmp(l, "set-cookie:", 11) == 0 ||
        strncasecmp(l, "cache-control:", 14) == 0)
      bh__buf_append(&m->parent->resp_headers, l, ll);
    off += ll;
  }
}

static void bh__probe_ok(bh_req *req) {
  bh__cmp *m = req->sink_data;
  if (m == NULL || m->probe_state != BH__PROBE_PENDING) return;
  m->probe_state = BH__PROBE_OK;
  /* nothing else answers the probe: later completions find it done */
  req->answered = 1;
  bh__probe_headers(m);
  bh__cmp_start(m);
}

static void bh__probe_answer(bh_req *req, const char *ctype, const char *body,
                             size_t len, const char *core) {
  bh__cmp *m = req->sink_data;
  if (m == NULL || m->probe_state != BH__PROBE_PENDING) return;
  m->probe_state = BH__PROBE_DENIED;
  m->deny_status = req->status;
  m->deny_code = req->code;
  m->deny_ctype = strdup(ctype ? ctype : "application/problem+json");
  m->deny_body = len ? strndup(body, len) : NULL;
  m->deny_len = m->deny_body ? len : 0;
  m->deny_core = core ? strdup(core) : NULL;
  bh__probe_headers(m);
  bh__cmp_start(m);
}

static void bh__probe_deadline(bh_req *req, uint32_t ms) {
  /* the composite's timer bounds the check */
  (void)req;
  (void)ms;
}

int bh__section_auth(bh_req *req) {
  if (!bh__is_section(req) || req->sink_data == NULL) return 1;
  bh__cmp *m = ((bh__csec *)req->sink_data)->m;
  if (m->probe_state == BH__PROBE_OK) {
    /* a route that is never refreshed silently checks for itself what the
     * caller sent */
    if (m->refreshed && (req->route->flags & BH_ROUTE_NO_AUTO_REFRESH))
      return 1;
    if (bh__authn_copy(req, m->probe) != 0) {
      bh__respond_code(req, "generic.internal");
      return -1;
    }
    /* the API-key gate charged the address for the probe, on this route's
     * policy: its rate limit step gives the token back, as on its own */
    if (m->probe->rl_addr_held && req->route == m->probe->route) {
      m->probe->rl_addr_held = 0;
      req->rl_addr_held = 1;
    }
    return 0;
  }
  if (m->probe_state == BH__PROBE_DENIED) {
    req->code = m->deny_code;
    bh__respond(req, m->deny_status, m->deny_ctype, m->deny_body, m->deny_len,
                m->deny_core);
    return -1;
  }
  return 1;
}

/* The first section on an auth-required route of a serving plugin, one
 * that may be refreshed silently first: its route is the probe's (flags,
 * deadline, the API-key address gate). */
static bh__route *bh__auth_route(bh__cmp *m) {
  bh__route *any = NULL;
  for (size_t i = 0; i < m->def->nsecs; i++) {
    bh_req *r = m->secs[i].req;
    if (r->match_result != BH__ROUTE_FOUND || r->route == NULL ||
        !(r->route->flags & BH_ROUTE_AUTH_REQUIRED) ||
        !bh__plugin_serving(r->route->plugin) ||
        (r->plugin && !bh__plugin_serving(r->plugin)))
      continue;
    if (!(r->route->flags & BH_ROUTE_NO_AUTO_REFRESH)) return r->route;
    if (any == NULL) any = r->route;
  }
  return any;
}

/* ---------------------------------------------------------------------- */
/* The answer                                                              */
/* ---------------------------------------------------------------------- */

static void bh__cmp_free(uv_handle_t *h) {
  free(h->data);
}

static void bh__cmp_release(bh__cmp *m) {
  for (size_t i = 0; i < m->def->nsecs; i++) {
    bh__csec *s = &m->secs[i];
    if (s->req) {
      s->req->sink_data = NULL;
      s->req->answered = 1;
      bh__req_unref(s->req);
    }
    free(s->json);
    free(s->core);
  }
  if (m->probe) {
    m->probe->sink_data = NULL;
    m->probe->answered = 1; /* a store check still in flight ends nowhere */
    bh__req_unref(m->probe);
  }
  free(m->deny_ctype);
  free(m->deny_body);
  free(m->deny_core);
  bh__req_unref(m->parent);
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, bh__cmp_free);
}

static void bh__cmp_answer(bh__cmp *m) {
  bh_req *p = m->parent;
  for (size_t i = 0; i < m->def->nsecs; i++) {
    const bh__csec *s = &m->secs[i];
    if (s->def->required && s->status >= 400) {
      /* the whole answer is that section's Problem */
      p->code = s->code;
      bh__respond(p, s->status,
                  s->problem ? "application/problem+json" : "application/json",
                  s->json, strlen(s->json), s->core);
      return;
    }
  }
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "{\"sections\":{");
  for (size_t i = 0; i < m->def->nsecs; i++) {
    const bh__csec *s = &m->secs[i];
    bh__buf_printf(&b, "%s\"%s\":{\"status\":%d,\"%s\":", i ? "," : "",
                   s->def->key, s->status, s->problem ? "problem" : "body");
    bh__buf_puts(&b, s->json ? s->json : "null");
    bh__buf_putc(&b, '}');
  }
  bh__buf_puts(&b, "}}");
  if (bh__buf_failed(&b))
    bh__respond_code(p, "generic.internal");
  else
    bh__respond(p, 200, "application/json", b.data, b.len, NULL);
  bh__buf_free(&b);
}

static void bh__cmp_maybe_finish(bh__cmp *m) {
  if (m->busy || m->finished || m->ndone < m->def->nsecs) return;
  m->finished = 1;
  bh__cmp_answer(m);
  bh__cmp_release(m);
}

/* ---------------------------------------------------------------------- */
/* Serving                                                                 */
/* ---------------------------------------------------------------------- */

void bh__composite_serve(bh_req *req, const bh__cdef *c) {
  bh__daemon *d = req->d;
  bh__cmp *m = calloc(1, sizeof(*m) + c->nsecs * sizeof(bh__csec));
  if (m == NULL) {
    bh__respond_code(req, "generic.internal");
    return;
  }
  m->parent = req;
  req->refs++;
  m->def = c;
  req->route = (bh__route *)&c->route; /* its metrics line */
  req->plugin = c->plugin;
  req->composite = c->name;
  uv_timer_init(d->loop, &m->timer);
  m->timer.data = m;
  m->end = uv_now(d->loop) + c->timeout_ms;
  m->busy++;
  int failed = 0;
  for (size_t i = 0; i < c->nsecs && !failed; i++) {
    bh__csec *s = &m->secs[i];
    s->m = m;
    s->def = &c->secs[i];
    s->req = bh__sub_new(m, s->def->method, s->def->target, &bh__csec_sink, s);
    if (s->req == NULL) {
      failed = 1;
      break;
    }
    s->req->section = s->def->key;
    bh__dispatch_hooks.on_head(s->req);
  }
  bh__route *ar = failed ? NULL : bh__auth_route(m);
  if (ar) {
    m->probe = bh__sub_new(m, req->method, req->path, &bh__probe_sink, m);
    failed = m->probe == NULL;
  }
  if (failed) {
    for (size_t i = 0; i < c->nsecs; i++)
      if (!m->secs[i].done) {
        m->secs[i].done = 1;
        m->ndone++;
      }
    m->finished = 1;
    bh__respond_code(req, "generic.internal");
    bh__cmp_release(m);
    return;
  }
  if (ar) {
    bh_req *pr = m->probe;
    pr->route = ar;
    pr->plugin = ar->plugin;
    m->probe_state = BH__PROBE_PENDING;
    bh__cmp_arm(m);
    /* 0 let in now; 1 decided later (store); -1 refused (probe_answer) */
    if (bh__auth_check(pr, &bh__probe_next) == 0) bh__probe_ok(pr);
  } else {
    bh__cmp_start(m);
  }
  m->busy--;
  bh__cmp_maybe_finish(m);
}
