/*
 * Streamed request bodies: a route whose head asked for it (on_head set
 * req->body_stream) is served as soon as its head is parsed; its body is
 * read only while a sink takes it (bh__req_body_sink, bh__req_body_resume)
 * and goes there piece by piece as llhttp delivers it, never gathered in
 * req->body. Reading stops whenever the sink says it holds enough, so a
 * slow reader on the far side slows the client down instead of growing
 * our memory. Until the sink first resumes, what the client sent is held
 * as any early bytes are (one read buffer, then reading stops).
 */
#include <stdlib.h>

#include "http/conn.h"
#include "http/http.h"

void bh__req_body_end(bh_req *req, const char *code) {
  if (!req->body_open) return;
  req->body_open = req->body_flowing = 0;
  const bh__body_sink *s = req->body_sink;
  if (code && req->conn) req->conn->keep_alive = 0;
  /* the sink may answer, which may end the request: nothing after this */
  if (s) s->on_end(req, code, req->body_sink_data);
}

void bh__conn_body_end(bh__conn *c, const char *code) {
  if (c->req) bh__req_body_end(c->req, code);
}

void bh__conn_body_feed(bh__conn *c, const char *data, size_t len) {
  bh_req *req = c->req;
  c->body_pause = 0;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
  if (err == HPE_OK) {
    if (c->body_pause && req->body_open) {
      req->body_flowing = 0;
      bh__conn_read_stop(c);
    }
    return;
  }
  if (err == HPE_PAUSED && c->message_done) {
    /* the body is whole; what follows is the next pipelined request,
     * parsed once this one is answered (the parser stays paused) */
    c->message_done = 0;
    if (bh__conn_keep_rest(c, data, len) != 0) c->keep_alive = 0;
    bh__conn_body_end(c, NULL);
    return;
  }
  /* past the limit, or framing we refuse: the stream is lost */
  bh__conn_read_stop(c);
  bh__conn_body_end(c, c->early_code ? c->early_code : "request.bad_request");
}

void bh__req_body_sink(bh_req *req, const bh__body_sink *sink, void *data) {
  req->body_sink = sink;
  req->body_sink_data = data;
  if (sink == NULL) req->body_flowing = 0;
}

void bh__req_body_resume(bh_req *req) {
  bh__conn *c = req->conn;
  if (c == NULL || !req->body_open || req->body_flowing ||
      req->body_sink == NULL)
    return;
  req->body_flowing = 1;
  /* the sink may answer and end the request while it is fed */
  req->refs++;
  if (c->body_resume) {
    /* paused at the head (parse.c) */
    c->body_resume = 0;
    llhttp_resume(&c->parser);
  }
  if (c->pending) {
    char *p = c->pending;
    size_t n = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    bh__conn_body_feed(c, p, n);
    free(p);
  }
  /* the sink may have paused, or the body may be whole already */
  if (req->conn == c && req->body_flowing) bh__conn_read_start(c);
  bh__req_unref(req);
}
