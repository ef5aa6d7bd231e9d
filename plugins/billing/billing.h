/*
 * billing plugin internals, shared by its files:
 *
 *   billing.c         config, lifecycle, error map, routes, status routes
 *   billing_api.c     checkout-session, portal-session, subscription: the
 *                     provider calls (form-encoded, Idempotency-Key)
 *   billing_events.c  provider-events: signature, timestamp tolerance,
 *                     replay refusal, recording completed checkouts
 *   billing_store.c   the plugin's own SQLite file, on a core job queue
 *
 * Everything but the store thread runs on the worker's loop thread.
 */
#ifndef BILLING_H
#define BILLING_H

#include <bulkhead/plugin.h>
#include <stdatomic.h>
#include <stdint.h>

#define BILLING_VERSION "0.2.0"

typedef struct sqlite3 sqlite3;

typedef struct billing_config {
  char *secret_key;     /* the provider's secret key, resolved; NULL: none */
  char *webhook_secret; /* signs provider events; NULL: events refused */
  long tolerance_s;     /* accepted age (and skew) of an event's timestamp */
  char *db_path;        /* absolute */
  int busy_timeout_ms;
  /* borrowed from bh_config() until fini() */
  const char *mode; /* checkout mode: subscription | payment */
  const char *success_url, *cancel_url, *portal_return_url;
  const char *api_version; /* Stripe-Version header, or NULL */
  char **prices;           /* allowed price ids; none: any well-formed id */
  size_t nprices;
  long rate_limited_retry_after_s; /* provider 429 without Retry-After */
} billing_config;

/* What a job does on the store thread. */
enum billing_op {
  BILLING_OP_LOOKUP = 1, /* user_id -> customer_id */
  BILLING_OP_EVENT = 2   /* record a provider event (refuse a seen id) */
};

/* Which route the job serves, so the loop side knows how to go on. */
enum billing_route {
  BILLING_CHECKOUT = 1,
  BILLING_PORTAL = 2,
  BILLING_SUBSCRIPTION = 3,
  BILLING_EVENTS = 4
};

typedef struct billing_job {
  bh_job job; /* first: the core queue's node */
  int op;     /* enum billing_op */
  int route;  /* enum billing_route */
  bh_req *req;
  /* inputs */
  char *user_id;
  char *price_id; /* checkout */
  int64_t quantity;
  char *idem_key;              /* the Idempotency-Key sent to the provider */
  char *event_id, *event_type; /* events */
  char *ev_user, *ev_customer, *ev_subscription;
  int64_t now; /* unix seconds */
  /* outputs: 0, -ENOENT (no row), -EEXIST (event seen), -EIO (store) */
  int status;
  char *customer_id;
} billing_job;

typedef struct billing_store {
  bh_jobq *q;      /* the core's queue: its thread runs every statement */
  atomic_int down; /* the last batch failed (read by health()) */
  void *owner;     /* the plugin, for the done callback */
  const billing_config *cfg;
  bh_ctx *ctx;
  int postgres; /* [store] backend = postgres: billing_store_pg.c */
  sqlite3 *db;  /* the queue's thread only */
  void *pg;     /* PGconn, the queue's thread only */
  int64_t pg_retry_at;
  int pg_failing;
} billing_store;

typedef struct billing_plugin {
  bh_ctx *ctx;
  const bh_services *svc;
  billing_config cfg;
  bh_upstream *provider;
  int closing; /* fini(): finished jobs are answered, never carried on */
  billing_store store;
  char *auth_header;    /* "Authorization: Bearer ..." or NULL */
  char *version_header; /* "Stripe-Version: ..." or NULL */
} billing_plugin;

/* billing.c */
billing_plugin *billing_get(bh_req *req);

/* billing_api.c: the three user routes */
void billing_checkout_post(bh_req *req, void *data);
void billing_portal_post(bh_req *req, void *data);
void billing_subscription_get(bh_req *req, void *data);
/* The store answered a lookup: call the provider (or answer). */
void billing_api_lookup_done(billing_plugin *bp, billing_job *j);
/* Ends req with the error map's answer for a failed provider call, and
 * logs what ops must act on. */
void billing_provider_failed(billing_plugin *bp, bh_req *req,
                             const bh_upstream_result *res);

/* billing_events.c */
void billing_events_post(bh_req *req, void *data);
void billing_events_done(billing_plugin *bp, billing_job *j);
/* 0 when `header` (a Stripe-Signature value) signs `body` with `secret`
 * at a time within tolerance_s of now; -EINVAL malformed or no match,
 * -ETIME outside the tolerance. */
int billing_signature_check(const char *header, const char *body,
                            size_t body_len, const char *secret,
                            long tolerance_s, int64_t now);

/* billing_store.c */
billing_job *billing_job_new(int op, int route, bh_req *req);
void billing_job_free(billing_job *j);
/* Starts the store's job queue; `done` runs on the loop for each finished
 * job with the store (whose owner is `owner`). */
int billing_store_start(billing_store *s, const billing_config *cfg,
                        bh_ctx *ctx, void (*done)(bh_job *, void *),
                        void *owner);
/* 0 queued; -ESHUTDOWN stopping; -EAGAIN queue full. Owns j on 0. */
int billing_store_submit(billing_store *s, billing_job *j);
int billing_store_down(billing_store *s);
/* Closes the queue: queued jobs still run, their done callbacks run before
 * it returns, and the thread closes the database. */
void billing_store_stop(billing_store *s);

/* billing_store_pg.c (the queue's thread): the jobs on PostgreSQL, in
 * schema bh_billing, declared in the descriptor (the core checks and
 * migrates it without starting the plugin). */
extern const bh_store_schema billing_pg_schema;
int billing_pg_ensure(billing_store *s);
int billing_pg_run_batch(billing_store *s, billing_job *batch);
void billing_pg_close(billing_store *s);

/* small helpers (billing_api.c) */
char *billing_strdup(const char *s);

#endif
