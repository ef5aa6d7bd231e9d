/*
 * webhooks plugin internals, shared by its files:
 *   webhooks.c    descriptor, config, lifecycle, routes, error map
 *   wh_api.c      HTTP handlers (loop thread): checks, jobs, answers
 *   wh_store.c    the store: a core job queue run against the database
 *   wh_ops.c      the SQL of every API operation (store thread)
 *   wh_db.c       opening, migrating and watching the SQLite file
 *   wh_db_pg.c    or, with [store] backend = postgres, the shared schema
 *                 bh_webhooks (store_connect)
 *   wh_sql.c      statements on either backend (one copy of the SQL)
 *   wh_dispatch.c the dispatcher thread: claim, send, record
 *   wh_send.c     one HTTP delivery on libcurl (dispatcher thread)
 *   wh_sign.c     secrets and Standard Webhooks signatures
 *   wh_url.c      endpoint URL checks and address classes (SSRF)
 *
 * Threads: the loop thread runs handlers and answers requests; the store
 * thread owns one database connection and runs API jobs; the dispatcher
 * thread owns another connection and a curl multi handle. They meet only
 * through the job and log queues (mutex + condition), one mutex that
 * serialises the two connections' write transactions, atomic flags, and
 * the wakeup the core offers (ABI 1.1); no thread but the loop's touches
 * a bh_req or calls a service other than bh_wakeup_send() (and, on
 * postgres, store_connect() / store_disconnect() for their connections).
 */
#ifndef WH_H
#define WH_H

#include <bulkhead/plugin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WH_VERSION "1.0.0"
#define WH_MAX_SCHEDULE 32
#define WH_ID_MAX 64

typedef struct sqlite3 sqlite3;

/* ---- configuration (webhooks.c) ----------------------------------------- */

typedef struct wh_config {
  char db_path[4096];
  int64_t schedule_ms[WH_MAX_SCHEDULE]; /* wait before attempt i+1 */
  int nschedule;                        /* attempts per round */
  int jitter_pct;
  int64_t retry_after_max_ms;
  int64_t timeout_ms; /* one attempt */
  int64_t connect_timeout_ms;
  int64_t lease_ms;  /* > timeout_ms: a claim outlives its attempt */
  int64_t poll_ms;   /* look for work of other processes this often */
  int max_in_flight; /* all processes sharing the database */
  int max_per_endpoint;
  int breaker_failures; /* consecutive failures that open it */
  int64_t breaker_open_ms;
  int64_t rotation_grace_ms;
  int allow_loopback, allow_private, allow_link_local;
  /* allowed_ports: any_port, or a bit per port in port_ok */
  int any_port;
  unsigned char port_ok[65536 / 8];
  int64_t busy_timeout_ms;
  int sync_full;      /* synchronous = FULL (else NORMAL) */
  size_t max_payload; /* event body limit */
  /* GET /deliveries/stream (wh_stream.c) */
  int64_t stream_poll_ms;      /* look for new changes this often */
  int64_t stream_heartbeat_ms; /* a comment when nothing else was sent */
  int64_t stream_retry_ms;     /* the reconnect delay the client is told */
  int stream_max_per_principal;
  int stream_max_total;        /* of this worker process */
  long stream_max_buffer;      /* unsent bytes before a reader is cut */
  int64_t stream_retention_ms; /* changes kept for resuming */
} wh_config;

/* ---- time and ids (wh_sign.c) ------------------------------------------ */

int64_t wh_now_ms(void); /* wall clock: stored, shared across processes */
int64_t wh_mono_ms(void);
/* "<prefix>_" + 24 lowercase hex characters of random bytes. */
void wh_new_id(char *out, size_t len, const char *prefix);
/* RFC 3339 UTC with milliseconds, "2024-05-01T12:00:00.000Z". */
void wh_time_str(int64_t ms, char *out, size_t len);
int wh_id_ok(const char *s); /* an id we could have made */

/* ---- secrets and signatures (wh_sign.c) -------------------------------- */

/* A fresh "whsec_<base64 of 32 random bytes>". out >= 64 bytes. */
void wh_secret_new(char *out, size_t len);
/* "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" appended to out (with
 * a leading space when out is not empty). 0, or -EINVAL for a malformed
 * secret, -ENOSPC when out is too small. */
int wh_sign(const char *secret, const char *msg_id, int64_t ts_s,
            const char *body, size_t body_len, char *out, size_t outlen);

/* ---- URLs and addresses (wh_url.c) ------------------------------------- */

enum wh_addr_class {
  WH_ADDR_PUBLIC = 0,
  WH_ADDR_LOOPBACK,
  WH_ADDR_PRIVATE,    /* RFC 1918, unique local, carrier-grade NAT */
  WH_ADDR_LINK_LOCAL, /* 169.254/16 (cloud metadata), fe80::/10 */
  WH_ADDR_RESERVED    /* unspecified, multicast, broadcast, documentation,
                         Teredo, discard-only */
};

