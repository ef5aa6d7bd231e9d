/*
 * The HTTP front: listeners and connections (http.c), requests
 * (request.c), answers (response.c). It knows nothing of what a request
 * means: each listener hands its requests to the hooks it was given.
 */
#ifndef BH_CORE_HTTP_HTTP_H
#define BH_CORE_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/http-t.h"
#include "problem/problem.h"

/* http.c: listeners and connections */
/* Binds and listens on addr; each request on it goes to `hooks`. */
int bh__listen(bh__daemon *d, bh__listener *l, int kind, const char *addr,
               const bh__http_hooks *hooks);
/* A listening socket of addr's SO_REUSEPORT group (the master makes one
 * per worker, so the kernel spreads connections over the workers): its
 * fd, the address it is bound to (the port chosen when addr's is 0) in
 * bound; or a negative errno. */
int bh__listen_reuseport_fd(const char *addr, char *bound, size_t boundlen);
/* Starts accepting on an initialised (opened) listener. */
int bh__listen_start(bh__listener *l);
/* Draining: closes connections idle for at least grace_ms. */
void bh__conn_close_idle_since(bh__daemon *d, uint64_t now, uint64_t grace_ms);
void bh__http_settings_init(llhttp_settings_t *s);
void bh__conn_close_all(bh__daemon *d);
void bh__conn_close_idle(bh__daemon *d);
void bh__conn_close_when_written(bh__conn *c);
/* Whether the answer being written is the connection's last (no keep-alive,
 * peer gone, draining, keepalive_requests reached). */
int bh__conn_last_answer(const bh__conn *c);
/* response.c reports each queued write here (starts the send timer) and
 * each finished one. */
void bh__conn_on_queued(bh__conn *c);
void bh__conn_on_written(bh__conn *c, int status);
/* Arms the connection timer as the handler deadline. */
void bh__conn_deadline(bh__conn *c, uint32_t ms);
/* Called once the response for conn->req is queued: resume the connection
 * (next pipelined request, idle timer, or close). */
void bh__conn_request_done(bh__conn *c);

/* response.c: writing answers */
/* Queues the response for `req` on its connection. Body copied. Marks the
 * request answered. extra_headers: preformatted "Name: v\r\n" lines or NULL.
 */
void bh__respond(bh_req *req, int status, const char *content_type,
                 const char *body, size_t len, const char *extra_headers);
/* Answers `code` (core or plugin catalogue) as Problem JSON. retry_after < 0
 * unknown. ext may be NULL. */
void bh__respond_problem(bh_req *req, const char *code, const char *detail,
                         long retry_after, const bh__ext *ext, size_t next,
                         const bh__field_error *errs, size_t nerrs);
/* bh__respond_problem with what `extra` says: its retry_after, errors,
 * ext and members (the other members of `extra` are ignored). */
void bh__respond_problem_pb(bh_req *req, const char *code, const char *detail,
                            const bh__problem *extra);
/* The common case of bh__respond_problem: the code's own title and detail,
 * no Retry-After, no extensions, no field errors. */
void bh__respond_code(bh_req *req, const char *code);
/* Looks a code up: the route's plugin first, then every plugin, then the
 * core. NULL when unknown. */
const bh__code *bh__code_find(bh__daemon *d, bh__plugin *p, const char *code);
/* Streamed answers. head: headers are preformatted lines; content_length
 * < 0 means chunked. body returns the connection's unsent bytes (for back
 * pressure) or a negative errno. end: complete = 0 cuts the stream (the
 * connection closes). */
int bh__respond_head(bh_req *req, int status, const char *headers,
                     long long content_length);
long bh__respond_body(bh_req *req, const char *data, size_t len);
void bh__respond_end(bh_req *req, int complete);
/* Raw problem write for failures before a request exists (parse errors). */
void bh__conn_problem(bh__conn *c, const char *code);
/* Writes a copy of data in order with the connection's other output (what
 * does not leave at once is queued). */
void bh__conn_write(bh__conn *c, const char *data, size_t len);
/* The access-log line and metrics of req, once, as its answer leaves
 * (http/access_log.c). */
void bh__access_log(bh_req *req);

/* request.c: a request's life cycle */
/* At headers complete: splits the target into path and query (in place),
 * flags a target we never serve (bad_path: not origin-form, "." or ".."
 * segments, a fragment), notes Expect: 100-continue. */
void bh__req_parse_target(bh_req *req);
/* First value of a request header (name case-insensitive), or NULL. */
const char *bh__req_header(bh_req *req, const char *name);

/* stream_body.c: a streamed request body (req->body_open) and its sink
 * (see bh__body_sink). sink NULL detaches it; bytes flow only after
 * resume, and again after each pause the sink asked for. */
void bh__req_body_sink(bh_req *req, const bh__body_sink *sink, void *data);
void bh__req_body_resume(bh_req *req);
/* Ends the body early (code: why) or whole (NULL); the sink hears it. */
void bh__req_body_end(bh_req *req, const char *code);
/* forwarded.c */
/* The request id and the gateway's trace span, once (each answer, log
 * line and upstream call carries them). */
void bh__req_ids(bh_req *req);
/* At headers complete: client_addr from X-Forwarded-For when the peer is
 * one of trusted_proxies (via_trusted set), else the peer stays. */
void bh__req_client(bh_req *req);
/* Someone still waits for req's answer: its connection, or (a composite's
 * section) its sink. */
static inline int bh__req_live(const bh_req *req) {
  return req->conn != NULL || req->sink != NULL;
}
/* Arms the handler deadline of req: its connection's timer, or a section's
 * own (the sink's). */
void bh__req_deadline(bh_req *req, uint32_t ms);
/* A zeroed request (a finished one reused, with its buffers' capacity,
 * when there is one: see request.c), or NULL. Loop thread only. */
bh_req *bh__req_new(void);
/* Room for n header slots in req->headers (kept across reuse). 0 or
 * -ENOMEM. */
int bh__req_headers_alloc(bh_req *req, size_t n);
/* Drops one reference; at zero the request is kept for reuse or freed. */
void bh__req_unref(bh_req *req);
/* Frees the kept requests (at daemon exit, so leak checkers see none). */
void bh__req_spares_free(void);
/* A JSON media type: application/json or any application/<x>+json,
 * parameters allowed. */
int bh__is_json(const char *ct);

#endif
