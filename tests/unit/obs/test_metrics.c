#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/shard.h"
#include "check.h"
#include "counting_alloc.h"
#include "obs/metrics.h"

#define DROPPED_HEAD                                                           \
  "# HELP bulkhead_metrics_series_dropped_total Metric updates dropped "       \
  "because a family reached its series limit.\n"                               \
  "# TYPE bulkhead_metrics_series_dropped_total counter\n"

/* Renders m into a heap string the caller frees. */
static char *bh__render(const bh__metrics *m) {
  bh__buf b;
  bh__buf_init(&b);
  CHECK_INT(bh__metrics_render(m, &b), 0);
  char *s = bh__buf_steal(&b, NULL);
  return s ? s : strdup("");
}

/* The value of the exposition line starting with `prefix` + " ", or NULL
 * (static storage, valid until the next call). */
static const char *bh__value(const char *text, const char *prefix) {
  static char val[64];
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, prefix, n) == 0 && p[n] == ' ') {
      snprintf(val, sizeof(val), "%.*s", (int)strcspn(p + n + 1, "\n"),
               p + n + 1);
      return val;
    }
  return NULL;
}

static size_t bh__count(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void test_render_small(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK(m != NULL);
  static const double b[] = {0.005, 0.25, 2.5};
  CHECK_INT(bh__metrics_family(m, "bh_requests_total", "counter",
                               "Requests handled.", NULL, 0),
            0);
  CHECK_INT(
      bh__metrics_family(m, "bh_inflight", "gauge", "In flight.", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "bh_latency_seconds", "histogram", "Latency.",
                               b, 3),
            0);
  CHECK_INT(bh__metrics_family(m, "bh_nohelp", "gauge", NULL, NULL, 0), 0);

  bh__metrics_inc(m, "bh_requests_total", "", 1);
  bh__metrics_inc(m, "bh_requests_total", "", 2);
  bh__metrics_inc(m, "bh_requests_total", "route=\"b\"", 1);
  bh__metrics_inc(m, "bh_requests_total", "route=\"a\"", 0.5);
  bh__metrics_set(m, "bh_inflight", "", 7);
  bh__metrics_set(m, "bh_inflight", "", 3);
  /* Binary-exact values so _sum is exact; 0.25 sits on a bound, which is
   * inclusive (le), 4 lands in +Inf only. */
  bh__metrics_observe(m, "bh_latency_seconds", "route=\"a\"", 0.00390625);
  bh__metrics_observe(m, "bh_latency_seconds", "route=\"a\"", 0.25);
  bh__metrics_observe(m, "bh_latency_seconds", "route=\"a\"", 0.5);
  bh__metrics_observe(m, "bh_latency_seconds", "route=\"a\"", 4);
  bh__metrics_observe(m, "bh_latency_seconds", "", 0.125);

  char *text = bh__render(m);
  CHECK_STR(text, DROPPED_HEAD
            "bulkhead_metrics_series_dropped_total 0\n"
            "# HELP bh_requests_total Requests handled.\n"
            "# TYPE bh_requests_total counter\n"
            "bh_requests_total 3\n"
            "bh_requests_total{route=\"a\"} 0.5\n"
            "bh_requests_total{route=\"b\"} 1\n"
            "# HELP bh_inflight In flight.\n"
            "# TYPE bh_inflight gauge\n"
            "bh_inflight 3\n"
            "# HELP bh_latency_seconds Latency.\n"
            "# TYPE bh_latency_seconds histogram\n"
            "bh_latency_seconds_bucket{le=\"0.005\"} 0\n"
            "bh_latency_seconds_bucket{le=\"0.25\"} 1\n"
            "bh_latency_seconds_bucket{le=\"2.5\"} 1\n"
            "bh_latency_seconds_bucket{le=\"+Inf\"} 1\n"
            "bh_latency_seconds_sum 0.125\n"
            "bh_latency_seconds_count 1\n"
            "bh_latency_seconds_bucket{route=\"a\",le=\"0.005\"} 1\n"
            "bh_latency_seconds_bucket{route=\"a\",le=\"0.25\"} 2\n"
            "bh_latency_seconds_bucket{route=\"a\",le=\"2.5\"} 3\n"
            "bh_latency_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n"
            "bh_latency_seconds_sum{route=\"a\"} 4.75390625\n"
            "bh_latency_seconds_count{route=\"a\"} 4\n"
            "# TYPE bh_nohelp gauge\n");
  free(text);

  /* Rendering appends and leaves the registry unchanged. */
  bh__buf out;
  bh__buf_init(&out);
  bh__buf_puts(&out, "x\n");
  CHECK_INT(bh__metrics_render(m, &out), 0);
  text = bh__render(m);
  CHECK(out.len == 2 + strlen(text) && strcmp(out.data + 2, text) == 0);
  free(text);
  bh__buf_free(&out);
  bh__metrics_free(m);
}

static void test_default_buckets(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK_INT(bh__metrics_family(m, "h", "histogram", "", NULL, 0), 0);
  bh__metrics_observe(m, "h", "x=\"1\"", 0.003);
  bh__metrics_observe(m, "h", "x=\"1\"", 30);
  char *text = bh__render(m);
  const char *h = strstr(text, "# TYPE h histogram\n");
  CHECK(h != NULL);
  CHECK_STR(h, "# TYPE h histogram\n"
               "h_bucket{x=\"1\",le=\"0.001\"} 0\n"
               "h_bucket{x=\"1\",le=\"0.0025\"} 0\n"
               "h_bucket{x=\"1\",le=\"0.005\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.01\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.025\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.05\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.1\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.25\"} 1\n"
               "h_bucket{x=\"1\",le=\"0.5\"} 1\n"
               "h_bucket{x=\"1\",le=\"1\"} 1\n"
               "h_bucket{x=\"1\",le=\"2.5\"} 1\n"
               "h_bucket{x=\"1\",le=\"5\"} 1\n"
               "h_bucket{x=\"1\",le=\"10\"} 1\n"
               "h_bucket{x=\"1\",le=\"+Inf\"} 2\n"
               "h_sum{x=\"1\"} 30.003\n"
               "h_count{x=\"1\"} 2\n");
  CHECK(strstr(text, "# HELP h") == NULL); /* empty help: no HELP line */
  free(text);
  bh__metrics_free(m);
}

static void test_numbers(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK_INT(bh__metrics_family(m, "g", "gauge", "G.", NULL, 0), 0);
  static const struct {
    double v;
    const char *text;
  } cases[] = {
      {42, "42"},
      {-3, "-3"},
      {-0.0, "0"},
      {0.1, "0.1"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1e20, "1e+20"},
      {123456789012345, "123456789012345"},
      {1e-7, "1e-07"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
      {NAN, "NaN"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    bh__metrics_set(m, "g", "", cases[i].v);
    char *text = bh__render(m);
    CHECK_STR(bh__value(text, "g"), cases[i].text);
    free(text);
  }
  /* Gauges move both ways. */
  bh__metrics_set(m, "g", "", 5);
  bh__metrics_inc(m, "g", "", -7.5);
  char *text = bh__render(m);
  CHECK_STR(bh__value(text, "g"), "-2.5");
  free(text);
  bh__metrics_free(m);
}

static void test_sorting(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK_INT(bh__metrics_family(m, "c", "counter", "C.", NULL, 0), 0);
  bh__metrics_inc(m, "c", "k=\"c\"", 1);
  bh__metrics_inc(m, "c", "k=\"a\"", 2);
  bh__metrics_inc(m, "c", "k=\"b\"", 3);
  bh__metrics_inc(m, "c", "", 4);
  char *text = bh__render(m);
  const char *c = strstr(text, "# TYPE c counter\n");
  CHECK_STR(c, "# TYPE c counter\n"
               "c 4\n"
               "c{k=\"a\"} 2\n"
               "c{k=\"b\"} 3\n"
               "c{k=\"c\"} 1\n");
  free(text);

  /* Enough series to grow the table several times, inserted out of order:
   * each keeps its value and the output is strictly ascending. */
  CHECK_INT(bh__metrics_family(m, "d", "gauge", "D.", NULL, 0), 0);
  for (int i = 0; i < 500; i++) {
    char l[32];
    int k = (i * 7919) % 500;
    snprintf(l, sizeof(l), "n=\"%03d\"", k);
    bh__metrics_set(m, "d", l, k);
  }
  text = bh__render(m);
  const char *p = strstr(text, "# TYPE d gauge\n");
  CHECK(p != NULL);
  int ok = p != NULL;
  p = p ? strchr(p, '\n') + 1 : NULL;
  for (int k = 0; ok && k < 500; k++) {
    char want[48];
    int n = snprintf(want, sizeof(want), "d{n=\"%03d\"} %d\n", k, k);
    if (strncmp(p, want, (size_t)n) != 0) ok = 0;
    p += n;
  }
  CHECK(ok && *p == '\0');
  free(text);
  bh__metrics_free(m);
}

static void test_escaping(void) {
  bh__buf b;
  bh__buf_init(&b);
  bh__metrics_label_escape(&b, "a\\b\"c\nd");
  CHECK_STR(b.data, "a\\\\b\\\"c\\nd");
  bh__buf_reset(&b);
  bh__metrics_label_escape(&b, "plain");
  bh__metrics_label_escape(&b, NULL);
  bh__metrics_label_escape(&b, "");
  CHECK_STR(b.data, "plain");

  /* An escaped value round-trips as a distinct series. */
  bh__buf_reset(&b);
  bh__buf_puts(&b, "path=\"");
  bh__metrics_label_escape(&b, "/x\"}\n");
  bh__buf_putc(&b, '"');
  bh__metrics *m = bh__metrics_new();
  CHECK_INT(bh__metrics_family(m, "e", "counter", "q\"\\x\ny", NULL, 0), 0);
  bh__metrics_inc(m, "e", b.data, 1);
  char *text = bh__render(m);
  CHECK(strstr(text, "# HELP e q\"\\\\x\\ny\n") != NULL);
  CHECK(strstr(text, "e{path=\"/x\\\"}\\n\"} 1\n") != NULL);
  free(text);
  bh__metrics_free(m);
  bh__buf_free(&b);
}

static void test_families(void) {
  bh__metrics *m = bh__metrics_new();
  static const char *bad[] = {"", "1abc", "a-b", "a b", "\xc3\xa4", "a.b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK_INT(bh__metrics_family(m, bad[i], "counter", "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "a:b_C9", "counter", "", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "_x", "counter", "", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, ":x", "counter", "", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "s", "summary", "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "s", NULL, "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, NULL, "gauge", "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(NULL, "s", "gauge", "", NULL, 0), -EINVAL);

  /* Same name and type: a no-op that keeps the first help and values. */
  CHECK_INT(bh__metrics_family(m, "r", "counter", "First.", NULL, 0), 0);
  bh__metrics_inc(m, "r", "", 2);
  CHECK_INT(bh__metrics_family(m, "r", "counter", "Second.", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "r", "gauge", "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "r", "histogram", "", NULL, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "bulkhead_metrics_series_dropped_total",
                               "counter", "", NULL, 0),
            0);
  CHECK_INT(bh__metrics_family(m, "bulkhead_metrics_series_dropped_total",
                               "gauge", "", NULL, 0),
            -EINVAL);

  /* Histogram bounds: finite, strictly ascending, 1..64 of them. */
  double up[] = {1, 2}, dup[] = {1, 1}, down[] = {2, 1}, nan_[] = {NAN},
         inf[] = {1, INFINITY}, many[65];
  for (int i = 0; i < 65; i++)
    many[i] = i + 1;
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", dup, 2), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", down, 2), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", nan_, 1), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", inf, 2), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", up, 0), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", many, 65), -EINVAL);
  CHECK_INT(bh__metrics_family(m, "h1", "histogram", "", many, 64), 0);
  CHECK_INT(bh__metrics_family(m, "h2", "histogram", "", up, 2), 0);
  CHECK_INT(bh__metrics_family(m, "h2", "histogram", "", NULL, 0), 0);

  /* Unknown families and mismatched operations are ignored; so are steps
   * that would make a counter go down and NaN observations. */
  bh__metrics_inc(m, "nope", "", 1);
  bh__metrics_observe(m, "r", "", 1);
  bh__metrics_inc(m, "h2", "", 1);
  bh__metrics_set(m, "h2", "", 1);
  bh__metrics_inc(m, "r", "", -1);
  bh__metrics_inc(m, "r", "", NAN);
  bh__metrics_observe(m, "h2", "", NAN);
  bh__metrics_inc(NULL, "r", "", 1);
  bh__metrics_inc(m, NULL, "", 1);
  bh__metrics_inc(m, "r", NULL, 1); /* NULL labels mean none */

  char *text = bh__render(m);
  CHECK_INT(bh__count(text, "# TYPE r "), 1);
  CHECK_INT(bh__count(text, "# TYPE bulkhead_metrics_series_dropped_total"), 1);
  CHECK(strstr(text, "# HELP r First.\n# TYPE r counter\nr 3\n") != NULL);
  /* h2 is last and has no series: its TYPE line ends the output. */
  const char *tail = "# TYPE h2 histogram\n";
  CHECK(strlen(text) > strlen(tail) &&
        strcmp(text + strlen(text) - strlen(tail), tail) == 0);
  CHECK(strstr(text, "nope") == NULL);
  CHECK_INT(bh__count(text, "h1_bucket"), 0);
  /* Declaration order. */
  const char *a = strstr(text, "# TYPE a:b_C9"), *r = strstr(text, "# TYPE r "),
             *h1 = strstr(text, "# TYPE h1 ");
  CHECK(a && r && h1 && a < r && r < h1);
  CHECK(strncmp(text, DROPPED_HEAD, strlen(DROPPED_HEAD)) == 0);
  free(text);
  CHECK_INT(bh__metrics_render(NULL, NULL), -EINVAL);
  bh__metrics_free(m);
  bh__metrics_free(NULL);
}

