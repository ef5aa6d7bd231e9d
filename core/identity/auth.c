/*
 * The process's side of sessions and identity: the signing keys, the
 * generated secret when [auth] gives none, and the store's life (migrated
 * once before the workers start, then one connection and thread in each
 * serving process).
 */

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http.h"
#include "identity/auth.h"
#include "identity/store.h"
#include "identity/store_ops.h"
#include "proc/daemon-t.h"

enum { BH__AUTH_NONE = 0, BH__AUTH_CHECK = 1, BH__AUTH_RUN = 2 };

static bh__auth g_auth;
static int g_mode;                 /* inherited by forked workers */
static unsigned char *g_generated; /* the generated HS256 secret */
static size_t g_generated_len;

bh__auth *bh__auth_get(void) {
  return g_mode == BH__AUTH_RUN && g_auth.conf ? &g_auth : NULL;
}

/* file relative to data_dir unless absolute; 0 or -ENAMETOOLONG. */
static int bh__auth_path(const bh__config *cfg, const char *file, char *out,
                         size_t n) {
  int w = file[0] == '/' ? snprintf(out, n, "%s", file)
                         : snprintf(out, n, "%s/%s", cfg->data_dir, file);
  return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

/* Reads the generated secret, creating it (0600, 32 random bytes as hex)
 * when it does not exist. Workers may race here after a reload: O_EXCL
 * picks one writer, the others read what it wrote. */
static int bh__secret_file(const bh__config *cfg, unsigned char **out,
                           size_t *outlen, char *err, size_t errlen) {
  char path[4096];
  if (bh__auth_path(cfg, BH__AUTH_SECRET_FILE, path, sizeof(path)) != 0) {
    snprintf(err, errlen, "data_dir path too long");
    return -ENAMETOOLONG;
  }
  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "cannot create %s: %s", cfg->data_dir, strerror(e));
    return -e;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    unsigned char raw[32];
    char hex[65];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    hex[64] = '\n';
    ssize_t w = write(fd, hex, 65);
    int e = errno;
    if (w == 65 && fsync(fd) != 0) w = -1, e = errno;
    close(fd);
    sodium_memzero(hex, sizeof(hex));
    if (w != 65) {
      unlink(path);
      snprintf(err, errlen, "cannot write %.300s: %s", path, strerror(e));
      return -e;
    }
    bh__logf(BH__WARN, "auth_secret_generated",
             "[auth] has no jwt_secret: generated one in %s (0600); sessions "
             "survive restarts as long as the file stays. Set jwt_secret "
             "(@env:NAME or @file:PATH) to share sessions between hosts",
             path);
  } else if (errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "cannot create %.300s: %s", path, strerror(e));
    return -e;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot read %.300s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  char buf[256];
  ssize_t n = 0;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077))
    bh__logf(BH__WARN, "auth_secret_mode",
             "%s is readable by other users; chmod 600 it", path);
  for (int tries = 0; tries < 50; tries++) {
    /* a racing creator may not have written yet */
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n != 0) break;
    usleep(10000);
  }
  close(fd);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  if (n < BH__AUTH_MIN_SECRET) {
    sodium_memzero(buf, sizeof(buf));
    snprintf(err, errlen,
             "%.300s holds less than %d bytes; delete it to generate a new one "
             "(every session is then lost)",
             path, BH__AUTH_MIN_SECRET);
    return -EINVAL;
  }
  *out = malloc((size_t)n);
  if (*out == NULL) return -ENOMEM;
  memcpy(*out, buf, (size_t)n);
  *outlen = (size_t)n;
  sodium_memzero(buf, sizeof(buf));
  return 0;
}

static int bh__store_path(const bh__config *cfg, char *out, size_t n) {
  return bh__auth_path(cfg, cfg->auth->store_file, out, n);
}

typedef struct bh__rload {
  int64_t now, span;
  size_t n;
} bh__rload;

static void bh__revoked_load(const char *sid, int64_t at, void *arg) {
  bh__rload *ld = arg;
  bh__revoked_add(sid, at + ld->span, ld->now);
  ld->n++;
}

void bh__auth_revoked(const char *sid) {
  bh__auth *a = bh__auth_get();
  if (a == NULL || sid == NULL || sid[0] == '\0') return;
  int64_t now = bh__store_now();
  bh__revoked_add(sid, now + bh__revoked_span(a->conf), now);
}

/* The SQLite identity store under data_dir, created and migrated: 0 with
 * *db open (its path in path), or a negative errno with err set. */
