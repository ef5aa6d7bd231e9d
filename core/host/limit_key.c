/*
 * The bucket key of a request under a rate-limit policy (principal,
 * verified API key or client address) and the RateLimit fields' partition
 * key: one copy for the route limit (gateway/limit_check.c) and a plugin's
 * token budget (services_ai.c).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "host/host.h"
#include "http/http.h"
#include "identity/auth.h"
#include "policy/ratelimit.h"

/* The bucket key. key = api_key counts the VERIFIED key (its id, from the
 * session middleware), never the raw header: an unknown value would get a
 * fresh bucket per request, and every one of them could evict somebody's
 * drained bucket. A caller not authenticated by a key -- anonymous, bearer,
 * cookie, or a route without auth -- counts against its address. Ids are
 * hashed so the table holds names of one shape. */
void bh__limit_key(bh_req *req, int kind, char *out, size_t len) {
  const char *v = NULL;
  if (kind == BH__RL_KEY_API_KEY) {
    const bh_principal *p = bh__auth_principal(req);
    if (p && p->kind == BH_AUTH_API_KEY && p->key_id) v = p->key_id;
  } else if (kind == BH__RL_KEY_PRINCIPAL) {
    v = req->principal_id;
  }
  if (v && v[0]) {
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)v, strlen(v), NULL,
                       0);
    char hex[33];
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    snprintf(out, len, "%c:%s", kind == BH__RL_KEY_API_KEY ? 'k' : 'p', hex);
    return;
  }
  snprintf(out, len, "a:%s", req->client_addr);
}

/* The RateLimit fields' pk: a digest of the bucket key, so a caller can
 * tell its partitions apart without the key (an address, a key id)
 * showing. */
void bh__limit_pk(const char *key, char *out, size_t len) {
  unsigned char h[9];
  crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key),
                     NULL, 0);
  sodium_bin2base64(out, len, h, sizeof(h), sodium_base64_VARIANT_ORIGINAL);
}
