/*
 * The daemon's internal state: listeners, connections, requests, plugins.
 * Everything here lives on one event loop; nothing is shared across threads
 * except through log.h.
 */
#ifndef BH_CORE_DAEMON_H
#define BH_CORE_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "bulkhead/plugin.h"
#include "config.h"
#include "llhttp.h"
#include "problem.h"
#include "router.h"
#include "validate.h"

typedef struct bh__daemon bh__daemon;
typedef struct bh__conn bh__conn;
typedef struct bh__plugin bh__plugin;

/* ---------------------------------------------------------------------- */
/* Plugins                                                                 */
/* ---------------------------------------------------------------------- */

enum bh__plugin_state {
  BH__PLUGIN_DISABLED = 0, /* enabled = false in config */
  BH__PLUGIN_FAILED,       /* load or init or start failed */
  BH__PLUGIN_INITIALIZED,  /* init done, loop not started yet */
  BH__PLUGIN_LOADED,       /* serving */
  BH__PLUGIN_QUARANTINED   /* charged with too many crashes or hangs */
};

struct bh_ctx {
  const bh_services *svc; /* bh_handle_head: must stay first */
  bh__plugin *plugin;
};

typedef struct bh__route {
  char *method;
  char *pattern;
  bh_handler_fn handler;
  void *data;
  uint32_t flags;
  size_t max_body_bytes; /* resolved: never 0 */
  uint32_t timeout_ms;   /* resolved: never 0 */
  char *rate_limit;
  struct bh__limit *limit; /* resolved rate_limit policy */
  bh__plugin *plugin;
} bh__route;

struct bh__plugin {
  bh_ctx ctx;
  bh__daemon *d;
  const bh__plugin_conf *conf;
  char *name;
  char *path; /* resolved path of the .so */
  char *data_dir;
  void *dl;
  const bh_plugin_desc *desc;
  int state;
  int in_init;                /* registration services are allowed only then */
  char *reg_error;            /* first registration failure during init */
  struct bh__shm_plugin *shm; /* containment state and what ops see */
  int shm_index;
  char last_error[256];
  const char *reason; /* why not serving: "disabled", "load_failed",
                         "init_failed", "start_failed" */
  void *data;         /* bh_set_data */

  bh_error_row *rows; /* copied error map, strings owned */
  size_t nrows;
  bh__code *codes; /* catalogue: rows deduplicated by code + defaults */
  size_t ncodes;

  bh__route **routes; /* routes this plugin registered */
  size_t nroutes;
  void **proxies; /* proxy route data, freed at unload */
  size_t nproxies;
};

/* ---------------------------------------------------------------------- */
/* Requests                                                                */
/* ---------------------------------------------------------------------- */

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
  bh__buf body;
  size_t body_limit;
  int bad_path; /* the target is not an origin-form path we serve */
  int is_head;
  int no_body; /* HEAD, or a 204/304 answer: no body bytes leave */
  int expect_continue;

  /* routing */
  int match_result; /* enum bh__match_result */
  char allow[96];   /* for 405 */
  bh__route *route;
  bh__plugin *plugin; /* owner of the path (route or mount) */
  bh__match match;
  char **params; /* decoded param values, lazily */

  char id[80];
  char client_addr[64];
  uint64_t start_ns;

  /* response */
  bh__buf resp_headers; /* "Name: value\r\n" lines set by the plugin */
  int status;
  const char *code; /* problem code answered, for the access log */
  int answered;     /* a response went (or is going) to the client */
  int streaming;    /* head sent, body in progress */
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
  int rl_addr_held; /* bh__limit_gate charged the address bucket (limits.c) */
};

/* ---------------------------------------------------------------------- */
/* Connections and listeners                                               */
/* ---------------------------------------------------------------------- */

enum bh__listener_kind { BH__LISTENER_API = 0, BH__LISTENER_ADMIN = 1 };

