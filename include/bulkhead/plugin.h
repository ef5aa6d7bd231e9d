/*
 * bulkhead plugin SDK — the only header a plugin includes.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * BH_ENTRY_SYMBOL ("bulkhead_plugin_entry"), of type bh_entry_fn. The core
 * calls it once after dlopen() with its own ABI version; the plugin returns
 * a pointer to a static, const descriptor (or NULL to refuse the core).
 *
 * Versioning rules (Redis modules / SQLite extensions style):
 *  - BH_ABI_MAJOR changes only when an existing slot changes meaning. The
 *    core refuses a plugin of another major.
 *  - BH_ABI_MINOR grows when slots are appended to bh_services. The core
 *    refuses a plugin built for a newer minor than its own, because such a
 *    plugin may call slots this core does not have.
 *  - Every struct a plugin passes in (descriptor, route, upstream
 *    definition, call, body shape and field, error row) starts with a size
 *    field, or has its size passed alongside, and only grows at its end;
 *    reserved slots are zero. Structs the core hands out (bh_services,
 *    bh_upstream_result) carry the core's size: check it before using a
 *    member added after the minor the plugin was built for
 *    (BH_SVC_HAS for a service slot).
 *
 * ABI changelog (the one place that says what each minor added; a plugin
 * built for minor N loads on every core of minor >= N; the inline
 * wrappers of slots newer than 1.0 say how to check for them):
 *  1.0  descriptor, routes, error map, request accessors, respond /
 *       problem, strict JSON bodies (body_parse and getters), upstreams
 *       (upstream_add, upstream_call, upstream_header, problem_upstream),
 *       proxy_add; then reserved[8], spare (see the table).
 *  1.1  wakeup_new / wakeup_send / wakeup_close (the plugin's own threads
 *       waking the loop); problem_field.
 *  1.2  identity: req_principal, problem_retry, session_create /
 *       refresh / revoke, apikey_create / list / revoke, login_guard,
 *       local_verify; BH_ROUTE_NO_AUTO_REFRESH; streaming:
 *       upstream_stream, stream_start / write / end, problem_json.
 *  1.3  Slots: secret_get / secret_free (the core's "@env:" / "@file:"
 *       resolver), upstream_header_get (a header into the caller's
 *       buffer: the form to use), body_get / body_key_at (any value of a
 *       parsed body, nested ones included, by JSON Pointer; bh_body_value,
 *       BH_VALUE_NULL); jobq_new / jobq_submit / jobq_close (store work
 *       on a thread of its own, results back on the loop: bh_job,
 *       bh_jobq_def) and store_info / store_connect / store_disconnect
 *       (the [store] backend, a PostgreSQL connection in the plugin's own
 *       schema, migrated by the core: bh_store_info, bh_migration);
 *       descriptor member store_schema (was reserved[0]: bh_store_schema,
 *       the plugin's schema and migrations, which `bulkhead -t` checks
 *       and `bulkhead migrate` applies without running the plugin;
 *       store_connect with schema NULL uses it);
 *       upstream_fallback, budget_add / budget_charge (provider fallback
 *       and token budgets: BH_BUDGET_*); composite_add (bh_composite);
 *       problem_with (a Problem with extension members the plugin built
 *       with the writer, and its own Retry-After).
 *       Header only, so usable on any 1.x core: the JSON writer
 *       (bulkhead/json.h) and bh_respond_json taking a bh_json, BH_COUNT,
 *       BH_ROUTE, bh_routes_add (a whole route table in one call),
 *       BH_PLUGIN (descriptor and entry in one line).
 *       Core behaviour: fini is optional (a 1.2 core refuses NULL); a
 *       service called off the loop thread returns -EPERM and logs once.
 *
 * Status convention (libuv style): 0 on success, a negative errno value on
 * failure. A call that takes a callback and fails never calls it.
 *
 * Ownership is stated on every function: "borrowed" means valid until the
 * named event, the caller must not free it; "copied" means the callee keeps
 * its own copy and the caller may free its argument on return.
 *
 * Threading: every callback runs on the worker's event loop thread, and every
 * service must be called from that thread (wakeup_send excepted). A handler
 * must not block: use the asynchronous services the core offers. The
 * header-only helpers call no service and work on any thread.
 *
 * No libuv, libcurl, sqlite or jansson type appears here on purpose: the
 * plugin ABI must not be tied to theirs.
 */
#ifndef BULKHEAD_PLUGIN_H
#define BULKHEAD_PLUGIN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_ABI_MAJOR 1
#define BH_ABI_MINOR 3

#define BH_ENTRY_SYMBOL "bulkhead_plugin_entry"

#if defined(__GNUC__)
#define BH_EXPORT __attribute__((visibility("default")))
#define BH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BH_EXPORT
#define BH_PRINTF(f, a)
#endif

/* Opaque handles owned by the core. */
typedef struct bh_ctx bh_ctx; /* one per loaded plugin (per worker) */
typedef struct bh_req bh_req; /* one per HTTP request */

typedef struct bh_services bh_services;
typedef struct bh_store_schema bh_store_schema; /* see Job queues below */

/* ---------------------------------------------------------------------- */
/* Descriptor                                                              */
/* ---------------------------------------------------------------------- */

typedef struct bh_plugin_desc {
  uint32_t size;       /* sizeof(bh_plugin_desc) as the plugin was built */
  uint16_t abi_major;  /* BH_ABI_MAJOR the plugin was built against */
  uint16_t abi_minor;  /* BH_ABI_MINOR the plugin was built against */
  const char *name;    /* [a-z][a-z0-9_]{0,31}; codes are prefixed "name." */
  const char *version; /* free text, e.g. "1.2.0" */

  /* Mandatory. Register routes, error map, read config. `svc` is borrowed
   * for the life of the plugin. A negative return fails the load; the core
   * then calls fini() and unloads. */
  int (*init)(bh_ctx *ctx, const bh_services *svc);
  /* Optional. Called once the loop runs; start timers and background work
   * here. A negative return marks the plugin failed (routes answer
   * plugin.unavailable) and the core calls stop() and fini(). */
  int (*start)(bh_ctx *ctx);
  /* Optional. Stop accepting new work; in-flight requests still end. */
  void (*stop)(bh_ctx *ctx);
  /* Optional since 1.3 (NULL: nothing to free; a 1.2 core refuses NULL).
   * Free everything the plugin owns. Called exactly once after a
   * successful init() and also after a failed one. */
  void (*fini)(bh_ctx *ctx);
  /* Optional. 0 healthy, negative unhealthy with *why set to a static
   * string (borrowed by the core until the next call). */
  int (*health)(bh_ctx *ctx, const char **why);

  /* Optional (1.3; NULL on older plugins, whose slot is reserved zero).
   * The plugin's PostgreSQL schema and its migrations (static, borrowed by
   * the core for the plugin's life), so the core checks (`bulkhead -t`)
   * and applies (`bulkhead migrate`, start-up) them without running the
   * plugin's code: store_connect() with schema NULL uses it. A bad one
   * (name, empty or unordered migrations) fails the load. */
  const bh_store_schema *store_schema;
  void *reserved[3]; /* zero */
} bh_plugin_desc;

/* The one exported symbol. The plugin may return NULL to refuse a core whose
 * ABI it cannot serve; the core then logs the refusal. */
typedef const bh_plugin_desc *(*bh_entry_fn)(uint16_t core_abi_major,
                                             uint16_t core_abi_minor);

/* The entry symbol itself, declared so a hand-written one is checked. */
BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry(uint16_t core_abi_major,
                                                      uint16_t core_abi_minor);

/* A whole plugin's descriptor and entry in one line (1.3, header only):
 *   BH_PLUGIN("hello", "1.0.0", hello_init)
 * for a plugin of init() alone; write the descriptor and BH_PLUGIN_ENTRY
 * when it has start, stop, fini or health. */
#define BH_PLUGIN(name_, version_, init_)                                      \
  static const bh_plugin_desc bh__plugin_desc = {.size =                       \
                                                     sizeof(bh_plugin_desc),   \
                                                 .abi_major = BH_ABI_MAJOR,    \
                                                 .abi_minor = BH_ABI_MINOR,    \
                                                 .name = (name_),              \
                                                 .version = (version_),        \
                                                 .init = (init_)};             \
  BH_PLUGIN_ENTRY(bh__plugin_desc)

/* Convenience for plugin sources:
 *   BH_PLUGIN_ENTRY(my_desc)
 * defines the entry symbol with default visibility and an ABI refusal. */
#define BH_PLUGIN_ENTRY(desc)                                                  \
  BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry(uint16_t maj,          \
                                                        uint16_t min) {        \
    (void)min;                                                                 \
    return maj == BH_ABI_MAJOR ? &(desc) : NULL;                               \
  }

