/*
 * One delivery attempt as a libcurl easy handle, driven by the
 * dispatcher's multi handle (wh_dispatch.c), on the dispatcher thread.
 *
 * The core's upstream client does not fit here: it serves named upstreams
 * with a base URL from the config, on behalf of a client request, while a
 * delivery goes to any URL an API caller registered, from a background
 * thread, with no request to hang it on.
 *
 * Safety: only http and https, no redirects (a 3xx is a failed attempt, as
 * Standard Webhooks senders do), no proxy from the environment (it would
 * bypass the address check), and the address check itself at connect time
 * on the address the name resolved to (wh_url.c).
 */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "wh.h"

static size_t on_body(char *p, size_t size, size_t n, void *data) {
  (void)p;
  wh_send *s = data;
  /* the answer's body means nothing to us: count it, keep nothing */
  s->received += size * n;
  return size * n;
}

static int64_t parse_retry_after(const char *v, size_t n) {
  char buf[64];
  while (n && (*v == ' ' || *v == '\t'))
    v++, n--;
  while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
    n--;
  if (n == 0 || n >= sizeof(buf)) return -1;
  memcpy(buf, v, n);
  buf[n] = '\0';
  char *end;
  long long secs = strtoll(buf, &end, 10);
  if (*end == '\0') return secs < 0 ? -1 : secs * 1000;
  time_t when = curl_getdate(buf, NULL); /* an HTTP-date */
  if (when < 0) return -1;
  int64_t ms = (int64_t)when * 1000 - wh_now_ms();
  return ms < 0 ? 0 : ms;
}

static size_t on_header(char *p, size_t size, size_t n, void *data) {
  wh_send *s = data;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0)
    s->retry_after_ms =
        parse_retry_after(p + sizeof(name) - 1, len - (sizeof(name) - 1));
  return len;
}

static int sockaddr_port(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
  if (sa->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  return 0;
}

/* The address and port checks of wh_url.c on what curl is about to
 * connect to: the endpoint may have been saved under a laxer config, or
 * its name may resolve inside. */
static curl_socket_t on_open(void *data, curlsocktype purpose,
                             struct curl_sockaddr *a) {
  wh_send *s = data;
  if (purpose == CURLSOCKTYPE_IPCXN &&
      (!wh_addr_allowed(s->cfg, wh_addr_class(&a->addr)) ||
       !wh_port_allowed(s->cfg, sockaddr_port(&a->addr)))) {
    snprintf(s->error, sizeof(s->error), "address_not_allowed");
    return CURL_SOCKET_BAD; /* curl tries the next address, if any */
  }
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static struct curl_slist *add(struct curl_slist *l, const char *name,
                              const char *value, int *ok) {
  char line[600];
  snprintf(line, sizeof(line), "%s: %s", name, value);
  struct curl_slist *n = curl_slist_append(l, line);
  if (n == NULL) {
    *ok = 0;
    return l;
  }
  return n;
}

int wh_send_prepare(wh_send *s) {
  CURL *e = curl_easy_init();
  if (e == NULL) return -ENOMEM;
  int ok = 1;
  char ts[24];
  snprintf(ts, sizeof(ts), "%lld", (long long)s->timestamp_s);
  struct curl_slist *h = NULL;
  h = add(h, "Content-Type", "application/json", &ok);
  h = add(h, "User-Agent", "bulkhead-webhooks/" WH_VERSION, &ok);
  h = add(h, "webhook-id", s->event_id, &ok);
  h = add(h, "webhook-timestamp", ts, &ok);
  h = add(h, "webhook-signature", s->signature, &ok);
  h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
  if (!ok || h == NULL) {
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return -ENOMEM;
  }
  s->headers = h;
  s->easy = e;
  s->retry_after_ms = -1;
  curl_easy_setopt(e, CURLOPT_URL, s->url);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->payload);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->payload_len);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->cfg->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)s->cfg->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
  curl_easy_setopt(e, CURLOPT_PRIVATE, s);
  return 0;
}

void wh_send_finish(wh_send *s, int cc) {
  long status = 0;
  curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
  s->duration_ms = wh_mono_ms() - s->started_mono;
  if (cc == CURLE_OK) {
    s->status = (int)status;
    s->error[0] = '\0';
    return;
  }
  s->status = 0;
  if (s->error[0]) return; /* refused by the address check */
  const char *why;
  switch (cc) {
  case CURLE_COULDNT_RESOLVE_HOST: why = "dns_failed"; break;
  case CURLE_COULDNT_CONNECT: why = "connect_failed"; break;
  case CURLE_OPERATION_TIMEDOUT: why = "timeout"; break;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE: why = "tls_failed"; break;
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_PARTIAL_FILE: why = "connection_reset"; break;
  case CURLE_WEIRD_SERVER_REPLY: why = "bad_response"; break;
  default: why = "transport_failed"; break;
  }
  snprintf(s->error, sizeof(s->error), "%s", why);
}

void wh_send_free(wh_send *s) {
  if (s == NULL) return;
  if (s->easy) curl_easy_cleanup(s->easy);
  curl_slist_free_all(s->headers);
  free(s->url);
  free(s->payload);
  free(s);
}
