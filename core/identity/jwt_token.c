/*
 * Access tokens: issued with libjwt 1.10, verified here (see jwt_token.h):
 * the signature with the configured algorithm before any JSON is parsed,
 * then the header and the claims, each parsed once.
 */
#include "identity/jwt_token.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Far above any token we issue (~400 bytes); a bound before any work. */
#define BH__JWT_MAX_TOKEN 8192
#define BH__JWT_MAX_HEADER 1024

static const struct {
  int alg;
  const char *name;
  jwt_alg_t lib;
  /* base64url of {"alg":"<name>","typ":"JWT"}: the header we write (and
   * the usual one), recognised without decoding */
  const char *header;
} bh__algs[] = {
    {BH__JWT_HS256, "HS256", JWT_ALG_HS256,
     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"},
    {BH__JWT_RS256, "RS256", JWT_ALG_RS256,
     "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"},
    {BH__JWT_ES256, "ES256", JWT_ALG_ES256,
     "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"},
};
#define BH__NALGS (sizeof(bh__algs) / sizeof(bh__algs[0]))

static int bh__alg_index(int alg) {
  for (size_t i = 0; i < BH__NALGS; i++)
    if (bh__algs[i].alg == alg) return (int)i;
  return -1;
}

const char *bh__jwt_alg_name(int alg) {
  int i = bh__alg_index(alg);
  return i < 0 ? NULL : bh__algs[i].name;
}

int bh__jwt_alg_parse(const char *name) {
  for (size_t i = 0; name && i < BH__NALGS; i++)
    if (strcmp(bh__algs[i].name, name) == 0) return bh__algs[i].alg;
  return 0;
}

const char *bh__jwt_strerror(int err) {
  switch (err) {
  case BH__JWT_OK: return "ok";
  case BH__JWT_MALFORMED: return "malformed";
  case BH__JWT_ALG: return "algorithm not allowed";
  case BH__JWT_SIGNATURE: return "bad signature";
  case BH__JWT_EXPIRED: return "expired";
  case BH__JWT_NOT_YET: return "not valid yet";
  case BH__JWT_ISSUER: return "wrong issuer";
  case BH__JWT_AUDIENCE: return "wrong audience";
  case BH__JWT_TYPE: return "not an access token";
  case BH__JWT_CLAIMS: return "missing or mistyped claims";
  case BH__JWT_NO_KEY: return "no verification key";
  case BH__JWT_NOMEM: return "out of memory";
  default: return "invalid";
  }
}

static int bh__b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static unsigned bh__b64url_val(char c) {
  return c >= 'A' && c <= 'Z'   ? (unsigned)(c - 'A')
         : c >= 'a' && c <= 'z' ? (unsigned)(c - 'a' + 26)
         : c >= '0' && c <= '9' ? (unsigned)(c - '0' + 52)
         : c == '-'             ? 62u
                                : 63u;
}

/* Unpadded base64url of public bytes (the payload is not secret, so this
 * need not be constant-time like libsodium's decoder, which costs more
 * than the HMAC). The characters were checked already. -1 on an
 * impossible length or non-zero trailing bits. */
static long bh__b64url_decode(const char *in, size_t n, unsigned char *out,
                              size_t outlen) {
  if (n % 4 == 1 || n / 4 * 3 + 3 > outlen) return -1;
  size_t o = 0, i = 0;
  for (; i + 4 <= n; i += 4) {
    unsigned v = bh__b64url_val(in[i]) << 18 | bh__b64url_val(in[i + 1]) << 12 |
                 bh__b64url_val(in[i + 2]) << 6 | bh__b64url_val(in[i + 3]);
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  if (n - i >= 2) {
    unsigned v = bh__b64url_val(in[i]) << 18 | bh__b64url_val(in[i + 1]) << 12;
    if (n - i == 3) v |= bh__b64url_val(in[i + 2]) << 6;
    if (v & (n - i == 2 ? 0xffffu : 0xffu)) return -1; /* stray bits */
    out[o++] = (unsigned char)(v >> 16);
    if (n - i == 3) out[o++] = (unsigned char)(v >> 8);
  }
  return (long)o;
}

/* The header names exactly our algorithm, with nothing we would have to
 * understand ("crit") and the type JWT if any. */
static int bh__header_ok(const char *h, size_t n, int ai) {
  const char *want = bh__algs[ai].header;
  if (n == strlen(want) && memcmp(h, want, n) == 0) return BH__JWT_OK;
  if (n > BH__JWT_MAX_HEADER) return BH__JWT_MALFORMED;
  unsigned char raw[BH__JWT_MAX_HEADER];
  size_t rawlen = 0;
  if (sodium_base642bin(raw, sizeof(raw) - 1, h, n, NULL, &rawlen, NULL,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return BH__JWT_MALFORMED;
  json_t *doc =
      json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(doc)) {
    json_decref(doc);
    return BH__JWT_MALFORMED;
  }
  int rc = BH__JWT_OK;
  const char *alg = json_string_value(json_object_get(doc, "alg"));
  json_t *typ = json_object_get(doc, "typ");
  if (alg == NULL || strcmp(alg, bh__algs[ai].name) != 0)
    rc = BH__JWT_ALG;
  else if (json_object_get(doc, "crit"))
    rc = BH__JWT_MALFORMED;
  else if (typ && (!json_is_string(typ) ||
                   strcasecmp(json_string_value(typ), "JWT") != 0))
    rc = BH__JWT_TYPE; /* libjwt 1.10 refuses any other type too */
  json_decref(doc);
  return rc;
}

/* An optional integer claim: 0 absent, 1 present, -1 wrong type. */
static int bh__int_claim(json_t *doc, const char *name, int64_t *out) {
  json_t *v = json_object_get(doc, name);
  if (v == NULL) return 0;
  if (!json_is_integer(v)) return -1;
  *out = (int64_t)json_integer_value(v);
  return 1;
}

/* A string claim copied into out; 0 absent, 1 present, -1 wrong type,
 * too long, empty or with control characters. */
static int bh__str_claim(json_t *doc, const char *name, char *out,
                         size_t outlen) {
  json_t *v = json_object_get(doc, name);
  if (v == NULL) return 0;
  if (!json_is_string(v)) return -1;
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n == 0 || n >= outlen) return -1;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return -1;
  memcpy(out, s, n + 1);
  return 1;
}

static int bh__audience_ok(json_t *aud, const char *want) {
  if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
  if (!json_is_array(aud)) return 0;
  size_t i;
  json_t *v;
  json_array_foreach(aud, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), want) == 0) return 1;
  }
  return 0;
}