/* ---------------------------------------------------------------------- */
/* Routes                                                                  */
/* ---------------------------------------------------------------------- */

/* A handler must end `req` exactly once, now or later, with one of
 * bh_respond*, bh_problem*. `req` stays valid until then. If the route
 * deadline passes first the core answers "<plugin>.timeout" itself; the
 * plugin's later end call then returns -ECANCELED and releases `req`. */
typedef void (*bh_handler_fn)(bh_req *req, void *route_data);

enum bh_route_flags {
  BH_ROUTE_AUTH_REQUIRED = 1u << 0, /* session middleware must pass */
  BH_ROUTE_RAW_BODY = 1u << 1,      /* do not require a JSON content type */
  /* With BH_ROUTE_AUTH_REQUIRED: an expired __session cookie is
   * NOT refreshed silently from __refresh on this route (the caller gets
   * 401). The auth plugin's own routes use it: a client refreshes those
   * explicitly, never as a side effect. An older core ignores the bit. */
  BH_ROUTE_NO_AUTO_REFRESH = 1u << 2
};

typedef struct bh_route {
  uint32_t size;      /* sizeof(bh_route) */
  const char *method; /* "GET", "POST", ...; copied */
  /* Literal segments, "{name}" segments, and an optional trailing "*":
   * "/v1/billing/subscription", "/v1/api-keys/{id}", "/v1/proxy/ *" (no space).
   * Must lie under one of the plugin's configured mounts. Copied. */
  const char *pattern;
  bh_handler_fn handler;
  void *data;             /* passed to handler; borrowed until fini() */
  uint32_t flags;         /* enum bh_route_flags */
  size_t max_body_bytes;  /* 0: the server default */
  uint32_t timeout_ms;    /* handler deadline; 0: the server default */
  const char *rate_limit; /* named policy, or NULL; copied */
} bh_route;

/* A route table row with the defaults (1.3, header only):
 *   static const bh_route routes[] = {BH_ROUTE("GET", "/v1/x/{id}", get_x)};
 * Set the other members with a full initializer when a route needs them. */
#define BH_ROUTE(method_, pattern_, handler_)                                  \
  {                                                                            \
    .size = sizeof(bh_route), .method = (method_), .pattern = (pattern_),      \
    .handler = (handler_)                                                      \
  }

/* ---------------------------------------------------------------------- */
/* Error map: the plugin's whole code catalogue                            */
/* ---------------------------------------------------------------------- */

/* What an error-map row matches. BH_ON_CODE rows are only catalogue entries
 * a handler names with bh_problem(); the others are matched, first row
 * wins, against the outcome of an upstream call. */
enum bh_match_on {
  BH_ON_CODE = 0,         /* named explicitly by the plugin */
  BH_ON_TRANSPORT = 1,    /* transport failure of a kind in `transport` */
  BH_ON_BREAKER_OPEN = 2, /* circuit breaker open: no call made */
  BH_ON_STATUS = 3,       /* exact upstream HTTP status `status` */
  BH_ON_STATUS_CLASS = 4, /* status / 100 == `status` (e.g. 5 for 5xx) */
  BH_ON_RATE_LIMITED = 5  /* local rate limit for the upstream */
};

enum bh_transport_kind {
  BH_TRANSPORT_CONNECT = 1u << 0, /* refused / unreachable */
  BH_TRANSPORT_DNS = 1u << 1,
  BH_TRANSPORT_TLS = 1u << 2,
  /* reset or closed mid-exchange; also an answer whose head the core
   * refused to relay (a status line that is not HTTP/x 1xx..5xx, a header
   * name that is not a token, CR, LF, NUL or another control byte but HTAB
   * in a value): that one is never retried and always answers
   * "<plugin>.upstream_error" (502), whatever the error map says */
  BH_TRANSPORT_RESET = 1u << 3,
  BH_TRANSPORT_TIMEOUT = 1u << 4,
  BH_TRANSPORT_ANY = 0x1f
};

typedef struct bh_error_row {
  /* match */
  int on;                 /* enum bh_match_on */
  uint32_t transport;     /* mask of bh_transport_kind, for BH_ON_TRANSPORT */
  int status;             /* for BH_ON_STATUS / BH_ON_STATUS_CLASS */
  const char *body_field; /* optional dotted path in the upstream JSON
                             error body, e.g. "error.type" */
  const char *body_value; /* the string that field must equal */
  /* answer */
  const char *code;     /* "<plugin>.<reason>", lower snake case, unique */
  int http_status;      /* 4xx or 5xx */
  const char *title;    /* NULL: the status reason phrase */
  const char *detail;   /* user-safe text; never secrets or personal data */
  int retryable;        /* 0 / 1 */
  int pass_retry_after; /* forward the upstream's Retry-After */
} bh_error_row;

/* ---------------------------------------------------------------------- */
/* Strict JSON bodies                                                      */
/* ---------------------------------------------------------------------- */

typedef enum bh_field_type {
  BH_FIELD_STRING = 1,
  BH_FIELD_INT = 2,
  BH_FIELD_NUMBER = 3,
  BH_FIELD_BOOL = 4,
  BH_FIELD_OBJECT = 5,
  BH_FIELD_ARRAY = 6,
  BH_FIELD_STRING_ARRAY = 7
} bh_field_type;

enum bh_field_flags {
  BH_FIELD_REQUIRED = 1u << 0,
  BH_FIELD_NULLABLE = 1u << 1
};

typedef struct bh_field {
  const char *name;
  bh_field_type type;
  uint32_t flags; /* enum bh_field_flags */
  /* STRING: length bounds in bytes; ARRAY kinds: element count bounds;
   * INT/NUMBER: value bounds. max 0 means unbounded. */
  int64_t min;
  int64_t max;
  /* STRING only: NULL-terminated list of allowed values, or NULL. */
  const char *const *one_of;
} bh_field;

typedef struct bh_body_shape {
  const bh_field *fields;
  size_t nfields;
  int allow_unknown; /* 0 (the default): unknown fields are errors */
} bh_body_shape;

/* bh_body_value.type of a JSON null; the other values are bh_field_type
 * (an integer is BH_FIELD_INT, any other number BH_FIELD_NUMBER). */
#define BH_VALUE_NULL 0

/* One value of a parsed body, as body_get() reads it. */
typedef struct bh_body_value {
  uint32_t size;   /* the bytes the core filled in */
  int type;        /* BH_VALUE_NULL or a bh_field_type */
  const char *str; /* STRING: NUL-terminated, borrowed until the request
                      ends; len bytes (a string may hold a NUL) */
  size_t len;
  int64_t i;    /* INT */
  double num;   /* INT and NUMBER */
  int b;        /* BOOL */
  size_t count; /* OBJECT: members; ARRAY: elements */
} bh_body_value;

/* ---------------------------------------------------------------------- */
/* Upstreams                                                               */
/* ---------------------------------------------------------------------- */

/* An upstream service the plugin talks to, through the core's client and
 * the shared retry / circuit-breaker policies. Owned by the core. */
typedef struct bh_upstream bh_upstream;

typedef struct bh_upstream_def {
  uint32_t size; /* sizeof(bh_upstream_def) */
  /* "<plugin>" or "<plugin>_<suffix>"; settings come from the config
   * section [upstream.<name>] (url, timeouts, retries, breaker, headers). */
  const char *name;
  const char *default_url; /* when the config has no url; NULL: required */
  /* Defaults for when [upstream.<name>] does not set them (the config
   * always wins); 0: 2000 and 10000 ms. */
  uint32_t connect_timeout_ms;
  uint32_t timeout_ms;
} bh_upstream_def;

enum bh_call_flags {
  /* a POST/PATCH that carries an Idempotency-Key: the core may retry it */
  BH_CALL_RETRY_SAFE = 1u << 0,
  BH_CALL_NO_RETRY = 1u << 1
};

typedef struct bh_upstream_request {
  uint32_t size;      /* sizeof(bh_upstream_request) */
  const char *method; /* copied */
  const char *path;   /* "/v1/x?y=z", appended to the base URL; copied */
  const char *const *headers; /* NULL-terminated "Name: value"; copied */
  const char *body;           /* copied */
  size_t body_len;
  uint32_t flags;      /* enum bh_call_flags */
  uint32_t timeout_ms; /* per attempt; 0: the upstream's; always capped by
                          the request's deadline */
} bh_upstream_request;

enum bh_outcome {
  BH_OUTCOME_RESPONSE = 0,     /* an HTTP response arrived: see status */
  BH_OUTCOME_TRANSPORT = 1,    /* see transport (one bh_transport_kind bit) */
  BH_OUTCOME_BREAKER_OPEN = 2, /* refused locally, no socket touched */
  BH_OUTCOME_RATE_LIMITED = 3, /* refused by the upstream's local limit */
  BH_OUTCOME_CANCELED = 4      /* the request was answered first (deadline) */
};