typedef struct bh__listener {
  uv_tcp_t tcp;
  bh__daemon *d;
  int kind;
  int open;
  char address[80]; /* bound "host:port" */
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
  uv_timer_t timer;      /* idle / header / body timeout, then handler deadline;
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

/* ---------------------------------------------------------------------- */
/* The daemon                                                              */
/* ---------------------------------------------------------------------- */

enum bh__role {
  BH__ROLE_SINGLE = 0, /* workers = 0: everything in one process */
  BH__ROLE_MASTER,     /* admin listener, supervises workers, runs no plugin */
  BH__ROLE_WORKER      /* API listener and plugins */
};

struct bh__daemon {
  uv_loop_t *loop;
  int role;
  int api_fd; /* worker: the listening socket inherited from the master */
  uv_timer_t heartbeat;
  struct bh__client *client; /* upstream client */
  struct bh_upstream *upstreams;
  struct bh__metrics *metrics;
  int metrics_shared;       /* the registry lives in the shared mapping */
  struct bh__limit *limits; /* rate-limit policies in use */
  bh__config *cfg;
  const bh_services *svc;
  bh__router *router;
  bh__plugin *plugins;
  size_t nplugins;
  bh__listener api;
  bh__listener admin;
  bh__conn *conns;
  size_t nconns;
  llhttp_settings_t parser_settings;
  uv_signal_t sig_term, sig_int;
  uv_timer_t drain_timer;
  uint64_t beats;
  uint64_t drain_started_ms;
  int stopping;
  uint64_t started_ms;
  uint64_t requests_total;
};

/* daemon.c: lifecycle */
/* Creates the data directory, router, metrics; in a single process or a
 * worker also the upstream client and the plugins (loaded and inited). */
int bh__daemon_init(bh__daemon *d, bh__config *cfg, uv_loop_t *loop, int role,
                    int api_fd);
int bh__daemon_listen(bh__daemon *d);
/* Logs the "listening" events (tests and ops wait for them). */
void bh__daemon_announce(bh__daemon *d);
/* Starts plugins and runs the loop until a drain completes. */
int bh__daemon_run(bh__daemon *d);
void bh__daemon_free(bh__daemon *d);
/* Closes every handle left and the loop itself. */
void bh__loop_close(uv_loop_t *loop);
/* workers = auto resolved to the number of CPUs. */
int bh__workers_count(const bh__config *cfg);
/* A forked worker's whole life; returns its exit status. */
int bh__worker_main(bh__config *cfg, int api_fd, int generation);
void bh__sd_notify(const char *state);

/* master.c: supervision (see there) */
int bh__master_run(bh__daemon *d, const char *config_path);
/* From the admin API: re-read the config / lift a quarantine. 0, or a
 * negative errno with a one-line reason in err (-ENOTSUP in one process,
 * -EBUSY for a reload while the previous one's generation is starting). */
int bh__master_reload(char *err, size_t errlen);
/* 1 while a reload's new generation is starting (master only). */
int bh__master_reloading(void);
int bh__master_release(const char *name, char *err, size_t errlen);

/* http.c: listeners and connections */
int bh__listen(bh__daemon *d, bh__listener *l, int kind, const char *addr);
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
/* First value of a request header (name case-insensitive), or NULL. */
const char *bh__req_header(bh_req *req, const char *name);
/* Called once the response for conn->req is queued: resume the connection
 * (next pipelined request, idle timer, or close). */
void bh__conn_request_done(bh__conn *c);

/* services.c: percent-decodes the route's parameters into req->params
 * before the handler runs. 0; -EINVAL when one decodes to a NUL, '\',
 * '?', '#', a "." or ".." segment, or (a {name} capture) a '/'; -ENOMEM. */
int bh__params_decode(bh_req *req);

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
/* Looks a code up: the route's plugin first, then every plugin, then the
 * core. NULL when unknown. */
const bh__code *bh__code_find(bh__daemon *d, bh__plugin *p, const char *code);
/* Drops one reference; frees the request at zero. */
void bh__req_unref(bh_req *req);
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
uint64_t bh__now_ns(void);

/* dispatch.c: the request path */
/* Called at headers complete: route, mount, limits. Returns 0 to read the
 * body, or negative when the request was already answered. */
int bh__dispatch_head(bh_req *req);
/* Called at message complete: run the handler or admin endpoint. */
void bh__dispatch(bh_req *req);
/* The handler deadline fired. */
void bh__dispatch_deadline(bh_req *req);
/* The rest of bh__dispatch once the session middleware let the caller in
 * (after an asynchronous check: API key, silent refresh). */
void bh__dispatch_resume(bh_req *req);

/* reqid.c */
/* After fork: a fresh random stream, so workers never share ids. */
void bh__reqid_reseed(void);
/* Accepts a sane incoming id or generates a ULID into out (>= 80 bytes). */
void bh__reqid(const char *incoming, char *out, size_t outlen);

/* plugins.c: loader */
/* Writes what ops see of every plugin (state, routes, catalogue) to the
 * shared mapping. */
void bh__plugins_publish(bh__daemon *d);
int bh__plugins_load(bh__daemon *d);
int bh__plugins_start(bh__daemon *d);
void bh__plugins_stop(bh__daemon *d);
void bh__plugins_unload(bh__daemon *d);
/* The plugin owning `path` by longest mount prefix, or NULL. */
bh__plugin *bh__plugin_for_path(bh__daemon *d, const char *path);
const char *bh__plugin_state_name(int state);
/* The code catalogue as JSON (for --list-codes and GET /admin/errors). */
int bh__catalogue_json(bh__daemon *d, bh__buf *out);

/* errmap.c: error-map tables */
/* Checks and copies `rows` into p (rows + codes). 0, or -EINVAL with the
 * reason written to why. */
int bh__errmap_register(bh__plugin *p, const bh_error_row *rows, size_t n,
                        char *why, size_t whylen);
/* Adds "<plugin>.timeout", ".upstream_unavailable", ".upstream_timeout",
 * ".upstream_error" unless the plugin declared them. */
int bh__errmap_defaults(bh__plugin *p);
void bh__errmap_free(bh__plugin *p);
const bh__code *bh__errmap_code(const bh__plugin *p, const char *code);

/* services.c */
const bh_services *bh__services(void);
/* Registers a route for p (init only); the one path for plugin routes and
 * proxy routes. */
int bh__route_register(bh__plugin *p, const bh_route *r);

/* limits.c: rate-limit policies */
/* The policy `name`, created from [rate_limit.NAME] on first use; NULL with
 * the reason in why. */
struct bh__limit *bh__limit_get(bh__daemon *d, const char *name, char *why,
                                size_t whylen);
void bh__limits_free(bh__daemon *d);
/* 0: allowed (RateLimit headers added); negative: answered 429. */
int bh__limit_check(bh_req *req);
/* Before an API-key lookup on a route whose policy is key = api_key: one
 * token from the caller's address bucket, given back once the key proves
 * valid. 0, or answered 429 (no lookup is made). */
int bh__limit_gate(bh_req *req);

/* proxy.c */
int bh__proxy_add(bh__plugin *p, const char *prefix, struct bh_upstream *u,
                  uint32_t flags);

/* telemetry.c: metrics fed by the request path and the upstream client */
int bh__telemetry_init(bh__daemon *d);
void bh__telemetry_free(bh__daemon *d);
void bh__metrics_request(bh_req *req);
void bh__metrics_upstream(bh__daemon *d, struct bh_upstream *u, int outcome,
                          uint32_t transport, int status, uint32_t attempts,
                          uint64_t duration_ms);
void bh__metrics_retry(bh__daemon *d, struct bh_upstream *u);
void bh__metrics_rate_limited(bh__daemon *d, const char *policy);
/* Renders /metrics (gauges sampled at render time). */
int bh__metrics_text(bh__daemon *d, bh__buf *out);

/* admin.c */
void bh__admin_dispatch(bh_req *req);
/* dispatch.c: application/json or any application/<x>+json, parameters
 * allowed. */
int bh__is_json(const char *ct);

#endif
