/*
 * core/identity/jwt_token.c: signing and verification, and every forged token
 * the middleware must refuse (alg none, HS256 signed with the RS256 public key,
 * wrong signature, expired, wrong aud/iss, missing exp, garbage).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "check.h"
#include "identity/jwt_cache.h"
#include "identity/jwt_token.h"

/* jansson's allocations, counted: a forged token must cost none */
static long json_allocs;
static void *count_malloc(size_t n) {
  json_allocs++;
  return malloc(n);
}

static const char secret[] = "unit-secret-0123456789-abcdefghijklmnop";
static const int64_t NOW = 1800000000;

static bh__jwt_keys hs_keys(void) {
  bh__jwt_keys k = {.alg = BH__JWT_HS256,
                    .sign = (const unsigned char *)secret,
                    .sign_len = sizeof(secret) - 1,
                    .verify = (const unsigned char *)secret,
                    .verify_len = sizeof(secret) - 1,
                    .issuer = "bulkhead",
                    .audience = "bulkhead",
                    .leeway_s = 30};
  return k;
}

static void b64url(const void *p, size_t n, char *out, size_t outlen) {
  sodium_bin2base64(out, outlen, p, n,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* header.claims.HMAC-SHA256(key), or with `sig` as the signature text. */
static char *forge(const char *header, const char *claims, const void *key,
                   size_t keylen, const char *sig) {
  static char tok[16384];
  char h[1024], c[8192], s[128];
  b64url(header, strlen(header), h, sizeof(h));
  b64url(claims, strlen(claims), c, sizeof(c));
  snprintf(tok, sizeof(tok), "%s.%s", h, c);
  if (sig) {
    snprintf(tok + strlen(tok), sizeof(tok) - strlen(tok), ".%s", sig);
    return tok;
  }
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key, keylen);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)tok, strlen(tok));
  crypto_auth_hmacsha256_final(&st, mac);
  b64url(mac, sizeof(mac), s, sizeof(s));
  snprintf(tok + strlen(tok), sizeof(tok) - strlen(tok), ".%s", s);
  return tok;
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define GOOD                                                                   \
  "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":\"u1\",\"typ\":"         \
  "\"access\",\"iat\":1800000000,\"exp\":1800000300}"

static int verify(const bh__jwt_keys *k, const char *tok) {
  bh__claims cl;
  return bh__jwt_verify(k, tok, NOW, &cl);
}

static int verify_hs(const char *header, const char *claims) {
  bh__jwt_keys k = hs_keys();
  return verify(&k, forge(header, claims, secret, sizeof(secret) - 1, NULL));
}

static void test_roundtrip(void) {
  bh__jwt_keys k = hs_keys();
  bh__claims in, out;
  memset(&in, 0, sizeof(in));
  snprintf(in.sub, sizeof(in.sub), "user_42");
  snprintf(in.sid, sizeof(in.sid), "ses_abc");
  snprintf(in.scope, sizeof(in.scope), "read write");
  in.iat = NOW;
  in.exp = NOW + 900;
  char *tok = NULL;
  CHECK_INT(bh__jwt_sign(&k, &in, &tok), BH__JWT_OK);
  CHECK(tok != NULL);
  CHECK_INT(bh__jwt_verify(&k, tok, NOW + 10, &out), BH__JWT_OK);
  CHECK_STR(out.sub, "user_42");
  CHECK_STR(out.sid, "ses_abc");
  CHECK_STR(out.scope, "read write");
  CHECK_INT(out.exp, NOW + 900);
  /* the header we write is the one recognised without decoding */
  CHECK(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
  /* expiry with leeway: valid until exp + leeway, not after */
  CHECK_INT(bh__jwt_verify(&k, tok, NOW + 900 + 29, &out), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify(&k, tok, NOW + 900 + 30, &out), BH__JWT_EXPIRED);
  k.leeway_s = 0;
  CHECK_INT(bh__jwt_verify(&k, tok, NOW + 900, &out), BH__JWT_EXPIRED);
  /* "expired" only of a token that is otherwise good: a broken signature
   * on an expired token is a bad signature, another issuer is that */
  {
    char bad[4096];
    snprintf(bad, sizeof(bad), "%s", tok);
    char *last = bad + strlen(bad) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    CHECK_INT(bh__jwt_verify(&k, bad, NOW + 900, &out), BH__JWT_SIGNATURE);
    bh__jwt_keys other = k;
    other.issuer = "someone-else";
    CHECK_INT(bh__jwt_verify(&other, tok, NOW + 900, &out), BH__JWT_ISSUER);
  }
  free(tok);
  /* a token minted elsewhere (the tests' Python minter's shape) */
  CHECK_INT(verify_hs(HS, GOOD), BH__JWT_OK);
  /* an equivalent header in another spelling is decoded and accepted */
  CHECK_INT(verify_hs("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", GOOD), BH__JWT_OK);
  CHECK_INT(verify_hs("{\"alg\":\"HS256\"}", GOOD), BH__JWT_OK);
  CHECK_INT(
      verify_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"1\"}", GOOD),
      BH__JWT_OK);
}