static int bh__lite_open(const bh__config *cfg, char *path, size_t pathlen,
                         sqlite3 **db, char *err, size_t errlen) {
  char why[512];
  if (bh__store_path(cfg, path, pathlen) != 0) {
    snprintf(err, errlen, "[auth] store: path too long");
    return -ENAMETOOLONG;
  }
  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "cannot create %s: %s", cfg->data_dir, strerror(e));
    return -e;
  }
  int rc = bh__store_open(path, bh__core_migrations, bh__core_nmigrations, db,
                          why, sizeof(why));
  if (rc) {
    snprintf(err, errlen, "identity store: %s", why);
    return rc;
  }
  bh__logf(BH__INFO, "store_ready", "identity store %s at schema version %d",
           path, bh__store_version(*db));
  return 0;
}

int bh__auth_prepare(const bh__config *cfg, int check_only, char *err,
                     size_t errlen) {
  const bh__auth_conf *c = cfg->auth;
  if (c == NULL) {
    snprintf(err, errlen, "[auth]: configuration not loaded");
    return -EINVAL;
  }
  g_mode = check_only ? BH__AUTH_CHECK : BH__AUTH_RUN;
  if (check_only && c->store_backend == BH__STORE_POSTGRES)
    return bh__pg_prepare(c->store_url, BH__PG_CHECK, 0, NULL, NULL, err,
                          errlen);
  if (check_only) return 0;
  char why[512];
  if (c->alg == BH__JWT_HS256 && c->secret == NULL) {
    unsigned char *sec = NULL;
    size_t n = 0;
    int rc = bh__secret_file(cfg, &sec, &n, why, sizeof(why));
    if (rc) {
      snprintf(err, errlen, "[auth] generated secret: %s", why);
      return rc;
    }
    sodium_memzero(sec, n);
    free(sec);
  }
  /* the revoked-session set, before any worker exists, with what the
   * store revoked recently: a restart does not bring those tokens back */
  if (bh__revoked_init(c->revoked_sessions_max) != 0) {
    snprintf(err, errlen,
             "[auth] revoked_sessions_max: cannot allocate %u "
             "slots",
             c->revoked_sessions_max);
    return -ENOMEM;
  }
  bh__rload ld = {bh__store_now(), bh__revoked_span(c), 0};
  if (c->store_backend == BH__STORE_POSTGRES)
    return bh__pg_prepare(c->store_url, BH__PG_CONNECT, ld.now - ld.span,
                          bh__revoked_load, &ld, err, errlen);
  char path[4096];
  sqlite3 *db = NULL;
  int rc = bh__lite_open(cfg, path, sizeof(path), &db, err, errlen);
  if (rc) return rc;
  rc = bh__lite_revoked_since(db, ld.now - ld.span, bh__revoked_load, &ld);
  sqlite3_close_v2(db);
  if (rc) {
    snprintf(err, errlen, "identity store %s: cannot read revoked sessions",
             path);
    return rc;
  }
  if (ld.n)
    bh__logf(BH__INFO, "revoked_sessions_loaded",
             "%zu sessions revoked within the last %lld s", ld.n,
             (long long)ld.span);
  return 0;
}

int bh__auth_migrate(const bh__config *cfg, char *err, size_t errlen) {
  const bh__auth_conf *c = cfg->auth;
  if (c->store_backend == BH__STORE_POSTGRES)
    return bh__pg_prepare(c->store_url, BH__PG_MIGRATE, 0, NULL, NULL, err,
                          errlen);
  char path[4096];
  sqlite3 *db = NULL;
  int rc = bh__lite_open(cfg, path, sizeof(path), &db, err, errlen);
  if (rc) return rc;
  sqlite3_close_v2(db);
  return 0;
}

