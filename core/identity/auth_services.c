/*
 * The identity slots of the services table (ABI 1.2): what the auth
 * plugin drives the core's session store with. Every statement runs on
 * the store's thread and password hashing on the libuv thread pool; the
 * plugin's callback runs on the loop, charged to the plugin like any of
 * its callbacks.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "identity/auth.h"
#include "identity/store.h"
#include "identity/store_ops.h"
#include "proc/daemon-t.h"
#include "state/shm.h"

#define BH__PASSWORD_MAX 1024

enum {
  BH__OP_CREATE = 1,
  BH__OP_REFRESH,
  BH__OP_REVOKE,
  BH__OP_KEY_CREATE,
  BH__OP_KEY_LIST,
  BH__OP_KEY_REVOKE,
  BH__OP_GUARD,
  BH__OP_LOCAL
};

typedef struct bh__idjob {
  bh__sjob job;
  uv_work_t hash_work; /* local_verify: the password check */
  bh_req *req;
  int op;
  uint32_t flags;
  int event;
  bh_identity_cb cb;
  void *data;
  int64_t now;
  char user[128];
  char scopes[512];
  char name[128];
  char token[BH__REFRESH_MAX];
  char key_id[48];
  char account[256];
  char addr[64];
  char *password; /* local_verify: wiped and freed with the job */
  /* results */
  int rc;
  long retry_after;
  bh__sess sess;
  bh__keyrec key;
  char *access; /* signed on the store thread */
  int64_t access_exp;
  char *json;
  char hash[256];
  int disabled;
} bh__idjob;

/* ---------------------------------------------------------------------- */
/* Plumbing                                                                */
/* ---------------------------------------------------------------------- */

static void bh__id_free(bh__idjob *j) {
  if (j->password) {
    sodium_memzero(j->password, strlen(j->password));
    free(j->password);
  }
  if (j->access) {
    sodium_memzero(j->access, strlen(j->access));
    free(j->access);
  }
  free(j->json);
  sodium_memzero(j, sizeof(*j));
  free(j);
}

/* Runs the plugin's callback (charged to it) and releases everything. */
static void bh__id_finish(bh__idjob *j, bh_identity_result *res) {
  bh_req *req = j->req;
  bh__plugin *p = req->plugin;
  res->size = sizeof(*res);
  if (j->op != BH__OP_GUARD) res->retry_after = -1;
  int64_t mark = p ? bh__shm_enter(p->shm_index, BH__CB_HANDLER) : 0;
  j->cb(req, res, j->data);
  if (p) bh__shm_leave(mark);
  bh__req_unref(req);
  bh__id_free(j);
}

static int bh__id_ready(bh_req *req, bh_identity_cb cb, bh__auth **a) {
  if (req == NULL || cb == NULL) return -EINVAL;
  if (!req->plugin_holds || req->answered) return -EALREADY;
  *a = bh__auth_get();
  if (*a == NULL || (*a)->store == NULL) return -ENOTSUP;
  return 0;
}

static bh__idjob *bh__id_new(bh_req *req, int op, bh_identity_cb cb,
                             void *data) {
  bh__idjob *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->req = req;
  j->op = op;
  j->cb = cb;
  j->data = data;
  j->now = bh__store_now();
  return j;
}

static void bh__id_work(bh__sconn *db, bh__sjob *sj);
static void bh__id_done(bh__sjob *sj);

static int bh__id_submit(bh__auth *a, bh__idjob *j) {
  j->job.work = bh__id_work;
  j->job.done = bh__id_done;
  j->req->refs++;
  int rc = bh__store_submit(a->store, &j->job);
  if (rc) {
    j->req->refs--;
    bh__id_free(j);
  }
  return rc;
}

/* ---------------------------------------------------------------------- */
/* The store thread                                                        */
/* ---------------------------------------------------------------------- */

static void bh__id_sign(bh__idjob *j) {
  j->access = bh__auth_issue(j->sess.user_id, j->sess.session_id,
                             j->sess.scopes, j->now, &j->access_exp);
  if (j->access == NULL) j->rc = BH__RT_ERROR;
}