struct sockaddr;
/* IPv4 addresses embedded in IPv6 (mapped, translated, NAT64, 6to4) are
 * judged as the IPv4 address. */
int wh_addr_class(const struct sockaddr *sa);
/* The config allows sending to this class. */
int wh_addr_allowed(const wh_config *cfg, int cls);
/* The config allows sending to this TCP port (allowed_ports). */
int wh_port_allowed(const wh_config *cfg, int port);
/* Parses allowed_ports ("any", or ports and ranges: "80, 443, 8000-8999")
 * into cfg. 0, or -EINVAL. */
int wh_ports_parse(wh_config *cfg, const char *v);
/* Checks an endpoint URL: http or https, a host, no credentials, no
 * fragment, a port allowed_ports allows, and a literal address or
 * well-known local name of a class the config allows. 0, or -EINVAL with
 * the cause in why: for the log only, never for the caller (who learns no
 * more than webhooks.invalid_url). */
int wh_url_check(const wh_config *cfg, const char *url, const char **why);

/* ---- the database (wh_db.c) -------------------------------------------- */

typedef struct sqlite3_stmt sqlite3_stmt;
/* A statement on either backend (wh_sql.c): SQLite's prepared statement,
 * or on PostgreSQL the statement's SQL translated once and its parameters
 * bound as text, sent when stepped. */
typedef struct wh_stmt wh_stmt;

typedef struct wh_db {
  sqlite3 *h;
  struct {
    const char *sql; /* a static string: cached by its address */
    wh_stmt *st;
  } cache[64];
  int ncache;
  const wh_config *cfg;
  dev_t dev;
  ino_t ino;
  int64_t retry_at_ms; /* monotonic: no reopen attempt before this */
  int failing;         /* last open or check failed */
  int ever_opened;     /* once it existed, a missing file is not recreated */
  int relaxed;         /* synchronous = NORMAL whatever the config says */
  int64_t busy_since;  /* monotonic ms, for the busy handler */
  /* serialises the writes of this process's connections, so they hand the
   * write lock over at once instead of polling for it */
  pthread_mutex_t *write_mu;
  /* [store] backend = postgres: the shared database (schema bh_webhooks,
   * through store_connect) instead of the file */
  bh_ctx *ctx;
  int postgres;
  void *pg;           /* PGconn * */
  int64_t pg_changes; /* rows the last statement changed */
} wh_db;

/* Opens (create: may create the file) and migrates; 0 or -errno. */
int wh_db_open(wh_db *db, const wh_config *cfg, int create);
/* 0 when the connection still refers to the file at the configured path
 * (opening or reopening it if not, at most every 100 ms); negative:
 * unavailable. db->cfg must be set. */
int wh_db_ensure(wh_db *db);
void wh_db_close(wh_db *db);
/* A statement result code that means the store itself is failing (disk,
 * permissions, corruption, locked past the busy timeout): the connection
 * is dropped and reopened on the next use. */
int wh_db_fatal(int sqlite_rc);
int wh_db_exec(wh_db *db, const char *sql);
/* BEGIN IMMEDIATE under the process's write mutex / COMMIT (or ROLLBACK
 * when commit is 0 or the commit fails) and release it. */
int wh_db_write_begin(wh_db *db);
int wh_db_write_end(wh_db *db, int commit);
/* A prepared statement for the static string `sql`, reset and unbound,
 * owned by the connection; NULL on failure (*rc set). */
wh_stmt *wh_db_stmt(wh_db *db, const char *sql, int *rc);
/* Inside a transaction (a ROLLBACK is due after a failure). */
int wh_db_in_tx(wh_db *db);
/* Rows changed by the last statement. */
int64_t wh_db_changes(wh_db *db);
/* PostgreSQL (wh_db_pg.c): schema bh_webhooks and its migrations, declared
 * in the descriptor (the core checks and migrates it without starting the
 * plugin); connect through store_connect unless connected, at most every
 * 100 ms. */
extern const bh_store_schema wh_pg_schema;
int wh_db_pg_ensure(wh_db *db);
void wh_db_pg_close(wh_db *db);
int wh_db_pg_exec(wh_db *db, const char *sql); /* SQLITE_OK or a code */
int wh_db_pg_in_tx(wh_db *db);

/* ---- statements on either backend (wh_sql.c) ---------------------------
 * SQLite's names and result codes (SQLITE_ROW, SQLITE_DONE, SQLITE_NULL),
 * so the SQL of wh_ops.c and wh_dispatch.c is written once: on PostgreSQL
 * a failure maps to SQLITE_CONSTRAINT (class 23: the job's input),
 * SQLITE_BUSY (serialization, deadlock) or SQLITE_IOERR (the store). */
