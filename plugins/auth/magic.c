/*
 * Email magic-link sign-in: the fallback for when the identity provider
 * is down (or, with magic_link = always, a sign-in method of its own).
 *
 *   POST /v1/auth/magic-link {"email", "redirect"?}
 *        202, the same body whether or not the account exists; when it
 *        does, an email with a one-time link goes out through SMTP
 *   POST /v1/auth/magic-link/verify {"token"}   the session, as a login
 *   GET  /v1/auth/magic-link/verify?token=...   what the mail's link opens:
 *        302 to the redirect (a local path) with the session cookies
 *
 * Accounts: the plugin remembers, per email (hashed), the user id of every
 * successful password login. When the IdP is down it cannot be asked who
 * an email is, so the fallback serves the accounts that signed in through
 * this gateway before.
 *
 * Tokens: 32 random bytes (base64url); stored as a lookup selector (its
 * first 16 characters) and a BLAKE2b hash of the whole token, compared in
 * constant time; single use (deleted in the transaction that accepts
 * it), valid magic_link_ttl_s, bound to the email's account. Rate limits
 * per email and per client address on requests, and per address on
 * failed verifications: 429 auth.too_many_attempts with Retry-After.
 *
 * magic_link = fallback (default) answers only while the IdP is
 * unavailable: the last login attempt (any worker's: the state is in the
 * plugin's database) hit auth.idp_unavailable, which an open breaker does
 * too; otherwise 409 auth.magic_link_not_needed. Such a login's 503 then
 * carries extensions.fallback = "magic_link".
 *
 * Threads: SQLite and SMTP (magic_mail.c: libcurl, blocking, with
 * timeouts) run on the thread of a core job queue (jobq_new), one job at a
 * time; results come back to the loop through it.
 * Neither the email address nor the token is ever logged: log lines name
 * an account by the first characters of its email hash.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth_plugin.h"
#include "magic_db.h"

#define MAGIC_QUEUE_MAX 256
#define HASH_LEN MAGIC_HASH_LEN
#define SELECTOR_LEN 16

enum mkind { MJ_REQUEST = 1, MJ_VERIFY, MJ_REMEMBER, MJ_IDP };

typedef struct mjob {
  bh_job job; /* first: the core queue's node */
  int kind;
  bh_req *req; /* loop thread only; NULL for fire-and-forget jobs */
  int get;     /* MJ_VERIFY: the mail's link (302) */
  char email[256];
  unsigned char email_hash[HASH_LEN];
  char addr[64];
  char user_id[128];
  char redirect[1024];
  char token[64];
  int idp_down;
  /* outputs */
  const char *code;
  long retry_after;
} mjob;

typedef struct magic_state {
  bh_jobq *q; /* its thread runs every statement and every mail */
  bh_ctx *ctx;
  pthread_mutex_t mu; /* guards the log lines */
  char logbuf[8][200];
  int nlog;
} magic_state;

static magic_state M;

/* ---- helpers ------------------------------------------------------------ */

static void email_hash(const char *email, unsigned char out[HASH_LEN]) {
  static const char ctx[] = "bulkhead magic-link email v1";
  crypto_generichash(out, HASH_LEN, (const unsigned char *)email, strlen(email),
                     (const unsigned char *)ctx, sizeof(ctx) - 1);
}

static void key_hash(const char *kind, const char *v,
                     unsigned char out[HASH_LEN]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, HASH_LEN);
  crypto_generichash_update(&st, (const unsigned char *)kind, strlen(kind));
  crypto_generichash_update(&st, (const unsigned char *)":", 1);
  crypto_generichash_update(&st, (const unsigned char *)v, strlen(v));
  crypto_generichash_final(&st, out, HASH_LEN);
}

static void token_hash(const char *token, unsigned char out[HASH_LEN]) {
  key_hash("token", token, out);
}

/* The first hex characters of the email hash: enough to follow one
 * account through the logs, nothing to learn the address from. */
static void account_tag(const unsigned char h[HASH_LEN], char out[13]) {
  sodium_bin2hex(out, 13, h, 6);
}

/* Thread side: a log line for the loop to write. */
static void tlog(const char *fmt, const char *a, const char *b) {
  pthread_mutex_lock(&M.mu);
  if (M.nlog < 8) snprintf(M.logbuf[M.nlog++], 200, fmt, a, b ? b : "");
  pthread_mutex_unlock(&M.mu);
}