static void bh__id_work(bh__sconn *db, bh__sjob *sj) {
  bh__idjob *j = (bh__idjob *)sj;
  bh__auth *a = bh__auth_get();
  const bh__auth_conf *c = a->conf;
  switch (j->op) {
  case BH__OP_CREATE:
    j->rc = bh__op_session_create(db, j->user, j->scopes, j->now,
                                  c->refresh_ttl_s, &j->sess);
    if (j->rc == 0) {
      bh__id_sign(j);
      if (j->rc) j->rc = -EIO;
    }
    break;
  case BH__OP_REFRESH:
    j->rc = bh__op_session_refresh(db, j->token, j->now, c->refresh_ttl_s,
                                   c->refresh_grace_s, &j->sess);
    if (j->rc == BH__RT_OK) bh__id_sign(j);
    break;
  case BH__OP_REVOKE:
    /* key_id holds the session id when no refresh token names it, and
     * the session revoked afterwards */
    j->rc = bh__op_session_revoke(db, j->token[0] ? j->token : NULL,
                                  j->key_id[0] ? j->key_id : NULL, "logout",
                                  j->now, j->key_id);
    break;
  case BH__OP_KEY_CREATE:
    j->rc =
        bh__op_apikey_create(db, j->user, j->name, j->scopes, j->now, &j->key);
    break;
  case BH__OP_KEY_LIST:
    j->json = bh__op_apikey_list(db, j->user);
    j->rc = j->json ? 0 : -EIO;
    break;
  case BH__OP_KEY_REVOKE:
    j->rc = bh__op_apikey_revoke(db, j->user, j->key_id, j->now);
    break;
  case BH__OP_GUARD: {
    bh__guard_conf g = {c->login_max_failures,
                        c->login_max_failures_per_address, c->login_lockout_s};
    j->rc = bh__op_login_guard(db, j->account, j->addr, j->event, j->now, &g,
                               &j->retry_after);
    break;
  }
  case BH__OP_LOCAL:
    j->rc = bh__op_user_get(db, j->account, j->user, sizeof(j->user), j->hash,
                            sizeof(j->hash), &j->disabled);
    break;
  }
}

/* ---------------------------------------------------------------------- */
/* Back on the loop                                                        */
/* ---------------------------------------------------------------------- */

static void bh__id_refreshed(bh__idjob *j, bh_identity_result *res) {
  static const struct {
    int outcome, status;
    const char *code;
  } map[] = {
      {BH__RT_UNKNOWN, -ENOENT, "auth.unauthenticated"},
      {BH__RT_EXPIRED, -ETIMEDOUT, "auth.session_expired"},
      {BH__RT_REVOKED, -EKEYREVOKED, "auth.session_revoked"},
      {BH__RT_REUSED, -EKEYREVOKED, "auth.session_revoked"},
      /* spent a moment ago by a concurrent request, whose answer carries
       * the new pair: no new one here, and no revocation either */
      {BH__RT_GRACE, -EAGAIN, "auth.unauthenticated"},
      {BH__RT_ERROR, -EIO, "auth.session_store_unavailable"},
  };
  if (j->rc == BH__RT_OK) {
    res->status = 0;
    return;
  }
  res->status = -EIO;
  res->code = "auth.session_store_unavailable";
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (map[i].outcome == j->rc) {
      res->status = map[i].status;
      res->code = map[i].code;
    }
  if (j->rc == BH__RT_REUSED) bh__auth_revoked(j->sess.session_id);
  if (j->rc == BH__RT_REUSED)
    bh__logf(BH__WARN, "refresh_reuse",
             "request %s: a spent refresh token was presented again; "
             "session %s revoked",
             j->req->id, j->sess.session_id);
}