static void test_series_cap(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK_INT(bh__metrics_family(m, "c", "counter", "C.", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "h", "histogram", "H.", NULL, 0), 0);
  char l[64];
  for (int i = 0; i < 10000; i++) {
    snprintf(l, sizeof(l), "id=\"%d\"", i);
    bh__metrics_inc(m, "c", l, 1);
  }
  char *text = bh__render(m);
  CHECK_STR(bh__value(text, "bulkhead_metrics_series_dropped_total"), "0");
  free(text);

  /* Full: new series are dropped and counted, existing ones still count. */
  for (int i = 10000; i < 10003; i++) {
    snprintf(l, sizeof(l), "id=\"%d\"", i);
    bh__metrics_inc(m, "c", l, 1);
  }
  bh__metrics_set(m, "c", "id=\"new\"", 1);
  bh__metrics_inc(m, "c", "id=\"7\"", 5);
  /* Other families keep their own budget. */
  bh__metrics_observe(m, "h", "id=\"1\"", 0.2);
  /* Oversized label bodies are dropped wherever they go. */
  size_t big = 2000;
  char *huge = malloc(big + 1);
  memset(huge, 'x', big);
  huge[big] = '\0';
  bh__metrics_observe(m, "h", huge, 0.2);
  free(huge);

  text = bh__render(m);
  CHECK_STR(bh__value(text, "bulkhead_metrics_series_dropped_total"), "5");
  CHECK_STR(bh__value(text, "c{id=\"7\"}"), "6");
  CHECK(bh__value(text, "c{id=\"10000\"}") == NULL);
  CHECK(bh__value(text, "c{id=\"new\"}") == NULL);
  CHECK_INT(bh__count(text, "\nc{"), 10000);
  CHECK_STR(bh__value(text, "h_count{id=\"1\"}"), "1");
  CHECK_INT(bh__count(text, "h_count"), 1);
  free(text);
  bh__metrics_free(m);
}

