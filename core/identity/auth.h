/*
 * Sessions and identity in the core: the [auth] configuration, the session
 * middleware in front of auth-required routes, and the services the auth
 * plugin drives the store with.
 *
 *   auth_conf.c      [auth] keys, secrets and key files, checked at load
 *   auth.c           per-process state: keys, store, prepare / start / stop
 *   auth_mw.c        the middleware: credentials, cookies, CSRF, refresh,
 *                    401 / 302 answers
 *   auth_services.c  the identity slots of the services table
 *   auth_cli.c       `bulkhead user add|disable|enable EMAIL`
 *   jwt_token.c      signing (libjwt) and verification (pinned algorithm,
 *                    signature before any JSON)
 *   jwt_cache.c      the worker's verified tokens
 *   store*.c         the SQLite store on its own thread
 */
#ifndef BH_CORE_AUTH_H
#define BH_CORE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bulkhead/plugin.h"
#include "config/config.h"
#include "identity/auth-t.h"
#include "identity/jwt_cache.h"
#include "identity/jwt_token.h"

struct bh__daemon;
struct bh__store;

/* The generated HS256 secret, when [auth] gives none. */
#define BH__AUTH_SECRET_FILE "jwt.secret"
#define BH__AUTH_MIN_SECRET 32

/* auth_conf.c. Reads [auth] of cfg (environment overrides applied) into
 * *out (allocated). 0, or -EINVAL / -ENOMEM with one line
 * "FILE:LINE: [auth] KEY: problem" in err. */
int bh__auth_conf_load(const bh__config *cfg, bh__auth_conf **out, char *err,
                       size_t errlen);
void bh__auth_conf_free(bh__auth_conf *c);
/* store_conf.c. Reads [store] (backend, url, pool) into c; 0 or -EINVAL /
 * -ENOMEM with "FILE:LINE: [store] KEY: problem" in err (never the url's
 * value: it may hold a password). */
int bh__store_conf_load(const bh__config *cfg, bh__auth_conf *c, char *err,
                        size_t errlen);

/* auth.c: the process's auth state. */
typedef struct bh__auth {
  const bh__auth_conf *conf;
  bh__jwt_keys keys;            /* keys.vk prepared at start */
  struct bh__jwt_cache *tokens; /* verified tokens; NULL: none kept */
  struct bh__store *store;      /* NULL: refresh / API keys answer 503 */
  char *store_path;
} bh__auth;

/* Before the daemon starts (main.c), in the process that will serve or
 * fork the workers. check_only (-t, --list-codes): the keys are resolved
 * and nothing is written. Otherwise the generated secret is created when
 * needed (0600), and the store is opened and migrated, then closed: a
 * failure stops start-up with one line in err. */
int bh__auth_prepare(const bh__config *cfg, int check_only, char *err,
                     size_t errlen);
/* In a process that serves requests (single or worker): keys from
 * d->cfg, the store opened on its own thread. Without a prepare (-t),
 * nothing: auth-required routes then refuse everyone. Never fails the
 * daemon: a store that does not open is logged and only refresh and API
 * keys answer 503. */
void bh__auth_start(struct bh__daemon *d);
/* `bulkhead migrate`: applies the identity store's pending migrations on
 * the configured backend and logs its version. 0 or a negative errno with
 * one line in err. */
int bh__auth_migrate(const bh__config *cfg, char *err, size_t errlen);
/* Joins the store thread, delivering the completions still queued (their
 * callbacks run), and closes the store. Idempotent. */
void bh__auth_stop(struct bh__daemon *d);
/* The process's state, or NULL before bh__auth_start. */
bh__auth *bh__auth_get(void);

/* What the middleware attaches to a request it let through: plain data,
 * freed with free() when the request goes (http/request.c). */
#define BH__IDL_USER "X-Bulkhead-User: "
#define BH__IDL_SCOPES "X-Bulkhead-Scopes: "
#define BH__IDL_USER_N (sizeof(BH__IDL_USER) - 1)
#define BH__IDL_SCOPES_N (sizeof(BH__IDL_SCOPES) - 1)
typedef struct bh__authn {
  bh_principal p; /* points into the arrays below */
  /* The identity lines a proxy route sends upstream, rendered with the
   * principal (for a cached token once, at insert: auth_mw.c), each
   * NUL-terminated: "X-Bulkhead-User: <user_id>", "X-Bulkhead-Scopes:
   * <scopes>". p.user_id and p.scopes point at their values. *_len: the
   * line's length; send_*: it may go (no control byte; scopes not empty) */
  char user_line[BH__IDL_USER_N + 128];
  char scopes_line[BH__IDL_SCOPES_N + 512];
  uint16_t user_len, scopes_len;
  uint8_t send_user, send_scopes;
  char session_id[64];
  char key_id[48];
} bh__authn;

/* auth_mw.c: the middleware. The token cache's prep callback
 * (jwt_cache.h): a cached token's principal and session key, built once. */
size_t bh__authn_prep(const bh__claims *c, void *out, size_t room);
/* What the request path hands the session check. resume: the rest of the
 * path, run later once an asynchronous check (API key, silent refresh) let
 * the caller in. gate (may be NULL): run before an API key is looked up in
 * the store; nonzero when it answered the request (no lookup is made). */
typedef struct bh__auth_next {
  void (*resume)(bh_req *req);
  int (*gate)(bh_req *req);
} bh__auth_next;
/* For an auth-required route: 0 the caller is authenticated (carry on),
 * 1 pending (next->resume runs later, or the request is answered), -1
 * answered (401 / 302 / 403 / 503). */