/* An address we may put in a mail header and send to: one '@', printable
 * ASCII without spaces, quotes, angle brackets or commas. */
static int email_ok(const char *e) {
  const char *at = strchr(e, '@');
  if (at == NULL || at == e || strchr(at + 1, '@') || at[1] == '\0' ||
      strchr(at, '.') == NULL)
    return 0;
  for (const char *p = e; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c >= 0x7f || strchr("<>\"(),;:\\[]", c)) return 0;
  }
  return 1;
}

/* A path of this site: "/" then no second "/" or "\" (which browsers read
 * as another host), no control bytes, no scheme. */
static int local_path_ok(const char *r) {
  if (r[0] != '/' || r[1] == '/' || r[1] == '\\') return 0;
  for (const char *p = r; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x21 || c == 0x7f || c == '\\') return 0;
  }
  return 1;
}

/* ---- the store (worker thread): magic_db.c ----------------------------- */

static int64_t now_s(void) {
  return (int64_t)time(NULL);
}

/* Fixed-window counter: 1 and *retry when `key` is over `max`, else 0
 * (and counted when `count`). Negative on a store failure. */
static int limited(const unsigned char key[HASH_LEN], int max, int count,
                   long *retry) {
  int64_t now = now_s(), win = auth_g.magic.window_s;
  int64_t start = now, n = 0, s0 = 0, n0 = 0;
  int rc = mdb_limit_get(key, &s0, &n0);
  if (rc < 0) return -EIO;
  if (rc == 1 && s0 + win > now) {
    start = s0;
    n = n0;
  }
  if (n >= max) {
    *retry = (long)(start + win - now);
    if (*retry < 1) *retry = 1;
    return 1;
  }
  if (!count) return 0;
  return mdb_limit_put(key, start, n + 1);
}

/* ---- the jobs (worker thread) ------------------------------------------- */

/* Opens the request's transaction and charges the per-email and
 * per-address limits: 0 (the transaction open), or -1 with j->code set
 * (and it closed). */
static int request_limits(mjob *j) {
  long ra = 0;
  unsigned char ke[HASH_LEN], ka[HASH_LEN];
  key_hash("email", j->email, ke);
  key_hash("addr", j->addr, ka);
  if (mdb_begin() != 0) {
    j->code = "auth.email_unavailable";
    return -1;
  }
  int a = limited(ke, auth_g.magic.per_email, 0, &ra);
  int b = a == 0 ? limited(ka, auth_g.magic.per_address, 0, &ra) : 0;
  if (a == 0 && b == 0) {
    a = limited(ke, auth_g.magic.per_email, 1, &ra);
    if (a == 0) b = limited(ka, auth_g.magic.per_address, 1, &ra);
  }
  if (a < 0 || b < 0) {
    mdb_rollback();
    j->code = "auth.email_unavailable";
    return -1;
  }
  if (a > 0 || b > 0) {
    mdb_commit();
    j->code = "auth.too_many_attempts";
    j->retry_after = ra;
    return -1;
  }
  return 0;
}

