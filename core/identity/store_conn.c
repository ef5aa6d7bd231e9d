/*
 * Either backend's connection for the identity store's statements (see
 * store_ops.h): each bh__op_* runs the SQLite or the PostgreSQL one.
 */
#include "identity/store_ops.h"

int bh__op_session_create(bh__sconn *c, const char *user_id, const char *scopes,
                          int64_t now, int64_t ttl, bh__sess *out) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_session_create(c->pg, user_id, scopes, now, ttl, out)
             : bh__lite_session_create(c->lite, user_id, scopes, now, ttl, out);
}

int bh__op_session_refresh(bh__sconn *c, const char *token, int64_t now,
                           int64_t ttl, int64_t grace, bh__sess *out) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_session_refresh(c->pg, token, now, ttl, grace, out)
             : bh__lite_session_refresh(c->lite, token, now, ttl, grace, out);
}

int bh__op_session_revoke(bh__sconn *c, const char *token,
                          const char *session_id, const char *reason,
                          int64_t now, char *sid_out) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_session_revoke(c->pg, token, session_id, reason, now,
                                     sid_out)
             : bh__lite_session_revoke(c->lite, token, session_id, reason, now,
                                       sid_out);
}

int bh__op_revoked_since(bh__sconn *c, int64_t since,
                         void (*fn)(const char *sid, int64_t revoked_at,
                                    void *arg),
                         void *arg) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_revoked_since(c->pg, since, fn, arg)
             : bh__lite_revoked_since(c->lite, since, fn, arg);
}

int bh__op_apikey_create(bh__sconn *c, const char *user_id, const char *name,
                         const char *scopes, int64_t now, bh__keyrec *out) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_apikey_create(c->pg, user_id, name, scopes, now, out)
             : bh__lite_apikey_create(c->lite, user_id, name, scopes, now, out);
}

int bh__op_apikey_auth(bh__sconn *c, const char *key, int64_t now,
                       bh__keyrec *out) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_apikey_auth(c->pg, key, now, out)
             : bh__lite_apikey_auth(c->lite, key, now, out);
}

char *bh__op_apikey_list(bh__sconn *c, const char *user_id) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_apikey_list(c->pg, user_id)
             : bh__lite_apikey_list(c->lite, user_id);
}

int bh__op_apikey_revoke(bh__sconn *c, const char *user_id, const char *id,
                         int64_t now) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_apikey_revoke(c->pg, user_id, id, now)
             : bh__lite_apikey_revoke(c->lite, user_id, id, now);
}

int bh__op_login_guard(bh__sconn *c, const char *account, const char *addr,
                       int event, int64_t now, const bh__guard_conf *g,
                       long *retry_after) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_login_guard(c->pg, account, addr, event, now, g,
                                  retry_after)
             : bh__lite_login_guard(c->lite, account, addr, event, now, g,
                                    retry_after);
}

int bh__op_user_get(bh__sconn *c, const char *email, char *id, size_t idlen,
                    char *hash, size_t hashlen, int *disabled) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_user_get(c->pg, email, id, idlen, hash, hashlen, disabled)
             : bh__lite_user_get(c->lite, email, id, idlen, hash, hashlen,
                                 disabled);
}

int bh__op_user_add(bh__sconn *c, const char *email, const char *hash,
                    int64_t now, char *id, size_t idlen) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_user_add(c->pg, email, hash, now, id, idlen)
             : bh__lite_user_add(c->lite, email, hash, now, id, idlen);
}

int bh__op_user_set_disabled(bh__sconn *c, const char *email, int disabled) {
  return c->backend == BH__STORE_POSTGRES
             ? bh__pg_user_set_disabled(c->pg, email, disabled)
             : bh__lite_user_set_disabled(c->lite, email, disabled);
}