/* A registry shaped like the daemon's: histograms, several families, a
 * table grown past a few rehashes, a dropped series. Returns 0 when every
 * declaration succeeded. */
static int bh__workload(bh__metrics *m) {
  static const double b[] = {0.01, 0.1, 1};
  int rc = 0;
  rc |= bh__metrics_family(m, "req_total", "counter", "Requests.", NULL, 0);
  rc |= bh__metrics_family(m, "lat_seconds", "histogram", "Latency.", b, 3);
  rc |= bh__metrics_family(m, "dflt_seconds", "histogram", NULL, NULL, 0);
  rc |= bh__metrics_family(m, "up", "gauge", "Up \\ down\nstate.", NULL, 0);
  char l[64];
  for (int i = 0; i < 300; i++) {
    snprintf(l, sizeof(l), "route=\"r%d\",code=\"%d\"", i % 37, 200 + i % 5);
    bh__metrics_inc(m, "req_total", l, 1);
    bh__metrics_observe(m, "lat_seconds", l, (i % 13) * 0.0625);
    if (i % 10 == 0) bh__metrics_observe(m, "dflt_seconds", "", i * 0.5);
  }
  bh__metrics_set(m, "up", "", 1);
  bh__metrics_set(m, "up", "u=\"b\"", 0);
  char *huge = malloc(4000);
  memset(huge, 'x', 3999);
  huge[3999] = '\0';
  bh__metrics_inc(m, "req_total", huge, 1); /* dropped and counted */
  free(huge);
  return rc;
}