int bh__auth_check(bh_req *req, const bh__auth_next *next);
/* Gives `to` the caller `from` was let in as (a composite's sections
 * share its one session check). 0, -ENOENT (from has none), -ENOMEM. */
int bh__authn_copy(bh_req *to, const bh_req *from);
/* The principal of req, or NULL. */
const bh_principal *bh__auth_principal(bh_req *req);

/* auth_revoked.c: the revoked-session set shared by every process (see
 * the file). init: finds or creates it (in the shared mapping when there
 * is one) with `capacity` slots; 0 or -ENOMEM. */
int bh__revoked_init(uint32_t capacity);
/* Forgets this process's view (a process-local table is freed). */
void bh__revoked_reset(void);
/* Records session `sid` as revoked until `until` (unix s). 0, or -ENOSPC
 * when it found no slot (the set then fails closed). */
int bh__revoked_add(const char *sid, int64_t until, int64_t now);
enum { BH__REVOKED = 1, BH__REVOKED_UNSURE = 2 };
/* For a verified access token of session `sid` issued at `iat`: 0 valid,
 * BH__REVOKED, or BH__REVOKED_UNSURE (issued before the set overflowed:
 * refresh to go on). No lock, no I/O. */
int bh__revoked_check(const char *sid, int64_t iat, int64_t now);
/* The set's key of session `sid` (a 16-byte BLAKE2b digest, ~1 000
 * instructions), and the check with a key computed before: the token
 * cache keeps each cached token's key (auth_mw.c). key NULL: no sid. */
void bh__revoked_key(const char *sid, uint64_t key[2]);
int bh__revoked_check_key(const uint64_t *key, int64_t iat, int64_t now);
/* access_ttl_s + leeway_s: how long a revocation must be remembered. */
int64_t bh__revoked_span(const bh__auth_conf *c);
/* auth_poll.c. On a shared store (PostgreSQL) another instance's
 * revocations reach this one's revoked-session set by a poll every
 * BH__REVOKED_POLL_MS: the bound on how long a logged-out access token
 * still passes here. Loop thread; stop is idempotent. */
#define BH__REVOKED_POLL_MS 1000
void bh__revoked_poll_start(uv_loop_t *loop, struct bh__store *s,
                            const bh__auth_conf *c);
void bh__revoked_poll_stop(void);

/* Records a revocation the store just made (now + the span). */
void bh__auth_revoked(const char *sid);

/* auth_services.c: the identity slots of the services table. */
const bh_principal *bh__svc_req_principal(bh_req *req);
int bh__svc_session_create(bh_req *req, const bh_session_request *in,
                           bh_identity_cb cb, void *data);
int bh__svc_session_refresh(bh_req *req, const char *token, uint32_t flags,
                            bh_identity_cb cb, void *data);
int bh__svc_session_revoke(bh_req *req, const char *token, uint32_t flags,
                           bh_identity_cb cb, void *data);
int bh__svc_apikey_create(bh_req *req, const char *name, const char *scopes,
                          bh_identity_cb cb, void *data);
int bh__svc_apikey_list(bh_req *req, bh_identity_cb cb, void *data);
int bh__svc_apikey_revoke(bh_req *req, const char *key_id, bh_identity_cb cb,
                          void *data);
int bh__svc_login_guard(bh_req *req, const char *account, int event,
                        bh_identity_cb cb, void *data);
int bh__svc_local_verify(bh_req *req, const char *email, const char *password,
                         bh_identity_cb cb, void *data);

/* Cookie helpers shared with auth_services.c. */
/* The session (0) or refresh (1) cookie's name: __Host-session /
 * __Host-refresh with cookie_secure, else __session / __refresh. */
const char *bh__cookie_name(int refresh);
/* How often cookie `name` appears in one Cookie header value; *value and
 * *vlen (not terminated, quotes stripped) of the first. */
int bh__cookie_scan(const char *header, const char *name, const char **value,
                    size_t *vlen);
/* The value of cookie `name` in the request's Cookie header(s), copied to
 * out (NUL-terminated); 0, or -ENOENT / -ENOSPC, or -EEXIST when it
 * appears more than once (refuse: which copy is ours is unknown). */
int bh__cookie_get(bh_req *req, const char *name, char *out, size_t outlen);
/* The highest q of media type `type` in an Accept value (0 when absent):
 * whether a refused request is a browser navigation (302) or not. */
double bh__accept_q(const char *accept, const char *type);
/* The token of an "Authorization: Bearer <token>" value, or NULL. */
const char *bh__bearer_token(const char *authz);
/* The session of the request's verified access token (Bearer, else the
 * session cookie, which must pass the CSRF check), for routes that are
 * not auth-required (logout). 0 and sid, -ENOENT, -EEXIST, -EPERM. */
int bh__auth_session_of(bh_req *req, char *sid, size_t n);
/* Appends Set-Cookie lines for both cookies (values NULL: clear them). */
void bh__cookies_set(bh_req *req, const char *access, const char *refresh);
/* The Origin / Sec-Fetch-Site check for cookie-borne credentials on an
 * unsafe method: 0 pass, -EPERM refuse. */
int bh__csrf_check(bh_req *req);
/* Issues an access token for a session: a malloc'd JWT, *exp set. */
char *bh__auth_issue(const char *user_id, const char *session_id,
                     const char *scopes, int64_t now, int64_t *exp);

#endif