void bh__auth_start(bh__daemon *d) {
  if (g_mode != BH__AUTH_RUN || g_auth.conf) return;
  const bh__auth_conf *c = d->cfg->auth;
  if (c == NULL) return;
  char why[512];
  bh__jwt_keys *k = &g_auth.keys;
  memset(k, 0, sizeof(*k));
  k->alg = c->alg;
  k->issuer = c->issuer;
  k->audience = c->audience;
  k->leeway_s = c->leeway_s;
  if (c->alg == BH__JWT_HS256) {
    const unsigned char *sec = c->secret;
    size_t n = c->secret_len;
    if (sec == NULL) {
      if (bh__secret_file(d->cfg, &g_generated, &g_generated_len, why,
                          sizeof(why)) == 0) {
        sec = g_generated;
        n = g_generated_len;
      } else {
        /* verify_len 0: every token is refused, auth-required routes
         * answer 401; the daemon itself keeps serving */
        bh__logf(BH__ERROR, "auth_no_key", "no signing secret: %s", why);
      }
    }
    k->sign = k->verify = sec;
    k->sign_len = k->verify_len = sec ? n : 0;
  } else {
    k->sign = (const unsigned char *)c->private_pem;
    k->sign_len = c->private_pem ? c->private_len : 0;
    k->verify = (const unsigned char *)c->public_pem;
    k->verify_len = c->public_len;
  }
  /* the key parsed once here, not per token; a cache of tokens verified
   * with these keys only (new keys come with new workers on reload, and
   * the cache is flushed with the keys) */
  if (k->verify_len && bh__jwt_keys_prepare(k) != BH__JWT_OK)
    bh__logf(BH__ERROR, "auth_no_key",
             "the %s verification key cannot be used: every access token "
             "is refused",
             bh__jwt_alg_name(c->alg));
  g_auth.tokens = bh__jwt_cache_new_ex(c->token_cache_size, 0, bh__authn_prep);
  if (c->token_cache_size && g_auth.tokens == NULL)
    bh__logf(BH__WARN, "token_cache_unavailable",
             "no memory for %u cached tokens: every token is verified",
             c->token_cache_size);
  g_auth.conf = c;
  /* made by the prepare before the fork; found, not made, in a worker */
  if (bh__revoked_init(c->revoked_sessions_max) != 0)
    bh__logf(BH__ERROR, "revoked_set_unavailable",
             "no memory for the revoked-session set: logged-out access "
             "tokens stay valid until they expire");
  if (c->store_backend == BH__STORE_POSTGRES) {
    int rc =
        bh__store_start_pg(d->loop, c->store_url, c->store_pool, &g_auth.store);
    if (rc)
      bh__logf(BH__ERROR, "store_unavailable", "identity store threads: %s",
               uv_strerror(rc));
    else
      bh__revoked_poll_start(d->loop, g_auth.store, c);
    return;
  }
  char path[4096];
  sqlite3 *db = NULL;
  if (bh__store_path(d->cfg, path, sizeof(path)) != 0 ||
      bh__store_open(path, bh__core_migrations, bh__core_nmigrations, &db, why,
                     sizeof(why)) != 0) {
    bh__logf(BH__ERROR, "store_unavailable",
             "identity store: %s; access tokens still work, refresh and "
             "API keys answer 503",
             why);
    return;
  }
  int rc = bh__store_start(d->loop, db, &g_auth.store);
  if (rc)
    bh__logf(BH__ERROR, "store_unavailable", "identity store thread: %s",
             uv_strerror(rc));
}

void bh__auth_stop(bh__daemon *d) {
  (void)d;
  bh__revoked_poll_stop();
  if (g_auth.store) {
    bh__store_stop(g_auth.store);
    g_auth.store = NULL;
  }
  bh__jwt_cache_free(g_auth.tokens);
  g_auth.tokens = NULL;
  bh__jwt_keys_release(&g_auth.keys);
  if (g_generated) {
    sodium_memzero(g_generated, g_generated_len);
    free(g_generated);
    g_generated = NULL;
  }
  memset(&g_auth, 0, sizeof(g_auth));
}

char *bh__auth_issue(const char *user_id, const char *session_id,
                     const char *scopes, int64_t now, int64_t *exp) {
  bh__auth *a = bh__auth_get();
  if (a == NULL) return NULL;
  bh__claims cl;
  memset(&cl, 0, sizeof(cl));
  snprintf(cl.sub, sizeof(cl.sub), "%s", user_id);
  snprintf(cl.sid, sizeof(cl.sid), "%s", session_id ? session_id : "");
  snprintf(cl.scope, sizeof(cl.scope), "%s", scopes ? scopes : "");
  cl.iat = now;
  cl.exp = now + a->conf->access_ttl_s;
  char *tok = NULL;
  int rc = bh__jwt_sign(&a->keys, &cl, &tok);
  if (rc != BH__JWT_OK) {
    bh__logf(BH__ERROR, "token_sign_failed", "cannot sign an access token: %s",
             bh__jwt_strerror(rc));
    return NULL;
  }
  *exp = cl.exp;
  return tok;
}