static void bh__id_done(bh__sjob *sj) {
  bh__idjob *j = (bh__idjob *)sj;
  bh_identity_result res;
  memset(&res, 0, sizeof(res));
  switch (j->op) {
  case BH__OP_CREATE:
  case BH__OP_REFRESH:
    if (j->op == BH__OP_REFRESH)
      bh__id_refreshed(j, &res);
    else if (j->rc)
      res.status = -EIO, res.code = "auth.session_store_unavailable";
    if (res.status == 0) {
      res.user_id = j->sess.user_id;
      res.session_id = j->sess.session_id;
      res.scopes = j->sess.scopes;
      res.access_token = j->access;
      res.access_expires_at = j->access_exp;
      res.refresh_token = j->sess.refresh;
      res.refresh_expires_at = j->sess.refresh_exp;
      if (j->flags & BH_SESSION_COOKIES)
        bh__cookies_set(j->req, j->access, j->sess.refresh);
    } else if ((j->flags & BH_SESSION_COOKIES) && res.status != -EAGAIN &&
               res.status != -EIO) {
      bh__cookies_set(j->req, NULL, NULL);
    }
    break;
  case BH__OP_REVOKE:
    res.status = j->rc;
    if (j->rc) res.code = "auth.session_store_unavailable";
    /* its access tokens end now, in every worker */
    if (j->rc == 0) bh__auth_revoked(j->key_id);
    if (j->flags & BH_SESSION_COOKIES) bh__cookies_set(j->req, NULL, NULL);
    break;
  case BH__OP_KEY_CREATE:
    res.status = j->rc;
    if (j->rc == 0) {
      res.user_id = j->key.user_id;
      res.key_id = j->key.id;
      res.key = j->key.key;
      res.key_prefix = j->key.prefix;
      res.scopes = j->key.scopes;
    } else {
      res.code = "auth.session_store_unavailable";
    }
    break;
  case BH__OP_KEY_LIST:
    res.status = j->rc;
    res.json = j->json;
    if (j->rc) res.code = "auth.session_store_unavailable";
    break;
  case BH__OP_KEY_REVOKE:
    res.status = j->rc;
    res.key_id = j->key_id;
    if (j->rc && j->rc != -ENOENT) res.code = "auth.session_store_unavailable";
    break;
  case BH__OP_GUARD:
    res.status = j->rc;
    res.retry_after = j->rc == -EBUSY ? j->retry_after : -1;
    if (j->rc == -EIO) res.code = "auth.session_store_unavailable";
    break;
  }
  bh__id_finish(j, &res);
}

/* ---------------------------------------------------------------------- */
/* Local sign-in: the row on the store thread, the hash on the pool        */
/* ---------------------------------------------------------------------- */

static pthread_once_t g_dummy_once = PTHREAD_ONCE_INIT;
static char g_dummy[crypto_pwhash_STRBYTES];

/* An unknown email costs the same hash as a known one: timing does not
 * tell which accounts exist. */
static void bh__dummy_init(void) {
  unsigned char pw[16];
  randombytes_buf(pw, sizeof(pw));
  if (crypto_pwhash_str(g_dummy, (const char *)pw, sizeof(pw),
                        crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
    g_dummy[0] = '\0';
}

static void bh__hash_work(uv_work_t *w) {
  bh__idjob *j = w->data;
  const char *hash = j->hash;
  if (j->rc != 0) {
    pthread_once(&g_dummy_once, bh__dummy_init);
    hash = g_dummy;
  }
  int ok = hash[0] && crypto_pwhash_str_verify(hash, j->password,
                                               strlen(j->password)) == 0;
  if (j->rc == 0 && !ok) j->rc = -EACCES;
  sodium_memzero(j->password, strlen(j->password));
}

static void bh__hash_done(uv_work_t *w, int status) {
  bh__idjob *j = w->data;
  bh_identity_result res;
  memset(&res, 0, sizeof(res));
  res.status = status ? -EIO : j->rc;
  if (res.status == 0) {
    res.user_id = j->user;
    res.disabled = j->disabled;
  } else if (res.status == -EIO) {
    res.code = "auth.session_store_unavailable";
  }
  bh__id_finish(j, &res);
}

static void bh__local_done(bh__sjob *sj) {
  bh__idjob *j = (bh__idjob *)sj;
  if (j->rc == 0 || j->rc == -ENOENT) {
    j->hash_work.data = j;
    if (uv_queue_work(j->req->d->loop, &j->hash_work, bh__hash_work,
                      bh__hash_done) == 0)
      return;
    j->rc = -EIO;
  }
  bh_identity_result res;
  memset(&res, 0, sizeof(res));
  res.status = -EIO;
  res.code = "auth.session_store_unavailable";
  bh__id_finish(j, &res);
}

/* ---------------------------------------------------------------------- */
/* The slots                                                               */
/* ---------------------------------------------------------------------- */

const bh_principal *bh__svc_req_principal(bh_req *req) {
  return req ? bh__auth_principal(req) : NULL;
}

static int bh__copy_in(char *dst, size_t n, const char *src) {
  if (src == NULL) {
    dst[0] = '\0';
    return 0;
  }
  size_t l = strlen(src);
  if (l >= n) return -EINVAL;
  for (size_t i = 0; i < l; i++)
    if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) return -EINVAL;
  memcpy(dst, src, l + 1);
  return 0;
}

int bh__svc_session_create(bh_req *req, const bh_session_request *in,
                           bh_identity_cb cb, void *data) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  if (in == NULL ||
      in->size < offsetof(bh_session_request, flags) + sizeof(in->flags) ||
      in->user_id == NULL || in->user_id[0] == '\0')
    return -EINVAL;
  bh__idjob *j = bh__id_new(req, BH__OP_CREATE, cb, data);
  if (j == NULL) return -ENOMEM;
  j->flags = in->flags;
  if (bh__copy_in(j->user, sizeof(j->user), in->user_id) ||
      bh__copy_in(j->scopes, sizeof(j->scopes), in->scopes)) {
    bh__id_free(j);
    return -EINVAL;
  }
  return bh__id_submit(a, j);
}

