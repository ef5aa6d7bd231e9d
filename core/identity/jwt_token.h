/*
 * JSON Web Tokens for the session middleware: access tokens signed with
 * libjwt 1.10, verified here on every protected request.
 *
 * Verification never takes the algorithm from the token: the signature
 * over everything before the last dot is checked first with the one
 * configured algorithm and key (HS256: a pre-keyed HMAC-SHA256 state,
 * compared in constant time; RS256 / ES256: the public key parsed once),
 * before any JSON is parsed. Only then must the header name that same
 * algorithm, and every claim (exp required; nbf, iat, iss, aud, typ, sub)
 * is checked with a small leeway, the payload parsed once. libjwt 1.10's
 * own decoder parses both JSON parts before the signature and compares
 * the HMAC with strcmp, so it is not used for verifying. No I/O.
 * jwt_cache.c keeps the tokens already verified (per process).
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

typedef struct bh__jwt_vkey bh__jwt_vkey;

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
  /* the verification key prepared (bh__jwt_keys_prepare); NULL: prepared
   * again for each call */
  bh__jwt_vkey *vk;
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

/* Prepares k->vk from k->alg and k->verify (the HMAC state keyed, or the
 * PEM public key parsed and its type checked): BH__JWT_OK, BH__JWT_NO_KEY
 * (no key, or a PEM that is not a key of the algorithm) or
 * BH__JWT_NOMEM. Release with bh__jwt_keys_release (idempotent). */
int bh__jwt_keys_prepare(bh__jwt_keys *k);
void bh__jwt_keys_release(bh__jwt_keys *k);

/* exp (required), nbf and iat (0: absent) of verified claims against
 * `now` with k's leeway: BH__JWT_OK, _EXPIRED or _NOT_YET. */
int bh__jwt_times_ok(const bh__jwt_keys *k, const bh__claims *c, int64_t now);

/* Verifies `token` at time `now` (unix seconds). BH__JWT_OK and *out
 * filled, or a negative enum bh__jwt_err. */
int bh__jwt_verify(const bh__jwt_keys *k, const char *token, int64_t now,
                   bh__claims *out);

/* Signs an access token with iss, aud, sub, sid and scope (when not
 * empty), typ "access", iat and exp from `c`. *out is malloc'd (the
 * caller frees it). BH__JWT_OK, BH__JWT_NO_KEY or BH__JWT_NOMEM. */
int bh__jwt_sign(const bh__jwt_keys *k, const bh__claims *c, char **out);

#endif