static void run_request(mjob *j) {
  int idp = auth_g.magic.mode == AUTH_MAGIC_FALLBACK ? mdb_idp_down() : 1;
  if (idp <= 0) {
    j->code = idp < 0 ? "auth.email_unavailable" : "auth.magic_link_not_needed";
    return;
  }
  if (request_limits(j) != 0) return;
  /* the account, if this gateway has seen it sign in */
  int found =
      mdb_account_get(j->email_hash, j->user_id, sizeof(j->user_id)) == 1;
  char token[64] = "";
  if (found) {
    unsigned char raw[32];
    magic_token t = {.expires_at = now_s() + auth_g.magic.ttl_s};
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(token, sizeof(token), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    token_hash(token, t.verifier);
    memcpy(t.email_hash, j->email_hash, HASH_LEN);
    snprintf(t.user_id, sizeof(t.user_id), "%s", j->user_id);
    snprintf(t.redirect, sizeof(t.redirect), "%s", j->redirect);
    if (mdb_token_put(token, SELECTOR_LEN, &t) != 0) {
      mdb_rollback();
      j->code = "auth.email_unavailable";
      return;
    }
  }
  /* expired tokens go, now and then */
  (void)mdb_tokens_expire(now_s() - 3600);
  /* counted even if the mail fails: the limit bounds what reaches SMTP */
  if (mdb_commit() != 0) {
    mdb_rollback();
    j->code = "auth.email_unavailable";
    return;
  }
  char tag[13];
  account_tag(j->email_hash, tag);
  const char *why = NULL;
  int rc = found ? auth_magic_smtp_send(j->email, token, &why)
                 : auth_magic_smtp_probe();
  if (why) tlog("magic link for account %s not sent: SMTP %s", tag, why);
  if (rc != 0) {
    /* a link nobody received must not stay usable */
    if (found) (void)mdb_token_delete(token, SELECTOR_LEN);
    j->code = "auth.email_unavailable";
  } else if (found) {
    tlog("magic link sent for account %s%s", tag, NULL);
  }
  sodium_memzero(token, sizeof(token));
}

static void run_verify(mjob *j) {
  long ra = 0;
  unsigned char kv[HASH_LEN], vh[HASH_LEN];
  key_hash("verify", j->addr, kv);
  if (mdb_begin() != 0) {
    j->code = "auth.session_store_unavailable";
    return;
  }
  int lim = limited(kv, auth_g.magic.verify_failures, 0, &ra);
  if (lim != 0) {
    mdb_rollback();
    j->code =
        lim > 0 ? "auth.too_many_attempts" : "auth.session_store_unavailable";
    j->retry_after = ra;
    return;
  }
  const char *code = "auth.magic_link_invalid";
  size_t tl = strlen(j->token);
  if (tl >= SELECTOR_LEN) {
    magic_token t;
    token_hash(j->token, vh);
    int got = mdb_token_get(j->token, SELECTOR_LEN, &t);
    if (got < 0) {
      code = "auth.session_store_unavailable";
    } else if (got == 1 && sodium_memcmp(t.verifier, vh, HASH_LEN) == 0) {
      memcpy(j->email_hash, t.email_hash, HASH_LEN);
      snprintf(j->user_id, sizeof(j->user_id), "%s", t.user_id);
      snprintf(j->redirect, sizeof(j->redirect), "%s", t.redirect);
      code = t.expires_at > now_s() ? NULL : "auth.magic_link_expired";
    }
    sodium_memzero(&t, sizeof(t));
  }
  /* single use: this link, and every other of the account, is spent */
  if ((code == NULL || strcmp(code, "auth.magic_link_expired") == 0) &&
      mdb_tokens_delete_email(j->email_hash) != 0)
    code = "auth.session_store_unavailable";
  /* still the account the email belongs to */
  if (code == NULL && mdb_account_is(j->email_hash, j->user_id) != 1)
    code = "auth.magic_link_invalid";
  if (code && strcmp(code, "auth.session_store_unavailable") != 0)
    (void)limited(kv, auth_g.magic.verify_failures, 1, &ra);
  if (code && strcmp(code, "auth.session_store_unavailable") == 0) {
    mdb_rollback();
  } else if (mdb_commit() != 0) {
    mdb_rollback();
    code = "auth.session_store_unavailable";
  }
  j->code = code;
}

static void run(mjob *j) {
  if (mdb_ensure() != 0) {
    tlog("magic-link store %.120s: unavailable%s", mdb_name(), NULL);
    j->code = j->kind == MJ_VERIFY ? "auth.session_store_unavailable"
                                   : "auth.email_unavailable";
    return;
  }
  switch (j->kind) {
  case MJ_REQUEST: run_request(j); break;
  case MJ_VERIFY: run_verify(j); break;
  case MJ_REMEMBER:
    (void)mdb_account_put(j->email_hash, j->user_id, now_s());
    break;
  case MJ_IDP: (void)mdb_idp_set(j->idp_down, now_s()); break;
  }
  mdb_rollback(); /* whatever a failure left open */
}

static void magic_run(bh_job *job, void *data) {
  (void)data;
  mjob *j = (mjob *)(void *)job; /* one job per batch */
  run(j);
  sodium_memzero(j->token, sizeof(j->token));
  sodium_memzero(j->email, sizeof(j->email));
}

static void magic_thread_stop(void *data) {
  (void)data;
  mdb_close();
}

static int submit(mjob *j) {
  if (M.q == NULL) return -ESHUTDOWN;
  return bh_jobq_submit(M.q, &j->job);
}

/* ---- the loop side ------------------------------------------------------ */

static void on_session(bh_req *req, const bh_identity_result *res, void *data) {
  mjob *j = data;
  if (res->status != 0) {
    auth_fail(req, res->status, res->code);
  } else if (j->get) {
    bh_set_header(req, "Location", j->redirect[0] ? j->redirect : "/");
    bh_set_header(req, "Cache-Control", "no-store");
    bh_set_header(req, "Referrer-Policy", "no-referrer");
    bh_respond(req, 302, "text/plain; charset=utf-8", "", 0);
  } else {
    auth_token_reply(req, res, 0, j->redirect);
  }
  free(j);
}

static void finish(mjob *j) {
  bh_req *req = j->req;
  if (req == NULL) {
    free(j);
    return;
  }
  if (j->code) {
    if (strcmp(j->code, "auth.too_many_attempts") == 0)
      bh_problem_retry(req, j->code, NULL, j->retry_after);
    else
      bh_problem(req, j->code, NULL);
    free(j);
    return;
  }
  if (j->kind == MJ_REQUEST) {
    char body[200];
    snprintf(body, sizeof(body),
             "{\"status\":\"accepted\",\"detail\":\"If an account uses this "
             "address, a sign-in link is on its way.\",\"expiresIn\":%ld}",
             (long)auth_g.magic.ttl_s);
    bh_set_header(req, "Cache-Control", "no-store");
    bh_respond_json(req, 202, body);
    free(j);
    return;
  }
  bh_session_request in = {
      .size = sizeof(in), .user_id = j->user_id, .flags = BH_SESSION_COOKIES};
  int rc = bh_session_create(req, &in, on_session, j);
  if (rc) {
    auth_fail(req, rc, NULL);
    free(j);
  }
}

/* A job came back: write the thread's log lines, then go on with it. */
static void magic_done(bh_job *job, void *data) {
  (void)data;
  pthread_mutex_lock(&M.mu);
  char logs[8][200];
  int nlog = M.nlog;
  memcpy(logs, M.logbuf, sizeof(logs));
  M.nlog = 0;
  pthread_mutex_unlock(&M.mu);
  for (int i = 0; i < nlog; i++)
    bh_log(M.ctx, BH_LOG_INFO, "%s", logs[i]);
  finish((mjob *)(void *)job);
}

static mjob *job_new(int kind, bh_req *req) {
  mjob *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->kind = kind;
  j->req = req;
  if (req) {
    const char *a = bh_req_client_addr(req);
    snprintf(j->addr, sizeof(j->addr), "%s", a ? a : "");
  }
  return j;
}

static void normalize(const char *in, char *out, size_t n) {
  size_t i = 0;
  for (; in[i] && i + 1 < n; i++)
    out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + 32) : in[i];
  out[i] = '\0';
}

