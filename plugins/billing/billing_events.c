/*
 * POST /v1/billing/provider-events: the payment provider's signed event
 * callbacks (Stripe's scheme).
 *
 * The Stripe-Signature header is "t=<unix seconds>,v1=<hex>[,v1=<hex>...]"
 * where each v1 is HMAC-SHA256(webhook secret, "<t>.<raw body>"); several
 * v1 values appear while the provider rolls its secret. An event is taken
 * only when one v1 matches (compared in constant time) and t lies within
 * the tolerance of our clock, which bounds how long a captured event could
 * be replayed; inside that window the event id, stored when first taken,
 * keeps a redelivery from being applied twice (it answers 200 with
 * "duplicate": true, as the provider retries anything else). A completed
 * checkout records the user -> customer mapping the other routes need.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing.h"

#define SIG_MAX_V1 8

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int billing_signature_check(const char *header, const char *body,
                            size_t body_len, const char *secret,
                            long tolerance_s, int64_t now) {
  if (header == NULL || secret == NULL) return -EINVAL;
  int64_t t = -1;
  unsigned char v1[SIG_MAX_V1][crypto_auth_hmacsha256_BYTES];
  size_t nv1 = 0;
  for (const char *s = header; *s;) {
    while (*s == ' ' || *s == ',')
      s++;
    size_t n = strcspn(s, ",");
    if (n == 0) break;
    if (n > 2 && s[0] == 't' && s[1] == '=') {
      int64_t v = 0;
      size_t i = 2;
      for (; i < n && s[i] >= '0' && s[i] <= '9' && i < 14; i++)
        v = v * 10 + (s[i] - '0');
      if (i != n) return -EINVAL;
      t = v;
    } else if (n == 3 + 2 * crypto_auth_hmacsha256_BYTES && s[0] == 'v' &&
               s[1] == '1' && s[2] == '=' && nv1 < SIG_MAX_V1) {
      for (size_t i = 0; i < crypto_auth_hmacsha256_BYTES; i++) {
        int hi = hexval(s[3 + 2 * i]), lo = hexval(s[4 + 2 * i]);
        if (hi < 0 || lo < 0) return -EINVAL;
        v1[nv1][i] = (unsigned char)(hi << 4 | lo);
      }
      nv1++;
    } /* other schemes (v0, a test scheme) are ignored, as Stripe does */
    s += n;
  }
  if (t < 0 || nv1 == 0) return -EINVAL;

  char ts[24];
  int tl = snprintf(ts, sizeof(ts), "%lld.", (long long)t);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret,
                              strlen(secret));
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (size_t)tl);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
  crypto_auth_hmacsha256_final(&st, mac);
  int match = 0;
  for (size_t i = 0; i < nv1; i++)
    match |= sodium_memcmp(mac, v1[i], sizeof(mac)) == 0;
  sodium_memzero(&st, sizeof(st));
  if (!match) return -EINVAL;
  /* only a genuine signature learns that its time is off */
  if (t > now + tolerance_s || now - t > tolerance_s) return -ETIME;
  return 0;
}

/* A bounded, printable copy of a JSON string member, or NULL. */
static char *str_member(json_t *o, const char *key, size_t max) {
  const char *v = json_string_value(json_object_get(o, key));
  if (v == NULL) return NULL;
  size_t n = strlen(v);
  if (n == 0 || n > max) return NULL;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) return NULL;
  return billing_strdup(v);
}

void billing_events_post(bh_req *req, void *data) {
  (void)data;
  billing_plugin *bp = billing_get(req);
  if (bp->cfg.webhook_secret == NULL) {
    bh_log(bp->ctx, BH_LOG_ERROR,
           "MISCONFIGURED: a provider event arrived but [plugin.billing] "
           "webhook_secret is not set (request %s)",
           bh_req_id(req));
    bh_problem(req, "billing.misconfigured", NULL);
    return;
  }
  size_t len = 0;
  const char *body = bh_req_body(req, &len);
  int rc = billing_signature_check(bh_req_header(req, "stripe-signature"), body,
                                   len, bp->cfg.webhook_secret,
                                   bp->cfg.tolerance_s, (int64_t)time(NULL));
  if (rc != 0) {
    bh_log(bp->ctx, BH_LOG_WARN, "provider event refused: %s (request %s)",
           rc == -ETIME ? "timestamp outside the tolerance"
                        : "signature missing or wrong",
           bh_req_id(req));
    bh_problem(req,
               rc == -ETIME ? "billing.signature_expired"
                            : "billing.signature_invalid",
               NULL);
    return;
  }
  json_t *doc = json_loadb(body, len, 0, NULL);
  json_t *obj = json_object_get(json_object_get(doc, "data"), "object");
  billing_job *j = billing_job_new(BILLING_OP_EVENT, BILLING_EVENTS, req);
  if (j == NULL) {
    json_decref(doc);
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  j->event_id = str_member(doc, "id", 255);
  j->event_type = str_member(doc, "type", 255);
  j->now = (int64_t)time(NULL);
  if (j->event_id == NULL || j->event_type == NULL || !json_is_object(obj)) {
    json_decref(doc);
    billing_job_free(j);
    bh_problem(req, "billing.invalid_event", NULL);
    return;
  }
  if (strcmp(j->event_type, "checkout.session.completed") == 0) {
    j->ev_user = str_member(obj, "client_reference_id", 255);
    if (j->ev_user == NULL)
      j->ev_user = str_member(json_object_get(obj, "metadata"), "user_id", 255);
    j->ev_customer = str_member(obj, "customer", 255);
    j->ev_subscription = str_member(obj, "subscription", 255);
    if (j->ev_user == NULL || j->ev_customer == NULL)
      bh_log(bp->ctx, BH_LOG_WARN,
             "provider event %s: a completed checkout without a user "
             "reference or customer; nothing recorded",
             j->event_id);
  } else if (strcmp(j->event_type, "customer.deleted") == 0) {
    j->ev_customer = str_member(obj, "id", 255);
  }
  json_decref(doc);
  if (billing_store_submit(&bp->store, j) != 0) {
    billing_job_free(j);
    bh_problem(req, "billing.store_unavailable", NULL);
  }
}

void billing_events_done(billing_plugin *bp, billing_job *j) {
  bh_req *req = j->req;
  if (j->status == 0) {
    bh_respond_json(req, 200, "{\"received\":true}");
  } else if (j->status == -EEXIST) {
    /* Already taken (and not applied again). A 2xx, or the provider, which
     * retries every other answer, redelivers it for days when the first
     * 200 was lost; only signature and timestamp problems are errors. */
    bh_log(bp->ctx, BH_LOG_INFO,
           "provider event %s delivered again: already processed, not "
           "applied twice (request %s)",
           j->event_id, bh_req_id(req));
    bh_respond_json(req, 200, "{\"received\":true,\"duplicate\":true}");
  } else {
    bh_problem(req, "billing.store_unavailable", NULL);
  }
  billing_job_free(j);
}
