/*
 * The [auth] configuration, resolved (auth_conf.c): what the HTTP front
 * reads too (the API-key header whose copies it counts).
 */
#ifndef BH_CORE_IDENTITY_AUTH_T_H
#define BH_CORE_IDENTITY_AUTH_T_H

#include <stddef.h>
#include <stdint.h>

/* [auth], resolved: secrets read from @env / @file, key files loaded. */
typedef struct bh__auth_conf {
  int alg;               /* BH__JWT_HS256 / RS256 / ES256 */
  unsigned char *secret; /* HS256; NULL: the generated one in data_dir */
  size_t secret_len;
  char *private_pem; /* RS256 / ES256: signs (NULL: verify only) */
  size_t private_len;
  char *public_pem; /* RS256 / ES256: verifies */
  size_t public_len;
  char *issuer;             /* "bulkhead" */
  char *audience;           /* "bulkhead" */
  uint32_t access_ttl_s;    /* 900 */
  uint32_t refresh_ttl_s;   /* 2592000 */
  uint32_t leeway_s;        /* 30 */
  uint32_t refresh_grace_s; /* 5 */
  int cookie_secure;        /* 1 */
  char **origins; /* csrf_origins, "scheme://host[:port]" lower-cased */
  size_t norigins;
  char *api_key_header;        /* "x-api-key", lower-cased */
  char *store_file;            /* "identity.db"; relative: under data_dir */
  uint32_t login_max_failures; /* 5 per account ... */
  uint32_t login_max_failures_per_address; /* 50 per client address ... */
  uint32_t login_lockout_s; /* ... within this window, then locked */
  char *api_key_scopes;     /* space-separated allowlist for API keys, "" */
  uint32_t revoked_sessions_max; /* the revoked-session set's slots, 65536 */
  uint32_t token_cache_size;     /* verified tokens kept per worker, 4096 */
  /* [store] (store_conf.c) */
  int store_backend; /* BH__STORE_SQLITE (default) / BH__STORE_POSTGRES */
  char *store_url;   /* postgres: resolved (it may hold a password) */
  size_t store_url_len;
  uint32_t store_pool; /* postgres connections per worker, 4 */
} bh__auth_conf;

#endif
