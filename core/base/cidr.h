/*
 * Address ranges (cidr.c): "10.0.0.0/8", "2001:db8::/32", or a single
 * address, IPv4 and IPv6. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches the IPv4 ranges.
 */
#ifndef BH_CORE_BASE_CIDR_H
#define BH_CORE_BASE_CIDR_H

#include <stddef.h>
#include <stdint.h>

typedef struct bh__cidr {
  int family; /* 4 or 6 */
  int bits;
  uint8_t addr[16];
} bh__cidr;

/* One range from s (n bytes, no spaces). 0 or -EINVAL. */
int bh__cidr_parse(const char *s, size_t n, bh__cidr *out);
/* A comma- or space-separated list into a malloc'ed array (*out, *count);
 * "" gives none. 0, -EINVAL with the offending entry in bad (64 bytes), or
 * -ENOMEM. */
int bh__cidr_list(const char *s, bh__cidr **out, size_t *count, char *bad);
/* Whether the textual address ip (n bytes) lies in one of the ranges.
 * Text that is no address matches nothing. */
int bh__cidr_match(const bh__cidr *list, size_t count, const char *ip,
                   size_t n);

/* The address ip (n bytes; "[v6]" brackets allowed) in canonical text
 * (an IPv4-mapped one as IPv4) into out; 0, or -EINVAL when it is no
 * address or does not fit. */
int bh__ip_canon(const char *ip, size_t n, char *out, size_t outlen);

#endif
