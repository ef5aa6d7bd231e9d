/*
 * POST /v1/auth/refresh and POST /v1/auth/logout.
 *
 * Both take the refresh token from the body ({"refreshToken": "..."}: API
 * clients) or else from the __refresh cookie (browsers; the core applies
 * the same Origin check as for cookie-authenticated routes). Refresh
 * rotates the token: the one presented is spent, and presenting it again
 * revokes the whole session (401 auth.session_revoked). Logout revokes the
 * session and clears the cookies; it is idempotent (204 every time). With
 * no refresh token at all (an API client holding only its access token),
 * logout revokes the session that Authorization: Bearer token carries.
 * Either way the session's access tokens stop working at once (the
 * core's revoked-session set).
 * Neither needs the identity provider.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_plugin.h"

static const bh_field token_fields[] = {
    {.name = "refreshToken", .type = BH_FIELD_STRING, .min = 1, .max = 256},
};
static const bh_body_shape token_shape = {token_fields, 1, 0};

/* The body's refreshToken, or NULL (no body, or no such field). -1 when
 * the body was invalid and the request is already answered. */
static int body_token(bh_req *req, const char **out) {
  size_t len = 0;
  bh_req_body(req, &len);
  *out = NULL;
  if (len == 0) return 0;
  if (bh_body_parse(req, &token_shape) < 0) return -1;
  *out = bh_body_string(req, "refreshToken");
  return 0;
}

typedef struct refresh_ctx {
  int from_body; /* the new refresh token goes back in the body */
} refresh_ctx;

static void on_refreshed(bh_req *req, const bh_identity_result *res,
                         void *data) {
  refresh_ctx *r = data;
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
    free(r);
    return;
  }
  auth_token_reply(req, res, r->from_body, NULL);
  free(r);
}

void auth_refresh(bh_req *req, void *data) {
  (void)data;
  const char *token;
  if (body_token(req, &token) < 0) return;
  refresh_ctx *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  r->from_body = token != NULL;
  int rc = token
               ? bh_session_refresh(req, token, 0, on_refreshed, r)
               : bh_session_refresh(req, NULL,
                                    BH_SESSION_FROM_COOKIE | BH_SESSION_COOKIES,
                                    on_refreshed, r);
  if (rc) {
    auth_fail(req, rc, NULL);
    free(r);
  }
}

static void on_revoked(bh_req *req, const bh_identity_result *res, void *data) {
  (void)data;
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
    return;
  }
  bh_set_header(req, "Cache-Control", "no-store");
  bh_respond(req, 204, NULL, "", 0);
}

void auth_logout(bh_req *req, void *data) {
  (void)data;
  const char *token;
  if (body_token(req, &token) < 0) return;
  int rc =
      token
          ? bh_session_revoke(req, token, BH_SESSION_COOKIES, on_revoked, NULL)
          : bh_session_revoke(req, NULL,
                              BH_SESSION_FROM_COOKIE | BH_SESSION_COOKIES,
                              on_revoked, NULL);
  if (rc) auth_fail(req, rc, NULL);
}
