/*
 * Address ranges for trusted_proxies: parsed once at load, matched per
 * request against the peer and each X-Forwarded-For hop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/cidr.h"

/* ip (n bytes) as 4 or 16 bytes; 4 or 6, 0 when not an address. A mapped
 * IPv6 address is its IPv4 one. */
static int bh__ip_bytes(const char *ip, size_t n, uint8_t out[16]) {
  char tmp[64];
  if (n == 0 || n >= sizeof(tmp)) return 0;
  memcpy(tmp, ip, n);
  tmp[n] = '\0';
  if (inet_pton(AF_INET, tmp, out) == 1) return 4;
  if (inet_pton(AF_INET6, tmp, out) != 1) return 0;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(out, mapped, 12) == 0) {
    memmove(out, out + 12, 4);
    return 4;
  }
  return 6;
}

int bh__ip_canon(const char *ip, size_t n, char *out, size_t outlen) {
  uint8_t a[16];
  if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
    ip++;
    n -= 2;
  }
  int fam = bh__ip_bytes(ip, n, a);
  if (fam == 0) return -EINVAL;
  if (inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, out, (socklen_t)outlen) ==
      NULL)
    return -EINVAL;
  return 0;
}

int bh__cidr_parse(const char *s, size_t n, bh__cidr *out) {
  const char *slash = memchr(s, '/', n);
  size_t an = slash ? (size_t)(slash - s) : n;
  memset(out, 0, sizeof(*out));
  out->family = bh__ip_bytes(s, an, out->addr);
  if (out->family == 0) return -EINVAL;
  int max = out->family == 4 ? 32 : 128;
  out->bits = max;
  if (slash) {
    const char *b = slash + 1;
    size_t bn = n - an - 1;
    if (bn == 0 || bn > 3) return -EINVAL;
    int v = 0;
    for (size_t i = 0; i < bn; i++) {
      if (b[i] < '0' || b[i] > '9') return -EINVAL;
      v = v * 10 + (b[i] - '0');
    }
    if (v > max) return -EINVAL;
    out->bits = v;
  }
  return 0;
}

int bh__cidr_list(const char *s, bh__cidr **out, size_t *count, char *bad) {
  *out = NULL;
  *count = 0;
  size_t cap = 0;
  while (*s) {
    s += strspn(s, ", \t");
    size_t n = strcspn(s, ", \t");
    if (n == 0) break;
    bh__cidr c;
    if (bh__cidr_parse(s, n, &c) != 0) {
      size_t k = n < 63 ? n : 63;
      memcpy(bad, s, k);
      bad[k] = '\0';
      free(*out);
      *out = NULL;
      *count = 0;
      return -EINVAL;
    }
    if (*count == cap) {
      cap = cap ? cap * 2 : 4;
      bh__cidr *grown = realloc(*out, cap * sizeof(**out));
      if (grown == NULL) {
        free(*out);
        *out = NULL;
        *count = 0;
        return -ENOMEM;
      }
      *out = grown;
    }
    (*out)[(*count)++] = c;
    s += n;
  }
  return 0;
}

static int bh__in_range(const bh__cidr *c, const uint8_t *a) {
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->addr, a, (size_t)full) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (c->addr[full] & mask) == (a[full] & mask);
}

int bh__cidr_match(const bh__cidr *list, size_t count, const char *ip,
                   size_t n) {
  if (count == 0) return 0;
  uint8_t a[16];
  int fam = bh__ip_bytes(ip, n, a);
  if (fam == 0) return 0;
  for (size_t i = 0; i < count; i++)
    if (list[i].family == fam && bh__in_range(&list[i], a)) return 1;
  return 0;
}
