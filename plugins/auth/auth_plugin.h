/*
 * The auth plugin's internals, shared by its files:
 *   auth.c     init, the error map, /v1/auth/status and /v1/auth/me
 *   login.c    POST /v1/auth/login against the identity provider
 *   session.c  POST /v1/auth/refresh and /v1/auth/logout
 *   keys.c     /v1/api-keys
 * Sessions, refresh tokens and API keys live in the core's store; this
 * plugin drives it through the identity services (ABI 1.2).
 */
#ifndef AUTH_PLUGIN_H
#define AUTH_PLUGIN_H

#include <bulkhead/plugin.h>
#include <jansson.h>

#define AUTH_VERSION "1.0.0"

enum auth_idp { AUTH_IDP_LOCAL = 0, AUTH_IDP_TOOLKIT = 1 };

typedef struct auth_state {
  int idp;               /* enum auth_idp */
  bh_upstream *upstream; /* the identity toolkit, when idp = identity_toolkit */
  char key_query[512];   /* "?key=<url-encoded idp_api_key>" or "" */
  long throttled_retry_after; /* when the IdP itself says "too many" */
} auth_state;

/* One per process (each worker loads its own copy of the plugin). */
extern auth_state auth_g;

/* Answers `doc` (stolen) as JSON with `status`. */
void auth_reply(bh_req *req, int status, json_t *doc);
/* A space-separated scope string as a JSON array (new reference). */
json_t *auth_scopes_json(const char *scopes);
/* The body of a successful login or refresh: user, access token and its
 * expiry, and with `with_refresh` the refresh token (new reference, NULL
 * when out of memory). */
json_t *auth_token_doc(const bh_identity_result *res, int with_refresh);
/* Answers a failed identity call: res->code, or the service's errno. */
void auth_fail(bh_req *req, int status, const char *code);

void auth_login(bh_req *req, void *data);
void auth_refresh(bh_req *req, void *data);
void auth_logout(bh_req *req, void *data);
void auth_keys_create(bh_req *req, void *data);
void auth_keys_list(bh_req *req, void *data);
void auth_keys_delete(bh_req *req, void *data);

#endif
