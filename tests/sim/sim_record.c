/*
 * What the upstream received: per-path counters and a ring of the last
 * SIM_RING_SIZE requests, so tests can assert on headers and bodies the
 * gateway sent (Idempotency-Key, X-Request-ID, Authorization...).
 *
 * Recording runs on every request under load, so a ring slot keeps its
 * buffers and a request is copied with two memcpy calls, no allocation.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PATHS 10000 /* distinct paths counted before "(other)" */

typedef struct rec {
  unsigned long long seq;
  uint64_t time_ms;
  int method;
  sim_buf data; /* copy of the request arena, then the kept body */
  sim_hdr *hdrs;
  size_t nhdrs, hdr_cap;
  uint32_t path_off, path_len, query_off, query_len;
  size_t body_off, body_len, body_total;
  int status; /* answered status line, 0 none */
  int action; /* enum sim_action */
} rec;

static rec ring[SIM_RING_SIZE];
static unsigned long long rec_seq;   /* requests ever recorded */
static unsigned long long rec_floor; /* seq below which slots are cleared */

static json_t *paths;
static long long total;
static long long conns_seen;
static unsigned long epoch = 1;

/* ---- stats -------------------------------------------------------------- */

static json_t *bump(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  if (v) {
    json_integer_set(v, json_integer_value(v) + 1);
  } else {
    v = json_integer(1);
    json_object_set_new_nocheck(obj, key, v);
  }
  return v;
}

void sim_stats_count(sim_conn *c) {
  const sim_req *r = &c->req;
  if (!paths) paths = json_object();
  total++;
  if (c->stats_epoch != epoch) {
    c->stats_epoch = epoch;
    conns_seen++;
  }
  const char *key = sim_req_path(r);
  json_t *e = json_object_get(paths, key);
  if (!e) {
    if (json_object_size(paths) >= MAX_PATHS) {
      key = "(other)";
    } else if (!sim_utf8_valid(key, r->path_len)) {
      key = "(invalid-utf8)";
    }
    e = json_object_get(paths, key);
    if (!e) {
      e = json_pack("{s:i,s:{}}", "count", 0, "methods");
      json_object_set_new(paths, key, e);
    }
  }
  bump(e, "count");
  bump(json_object_get(e, "methods"), sim_method_name(r->method));
}

json_t *sim_stats_json(const sim_conn *asker) {
  long long open = sim_g.open_conns - !asker->listener->is_control;
  if (!paths) paths = json_object();
  return json_pack("{s:s,s:I,s:O,s:I,s:I}", "name", sim_g.name, "total",
                   (json_int_t)total, "paths", paths, "connections",
                   (json_int_t)conns_seen, "open_connections",
                   (json_int_t)open);
}

void sim_stats_reset(void) {
  if (paths) json_object_clear(paths);
  total = 0;
  conns_seen = 0;
  epoch++;
}

/* ---- recorded requests -------------------------------------------------- */

void sim_record(const sim_req *r) {
  rec *s = &ring[rec_seq % SIM_RING_SIZE];
  size_t need = r->arena.len + r->body.len;
  /* Give back memory a huge request left behind in this slot. */
  if (s->data.cap > 64 * 1024 && s->data.cap > 4 * need) sim_buf_free(&s->data);
  s->data.len = 0;
  sim_buf_reserve(&s->data, need);
  sim_buf_append(&s->data, r->arena.data, r->arena.len);
  s->body_off = s->data.len;
  size_t keep = r->body.len < SIM_ECHO_BODY ? r->body.len : SIM_ECHO_BODY;
  sim_buf_append(&s->data, r->body.data, keep);
  s->body_len = keep;
  s->body_total = r->body_total;
  if (r->nhdrs > s->hdr_cap) {
    free(s->hdrs);
    s->hdr_cap = r->nhdrs;
    s->hdrs = malloc(s->hdr_cap * sizeof(*s->hdrs));
    if (!s->hdrs) abort();
  }
  if (r->nhdrs) memcpy(s->hdrs, r->hdrs, r->nhdrs * sizeof(*s->hdrs));
  s->nhdrs = r->nhdrs;
  s->path_off = r->path_off;
  s->path_len = r->path_len;
  s->query_off = r->query_off;
  s->query_len = r->query_len;
  s->method = r->method;
  s->time_ms = sim_wall_ms();
  s->status = 0;
  s->action = SIM_ACT_RESPOND;
  s->seq = ++rec_seq;
}