wh_stmt *wh_stmt_new(wh_db *db, const char *sql, int *rc);
void wh_stmt_free(wh_stmt *st);
void wh_bind_int64(wh_stmt *st, int i, int64_t v);
void wh_bind_int(wh_stmt *st, int i, int v);
/* `s` is borrowed until the statement is stepped and reset (NULL: NULL) */
void wh_bind_text(wh_stmt *st, int i, const char *s);
int wh_step(wh_stmt *st);
void wh_reset(wh_stmt *st);          /* keeps the bindings */
void wh_unbind(wh_stmt *st);         /* reset and forget them */
int wh_col_type(wh_stmt *st, int i); /* SQLITE_NULL or another */
int64_t wh_col_int64(wh_stmt *st, int i);
int wh_col_int(wh_stmt *st, int i);
const unsigned char *wh_col_text(wh_stmt *st, int i); /* NULL for NULL */
/* The PostgreSQL text of a statement written for SQLite (malloc'd), its
 * highest parameter and a bit per parameter it uses. */
char *wh_sql_pg(const char *sql, int *nparams, unsigned *used);

/* ---- API jobs (wh_store.c, wh_ops.c) ----------------------------------- */

typedef enum wh_op {
  WH_OP_EP_CREATE = 1,
  WH_OP_EP_LIST,
  WH_OP_EP_GET,
  WH_OP_EP_PATCH,
  WH_OP_EP_DELETE,
  WH_OP_EP_ROTATE,
  WH_OP_EVENT_CREATE,
  WH_OP_DLV_LIST,
  WH_OP_DLV_GET,
  WH_OP_DLV_RETRY,
  WH_OP_STREAM_POLL, /* the changes after `cursor`, as SSE frames */
  WH_OP_STREAM_PRUNE /* forget changes older than the retention */
} wh_op;

typedef struct wh_job {
  bh_job job; /* first: the core queue's node */
  wh_op op;
  bh_req *req; /* touched on the loop thread only */
  const wh_config *cfg;
  /* inputs, owned by the job */
  char *owner;        /* every operation is scoped to it (a user id) */
  char id[WH_ID_MAX]; /* endpoint or delivery */
  char *url, *description, *type, *data, *idem_key;
  char **events;
  size_t nevents;
  int set_url, set_events, set_description, set_enabled, enabled;
  char status_filter[16];
  char endpoint_filter[WH_ID_MAX];
  int64_t limit, cursor; /* cursor 0: first page */
  /* outputs */
  int status;          /* HTTP status of a success */
  char *body;          /* its JSON body */
  const char *code;    /* or the Problem code */
  int replayed;        /* an idempotent replay of an earlier event */
  int wake_dispatcher; /* new work for the dispatcher */
  /* WH_OP_STREAM_POLL: the stream it polls for (loop thread only), the
   * last change it read (seq_out >= cursor) and how many */
  struct wh_stream *stream;
  int64_t seq_out;
  int nchanges;
  int check_owner; /* first poll: endpoint_filter must be the owner's */
} wh_job;

wh_job *wh_job_new(wh_op op, bh_req *req, const wh_config *cfg);
void wh_job_free(wh_job *j);
/* Runs one job inside the store's open transaction (wh_ops.c). 0, or a
 * SQLite error code that means the store is failing (the batch is then
 * rolled back and every job answered webhooks.unavailable). */
int wh_ops_run(wh_db *db, wh_job *j);

typedef struct wh_plugin wh_plugin;
typedef struct wh_streams wh_streams;

/* The store: a core job queue. Jobs go in on the loop thread and come
 * back, done, to wh_api_job_done() on the loop. */
typedef struct wh_store {
  wh_plugin *wp;
  bh_jobq *q;
  wh_db db; /* the queue's thread only */
} wh_store;

int wh_store_start(wh_store *s, wh_plugin *wp);
/* Queues a job (loop thread). -EAGAIN when the queue is full, -ESHUTDOWN
 * once stopping; the job stays the caller's then. */
int wh_store_submit(wh_store *s, wh_job *j);
/* Runs what is queued, joins the thread and answers every job that came
 * back (wh_api_job_done) before it returns. */
void wh_store_stop(wh_store *s);

/* ---- the dispatcher (wh_dispatch.c) ------------------------------------ */

typedef struct wh_dispatcher wh_dispatcher;

int wh_dispatch_start(wh_dispatcher **out, wh_plugin *wp);
/* Any thread: look for due work now. */
void wh_dispatch_kick(wh_dispatcher *d);
/* Any thread: stop claiming; transfers in flight get a second to finish,
 * then are abandoned and their leases given back; the thread exits. */
void wh_dispatch_signal_stop(wh_dispatcher *d);
/* Signals, joins the thread and frees `d`. */
void wh_dispatch_stop(wh_dispatcher *d);