int auth_magic_enabled(void) {
  return auth_g.magic.mode != AUTH_MAGIC_OFF && M.q != NULL;
}

void auth_magic_remember(const char *email, const char *user_id) {
  if (!auth_magic_enabled()) return;
  mjob *j = job_new(MJ_REMEMBER, NULL);
  if (j == NULL) return;
  char e[256];
  normalize(email, e, sizeof(e));
  email_hash(e, j->email_hash);
  sodium_memzero(e, sizeof(e));
  snprintf(j->user_id, sizeof(j->user_id), "%s", user_id);
  if (submit(j) != 0) free(j);
}

void auth_magic_idp_state(int down) {
  static int last = -1;
  static int64_t last_at;
  if (!auth_magic_enabled()) return;
  /* "up" is written at most once a second per process: every login would
   * otherwise be a write */
  int64_t now = now_s();
  if (!down && last == 0 && now - last_at < 1) return;
  last = down;
  last_at = now;
  mjob *j = job_new(MJ_IDP, NULL);
  if (j == NULL) return;
  j->idp_down = down;
  if (submit(j) != 0) free(j);
}

/* ---- the routes --------------------------------------------------------- */

static const bh_field request_fields[] = {
    {.name = "email",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 3,
     .max = 254},
    {.name = "redirect", .type = BH_FIELD_STRING, .min = 1, .max = 1000},
};
static const bh_body_shape request_shape = {request_fields, 2, 0};

static const bh_field verify_fields[] = {
    {.name = "token",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 1,
     .max = 63},
};
static const bh_body_shape verify_shape = {verify_fields, 1, 0};