static int bh__claims_check(const bh__jwt_keys *k, json_t *doc, int64_t now,
                            bh__claims *out) {
  if (!json_is_object(doc)) return BH__JWT_MALFORMED;
  memset(out, 0, sizeof(*out));
  int has_exp = bh__int_claim(doc, "exp", &out->exp);
  int has_nbf = bh__int_claim(doc, "nbf", &out->nbf);
  int has_iat = bh__int_claim(doc, "iat", &out->iat);
  /* (a claim of 0 reads as absent in the times check: nbf/iat 0 are in
   * the past anyway) */
  if (has_exp <= 0 || has_nbf < 0 || has_iat < 0) return BH__JWT_CLAIMS;
  /* the signature was good; not-yet-valid next, expiry last (below) */
  if (out->nbf && now + k->leeway_s < out->nbf) return BH__JWT_NOT_YET;
  if (out->iat && out->iat > now + k->leeway_s) return BH__JWT_NOT_YET;
  const char *iss = json_string_value(json_object_get(doc, "iss"));
  if (iss == NULL || strcmp(iss, k->issuer) != 0) return BH__JWT_ISSUER;
  if (!bh__audience_ok(json_object_get(doc, "aud"), k->audience))
    return BH__JWT_AUDIENCE;
  const char *typ = json_string_value(json_object_get(doc, "typ"));
  if (typ == NULL || strcmp(typ, "access") != 0) return BH__JWT_TYPE;
  if (bh__str_claim(doc, "sub", out->sub, sizeof(out->sub)) <= 0 ||
      bh__str_claim(doc, "sid", out->sid, sizeof(out->sid)) < 0 ||
      bh__str_claim(doc, "scope", out->scope, sizeof(out->scope)) < 0)
    return BH__JWT_CLAIMS;
  /* expiry last: "expired" is told to the client (auth.token_expired), so
   * it must mean a token that is good in every other respect */
  if (now >= out->exp + k->leeway_s) return BH__JWT_EXPIRED;
  return BH__JWT_OK;
}

/* ---------------------------------------------------------------------- */
/* Verification keys, prepared once                                        */
/* ---------------------------------------------------------------------- */

/* What a verification needs that is the same for every token: the HMAC
 * state already keyed (the inner and outer SHA-256 blocks), or the public
 * key parsed once. */
struct bh__jwt_vkey {
  int alg;
  crypto_auth_hmacsha256_state hmac; /* HS256: copied per check */
  EVP_PKEY *pkey;                    /* RS256 / ES256 */
  EVP_MD_CTX *md;                    /* reused per check */
};

static void bh__vkey_free(bh__jwt_vkey *v) {
  if (v == NULL) return;
  EVP_MD_CTX_free(v->md);
  EVP_PKEY_free(v->pkey);
  sodium_memzero(v, sizeof(*v));
  free(v);
}