static void test_allocator(void) {
  bh__metrics *ref = bh__metrics_new();
  CHECK_INT(bh__workload(ref), 0);
  char *want = bh__render(ref);
  CHECK(strstr(want, "bulkhead_metrics_series_dropped_total 1\n") != NULL);
  bh__metrics_free(ref);

  /* Everything goes through the given allocator and comes back to it. */
  bh__counting c = {0, 0, 0};
  bh__allocator a = {bh__c_alloc, bh__c_realloc, bh__c_free, &c};
  bh__metrics *m = bh__metrics_new_with(&a);
  CHECK(m != NULL);
  memset(&a, 0, sizeof(a)); /* the registry kept its own copy */
  CHECK_INT(bh__workload(m), 0);
  CHECK(c.live > 300);
  char *got = bh__render(m);
  CHECK_STR(got, want);
  free(got);
  bh__metrics_free(m);
  CHECK_INT(c.live, 0);

  /* NULL means libc. */
  m = bh__metrics_new_with(NULL);
  CHECK(m != NULL);
  bh__metrics_free(m);

  /* Out of memory at every possible allocation: no crash, no leak. */
  long total = c.allocs, runs = 0;
  for (long k = 1; k <= total; k++, runs++) {
    bh__counting f = {0, 0, k};
    bh__allocator fa = {bh__c_alloc, bh__c_realloc, bh__c_free, &f};
    m = bh__metrics_new_with(&fa);
    if (m) {
      bh__workload(m);
      bh__buf out;
      bh__buf_init(&out);
      bh__metrics_render(m, &out);
      bh__buf_free(&out);
    }
    bh__metrics_free(m);
    CHECK_INT(f.live, 0);
    if (f.live) break;
  }
  CHECK_INT(runs, total);
  free(want);
}