static void test_forged(void) {
  bh__jwt_keys k = hs_keys();
  /* alg none, unsigned and with a made-up signature */
  CHECK_INT(verify(&k, forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD, NULL,
                             0, "")),
            BH__JWT_MALFORMED);
  /* (the signature is checked first, with our algorithm: these fail
   * there, before their header is read) */
  CHECK_INT(verify(&k, forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD, NULL,
                             0, "AAAA")),
            BH__JWT_SIGNATURE);
  CHECK_INT(verify(&k, forge("{\"alg\":\"None\"}", GOOD, NULL, 0, "AAAA")),
            BH__JWT_SIGNATURE);
  /* another HMAC, and an algorithm we do not run */
  CHECK_INT(verify_hs("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", GOOD),
            BH__JWT_ALG);
  CHECK_INT(verify_hs("{\"typ\":\"JWT\"}", GOOD), BH__JWT_ALG);
  /* wrong signature: another secret, a flipped byte, a swapped payload */
  static const char other[] = "another-secret-0123456789-abcdefghijkl";
  CHECK_INT(verify(&k, forge(HS, GOOD, other, sizeof(other) - 1, NULL)),
            BH__JWT_SIGNATURE);
  char tok[8192];
  snprintf(tok, sizeof(tok), "%s",
           forge(HS, GOOD, secret, sizeof(secret) - 1, NULL));
  tok[strlen(tok) - 3] = tok[strlen(tok) - 3] == 'A' ? 'B' : 'A';
  CHECK_INT(verify(&k, tok), BH__JWT_SIGNATURE);
  char evil[8192];
  snprintf(evil, sizeof(evil), "%s",
           forge(HS,
                 "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                 "\"admin\",\"typ\":\"access\",\"exp\":1900000000}",
                 other, sizeof(other) - 1, NULL));
  char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
  char *edot1 = strchr(evil, '.'), *edot2 = strrchr(evil, '.');
  char spliced[8192];
  snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)(dot1 - tok), tok,
           (int)(edot2 - edot1), edot1, dot2);
  CHECK_INT(verify(&k, spliced), BH__JWT_SIGNATURE);
  /* claims */
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1799999000}"),
            BH__JWT_EXPIRED);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\"}"),
            BH__JWT_CLAIMS);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":\"1900000000\"}"),
            BH__JWT_CLAIMS);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1.9e9}"),
            BH__JWT_CLAIMS);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"other\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000}"),
            BH__JWT_ISSUER);
  CHECK_INT(verify_hs(HS, "{\"aud\":\"bulkhead\",\"sub\":\"u1\",\"typ\":"
                          "\"access\",\"exp\":1900000000}"),
            BH__JWT_ISSUER);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"portal\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000}"),
            BH__JWT_AUDIENCE);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":[\"portal\","
                          "\"bulkhead\"],\"sub\":\"u1\",\"typ\":\"access\","
                          "\"exp\":1900000000}"),
            BH__JWT_OK);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":[\"portal\"],\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000}"),
            BH__JWT_AUDIENCE);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"refresh\",\"exp\":1900000000}"),
            BH__JWT_TYPE);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"exp\":1900000000}"),
            BH__JWT_TYPE);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"typ\":"
                          "\"access\",\"exp\":1900000000}"),
            BH__JWT_CLAIMS);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"\",\"typ\":\"access\",\"exp\":1900000000}"),
            BH__JWT_CLAIMS);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000,"
                          "\"nbf\":1800001000}"),
            BH__JWT_NOT_YET);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000,"
                          "\"iat\":1800001000}"),
            BH__JWT_NOT_YET);
  CHECK_INT(verify_hs(HS, "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                          "\"u1\",\"typ\":\"access\",\"exp\":1900000000,"
                          "\"nbf\":1800000010}"),
            BH__JWT_OK); /* within the leeway */
  /* header oddities */
  CHECK_INT(verify_hs("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", GOOD),
            BH__JWT_MALFORMED);
  CHECK_INT(verify_hs("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", GOOD),
            BH__JWT_TYPE);
  CHECK_INT(verify_hs("[\"HS256\"]", GOOD), BH__JWT_MALFORMED);
  CHECK_INT(verify_hs(HS, "[1,2]"), BH__JWT_MALFORMED);
}