typedef struct bh_upstream_result {
  uint32_t size;      /* sizeof(bh_upstream_result) in the core */
  int outcome;        /* enum bh_outcome */
  uint32_t transport; /* for BH_OUTCOME_TRANSPORT */
  int status;         /* for BH_OUTCOME_RESPONSE */
  const char *body;   /* borrowed until the callback returns; NUL-terminated */
  size_t body_len;
  long retry_after;  /* seconds from the upstream or the breaker, -1 unknown */
  uint32_t attempts; /* attempts made (0 when refused locally) */
  uint32_t duration_ms; /* all attempts and waits */
} bh_upstream_result;

/* Called exactly once per successful bh_upstream_call, on the loop, never
 * from inside bh_upstream_call itself. `req` is still valid; with
 * BH_OUTCOME_CANCELED the request was already answered, so just end it
 * (the end call returns -ECANCELED and releases it). */
typedef void (*bh_upstream_cb)(bh_req *req, const bh_upstream_result *res,
                               void *data);

/* ---------------------------------------------------------------------- */
/* Wakeups                                                                 */
/* ---------------------------------------------------------------------- */

/* Lets a thread of the plugin's own (one that runs blocking work: a
 * database, a client of its own) hand results back to the event loop.
 * Owned by the core; see wakeup_new in the services table. */
typedef struct bh_wakeup bh_wakeup;

/* Runs on the loop thread after one or more bh_wakeup_send() calls. */
typedef void (*bh_wakeup_fn)(bh_ctx *ctx, void *data);

/* ---------------------------------------------------------------------- */
/* Job queues: store work off the loop (ABI 1.3)                           */
/* ---------------------------------------------------------------------- */

/* A queue with a thread of its own for blocking work (a database): the
 * plugin queues jobs from the loop, the thread runs them in batches, and
 * each finished job comes back to the loop, in the order it was queued.
 * The plugin embeds a bh_job in its own job struct (anywhere: it gets its
 * struct back from the bh_job pointer) and keeps ownership of it. */
typedef struct bh_job bh_job;
struct bh_job {
  /* In run(): the next job of the batch, NULL after the last. The queue's
   * at every other time: never change it. */
  bh_job *next;
  void *reserved; /* the core's */
};

/* Owned by the core; see jobq_new in the services table. */
typedef struct bh_jobq bh_jobq;

typedef struct bh_jobq_def {
  uint32_t size; /* sizeof(bh_jobq_def) as the plugin was built */
  /* the thread's name (top -H, perf), at most 15 bytes; copied; NULL:
   * "<plugin>-jobs" */
  const char *name;
  /* Optional, on the queue's thread before the first batch: open the
   * connection here (or lazily in run()). */
  void (*thread_start)(void *data);
  /* Mandatory, on the queue's thread: runs `batch` (linked by next, in
   * the order queued) and leaves each job's outcome in the job. Blocking
   * is fine here, and only here. */
  void (*run)(bh_job *batch, void *data);
  /* Mandatory, on the loop thread after run(): one call per job, in
   * order. The job is the plugin's again: it may answer its request and
   * free it. */
  void (*done)(bh_job *job, void *data);
  /* Optional, on the queue's thread after the last batch: close the
   * connection. */
  void (*thread_stop)(void *data);
  uint32_t max_batch;  /* jobs handed to one run(); 0: 1 */
  uint32_t max_queued; /* jobs waiting to run; submit answers -EAGAIN past
                          it (shed load instead of piling up); 0: 4096 */
} bh_jobq_def;

/* What store_info() reports: the backend of [store] (ABI 1.3). */
typedef struct bh_store_info {
  uint32_t size;       /* sizeof(bh_store_info): set by the plugin */
  const char *backend; /* "sqlite" or "postgres"; static */
  uint32_t pool;       /* postgres: the connections a worker may keep */
} bh_store_info;

/* One schema migration (NNN_name.sql): ascending versions. The array
 * cmake's bh_embed_schema(HEADER) writes has this layout. */
typedef struct bh_migration {
  int version;
  const char *name;
  const char *sql;
} bh_migration;

/* A plugin's PostgreSQL schema, declared in its descriptor (1.3,
 * bh_plugin_desc.store_schema): static, borrowed for the plugin's life.
 *   const bh_store_schema my_schema = {sizeof(bh_store_schema), "bh_mine",
 *       (const bh_migration *)(const void *)my_pg_migrations,
 *       BH_COUNT(my_pg_migrations)};
 * name: "[a-z][a-z0-9_]{0,62}", not the core's bh_identity; migrations:
 * at least one, versions ascending (what bh_embed_schema writes). */
struct bh_store_schema {
  uint32_t size; /* sizeof(bh_store_schema) */
  const char *name;
  const bh_migration *migrations;
  size_t nmigrations;
};

/* ---------------------------------------------------------------------- */
/* Identity                                                                */
/* ---------------------------------------------------------------------- */

/* How the caller of an auth-required route proved who it is. */
enum bh_auth_kind {
  BH_AUTH_NONE = 0,   /* not authenticated (route not auth-required) */
  BH_AUTH_BEARER = 1, /* Authorization: Bearer <access token> */
  BH_AUTH_COOKIE = 2, /* the __session cookie (maybe refreshed silently) */
  BH_AUTH_API_KEY = 3 /* the API key header (X-API-Key) */
};

/* The caller of an auth-required route, as the core's session middleware
 * established it. Every string is borrowed until the request ends and is
 * never NULL ("" when absent). */
typedef struct bh_principal {
  uint32_t size;          /* sizeof(bh_principal) in the core */
  int kind;               /* enum bh_auth_kind */
  const char *user_id;    /* the access token's "sub", or the key's owner */
  const char *session_id; /* the token's "sid" (a session family), or "" */
  const char *scopes;     /* space-separated, "" when none */
  const char *key_id;     /* BH_AUTH_API_KEY: the key's id, else "" */
  int64_t expires_at;     /* unix seconds the credential ends; 0: no end */
} bh_principal;

/* Flags of the session services below. */
enum bh_session_flags {
  /* Set (or clear) the __session / __refresh cookies on this request's
   * response, with the core's attributes (HttpOnly, Secure, SameSite=Lax,
   * Path=/). */
  BH_SESSION_COOKIES = 1u << 0,
  /* Take the refresh token from the __refresh cookie (the token argument is
   * then ignored). A cookie-borne token passes the same Origin /
   * Sec-Fetch-Site check as cookie-authenticated routes. */
  BH_SESSION_FROM_COOKIE = 1u << 1
};

/* What session_create() records. Copied. */
typedef struct bh_session_request {
  uint32_t size;       /* sizeof(bh_session_request) */
  const char *user_id; /* the identity provider's user id; required */
  const char *scopes;  /* space-separated, or NULL */
  uint32_t flags;      /* enum bh_session_flags */
} bh_session_request;

/* Events for login_guard(). */
enum bh_login_event {
  /* before trying: -EBUSY while the account or address is locked, else
   * the attempt is reserved (counted as a failure until SUCCEEDED or
   * RELEASED gives it back), atomically for concurrent attempts */
  BH_LOGIN_CHECK = 0,
  BH_LOGIN_FAILED = 1,    /* a wrong password: already counted by CHECK */
  BH_LOGIN_SUCCEEDED = 2, /* forget the account's failures */
  /* the attempt ended without a verdict on the password (the IdP was
   * unavailable, the account is disabled): give its reservation back.
   * May be called right before answering; the callback may then find the
   * request answered. */
  BH_LOGIN_RELEASED = 3
};

/* The outcome of an identity service. Only the members the service names
 * are set; the others are NULL / 0. Strings are borrowed until the
 * callback returns: copy what you keep. */
typedef struct bh_identity_result {
  uint32_t size; /* sizeof(bh_identity_result) in the core */
  int status;    /* 0, or a negative errno (see each service) */
  /* On failure, the Problem code that tells the caller the truth
   * (auth.session_expired, auth.session_revoked, auth.unauthenticated,
   * auth.csrf_rejected, auth.session_store_unavailable ...): pass it to
   * bh_problem(). NULL on success. */
  const char *code;
  long retry_after; /* login_guard: seconds until allowed, else -1 */
  const char *user_id;
  const char *session_id;
  const char *scopes;
  const char *access_token;  /* a JWT for Authorization: Bearer */
  int64_t access_expires_at; /* unix seconds */
  const char *refresh_token; /* opaque; shown to the caller once */
  int64_t refresh_expires_at;
  const char *key_id;     /* API keys */
  const char *key;        /* apikey_create only: the raw key, shown once */
  const char *key_prefix; /* the short visible start of the key */
  const char *json;       /* apikey_list: a JSON array of the caller's keys */
  int disabled;           /* local_verify: the account exists but is disabled */
} bh_identity_result;

