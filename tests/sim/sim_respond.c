/*
 * Answering requests on the main listener: the default answers (echo and the
 * built-in provider endpoints) and the rule actions. Anything that takes
 * time runs on the connection's uv timer; nothing here ever sleeps.
 */
#include "sim.h"

#include <stdio.h>
#include <string.h>

#define MID_BODY_RESET_MS 50 /* let the half body reach the peer first */

/* ---- default answers ---------------------------------------------------- */

static int path_is(const sim_req *r, const char *p) {
  return strcmp(sim_req_path(r), p) == 0;
}

/* An Anthropic Messages call that asked for SSE. */
static int wants_stream(const sim_req *r) {
  if (r->method != HTTP_POST || !path_is(r, "/v1/messages")) return 0;
  size_t n;
  const char *acc = sim_req_header(r, "accept", &n);
  if (acc && memmem(acc, n, "text/event-stream", 17)) return 1;
  if (r->body.len == 0) return 0;
  json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
  int on = json_is_true(json_object_get(doc, "stream"));
  json_decref(doc);
  return on;
}

static void default_body(const sim_req *r, sim_buf *b, int status) {
  unsigned long long id;
  if (r->method == HTTP_POST) {
    if (path_is(r, "/v1/messages")) {
      sim_buf_puts(b, "{\"id\":\"msg_sim\",\"type\":\"message\",\"role\":"
                      "\"assistant\",\"content\":[{\"type\":\"text\","
                      "\"text\":\"Thank you for your review! (sim)\"}],"
                      "\"model\":");
      sim_buf_json_str(b, sim_g.name, strlen(sim_g.name));
      sim_buf_puts(b, ",\"stop_reason\":\"end_turn\","
                      "\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,"
                      "\"output_tokens\":8}}");
      return;
    }
    if (path_is(r, "/v1/checkout/sessions")) {
      id = ++sim_g.seq;
      sim_buf_printf(b,
                     "{\"id\":\"cs_sim_%llu\",\"object\":\"checkout.session\","
                     "\"url\":\"https://checkout.example.invalid/c/pay/"
                     "cs_sim_%llu\"}",
                     id, id);
      return;
    }
    if (path_is(r, "/v1/billing_portal/sessions")) {
      id = ++sim_g.seq;
      sim_buf_printf(b,
                     "{\"id\":\"bps_sim_%llu\",\"object\":\"billing_portal."
                     "session\",\"url\":\"https://checkout.example.invalid/p/"
                     "session/bps_sim_%llu\"}",
                     id, id);
      return;
    }
  }
  if (r->method == HTTP_GET && path_is(r, "/v1/subscriptions")) {
    /* Stripe's list of a customer's subscriptions: one active plan */
    sim_buf_puts(b, "{\"object\":\"list\",\"url\":\"/v1/subscriptions\","
                    "\"has_more\":false,\"data\":[{\"id\":\"sub_sim\","
                    "\"object\":\"subscription\",\"status\":\"active\","
                    "\"cancel_at_period_end\":false,\"current_period_end\":"
                    "4102444800,\"items\":{\"object\":\"list\",\"data\":[{"
                    "\"id\":\"si_sim\",\"price\":{\"id\":\"price_sim_pro\","
                    "\"object\":\"price\",\"nickname\":\"Pro\",\"product\":"
                    "\"prod_sim\"}}]}}]}");
    return;
  }
  /* Echo: enough for a test to see what arrived. */
  sim_buf_puts(b, status < 400 ? "{\"ok\":true,\"path\":"
                               : "{\"ok\":false,\"path\":");
  sim_buf_json_str(b, sim_req_path(r), r->path_len);
  sim_buf_printf(b, ",\"method\":\"%s\"", sim_method_name(r->method));
  if (status != 200) sim_buf_printf(b, ",\"status\":%d", status);
  if (r->query_len) {
    sim_buf_puts(b, ",\"query\":");
    sim_buf_json_str(b, sim_req_query(r), r->query_len);
  }
  if (r->body.len) {
    size_t n = sim_utf8_cut(r->body.data, r->body.len, SIM_ECHO_BODY);
    if (sim_utf8_valid(r->body.data, n)) {
      sim_buf_puts(b, ",\"body\":");
      sim_buf_json_str(b, r->body.data, n);
    }
  }
  sim_buf_puts(b, "}");
}

