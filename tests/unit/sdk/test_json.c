/* The SDK's JSON writer (include/bulkhead/json.h): escaping, UTF-8,
 * nesting, limits, misuse; and the same string rule as the core's own
 * encoder (base/buf.c), byte for byte. */
#include <bulkhead/plugin.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "check.h"

/* The text of one string value through the writer. */
static const char *w_str(const char *s, size_t n) {
  static char out[512];
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_strn(&j, s, n);
  size_t len = 0;
  const char *t = bh_json_done(&j, &len);
  snprintf(out, sizeof(out), "%s", t ? t : "(failed)");
  CHECK(t == NULL || strlen(t) == len);
  bh_json_free(&j);
  return out;
}

static void test_escaping(void) {
  CHECK_STR(w_str("plain", 5), "\"plain\"");
  CHECK_STR(w_str("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
  CHECK_STR(w_str("\n\r\t\b\f", 5), "\"\\n\\r\\t\\u0008\\u000c\"");
  CHECK_STR(w_str("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
  CHECK_STR(w_str("</script>&", 10), "\"\\u003c/script\\u003e\\u0026\"");
  CHECK_STR(w_str("a\0b", 3), "\"a\\u0000b\"");
  CHECK_STR(w_str("", 0), "\"\"");
}

static void test_utf8(void) {
  /* valid sequences of every length pass through */
  CHECK_STR(w_str("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9),
            "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  CHECK_STR(w_str("\xf4\x8f\xbf\xbf", 4), "\"\xf4\x8f\xbf\xbf\""); /* max */
  /* each ill-formed byte becomes \ufffd */
  CHECK_STR(w_str("x\x80y", 3), "\"x\\ufffdy\"");        /* stray */
  CHECK_STR(w_str("\xc0\xaf", 2), "\"\\ufffd\\ufffd\""); /* overlong */
  CHECK_STR(w_str("\xe0\x80\xaf", 3), "\"\\ufffd\\ufffd\\ufffd\"");
  CHECK_STR(w_str("\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\""); /* surr. */
  CHECK_STR(w_str("\xf4\x90\x80\x80", 4),
            "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");         /* > U+10FFFF */
  CHECK_STR(w_str("\xe2\x82", 2), "\"\\ufffd\\ufffd\""); /* truncated */
  CHECK_STR(w_str("\xff\xfe", 2), "\"\\ufffd\\ufffd\"");
  CHECK_STR(w_str("\xe2\x82z", 3), "\"\\ufffd\\ufffdz\"");
}

/* Every string of a corpus, and random bytes, encode as the core does. */
static void test_same_rule_as_core(void) {
  uint32_t x = 12345;
  for (int round = 0; round < 2000; round++) {
    unsigned char s[24];
    size_t n = (size_t)(round % 24);
    for (size_t i = 0; i < n; i++) {
      x = x * 1103515245u + 12345u;
      unsigned v = (x >> 16) & 0xff;
      /* favour the interesting bytes */
      static const unsigned char pick[] = {'"',  '\\', '<',  '>',  '&',
                                           0x00, 0x1f, 0x7f, 0x80, 0xbf,
                                           0xc2, 0xe0, 0xed, 0xf0, 0xf4};
      s[i] = (x & 1) ? (unsigned char)v : pick[v % sizeof(pick)];
    }
    bh__buf b;
    bh__buf_init(&b);
    bh__buf_json_strn(&b, (const char *)s, n);
    bh__buf_putc(&b, '\0');
    const char *w = w_str((const char *)s, n);
    check_count++;
    if (strcmp(w, b.data) != 0) {
      check_failures++;
      fprintf(stderr, "round %d: writer %s, core %s\n", round, w, b.data);
    }
    bh__buf_free(&b);
  }
}

static void test_nesting(void) {
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kstr(&j, "name", "x\"y");
  bh_json_kstr(&j, "none", NULL);
  bh_json_kint(&j, "min", INT64_MIN);
  bh_json_kint(&j, "neg", -7);
  bh_json_kuint(&j, "max", UINT64_MAX);
  bh_json_kbool(&j, "t", 1);
  bh_json_kbool(&j, "f", 0);
  bh_json_knull(&j, "n");
  bh_json_karr(&j, "list");
  bh_json_int(&j, 0);
  bh_json_obj(&j);
  bh_json_end(&j);
  bh_json_arr(&j);
  bh_json_end(&j);
  bh_json_obj(&j);
  bh_json_kraw(&j, "raw", "{\"a\":[1,2]}");
  bh_json_end(&j);
  bh_json_end(&j);
  bh_json_kstrn(&j, "cut", "abcdef", 3);
  CHECK_INT(bh_json_end(&j), 0);
  size_t len;
  const char *t = bh_json_done(&j, &len);
  CHECK_STR(t, "{\"name\":\"x\\\"y\",\"none\":null,"
               "\"min\":-9223372036854775808,\"neg\":-7,"
               "\"max\":18446744073709551615,\"t\":true,\"f\":false,"
               "\"n\":null,\"list\":[0,{},[],{\"raw\":{\"a\":[1,2]}}],"
               "\"cut\":\"abc\"}");
  CHECK_INT(len, t ? strlen(t) : 0);
  bh_json_free(&j);

  /* a scalar top level, and an empty array */
  bh_json_init(&j, 0);
  bh_json_int(&j, 42);
  CHECK_STR(bh_json_done(&j, NULL), "42");
  bh_json_free(&j);
  bh_json_init(&j, 0);
  bh_json_arr(&j);
  bh_json_end(&j);
  CHECK_STR(bh_json_done(&j, NULL), "[]");
  bh_json_free(&j);

  /* as deep as allowed, and one more */
  bh_json_init(&j, 0);
  for (int i = 0; i < BH_JSON_MAX_DEPTH; i++)
    CHECK_INT(bh_json_arr(&j), 0);
  CHECK_INT(bh_json_arr(&j), -E2BIG);
  CHECK(bh_json_done(&j, NULL) == NULL);
  bh_json_free(&j);
}

static void test_misuse(void) {
  bh_json j;
  /* a value where a key is due */
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  CHECK_INT(bh_json_int(&j, 1), -EINVAL);
  /* sticky: nothing more is written */
  CHECK_INT(bh_json_kint(&j, "a", 1), -EINVAL);
  CHECK(bh_json_done(&j, NULL) == NULL);
  bh_json_free(&j);
  /* a key in an array, a key after a key, a close with a key pending */
  bh_json_init(&j, 0);
  bh_json_arr(&j);
  CHECK_INT(bh_json_key(&j, "a"), -EINVAL);
  bh_json_free(&j);
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_key(&j, "a");
  CHECK_INT(bh_json_key(&j, "b"), -EINVAL);
  bh_json_free(&j);
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_key(&j, "a");
  CHECK_INT(bh_json_end(&j), -EINVAL);
  bh_json_free(&j);
  /* close with nothing open; two top-level values; unfinished; empty */
  bh_json_init(&j, 0);
  CHECK_INT(bh_json_end(&j), -EINVAL);
  bh_json_free(&j);
  bh_json_init(&j, 0);
  bh_json_int(&j, 1);
  CHECK_INT(bh_json_int(&j, 2), -EINVAL);
  bh_json_free(&j);
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  CHECK(bh_json_done(&j, NULL) == NULL);
  CHECK_INT(bh_json_error(&j), -EINVAL);
  bh_json_free(&j);
  bh_json_init(&j, 0);
  CHECK(bh_json_done(&j, NULL) == NULL);
  bh_json_free(&j);
  /* raw needs text */
  bh_json_init(&j, 0);
  CHECK_INT(bh_json_raw(&j, NULL, 0), -EINVAL);
  bh_json_free(&j);
}

static void test_limits(void) {
  bh_json j;
  /* "[1,2]" is 5 bytes: fits a limit of 5, not of 4 */
  bh_json_init(&j, 5);
  bh_json_arr(&j);
  bh_json_int(&j, 1);
  bh_json_int(&j, 2);
  bh_json_end(&j);
  CHECK_STR(bh_json_done(&j, NULL), "[1,2]");
  bh_json_free(&j);
  bh_json_init(&j, 4);
  bh_json_arr(&j);
  bh_json_int(&j, 1);
  bh_json_int(&j, 2);
  CHECK_INT(bh_json_end(&j), -ENOSPC);
  CHECK(bh_json_done(&j, NULL) == NULL);
  bh_json_free(&j);
  /* an escape is counted as written: 6 bytes for one control byte */
  bh_json_init(&j, 7);
  CHECK_INT(bh_json_strn(&j, "\x01", 1), -ENOSPC);
  bh_json_free(&j);
  /* the default limit, past a growth or two */
  bh_json_init(&j, 0);
  bh_json_arr(&j);
  char big[1000];
  memset(big, 'a', sizeof(big));
  for (int i = 0; i < 2000 && bh_json_error(&j) == 0; i++)
    bh_json_strn(&j, big, sizeof(big));
  CHECK_INT(bh_json_error(&j), -ENOSPC);
  CHECK(j.len <= BH_JSON_DEFAULT_MAX);
  bh_json_free(&j);
}

/* A sensitive writer grows by copy and wipes; its text is the same. */
static void test_sensitive(void) {
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_sensitive(&j);
  bh_json_arr(&j);
  for (int i = 0; i < 100; i++)
    bh_json_str(&j, "secret-secret-secret");
  bh_json_end(&j);
  size_t len = 0;
  const char *t = bh_json_done(&j, &len);
  CHECK(t != NULL);
  CHECK_INT(len, 2 + 100 * 22 + 99);
  CHECK(t && strncmp(t, "[\"secret-secret-secret\",", 24) == 0);
  bh_json_free(&j);
  CHECK(j.buf == NULL);
}

int main(void) {
  test_sensitive();
  test_escaping();
  test_utf8();
  test_same_rule_as_core();
  test_nesting();
  test_misuse();
  test_limits();
  return check_finish("test_json");
}
