/* base/trace.c: the W3C traceparent rules. */
#include <errno.h>
#include <string.h>

#include "base/trace.h"
#include "check.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

static void test_parse(void) {
  bh__trace t;
  CHECK_INT(bh__trace_parse("00-" TID "-" PID "-01", &t), 0);
  CHECK_STR(t.trace_id, TID);
  CHECK_STR(t.parent_id, PID);
  CHECK_STR(t.flags, "01");
  /* a later version: the first 55 bytes, then '-' and anything */
  CHECK_INT(bh__trace_parse("cc-" TID "-" PID "-01-more", &t), 0);
  CHECK_INT(bh__trace_parse("cc-" TID "-" PID "-01", &t), 0);
  const char *bad[] = {
      NULL,
      "",
      "ff-" TID "-" PID "-01",
      "00-" TID "-" PID "-01-more",
      "cc-" TID "-" PID "-01more",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",
      "00-" TID "-00F067AA0BA902B7-01",
      "00-00000000000000000000000000000000-" PID "-01",
      "00-" TID "-0000000000000000-01",
      "00-" TID "-" PID "-0g",
      "0-" TID "-" PID "-01",
      "00-" TID "-" PID "-1",
      "00+" TID "-" PID "-01",
      "x0-" TID "-" PID "-01",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK_INT(bh__trace_parse(bad[i], &t), -EINVAL);
}

static void test_start_and_line(void) {
  bh__trace a, b;
  CHECK_INT(bh__trace_start(&a, "00-" TID "-" PID "-01"), 1);
  CHECK_STR(a.trace_id, TID);
  CHECK(strcmp(a.span_id, PID) != 0);
  CHECK_INT(strlen(a.span_id), 16);
  char line[BH__TRACEPARENT_LINE];
  bh__trace_line(&a, line);
  CHECK_INT(strncmp(line, "traceparent: 00-" TID "-", 49), 0);
  CHECK_INT(strncmp(line + 49, a.span_id, 16), 0);
  CHECK_STR(line + 65, "-01");
  CHECK_INT(strlen(line), 68);
  CHECK_INT(bh__trace_start(&b, "garbage"), 0);
  CHECK(strcmp(b.trace_id, TID) != 0);
  CHECK_INT(strlen(b.trace_id), 32);
  CHECK_STR(b.flags, "00");
  CHECK_STR(b.parent_id, "");
  bh__trace z;
  memset(&z, 0, sizeof(z));
  bh__trace_line(&z, line);
  CHECK_STR(line, "");
}

static void test_tracestate(void) {
  char big[BH__TRACESTATE_MAX + 2];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CHECK(bh__tracestate_ok("a=b,c=d"));
  CHECK(!bh__tracestate_ok(""));
  CHECK(!bh__tracestate_ok("a=\x01"));
  CHECK(!bh__tracestate_ok(big));
  big[BH__TRACESTATE_MAX] = '\0';
  CHECK(bh__tracestate_ok(big));
}

int main(void) {
  test_parse();
  test_start_and_line();
  test_tracestate();
  return check_finish("test_trace");
}