static void test_garbage(void) {
  bh__jwt_keys k = hs_keys();
  static const char *const bad[] = {
      "",
      "abc",
      "a.b",
      "a.b.c.d",
      "a..c",
      ".b.c",
      "a.b.",
      "....",
      "eyJ!.eyJ.sig",
      "a b.c.d",
      "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA",
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%%%.AAAA",
      NULL};
  for (size_t i = 0; bad[i]; i++) {
    int rc = verify(&k, bad[i]);
    if (rc == BH__JWT_OK) fprintf(stderr, "accepted garbage %s\n", bad[i]);
    CHECK(rc != BH__JWT_OK);
  }
  CHECK(verify(&k, NULL) == BH__JWT_MALFORMED);
  char *huge = malloc(20000);
  memset(huge, 'a', 19999);
  huge[19999] = '\0';
  huge[100] = huge[200] = '.';
  CHECK_INT(verify(&k, huge), BH__JWT_MALFORMED);
  free(huge);
  /* no key: nothing verifies, and libjwt never sees an empty key */
  bh__jwt_keys none = k;
  none.verify = NULL;
  none.verify_len = 0;
  CHECK_INT(verify(&none, forge(HS, GOOD, secret, sizeof(secret) - 1, NULL)),
            BH__JWT_NO_KEY);
  none.verify = (const unsigned char *)"";
  CHECK_INT(verify(&none, forge(HS, GOOD, "", 0, NULL)), BH__JWT_NO_KEY);
  bh__claims cl;
  memset(&cl, 0, sizeof(cl));
  char *tok = NULL;
  none.sign = NULL;
  none.sign_len = 0;
  CHECK_INT(bh__jwt_sign(&none, &cl, &tok), BH__JWT_NO_KEY);
  CHECK(tok == NULL);
}

static char *slurp(const char *rel, size_t *len) {
  const char *src = getenv("BULKHEAD_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof(path), "%s/tests/fixtures/auth/%s", src ? src : "../..",
           rel);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    return NULL;
  }
  char *buf = calloc(1, 65536);
  *len = fread(buf, 1, 65535, f);
  fclose(f);
  return buf;
}

static void test_asymmetric(int alg, const char *priv, const char *pub) {
  size_t plen = 0, qlen = 0;
  char *p = slurp(priv, &plen), *q = slurp(pub, &qlen);
  CHECK(p && q);
  if (!p || !q) {
    free(p);
    free(q);
    return;
  }
  bh__jwt_keys k = {.alg = alg,
                    .sign = (const unsigned char *)p,
                    .sign_len = plen,
                    .verify = (const unsigned char *)q,
                    .verify_len = qlen,
                    .issuer = "bulkhead",
                    .audience = "bulkhead",
                    .leeway_s = 0};
  bh__claims in, out;
  memset(&in, 0, sizeof(in));
  snprintf(in.sub, sizeof(in.sub), "u9");
  in.iat = NOW;
  in.exp = NOW + 60;
  char *tok = NULL;
  CHECK_INT(bh__jwt_sign(&k, &in, &tok), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify(&k, tok, NOW, &out), BH__JWT_OK);
  CHECK_STR(out.sub, "u9");
  free(tok);
  /* the classic confusion: HS256 keyed with the public key's PEM, which
   * libjwt 1.10 would accept if it were handed the token as it is */
  CHECK_INT(verify(&k, forge(HS, GOOD, q, qlen, NULL)), BH__JWT_SIGNATURE);
  /* the same HMAC under a header claiming the configured algorithm */
  const char *name = bh__jwt_alg_name(alg);
  char header[64];
  snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", name);
  CHECK_INT(verify(&k, forge(header, GOOD, q, qlen, NULL)), BH__JWT_SIGNATURE);
  CHECK_INT(verify(&k, forge("{\"alg\":\"none\"}", GOOD, NULL, 0, "AAAA")),
            BH__JWT_SIGNATURE);
  /* prepared once: the same answers */
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_OK);
  CHECK_INT(bh__jwt_sign(&k, &in, &tok), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify(&k, tok, NOW, &out), BH__JWT_OK);
  size_t tl = strlen(tok);
  /* a flipped byte in the signature of an asymmetric token */
  tok[tl - 5] = tok[tl - 5] == 'A' ? 'B' : 'A';
  CHECK_INT(bh__jwt_verify(&k, tok, NOW, &out), BH__JWT_SIGNATURE);
  free(tok);
  CHECK_INT(verify(&k, forge(header, GOOD, q, qlen, NULL)), BH__JWT_SIGNATURE);
  bh__jwt_keys_release(&k);
  bh__jwt_keys_release(&k); /* idempotent */
  /* a key of the other algorithm's type is refused at preparation */
  k.alg = alg == BH__JWT_RS256 ? BH__JWT_ES256 : BH__JWT_RS256;
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_NO_KEY);
  CHECK(k.vk == NULL);
  free(p);
  free(q);
}

