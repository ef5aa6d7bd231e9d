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
 * allowed_ports bounds the ports both checks accept: a public address of
 * the gateway's own host would otherwise reach whatever listens there.
 *
 * The caller learns only webhooks.invalid_url with its generic detail:
 * telling why (private, loopback, port...) would let a caller map what the
 * checks let through. The cause goes to the log (wh_api.c).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "wh.h"

#define WH_URL_MAX 2048

static int v4_class(uint32_t a) {
  uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16),
          b2 = (uint8_t)(a >> 8);
  if (b0 == 127) return WH_ADDR_LOOPBACK;
  if (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) ||
      (b0 == 192 && b1 == 168) || (b0 == 100 && (b1 & 0xc0) == 64))
    return WH_ADDR_PRIVATE;
  if (b0 == 169 && b1 == 254) return WH_ADDR_LINK_LOCAL;
  if (b0 == 0 || b0 >= 224 || (b0 == 192 && b1 == 0 && b2 == 0) ||
      (b0 == 198 && (b1 & 0xfe) == 18) ||
      /* documentation: 192.0.2/24, 198.51.100/24, 203.0.113/24 */
      (b0 == 192 && b1 == 0 && b2 == 2) ||
      (b0 == 198 && b1 == 51 && b2 == 100) ||
      (b0 == 203 && b1 == 0 && b2 == 113))
    return WH_ADDR_RESERVED;
  return WH_ADDR_PUBLIC;
}

static uint32_t v4_at(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

/* How strict a class is when an address could mean several IPv4
 * addresses: reserved is never allowed, so it wins; public loses. */
static int strictness(int cls) {
  switch (cls) {
  case WH_ADDR_RESERVED: return 4;
  case WH_ADDR_LOOPBACK: return 3;
  case WH_ADDR_LINK_LOCAL: return 2;
  case WH_ADDR_PRIVATE: return 1;
  default: return 0;
  }
}

int wh_port_allowed(const wh_config *cfg, int port) {
  if (port <= 0 || port > 65535) return 0;
  return cfg->any_port || (cfg->port_ok[port >> 3] >> (port & 7)) & 1;
}

int wh_ports_parse(wh_config *cfg, const char *v) {
  memset(cfg->port_ok, 0, sizeof(cfg->port_ok));
  cfg->any_port = 0;
  while (*v == ' ' || *v == '\t')
    v++;
  if (strcasecmp(v, "any") == 0) {
    cfg->any_port = 1;
    return 0;
  }
  int n = 0;
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0') break;
    char *end;
    errno = 0;
    long lo = strtol(p, &end, 10), hi = lo;
    if (errno || end == p) return -EINVAL;
    if (*end == '-') {
      p = end + 1;
      hi = strtol(p, &end, 10);
      if (errno || end == p) return -EINVAL;
    }
    if (lo < 1 || hi > 65535 || lo > hi) return -EINVAL;
    if (*end && *end != ',' && *end != ' ' && *end != '\t') return -EINVAL;
    for (long i = lo; i <= hi; i++)
      cfg->port_ok[i >> 3] |= (unsigned char)(1u << (i & 7));
    n++;
    p = end;
  }
  return n > 0 ? 0 : -EINVAL;
}

/* 64:ff9b:1::/48 (RFC 8215, local-use NAT64): the operator picks the
 * prefix length (48 to 96), which moves the IPv4 address (RFC 6052 2.2:
 * bits 64-71 are never part of it). Not knowing which, every position is
 * read and the strictest class wins. */
static int nat64_local_class(const unsigned char *b) {
  const unsigned char at[4][4] = {{b[6], b[7], b[9], b[10]},   /* /48 */
                                  {b[7], b[9], b[10], b[11]},  /* /56 */
                                  {b[9], b[10], b[11], b[12]}, /* /64 */
                                  {b[12], b[13], b[14], b[15]}};
  int cls = WH_ADDR_PUBLIC;
  for (int i = 0; i < 4; i++) {
    int c = v4_class(v4_at(at[i]));
    if (strictness(c) > strictness(cls)) cls = c;
  }
  return cls;
}

static int v6_class(const unsigned char *b) {
  static const unsigned char loop[16] = {[15] = 1};
  static const unsigned char any[16] = {0};
  /* ::ffff:0:0/96, IPv4-mapped */
  static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
  /* ::ffff:0:0:0/96, IPv4-translated (SIIT) */
  static const unsigned char translated[12] = {[8] = 0xff, [9] = 0xff};
  /* 64:ff9b::/96, the well-known NAT64 prefix */
  static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
  static const unsigned char nat64_local[6] = {0x00, 0x64, 0xff,
                                               0x9b, 0x00, 0x01};
  static const unsigned char discard[8] = {0x01, 0x00}; /* 100::/64 */
  if (memcmp(b, loop, 16) == 0) return WH_ADDR_LOOPBACK;
  if (memcmp(b, any, 16) == 0) return WH_ADDR_RESERVED;
  /* an IPv4 address in IPv6 clothing is judged as the IPv4 address: a
   * host (or its NAT64 / 6to4 gateway) reaches that IPv4 address; ::/96
   * is the deprecated IPv4-compatible form */
  if (memcmp(b, mapped, 12) == 0 || memcmp(b, translated, 12) == 0 ||
      memcmp(b, nat64, 12) == 0 || memcmp(b, any, 12) == 0)
    return v4_class(v4_at(b + 12));
  if (memcmp(b, nat64_local, 6) == 0) return nat64_local_class(b);
  if (b[0] == 0x20 && b[1] == 0x02) return v4_class(v4_at(b + 2)); /* 6to4 */
  /* Teredo, 2001::/32: tunnels to an address we cannot judge */
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
    return WH_ADDR_RESERVED;
  if (memcmp(b, discard, 8) == 0) return WH_ADDR_RESERVED;
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

static const char *class_why(int cls) {
  switch (cls) {
  case WH_ADDR_LOOPBACK: return "the host is a loopback address or name";
  case WH_ADDR_PRIVATE: return "the host is a private address";
  case WH_ADDR_LINK_LOCAL: return "the host is a link-local address";
  default: return "the host is a reserved address";
  }
}

int wh_url_check(const wh_config *cfg, const char *url, const char **why) {
  *why = "it is not a URL";
  size_t n = strlen(url);
  if (n == 0 || n > WH_URL_MAX) {
    *why = "it is empty or longer than 2048 bytes";
    return -EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
      *why = "it holds a space, a control or a non-ASCII byte";
      return -EINVAL;
    }
  CURLU *u = curl_url();
  if (u == NULL) return -ENOMEM;
  int rc = -EINVAL;
  char *scheme = NULL, *host = NULL, *user = NULL, *pass = NULL, *frag = NULL,
       *port = NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
    *why = "the scheme is not http or https";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
    *why = "it has no host";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
      curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
    *why = "it holds credentials";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
    *why = "it holds a fragment";
    goto out;
  }
  if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
      !wh_port_allowed(cfg, atoi(port))) {
    *why = "its port is not in allowed_ports";
    goto out;
  }
  int cls = host_class(host);
  if (!wh_addr_allowed(cfg, cls)) {
    *why = class_why(cls);
    goto out;
  }
  rc = 0;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(user);
  curl_free(pass);
  curl_free(frag);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}
