/*
 * Fuzz target for the session middleware's parsing (core/auth_mw.c,
 * core/jwt_token.c, core/auth_revoked.c): bytes in -> Cookie header
 * splitting, Bearer extraction, Accept q-values, JWT structure and claim
 * checks, and a sign / verify round trip of claims taken from the input.
 *
 * Input: up to four '\n'-separated parts
 *   Cookie header value \n Authorization value \n Accept value \n rest
 * The rest is verified as a token as it is, and its bytes also give the
 * claims of a token signed here (so the verifier sees well-signed tokens
 * with hostile claims too).
 *
 * Invariants: a cookie value lies inside its header and holds no ';'; a
 * cookie found twice is reported as such; a Bearer token lies inside its
 * header; a verified token has a subject; what is signed verifies to the
 * same claims; a revoked session is found in the set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity/auth.h"
#include "identity/jwt_token.h"

static const unsigned char fz_secret[] =
    "fuzz-secret-0123456789-abcdefghijklmn";
static bh__jwt_keys fz_keys;
static int fz_ready;

static void fz_init(void) {
  fz_keys.alg = BH__JWT_HS256;
  fz_keys.sign = fz_keys.verify = fz_secret;
  fz_keys.sign_len = fz_keys.verify_len = sizeof(fz_secret) - 1;
  fz_keys.issuer = "bulkhead";
  fz_keys.audience = "bulkhead";
  fz_keys.leeway_s = 30;
  fz_ready = 1;
}

/* Part i of the input, NUL-terminated and malloc'd; *rest after it. */
static char *fz_part(const uint8_t **p, const uint8_t *end) {
  const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
  const uint8_t *stop = nl ? nl : end;
  size_t n = (size_t)(stop - *p);
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  memcpy(s, *p, n);
  s[n] = '\0';
  *p = nl ? nl + 1 : end;
  return s;
}

static void fz_cookies(const char *h) {
  static const char *const names[] = {"__session", "__Host-session",
                                      "__refresh", "__Host-refresh", "a"};
  size_t hl = strlen(h);
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const char *v = NULL;
    size_t vl = 0;
    int n = bh__cookie_scan(h, names[i], &v, &vl);
    if (n < 0 || (size_t)n > hl) abort();
    if (n == 0) continue;
    if (v < h || v + vl > h + hl) abort();
    if (memchr(v, ';', vl)) abort();
    /* the name and '=' precede the value */
    if ((size_t)(v - h) < strlen(names[i]) + 1) abort();
  }
}

static void fz_verify(const char *tok, int64_t now) {
  bh__claims cl;
  memset(&cl, 0, sizeof(cl));
  int rc = bh__jwt_verify(&fz_keys, tok, now, &cl);
  if (rc == BH__JWT_OK) {
    if (cl.sub[0] == '\0') abort();
    (void)bh__revoked_check(cl.sid, cl.iat, now);
  }
}

/* Claims from the input bytes, signed, verified back. */
static void fz_round_trip(const uint8_t *d, size_t n, int64_t now) {
  bh__claims c;
  memset(&c, 0, sizeof(c));
  size_t a = n / 3, b = 2 * n / 3;
  size_t ls = a < sizeof(c.sub) - 1 ? a : sizeof(c.sub) - 1;
  size_t li = b - a < sizeof(c.sid) - 1 ? b - a : sizeof(c.sid) - 1;
  size_t lc = n - b < sizeof(c.scope) - 1 ? n - b : sizeof(c.scope) - 1;
  memcpy(c.sub, d, ls);
  memcpy(c.sid, d + a, li);
  memcpy(c.scope, d + b, lc);
  c.sub[strnlen(c.sub, ls)] = '\0';
  c.sid[strnlen(c.sid, li)] = '\0';
  c.scope[strnlen(c.scope, lc)] = '\0';
  if (c.sub[0] == '\0') snprintf(c.sub, sizeof(c.sub), "u");
  c.iat = now;
  c.exp = now + 60 + (n & 0xff);
  char *tok = NULL;
  if (bh__jwt_sign(&fz_keys, &c, &tok) != BH__JWT_OK) return;
  bh__claims out;
  memset(&out, 0, sizeof(out));
  int rc = bh__jwt_verify(&fz_keys, tok, now, &out);
  /* any string signs; one that is not valid UTF-8 may be refused on the
   * way back, but what verifies must be what was signed */
  if (rc == BH__JWT_OK && (strcmp(out.sub, c.sub) || strcmp(out.sid, c.sid) ||
                           strcmp(out.scope, c.scope) || out.exp != c.exp))
    abort();
  if (rc == BH__JWT_OK && out.sid[0]) {
    /* revoke it: the set must say so at once */
    bh__revoked_add(out.sid, now + 60, now);
    if (bh__revoked_check(out.sid, out.iat, now) == 0) abort();
  }
  /* a flipped byte anywhere must not verify to other claims */
  size_t tl = strlen(tok);
  if (tl && n) {
    tok[d[0] % tl] ^= (char)(1 + (d[n - 1] & 0x3f));
    memset(&out, 0, sizeof(out));
    if (bh__jwt_verify(&fz_keys, tok, now, &out) == BH__JWT_OK &&
        (strcmp(out.sub, c.sub) || strcmp(out.sid, c.sid) ||
         strcmp(out.scope, c.scope)))
      abort();
  }
  free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!fz_ready) fz_init();
  if (size > 16384) return 0;
  const uint8_t *p = data, *end = data + size;
  char *cookie = fz_part(&p, end);
  char *authz = fz_part(&p, end);
  char *accept = fz_part(&p, end);
  char *rest = malloc((size_t)(end - p) + 1);
  if (rest == NULL) abort();
  memcpy(rest, p, (size_t)(end - p));
  rest[end - p] = '\0';
  int64_t now = 1700000000;
  /* no shared mapping here: a process-local set, fresh for each input */
  bh__revoked_reset();
  if (bh__revoked_init(64) != 0) abort();

  fz_cookies(cookie);
  const char *tok = bh__bearer_token(authz);
  if (tok) {
    if (tok < authz || tok > authz + strlen(authz)) abort();
    fz_verify(tok, now);
  }
  double q = bh__accept_q(accept, "text/html");
  (void)q;
  q = bh__accept_q(accept, "application/json");
  (void)q;
  fz_verify(rest, now);
  fz_round_trip(p, (size_t)(end - p), now);

  free(cookie);
  free(authz);
  free(accept);
  free(rest);
  return 0;
}