void sim_record_answer(int status, int action) {
  if (rec_seq == 0) return;
  rec *s = &ring[(rec_seq - 1) % SIM_RING_SIZE];
  s->status = status;
  s->action = action;
}

static const char *action_name(int a) {
  switch (a) {
  case SIM_ACT_CLOSE: return "close";
  case SIM_ACT_RESET: return "reset";
  case SIM_ACT_TRICKLE: return "trickle";
  case SIM_ACT_HANG: return "hang";
  case SIM_ACT_RESET_MID_BODY: return "reset_mid_body";
  case SIM_ACT_STREAM: return "stream";
  case SIM_ACT_STREAM_FAIL_AFTER: return "stream_fail_after";
  case SIM_ACT_STREAM_ERROR_AFTER: return "stream_error_after";
  default: return "respond";
  }
}

static json_t *rec_json(const rec *s) {
  const char *d = s->data.data;
  json_t *hdrs = json_array();
  for (size_t i = 0; i < s->nhdrs; i++) {
    const sim_hdr *h = &s->hdrs[i];
    json_array_append_new(
        hdrs, json_pack("[o,o]", sim_json_bytes(d + h->name_off, h->name_len),
                        sim_json_bytes(d + h->val_off, h->val_len)));
  }
  const char *body = d + s->body_off;
  size_t blen = sim_utf8_cut(body, s->body_len, SIM_ECHO_BODY);
  json_t *o = json_pack(
      "{s:I,s:I,s:s,s:o,s:o,s:o,s:o,s:I,s:b}", "seq", (json_int_t)s->seq,
      "time_ms", (json_int_t)s->time_ms, "method", sim_method_name(s->method),
      "path", sim_json_bytes(d + s->path_off, s->path_len), "query",
      sim_json_bytes(d + s->query_off, s->query_len), "headers", hdrs, "body",
      sim_json_bytes(body, blen), "body_size", (json_int_t)s->body_total,
      "body_truncated", s->body_total > s->body_len);
  /* what was answered: "status" null when no status line went out */
  json_object_set_new(o, "status",
                      s->status ? json_integer(s->status) : json_null());
  json_object_set_new(o, "action", json_string(action_name(s->action)));
  /* Binary bodies: the string above is lossy, so also give the bytes. */
  if (!sim_utf8_valid(body, s->body_len)) {
    sim_buf b64 = {0};
    sim_base64(&b64, (const unsigned char *)body, s->body_len);
    json_object_set_new(o, "body_base64", json_stringn(b64.data, b64.len));
    sim_buf_free(&b64);
  }
  return o;
}

static int path_matches(const rec *s, const char *path) {
  size_t n = strlen(path);
  const char *p = s->data.data + s->path_off;
  if (n && path[n - 1] == '*') /* prefix filter, like rules */
    return s->path_len >= n - 1 && memcmp(p, path, n - 1) == 0;
  return s->path_len == n && memcmp(p, path, n) == 0;
}

json_t *sim_requests_json(const char *path, const char *method, long limit) {
  json_t *arr = json_array();
  unsigned long long oldest =
      rec_seq > SIM_RING_SIZE ? rec_seq - SIM_RING_SIZE + 1 : 1;
  if (oldest <= rec_floor) oldest = rec_floor + 1;
  /* Walk newest to oldest, collect, then emit in arrival order. */
  for (unsigned long long q = rec_seq; q >= oldest && q > 0; q--) {
    if (limit >= 0 && (long)json_array_size(arr) >= limit) break;
    const rec *s = &ring[(q - 1) % SIM_RING_SIZE];
    if (path && !path_matches(s, path)) continue;
    if (method && strcmp(method, sim_method_name(s->method)) != 0) continue;
    json_array_insert_new(arr, 0, rec_json(s));
  }
  return arr;
}

void sim_record_clear(void) {
  rec_floor = rec_seq;
}

void sim_record_free(void) {
  for (size_t i = 0; i < SIM_RING_SIZE; i++) {
    sim_buf_free(&ring[i].data);
    free(ring[i].hdrs);
  }
  json_decref(paths);
  paths = NULL;
}
