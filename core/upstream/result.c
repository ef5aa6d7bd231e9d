/*
 * Reading a call's answer head: the lines a call gathered (lower-cased
 * names, "name: value\r\n", bh__upstream_head_field) and one header's
 * value from them, for plugins (upstream_header / upstream_header_get)
 * and the error map.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "upstream/client.h"
#include "upstream/upstream.h"

const char *bh__call_headers(bh__call *call) {
  return call->resp_headers.data ? call->resp_headers.data : "";
}

/* The value of header `name` in res's head block: 0 with [*v, *v + *vl),
 * or -ENOENT. */
static int bh__result_header_find(const bh_upstream_result *res,
                                  const char *name, const char **v,
                                  size_t *vl) {
  bh__call *call = ((const bh__result *)(const void *)res)->call;
  size_t nl = strlen(name);
  const char *s = bh__call_headers(call);
  while (*s) {
    const char *eol = strstr(s, "\r\n");
    if (eol == NULL) break;
    if ((size_t)(eol - s) > nl + 1 && strncasecmp(s, name, nl) == 0 &&
        s[nl] == ':') {
      *v = s + nl + 2;
      *vl = (size_t)(eol - *v);
      return 0;
    }
    s = eol + 2;
  }
  return -ENOENT;
}

const char *bh__result_header(const bh_upstream_result *res, const char *name) {
  static __thread char value[1024];
  int n = bh__result_header_copy(res, name, value, sizeof(value));
  return n < 0 ? NULL : value;
}

int bh__result_header_copy(const bh_upstream_result *res, const char *name,
                           char *buf, size_t buflen) {
  const char *v;
  size_t vl;
  if (bh__result_header_find(res, name, &v, &vl) != 0) return -ENOENT;
  if (vl > INT_MAX) vl = INT_MAX;
  if (buflen) {
    size_t k = vl < buflen - 1 ? vl : buflen - 1;
    memcpy(buf, v, k);
    buf[k] = '\0';
  }
  return (int)vl;
}

int bh__result_malformed(const bh_upstream_result *res) {
  return ((const bh__result *)(const void *)res)->malformed;
}
