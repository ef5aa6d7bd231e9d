/*
 * /v1/api-keys: create (the raw key shown once), list (prefixes only),
 * revoke. Auth-required; keys are managed with a session (bearer token or
 * cookie), never with another API key. A key's scopes are a subset of
 * the creator's session scopes plus [auth] api_key_scopes (the core
 * checks; anything else is 403 auth.scope_not_allowed). Creation either answers
 * the whole key or a Problem: the core stores the hash before the key is shown.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_plugin.h"

#define MAX_SCOPES 20
#define MAX_SCOPE_LEN 64

/* The caller may manage keys: a session, not a key. Answers otherwise. */
static int session_caller(bh_req *req) {
  const bh_principal *p = bh_req_principal(req);
  if (p == NULL) {
    bh_problem(req, "auth.unauthenticated", NULL);
    return 0;
  }
  if (p->kind == BH_AUTH_API_KEY) {
    bh_problem(req, "auth.forbidden",
               "API keys are managed with a signed-in session, not with "
               "another API key.");
    return 0;
  }
  return 1;
}

static int scope_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_SCOPE_LEN) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == ':' ||
          *s == '.' || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static void on_created(bh_req *req, const bh_identity_result *res, void *data) {
  char *name = data;
  if (res->status != 0 || res->key == NULL) {
    /* never a partial key: no key in the body, a Problem instead */
    auth_fail(req, res->status ? res->status : -EIO, res->code);
    free(name);
    return;
  }
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_sensitive(&j); /* the raw key */
  bh_json_obj(&j);
  bh_json_kstr(&j, "id", res->key_id);
  bh_json_kstr(&j, "key", res->key);
  bh_json_kstr(&j, "prefix", res->key_prefix);
  bh_json_kstr(&j, "name", name ? name : "");
  bh_json_key(&j, "scopes");
  auth_scopes_put(&j, res->scopes);
  bh_json_kint(&j, "createdAt", (int64_t)time(NULL));
  bh_json_end(&j);
  auth_reply(req, 201, &j);
  free(name);
}

static const bh_field create_fields[] = {
    {.name = "name", .type = BH_FIELD_STRING, .min = 1, .max = 100},
    {.name = "scopes", .type = BH_FIELD_STRING_ARRAY, .max = MAX_SCOPES},
};
static const bh_body_shape create_shape = {create_fields, 2, 0};

void auth_keys_create(bh_req *req, void *data) {
  (void)data;
  if (!session_caller(req)) return;
  size_t len = 0;
  bh_req_body(req, &len);
  if (len && bh_body_parse(req, &create_shape) < 0) return;
  const char *name = len ? bh_body_string(req, "name") : NULL;
  char scopes[MAX_SCOPES * (MAX_SCOPE_LEN + 1) + 1] = "";
  for (size_t i = 0; len; i++) {
    const char *s = bh_body_string_at(req, "scopes", i);
    if (s == NULL) break;
    if (!scope_ok(s)) {
      bh_problem_field(req, "request.invalid_body",
                       "A scope is 1 to 64 of a-z, 0-9, ':', '.', '_', '-'.",
                       "scopes");
      return;
    }
    if (scopes[0]) strcat(scopes, " ");
    strcat(scopes, s);
  }
  char *copy = name ? strdup(name) : NULL;
  int rc = bh_apikey_create(req, name, scopes, on_created, copy);
  if (rc == -EACCES) {
    /* the core's rule: a key never carries more than its creator */
    bh_problem_field(req, "auth.scope_not_allowed", NULL, "scopes");
    free(copy);
  } else if (rc) {
    auth_fail(req, rc, NULL);
    free(copy);
  }
}

static void on_listed(bh_req *req, const bh_identity_result *res, void *data) {
  (void)data;
  if (res->status != 0 || res->json == NULL) {
    auth_fail(req, res->status ? res->status : -EIO, res->code);
    return;
  }
  /* the core lists scopes as one string: the API shows an array. The
   * core's list is parsed with jansson (the SDK reads request bodies
   * only); each member is copied as the core wrote it, scopes split. */
  json_t *keys = json_loads(res->json, 0, NULL);
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_karr(&j, "keys");
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *name;
    json_t *v;
    bh_json_obj(&j);
    json_object_foreach(k, name, v) {
      bh_json_key(&j, name);
      if (strcmp(name, "scopes") == 0)
        auth_scopes_put(&j, json_string_value(v));
      else if (json_is_string(v))
        bh_json_strn(&j, json_string_value(v), json_string_length(v));
      else if (json_is_integer(v))
        bh_json_int(&j, json_integer_value(v));
      else
        bh_json_null(&j); /* the core writes strings, integers and null */
    }
    bh_json_end(&j);
  }
  json_decref(keys);
  bh_json_end(&j);
  bh_json_end(&j);
  auth_reply(req, 200, &j);
}

void auth_keys_list(bh_req *req, void *data) {
  (void)data;
  if (!session_caller(req)) return;
  int rc = bh_apikey_list(req, on_listed, NULL);
  if (rc) auth_fail(req, rc, NULL);
}

static void on_deleted(bh_req *req, const bh_identity_result *res, void *data) {
  (void)data;
  if (res->status == -ENOENT) {
    bh_problem(req, "auth.api_key_not_found", NULL);
    return;
  }
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
    return;
  }
  bh_respond(req, 204, NULL, "", 0);
}

void auth_keys_delete(bh_req *req, void *data) {
  (void)data;
  if (!session_caller(req)) return;
  const char *id = bh_req_param(req, "id");
  if (id == NULL) {
    bh_problem(req, "auth.api_key_not_found", NULL);
    return;
  }
  int rc = bh_apikey_revoke(req, id, on_deleted, NULL);
  if (rc == -ENOENT)
    bh_problem(req, "auth.api_key_not_found", NULL);
  else if (rc)
    auth_fail(req, rc, NULL);
}