/* Called exactly once per successful identity call, on the loop, never
 * from inside the call itself. `req` is still valid; if the core already
 * answered it (deadline, client gone), the end call returns -ECANCELED. */
typedef void (*bh_identity_cb)(bh_req *req, const bh_identity_result *res,
                               void *data);

/* ---------------------------------------------------------------------- */
/* Streaming                                                               */
/* ---------------------------------------------------------------------- */

/* Body bytes of a streamed upstream answer (see upstream_stream), on the
 * loop thread, as they arrive: `status` is the answer's status (2xx),
 * `buf` is borrowed until the callback returns. Return 0 to go on, or a
 * negative value to stop the transfer: the call's callback then runs with
 * BH_OUTCOME_CANCELED and the upstream is not blamed (its breaker counts
 * nothing). `req` is valid; never end it here. */
typedef int (*bh_upstream_chunk_fn)(bh_req *req, int status, const char *buf,
                                    size_t len, void *data);

/* Flags of budget_charge() (ABI 1.3). */
enum bh_budget_flags { BH_BUDGET_HEADERS = 1u << 0 };

/* ---------------------------------------------------------------------- */
/* Composite routes (ABI 1.3)                                              */
/* ---------------------------------------------------------------------- */

/* A route the core answers by dispatching each section, concurrently and
 * in-process, through the normal request path (routing, plugin state, the
 * caller's identity, rate limits, each route's deadline), then answering
 * 200 {"sections": {"KEY": {"status": S, "body": ...} | {"status": S,
 * "problem": ...}}}. The same thing as a [composite.NAME] section of the
 * config. Every string is copied. */
typedef struct bh_composite {
  uint32_t size;     /* sizeof(bh_composite) */
  const char *name;  /* [a-z][a-z0-9_]{0,31}, unique among composites */
  const char *route; /* "GET /v1/dashboard": a literal path under one of
                        the plugin's mounts */
  /* NULL-terminated "KEY = METHOD /path?query" lines; KEY is
   * [A-Za-z0-9_]{1,64}, the path is any route of any plugin */
  const char *const *sections;
  const char *required; /* "KEY[,KEY...]": their failure fails the whole
                           answer; NULL: none */
  uint32_t timeout_ms;  /* per section; 0: [server] handler_timeout_ms */
} bh_composite;

/* ---------------------------------------------------------------------- */
/* Services table                                                          */
/* ---------------------------------------------------------------------- */

enum bh_log_level { BH_LOG_DEBUG = 0, BH_LOG_INFO, BH_LOG_WARN, BH_LOG_ERROR };

struct bh_services {
  uint32_t size; /* sizeof(bh_services) in the core: check before using a
                    slot added after BH_ABI_MINOR 0 */
  uint16_t abi_major;
  uint16_t abi_minor;

  /* --- plugin context --- */

  /* One JSON log line tagged with the plugin's name. Never pass secrets,
   * tokens or personal data. `fmt` is formatted into the "msg" field. */
  void (*log)(bh_ctx *ctx, int level, const char *fmt, ...) BH_PRINTF(3, 4);
  /* A free key of the plugin's config section (environment overrides
   * applied). Borrowed until fini(); NULL when absent. */
  const char *(*config_get)(bh_ctx *ctx, const char *key);
  /* The plugin's private data pointer. */
  void (*set_data)(bh_ctx *ctx, void *data);
  void *(*get_data)(bh_ctx *ctx);
  /* Absolute directory the plugin may keep its files in (created by the
   * core). Borrowed until fini(). */
  const char *(*data_dir)(bh_ctx *ctx);

  /* --- registration, only during init() --- */

  /* Register a route. The route struct is copied. -EINVAL bad pattern or
   * outside the plugin's mounts; -EEXIST conflict (the load fails and the
   * log names both plugins). */
  int (*route_add)(bh_ctx *ctx, const bh_route *route);
  /* Register the plugin's error map. Rows are copied; row_size is
   * sizeof(bh_error_row) as the plugin was built (the wrapper passes it), so
   * rows may grow in later minors. The whole table is checked: codes
   * prefixed "<plugin>.", lower snake case, a code repeated only with the
   * same answer; statuses 4xx/5xx; a retryable 4xx other than
   * 408/409/425/429 is refused. -EINVAL with the reason logged; the load
   * then fails. May be called once. */
  int (*error_map)(bh_ctx *ctx, const bh_error_row *rows, size_t nrows,
                   size_t row_size);

  /* --- request accessors; all strings borrowed until the
   *     request ends --- */

  const char *(*req_method)(bh_req *req);
  /* The path without the query, raw: as the client sent it, NOT
   * percent-decoded ("/v1/files/a%20b"). */
  const char *(*req_path)(bh_req *req);
  const char *(*req_query)(bh_req *req); /* raw query or "" */
  /* A {name} or "*" parameter, percent-decoded; NULL when absent. The core
   * answers 400 request.bad_request before the handler runs when one
   * decodes to a NUL, '\', '?', '#', a "." or ".." segment, or (a {name},
   * which is one segment) a '/'; a "*" tail keeps its '/' separators.
   * It may still hold spaces, '%', ';' and any other byte: put it into an
   * upstream path with bh_path_append_segment(), never as it is. */
  const char *(*req_param)(bh_req *req, const char *name);
  const char *(*req_header)(bh_req *req, const char *name); /* first */
  const char *(*req_body)(bh_req *req, size_t *len);
  const char *(*req_id)(bh_req *req);
  const char *(*req_client_addr)(bh_req *req);
  bh_ctx *(*req_ctx)(bh_req *req);

  /* --- ending a request --- */

  /* Add a response header before the end call. Copied. -EINVAL for a
   * hop-by-hop or malformed header. */
  int (*set_header)(bh_req *req, const char *name, const char *value);
  /* End with a body (copied). content_type NULL means application/json. */
  int (*respond)(bh_req *req, int status, const char *content_type,
                 const char *body, size_t len);
  /* End with the Problem for `code`, a code from the core catalogue or the
   * plugin's error map. `detail` overrides the catalogue detail when not
   * NULL (copied; must be user-safe). Unknown codes become generic.internal
   * and are logged. */
  int (*problem)(bh_req *req, const char *code, const char *detail);

  /* --- strict JSON bodies --- */

  /* Parse the request body against `shape` (sizes as the plugin was built;
   * the wrapper passes them; routes without BH_ROUTE_RAW_BODY already
   * refuse a non-JSON Content-Type with 415). On success
   * returns 0 and the field getters below work. On failure the core has already
   * ended the request with 400 request.invalid_body listing every failing field
   * in extensions.errors, and -EINVAL is returned: just return. A NULL or
   * malformed `shape` is the plugin's bug: -EINVAL too, but nothing is
   * answered, so the plugin must still end the request. */
  int (*body_parse)(bh_req *req, const bh_body_shape *shape, size_t shape_size,
                    size_t field_size);
  /* Getters after body_parse(): NULL / -ENOENT when absent or null. The
   * string is borrowed until the request ends. */
  const char *(*body_string)(bh_req *req, const char *field);
  int (*body_int)(bh_req *req, const char *field, int64_t *out);
  int (*body_bool)(bh_req *req, const char *field, int *out);
  /* The field's JSON text exactly as the client sent it (objects, arrays,
   * numbers: never re-encoded, so 0.1 and integers past 2^63 keep their
   * digits); borrowed until the request ends. */
  const char *(*body_json)(bh_req *req, const char *field);
  /* Element i of a STRING_ARRAY field, NULL past the end. */
  const char *(*body_string_at)(bh_req *req, const char *field, size_t i);

  /* --- upstreams --- */

  /* Registers an upstream during init(). *out is owned by the core and
   * valid until fini(). -EINVAL bad name or no url; -EEXIST name taken. */
  int (*upstream_add)(bh_ctx *ctx, const bh_upstream_def *def,
                      bh_upstream **out);
  /* Calls the upstream for `req`: X-Request-ID and the remaining deadline
   * (X-Request-Timeout-Ms) travel with it; retries, breaker and budget
   * apply. 0 and `cb` runs later exactly once; negative errno and `cb`
   * never runs. `call` is copied. */
  int (*upstream_call)(bh_req *req, bh_upstream *u,
                       const bh_upstream_request *call, bh_upstream_cb cb,
                       void *data);
  /* A response header of `res` (case-insensitive; the first one when
   * repeated), NULL when absent. The value is copied into a buffer of the
   * calling thread, truncated to 1023 bytes, and overwritten by the next
   * call: copy it before asking for another header. Superseded by
   * upstream_header_get (1.3), which cannot be misused that way. */
  const char *(*upstream_header)(const bh_upstream_result *res,
                                 const char *name);
  /* Ends `req` with the Problem the plugin's error map gives for `res`
   * (core defaults for unmatched outcomes; Retry-After passed when the row
   * says so, and always for an open breaker). */
  int (*problem_upstream)(bh_req *req, const bh_upstream_result *res);
  /* Registers a proxy route during init(): GET (and so HEAD), POST, PUT,
   * PATCH, DELETE and OPTIONS on "<prefix>" and "<prefix>/ *" (no space)
   * go to `u` as-is (method,
   * path, query, end-to-end headers, body), streaming the answer back, with
   * the same policies and error map. flags: bh_route_flags. */
  int (*proxy_add)(bh_ctx *ctx, const char *prefix, bh_upstream *u,
                   uint32_t flags);