static void test_arena(void) {
  bh__metrics *ref = bh__metrics_new();
  bh__workload(ref);
  char *want = bh__render(ref);
  bh__metrics_free(ref);

  size_t size = 4 << 20;
  void *mem = aligned_alloc(64, size);
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  size_t empty = bh__arena_used(ar);
  bh__metrics *m = bh__metrics_new_with(&a);
  CHECK(m != NULL);
  /* The registry itself is in the arena. */
  CHECK((char *)m > (char *)mem && (char *)m < (char *)mem + size);
  CHECK_INT(bh__workload(m), 0);
  char *got = bh__render(m);
  CHECK_STR(got, want);
  free(got);
  size_t used = bh__arena_used(ar);
  CHECK(used > empty);
  bh__metrics_free(m);

  /* Freed memory went back: the same registry again, twice, costs no new
   * arena memory at all. */
  for (int round = 0; round < 2; round++) {
    m = bh__metrics_new_with(&a);
    CHECK_INT(bh__workload(m), 0);
    got = bh__render(m);
    CHECK_STR(got, want);
    free(got);
    bh__metrics_free(m);
    CHECK_INT(bh__arena_used(ar), used);
  }

  /* A full arena: updates that need memory are dropped, not fatal. */
  size_t small = 24 << 10;
  void *smem = aligned_alloc(64, small);
  bh__arena *sar = bh__arena_init(smem, small);
  bh__allocator sa = bh__arena_allocator(sar);
  m = bh__metrics_new_with(&sa);
  CHECK(m != NULL);
  CHECK_INT(bh__metrics_family(m, "c", "counter", "C.", NULL, 0), 0);
  char l[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(l, sizeof(l), "id=\"%d\"", i);
    bh__metrics_inc(m, "c", l, 1);
  }
  bh__metrics_inc(m, "c", "id=\"7\"", 1); /* existing: still counts */
  got = bh__render(m);
  const char *dropped = bh__value(got, "bulkhead_metrics_series_dropped_total");
  CHECK(dropped != NULL && atoi(dropped) > 0);
  CHECK(atoi(dropped) < 2000);
  CHECK_STR(bh__value(got, "c{id=\"7\"}"), "2");
  free(got);
  bh__metrics_free(m);
  free(smem);
  free(mem);
  free(want);
}

/* One registry, two processes: the child declares and updates (allocating
 * from the shared arena), the parent renders what it did. */