int bh__svc_session_refresh(bh_req *req, const char *token, uint32_t flags,
                            bh_identity_cb cb, void *data) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  bh__idjob *j = bh__id_new(req, BH__OP_REFRESH, cb, data);
  if (j == NULL) return -ENOMEM;
  j->flags = flags;
  if (flags & BH_SESSION_FROM_COOKIE) {
    rc = bh__cookie_get(req, bh__cookie_name(1), j->token, sizeof(j->token));
    if (rc == 0 && bh__csrf_check(req) != 0) rc = -EPERM;
  } else {
    rc = token && token[0] ? bh__copy_in(j->token, sizeof(j->token), token)
                           : -ENOENT;
    if (rc == -EINVAL) rc = -ENOENT; /* no token of ours is that long */
  }
  if (rc) {
    bh__id_free(j);
    return rc == -ENOSPC ? -ENOENT : rc;
  }
  return bh__id_submit(a, j);
}

int bh__svc_session_revoke(bh_req *req, const char *token, uint32_t flags,
                           bh_identity_cb cb, void *data) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  bh__idjob *j = bh__id_new(req, BH__OP_REVOKE, cb, data);
  if (j == NULL) return -ENOMEM;
  j->flags = flags;
  if (flags & BH_SESSION_FROM_COOKIE) {
    rc = bh__cookie_get(req, bh__cookie_name(1), j->token, sizeof(j->token));
    if (rc == 0 && bh__csrf_check(req) != 0) rc = -EPERM;
    if (rc == -EPERM || rc == -EEXIST) {
      bh__id_free(j);
      return rc;
    }
    if (rc) j->token[0] = '\0';
  } else if (token && token[0]) {
    if (bh__copy_in(j->token, sizeof(j->token), token) != 0)
      j->token[0] = '\0'; /* not one of ours: nothing to revoke */
  }
  const bh_principal *p = bh__auth_principal(req);
  if (j->token[0] == '\0' && p && p->session_id[0]) {
    snprintf(j->key_id, sizeof(j->key_id), "%s", p->session_id);
  } else if (j->token[0] == '\0' && (flags & BH_SESSION_FROM_COOKIE)) {
    /* no refresh token (an API client holding only its access token):
     * the session that token carries, so its refresh token dies too */
    rc = bh__auth_session_of(req, j->key_id, sizeof(j->key_id));
    if (rc == -EPERM || rc == -EEXIST) {
      bh__id_free(j);
      return rc;
    }
    if (rc) j->key_id[0] = '\0';
  }
  return bh__id_submit(a, j);
}

/* Whether `s` (n bytes) is one of the space-separated `list`. */
static int bh__scope_in(const char *list, const char *s, size_t n) {
  for (const char *p = list ? list : ""; *p;) {
    while (*p == ' ')
      p++;
    size_t l = strcspn(p, " ");
    if (l == n && memcmp(p, s, n) == 0) return 1;
    p += l;
  }
  return 0;
}