static void magic_request(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &request_shape) < 0) return;
  const char *email = bh_body_string(req, "email");
  const char *redirect = bh_body_string(req, "redirect");
  if (!email_ok(email)) {
    bh_problem_field(req, "request.invalid_body",
                     "The email address is not valid.", "email");
    return;
  }
  if (redirect && !local_path_ok(redirect)) {
    bh_problem_field(req, "auth.invalid_redirect", NULL, "redirect");
    return;
  }
  mjob *j = job_new(MJ_REQUEST, req);
  if (j == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  normalize(email, j->email, sizeof(j->email));
  email_hash(j->email, j->email_hash);
  snprintf(j->redirect, sizeof(j->redirect), "%s", redirect ? redirect : "/");
  if (submit(j) != 0) {
    free(j);
    bh_problem(req, "auth.email_unavailable", NULL);
  }
}

static void verify(bh_req *req, const char *token, int get) {
  mjob *j = job_new(MJ_VERIFY, req);
  if (j == NULL) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  j->get = get;
  snprintf(j->token, sizeof(j->token), "%s", token);
  if (submit(j) != 0) {
    free(j);
    bh_problem(req, "auth.session_store_unavailable", NULL);
  }
}

static void magic_verify_post(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &verify_shape) < 0) return;
  verify(req, bh_body_string(req, "token"), 0);
}

static void magic_verify_get(bh_req *req, void *data) {
  (void)data;
  const char *q = bh_req_query(req);
  char token[64] = "";
  /* token=<base64url>: no decoding needed, anything else is not ours */
  for (const char *p = q; p && *p;) {
    size_t len = strcspn(p, "&");
    if (len > 6 && strncmp(p, "token=", 6) == 0 && len - 6 < sizeof(token)) {
      memcpy(token, p + 6, len - 6);
      token[len - 6] = '\0';
    }
    p += len;
    if (*p == '&') p++;
  }
  if (token[0] == '\0') {
    bh_problem(req, "auth.magic_link_invalid", NULL);
    return;
  }
  verify(req, token, 1);
  sodium_memzero(token, sizeof(token));
}

int auth_magic_routes(bh_ctx *ctx) {
  if (auth_g.magic.mode == AUTH_MAGIC_OFF) return 0;
  uint32_t to = (uint32_t)auth_g.magic.smtp_timeout_ms + 2000;
  const bh_route routes[] = {
      {.size = sizeof(bh_route),
       .method = "POST",
       .pattern = "/v1/auth/magic-link",
       .handler = magic_request,
       .max_body_bytes = 4096,
       .timeout_ms = to},
      {.size = sizeof(bh_route),
       .method = "POST",
       .pattern = "/v1/auth/magic-link/verify",
       .handler = magic_verify_post,
       .max_body_bytes = 1024},
      {.size = sizeof(bh_route),
       .method = "GET",
       .pattern = "/v1/auth/magic-link/verify",
       .handler = magic_verify_get},
  };
  int rc = bh_routes_add(ctx, routes, BH_COUNT(routes));
  return rc < 0 ? rc : (int)BH_COUNT(routes);
}

/* ---- lifecycle ---------------------------------------------------------- */

int auth_magic_start(bh_ctx *ctx) {
  if (auth_g.magic.mode == AUTH_MAGIC_OFF) return 0;
  memset(&M, 0, sizeof(M));
  M.ctx = ctx;
  mdb_init(ctx);
  pthread_mutex_init(&M.mu, NULL);
  bh_jobq_def def = {.size = sizeof(def),
                     .name = "auth-magic",
                     .run = magic_run,
                     .done = magic_done,
                     .thread_stop = magic_thread_stop,
                     .max_batch = 1,
                     .max_queued = MAGIC_QUEUE_MAX};
  int rc = bh_jobq_new(ctx, &def, NULL, &M.q);
  if (rc < 0) {
    pthread_mutex_destroy(&M.mu);
    memset(&M, 0, sizeof(M));
  }
  return rc;
}

void auth_magic_fini(bh_ctx *ctx) {
  (void)ctx;
  if (M.q == NULL) return;
  /* queued jobs still run; what comes back is answered here */
  bh_jobq_close(M.q);
  M.q = NULL;
  pthread_mutex_destroy(&M.mu);
  memset(&M, 0, sizeof(M));
}
