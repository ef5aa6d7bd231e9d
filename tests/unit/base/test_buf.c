/* bh__buf: appends, printf in one or two passes, JSON string escaping. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "check.h"

/* bh__buf_json_strn of s into a fresh buffer, as a heap string. */
static char *json_of(const char *s, size_t n) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__buf_json_strn(&b, s, n), 0);
  char *out = bh__buf_steal(&b, NULL);
  return out ? out : strdup("");
}

static void check_json(const char *in, size_t n, const char *want) {
  char *got = json_of(in, n);
  CHECK_STR(got, want);
  free(got);
}

static void test_append(void) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__buf_append(&b, "", 0), 0);
  CHECK(b.data != NULL);
  CHECK_INT(b.len, 0);
  CHECK_STR(b.data, "");
  for (int i = 0; i < 1000; i++)
    CHECK_INT(bh__buf_putc(&b, (char)('a' + i % 26)), 0);
  CHECK_INT(b.len, 1000);
  CHECK_INT(b.data[1000], '\0');
  CHECK_INT(b.data[27], 'b');
  CHECK_INT(bh__buf_puts(&b, "xyz"), 0);
  CHECK_INT(b.len, 1003);
  CHECK_STR(b.data + 1000, "xyz");
  /* grow then fill exactly to capacity - 1 (room for the NUL) */
  bh__buf_reset(&b);
  CHECK_INT(bh__buf_grow(&b, 100), 0);
  size_t cap = b.cap;
  char fill[4096];
  memset(fill, 'q', sizeof(fill));
  CHECK(cap - 1 <= sizeof(fill));
  CHECK_INT(bh__buf_append(&b, fill, cap - 1), 0);
  CHECK_INT(b.cap, cap); /* no growth: the NUL fits */
  CHECK_INT(b.data[cap - 1], '\0');
  CHECK_INT(bh__buf_putc(&b, 'r'), 0);
  CHECK(b.cap > cap);
  CHECK_INT(b.data[b.len - 1], 'r');
  /* failure is sticky and the data stays terminated */
  b.failed = 1;
  CHECK(bh__buf_puts(&b, "more") != 0);
  CHECK(bh__buf_failed(&b));
  bh__buf_free(&b);
}