static int bh__vkey_new(const bh__jwt_keys *k, bh__jwt_vkey **out) {
  *out = NULL;
  if (bh__alg_index(k->alg) < 0 || k->verify == NULL || k->verify_len == 0)
    return BH__JWT_NO_KEY;
  bh__jwt_vkey *v = calloc(1, sizeof(*v));
  if (v == NULL) return BH__JWT_NOMEM;
  v->alg = k->alg;
  if (k->alg == BH__JWT_HS256) {
    crypto_auth_hmacsha256_init(&v->hmac, k->verify, k->verify_len);
    *out = v;
    return BH__JWT_OK;
  }
  if (k->verify_len > INT_MAX) {
    bh__vkey_free(v);
    return BH__JWT_NO_KEY;
  }
  BIO *bio = BIO_new_mem_buf(k->verify, (int)k->verify_len);
  v->pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  v->md = EVP_MD_CTX_new();
  /* the key's type pinned too: an RSA key never checks an ES256 token */
  int ok = v->pkey && v->md;
  if (ok && k->alg == BH__JWT_RS256)
    ok = EVP_PKEY_is_a(v->pkey, "RSA") && EVP_PKEY_get_bits(v->pkey) >= 2048;
  if (ok && k->alg == BH__JWT_ES256) {
    char group[64];
    size_t glen = 0;
    ok = EVP_PKEY_is_a(v->pkey, "EC") &&
         EVP_PKEY_get_utf8_string_param(v->pkey, "group", group, sizeof(group),
                                        &glen) == 1 &&
         (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0);
  }
  ERR_clear_error();
  if (!ok) {
    bh__vkey_free(v);
    return BH__JWT_NO_KEY;
  }
  *out = v;
  return BH__JWT_OK;
}

int bh__jwt_keys_prepare(bh__jwt_keys *k) {
  bh__jwt_keys_release(k);
  return bh__vkey_new(k, &k->vk);
}

void bh__jwt_keys_release(bh__jwt_keys *k) {
  bh__vkey_free(k->vk);
  k->vk = NULL;
}

/* The signature over the signed part (everything before the last dot),
 * checked before anything of the token is parsed. */
static int bh__sig_ok(bh__jwt_vkey *v, const char *signed_part, size_t n,
                      const char *sig64, size_t siglen) {
  unsigned char sig[1024];
  long slen = bh__b64url_decode(sig64, siglen, sig, sizeof(sig));
  if (slen < 0) return BH__JWT_SIGNATURE;
  if (v->alg == BH__JWT_HS256) {
    if (slen != crypto_auth_hmacsha256_BYTES) return BH__JWT_SIGNATURE;
    crypto_auth_hmacsha256_state st = v->hmac;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)signed_part, n);
    crypto_auth_hmacsha256_final(&st, mac);
    int rc = sodium_memcmp(mac, sig, sizeof(mac)) == 0 ? BH__JWT_OK
                                                       : BH__JWT_SIGNATURE;
    sodium_memzero(&st, sizeof(st));
    return rc;
  }
  unsigned char der[80];
  const unsigned char *s = sig;
  size_t sl = (size_t)slen;
  if (v->alg == BH__JWT_ES256) {
    /* JWS carries R || S (RFC 7518 3.4); OpenSSL wants DER */
    if (slen != 64) return BH__JWT_SIGNATURE;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *q = BN_bin2bn(sig + 32, 32, NULL);
    if (es == NULL || r == NULL || q == NULL || !ECDSA_SIG_set0(es, r, q)) {
      BN_free(r);
      BN_free(q);
      ECDSA_SIG_free(es);
      return BH__JWT_NOMEM;
    }
    unsigned char *p = der;
    int dl = i2d_ECDSA_SIG(es, NULL);
    if (dl <= 0 || (size_t)dl > sizeof(der)) {
      ECDSA_SIG_free(es);
      return BH__JWT_SIGNATURE;
    }
    dl = i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);
    s = der;
    sl = (size_t)dl;
  }
  int ok =
      EVP_MD_CTX_reset(v->md) == 1 &&
      EVP_DigestVerifyInit(v->md, NULL, EVP_sha256(), NULL, v->pkey) == 1 &&
      EVP_DigestVerify(v->md, s, sl, (const unsigned char *)signed_part, n) ==
          1;
  ERR_clear_error();
  return ok ? BH__JWT_OK : BH__JWT_SIGNATURE;
}