/* The signature before any JSON: a token with a wrong signature, a
 * non-canonical header and a valid payload makes jansson allocate
 * nothing (libjwt's decoder parsed both parts first). */
static void test_no_json_before_signature(void) {
  bh__jwt_keys k = hs_keys();
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_OK);
  static const char other[] = "another-secret-0123456789-abcdefghijkl";
  char tok[8192];
  snprintf(tok, sizeof(tok), "%s",
           forge("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", GOOD, other,
                 sizeof(other) - 1, NULL));
  json_set_alloc_funcs(count_malloc, free);
  json_allocs = 0;
  CHECK_INT(verify(&k, tok), BH__JWT_SIGNATURE);
  CHECK_INT(json_allocs, 0);
  /* the same token correctly signed: the JSON is parsed, once it is */
  snprintf(tok, sizeof(tok), "%s",
           forge("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", GOOD, secret,
                 sizeof(secret) - 1, NULL));
  CHECK_INT(verify(&k, tok), BH__JWT_OK);
  CHECK(json_allocs > 0);
  json_set_alloc_funcs(malloc, free);
  bh__jwt_keys_release(&k);
}

/* The verified-token cache: hits, a byte flip anywhere never hits, the
 * times checked on every hit, LRU bound, flush, long tokens not kept. */
