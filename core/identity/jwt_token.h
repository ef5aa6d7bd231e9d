/*
 * JSON Web Tokens for the session middleware: signing access tokens and
 * verifying them on every protected request, with libjwt 1.10.
 *
 * libjwt 1.10 takes the algorithm from the token itself and skips the
 * signature check when it is handed no key or a zero-length one. So: a
 * key is always passed (an empty one is refused before libjwt sees it),
 * the token's header must name the one configured algorithm before
 * decoding, the decoded algorithm is compared again after, and every
 * claim (exp required; nbf, iat, iss, aud, typ, sub) is checked here with
 * a small leeway. No I/O: verification is pure CPU.
 */
#ifndef BH_CORE_JWT_H
#define BH_CORE_JWT_H

#include <stddef.h>
#include <stdint.h>

enum bh__jwt_alg { BH__JWT_HS256 = 1, BH__JWT_RS256 = 2, BH__JWT_ES256 = 3 };

/* Why a token was refused. Clients read auth.unauthenticated for all but
 * BH__JWT_EXPIRED (auth.token_expired), which is returned only for a
 * token whose signature and other claims are all good. */
enum bh__jwt_err {
  BH__JWT_OK = 0,
  BH__JWT_MALFORMED = -1, /* not three base64url parts, bad JSON */
  BH__JWT_ALG = -2,       /* header names another algorithm (none included) */
  BH__JWT_SIGNATURE = -3, /* libjwt refused the signature */
  BH__JWT_EXPIRED = -4,
  BH__JWT_NOT_YET = -5, /* nbf or iat in the future */
  BH__JWT_ISSUER = -6,
  BH__JWT_AUDIENCE = -7,
  BH__JWT_TYPE = -8,    /* typ is not "access" */
  BH__JWT_CLAIMS = -9,  /* exp or sub missing, a claim of the wrong type */
  BH__JWT_NO_KEY = -10, /* no key configured: nothing can be verified */
  BH__JWT_NOMEM = -11
};

/* Key material and expectations. Every pointer borrowed from the caller
 * (the [auth] configuration) for as long as the keys are used. */
typedef struct bh__jwt_keys {
  int alg;                   /* enum bh__jwt_alg */
  const unsigned char *sign; /* HS256 secret or private key PEM; NULL:
                                this process cannot issue tokens */
  size_t sign_len;
  const unsigned char *verify; /* HS256 secret or public key PEM */
  size_t verify_len;
  const char *issuer;
  const char *audience;
  int64_t leeway_s;
} bh__jwt_keys;

/* What the core reads from (and writes into) an access token. */
typedef struct bh__claims {
  char sub[128];
  char sid[64];    /* "" when absent */
  char scope[512]; /* "" when absent */
  int64_t exp;
  int64_t iat; /* 0 when absent */
  int64_t nbf; /* 0 when absent */
} bh__claims;

/* "HS256" ... or NULL; the name to enum (0 when unknown). */
const char *bh__jwt_alg_name(int alg);
int bh__jwt_alg_parse(const char *name);
/* A short reason for the log ("expired", "bad signature" ...). */
const char *bh__jwt_strerror(int err);

/* Verifies `token` at time `now` (unix seconds). BH__JWT_OK and *out
 * filled, or a negative enum bh__jwt_err. */
int bh__jwt_verify(const bh__jwt_keys *k, const char *token, int64_t now,
                   bh__claims *out);

/* Signs an access token with iss, aud, sub, sid and scope (when not
 * empty), typ "access", iat and exp from `c`. *out is malloc'd (the
 * caller frees it). BH__JWT_OK, BH__JWT_NO_KEY or BH__JWT_NOMEM. */
int bh__jwt_sign(const bh__jwt_keys *k, const bh__claims *c, char **out);

#endif
