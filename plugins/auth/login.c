/*
 * POST /v1/auth/login {"email", "password", "includeRefreshToken"?}
 *
 *   1. the core's failed-login guard: a locked account or address gets
 *      429 auth.too_many_attempts with Retry-After, before the IdP is asked.
 *      The check reserves the attempt (one store transaction, per account
 *      and per address) before any password is verified, so concurrent
 *      attempts cannot all pass it; a success gives the reservation back
 *   2. the identity provider: the embedded one (local users, Argon2id), or
 *      an identity-toolkit REST API (password sign-in, then account lookup)
 *   3. a session in the core's store; cookies for browsers, the access
 *      token (and, when asked, the refresh token) in the body for API
 *      clients
 *
 * Every failure is its own truth: wrong password 401
 * auth.invalid_credentials, disabled account 403 auth.user_disabled, the
 * IdP down / 5xx / slow 503 auth.idp_unavailable, too many failures 429.
 * Neither the email nor the password is ever logged or echoed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_plugin.h"

typedef struct login {
  char email[256];
  char *password; /* wiped before it is freed */
  int include_refresh;
  char user_id[128];
} login;

static void login_free(login *l) {
  if (l->password) {
    volatile char *p = l->password;
    while (*p)
      *p++ = '\0';
    free(l->password);
  }
  free(l);
}

static void wipe(char *s) {
  volatile char *p = s;
  while (p && *p)
    *p++ = '\0';
}

/* The attempt CHECK reserved had no verdict on the password (the IdP is
 * unavailable, the account disabled, a store failure): it must not count
 * as a failure. Called right before answering; nothing waits for it. */
static void on_given_back(bh_req *req, const bh_identity_result *res,
                          void *data) {
  (void)req, (void)res, (void)data;
}

static void give_back(bh_req *req, login *l) {
  (void)bh_login_guard(req, l->email, BH_LOGIN_RELEASED, on_given_back, NULL);
}

/* ---- the session, once the IdP said yes ------------------------------ */

static void on_created(bh_req *req, const bh_identity_result *res, void *data) {
  login *l = data;
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
    login_free(l);
    return;
  }
  auth_magic_remember(l->email, l->user_id);
  auth_token_reply(req, res, l->include_refresh, NULL);
  login_free(l);
}

static void on_cleared(bh_req *req, const bh_identity_result *res, void *data) {
  login *l = data;
  (void)res; /* a failure to forget old failures must not block a login */
  bh_session_request in = {
      .size = sizeof(in), .user_id = l->user_id, .flags = BH_SESSION_COOKIES};
  int rc = bh_session_create(req, &in, on_created, l);
  if (rc) {
    auth_fail(req, rc, NULL);
    login_free(l);
  }
}

static void succeed(bh_req *req, login *l) {
  int rc = bh_login_guard(req, l->email, BH_LOGIN_SUCCEEDED, on_cleared, l);
  if (rc) {
    auth_fail(req, rc, NULL);
    login_free(l);
  }
}

/* ---- wrong credentials ------------------------------------------------ */

static void on_counted(bh_req *req, const bh_identity_result *res, void *data) {
  (void)res;
  bh_problem(req, "auth.invalid_credentials", NULL);
  login_free(data);
}

static void refuse(bh_req *req, login *l) {
  if (bh_login_guard(req, l->email, BH_LOGIN_FAILED, on_counted, l) != 0) {
    bh_problem(req, "auth.invalid_credentials", NULL);
    login_free(l);
  }
}

/* ---- the embedded identity provider ----------------------------------- */

static void on_local(bh_req *req, const bh_identity_result *res, void *data) {
  login *l = data;
  if (res->status == -ENOENT || res->status == -EACCES) {
    refuse(req, l);
    return;
  }
  if (res->status != 0) {
    give_back(req, l);
    auth_fail(req, res->status, res->code);
    login_free(l);
    return;
  }
  if (res->disabled) {
    give_back(req, l);
    bh_problem(req, "auth.user_disabled", NULL);
    login_free(l);
    return;
  }
  snprintf(l->user_id, sizeof(l->user_id), "%s", res->user_id);
  succeed(req, l);
}

/* ---- an identity toolkit ---------------------------------------------- */

/* Sends what `body` built (a sensitive writer: it may hold the password),
 * then wipes and frees it. */
static int idp_call(bh_req *req, const char *what, bh_json *body,
                    bh_upstream_cb cb, login *l) {
  char path[640];
  snprintf(path, sizeof(path), "/v1/accounts:%s%s", what, auth_g.key_query);
  size_t len = 0;
  const char *text = bh_json_done(body, &len);
  if (text == NULL) {
    bh_json_free(body);
    return -ENOMEM;
  }
  static const char *const headers[] = {"Content-Type: application/json", NULL};
  bh_upstream_request rq = {.size = sizeof(rq),
                            .method = "POST",
                            .path = path,
                            .headers = headers,
                            .body = text,
                            .body_len = len};
  int rc = bh_upstream_call(req, auth_g.upstream, &rq, cb, l);
  bh_json_free(body); /* wiped: the core copied it */
  return rc;
}

/* error.message of an identity-toolkit error body ("INVALID_PASSWORD",
 * "TOO_MANY_ATTEMPTS_TRY_LATER : ..."), copied to out. */
static void idp_message(const bh_upstream_result *res, char *out, size_t n) {
  out[0] = '\0';
  json_t *doc = json_loadb(res->body ? res->body : "", res->body_len, 0, NULL);
  const char *m = json_string_value(
      json_object_get(json_object_get(doc, "error"), "message"));
  if (m) snprintf(out, n, "%s", m);
  json_decref(doc);
}

