/*
 * The upstream client: libcurl's multi interface driven by the libuv loop
 * (socket and timer callbacks; nothing blocks the loop), with the shared
 * retry, breaker and budget policies applied to every call.
 */
#ifndef BH_CORE_UPSTREAM_H
#define BH_CORE_UPSTREAM_H

#include <curl/curl.h>
#include <stdint.h>

#include "base/buf.h"
#include "bulkhead/plugin.h"
#include "config/config.h"
#include "policy/breaker.h"
#include "policy/retry.h"

typedef struct bh__daemon bh__daemon;
typedef struct bh__plugin bh__plugin;
typedef struct bh__call bh__call;

struct bh_upstream {
  char *name;
  char *base_url; /* no trailing slash */
  bh__plugin *plugin;
  uint32_t connect_timeout_ms;
  uint32_t timeout_ms;
  size_t max_response_bytes;
  int tls_verify;
  char *ca_file; /* [upstream.NAME] ca_file: CA bundle for https://, or NULL
                    (the system's) */
  int forward_credentials; /* proxy routes pass the caller's credentials */
  int transport_curl;      /* transport = curl: http:// on libcurl too */
  uint32_t max_idle, idle_timeout_ms, max_connections, dns_ttl_ms;
  struct bh__h1pool *pool; /* our own client's pool (h1_pool.c) */
  char **headers; /* "Name: value" from [upstream.NAME] header.* keys */
  size_t nheaders;
  bh__retry_cfg retry;
  bh__retry_budget *budget; /* shared state (shm with workers) */
  bh__breaker *breaker;     /* shared state (shm with workers) */
  int owns_state; /* breaker/budget malloc'd here rather than shared */
  struct bh__shm_upstream *shared; /* the slot every process sees */
  struct bh__limit *limit; /* local rate limit ([upstream] rate_limit) */
  char last_error[160];
  uint64_t last_error_ms;
  struct bh_upstream *next; /* daemon's list */
};

/* Streaming hooks for proxied calls. on_head returns 1 to stream the
 * answer through (no retry from then on), 0 to buffer it (it will be
 * retried or mapped). on_data returns 0, 1 to pause the transfer until
 * bh__call_resume(), or -1 to stop it (the call ends BH_OUTCOME_CANCELED
 * and the breaker records a success: the upstream was answering). */
typedef struct bh__call_stream {
  int (*on_head)(bh__call *call, int status, void *data);
  int (*on_data)(bh__call *call, const char *buf, size_t len, void *data);
  void *data;
  /* A request body that streams (bh__call_body_write, bh__call_body_end)
   * instead of rq->body: body_length bytes, or chunked when -1. Only on
   * the core's own client (bh__upstream_streams_body). on_writable runs
   * when an attempt's head went out and when the body queue drained below
   * its bound: bytes are welcome. Once a body byte went out the call is
   * not retried (nothing keeps the bytes). */
  int body_stream;
  long long body_length;
  void (*on_writable)(bh__call *call, void *data);
} bh__call_stream;

typedef struct bh__client bh__client;

int bh__client_init(bh__daemon *d);
/* Cancels every call (callbacks get BH_OUTCOME_CANCELED) and frees the
 * client once its handles are closed. */
void bh__client_close(bh__daemon *d);

/* Creates an upstream from def + [upstream.NAME] config. 0 or -errno with
 * a reason in why. */
int bh__upstream_new(bh__daemon *d, bh__plugin *p, const bh_upstream_def *def,
                     struct bh_upstream **out, char *why, size_t whylen);
void bh__upstreams_free(bh__daemon *d);
/* upstream_config.c: checks one [upstream.NAME] section (run at config
 * load by proc/load.c, so that `-t` and a reload refuse what a worker
 * would). 0 or -errno, the reason ("file:line: [section] key: ...") in
 * why. */
int bh__upstream_config_check(const bh__config *cfg, const bh__section *s,
                              char *why, size_t whylen);
void bh__upstream_free_one(struct bh_upstream *u);
struct bh_upstream *bh__upstream_find(bh__daemon *d, const char *name);

/* Starts a call (see bh_services.upstream_call). stream may be NULL. */
int bh__call_start(bh__daemon *d, bh_req *req, struct bh_upstream *u,
                   const bh_upstream_request *rq, bh_upstream_cb cb, void *data,
                   const bh__call_stream *stream);
void bh__call_resume(bh__call *call);
/* h1_body.c: the streamed body's bytes, copied (framed as chunks when
 * chunked). 0, 1 when the queue is past its bound (stop until
 * on_writable), or -errno (the attempt fails; its verdict comes through
 * the callback). */
int bh__call_body_write(bh__call *call, const char *buf, size_t len);
/* The streamed body is whole (the last chunk goes out when chunked). */
void bh__call_body_end(bh__call *call);
/* 1 when this upstream's calls can take a streamed body. */
int bh__upstream_streams_body(struct bh_upstream *u);
/* Response headers of the current attempt as "name: value\r\n" lines. */
const char *bh__call_headers(bh__call *call);
const char *bh__result_header(const bh_upstream_result *res, const char *name);
/* The same header copied into buf (NUL-terminated, cut to buflen - 1):
 * its full length, or -ENOENT. */
int bh__result_header_copy(const bh_upstream_result *res, const char *name,
                           char *buf, size_t buflen);
/* 1 when the call failed because the upstream's answer had a head we refuse
 * to relay (see bh__upstream_head_line): BH_OUTCOME_TRANSPORT with
 * BH_TRANSPORT_RESET, answered as <plugin>.upstream_error (502). */
int bh__result_malformed(const bh_upstream_result *res);

/* One line of an upstream answer's head, as libcurl hands it to the header
 * callback: a status line ("HTTP/1.1 200 OK"; it starts a new head, so a
 * 1xx's fields are forgotten), a field ("Name: value"), the blank line, or
 * a trailer field; LF or CRLF terminated. A field is appended to `block`
 * as "name: value\r\n", name lower-cased and the value without surrounding
 * whitespace, which is the form bh__call_headers() returns and the proxy
 * relays. 0; -EPROTO for a line that must not be relayed (a status line
 * that is not HTTP/x SP 1xx..5xx [SP reason], a field name that is not a
 * token, a control byte other than HTAB in a value or the reason, an
 * obs-fold line, a line with no colon); -ENOMEM (block failed). */
int bh__upstream_head_line(bh__buf *block, const char *line, size_t len);
/* The same for one field given as name and value (the value's blanks not
 * yet trimmed), as the core's own client parses them. */
int bh__upstream_head_field(bh__buf *block, const char *name, size_t nl,
                            const char *value, size_t vl);

/* Cancels the calls of a request that was answered (deadline). */
void bh__calls_cancel(bh_req *req);

#endif