static void test_cache(void) {
  bh__jwt_keys k = hs_keys();
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_OK);
  bh__jwt_cache *c = bh__jwt_cache_new(2);
  CHECK(c != NULL);
  CHECK(bh__jwt_cache_new(0) == NULL);
  uint64_t hits, misses;
  uint32_t n;
  bh__claims cl;
  char tok[8192];
  snprintf(tok, sizeof(tok), "%s",
           forge(HS, GOOD, secret, sizeof(secret) - 1, NULL));
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW, &cl), BH__JWT_OK);
  CHECK_STR(cl.sub, "u1");
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(hits, 1);
  CHECK_INT(misses, 1);
  CHECK_INT(n, 1);
  /* every single-byte change of the cached token is refused */
  size_t len = strlen(tok);
  int refused = 0;
  for (size_t i = 0; i < len; i++) {
    char saved = tok[i];
    tok[i] = saved == 'A' ? 'B' : 'A';
    refused += bh__jwt_verify_cached(&k, c, tok, NOW, &cl) != BH__JWT_OK;
    tok[i] = saved;
  }
  CHECK_INT(refused, (long)len);
  /* and a prefix or an extension of it */
  tok[len - 1] = '\0';
  CHECK(bh__jwt_verify_cached(&k, c, tok, NOW, &cl) != BH__JWT_OK);
  snprintf(tok, sizeof(tok), "%sA",
           forge(HS, GOOD, secret, sizeof(secret) - 1, NULL));
  CHECK(bh__jwt_verify_cached(&k, c, tok, NOW, &cl) != BH__JWT_OK);
  snprintf(tok, sizeof(tok), "%s",
           forge(HS, GOOD, secret, sizeof(secret) - 1, NULL));
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(hits, 1);
  CHECK_INT(n, 1); /* refused tokens are never kept */
  /* expiry during the cache life: exp 1800000300, leeway 30 */
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW + 329, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW + 330, &cl), BH__JWT_EXPIRED);
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(hits, 2);
  CHECK_INT(n, 0); /* found expired: dropped */
  /* not yet valid (iat ahead): refused from the cache too */
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW - 31, &cl), BH__JWT_NOT_YET);
  /* bounded: a third token evicts the least recently used */
  char t2[8192], t3[8192];
  snprintf(t2, sizeof(t2), "%s",
           forge(HS,
                 "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                 "\"u2\",\"typ\":\"access\",\"exp\":1800000300}",
                 secret, sizeof(secret) - 1, NULL));
  snprintf(t3, sizeof(t3), "%s",
           forge(HS,
                 "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                 "\"u3\",\"typ\":\"access\",\"exp\":1800000300}",
                 secret, sizeof(secret) - 1, NULL));
  CHECK_INT(bh__jwt_verify_cached(&k, c, t2, NOW, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW, &cl), BH__JWT_OK); /* hit */
  CHECK_INT(bh__jwt_verify_cached(&k, c, t3, NOW, &cl), BH__JWT_OK);
  CHECK_STR(cl.sub, "u3");
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(n, 2);
  uint64_t h0 = hits, m0 = misses;
  CHECK_INT(bh__jwt_verify_cached(&k, c, tok, NOW, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, t2, NOW, &cl), BH__JWT_OK);
  CHECK_STR(cl.sub, "u2");
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(hits, h0 + 1);   /* tok stayed */
  CHECK_INT(misses, m0 + 1); /* t2 was evicted */
  /* flushed with new keys: a token of the old secret is verified again,
   * and refused */
  bh__jwt_cache_flush(c);
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(n, 0);
  static const char newsec[] = "rotated-secret-0123456789-abcdefghijkl";
  bh__jwt_keys k2 = k;
  k2.vk = NULL;
  k2.sign = k2.verify = (const unsigned char *)newsec;
  k2.sign_len = k2.verify_len = sizeof(newsec) - 1;
  CHECK_INT(bh__jwt_keys_prepare(&k2), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k2, c, tok, NOW, &cl), BH__JWT_SIGNATURE);
  bh__jwt_keys_release(&k2);
  /* over 4 KiB: verified, never kept */
  char big[8192];
  char claims[6000];
  snprintf(claims, sizeof(claims),
           "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":\"u1\","
           "\"typ\":\"access\",\"exp\":1800000300,\"pad\":\"%04000d\"}",
           0);
  snprintf(big, sizeof(big), "%s",
           forge(HS, claims, secret, sizeof(secret) - 1, NULL));
  CHECK(strlen(big) > BH__JWT_CACHE_MAX_TOKEN);
  CHECK_INT(bh__jwt_verify_cached(&k, c, big, NOW, &cl), BH__JWT_OK);
  CHECK_INT(bh__jwt_verify_cached(&k, c, big, NOW, &cl), BH__JWT_OK);
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(n, 0);
  /* no cache: plain verification */
  CHECK_INT(bh__jwt_verify_cached(&k, NULL, tok, NOW, &cl), BH__JWT_OK);
  bh__jwt_cache_free(c);
  bh__jwt_keys_release(&k);
}

/* Not a timed test: the figure is printed for the benchmark notes. */
static void cost(void) {
  bh__jwt_keys k = hs_keys();
  char tok[8192];
  snprintf(tok, sizeof(tok), "%s",
           forge(HS,
                 "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
                 "\"user_1234567890\",\"sid\":\"ses_0123456789abcdefghij\","
                 "\"scope\":\"read write\",\"typ\":\"access\",\"iat\":"
                 "1800000000,\"exp\":1800000900}",
                 secret, sizeof(secret) - 1, NULL));
  bh__claims cl;
  int n = 20000, ok = 1;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++)
    ok &= bh__jwt_verify(&k, tok, NOW, &cl) == 0;
  clock_gettime(CLOCK_MONOTONIC, &b);
  CHECK(ok);
  double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
  printf("HS256 verification, key prepared per call: %.2f us per token "
         "(%zu bytes)\n",
         us, strlen(tok));
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_OK);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++)
    ok &= bh__jwt_verify(&k, tok, NOW, &cl) == 0;
  clock_gettime(CLOCK_MONOTONIC, &b);
  us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
  printf("HS256 verification, key prepared once: %.2f us per token\n", us);
  bh__jwt_cache *c = bh__jwt_cache_new(16);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++)
    ok &= bh__jwt_verify_cached(&k, c, tok, NOW, &cl) == 0;
  clock_gettime(CLOCK_MONOTONIC, &b);
  us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
  printf("HS256 verification, cache hit: %.2f us per token\n", us);
  CHECK(ok);
  bh__jwt_cache_free(c);
  bh__jwt_keys_release(&k);
}