static int starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void on_lookup(bh_req *req, const bh_upstream_result *res, void *data) {
  login *l = data;
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status != 200) {
    give_back(req, l);
    auth_idp_failed(req, res);
    login_free(l);
    return;
  }
  json_t *doc = json_loadb(res->body ? res->body : "", res->body_len, 0, NULL);
  json_t *user = json_array_get(json_object_get(doc, "users"), 0);
  const char *id = json_string_value(json_object_get(user, "localId"));
  int disabled = json_is_true(json_object_get(user, "disabled"));
  int same = id && strcmp(id, l->user_id) == 0;
  json_decref(doc);
  if (!same) {
    /* the IdP answered nonsense: it is not working as it should */
    give_back(req, l);
    auth_idp_failed(req, NULL);
    login_free(l);
  } else if (disabled) {
    give_back(req, l);
    bh_problem(req, "auth.user_disabled", NULL);
    login_free(l);
  } else {
    succeed(req, l);
  }
}

static void on_signin(bh_req *req, const bh_upstream_result *res, void *data) {
  login *l = data;
  if (res->outcome == BH_OUTCOME_RESPONSE && res->status == 400)
    auth_magic_idp_state(0); /* a verdict: the IdP works */
  if (res->outcome == BH_OUTCOME_RESPONSE && res->status == 200) {
    auth_magic_idp_state(0);
    json_t *doc =
        json_loadb(res->body ? res->body : "", res->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "localId"));
    const char *tok = json_string_value(json_object_get(doc, "idToken"));
    if (id == NULL || tok == NULL || strlen(id) >= sizeof(l->user_id)) {
      json_decref(doc);
      give_back(req, l);
      auth_idp_failed(req, NULL);
      login_free(l);
      return;
    }
    snprintf(l->user_id, sizeof(l->user_id), "%s", id);
    bh_json body;
    bh_json_init(&body, 0);
    bh_json_sensitive(&body);
    bh_json_obj(&body);
    bh_json_kstr(&body, "idToken", tok);
    bh_json_end(&body);
    int rc = idp_call(req, "lookup", &body, on_lookup, l);
    json_decref(doc);
    if (rc) {
      give_back(req, l);
      auth_idp_failed(req, NULL);
      login_free(l);
    }
    return;
  }
  if (res->outcome == BH_OUTCOME_RESPONSE && res->status == 400) {
    char msg[256];
    idp_message(res, msg, sizeof(msg));
    if (starts(msg, "INVALID_PASSWORD") || starts(msg, "EMAIL_NOT_FOUND") ||
        starts(msg, "INVALID_LOGIN_CREDENTIALS") ||
        starts(msg, "INVALID_EMAIL")) {
      refuse(req, l);
      return;
    }
    if (starts(msg, "USER_DISABLED")) {
      give_back(req, l);
      bh_problem(req, "auth.user_disabled", NULL);
      login_free(l);
      return;
    }
    if (starts(msg, "TOO_MANY_ATTEMPTS_TRY_LATER")) {
      give_back(req, l);
      bh_problem_retry(req, "auth.too_many_attempts", NULL,
                       auth_g.throttled_retry_after);
      login_free(l);
      return;
    }
  }
  /* outages, timeouts, an open breaker, and answers we cannot read: the
   * error map tells which */
  give_back(req, l);
  auth_idp_failed(req, res);
  login_free(l);
}

/* ---- the steps -------------------------------------------------------- */

static void on_checked(bh_req *req, const bh_identity_result *res, void *data) {
  login *l = data;
  if (res->status == -EBUSY) {
    bh_problem_retry(req, "auth.too_many_attempts", NULL, res->retry_after);
    login_free(l);
    return;
  }
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
    login_free(l);
    return;
  }
  int rc;
  if (auth_g.idp == AUTH_IDP_LOCAL) {
    rc = bh_local_verify(req, l->email, l->password, on_local, l);
    wipe(l->password); /* the core took its own copy */
    if (rc) give_back(req, l), auth_fail(req, rc, NULL);
  } else {
    bh_json body;
    bh_json_init(&body, 0);
    bh_json_sensitive(&body);
    bh_json_obj(&body);
    bh_json_kstr(&body, "email", l->email);
    bh_json_kstr(&body, "password", l->password);
    bh_json_kbool(&body, "returnSecureToken", 1);
    bh_json_end(&body);
    wipe(l->password);
    rc = idp_call(req, "signInWithPassword", &body, on_signin, l);
    if (rc) give_back(req, l), auth_idp_failed(req, NULL);
  }
  if (rc) login_free(l);
}

static const bh_field login_fields[] = {
    {.name = "email",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 3,
     .max = 254},
    {.name = "password",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 1024},
    {.name = "includeRefreshToken", .type = BH_FIELD_BOOL},
};
static const bh_body_shape login_shape = {
    login_fields, sizeof(login_fields) / sizeof(login_fields[0]), 0};

void auth_login(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &login_shape) < 0) return;
  const char *email = bh_body_string(req, "email");
  const char *password = bh_body_string(req, "password");
  login *l = calloc(1, sizeof(*l));
  if (l == NULL || (l->password = strdup(password)) == NULL) {
    free(l);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  snprintf(l->email, sizeof(l->email), "%s", email);
  int inc = 0;
  if (bh_body_bool(req, "includeRefreshToken", &inc) == 0)
    l->include_refresh = inc;
  int rc = bh_login_guard(req, l->email, BH_LOGIN_CHECK, on_checked, l);
  if (rc) {
    auth_fail(req, rc, NULL);
    login_free(l);
  }
}