  /* Spare: eight slots left free between the 1.0 and 1.1 slots, NULL in
   * every core so far. They keep the offset of every later slot where
   * 1.1 put it. A later minor may give one a meaning (BH_SVC_HAS is false
   * on a core where it is NULL); until then a plugin never reads them. */
  void *reserved[8];

  /* --- waking the loop from the plugin's own threads --- */

  /* Creates a wakeup, on the loop thread (init() or later). After each
   * wakeup_send(), `cb(ctx, data)` runs on the loop thread; sends that
   * arrive before it runs coalesce into one run, so the callback drains
   * everything its threads queued. The handle does not keep the worker
   * alive. 0 and *out (owned by the core until wakeup_close()), or
   * -EINVAL / -ENOMEM. `data` is borrowed until wakeup_close(). */
  int (*wakeup_new)(bh_ctx *ctx, bh_wakeup_fn cb, void *data, bh_wakeup **out);
  /* Schedules a run of the callback. The one service that may be called
   * from any thread (it is also async-signal-safe). 0 or a negative errno.
   * Never call it after wakeup_close(). */
  int (*wakeup_send)(bh_wakeup *w);
  /* Loop thread: the callback never runs again and the core frees `w`
   * once the loop lets go of it. Join every thread that may still send
   * first; close each wakeup in fini() at the latest. */
  void (*wakeup_close)(bh_wakeup *w);

  /* --- field errors from the plugin's own checks --- */

  /* Ends `req` like problem() and names the failing field: the Problem
   * gets extensions.errors = [{"field": field, "code": code}], the shape
   * body validation uses, for checks a bh_body_shape cannot express (a
   * URL's scheme). `field` is copied; NULL behaves as problem(). */
  int (*problem_field)(bh_req *req, const char *code, const char *detail,
                       const char *field);

  /* --- identity ---
   * The session store is the core's (SQLite, off the loop); these slots
   * let the auth plugin drive it. Each asynchronous one returns 0 and
   * calls `cb` later exactly once, or returns a negative errno (-EINVAL
   * bad argument, -ENOTSUP no store, -ENOMEM, -EALREADY the request was
   * ended) and never calls it. */

  /* The principal of an auth-required route, or NULL on other routes.
   * Borrowed until the request ends. No I/O: the core verified the
   * caller before the handler ran. */
  const bh_principal *(*req_principal)(bh_req *req);
  /* Ends `req` like problem(), with a Retry-After header and
   * extensions.retryAfterSeconds of `retry_after_s` (< 0: none). */
  int (*problem_retry)(bh_req *req, const char *code, const char *detail,
                       long retry_after_s);
  /* Creates a session (a new refresh-token family) and signs its first
   * access token. res: user_id, session_id, scopes, access_token,
   * access_expires_at, refresh_token, refresh_expires_at. `in` copied. */
  int (*session_create)(bh_req *req, const bh_session_request *in,
                        bh_identity_cb cb, void *data);
  /* Exchanges a refresh token for a new pair (rotation: the old token is
   * spent). res as session_create, or status < 0 with res->code:
   * auth.unauthenticated (unknown token), auth.session_expired,
   * auth.session_revoked (a spent token presented again: the whole family
   * is revoked), auth.csrf_rejected. `refresh_token` copied. */
  int (*session_refresh)(bh_req *req, const char *refresh_token, uint32_t flags,
                         bh_identity_cb cb, void *data);
  /* Revokes the family of `refresh_token` (or, when NULL and not
   * BH_SESSION_FROM_COOKIE, the family of the request's principal).
   * BH_SESSION_COOKIES clears both cookies. status 0 also when there was
   * nothing to revoke (logout is idempotent). */
  int (*session_revoke)(bh_req *req, const char *refresh_token, uint32_t flags,
                        bh_identity_cb cb, void *data);
  /* Creates an API key for the request's principal. res: key_id, key
   * (raw, shown once: only its hash is stored), key_prefix. `name` and
   * `scopes` (space-separated) copied, either may be NULL. */
  int (*apikey_create)(bh_req *req, const char *name, const char *scopes,
                       bh_identity_cb cb, void *data);
  /* The principal's live API keys: res->json = [{"id","name","prefix",
   * "scopes","createdAt","lastUsedAt"}]; never the keys themselves. */
  int (*apikey_list)(bh_req *req, bh_identity_cb cb, void *data);
  /* Revokes one of the principal's keys: status 0, or -ENOENT. */
  int (*apikey_revoke)(bh_req *req, const char *key_id, bh_identity_cb cb,
                       void *data);
  /* Failed-login accounting shared by every worker, per account (any
   * string naming it, stored hashed) and per client address. CHECK
   * answers status -EBUSY with res->retry_after while locked, and else
   * reserves the attempt (see enum bh_login_event). */
  int (*login_guard)(bh_req *req, const char *account, int event,
                     bh_identity_cb cb, void *data);
  /* The embedded identity provider (a local users table, Argon2id
   * hashes; `bulkhead user add EMAIL`): status 0 and res->user_id (and
   * res->disabled), or -ENOENT (no such user) / -EACCES (wrong
   * password). The password is hashed off the loop and wiped. */
  int (*local_verify)(bh_req *req, const char *email, const char *password,
                      bh_identity_cb cb, void *data);

  /* --- streaming ---
   * A plugin that relays an answer as it is produced (server-sent events
   * from an LLM) reads its upstream with upstream_stream() and writes its
   * own answer with stream_start() / stream_write() / stream_end(). */

  /* upstream_call(), except that a 2xx answer is not buffered: its body
   * goes to `on_chunk` as it arrives, and from the first byte no retry
   * happens (and max_response_bytes does not apply). Any other answer is
   * buffered, retried and mapped as with upstream_call(). `cb` runs last,
   * exactly once: after a streamed answer, res->body is empty and the
   * outcome tells how the stream ended (BH_OUTCOME_RESPONSE: complete;
   * BH_OUTCOME_TRANSPORT: cut by a reset or the timeout, which covers the
   * whole transfer; BH_OUTCOME_CANCELED: on_chunk stopped it, or the
   * request was answered first). Returns and copies like upstream_call();
   * `data` goes to both callbacks. */
  int (*upstream_stream)(bh_req *req, bh_upstream *u,
                         const bh_upstream_request *call,
                         bh_upstream_chunk_fn on_chunk, bh_upstream_cb cb,
                         void *data);
  /* Sends the head of a streamed answer: `status`, `content_type`
   * (copied; NULL: application/octet-stream), the headers set with
   * set_header() and a chunked body. 0: the request must now be ended with
   * stream_end() and no other end call. Negative: nothing was sent and the
   * request is still to be ended with any end call: -EINVAL bad status or
   * content type, -EALREADY not held, -ECANCELED the core answered first
   * (the deadline), -ECONNRESET the client is gone, -ENOMEM. The route
   * deadline no longer applies once the head is sent: bound the stream
   * yourself (an upstream call is still capped by it). */
  int (*stream_start)(bh_req *req, int status, const char *content_type);
  /* Queues body bytes (copied) of a started stream. Returns the bytes the
   * connection still has to send (back pressure: stop producing while it
   * grows), or -ECONNRESET when the client is gone (end the stream anyway
   * once your work is done, or stop it), -EINVAL when not streaming. */
  long (*stream_write)(bh_req *req, const char *data, size_t len);
  /* The end call of a started stream. failed = 0 ends the body properly;
   * nonzero cuts it short (the connection closes, so the client can tell
   * it is incomplete). 0, -ECANCELED (the client was gone; released
   * anyway), -EINVAL (no stream was started: use another end call),
   * -EALREADY. */
  int (*stream_end)(bh_req *req, int failed);
  /* The Problem JSON the one encoder makes for `req`, without ending it:
   * for a failure inside an answer already streaming (an SSE "event:
   * error" whose data is the Problem). With `res` (a result from an
   * upstream callback of this request, still in that callback): the error
   * map's answer, as problem_upstream() would send it; otherwise `code`
   * and `detail` as problem(). Written NUL-terminated into buf (truncated
   * to buflen - 1 bytes); returns the full length (like snprintf) or a
   * negative errno. The request's access log line then names the code. */
  int (*problem_json)(bh_req *req, const char *code, const char *detail,
                      const bh_upstream_result *res, char *buf, size_t buflen);