/* The prep callback of test_cache_suffix: the sub it was built from */
static size_t sub_prep(const bh__claims *c, void *out, size_t room) {
  size_t n = strlen(c->sub) + 1;
  if (n > room) return 0;
  memcpy(out, c->sub, n);
  return n;
}

/* The bucket comes from the last bytes only: two valid tokens that share
 * them (one byte here, so that a pair is found among a few tokens) are
 * both cached, and each hit returns its own claims and prep bytes. */
static void test_cache_suffix(void) {
  bh__jwt_keys k = hs_keys();
  CHECK_INT(bh__jwt_keys_prepare(&k), BH__JWT_OK);
  bh__jwt_cache *c = bh__jwt_cache_new_ex(8, 1, sub_prep);
  CHECK(c != NULL);
  static char toks[64][512];
  int a = -1, b = -1;
  for (int i = 0; i < 64 && a < 0; i++) {
    char claims[256];
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"bulkhead\",\"aud\":\"bulkhead\",\"sub\":"
             "\"c%d\",\"typ\":\"access\",\"exp\":1800000300}",
             i);
    snprintf(toks[i], sizeof(toks[i]), "%s",
             forge(HS, claims, secret, sizeof(secret) - 1, NULL));
    size_t li = strlen(toks[i]);
    for (int j = 0; j < i; j++)
      if (strlen(toks[j]) == li && toks[j][li - 1] == toks[i][li - 1])
        a = j, b = i;
  }
  CHECK(a >= 0);
  if (a < 0) return;
  char sa[16], sb[16];
  snprintf(sa, sizeof(sa), "c%d", a);
  snprintf(sb, sizeof(sb), "c%d", b);
  CHECK(strcmp(toks[a], toks[b]) != 0);
  bh__claims cl;
  const void *pre = NULL;
  CHECK_INT(bh__jwt_verify_pre(&k, c, toks[a], NOW, &cl, &pre), BH__JWT_OK);
  CHECK(pre != NULL && strcmp(pre, sa) == 0); /* built at insert */
  CHECK_INT(bh__jwt_verify_pre(&k, c, toks[b], NOW, &cl, &pre), BH__JWT_OK);
  CHECK(pre != NULL && strcmp(pre, sb) == 0);
  uint64_t hits, misses;
  uint32_t n;
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(n, 2);
  CHECK_INT(misses, 2);
  for (int round = 0; round < 2; round++) {
    CHECK_INT(bh__jwt_verify_pre(&k, c, toks[a], NOW, &cl, &pre), BH__JWT_OK);
    CHECK_STR(cl.sub, sa);
    CHECK(pre != NULL && strcmp(pre, sa) == 0);
    CHECK_INT(bh__jwt_verify_pre(&k, c, toks[b], NOW, &cl, &pre), BH__JWT_OK);
    CHECK_STR(cl.sub, sb);
    CHECK(pre != NULL && strcmp(pre, sb) == 0);
  }
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(hits, 4);
  CHECK_INT(misses, 2);
  /* a forged token with the same last byte lands in that chain: refused,
   * not kept */
  char forged[512];
  snprintf(forged, sizeof(forged), "%s", toks[a]);
  forged[strlen(forged) / 2] ^= 1;
  CHECK(bh__jwt_verify_pre(&k, c, forged, NOW, &cl, &pre) != BH__JWT_OK);
  CHECK(pre == NULL);
  bh__jwt_cache_stats(c, &hits, &misses, &n);
  CHECK_INT(n, 2);
  /* no cache: verified, nothing prebuilt */
  CHECK_INT(bh__jwt_verify_pre(&k, NULL, toks[a], NOW, &cl, &pre), BH__JWT_OK);
  CHECK(pre == NULL);
  bh__jwt_cache_free(c);
  bh__jwt_keys_release(&k);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  test_roundtrip();
  test_forged();
  test_garbage();
  test_no_json_before_signature();
  test_cache();
  test_cache_suffix();
  test_asymmetric(BH__JWT_RS256, "rs256-test-private.pem",
                  "rs256-test-public.pem");
  test_asymmetric(BH__JWT_ES256, "es256-test-private.pem",
                  "es256-test-public.pem");
  cost();
  return check_finish("test_jwt_token");
}