static void test_printf(void) {
  bh__buf b;
  bh__buf_init(&b);
  /* first use: nothing allocated yet, so the two-pass path */
  CHECK_INT(bh__buf_printf(&b, "%d-%s", 42, "x"), 0);
  CHECK_STR(b.data, "42-x");
  /* fits the room already there: one pass */
  CHECK_INT(bh__buf_printf(&b, "/%05u", 7u), 0);
  CHECK_STR(b.data, "42-x/00007");
  /* does not fit: the truncated attempt is undone, then it grows */
  char big[3000];
  memset(big, 'z', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  size_t before = b.len;
  CHECK_INT(bh__buf_printf(&b, "<%s>", big), 0);
  CHECK_INT(b.len, before + sizeof(big) + 1);
  CHECK_INT(b.data[before], '<');
  CHECK_INT(b.data[b.len - 1], '>');
  CHECK_INT(b.data[b.len], '\0');
  CHECK_INT(strncmp(b.data, "42-x/00007<zz", 13), 0);
  bh__buf_free(&b);
}

static void test_numbers(void) {
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_u64(&b, 0);
  bh__buf_putc(&b, ' ');
  bh__buf_u64(&b, UINT64_MAX);
  bh__buf_putc(&b, ' ');
  bh__buf_i64(&b, INT64_MIN);
  bh__buf_putc(&b, ' ');
  bh__buf_i64(&b, -5);
  CHECK_STR(b.data, "0 18446744073709551615 -9223372036854775808 -5");
  /* every digit count, odd and even, and the edges around each power of
   * ten, against printf */
  int wrong = 0;
  uint64_t p = 1;
  for (int e = 0; e < 20; e++, p *= 10)
    for (uint64_t d = 0; d < 3; d++)
      for (int sgn = -1; sgn <= 1; sgn += 2) {
        uint64_t v = sgn < 0 ? p - d : p + d;
        char want[24];
        snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
        bh__buf_reset(&b);
        bh__buf_u64(&b, v);
        if (strcmp(b.data, want) != 0) wrong++;
      }
  for (uint64_t v = 0; v < 100000; v += 7) {
    char want[24];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
    bh__buf_reset(&b);
    bh__buf_u64(&b, v);
    if (strcmp(b.data, want) != 0) wrong++;
  }
  CHECK_INT(wrong, 0);
  bh__buf_free(&b);
}

static void test_json(void) {
  check_json("", 0, "\"\"");
  check_json("plain text 123", 14, "\"plain text 123\"");
  check_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
  check_json("<a href='x'>&amp;</a>", 21,
             "\"\\u003ca href='x'\\u003e\\u0026amp;\\u003c/a\\u003e\"");
  check_json("\n\r\t\x01\x1f", 5, "\"\\n\\r\\t\\u0001\\u001f\"");
  check_json("nul\0byte", 8, "\"nul\\u0000byte\"");
  check_json("del\x7f", 4, "\"del\x7f\"");
  /* valid UTF-8 passes through, invalid becomes U+FFFD */
  check_json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
             "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  check_json("x\xff"
             "y",
             3, "\"x\\ufffdy\"");
  check_json("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");            /* overlong */
  check_json("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
  check_json("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");            /* truncated */
  /* a long run with escapes at both ends and in the middle */
  char in[600], want[700];
  memset(in, 'k', sizeof(in));
  in[0] = '"';
  in[300] = '\n';
  in[599] = '<';
  size_t w = 0;
  want[w++] = '"';
  memcpy(want + w, "\\\"", 2);
  w += 2;
  memset(want + w, 'k', 299);
  w += 299;
  memcpy(want + w, "\\n", 2);
  w += 2;
  memset(want + w, 'k', 298);
  w += 298;
  memcpy(want + w, "\\u003c\"", 7);
  w += 7;
  want[w] = '\0';
  check_json(in, sizeof(in), want);
  /* NULL encodes as null; appended after existing content */
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_puts(&b, "[");
  bh__buf_json_str(&b, NULL);
  bh__buf_putc(&b, ',');
  bh__buf_json_str(&b, "k");
  bh__buf_putc(&b, ']');
  CHECK_STR(b.data, "[null,\"k\"]");
  bh__buf_free(&b);
}

/* Every byte value at every position of a 19-byte string (so it falls in
 * the 8-byte fast scan, in its last word and in the tail), against a
 * byte-at-a-time reference. */
static void test_json_every_byte(void) {
  static const char hex[] = "0123456789abcdef";
  for (int c = 0; c < 256; c++) {
    for (int pos = 0; pos < 19; pos++) {
      char in[19];
      memset(in, 'a', sizeof(in));
      in[pos] = (char)c;
      char want[64];
      size_t w = 0;
      want[w++] = '"';
      for (int i = 0; i < 19; i++) {
        unsigned char u = (unsigned char)in[i];
        const char *esc = NULL;
        char e[7];
        if (u == '"')
          esc = "\\\"";
        else if (u == '\\')
          esc = "\\\\";
        else if (u == '\n')
          esc = "\\n";
        else if (u == '\r')
          esc = "\\r";
        else if (u == '\t')
          esc = "\\t";
        else if (u >= 0x80)
          esc = "\\ufffd"; /* a lone byte: invalid */
        else if (u < 0x20 || u == '<' || u == '>' || u == '&') {
          e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0';
          e[4] = hex[u >> 4], e[5] = hex[u & 15], e[6] = '\0';
          esc = e;
        }
        if (esc) {
          memcpy(want + w, esc, strlen(esc));
          w += strlen(esc);
        } else {
          want[w++] = (char)u;
        }
      }
      want[w++] = '"';
      want[w] = '\0';
      char *got = json_of(in, sizeof(in));
      if (strcmp(got, want) != 0) {
        fprintf(stderr, "byte 0x%02x at %d: got %s\n", c, pos, got);
        CHECK(0);
      }
      free(got);
    }
  }
}

/* A framed key and its value: the one-copy path for plain values, the
 * escaping loop entered after a plain run, NULL as null, and the same
 * bytes as the key-by-key builders give. */
static void test_json_kv(void) {
  static const bh__jkey k = BH__JKEY("path");
  bh__buf b;
  bh__buf_init(&b);
  bh__buf_putc(&b, '{');
  CHECK_INT(bh__buf_json_kv(&b, &k, "/v1/plain"), 0);
  CHECK_INT(bh__buf_json_kv(&b, &k, "0123456789abcdef0123\"<x>&\n\xc3\xa9\xff"),
            0);
  CHECK_INT(bh__buf_json_kv(&b, &k, ""), 0);
  CHECK_INT(bh__buf_json_kv(&b, &k, NULL), 0);
  CHECK_INT(bh__buf_key(&b, "n"), 0);
  CHECK_INT(bh__buf_i64(&b, -7), 0);
  bh__buf_putc(&b, '}');
  CHECK_STR(b.data, "{,\"path\":\"/v1/plain\",\"path\":\"0123456789abcdef0123"
                    "\\\"\\u003cx\\u003e\\u0026\\n\xc3\xa9\\ufffd\","
                    "\"path\":\"\",\"path\":null,\"n\":-7}");
  bh__buf_reset(&b);
  /* the same as bh__buf_json_key + bh__buf_json_str */
  const char *v = "a\tb \x01 long enough to take the wide loop: 0123456789";
  bh__buf ref;
  bh__buf_init(&ref);
  bh__buf_json_key(&ref, "path");
  bh__buf_json_str(&ref, v);
  bh__buf_json_kv(&b, &k, v);
  CHECK_STR(b.data, ref.data);
  bh__buf_free(&ref);
  bh__buf_free(&b);
}

/* A buffer kept for reuse: emptied with its block when small, freed when
 * large or failed. */
static void test_empty_keep(void) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__buf_empty_keep(&b), 0); /* nothing to keep */
  bh__buf_puts(&b, "hello");
  char *block = b.data;
  CHECK_INT(bh__buf_empty_keep(&b), 1);
  CHECK(b.data == block);
  CHECK_INT(b.len, 0);
  CHECK_INT(b.data[0], '\0');
  char big[BH__BUF_KEEP_MAX + 1];
  memset(big, 'x', sizeof(big));
  bh__buf_append(&b, big, sizeof(big));
  CHECK_INT(bh__buf_empty_keep(&b), 0);
  CHECK(b.data == NULL);
  CHECK_INT(b.cap, 0);
  bh__buf_puts(&b, "x");
  b.failed = 1;
  CHECK_INT(bh__buf_empty_keep(&b), 0);
  CHECK(b.data == NULL);
  CHECK_INT(b.failed, 0);
}

int main(void) {
  test_empty_keep();
  test_append();
  test_printf();
  test_numbers();
  test_json();
  test_json_every_byte();
  test_json_kv();
  return check_finish("test_buf");
}