/* Builds status line, headers and body into c->pend.head / c->pend.body.
 * A chunked answer (SSE) has no body here: the events follow as chunks. */
static void build(sim_conn *c, const sim_spec *sp, const char *ctype,
                  const char *extra, int chunked) {
  sim_req *r = &c->req;
  sim_pending *pd = &c->pend;
  int status = sp && sp->status ? sp->status : 200, idp;
  pd->head.len = pd->body.len = 0;
  if (chunked)
    ; /* events are written later */
  else if (sp && sp->body)
    sim_buf_append(&pd->body, sp->body, sp->body_len);
  else if (!(sp && sp->status) && (idp = sim_idp_answer(r, &pd->body)) > 0) {
    status = idp; /* the identity provider's own answer (sim_idp.c) */
    sim_record_answer(status, SIM_ACT_RESPOND);
  } else
    default_body(r, &pd->body, status);
  if (!ctype) ctype = sp && sp->ctype ? sp->ctype : "application/json";
  if (status < 200 || status == 204 || status == 304) pd->body.len = 0;
  const char *hdrs = sp ? sp->headers : NULL;
  sim_buf both = {0};
  if (extra) {
    sim_buf_puts(&both, extra);
    if (hdrs) sim_buf_puts(&both, hdrs);
    sim_buf_append(&both, "", 1);
    hdrs = both.data;
  }
  sim_head(&pd->head, status, ctype, hdrs,
           chunked ? -1 : (long long)pd->body.len, pd->keep_alive,
           (sp && sp->user_framing) || status < 200 || status == 204);
  sim_buf_free(&both);
}

/* ---- asynchronous actions ----------------------------------------------- */

static void write_chunk(sim_conn *c, const char *p, size_t n) {
  char hdr[24];
  int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
  sim_conn_write(c, hdr, (size_t)hl);
  sim_conn_write(c, p, n);
  sim_conn_write(c, "\r\n", 2);
}

static void on_timer(uv_timer_t *t) {
  sim_conn *c = t->data;
  sim_pending *pd = &c->pend;
  if (c->closing) return;
  switch (pd->action) {
  case SIM_ACT_RESPOND:
    sim_conn_write(c, pd->head.data, pd->head.len);
    if (!pd->head_only) sim_conn_write(c, pd->body.data, pd->body.len);
    sim_conn_flush(c);
    sim_conn_async_done(c);
    return;
  case SIM_ACT_CLOSE: sim_conn_close(c, SIM_CLOSE_GRACEFUL); return;
  case SIM_ACT_RESET: sim_conn_close(c, SIM_CLOSE_RESET); return;
  case SIM_ACT_RESET_MID_BODY:
    if (pd->step++ == 0) {
      sim_conn_write(c, pd->head.data, pd->head.len);
      sim_conn_write(c, pd->body.data, pd->body.len / 2);
      sim_conn_flush(c);
      uv_timer_start(t, on_timer, MID_BODY_RESET_MS, 0);
    } else {
      sim_conn_close(c, SIM_CLOSE_RESET);
    }
    return;
  case SIM_ACT_TRICKLE:
    if (pd->step++ == 0) {
      sim_conn_write(c, pd->head.data, pd->head.len);
    } else {
      size_t n = pd->body.len - pd->off;
      if (n > pd->chunk) n = pd->chunk;
      sim_conn_write(c, pd->body.data + pd->off, n);
      pd->off += n;
    }
    sim_conn_flush(c);
    if (pd->head_only || pd->off >= pd->body.len) {
      sim_conn_async_done(c);
      return;
    }
    uv_timer_start(t, on_timer, pd->tick_ms, 0);
    return;
  case SIM_ACT_STREAM:
  case SIM_ACT_STREAM_FAIL_AFTER:
  case SIM_ACT_STREAM_ERROR_AFTER:
    if (pd->step++ == 0) {
      sim_conn_write(c, pd->head.data, pd->head.len);
      if (pd->head_only) {
        sim_conn_flush(c);
        sim_conn_async_done(c);
        return;
      }
    }
    if (pd->action == SIM_ACT_STREAM_ERROR_AFTER &&
        pd->events_sent >= pd->fail_after) {
      /* Anthropic's way: an error event, then a properly ended stream. */
      write_chunk(c, sim_sse_error_event, strlen(sim_sse_error_event));
      sim_conn_write(c, "0\r\n\r\n", 5);
      sim_conn_flush(c);
      sim_conn_async_done(c);
      return;
    }
    if (pd->fail_after >= 0 && pd->events_sent >= pd->fail_after) {
      /* Mid-stream failure: no terminating chunk, just FIN. */
      sim_conn_flush(c);
      sim_conn_close(c, SIM_CLOSE_GRACEFUL);
      return;
    }
    if (pd->events_sent < sim_sse_nevents) {
      const char *ev = sim_sse_events[pd->events_sent++];
      write_chunk(c, ev, strlen(ev));
      sim_conn_flush(c);
      uv_timer_start(t, on_timer, pd->tick_ms, 0);
      return;
    }
    sim_conn_write(c, "0\r\n\r\n", 5);
    sim_conn_flush(c);
    sim_conn_async_done(c);
    return;
  default: return; /* hang: nothing ever happens */
  }
}

