/*
 * bulkhead-sim: a scriptable stand-in for the upstream providers (payment,
 * identity, LLM) that integration tests and the demo start as a real process.
 *
 * One libuv loop, one llhttp parser per connection. Requests on the main
 * listener are answered from per-path rules set at runtime through a JSON
 * control API (under /__sim/ on the main listener, and on an optional
 * separate control listener). Everything here is single-threaded.
 */
#ifndef SIM_H
#define SIM_H

#include <jansson.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- limits ------------------------------------------------------------ */

#define SIM_MAX_HEAD (64 * 1024)       /* request line + headers */
#define SIM_MAX_HEADERS 256            /* header count */
#define SIM_MAX_CONTROL_BODY (1 << 20) /* control JSON bodies */
#define SIM_ECHO_BODY (64 * 1024)      /* echoed / recorded body bytes */
#define SIM_RING_SIZE 1000             /* recorded requests */

/* ---- growable buffer (sim_util.c) -------------------------------------- */

/* Out-of-memory aborts: the simulator is a test tool and a half-built
 * response would only hide the real problem. */
typedef struct sim_buf {
  char *data;
  size_t len;
  size_t cap;
} sim_buf;

void sim_buf_reserve(sim_buf *b, size_t extra);
void sim_buf_append(sim_buf *b, const void *p, size_t n);
void sim_buf_puts(sim_buf *b, const char *s);
void sim_buf_printf(sim_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sim_buf_free(sim_buf *b);
/* Shrinks a reused buffer that one big message blew up. */
void sim_buf_trim(sim_buf *b, size_t keep_cap);
/* Quoted JSON string; invalid UTF-8 becomes U+FFFD. */
void sim_buf_json_str(sim_buf *b, const char *s, size_t n);

int sim_utf8_valid(const char *s, size_t n);
/* Longest prefix of at most `max` bytes that does not split a sequence. */
size_t sim_utf8_cut(const char *s, size_t n, size_t max);
/* Decodes %XX (and '+' in query strings) in place; returns the new length. */
size_t sim_url_decode(char *s, size_t n, int plus_is_space);
void sim_base64(sim_buf *b, const unsigned char *p, size_t n);
/* A JSON string from bytes, invalid UTF-8 replaced. */
json_t *sim_json_bytes(const char *s, size_t n);
uint64_t sim_wall_ms(void);
int sim_strcaseeq(const char *a, size_t alen, const char *b);
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- parsed request (sim_http.c) --------------------------------------- */

typedef struct sim_hdr {
  uint32_t name_off, name_len, val_off, val_len;
} sim_hdr;

typedef struct sim_req {
  sim_buf arena; /* URL, header names/values, NUL-terminated path/query */
  sim_hdr *hdrs;
  size_t nhdrs, hdr_cap;
  uint32_t url_off, url_len;
  uint32_t path_off, path_len; /* NUL-terminated copies in the arena */
  uint32_t query_off, query_len;
  sim_buf body;
  size_t body_total; /* bytes received, may exceed what is kept */
  size_t body_keep;  /* how much of the body to keep */
  int method;        /* llhttp_method_t */
  int keep_alive;
  int is_control;
  int hdr_state; /* 0 none, 1 in field, 2 in value */
  int error_status;
} sim_req;

static inline const char *sim_req_path(const sim_req *r) {
  return r->arena.data + r->path_off;
}
static inline const char *sim_req_query(const sim_req *r) {
  return r->arena.data + r->query_off;
}
/* Value of the first header named `name` (lower case), or NULL. */
const char *sim_req_header(const sim_req *r, const char *name, size_t *len);
const char *sim_method_name(int method);

/* ---- connection (sim_http.c) ------------------------------------------- */

enum sim_close_mode {
  SIM_CLOSE_NOW,      /* drop pending writes, FIN */
  SIM_CLOSE_GRACEFUL, /* after queued writes, shutdown then close */
  SIM_CLOSE_RESET     /* SO_LINGER 0: RST */
};

enum sim_action {
  SIM_ACT_RESPOND,
  SIM_ACT_CLOSE,
  SIM_ACT_RESET,
  SIM_ACT_TRICKLE,
  SIM_ACT_HANG,
  SIM_ACT_RESET_MID_BODY,
  SIM_ACT_STREAM,
  SIM_ACT_STREAM_FAIL_AFTER,
  /* Anthropic's in-stream failure: an "event: error" after N events, then
   * the stream ends properly */
  SIM_ACT_STREAM_ERROR_AFTER
};

typedef struct sim_listener {
  uv_tcp_t tcp;
  int is_control;
} sim_listener;

/* State of an answer that is not written at once (delay, trickle, SSE). */
typedef struct sim_pending {
  int action;
  int step; /* 0 = waiting for delay_ms, then action-specific */
  sim_buf head, body;
  size_t off;
  size_t chunk;     /* trickle bytes per tick */
  uint64_t tick_ms; /* trickle / stream interval */
  int events_sent;  /* SSE */
  int fail_after;   /* SSE: close after this many events, -1 never */
  int keep_alive;
  int head_only; /* HEAD request */
} sim_pending;

typedef struct sim_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  llhttp_t parser;
  sim_listener *listener;
  sim_req req;
  sim_buf in; /* bytes read while an answer was pending */
  size_t in_off;
  sim_buf out; /* responses not yet handed to the kernel */
  sim_pending pend;
  int open_handles;
  unsigned long stats_epoch; /* stats generation this connection counted in */
  unsigned busy : 1, closing : 1, read_eof : 1, reading : 1, done : 1,
      msg_complete : 1, shutting : 1;
  struct sim_conn *prev, *next;
} sim_conn;

