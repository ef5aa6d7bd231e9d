/*
 * The auth plugin's internals, shared by its files:
 *   auth.c     init, the error map, /v1/auth/status and /v1/auth/me
 *   login.c    POST /v1/auth/login against the identity provider
 *   session.c  POST /v1/auth/refresh and /v1/auth/logout
 *   keys.c     /v1/api-keys
 *   magic.c    the email magic-link sign-in (SMTP; the store: magic_db.c,
 *              its own SQLite file or PostgreSQL: magic_db_pg.c)
 * Sessions, refresh tokens and API keys live in the core's store; this
 * plugin drives it through the identity services (ABI 1.2).
 */
#ifndef AUTH_PLUGIN_H
#define AUTH_PLUGIN_H

#include <bulkhead/plugin.h>
#include <jansson.h>

#define AUTH_VERSION "1.0.0"

enum auth_idp { AUTH_IDP_LOCAL = 0, AUTH_IDP_TOOLKIT = 1 };

enum auth_magic_mode {
  AUTH_MAGIC_OFF = 0,
  AUTH_MAGIC_FALLBACK = 1, /* only while the IdP is unavailable */
  AUTH_MAGIC_ALWAYS = 2
};

typedef struct auth_magic {
  int mode; /* enum auth_magic_mode */
  char db_path[4096];
  char *smtp_url, *smtp_from, *smtp_user, *smtp_password; /* owned */
  char *link_base; /* "https://portal.example.com", no trailing '/' */
  int64_t smtp_timeout_ms, ttl_s, window_s;
  int per_email, per_address, verify_failures;
} auth_magic;

typedef struct auth_state {
  int idp;               /* enum auth_idp */
  bh_upstream *upstream; /* the identity toolkit, when idp = identity_toolkit */
  char key_query[512];   /* "?key=<url-encoded idp_api_key>" or "" */
  long throttled_retry_after; /* when the IdP itself says "too many" */
  auth_magic magic;
} auth_state;

/* One per process (each worker loads its own copy of the plugin). */
extern auth_state auth_g;

/* Answers what `j` built (sent and freed) with `status`, no-store. */
void auth_reply(bh_req *req, int status, bh_json *j);
/* A space-separated scope string as the writer's next value, an array. */
void auth_scopes_put(bh_json *j, const char *scopes);
/* Answers a successful login or refresh: user, access token and its
 * expiry, with `with_refresh` the refresh token, and `redirect` when not
 * NULL or "". The text is wiped once sent. */
void auth_token_reply(bh_req *req, const bh_identity_result *res,
                      int with_refresh, const char *redirect);
/* Answers a failed identity call: res->code, or the service's errno. */
void auth_fail(bh_req *req, int status, const char *code);

/* magic.c. routes: registered during init (count, or negative); start:
 * the worker thread; fini: joins it. */
int auth_magic_routes(bh_ctx *ctx);
int auth_magic_start(bh_ctx *ctx);
void auth_magic_fini(bh_ctx *ctx);
int auth_magic_enabled(void);
/* login.c tells magic.c what a login learnt: the account behind an email
 * (after a successful password login), and whether the IdP answered. */
void auth_magic_remember(const char *email, const char *user_id);
void auth_magic_idp_state(int down);
/* magic_mail.c (the job queue's thread): whether the SMTP server answers
 * (0 or -EIO), and the mail with the link for `token` to `to`: 0, or a
 * negative errno with *why (curl's static text) when SMTP failed. */
int auth_magic_smtp_probe(void);
int auth_magic_smtp_send(const char *to, const char *token, const char **why);
/* Ends a login the IdP could not serve: the error map's answer for `res`
 * (or auth.idp_unavailable when NULL); auth.idp_unavailable then records
 * the outage and, with the magic link on, carries extensions.fallback =
 * "magic_link". */
void auth_idp_failed(bh_req *req, const bh_upstream_result *res);

void auth_login(bh_req *req, void *data);
void auth_refresh(bh_req *req, void *data);
void auth_logout(bh_req *req, void *data);
void auth_keys_create(bh_req *req, void *data);
void auth_keys_list(bh_req *req, void *data);
void auth_keys_delete(bh_req *req, void *data);

/* magic_db_pg.c: the magic-link store's PostgreSQL schema (bh_auth),
 * declared in the descriptor */
extern const bh_store_schema magic_pg_schema;

#endif