static void test_shared(void) {
  size_t size = 1 << 20;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  if (mem == MAP_FAILED) return;
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  bh__metrics *m = bh__metrics_new_with(&a);
  CHECK_INT(bh__metrics_family(m, "hits_total", "counter", "Hits.", NULL, 0),
            0);
  bh__metrics_inc(m, "hits_total", "by=\"parent\"", 1);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int rc =
        bh__metrics_family(m, "child_g", "gauge", "Set by the child.", NULL, 0);
    bh__metrics_set(m, "child_g", "", 42);
    char l[32];
    for (int i = 0; i < 100; i++) {
      snprintf(l, sizeof(l), "by=\"child%02d\"", i);
      bh__metrics_inc(m, "hits_total", l, i);
    }
    bh__metrics_inc(m, "hits_total", "by=\"parent\"", 1);
    _exit(rc == 0 ? 0 : 1);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char *text = bh__render(m);
  CHECK_STR(bh__value(text, "hits_total{by=\"parent\"}"), "2");
  CHECK_STR(bh__value(text, "hits_total{by=\"child99\"}"), "99");
  CHECK_INT(bh__count(text, "\nhits_total{"), 101);
  CHECK(strstr(text, "# HELP child_g Set by the child.\n# TYPE child_g "
                     "gauge\nchild_g 42\n") != NULL);
  free(text);
  bh__metrics_free(m);
  munmap(mem, size);
}

/* Resolved series: updates land where the named calls would put them, a
 * full family or an unknown one gives an unresolved ref whose updates are
 * no-ops, and two processes updating the same refs at once lose nothing
 * (every value update is atomic, no lock is taken). */
static void test_refs(void) {
  size_t size = 1 << 20;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  if (mem == MAP_FAILED) return;
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  bh__metrics *m = bh__metrics_new_with(&a);
  static const double b[] = {0.01, 0.1, 1};
  CHECK_INT(bh__metrics_family(m, "req_total", "counter", "R.", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "lat_seconds", "histogram", "L.", b, 3), 0);
  bh__metrics_ref c, h, none;
  CHECK_INT(bh__metrics_ref_get(m, "req_total", "route=\"/a\"", &c), 0);
  CHECK_INT(bh__metrics_ref_get(m, "lat_seconds", "route=\"/a\"", &h), 0);
  CHECK_INT(bh__metrics_ref_get(m, "nope_total", "", &none), -ENOENT);
  CHECK(none.family == NULL);
  bh__metrics_ref_inc(&none, 1);     /* no-op, no crash */
  bh__metrics_ref_observe(&none, 1); /* same */
  bh__metrics_ref_inc(&c, -1);       /* a counter never goes down */
  bh__metrics_ref_observe(&c, 0.5);  /* wrong type: ignored */
  bh__metrics_ref_inc(&h, 1);        /* same */
  bh__metrics_ref_observe(&h, NAN);  /* NaN: ignored */
  /* the named call and the ref hit the same series */
  bh__metrics_inc(m, "req_total", "route=\"/a\"", 1);
  bh__metrics_ref_inc(&c, 2);
  bh__metrics_observe(m, "lat_seconds", "route=\"/a\"", 0.005);
  bh__metrics_ref_observe(&h, 0.05);
  bh__metrics_ref_observe(&h, 5);
  char *text = bh__render(m);
  CHECK_STR(bh__value(text, "req_total{route=\"/a\"}"), "3");
  CHECK_STR(bh__value(text, "lat_seconds_bucket{route=\"/a\",le=\"0.01\"}"),
            "1");
  CHECK_STR(bh__value(text, "lat_seconds_bucket{route=\"/a\",le=\"0.1\"}"),
            "2");
  CHECK_STR(bh__value(text, "lat_seconds_bucket{route=\"/a\",le=\"1\"}"), "2");
  CHECK_STR(bh__value(text, "lat_seconds_bucket{route=\"/a\",le=\"+Inf\"}"),
            "3");
  CHECK_STR(bh__value(text, "lat_seconds_count{route=\"/a\"}"), "3");
  const char *sum = bh__value(text, "lat_seconds_sum{route=\"/a\"}");
  CHECK(sum && fabs(strtod(sum, NULL) - 5.055) < 1e-9);
  free(text);

  /* labels too long: dropped and counted, the ref stays unresolved */
  char huge[1100];
  memset(huge, 'x', sizeof(huge) - 1);
  huge[sizeof(huge) - 1] = '\0';
  bh__metrics_ref big;
  CHECK_INT(bh__metrics_ref_get(m, "req_total", huge, &big), -ENOSPC);
  CHECK(big.family == NULL);
  text = bh__render(m);
  CHECK_STR(bh__value(text, "bulkhead_metrics_series_dropped_total"), "1");
  free(text);

  /* two processes, the same refs, no lock: every update counts */
  enum { N = 20000 };
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (int i = 0; i < N; i++) {
      bh__metrics_ref_inc(&c, 1);
      bh__metrics_ref_observe(&h, 0.5);
    }
    _exit(0);
  }
  for (int i = 0; i < N; i++) {
    bh__metrics_ref_inc(&c, 1);
    bh__metrics_ref_observe(&h, 0.5);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  text = bh__render(m);
  char want[32];
  snprintf(want, sizeof(want), "%d", 3 + 2 * N);
  CHECK_STR(bh__value(text, "req_total{route=\"/a\"}"), want);
  CHECK_STR(bh__value(text, "lat_seconds_count{route=\"/a\"}"), want);
  snprintf(want, sizeof(want), "%d", 2 + 2 * N);
  CHECK_STR(bh__value(text, "lat_seconds_bucket{route=\"/a\",le=\"1\"}"), want);
  sum = bh__value(text, "lat_seconds_sum{route=\"/a\"}");
  CHECK(sum && fabs(strtod(sum, NULL) - (5.055 + N)) < 1e-6);
  free(text);
  bh__metrics_free(m);
  munmap(mem, size);
}