  /* --- 1.3: secrets, safe upstream headers, nested body values --- */

  /* The plugin's config key `key` with the core's secret rule applied,
   * the same as for [auth] and [upstream.*] header keys: a literal as is,
   * "@env:NAME" the variable's value, "@file:PATH" the file's content with
   * one trailing line break (LF, CR or CRLF) dropped and nothing else
   * trimmed. 0 with *out (NUL-terminated, owned by the caller: free it
   * with secret_free(), which wipes it) and *outlen; -ENOENT when the key
   * is not set (nothing logged); else a negative errno (-ENOENT variable
   * unset, -EACCES, -EFBIG past 64 KiB, -ENOMEM) and one log line naming
   * the plugin, the key and the cause, never the value. */
  int (*secret_get)(bh_ctx *ctx, const char *key, char **out, size_t *outlen);
  /* Wipes and frees what secret_get() gave. NULL is fine. */
  void (*secret_free)(char *secret, size_t len);
  /* A response header of `res` (case-insensitive; the first one when
   * repeated) copied NUL-terminated into the caller's buf (truncated to
   * buflen - 1 bytes). Returns the value's full length (like snprintf),
   * -ENOENT when absent, -EINVAL (NULL res or name, buf NULL with buflen).
   * Nothing is shared between calls. */
  int (*upstream_header_get)(const bh_upstream_result *res, const char *name,
                             char *buf, size_t buflen);
  /* After body_parse(): the value at JSON Pointer `pointer` (RFC 6901:
   * "" the whole body, "/items/0/name"; "~1" is '/', "~0" is '~') into
   * *out (out_size: sizeof(bh_body_value) as the plugin was built; the
   * wrapper passes it). 0; -ENOENT no such member or element; -EINVAL no
   * parsed body, a malformed pointer or a bad out_size. */
  int (*body_get)(bh_req *req, const char *pointer, bh_body_value *out,
                  size_t out_size);
  /* The name of member i of the object at `pointer` (document order),
   * borrowed until the request ends; NULL past the end or when the value
   * is not an object. */
  const char *(*body_key_at)(bh_req *req, const char *pointer, size_t i);

  /* --- ABI 1.3 (ai): provider fallback and token budgets --- */

  /* Records that `req`, after a retryable failure of the plugin's
   * upstream `from`, goes on to its upstream `to`: the access log line
   * gets "fallbacks": "from>to" (several joined by ","), and /metrics
   * counts bulkhead_upstream_fallbacks_total{plugin,from,to}. Call it
   * before the call to `to`; a code problem_json() recorded for the
   * failed attempt is forgotten (the next outcome decides the answer's).
   * 0, or -EINVAL (not the plugin's upstreams). */
  int (*upstream_fallback)(bh_req *req, bh_upstream *from, bh_upstream *to);
  /* init() only: makes [rate_limit.NAME] with unit = tokens a token
   * budget of the plugin, for budget_charge(). 0; -ENOENT no such section;
   * -EINVAL a bad section or not unit = tokens (logged, the load fails);
   * -EPERM outside init(). */
  int (*budget_add)(bh_ctx *ctx, const char *policy);
  /* Charges `tokens` (the provider's reported usage) to the caller's
   * bucket of the budget `policy` (keyed as its `key` says), down to empty
   * and never below. tokens = 0 only looks. Returns 0, or -EAGAIN when
   * looking found the budget spent (*retry_after_s, if not NULL: seconds
   * until some is back; -1 otherwise); -ENOENT not a budget of the
   * plugin; -EALREADY the request was ended (with BH_BUDGET_HEADERS);
   * -ENOMEM (fail open). With BH_BUDGET_HEADERS the answer gets the
   * policy's RateLimit-Policy (qu="tokens") and RateLimit fields: ask once
   * per request, before its end call (streaming: before stream_start). */
  int (*budget_charge)(bh_req *req, const char *policy, uint64_t tokens,
                       uint32_t flags, long *retry_after_s);
  /* --- ABI 1.3 (composite) --- */

  /* init only: registers a composite route (bh_composite, copied). 0;
   * -EINVAL (no name, route or section), -EPERM (not in init), -ENOMEM.
   * The rest (the name, the route under one of the plugin's mounts and
   * not taken by another composite, each section line, the required keys)
   * is checked once every plugin is loaded, by the parser of
   * [composite.NAME]: a composite that fails is logged and not served. */
  int (*composite_add)(bh_ctx *ctx, const bh_composite *c);
  /* --- ABI 1.3 (store) ---
   * Store work off the event loop: one job queue, one thread of its own
   * each (see bh_jobq_def). */

  /* Creates a queue and starts its thread, on the loop thread (init() or
   * later). `def` is copied; `data` is borrowed until jobq_close() and
   * goes to every callback. The queue never keeps the worker alive. 0 and
   * *out (owned by the core until jobq_close()), or -EINVAL (no run or
   * done), -ENOMEM, or the thread's error. */
  int (*jobq_new)(bh_ctx *ctx, const bh_jobq_def *def, void *data,
                  bh_jobq **out);
  /* Queues `job` (borrowed: the plugin's again when done() runs with it).
   * Loop thread (or run(), to queue follow-up work). 0; -EAGAIN the queue
   * is full (done() never runs for it: answer the request now);
   * -ESHUTDOWN closing; -EINVAL. */
  int (*jobq_submit)(bh_jobq *q, bh_job *job);
  /* Loop thread: refuses new jobs, lets the thread run every queued one,
   * joins it (thread_stop() runs last there), then calls done() for each
   * job that came back, on the caller's thread, and frees `q` once the
   * loop lets go of it. Close each queue in stop() or fini() at the
   * latest. */
  void (*jobq_close)(bh_jobq *q);
  /* Which backend [store] names, so a plugin ships SQL for both: on
   * "sqlite" it keeps its own file under data_dir(); on "postgres" it
   * shares the database of every instance through store_connect(). Any
   * thread. 0, or -EINVAL (a size too small). */
  int (*store_info)(bh_ctx *ctx, bh_store_info *out);
  /* postgres only, and only on a job queue's thread (thread_start or
   * run) or another blocking thread of the plugin's own, never the loop:
   * connects to the [store] database with search_path = `schema`
   * (the plugin's own, "[a-z][a-z0-9_]{0,62}": e.g. "bh_<plugin>";
   * created if absent), a 5 s statement_timeout, and applies the
   * migrations newer than the schema's version in ONE transaction (all
   * or none; instances take turns). `schema` NULL, or the declared name
   * with `m` NULL: the descriptor's store_schema (name and migrations),
   * the form to use, as `bulkhead migrate` and `-t` see only that one. 0 and
   * *conn, a libpq PGconn * (the plugin links libpq), owned by the plugin until
   * store_disconnect(); -ENOTSUP on sqlite; -EINVAL bad schema or migrations,
   * or a schema newer than them; -EIO unreachable (err, errlen: one line for
   * the plugin's log, never the url). The plugin reconnects the same way when
   * PQstatus() says the connection broke. */
  int (*store_connect)(bh_ctx *ctx, const char *schema, const bh_migration *m,
                       size_t nmigrations, void **conn, char *err,
                       size_t errlen);
  /* Closes a connection of store_connect(), on the thread that uses it.
   * NULL is fine. */
  void (*store_disconnect)(bh_ctx *ctx, void *conn);
  /* --- ABI 1.3 (problem_with) --- */

  /* Ends `req` like problem() (or, with `res`, a result of this request
   * still in its upstream callback, like problem_upstream(): `code` and
   * `detail` are then ignored) with the members of `members_json` added
   * to extensions (at the top level with flat Problems). members_json: one
   * JSON object (bh_json_done() of the writer), copied; NULL adds nothing.
   * Its strings are escaped as the core's own; at most 16 KiB.
   * retry_after_s >= 0 sets Retry-After and extensions.retryAfterSeconds
   * (always equal); < 0 keeps what the code or the error map's row for
   * `res` says (none for a plain code). 0; -EALREADY / -ECANCELED as
   * problem(); -EINVAL members_json not one object, with a duplicate name
   * or naming a member the core writes (type, title, status, detail,
   * instance, extensions, code, retryable, retryAfterSeconds, requestId,
   * traceId, spanId, errors), -E2BIG past 16 KiB: then the request is
   * ended with generic.internal (as respond() with bad arguments) and
   * one line names the plugin and the member. */
  int (*problem_with)(bh_req *req, const char *code, const char *detail,
                      const bh_upstream_result *res, const char *members_json,
                      long retry_after_s);
};

/* ---------------------------------------------------------------------- */
/* Inline wrappers: plugin code reads naturally                            */
/* ---------------------------------------------------------------------- */

