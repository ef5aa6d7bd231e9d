/* core/host/proxy.c: the upstream answer's head as a proxy route relays it
 * (bh__proxy_head_lines): hop-by-hop lines and every name the upstream's
 * Connection lists stay behind, whether that list names only hop-by-hop
 * headers (no per-line scan of it) or more. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "check.h"
#include "host/host.h"

static void relayed(const char *block, const char *want, long long want_len) {
  bh__buf out;
  bh__buf_init(&out);
  long long length = -2;
  CHECK_INT(bh__proxy_head_lines(block, &out, &length), 0);
  CHECK_STR(out.data ? out.data : "", want);
  CHECK_INT(length, want_len);
  bh__buf_free(&out);
}

int main(void) {
  /* the usual answer: Connection names a hop-by-hop header only */
  relayed("content-type: text/plain\r\nconnection: keep-alive\r\n"
          "keep-alive: timeout=5\r\ncontent-length: 5\r\nx-app: 1\r\n"
          "date: Thu, 01 Jan 2026 00:00:00 GMT\r\n",
          "content-type: text/plain\r\nx-app: 1\r\n", 5);
  /* a private hop header named by Connection, before and after it, in
   * any case and among spaces and commas */
  relayed("x-priv: a\r\nconnection: keep-alive, X-Priv\r\nx-app: 1\r\n"
          "x-other: b\r\nconnection: ,x-other \r\n",
          "x-app: 1\r\n", -1);
  /* "close" is not hop-by-hop by itself: a line named so goes when the
   * upstream says Connection: close, as it always did */
  relayed("connection: close\r\nclose: x\r\nx-app: 1\r\n", "x-app: 1\r\n", -1);
  /* Transfer-Encoding overrides the length (both are ours to write);
   * no Connection at all */
  relayed("transfer-encoding: chunked\r\ncontent-length: 5\r\nx-app: 1\r\n",
          "x-app: 1\r\n", -1);
  return check_finish("test_proxy");
}