/* A key carries only scopes its creator holds, or ones [auth]
 * api_key_scopes lets anyone give a key: never more than the creator. */
static int bh__scopes_grantable(const char *held, const char *allowed,
                                const char *wanted) {
  for (const char *p = wanted; *p;) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, " ");
    if (n && !bh__scope_in(held, p, n) && !bh__scope_in(allowed, p, n))
      return 0;
    p += n;
  }
  return 1;
}

static int bh__key_op(bh_req *req, int op, bh_identity_cb cb, void *data,
                      bh__idjob **out) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  const bh_principal *p = bh__auth_principal(req);
  if (p == NULL) return -EPERM; /* only on an auth-required route */
  bh__idjob *j = bh__id_new(req, op, cb, data);
  if (j == NULL) return -ENOMEM;
  snprintf(j->user, sizeof(j->user), "%s", p->user_id);
  *out = j;
  return 0;
}

int bh__svc_apikey_create(bh_req *req, const char *name, const char *scopes,
                          bh_identity_cb cb, void *data) {
  bh__idjob *j;
  int rc = bh__key_op(req, BH__OP_KEY_CREATE, cb, data, &j);
  if (rc) return rc;
  if (bh__copy_in(j->name, sizeof(j->name), name) ||
      bh__copy_in(j->scopes, sizeof(j->scopes), scopes)) {
    bh__id_free(j);
    return -EINVAL;
  }
  if (!bh__scopes_grantable(bh__auth_principal(req)->scopes,
                            bh__auth_get()->conf->api_key_scopes, j->scopes)) {
    bh__id_free(j);
    return -EACCES;
  }
  return bh__id_submit(bh__auth_get(), j);
}

int bh__svc_apikey_list(bh_req *req, bh_identity_cb cb, void *data) {
  bh__idjob *j;
  int rc = bh__key_op(req, BH__OP_KEY_LIST, cb, data, &j);
  return rc ? rc : bh__id_submit(bh__auth_get(), j);
}

int bh__svc_apikey_revoke(bh_req *req, const char *key_id, bh_identity_cb cb,
                          void *data) {
  bh__idjob *j;
  if (key_id == NULL) return -EINVAL;
  int rc = bh__key_op(req, BH__OP_KEY_REVOKE, cb, data, &j);
  if (rc) return rc;
  if (bh__copy_in(j->key_id, sizeof(j->key_id), key_id)) {
    bh__id_free(j);
    return -ENOENT; /* longer than any id we hand out */
  }
  return bh__id_submit(bh__auth_get(), j);
}

int bh__svc_login_guard(bh_req *req, const char *account, int event,
                        bh_identity_cb cb, void *data) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  if (event < BH_LOGIN_CHECK || event > BH_LOGIN_RELEASED) return -EINVAL;
  bh__idjob *j = bh__id_new(req, BH__OP_GUARD, cb, data);
  if (j == NULL) return -ENOMEM;
  j->event = event;
  snprintf(j->account, sizeof(j->account), "%s", account ? account : "");
  snprintf(j->addr, sizeof(j->addr), "%s", req->client_addr);
  return bh__id_submit(a, j);
}

int bh__svc_local_verify(bh_req *req, const char *email, const char *password,
                         bh_identity_cb cb, void *data) {
  bh__auth *a;
  int rc = bh__id_ready(req, cb, &a);
  if (rc) return rc;
  if (email == NULL || password == NULL || strlen(password) > BH__PASSWORD_MAX)
    return -EINVAL;
  bh__idjob *j = bh__id_new(req, BH__OP_LOCAL, cb, data);
  if (j == NULL) return -ENOMEM;
  j->password = strdup(password);
  if (j->password == NULL ||
      bh__copy_in(j->account, sizeof(j->account), email)) {
    int e = j->password ? -EINVAL : -ENOMEM;
    bh__id_free(j);
    return e;
  }
  j->job.work = bh__id_work;
  j->job.done = bh__local_done;
  req->refs++;
  rc = bh__store_submit(a->store, &j->job);
  if (rc) {
    req->refs--;
    bh__id_free(j);
  }
  return rc;
}
