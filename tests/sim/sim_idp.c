/*
 * The identity provider: the two calls of a Google identity toolkit
 * (Firebase Auth REST) that a gateway's login makes, against a fixed set of
 * test accounts.
 *
 *   POST /v1/accounts:signInWithPassword?key=K  {email, password, ...}
 *     200 {kind, localId, email, displayName, idToken, registered,
 *          refreshToken, expiresIn}
 *     400 {"error":{"code":400,"message":"EMAIL_NOT_FOUND" |
 *          "INVALID_PASSWORD" | "USER_DISABLED" | "MISSING_PASSWORD" |
 *          "INVALID_EMAIL", "errors":[...]}}
 *   POST /v1/accounts:lookup?key=K  {idToken}
 *     200 {kind, users: [{localId, email, emailVerified, disabled, ...}]}
 *     400 INVALID_ID_TOKEN
 *   Either without ?key=: 400 "API key not valid".
 *
 * Accounts (tests/integration/sim_client.py lists them too):
 *   alice@example.com    alice-password-1    sim_user_alice
 *   bob@example.com      bob-password-2      sim_user_bob
 *   carol@example.com    carol-password-3    sim_user_carol
 *   disabled@example.com disabled-password   sim_user_disabled (disabled)
 *
 * Rules set through the control API take precedence, as for every path:
 * that is how a test makes the provider fail (503, a delay, a reset).
 */
#include "sim.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct account {
  const char *email, *password, *id, *name;
  int disabled;
} accounts[] = {
    {"alice@example.com", "alice-password-1", "sim_user_alice", "Alice", 0},
    {"bob@example.com", "bob-password-2", "sim_user_bob", "Bob", 0},
    {"carol@example.com", "carol-password-3", "sim_user_carol", "Carol", 0},
    {"disabled@example.com", "disabled-password", "sim_user_disabled",
     "Disabled", 1},
};
#define NACCOUNTS (sizeof(accounts) / sizeof(accounts[0]))

static int path_ends(const sim_req *r, const char *suffix) {
  size_t n = strlen(suffix);
  return r->path_len >= n &&
         memcmp(sim_req_path(r) + r->path_len - n, suffix, n) == 0;
}

static int has_key(const sim_req *r) {
  const char *q = sim_req_query(r);
  return strncmp(q, "key=", 4) == 0 ? q[4] != '\0' && q[4] != '&'
                                    : strstr(q, "&key=") != NULL;
}

static int idp_error(sim_buf *b, const char *msg) {
  sim_buf_printf(b,
                 "{\"error\":{\"code\":400,\"message\":\"%s\",\"errors\":"
                 "[{\"message\":\"%s\",\"domain\":\"global\",\"reason\":"
                 "\"invalid\"}]}}",
                 msg, msg);
  return 400;
}

static const struct account *by_email(const char *email) {
  for (size_t i = 0; email && i < NACCOUNTS; i++)
    if (strcasecmp(accounts[i].email, email) == 0) return &accounts[i];
  return NULL;
}

static void account_json(sim_buf *b, const struct account *a) {
  sim_buf_printf(b,
                 "\"localId\":\"%s\",\"email\":\"%s\",\"displayName\":\"%s\"",
                 a->id, a->email, a->name);
}

static int signin(const sim_req *r, sim_buf *b) {
  json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
  const char *email = json_string_value(json_object_get(doc, "email"));
  const char *pw = json_string_value(json_object_get(doc, "password"));
  int status;
  const struct account *a = by_email(email);
  if (email == NULL || strchr(email, '@') == NULL) {
    status = idp_error(b, "INVALID_EMAIL");
  } else if (pw == NULL || *pw == '\0') {
    status = idp_error(b, "MISSING_PASSWORD");
  } else if (a == NULL) {
    status = idp_error(b, "EMAIL_NOT_FOUND");
  } else if (strcmp(a->password, pw) != 0) {
    status = idp_error(b, "INVALID_PASSWORD");
  } else if (a->disabled) {
    status = idp_error(b, "USER_DISABLED");
  } else {
    unsigned long long n = ++sim_g.seq;
    sim_buf_puts(b, "{\"kind\":\"identitytoolkit#VerifyPasswordResponse\",");
    account_json(b, a);
    sim_buf_printf(b,
                   ",\"idToken\":\"sim-id-token.%s.%llu\",\"registered\":"
                   "true,\"refreshToken\":\"sim-refresh-%llu\",\"expiresIn\":"
                   "\"3600\"}",
                   a->id, n, n);
    status = 200;
  }
  json_decref(doc);
  return status;
}

static int lookup(const sim_req *r, sim_buf *b) {
  json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
  const char *tok = json_string_value(json_object_get(doc, "idToken"));
  const struct account *a = NULL;
  static const char prefix[] = "sim-id-token.";
  if (tok && strncmp(tok, prefix, sizeof(prefix) - 1) == 0) {
    const char *id = tok + sizeof(prefix) - 1;
    const char *dot = strchr(id, '.');
    for (size_t i = 0; dot && i < NACCOUNTS; i++)
      if (strlen(accounts[i].id) == (size_t)(dot - id) &&
          strncmp(accounts[i].id, id, (size_t)(dot - id)) == 0)
        a = &accounts[i];
  }
  json_decref(doc);
  if (a == NULL) return idp_error(b, "INVALID_ID_TOKEN");
  sim_buf_puts(b, "{\"kind\":\"identitytoolkit#GetAccountInfoResponse\","
                  "\"users\":[{");
  account_json(b, a);
  sim_buf_printf(b,
                 ",\"emailVerified\":true,\"disabled\":%s,\"passwordHash\":"
                 "\"UkVEQUNURUQ=\",\"createdAt\":\"1700000000000\"}]}",
                 a->disabled ? "true" : "false");
  return 200;
}

int sim_idp_answer(const sim_req *r, sim_buf *b) {
  if (r->method != HTTP_POST) return 0;
  int in = path_ends(r, "accounts:signInWithPassword");
  int lk = path_ends(r, "accounts:lookup");
  if (!in && !lk) return 0;
  if (!has_key(r)) {
    sim_buf_puts(b, "{\"error\":{\"code\":400,\"message\":\"API key not "
                    "valid. Please pass a valid API key.\",\"status\":"
                    "\"INVALID_ARGUMENT\"}}");
    return 400;
  }
  return in ? signin(r, b) : lookup(r, b);
}