void sim_respond_cancel(sim_conn *c) {
  uv_timer_stop(&c->timer);
  c->pend.action = SIM_ACT_RESPOND;
  c->pend.step = 0;
}

/* ---- entry point -------------------------------------------------------- */

int sim_respond(sim_conn *c) {
  sim_req *r = &c->req;
  sim_pending *pd = &c->pend;
  sim_stats_count(c);
  sim_record(r);
  const sim_spec *sp =
      sim_rules_match(sim_req_path(r), sim_method_name(r->method));
  int action = sp ? sp->action : SIM_ACT_RESPOND;
  if (action == SIM_ACT_RESPOND && !(sp && (sp->status || sp->body)) &&
      wants_stream(r))
    action = SIM_ACT_STREAM;
  pd->keep_alive = r->keep_alive;
  pd->head_only = r->method == HTTP_HEAD;
  pd->action = action;
  sim_record_answer(action == SIM_ACT_CLOSE || action == SIM_ACT_RESET ||
                            action == SIM_ACT_HANG
                        ? 0
                    : sp && sp->status ? sp->status
                                       : 200,
                    action);
  pd->step = 0;
  pd->off = 0;
  pd->events_sent = 0;

  long long delay = sp ? sp->delay_ms : 0;
  if (action == SIM_ACT_RESPOND && delay == 0) {
    /* The hot path: straight into the output buffer. */
    build(c, sp, NULL, NULL, 0);
    sim_conn_write(c, pd->head.data, pd->head.len);
    if (!pd->head_only) sim_conn_write(c, pd->body.data, pd->body.len);
    return 0;
  }
  switch (action) {
  case SIM_ACT_HANG: return 1;
  case SIM_ACT_STREAM:
  case SIM_ACT_STREAM_FAIL_AFTER:
  case SIM_ACT_STREAM_ERROR_AFTER: {
    long long sd = sp && sp->stream_delay_ms >= 0 ? sp->stream_delay_ms
                                                  : sim_g.stream_delay_ms;
    pd->tick_ms = (uint64_t)sd;
    pd->fail_after = sp ? sp->fail_after : -1;
    if ((action == SIM_ACT_STREAM_FAIL_AFTER ||
         action == SIM_ACT_STREAM_ERROR_AFTER) &&
        pd->fail_after < 0)
      pd->fail_after = 2;
    build(c, sp, "text/event-stream; charset=utf-8",
          "Cache-Control: no-cache\r\n", 1);
    break;
  }
  case SIM_ACT_TRICKLE: {
    long long bps = sp->trickle_bps > 0 ? sp->trickle_bps : 10;
    /* Ten ticks a second when the rate allows, else one byte per tick. */
    pd->tick_ms = bps >= 10 ? 100 : (uint64_t)(1000 / bps);
    pd->chunk = bps >= 10 ? (size_t)(bps / 10) : 1;
    build(c, sp, NULL, NULL, 0);
    break;
  }
  case SIM_ACT_RESPOND:
  case SIM_ACT_RESET_MID_BODY: build(c, sp, NULL, NULL, 0); break;
  default: break; /* close, reset: nothing to build */
  }
  uv_timer_start(&c->timer, on_timer, (uint64_t)delay, 0);
  return 1;
}
