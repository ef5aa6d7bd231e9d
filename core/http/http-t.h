/*
 * The HTTP front's types: requests, connections, listeners, and the hooks
 * through which a listener hands each request to the layer that serves it
 * (the gateway for the API, the admin API for the admin listener).
 */
#ifndef BH_CORE_HTTP_HTTP_T_H
#define BH_CORE_HTTP_HTTP_T_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/ltimer.h"
#include "base/trace.h"
#include "bulkhead/plugin.h"
#include "http/router-t.h"
#include "llhttp.h"

typedef struct bh__daemon bh__daemon;
typedef struct bh__conn bh__conn;
typedef struct bh__plugin bh__plugin;
typedef struct bh__route bh__route;
typedef struct bh__body bh__body;

/* What a listener calls, all on the loop thread. on_head at headers
 * complete: route, set req->body_limit; 0 to read the body, negative when
 * the request was already answered. on_request at message complete: serve
 * it (answer now or later). on_deadline: the handler deadline armed with
 * bh__conn_deadline fired while the request was in flight. */
typedef struct bh__http_hooks {
  int (*on_head)(bh_req *req);
  void (*on_request)(bh_req *req);
  void (*on_deadline)(bh_req *req);
} bh__http_hooks;

/* Where the answer of a request with no connection goes: a composite's
 * section (gateway/composite.c) is served by the normal request path and
 * its answer, written by the one encoder as for any request, is handed
 * here instead of to a socket. on_answer: once, with the status, the
 * content type, the body (a streamed answer is gathered first) and the
 * core's own header lines (Cache-Control, Retry-After); resp_headers stay
 * on the request. deadline: the handler deadline of the section's route
 * (bh__req_deadline), instead of the connection's timer. */
typedef struct bh__sink {
  void (*on_answer)(bh_req *req, const char *content_type, const char *body,
                    size_t len, const char *core_headers);
  void (*deadline)(bh_req *req, uint32_t ms);
  int quiet; /* no access-log line, no request metrics (an internal check
                whose verdict other requests report) */
} bh__sink;

/* Where a streamed request body goes (a proxy route on the core's own
 * client): the handler runs once the head is parsed and the body is read
 * only while a sink takes it. on_data: bytes as the parser delivers them;
 * 1 asks to stop reading until bh__req_body_resume (the bytes given are
 * taken either way). on_end: once, with NULL when the body was read whole,
 * else the problem code that ended it (request.too_large past the route's
 * limit, request.bad_request for bad chunk framing or a client that
 * closed). Neither runs inside the other, and on_end may answer. */
typedef struct bh__body_sink {
  int (*on_data)(bh_req *req, const char *buf, size_t len, void *data);
  void (*on_end)(bh_req *req, const char *code, void *data);
} bh__body_sink;

typedef struct bh__header {
  const char *name; /* lower-cased */
  const char *value;
} bh__header;

struct bh_req {
  const bh_services *svc; /* bh_handle_head: must stay first */
  bh__daemon *d;
  bh__conn *conn; /* NULL once the connection is gone or moved on */
  int refs;       /* connection + plugin */

  /* parsed request; strings point into `raw` once headers are complete */
  bh__buf raw; /* url NUL, then name NUL value NUL pairs */
  size_t url_len;
  int in_value;     /* llhttp field/value callback state */
  int headers_done; /* later field callbacks are chunked trailers */
  const char *method;
  const char *path;  /* raw path, NUL-terminated copy */
  const char *query; /* after '?' or "" */
  bh__header *headers;
  size_t nheaders;
  /* the array headers points to once the head is complete: kept, with
   * its slots, when the request is reused (headers stays NULL until then) */
  bh__header *headers_mem;
  size_t headers_cap;
  bh__buf body;
  size_t body_limit;
  int bad_path; /* the target is not an origin-form path we serve */
  int is_head;
  int no_body; /* HEAD, or a 204/304 answer: no body bytes leave */
  int expect_continue;
  /* a streamed body (see bh__body_sink): body stays empty */
  int body_stream;       /* on_head: stream it if there is one */
  int body_open;         /* streamed and not yet read to its end */
  int body_flowing;      /* the sink takes bytes now */
  long long body_length; /* the client's Content-Length; -1 chunked */
  uint64_t body_seen;    /* streamed bytes so far, for body_limit */
  const bh__body_sink *body_sink;
  void *body_sink_data;

  /* routing */
  int match_result; /* enum bh__match_result */
  char allow[96];   /* for 405 */
  bh__route *route;
  bh__plugin *plugin; /* owner of the path (route or mount) */
  bh__match match;
  char **params; /* decoded param values, lazily, in params_mem */
  bh__buf params_mem;

  char id[80];
  bh__trace trace;        /* the gateway's span (bh__req_ids) */
  const char *tracestate; /* the caller's, passed on; NULL: none */
  /* the client: the peer, or what X-Forwarded-For said when the peer is
   * one of trusted_proxies (http/forwarded.c) */
  char client_addr[64];
  char peer_addr[64]; /* the connection's peer */
  int via_trusted;    /* the peer is a trusted proxy */
  uint64_t start_ns;