/* Per-process shards: each process's refs to a counter or histogram
 * series add to a cell of its own, on cache lines no other shard's cell
 * touches; rendering adds the cells to the series; the next process on the
 * same shard (a replaced worker) gets the same cell, so nothing is lost;
 * a gauge ref updates the one shared value, which a set replaces. */
static void test_shards(void) {
  size_t size = 1 << 20;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  if (mem == MAP_FAILED) return;
  bh__arena *ar = bh__arena_init(mem, size);
  bh__allocator a = bh__arena_allocator(ar);
  bh__metrics *m = bh__metrics_new_with(&a);
  static const double b[] = {0.01, 0.1, 1};
  CHECK_INT(bh__metrics_family(m, "req_total", "counter", "R.", NULL, 0), 0);
  CHECK_INT(bh__metrics_family(m, "lat_seconds", "histogram", "L.", b, 3), 0);
  CHECK_INT(bh__metrics_family(m, "up", "gauge", "U.", NULL, 0), 0);
  bh__metrics_ref c[3], h[3], g;
  for (int k = 0; k < 3; k++) {
    bh__shard_self = k;
    CHECK_INT(bh__metrics_ref_get(m, "req_total", "", &c[k]), 0);
    CHECK_INT(bh__metrics_ref_get(m, "lat_seconds", "", &h[k]), 0);
    CHECK(c[k].cell != NULL && h[k].cell != NULL);
    CHECK((uintptr_t)c[k].cell % BH__CACHELINE == 0);
    CHECK((uintptr_t)h[k].cell % BH__CACHELINE == 0);
  }
  /* distinct lines: a histogram cell (4 buckets + count + sum) is 48 bytes,
   * so two shards' cells must be a line apart at least */
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++) {
      CHECK((uintptr_t)c[i].cell / BH__CACHELINE !=
            (uintptr_t)c[j].cell / BH__CACHELINE);
      CHECK((uintptr_t)h[i].cell / BH__CACHELINE !=
            (uintptr_t)h[j].cell / BH__CACHELINE);
    }
  bh__shard_self = 1;
  CHECK_INT(bh__metrics_ref_get(m, "up", "", &g), 0);
  CHECK(g.cell == NULL);

  /* a worker on shard 2 counts, dies; its successor on shard 2 resolves
   * the same cell and keeps counting */
  enum { N = 5000 };
  for (int round = 0; round < 2; round++) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      bh__shard_self = 2;
      bh__metrics_ref cc, hh;
      int ok = bh__metrics_ref_get(m, "req_total", "", &cc) == 0 &&
               bh__metrics_ref_get(m, "lat_seconds", "", &hh) == 0 &&
               cc.cell == c[2].cell && hh.cell == h[2].cell;
      for (int i = 0; i < N; i++) {
        bh__metrics_ref_inc(&cc, 1);
        bh__metrics_ref_observe(&hh, 0.05);
      }
      _exit(ok ? 0 : 1);
    }
    for (int i = 0; i < N; i++) {
      bh__metrics_ref_inc(&c[1], 1);
      bh__metrics_ref_observe(&h[1], 0.5);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  /* shard 0, the series itself (a named update) and a gauge */
  bh__metrics_ref_inc(&c[0], 3);
  bh__metrics_ref_observe(&h[0], 5);
  bh__metrics_inc(m, "req_total", "", 4);
  bh__metrics_observe(m, "lat_seconds", "", 0.005);
  bh__metrics_set(m, "up", "", 1);
  bh__metrics_ref_inc(&g, 2);
  char *text = bh__render(m);
  char want[32];
  snprintf(want, sizeof(want), "%d", 4 * N + 7);
  CHECK_STR(bh__value(text, "req_total"), want);
  snprintf(want, sizeof(want), "%d", 4 * N + 2);
  CHECK_STR(bh__value(text, "lat_seconds_count"), want);
  CHECK_STR(bh__value(text, "lat_seconds_bucket{le=\"0.01\"}"), "1");
  snprintf(want, sizeof(want), "%d", 2 * N + 1);
  CHECK_STR(bh__value(text, "lat_seconds_bucket{le=\"0.1\"}"), want);
  snprintf(want, sizeof(want), "%d", 4 * N + 1);
  CHECK_STR(bh__value(text, "lat_seconds_bucket{le=\"1\"}"), want);
  snprintf(want, sizeof(want), "%d", 4 * N + 2);
  CHECK_STR(bh__value(text, "lat_seconds_bucket{le=\"+Inf\"}"), want);
  const char *sum = bh__value(text, "lat_seconds_sum");
  CHECK(sum &&
        fabs(strtod(sum, NULL) - (N * 0.05 * 2 + N * 0.5 * 2 + 5.005)) < 1e-6);
  CHECK_STR(bh__value(text, "up"), "3");
  bh__metrics_set(m, "up", "", 0);
  free(text);
  text = bh__render(m);
  CHECK_STR(bh__value(text, "up"), "0");
  free(text);
  bh__shard_self = 0;
  bh__metrics_free(m);
  munmap(mem, size);
}