int bh__jwt_times_ok(const bh__jwt_keys *k, const bh__claims *c, int64_t now) {
  if (now >= c->exp + k->leeway_s) return BH__JWT_EXPIRED;
  if (c->nbf && now + k->leeway_s < c->nbf) return BH__JWT_NOT_YET;
  if (c->iat && c->iat > now + k->leeway_s) return BH__JWT_NOT_YET;
  return BH__JWT_OK;
}

static int bh__verify_with(const bh__jwt_keys *k, bh__jwt_vkey *v,
                           const char *token, int64_t now, bh__claims *out) {
  int ai = bh__alg_index(k->alg);
  if (token == NULL) return BH__JWT_MALFORMED;
  size_t n = strnlen(token, BH__JWT_MAX_TOKEN + 1);
  if (n == 0 || n > BH__JWT_MAX_TOKEN) return BH__JWT_MALFORMED;
  const char *dot[2] = {NULL, NULL};
  int ndots = 0;
  for (size_t i = 0; i < n; i++) {
    if (token[i] == '.') {
      if (ndots == 2) return BH__JWT_MALFORMED;
      dot[ndots++] = token + i;
    } else if (!bh__b64url_char(token[i])) {
      return BH__JWT_MALFORMED;
    }
  }
  /* three non-empty parts: an unsigned token ("x.y.") is malformed */
  if (ndots != 2 || dot[0] == token || dot[1] == dot[0] + 1 ||
      dot[1] + 1 == token + n)
    return BH__JWT_MALFORMED;
  /* The signature first, with the configured algorithm whatever the
   * header says: a forged token costs one HMAC (or one public-key
   * operation) and no JSON at all. */
  int rc = bh__sig_ok(v, token, (size_t)(dot[1] - token), dot[1] + 1,
                      (size_t)(token + n - dot[1] - 1));
  if (rc != BH__JWT_OK) return rc;
  /* signed by our key; the header must still name our algorithm */
  rc = bh__header_ok(token, (size_t)(dot[0] - token), ai);
  if (rc != BH__JWT_OK) return rc;
  const char *p = dot[0] + 1;
  size_t plen = (size_t)(dot[1] - p);
  unsigned char payload[BH__JWT_MAX_TOKEN];
  long paylen = bh__b64url_decode(p, plen, payload, sizeof(payload));
  if (paylen < 0) return BH__JWT_MALFORMED;
  json_t *doc = json_loadb((const char *)payload, (size_t)paylen,
                           JSON_REJECT_DUPLICATES, NULL);
  if (doc == NULL) return BH__JWT_MALFORMED;
  rc = bh__claims_check(k, doc, now, out);
  json_decref(doc);
  return rc;
}

int bh__jwt_verify(const bh__jwt_keys *k, const char *token, int64_t now,
                   bh__claims *out) {
  if (k->vk) {
    if (k->vk->alg != k->alg) return BH__JWT_NO_KEY;
    return bh__verify_with(k, k->vk, token, now, out);
  }
  /* keys not prepared (a one-off probe): prepared for this call */
  bh__jwt_vkey *v = NULL;
  int rc = bh__vkey_new(k, &v);
  if (rc != BH__JWT_OK) return rc;
  rc = bh__verify_with(k, v, token, now, out);
  bh__vkey_free(v);
  return rc;
}

int bh__jwt_sign(const bh__jwt_keys *k, const bh__claims *c, char **out) {
  int ai = bh__alg_index(k->alg);
  *out = NULL;
  if (ai < 0 || k->sign == NULL || k->sign_len == 0) return BH__JWT_NO_KEY;
  jwt_t *jwt = NULL;
  if (jwt_new(&jwt) != 0) return BH__JWT_NOMEM;
  int rc = jwt_set_alg(jwt, bh__algs[ai].lib, k->sign, (int)k->sign_len);
  rc = rc ? rc : jwt_add_grant(jwt, "iss", k->issuer);
  rc = rc ? rc : jwt_add_grant(jwt, "aud", k->audience);
  rc = rc ? rc : jwt_add_grant(jwt, "sub", c->sub);
  if (!rc && c->sid[0]) rc = jwt_add_grant(jwt, "sid", c->sid);
  if (!rc && c->scope[0]) rc = jwt_add_grant(jwt, "scope", c->scope);
  rc = rc ? rc : jwt_add_grant(jwt, "typ", "access");
  rc = rc ? rc : jwt_add_grant_int(jwt, "iat", (long)c->iat);
  rc = rc ? rc : jwt_add_grant_int(jwt, "exp", (long)c->exp);
  char *tok = rc ? NULL : jwt_encode_str(jwt);
  jwt_free(jwt);
  if (tok == NULL) return rc == EINVAL ? BH__JWT_NO_KEY : BH__JWT_NOMEM;
  *out = tok; /* libjwt 1.10 returns malloc'd strings */
  return BH__JWT_OK;
}
