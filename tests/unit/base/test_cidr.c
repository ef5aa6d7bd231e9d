/* base/cidr.c: trusted_proxies ranges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/cidr.h"
#include "check.h"

static int in(const bh__cidr *l, size_t n, const char *ip) {
  return bh__cidr_match(l, n, ip, strlen(ip));
}

static void test_list(void) {
  bh__cidr *l;
  size_t n;
  char bad[64];
  CHECK_INT(
      bh__cidr_list("10.0.0.0/8, 192.168.1.7 ::1,2001:db8::/32", &l, &n, bad),
      0);
  CHECK_INT(n, 4);
  CHECK(in(l, n, "10.1.2.3"));
  CHECK(!in(l, n, "11.1.2.3"));
  CHECK(in(l, n, "192.168.1.7"));
  CHECK(!in(l, n, "192.168.1.8"));
  CHECK(in(l, n, "::1"));
  CHECK(in(l, n, "::ffff:10.9.9.9")); /* mapped: the IPv4 ranges */
  CHECK(in(l, n, "2001:db8:1::5"));
  CHECK(!in(l, n, "2001:db9::5"));
  CHECK(!in(l, n, "not-an-ip"));
  CHECK(!in(l, n, ""));
  free(l);
  CHECK_INT(bh__cidr_list("", &l, &n, bad), 0);
  CHECK_INT(n, 0);
  CHECK_INT(bh__cidr_list("10.0.0.0/33", &l, &n, bad), -EINVAL);
  CHECK_STR(bad, "10.0.0.0/33");
  CHECK_INT(bh__cidr_list("1.2.3.4, example.com", &l, &n, bad), -EINVAL);
  CHECK_STR(bad, "example.com");
  CHECK_INT(bh__cidr_list("::/129", &l, &n, bad), -EINVAL);
  CHECK_INT(bh__cidr_list("1.2.3.4/", &l, &n, bad), -EINVAL);
  CHECK_INT(bh__cidr_list("0.0.0.0/0", &l, &n, bad), 0);
  CHECK(in(l, n, "203.0.113.9"));
  CHECK(!in(l, n, "2001:db8::1"));
  free(l);
  CHECK_INT(bh__cidr_list("10.0.0.0/12", &l, &n, bad), 0);
  CHECK(in(l, n, "10.15.255.255"));
  CHECK(!in(l, n, "10.16.0.0"));
  free(l);
}

static void test_canon(void) {
  char out[64];
  CHECK_INT(bh__ip_canon("[::1]", 5, out, sizeof(out)), 0);
  CHECK_STR(out, "::1");
  CHECK_INT(bh__ip_canon("::ffff:1.2.3.4", 14, out, sizeof(out)), 0);
  CHECK_STR(out, "1.2.3.4");
  CHECK_INT(bh__ip_canon("2001:DB8:0:0::1", 15, out, sizeof(out)), 0);
  CHECK_STR(out, "2001:db8::1");
  CHECK_INT(bh__ip_canon("1.2.3.4:80", 10, out, sizeof(out)), -EINVAL);
  CHECK_INT(bh__ip_canon("", 0, out, sizeof(out)), -EINVAL);
}

int main(void) {
  test_list();
  test_canon();
  return check_finish("test_cidr");
}
