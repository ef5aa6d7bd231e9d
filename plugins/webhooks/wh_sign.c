/*
 * Time, identifiers, secrets and Standard Webhooks signatures.
 *
 * A secret is "whsec_" + base64 of the key bytes; the signature of a
 * message is "v1," + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")),
 * and during a rotation several of them travel space-separated in one
 * webhook-signature header. Everything here is safe on any thread.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wh.h"

#define WH_SECRET_PREFIX "whsec_"
#define WH_KEY_BYTES 32

int64_t wh_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wh_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wh_new_id(char *out, size_t len, const char *prefix) {
  unsigned char raw[12];
  char hex[sizeof(raw) * 2 + 1];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
  snprintf(out, len, "%s_%s", prefix, hex);
}

int wh_id_ok(const char *s) {
  if (s == NULL) return 0;
  size_t n = strlen(s);
  if (n < 4 || n >= WH_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

void wh_time_str(int64_t ms, char *out, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(ms % 1000));
}

void wh_secret_new(char *out, size_t len) {
  unsigned char key[WH_KEY_BYTES];
  char b64[sodium_base64_ENCODED_LEN(WH_KEY_BYTES,
                                     sodium_base64_VARIANT_ORIGINAL)];
  randombytes_buf(key, sizeof(key));
  sodium_bin2base64(b64, sizeof(b64), key, sizeof(key),
                    sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(key, sizeof(key));
  snprintf(out, len, WH_SECRET_PREFIX "%s", b64);
  sodium_memzero(b64, sizeof(b64));
}

int wh_sign(const char *secret, const char *msg_id, int64_t ts_s,
            const char *body, size_t body_len, char *out, size_t outlen) {
  size_t plen = strlen(WH_SECRET_PREFIX);
  if (strncmp(secret, WH_SECRET_PREFIX, plen) != 0) return -EINVAL;
  const char *b64 = secret + plen;
  unsigned char key[64];
  size_t keylen = 0;
  if (sodium_base642bin(key, sizeof(key), b64, strlen(b64), NULL, &keylen, NULL,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      keylen == 0)
    return -EINVAL;
  char ts[24];
  int tsn = snprintf(ts, sizeof(ts), "%lld", (long long)ts_s);
  crypto_auth_hmacsha256_state st;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&st, key, keylen);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg_id,
                                strlen(msg_id));
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (size_t)tsn);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
  crypto_auth_hmacsha256_final(&st, mac);
  sodium_memzero(key, sizeof(key));
  sodium_memzero(&st, sizeof(st));
  char sig[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES,
                                     sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(sig, sizeof(sig), mac, sizeof(mac),
                    sodium_base64_VARIANT_ORIGINAL);
  size_t used = strlen(out);
  int n = snprintf(out + used, outlen - used, "%sv1,%s", used ? " " : "", sig);
  if (n < 0 || (size_t)n >= outlen - used) {
    out[used] = '\0';
    return -ENOSPC;
  }
  return 0;
}
