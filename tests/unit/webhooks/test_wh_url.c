/*
 * The webhooks plugin's address classes, ports and URL check (SSRF):
 * IPv4 inside IPv6 (mapped, translated, NAT64 well-known and local-use,
 * 6to4) is judged as the IPv4 address, Teredo and other special ranges are
 * reserved, allowed_ports parses and bounds both checks, and every refusal
 * names its cause for the log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"

/* the plugin's file itself: a plugin is not linked into bhcore (found
 * through the tests/unit include path) */
#include "../../plugins/webhooks/wh_url.c"

static int cls(const char *addr) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
  } else {
    fprintf(stderr, "bad test address %s\n", addr);
    return -1;
  }
  return wh_addr_class((struct sockaddr *)&ss);
}

#define CLASS(addr, want)                                                      \
  do {                                                                         \
    int got_ = cls(addr);                                                      \
    check_count++;                                                             \
    if (got_ != (want)) {                                                      \
      check_failures++;                                                        \
      fprintf(stderr, "%s:%d: class of %s is %d, expected %d (%s)\n",          \
              __FILE__, __LINE__, addr, got_, want, #want);                    \
    }                                                                          \
  } while (0)

static void test_ipv4(void) {
  CLASS("8.8.8.8", WH_ADDR_PUBLIC);
  CLASS("127.0.0.1", WH_ADDR_LOOPBACK);
  CLASS("127.255.1.2", WH_ADDR_LOOPBACK);
  CLASS("10.1.2.3", WH_ADDR_PRIVATE);
  CLASS("172.16.0.1", WH_ADDR_PRIVATE);
  CLASS("172.32.0.1", WH_ADDR_PUBLIC);
  CLASS("192.168.0.1", WH_ADDR_PRIVATE);
  CLASS("100.64.0.1", WH_ADDR_PRIVATE);
  CLASS("169.254.169.254", WH_ADDR_LINK_LOCAL);
  CLASS("0.0.0.0", WH_ADDR_RESERVED);
  CLASS("224.0.0.1", WH_ADDR_RESERVED);
  CLASS("255.255.255.255", WH_ADDR_RESERVED);
  CLASS("192.0.0.8", WH_ADDR_RESERVED);
  CLASS("192.0.2.1", WH_ADDR_RESERVED);
  CLASS("198.51.100.7", WH_ADDR_RESERVED);
  CLASS("203.0.113.9", WH_ADDR_RESERVED);
  CLASS("198.18.0.1", WH_ADDR_RESERVED);
}

static void test_ipv6_plain(void) {
  CLASS("2606:4700::1111", WH_ADDR_PUBLIC);
  CLASS("::1", WH_ADDR_LOOPBACK);
  CLASS("::", WH_ADDR_RESERVED);
  CLASS("fd00::1", WH_ADDR_PRIVATE);
  CLASS("fe80::1", WH_ADDR_LINK_LOCAL);
  CLASS("ff02::1", WH_ADDR_RESERVED);
  CLASS("2001:db8::1", WH_ADDR_RESERVED);
  CLASS("100::1", WH_ADDR_RESERVED);     /* discard-only */
  CLASS("100:0:0:1::1", WH_ADDR_PUBLIC); /* outside 100::/64 */
}

static void test_ipv4_in_ipv6(void) {
  /* ::ffff:0:0/96, mapped */
  CLASS("::ffff:127.0.0.1", WH_ADDR_LOOPBACK);
  CLASS("::ffff:10.0.0.1", WH_ADDR_PRIVATE);
  CLASS("::ffff:169.254.169.254", WH_ADDR_LINK_LOCAL);
  CLASS("::ffff:8.8.8.8", WH_ADDR_PUBLIC);
  CLASS("::ffff:0:0", WH_ADDR_RESERVED);
  /* ::ffff:0:0:0/96, translated */
  CLASS("::ffff:0:127.0.0.1", WH_ADDR_LOOPBACK);
  CLASS("::ffff:0:8.8.8.8", WH_ADDR_PUBLIC);
  /* ::/96, IPv4-compatible (deprecated) */
  CLASS("::127.0.0.1", WH_ADDR_LOOPBACK);
  CLASS("::10.0.0.1", WH_ADDR_PRIVATE);
  /* 64:ff9b::/96, NAT64 well-known */
  CLASS("64:ff9b::127.0.0.1", WH_ADDR_LOOPBACK);
  CLASS("64:ff9b::a9fe:a9fe", WH_ADDR_LINK_LOCAL);
  CLASS("64:ff9b::192.168.1.1", WH_ADDR_PRIVATE);
  CLASS("64:ff9b::8.8.8.8", WH_ADDR_PUBLIC);
  /* 64:ff9b:1::/48, NAT64 local-use: every RFC 6052 position */
  CLASS("64:ff9b:1::127.0.0.1", WH_ADDR_RESERVED); /* /96; 0.0.0.0 at /48 */
  CLASS("64:ff9b:1:7f00:1::", WH_ADDR_RESERVED);   /* /48 127.0.0.1 */
  /* 8.8.8.8 at /48, 10.8.8.8 at /96 */
  CLASS("64:ff9b:1:808:8:808:a08:808", WH_ADDR_PRIVATE);
  /* 8.8.8.8 at /48, /56, /64, 127.8.8.8 at /96 */
  CLASS("64:ff9b:1:808:8:808:7f08:808", WH_ADDR_LOOPBACK);
  /* 169.254.x at /64 only */
  CLASS("64:ff9b:1:808:a9:fe08:808:808", WH_ADDR_LINK_LOCAL);
  /* public at every position */
  CLASS("64:ff9b:1:808:8:808:808:808", WH_ADDR_PUBLIC);
  /* outside the /48: an ordinary (public) address */
  CLASS("64:ff9b:2::7f00:1", WH_ADDR_PUBLIC);
  /* 2002::/16, 6to4: the IPv4 address in bits 16-47 */
  CLASS("2002:7f00:1::1", WH_ADDR_LOOPBACK);
  CLASS("2002:a00:1::", WH_ADDR_PRIVATE);
  CLASS("2002:a9fe:a9fe::1", WH_ADDR_LINK_LOCAL);
  CLASS("2002:808:808::1", WH_ADDR_PUBLIC);
  CLASS("2002::1", WH_ADDR_RESERVED); /* 0.0.0.0 */
  /* 2001::/32, Teredo: reserved whatever it embeds */
  CLASS("2001::1", WH_ADDR_RESERVED);
  CLASS("2001:0:4136:e378:8000:63bf:3fff:fdd2", WH_ADDR_RESERVED);
  CLASS("2001:1::1", WH_ADDR_PUBLIC); /* outside 2001::/32 */
}

static void test_ports(void) {
  wh_config c;
  memset(&c, 0, sizeof(c));
  CHECK_INT(wh_ports_parse(&c, "80, 443"), 0);
  CHECK(wh_port_allowed(&c, 80));
  CHECK(wh_port_allowed(&c, 443));
  CHECK(!wh_port_allowed(&c, 22));
  CHECK(!wh_port_allowed(&c, 8080));
  CHECK(!wh_port_allowed(&c, 0));
  CHECK(!wh_port_allowed(&c, 65536));
  CHECK_INT(wh_ports_parse(&c, "443,8000-8999 65535"), 0);
  CHECK(!wh_port_allowed(&c, 80)); /* a new value replaces the old */
  CHECK(wh_port_allowed(&c, 8000));
  CHECK(wh_port_allowed(&c, 8999));
  CHECK(!wh_port_allowed(&c, 9000));
  CHECK(wh_port_allowed(&c, 65535));
  CHECK_INT(wh_ports_parse(&c, "ANY"), 0);
  CHECK(wh_port_allowed(&c, 22));
  CHECK(!wh_port_allowed(&c, 0));
  const char *bad[] = {"",      " ",       "0",    "65536",  "80-", "-80",
                       "90-80", "80 - 90", "http", "80;443", "1e3", "443x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = wh_ports_parse(&c, bad[i]);
    check_count++;
    if (rc != -EINVAL) {
      check_failures++;
      fprintf(stderr, "allowed_ports '%s' accepted\n", bad[i]);
    }
  }
}

static int url(const wh_config *c, const char *u, const char *want_why) {
  const char *why = NULL;
  int rc = wh_url_check(c, u, &why);
  if (want_why == NULL) {
    check_count++;
    if (rc != 0) {
      check_failures++;
      fprintf(stderr, "URL %s refused: %s\n", u, why ? why : "?");
    }
    return rc;
  }
  check_count++;
  if (rc != -EINVAL || why == NULL || strstr(why, want_why) == NULL) {
    check_failures++;
    fprintf(stderr, "URL %s: rc %d, why '%s', expected '%s'\n", u, rc,
            why ? why : "(null)", want_why);
  }
  return rc;
}

static void test_url_check(void) {
  wh_config c;
  memset(&c, 0, sizeof(c));
  CHECK_INT(wh_ports_parse(&c, "80, 443"), 0);
  url(&c, "https://hooks.example.com/in", NULL);
  url(&c, "http://hooks.example.com:80/in", NULL);
  url(&c, "https://hooks.example.com:8443/in", "port");
  url(&c, "http://hooks.example.com:22/", "port");
  url(&c, "https://[2606:4700::1111]/x", NULL);
  url(&c, "http://[::ffff:127.0.0.1]/x", "loopback");
  url(&c, "http://[64:ff9b::a00:1]/x", "private");
  url(&c, "http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "link-local");
  url(&c, "http://[64:ff9b:1:7f00:1::]/x", "reserved");
  url(&c, "http://[2002:a9fe:a9fe::]/x", "link-local");
  url(&c, "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", "reserved");
  url(&c, "http://127.0.0.1/x", "loopback");
  url(&c, "http://localhost/x", "loopback");
  url(&c, "ftp://example.com/x", "scheme");
  url(&c, "https://u:p@example.com/x", "credentials");
  url(&c, "https://example.com/#f", "fragment");
  url(&c, "https://exa mple.com/", "space");
  url(&c, "", "empty");
  url(&c, "http://", "URL");
  /* the classes the config allows, ports still bounded */
  c.allow_loopback = 1;
  url(&c, "http://127.0.0.1/x", NULL);
  url(&c, "http://[::ffff:127.0.0.1]/x", NULL);
  url(&c, "http://127.0.0.1:9090/admin", "port");
  url(&c, "http://[2001::1]/x", "reserved"); /* never allowed */
  CHECK_INT(wh_ports_parse(&c, "any"), 0);
  url(&c, "http://127.0.0.1:9090/x", NULL);
}

int main(void) {
  test_ipv4();
  test_ipv6_plain();
  test_ipv4_in_ipv6();
  test_ports();
  test_url_check();
  return check_finish("test_wh_url");
}
