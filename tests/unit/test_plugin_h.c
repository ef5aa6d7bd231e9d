/* The SDK's header-only helpers (include/bulkhead/plugin.h):
 * bh_path_append_segment builds an upstream path from untrusted segments. */
#include <bulkhead/plugin.h>
#include <errno.h>
#include <string.h>

#include "check.h"

static void test_encoding(void) {
  char p[128] = "";
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "v1"), 0);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "a b%c"), 0);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "AZaz09-._~"), 0);
  CHECK_STR(p, "/v1/a%20b%25c/AZaz09-._~");
  p[0] = '\0';
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "../../__sim/requests?x#y"),
            0);
  CHECK_STR(p, "/..%2F..%2F__sim%2Frequests%3Fx%23y");
  p[0] = '\0';
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "\\\r\n\t\x7f\xc3\xa9;=@:"),
            0);
  CHECK_STR(p, "/%5C%0D%0A%09%7F%C3%A9%3B%3D%40%3A");
  p[0] = '\0';
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "..."), 0);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), ".x"), 0);
  CHECK_STR(p, "/.../.x");
}

static void test_refusals(void) {
  char p[16] = "/base";
  CHECK_INT(bh_path_append_segment(p, sizeof(p), ""), -EINVAL);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "."), -EINVAL);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), ".."), -EINVAL);
  CHECK_INT(bh_path_append_segment(p, sizeof(p), NULL), -EINVAL);
  CHECK_INT(bh_path_append_segment(NULL, sizeof(p), "x"), -EINVAL);
  CHECK_STR(p, "/base");
  /* "/base" + "/abcdefghi" is 15 bytes: fits with its NUL in 16 */
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "abcdefghij"), -ENOSPC);
  CHECK_STR(p, "/base");
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "abcdefghi"), 0);
  CHECK_STR(p, "/base/abcdefghi");
  CHECK_INT(bh_path_append_segment(p, sizeof(p), "x"), -ENOSPC);
  char q[8] = "/ab";
  /* bytes that become three each: "/ab" + "/%20%20" and a NUL is 11 */
  CHECK_INT(bh_path_append_segment(q, sizeof(q), "  "), -ENOSPC);
  CHECK_INT(bh_path_append_segment(q, 0, "x"), -EINVAL);
  char full[4] = {'a', 'b', 'c', 'd'}; /* no NUL within cap */
  CHECK_INT(bh_path_append_segment(full, sizeof(full), "x"), -EINVAL);
  CHECK_STR(q, "/ab");
  /* exactly full: "/ab" + "/%20" and its NUL are 8 */
  CHECK_INT(bh_path_append_segment(q, sizeof(q), " "), 0);
  CHECK_STR(q, "/ab/%20");
}

int main(void) {
  test_encoding();
  test_refusals();
  return check_finish("test_plugin_h");
}