/* Every bh_ctx, bh_req, bh_wakeup and bh_jobq begins with this head, so the
 * wrappers reach the services table without a global in the plugin. Plugins
 * never touch it. */
typedef struct bh_handle_head {
  const bh_services *svc;
} bh_handle_head;

#define BH__SVC(h) (((const bh_handle_head *)(const void *)(h))->svc)

/* True when the core's table has slot `member` (slots appended after the
 * plugin's minor are absent in an older core). */
#define BH_SVC_HAS(svc, member)                                                \
  ((svc)->size >= offsetof(bh_services, member) + sizeof((svc)->member) &&     \
   (svc)->member != NULL)

#define bh_log(ctx, level, ...) BH__SVC(ctx)->log((ctx), (level), __VA_ARGS__)

static inline const char *bh_config(bh_ctx *c, const char *key) {
  return BH__SVC(c)->config_get(c, key);
}
static inline void bh_set_data(bh_ctx *c, void *d) {
  BH__SVC(c)->set_data(c, d);
}
static inline void *bh_data(bh_ctx *c) {
  return BH__SVC(c)->get_data(c);
}
static inline const char *bh_data_dir(bh_ctx *c) {
  return BH__SVC(c)->data_dir(c);
}
static inline int bh_route_add(bh_ctx *c, const bh_route *r) {
  return BH__SVC(c)->route_add(c, r);
}
static inline int bh_error_map(bh_ctx *c, const bh_error_row *rows, size_t n) {
  return BH__SVC(c)->error_map(c, rows, n, sizeof(bh_error_row));
}
static inline const char *bh_req_method(bh_req *r) {
  return BH__SVC(r)->req_method(r);
}
static inline const char *bh_req_path(bh_req *r) {
  return BH__SVC(r)->req_path(r);
}
static inline const char *bh_req_query(bh_req *r) {
  return BH__SVC(r)->req_query(r);
}
static inline const char *bh_req_param(bh_req *r, const char *name) {
  return BH__SVC(r)->req_param(r, name);
}
static inline const char *bh_req_header(bh_req *r, const char *name) {
  return BH__SVC(r)->req_header(r, name);
}
static inline const char *bh_req_body(bh_req *r, size_t *len) {
  return BH__SVC(r)->req_body(r, len);
}
static inline const char *bh_req_id(bh_req *r) {
  return BH__SVC(r)->req_id(r);
}
static inline const char *bh_req_client_addr(bh_req *r) {
  return BH__SVC(r)->req_client_addr(r);
}
static inline bh_ctx *bh_req_ctx(bh_req *r) {
  return BH__SVC(r)->req_ctx(r);
}
static inline int bh_set_header(bh_req *r, const char *name,
                                const char *value) {
  return BH__SVC(r)->set_header(r, name, value);
}
static inline int bh_respond(bh_req *r, int status, const char *content_type,
                             const char *body, size_t len) {
  return BH__SVC(r)->respond(r, status, content_type, body, len);
}
/* Ends `req` with JSON text the plugin wrote itself. */
static inline int bh_respond_json_text(bh_req *r, int status,
                                       const char *json) {
  size_t n = 0;
  while (json[n] != '\0')
    n++;
  return BH__SVC(r)->respond(r, status, NULL, json, n);
}
static inline int bh_problem(bh_req *r, const char *code, const char *detail) {
  return BH__SVC(r)->problem(r, code, detail);
}
static inline int bh_body_parse(bh_req *r, const bh_body_shape *shape) {
  return BH__SVC(r)->body_parse(r, shape, sizeof(bh_body_shape),
                                sizeof(bh_field));
}
static inline const char *bh_body_string(bh_req *r, const char *field) {
  return BH__SVC(r)->body_string(r, field);
}
static inline int bh_body_int(bh_req *r, const char *field, int64_t *out) {
  return BH__SVC(r)->body_int(r, field, out);
}
static inline int bh_body_bool(bh_req *r, const char *field, int *out) {
  return BH__SVC(r)->body_bool(r, field, out);
}
static inline const char *bh_body_json(bh_req *r, const char *field) {
  return BH__SVC(r)->body_json(r, field);
}
static inline int bh_upstream_add(bh_ctx *c, const bh_upstream_def *def,
                                  bh_upstream **out) {
  return BH__SVC(c)->upstream_add(c, def, out);
}
static inline int bh_upstream_call(bh_req *r, bh_upstream *u,
                                   const bh_upstream_request *call,
                                   bh_upstream_cb cb, void *data) {
  return BH__SVC(r)->upstream_call(r, u, call, cb, data);
}
static inline const char *
bh_upstream_header(bh_req *r, const bh_upstream_result *res, const char *name) {
  return BH__SVC(r)->upstream_header(res, name);
}
static inline int bh_problem_upstream(bh_req *r,
                                      const bh_upstream_result *res) {
  return BH__SVC(r)->problem_upstream(r, res);
}
static inline int bh_proxy_add(bh_ctx *c, const char *prefix, bh_upstream *u,
                               uint32_t flags) {
  return BH__SVC(c)->proxy_add(c, prefix, u, flags);
}
static inline const char *bh_body_string_at(bh_req *r, const char *field,
                                            size_t i) {
  return BH__SVC(r)->body_string_at(r, field, i);
}
/* Check BH_SVC_HAS(svc, wakeup_new) before the first use (not in 1.0). */
static inline int bh_wakeup_new(bh_ctx *c, bh_wakeup_fn cb, void *data,
                                bh_wakeup **out) {
  return BH__SVC(c)->wakeup_new(c, cb, data, out);
}
static inline int bh_wakeup_send(bh_wakeup *w) {
  return BH__SVC(w)->wakeup_send(w);
}
static inline void bh_wakeup_close(bh_wakeup *w) {
  BH__SVC(w)->wakeup_close(w);
}
/* Check BH_SVC_HAS(svc, problem_field) before the first use (not in 1.0). */
static inline int bh_problem_field(bh_req *r, const char *code,
                                   const char *detail, const char *field) {
  return BH__SVC(r)->problem_field(r, code, detail, field);
}
/* NULL on a core older than 1.2 too, so no check is needed. */
static inline const bh_principal *bh_req_principal(bh_req *r) {
  const bh_services *s = BH__SVC(r);
  return BH_SVC_HAS(s, req_principal) ? s->req_principal(r) : NULL;
}
/* Check BH_SVC_HAS(svc, session_create) before using these (1.2). */
static inline int bh_problem_retry(bh_req *r, const char *code,
                                   const char *detail, long retry_after_s) {
  return BH__SVC(r)->problem_retry(r, code, detail, retry_after_s);
}
static inline int bh_session_create(bh_req *r, const bh_session_request *in,
                                    bh_identity_cb cb, void *data) {
  return BH__SVC(r)->session_create(r, in, cb, data);
}
static inline int bh_session_refresh(bh_req *r, const char *token,
                                     uint32_t flags, bh_identity_cb cb,
                                     void *data) {
  return BH__SVC(r)->session_refresh(r, token, flags, cb, data);
}
static inline int bh_session_revoke(bh_req *r, const char *token,
                                    uint32_t flags, bh_identity_cb cb,
                                    void *data) {
  return BH__SVC(r)->session_revoke(r, token, flags, cb, data);
}
static inline int bh_apikey_create(bh_req *r, const char *name,
                                   const char *scopes, bh_identity_cb cb,
                                   void *data) {
  return BH__SVC(r)->apikey_create(r, name, scopes, cb, data);
}
static inline int bh_apikey_list(bh_req *r, bh_identity_cb cb, void *data) {
  return BH__SVC(r)->apikey_list(r, cb, data);
}
static inline int bh_apikey_revoke(bh_req *r, const char *key_id,
                                   bh_identity_cb cb, void *data) {
  return BH__SVC(r)->apikey_revoke(r, key_id, cb, data);
}
static inline int bh_login_guard(bh_req *r, const char *account, int event,
                                 bh_identity_cb cb, void *data) {
  return BH__SVC(r)->login_guard(r, account, event, cb, data);
}
static inline int bh_local_verify(bh_req *r, const char *email,
                                  const char *password, bh_identity_cb cb,
                                  void *data) {
  return BH__SVC(r)->local_verify(r, email, password, cb, data);
}
/* Check BH_SVC_HAS(svc, upstream_stream) before using these (1.2). */
static inline int bh_upstream_stream(bh_req *r, bh_upstream *u,
                                     const bh_upstream_request *call,
                                     bh_upstream_chunk_fn on_chunk,
                                     bh_upstream_cb cb, void *data) {
  return BH__SVC(r)->upstream_stream(r, u, call, on_chunk, cb, data);
}
static inline int bh_stream_start(bh_req *r, int status,
                                  const char *content_type) {
  return BH__SVC(r)->stream_start(r, status, content_type);
}
static inline long bh_stream_write(bh_req *r, const char *data, size_t len) {
  return BH__SVC(r)->stream_write(r, data, len);
}
static inline int bh_stream_end(bh_req *r, int failed) {
  return BH__SVC(r)->stream_end(r, failed);
}
static inline int bh_problem_json(bh_req *r, const char *code,
                                  const char *detail,
                                  const bh_upstream_result *res, char *buf,
                                  size_t buflen) {
  return BH__SVC(r)->problem_json(r, code, detail, res, buf, buflen);
}
/* Check BH_SVC_HAS(svc, secret_get) before using these two (1.3). */
static inline int bh_secret_get(bh_ctx *c, const char *key, char **out,
                                size_t *outlen) {
  return BH__SVC(c)->secret_get(c, key, out, outlen);
}
static inline void bh_secret_free(bh_ctx *c, char *secret, size_t len) {
  BH__SVC(c)->secret_free(secret, len);
}
/* The form of bh_upstream_header to use: the value lands in the caller's
 * buffer, so a second call cannot overwrite the first. On a core older
 * than 1.3 it copies from the per-thread buffer at once (values longer
 * than 1023 bytes are then cut there). */
