/* bh__upstream_head_line: what of an upstream answer's head may be relayed
 * (status lines, field names that are tokens, values without control bytes
 * but HTAB), and the "name: value\r\n" block it builds. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "upstream/upstream.h"

static int line(bh__buf *b, const char *s) {
  return bh__upstream_head_line(b, s, strlen(s));
}

/* The block after feeding `s` alone to a fresh buffer, or NULL on refusal. */
static void check_one(const char *s, int want_rc, const char *want_block) {
  bh__buf b;
  bh__buf_init(&b);
  int rc = line(&b, s);
  CHECK_INT(rc, want_rc);
  if (rc == 0 && want_block) CHECK_STR(b.data ? b.data : "", want_block);
  bh__buf_free(&b);
}

static void test_status_lines(void) {
  check_one("HTTP/1.1 200 OK\r\n", 0, "");
  check_one("HTTP/1.0 404 Not Found\n", 0, "");
  check_one("HTTP/2 200 \r\n", 0, "");
  check_one("HTTP/1.1 204\r\n", 0, "");
  check_one("HTTP/1.1 599 x\ty\r\n", 0, "");
  check_one("HTTP/1.1 199 \x80\xff\r\n", 0, "");
  check_one("HTTP/1.1 600 Nope\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 099 Nope\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 20 OK\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 2000 OK\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 200OK\r\n", -EPROTO, NULL);
  check_one("HTTP/ 200 OK\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1  200 OK\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 200 O\rK\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 200 O\x01K\r\n", -EPROTO, NULL);
  check_one("HTTP/1.1 200 OK\r\r\n", -EPROTO, NULL);
}

static void test_fields(void) {
  check_one("Content-Type: text/plain\r\n", 0, "content-type: text/plain\r\n");
  check_one("X-A:   spaced  \t\r\n", 0, "x-a: spaced\r\n");
  check_one("X-Tab: a\tb\r\n", 0, "x-tab: a\tb\r\n");
  check_one("X-Empty:\r\n", 0, "x-empty: \r\n");
  check_one("X-Obs: caf\xc3\xa9\r\n", 0, "x-obs: caf\xc3\xa9\r\n");
  check_one("X-Lf-Only: v\n", 0, "x-lf-only: v\r\n");
  check_one("!#$%&'*+-.^_`|~09az: tchars\r\n", 0,
            "!#$%&'*+-.^_`|~09az: tchars\r\n");
  check_one("\r\n", 0, "");
  check_one("\n", 0, "");
}

static void test_refusals(void) {
  check_one("X-A: foo\rSet-Cookie: injected=1\r\n", -EPROTO, NULL);
  check_one("X-A: foo\r\r\n", -EPROTO, NULL);
  check_one("X-A: a\nb\r\n", -EPROTO, NULL);
  check_one("X-A: a\x01\r\n", -EPROTO, NULL);
  check_one("X-A: a\x1f\r\n", -EPROTO, NULL);
  check_one("X-A: a\x7f\r\n", -EPROTO, NULL);
  check_one("Bad Name: x\r\n", -EPROTO, NULL);
  check_one("X-A : x\r\n", -EPROTO, NULL);
  check_one(": x\r\n", -EPROTO, NULL);
  check_one(" folded\r\n", -EPROTO, NULL);
  check_one("\tfolded: x\r\n", -EPROTO, NULL);
  check_one("NoColon\r\n", -EPROTO, NULL);
  check_one("X\"A: x\r\n", -EPROTO, NULL);
  check_one("X(A): x\r\n", -EPROTO, NULL);
  check_one("X\x80: x\r\n", -EPROTO, NULL);
  /* a NUL inside the line (the length says it is there) */
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__upstream_head_line(&b, "X-A: a\0b\r\n", 10), -EPROTO);
  CHECK_INT(bh__upstream_head_line(&b, "X\0A: ab\r\n", 9), -EPROTO);
  bh__buf_free(&b);
}

static void test_sequence(void) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(line(&b, "HTTP/1.1 100 Continue\r\n"), 0);
  CHECK_INT(line(&b, "X-Interim: 1\r\n"), 0);
  CHECK_INT(line(&b, "\r\n"), 0);
  /* the final answer starts a new block */
  CHECK_INT(line(&b, "HTTP/1.1 200 OK\r\n"), 0);
  CHECK_INT(line(&b, "Content-Length: 2\r\n"), 0);
  CHECK_INT(line(&b, "SET-COOKIE: a=b\r\n"), 0);
  CHECK_INT(line(&b, "\r\n"), 0);
  CHECK_STR(b.data, "content-length: 2\r\nset-cookie: a=b\r\n");
  bh__buf_free(&b);
}

/* Every byte value at every position of a value long enough to be checked
 * a word at a time: the word path refuses and accepts what the byte rule
 * does, and a refused field leaves the block as it was. */
static void test_value_bytes(void) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(line(&b, "X-Kept: 1\r\n"), 0);
  int wrong = 0;
  for (int c = 0; c < 256; c++) {
    int good = c == '\t' || (c >= 0x20 && c != 0x7f);
    /* inside the value: not OWS, not the line end */
    for (size_t pos = 1; pos < 18; pos++) {
      char v[] = "X-V: abcdefghijklmnopqrs";
      v[5 + pos] = (char)c;
      size_t before = b.len;
      int rc = bh__upstream_head_line(&b, v, sizeof(v) - 1);
      if (rc != (good ? 0 : -EPROTO)) wrong++;
      if (rc != 0 && b.len != before) wrong++;
      b.len = before;
      b.data[before] = '\0';
    }
  }
  CHECK_INT(wrong, 0);
  CHECK_INT(line(&b, "Bad Name: x\r\n"), -EPROTO);
  CHECK_STR(b.data, "x-kept: 1\r\n");
  bh__buf_free(&b);
}

int main(void) {
  test_status_lines();
  test_fields();
  test_refusals();
  test_sequence();
  test_value_bytes();
  return check_finish("test_upstream");
}