/* Appends bytes to the connection's output; sim_conn_flush() sends them. */
void sim_conn_write(sim_conn *c, const void *p, size_t n);
void sim_conn_flush(sim_conn *c);
/* An asynchronous answer finished: go on with pipelined requests. */
void sim_conn_async_done(sim_conn *c);
void sim_conn_close(sim_conn *c, int mode);
int sim_listen(sim_listener *l, const char *hostport, int is_control,
               char *bound, size_t bound_len);
void sim_close_all(void);

/* Response head: status line, Date, Server, Content-Type (unless NULL),
 * `extra` header lines, Content-Length (or chunked when clen < 0) and the
 * connection header. Written into `b`. */
void sim_head(sim_buf *b, int status, const char *ctype, const char *extra,
              long long clen, int keep_alive, int skip_clen);

/* ---- answering upstream requests (sim_respond.c) ----------------------- */

/* Returns 0 when the answer is complete in c->out, 1 when it continues
 * asynchronously (the connection then calls sim_conn_async_done). */
int sim_respond(sim_conn *c);
/* The connection is closing: stop timers, drop pending state. */
void sim_respond_cancel(sim_conn *c);

/* ---- control API (sim_control.c) --------------------------------------- */

/* Answers a control request synchronously into c->out. `sub` is the path
 * with the /__sim prefix removed. */
void sim_control(sim_conn *c, const char *sub);
void sim_json_reply(sim_conn *c, int status, json_t *doc); /* steals doc */

/* ---- rules (sim_rules.c) ----------------------------------------------- */

typedef struct sim_preset sim_preset;

typedef struct sim_spec {
  int action;
  int status; /* 0 = the default answer's status */
  char *body; /* NULL = the default answer's body */
  size_t body_len;
  char *ctype;      /* NULL = default */
  char *headers;    /* "Name: value\r\n" lines, may be empty */
  int user_framing; /* rule set Content-Length / Transfer-Encoding itself */
  long long delay_ms;
  long long trickle_bps;
  int fail_after;
  long long stream_delay_ms; /* -1 = global setting */
  long long times;           /* -1 = unlimited */
  struct sim_spec *then;
} sim_spec;

/* Adds one rule (object) or several (array, all or nothing); path_override
 * (may be NULL) wins over "path". Returns {"ok":true,"ids":[...]} or NULL
 * with a message in err. */
json_t *sim_rules_add(json_t *rules, const char *path_override, char *err,
                      size_t errlen);
/* Removes rules for a path (method NULL = all methods); count removed. */
int sim_rules_remove(const char *path, const char *method);
int sim_rules_clear(void);
json_t *sim_rules_json(void);
/* The stage to apply for this request, consuming one use; NULL = default. */
const sim_spec *sim_rules_match(const char *path, const char *method);

/* ---- the identity provider (sim_idp.c) ---------------------------------- */

/* The default answer of an identity-toolkit call (sign-in, lookup) into b:
 * its status, or 0 when r is not one. */
int sim_idp_answer(const sim_req *r, sim_buf *b);

/* ---- presets and built-in bodies (sim_presets.c) ----------------------- */

struct sim_preset {
  const char *name;
  int status;
  const char *body;
  const char *headers; /* "Name: value\r\n" lines */
};

const sim_preset *sim_preset_find(const char *name);
json_t *sim_presets_json(void);
const char *sim_reason(int status);
/* Anthropic-style SSE events of the canned reply. */
extern const char *const sim_sse_events[];
extern const int sim_sse_nevents;
/* The error event Anthropic sends mid-stream when it is overloaded. */
extern const char sim_sse_error_event[];

/* ---- stats and recorded requests (sim_record.c) ------------------------ */

void sim_stats_count(sim_conn *c);
/* `asker` is left out of the open connection count. */
json_t *sim_stats_json(const sim_conn *asker);
void sim_stats_reset(void);
void sim_record(const sim_req *r);
/* What the simulator answered the request just recorded: the status line
 * it sends (0: none, for close / reset / hang) and the rule's action. */
void sim_record_answer(int status, int action);
json_t *sim_requests_json(const char *path, const char *method, long limit);
void sim_record_clear(void);
void sim_record_free(void);

/* ---- global state (sim_main.c) ----------------------------------------- */

typedef struct sim_state {
  uv_loop_t *loop;
  sim_conn *conns;      /* open connections, for shutdown */
  long long open_conns; /* on the main listener */
  long long stream_delay_ms;
  long long stream_delay_default; /* from the command line, for /reset */
  unsigned long long seq;         /* ids for built-in objects */
  int verbose;
  /* --name: which provider this instance plays when a test runs several
   * (the primary and its fallbacks); in stats and a Messages reply's
   * "model" */
  const char *name;
} sim_state;

extern sim_state sim_g;

#endif