/* ---- one delivery over HTTP (wh_send.c) -------------------------------- */

typedef struct wh_send {
  /* filled by the dispatcher */
  int64_t seq;
  char id[WH_ID_MAX]; /* delivery */
  char event_id[WH_ID_MAX];
  char endpoint_id[WH_ID_MAX];
  char *url;
  char *payload;
  size_t payload_len;
  char signature[512];
  int64_t timestamp_s;
  int attempt;        /* 1-based, over the delivery's life */
  int round_attempt;  /* 1-based, within the current retry round */
  int64_t started_ms; /* wall clock */
  int64_t started_mono;
  /* results */
  int status;             /* HTTP status, 0 when none arrived */
  char error[96];         /* transport failure, user-safe */
  int64_t retry_after_ms; /* -1 none */
  int64_t duration_ms;
  void *easy;    /* CURL * */
  void *headers; /* struct curl_slist * */
  size_t received;
  const wh_config *cfg;
  struct wh_send *next;
} wh_send;

/* Prepares the transfer (easy handle, headers). 0 or -ENOMEM. */
int wh_send_prepare(wh_send *s);
/* After the transfer ended with curl code `cc`: fills status / error. */
void wh_send_finish(wh_send *s, int cc);
void wh_send_free(wh_send *s);

/* ---- the plugin (webhooks.c) ------------------------------------------- */

typedef struct wh_logline {
  struct wh_logline *next;
  int level;
  char msg[];
} wh_logline;

struct wh_plugin {
  bh_ctx *ctx;
  wh_config cfg;
  wh_store store;
  wh_dispatcher *disp;
  bh_wakeup *wakeup;
  volatile int store_down;  /* atomic: the store thread cannot reach it */
  volatile int disp_down;   /* atomic: the dispatcher cannot */
  int postgres;             /* [store] backend = postgres: shared store */
  pthread_mutex_t write_mu; /* see wh_db.write_mu */
  pthread_mutex_t log_mu;
  wh_logline *logs, *logs_tail;
  int nlogs;
  wh_streams *streams; /* wh_stream.c */
};

/* Sets a *_down flag from its thread and logs the transitions. */
void wh_set_down(wh_plugin *wp, volatile int *flag, int down, const char *who);

/* Any thread: a log line for the loop to write (services are loop-only).
 * Dropped when the queue is long: logs never hold a delivery up. */
void wh_log_post(wh_plugin *wp, int level, const char *fmt, ...)
    BH_PRINTF(3, 4);

/* Loop thread: answers a finished job (and frees it). */
void wh_api_job_done(wh_plugin *wp, wh_job *j);
/* Every route's handler (wh_api.c). */
void wh_endpoints_post(bh_req *req, void *data);
void wh_endpoints_list(bh_req *req, void *data);
void wh_endpoint_get(bh_req *req, void *data);
void wh_endpoint_patch(bh_req *req, void *data);
void wh_endpoint_delete(bh_req *req, void *data);
void wh_endpoint_rotate(bh_req *req, void *data);
void wh_events_post(bh_req *req, void *data);
void wh_deliveries_list(bh_req *req, void *data);
void wh_delivery_get(bh_req *req, void *data);
void wh_delivery_retry(bh_req *req, void *data);

/* ---- live delivery status (wh_stream.c) -------------------------------- */

/* wh_api.c: a job scoped to the caller's owner (NULL after answering), and
 * the stream's query (status, endpoint, lastEventId into j->cursor): 0, or
 * -EINVAL after answering webhooks.invalid_query. */
wh_job *wh_api_job(bh_req *req, wh_plugin *wp, wh_op op);
int wh_api_stream_query(bh_req *req, wh_job *j);

/* GET /v1/webhooks/deliveries/stream */
void wh_deliveries_stream(bh_req *req, void *data);
/* start(): the ticker thread; stop(): every stream ends with a final
 * comment; fini(): frees what is left. Loop thread. */
int wh_streams_start(wh_plugin *wp);
void wh_streams_stop(wh_plugin *wp);
void wh_streams_free(wh_plugin *wp);
/* From the wakeup: polls, heartbeats. */
void wh_streams_tick(wh_plugin *wp);
/* A finished WH_OP_STREAM_* job (wh_api_complete hands them over). */
void wh_streams_job_done(wh_plugin *wp, wh_job *j);

/* Atomic flag helpers. */
static inline void wh_flag_set(volatile int *f, int v) {
  __atomic_store_n(f, v, __ATOMIC_RELAXED);
}
static inline int wh_flag_swap(volatile int *f, int v) {
  return __atomic_exchange_n(f, v, __ATOMIC_RELAXED);
}
static inline int wh_flag_get(volatile int *f) {
  return __atomic_load_n(f, __ATOMIC_RELAXED);
}

#endif
