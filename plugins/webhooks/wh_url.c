/*
 * Endpoint URLs and the addresses deliveries may reach.
 *
 * A webhook URL is chosen by the API's caller, so without a check the
 * dispatcher would POST wherever it is told: the loopback admin API, a
 * database on the private network, the cloud metadata service. Two checks
 * refuse that: when an endpoint is created or changed (a literal address or
 * a local name in the URL, answered 400 webhooks.invalid_url), and again at
 * connect time for every delivery (wh_send.c), on the address the name
 * actually resolved to, so a DNS name pointing inside is refused too.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "wh.h"

#define WH_URL_MAX 2048

static int v4_class(uint32_t a) {
  uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
  if (b0 == 127) return WH_ADDR_LOOPBACK;
  if (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) ||
      (b0 == 192 && b1 == 168) || (b0 == 100 && (b1 & 0xc0) == 64))
    return WH_ADDR_PRIVATE;
  if (b0 == 169 && b1 == 254) return WH_ADDR_LINK_LOCAL;
  if (b0 == 0 || b0 >= 224 ||
      (b0 == 192 && b1 == 0 && (uint8_t)(a >> 8) == 0) ||
      (b0 == 198 && (b1 & 0xfe) == 18))
    return WH_ADDR_RESERVED;
  return WH_ADDR_PUBLIC;
}

static int v6_class(const unsigned char *b) {
  static const unsigned char loop[16] = {[15] = 1};
  static const unsigned char any[16] = {0};
  static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
  static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
  if (memcmp(b, loop, 16) == 0) return WH_ADDR_LOOPBACK;
  if (memcmp(b, any, 16) == 0) return WH_ADDR_RESERVED;
  /* an IPv4 address in IPv6 clothing is judged as the IPv4 address */
  if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 ||
      (memcmp(b, any, 12) == 0)) {
    uint32_t a = ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) |
                 ((uint32_t)b[14] << 8) | b[15];
    return v4_class(a);
  }
  if ((b[0] & 0xfe) == 0xfc) return WH_ADDR_PRIVATE; /* fc00::/7 */
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return WH_ADDR_LINK_LOCAL;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return WH_ADDR_PRIVATE; /* site */
  if (b[0] == 0xff) return WH_ADDR_RESERVED; /* multicast */
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
    return WH_ADDR_RESERVED; /* documentation */
  return WH_ADDR_PUBLIC;
}

int wh_addr_class(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return v4_class(ntohl(in->sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    return v6_class(in6->sin6_addr.s6_addr);
  }
  return WH_ADDR_RESERVED;
}

int wh_addr_allowed(const wh_config *cfg, int cls) {
  switch (cls) {
  case WH_ADDR_PUBLIC: return 1;
  case WH_ADDR_LOOPBACK: return cfg->allow_loopback;
  case WH_ADDR_PRIVATE: return cfg->allow_private;
  case WH_ADDR_LINK_LOCAL: return cfg->allow_link_local;
  default: return 0;
  }
}

/* The class of a host as written in the URL: a literal address, a local
 * name, or public (a name; its addresses are checked at connect time). */
static int host_class(const char *host) {
  char buf[256];
  size_t n = strlen(host);
  if (n >= sizeof(buf)) return WH_ADDR_PUBLIC;
  memcpy(buf, host, n + 1);
  if (buf[0] == '[' && n > 2 && buf[n - 1] == ']') {
    buf[n - 1] = '\0';
    char *zone = strchr(buf, '%');
    if (zone) *zone = '\0';
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, buf + 1, &in6.sin6_addr) == 1)
      return wh_addr_class((struct sockaddr *)&in6);
    return WH_ADDR_RESERVED;
  }
  struct sockaddr_in in;
  memset(&in, 0, sizeof(in));
  in.sin_family = AF_INET;
  if (inet_pton(AF_INET, buf, &in.sin_addr) == 1)
    return wh_addr_class((struct sockaddr *)&in);
  while (n > 0 && buf[n - 1] == '.')
    buf[--n] = '\0';
  if (strcasecmp(buf, "localhost") == 0 ||
      (n > 10 && strcasecmp(buf + n - 10, ".localhost") == 0))
    return WH_ADDR_LOOPBACK;
  return WH_ADDR_PUBLIC;
}

int wh_url_check(const wh_config *cfg, const char *url, const char **why) {
  *why = "The webhook endpoint URL is not valid.";
  size_t n = strlen(url);
  if (n == 0 || n > WH_URL_MAX) {
    *why = "The webhook endpoint URL must be 1 to 2048 bytes long.";
    return -EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
      return -EINVAL; /* spaces, controls, raw non-ASCII */
  CURLU *u = curl_url();
  if (u == NULL) return -ENOMEM;
  int rc = -EINVAL;
  char *scheme = NULL, *host = NULL, *user = NULL, *pass = NULL, *frag = NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
    *why = "The webhook endpoint URL must use http or https.";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
    goto out;
  if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
      curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
    *why = "The webhook endpoint URL must not contain credentials.";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
    *why = "The webhook endpoint URL must not contain a fragment.";
    goto out;
  }
  if (!wh_addr_allowed(cfg, host_class(host))) {
    *why = "The webhook endpoint URL points to a private, loopback or "
           "link-local address, which this server does not deliver to.";
    goto out;
  }
  rc = 0;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(user);
  curl_free(pass);
  curl_free(frag);
  curl_url_cleanup(u);
  return rc;
}