/* OpenMetrics 1.0: counter families named without _total (the samples
 * keep it), le in canonical float form, '"' escaped in HELP, # EOF last. */
static void test_render_openmetrics(void) {
  bh__metrics *m = bh__metrics_new();
  CHECK(m != NULL);
  static const double b[] = {0.25, 1, 10};
  bh__metrics_family(m, "bh_calls_total", "counter", "Calls \"made\".", NULL,
                     0);
  bh__metrics_family(m, "bh_build_info", "gauge", "Build.", NULL, 0);
  bh__metrics_family(m, "bh_wait_seconds", "histogram", "Wait.", b, 3);
  bh__metrics_inc(m, "bh_calls_total", "", 2);
  bh__metrics_set(m, "bh_build_info", "version=\"1.0\"", 1);
  bh__metrics_observe(m, "bh_wait_seconds", "", 0.5);
  bh__buf out;
  bh__buf_init(&out);
  CHECK_INT(bh__metrics_render_om(m, &out), 0);
  const char *want =
      "# HELP bulkhead_metrics_series_dropped Metric updates dropped "
      "because a family reached its series limit.\n"
      "# TYPE bulkhead_metrics_series_dropped counter\n"
      "bulkhead_metrics_series_dropped_total 0\n"
      "# HELP bh_calls Calls \\\"made\\\".\n"
      "# TYPE bh_calls counter\n"
      "bh_calls_total 2\n"
      "# HELP bh_build_info Build.\n"
      "# TYPE bh_build_info gauge\n"
      "bh_build_info{version=\"1.0\"} 1\n"
      "# HELP bh_wait_seconds Wait.\n"
      "# TYPE bh_wait_seconds histogram\n"
      "bh_wait_seconds_bucket{le=\"0.25\"} 0\n"
      "bh_wait_seconds_bucket{le=\"1.0\"} 1\n"
      "bh_wait_seconds_bucket{le=\"10.0\"} 1\n"
      "bh_wait_seconds_bucket{le=\"+Inf\"} 1\n"
      "bh_wait_seconds_sum 0.5\n"
      "bh_wait_seconds_count 1\n"
      "# EOF\n";
  CHECK_STR(out.data, want);
  bh__buf_free(&out);
  bh__metrics_free(m);
}

int main(void) {
  test_render_small();
  test_render_openmetrics();
  test_default_buckets();
  test_numbers();
  test_sorting();
  test_escaping();
  test_families();
  test_series_cap();
  test_allocator();
  test_arena();
  test_shared();
  test_refs();
  test_shards();
  return check_finish("test_metrics");
}