static inline int bh_upstream_header_get(bh_req *r,
                                         const bh_upstream_result *res,
                                         const char *name, char *buf,
                                         size_t buflen) {
  const bh_services *s = BH__SVC(r);
  if (BH_SVC_HAS(s, upstream_header_get))
    return s->upstream_header_get(res, name, buf, buflen);
  if (res == NULL || name == NULL || (buf == NULL && buflen)) return -EINVAL;
  const char *v = s->upstream_header(res, name);
  if (v == NULL) return -ENOENT;
  size_t n = 0;
  while (v[n])
    n++;
  if (buflen) {
    size_t k = n < buflen - 1 ? n : buflen - 1;
    memcpy(buf, v, k);
    buf[k] = '\0';
  }
  return (int)n;
}
/* Check BH_SVC_HAS(svc, body_get) before using these two (1.3). */
static inline int bh_body_get(bh_req *r, const char *pointer,
                              bh_body_value *out) {
  return BH__SVC(r)->body_get(r, pointer, out, sizeof(*out));
}
static inline const char *bh_body_key_at(bh_req *r, const char *pointer,
                                         size_t i) {
  return BH__SVC(r)->body_key_at(r, pointer, i);
}

/* ABI 1.3: check BH_SVC_HAS(svc, budget_charge) before using these. */
static inline int bh_upstream_fallback(bh_req *r, bh_upstream *from,
                                       bh_upstream *to) {
  return BH__SVC(r)->upstream_fallback(r, from, to);
}
static inline int bh_budget_add(bh_ctx *c, const char *policy) {
  return BH__SVC(c)->budget_add(c, policy);
}
static inline int bh_budget_charge(bh_req *r, const char *policy,
                                   uint64_t tokens, uint32_t flags,
                                   long *retry_after_s) {
  return BH__SVC(r)->budget_charge(r, policy, tokens, flags, retry_after_s);
}
/* ABI 1.3: check BH_SVC_HAS(svc, composite_add) before the first use. */
static inline int bh_composite_add(bh_ctx *c, const bh_composite *def) {
  return BH__SVC(c)->composite_add(c, def);
}
/* ABI 1.3 (store): check BH_SVC_HAS(svc, jobq_new) before using these. */
static inline int bh_jobq_new(bh_ctx *c, const bh_jobq_def *def, void *data,
                              bh_jobq **out) {
  return BH__SVC(c)->jobq_new(c, def, data, out);
}
static inline int bh_jobq_submit(bh_jobq *q, bh_job *job) {
  return BH__SVC(q)->jobq_submit(q, job);
}
static inline void bh_jobq_close(bh_jobq *q) {
  BH__SVC(q)->jobq_close(q);
}
/* ABI 1.3 (store): check BH_SVC_HAS(svc, store_info) first. */
static inline int bh_store_info_get(bh_ctx *c, bh_store_info *out) {
  out->size = sizeof(*out);
  return BH__SVC(c)->store_info(c, out);
}
static inline int bh_store_connect(bh_ctx *c, const char *schema,
                                   const bh_migration *m, size_t n, void **conn,
                                   char *err, size_t errlen) {
  return BH__SVC(c)->store_connect(c, schema, m, n, conn, err, errlen);
}
static inline void bh_store_disconnect(bh_ctx *c, void *conn) {
  BH__SVC(c)->store_disconnect(c, conn);
}
/* ABI 1.3: check BH_SVC_HAS(svc, problem_with) before the first use. */
static inline int bh_problem_with(bh_req *r, const char *code,
                                  const char *detail,
                                  const bh_upstream_result *res,
                                  const char *members_json,
                                  long retry_after_s) {
  return BH__SVC(r)->problem_with(r, code, detail, res, members_json,
                                  retry_after_s);
}

/* ---------------------------------------------------------------------- */
/* Helpers (header only: no service slot)                                  */
/* ---------------------------------------------------------------------- */

/* The number of elements of an array (not of a pointer). */
#define BH_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Registers every route of a table during init(), in order: the loop
 * each plugin used to write. 0, or the first failure (the core has then
 * recorded it, and the load fails with a line naming the plugin, the
 * route and the rule it broke). Use as bh_routes_add(ctx, routes,
 * BH_COUNT(routes)). */
static inline int bh_routes_add(bh_ctx *c, const bh_route *routes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = BH__SVC(c)->route_add(c, &routes[i]);
    if (rc < 0) return rc;
  }
  return 0;
}

/* The JSON writer (header only, see its header). */
#include "bulkhead/json.h"

/* Ends `req` with what the writer built (the status and application/json)
 * and frees the writer's text, in every case. A writer that failed or is
 * incomplete answers generic.internal instead, logged with the writer's
 * error, and its error is returned. */
static inline int bh_respond_json_built(bh_req *r, int status, bh_json *j) {
  size_t n = 0;
  const char *t = bh_json_done(j, &n);
  int rc;
  if (t == NULL) {
    rc = j->err;
    bh_log(bh_req_ctx(r), BH_LOG_ERROR,
           "JSON answer not sent: the writer failed (%d)", rc);
    int prc = bh_problem(r, "generic.internal", NULL);
    bh_json_free(j);
    return prc < 0 ? prc : rc;
  }
  rc = BH__SVC(r)->respond(r, status, NULL, t, n);
  bh_json_free(j);
  return rc;
}

/* bh_respond_json(req, status, x): x is a bh_json * the plugin built
 * (sent and freed, as bh_respond_json_built) or JSON text (as
 * bh_respond_json_text). In C++ it takes text only. */
#ifndef __cplusplus
#define bh_respond_json(r, status, x)                                          \
  _Generic((x), bh_json *                                                      \
           : bh_respond_json_built, default                                    \
           : bh_respond_json_text)((r), (status), (x))
#else
/* C++ keeps the 1.2 form for text; a writer goes to bh_respond_json_built */
static inline int bh_respond_json(bh_req *r, int status, const char *json) {
  return bh_respond_json_text(r, status, json);
}
#endif

static inline int bh__path_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends "/" and `seg` percent-encoded to the NUL-terminated path in
 * `buf` (`cap` bytes in all, NUL included): the way to put a request
 * parameter, an id or a name into an upstream path
 * (bh_upstream_request.path). Every byte but ALPHA, DIGIT and "-._~" is
 * written as %XX, so a segment can never add a '/', '?', '#', a space or
 * a control byte to the path. "" and the dot segments "." and ".." (which
 * servers resolve, encoded or not) are refused. `buf` is the caller's and
 * is unchanged on failure; `seg` is only read. Start with buf[0] = '\0' and
 * append each segment; add the query afterwards.
 * 0; -EINVAL (NULL buf or seg, no NUL within cap, seg "", "." or "..");
 * -ENOSPC (the result does not fit in cap). */
static inline int bh_path_append_segment(char *buf, size_t cap,
                                         const char *seg) {
  const char *hex = "0123456789ABCDEF";
  size_t len = 0, need = 1; /* the '/' */
  if (buf == NULL || seg == NULL) return -EINVAL;
  while (len < cap && buf[len])
    len++;
  if (len == cap) return -EINVAL;
  if (seg[0] == '\0' ||
      (seg[0] == '.' && (seg[1] == '\0' || (seg[1] == '.' && seg[2] == '\0'))))
    return -EINVAL;
  for (const char *s = seg; *s; s++)
    need += bh__path_unreserved((unsigned char)*s) ? 1 : 3;
  if (need >= cap - len) return -ENOSPC; /* and the NUL */
  char *o = buf + len;
  *o++ = '/';
  for (const char *s = seg; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (bh__path_unreserved(c)) {
      *o++ = (char)c;
    } else {
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o = '\0';
  return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* BULKHEAD_PLUGIN_H */