  /* response */
  bh__buf resp_headers; /* "Name: value\r\n" lines set by the plugin */
  bh__buf cors; /* CORS lines of every answer (Vary; Access-Control-* for
                   an allowed origin), set by the gateway at the head
                   (gateway/cors.c) */
  int cors_on;  /* the path's mount has a CORS policy: the gateway's lines
                   are the only Access-Control-* (a proxy drops the
                   upstream's) */
  int status;
  const char *code;    /* problem code answered, for the access log */
  char fallbacks[128]; /* "from>to,..." upstream fallbacks, for the access
                          log (host/services_ai.c); "" when none */
  int answered;        /* a response went (or is going) to the client */
  int streaming;       /* head sent, body in progress */
  int chunked;
  int head_held;    /* head_out holds the streamed head, not yet written */
  bh__buf head_out; /* leaves with the first body bytes: one write */
  void (*on_drain)(bh_req *req); /* write queue drained (streaming) */
  void *on_drain_data;
  struct bh__call *calls; /* upstream calls in flight */
  int plugin_holds;       /* handler called and not yet ended */

  bh__body *json;           /* body_parse result */
  const char *principal_id; /* set by the session middleware */
  struct bh__authn *authn;  /* the caller of an auth-required route (auth.h) */
  void *authn_mem; /* the block authn lives in, kept with the request when
                      it is reused (identity/auth_mw.c fills it) */
  /* for the access log: body bytes answered, the last upstream call */
  uint64_t resp_body_bytes;
  char upstream_name[48]; /* copied: a reload may free the upstream */
  int upstream_status;    /* 0: no answer */
  uint64_t upstream_us;
  uint32_t upstream_retries;
  int rl_addr_held; /* the rate-limit gate charged the address bucket
                       (gateway/limit_check.c) */

  /* a composite's section (gateway/composite.c): conn is NULL, the answer
   * goes to sink; sink_out gathers a streamed answer's body */
  const bh__sink *sink;
  void *sink_data;
  bh__buf sink_out;
  const char *composite; /* for the access log: the composite's name */
  const char *section;   /* ... and the section's key (sections only) */
};

enum bh__listener_kind { BH__LISTENER_API = 0, BH__LISTENER_ADMIN = 1 };

typedef struct bh__listener {
  uv_tcp_t tcp;
  bh__daemon *d;
  int kind;
  int open;
  const bh__http_hooks *hooks; /* the layer that serves its requests */
  char address[80];            /* bound "host:port" */
} bh__listener;

enum bh__conn_state {
  BH__CONN_IDLE = 0,   /* between requests */
  BH__CONN_HEADERS,    /* reading the request head */
  BH__CONN_BODY,       /* reading the body */
  BH__CONN_PROCESSING, /* request dispatched; later bytes are held */
  BH__CONN_CLOSING
};

struct bh__conn {
  uv_tcp_t tcp;
  bh__ltimer timer;      /* idle / header / body timeout, then handler deadline;
                            while lingering, the lingering timeouts */
  uv_timer_t send_timer; /* runs while writes are queued: send_timeout_ms */
  uv_shutdown_t shutdown; /* lingering close: our side's FIN */
  bh__daemon *d;
  bh__listener *listener;
  llhttp_t parser;
  int state;
  int handles_open; /* tcp + timers still to be closed */
  int keep_alive;
  int read_eof;
  int eof_held; /* EOF seen while a request was in flight: acted on once
                   reading would resume, as if reading had been paused */
  int reading;
  int served;        /* requests served on this connection */
  bh_req *req;       /* the request being read or processed */
  size_t head_bytes; /* bytes of the current request head */
  int fold_state;    /* obs-fold detector state, see http.c */
  char *pending;     /* bytes read past a paused parser */
  size_t pending_len;
  const char *early_code; /* answer chosen inside a parser callback */
  int message_done;       /* the parser paused at a message end */
  int body_dispatch;      /* the parser paused at a head whose body streams */
  int body_resume;        /* ... and must be resumed before the body */
  int body_pause;         /* the sink asked to stop reading */
  int pumping;            /* inside bh__conn_pump or a read: no re-entry */
  int write_blocked;      /* reading waits for the write queue to drain */
  int idle_arm;           /* entered idle: (re)arm the keep-alive timer once */
  uint64_t idle_since;    /* loop time it last became idle */
  int writes_pending;
  int close_after_write;
  int write_error;        /* a write failed: close, never linger */
  size_t send_left;       /* write queue size at the last send check */
  int lingering;          /* answered and shut down: reading to discard */
  size_t linger_bytes;    /* discarded so far */
  uint64_t linger_end;    /* loop time lingering ends at the latest */
  int refused;            /* over a connection limit: not counted in nconns */
  size_t field_len;       /* bytes of the header or trailer name being read */
  struct bh__ipcount *ip; /* per-address count (max_connections_per_ip) */
  int closed;
  char client_addr[64];
  struct bh__conn *next, *prev; /* daemon's list, for shutdown */
};

#endif
