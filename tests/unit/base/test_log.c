#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "check.h"

static double bh__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bh__sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A fresh temporary file name under $TMPDIR; the file exists, empty. */
static void bh__tmpname(char *out, size_t n) {
  const char *dir = getenv("TMPDIR");
  snprintf(out, n, "%s/bh_test_log_XXXXXX", dir && *dir ? dir : P_tmpdir);
  int fd = mkstemp(out);
  CHECK(fd >= 0);
  if (fd >= 0) close(fd);
}

static char *bh__slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 1 << 16, len = 0;
  char *s = malloc(cap);
  size_t r;
  while (s && (r = fread(s + len, 1, cap - len - 1, f)) > 0) {
    len += r;
    if (cap - len < 2) {
      char *t = realloc(s, cap * 2);
      if (t == NULL) {
        free(s);
        s = NULL;
        break;
      }
      s = t;
      cap *= 2;
    }
  }
  fclose(f);
  if (s) s[len] = '\0';
  return s;
}

/* "2026-01-02T03:04:05.678Z" */
static int bh__is_time(const char *t) {
  static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (t == NULL || strlen(t) != sizeof(pat) - 1) return 0;
  for (size_t i = 0; pat[i]; i++) {
    if (pat[i] == 'd' ? !isdigit((unsigned char)t[i]) : t[i] != pat[i])
      return 0;
  }
  return atoi(t) >= 2024;
}

/* Checks every line of `text` is one JSON object with time, level and
 * event; returns the number of lines, and counts levels into nlevel[]. */
static int bh__check_lines(char *text, int nlevel[4]) {
  int n = 0;
  char *save = NULL;
  size_t total = strlen(text);
  CHECK(total == 0 || text[total - 1] == '\n');
  for (char *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    if (o == NULL) fprintf(stderr, "bad line (%s): %s\n", err.text, line);
    CHECK(o != NULL && json_is_object(o));
    if (o == NULL) continue;
    CHECK(bh__is_time(json_string_value(json_object_get(o, "time"))));
    CHECK(json_string_value(json_object_get(o, "event")) != NULL);
    const char *lv = json_string_value(json_object_get(o, "level"));
    int l = bh__log_level_parse(lv ? lv : "");
    CHECK(l >= 0);
    if (l >= 0 && nlevel) nlevel[l]++;
    json_decref(o);
    n++;
  }
  return n;
}

static void test_level_parse(void) {
  CHECK_INT(bh__log_level_parse("debug"), BH__DEBUG);
  CHECK_INT(bh__log_level_parse("info"), BH__INFO);
  CHECK_INT(bh__log_level_parse("warn"), BH__WARN);
  CHECK_INT(bh__log_level_parse("error"), BH__ERROR);
  CHECK_INT(bh__log_level_parse("warning"), -EINVAL);
  CHECK_INT(bh__log_level_parse(""), -EINVAL);
  CHECK_INT(bh__log_level_parse(NULL), -EINVAL);
}

static void test_bad_open(void) {
  CHECK_INT(bh__log_open(NULL, BH__INFO), -EINVAL);
  CHECK_INT(bh__log_open("stderr", 4), -EINVAL);
  CHECK_INT(bh__log_open("stderr", -1), -EINVAL);
  CHECK_INT(bh__log_open("", BH__INFO), -EINVAL);
  CHECK_INT(bh__log_open("no-such-dir-bh/x.log", BH__INFO), -ENOENT);
  bh__log_close(); /* closing what is not open is harmless */
}

/* Before bh__log_open, lines go synchronously to stderr, info and up. */
static void test_sync_stderr(void) {
  char path[512];
  bh__tmpname(path, sizeof(path));
  int fd = open(path, O_WRONLY | O_TRUNC);
  int saved = dup(STDERR_FILENO);
  CHECK(fd >= 0 && saved >= 0);
  fflush(stderr);
  dup2(fd, STDERR_FILENO);
  close(fd);
  bh__logf(BH__INFO, "early", "starting %d", 1);
  bh__logf(BH__DEBUG, "hidden", "x");
  bh__logline l;
  bh__log_begin(&l, BH__ERROR, "bad_config");
  bh__log_str(&l, "file", "a\"b");
  bh__log_int(&l, "line", -7);
  bh__log_end(&l);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char *text = bh__slurp(path);
  CHECK(text != NULL);
  if (text) {
    CHECK(strstr(text, "\"event\":\"early\",\"msg\":\"starting 1\"}\n"));
    CHECK(strstr(text, "hidden") == NULL);
    CHECK(strstr(text, "\"level\":\"error\",\"event\":\"bad_config\","
                       "\"file\":\"a\\\"b\",\"line\":-7}\n"));
    CHECK_INT(bh__check_lines(text, NULL), 2);
  }
  free(text);
  unlink(path);
}

#define BH_THREADS 4
#define BH_PER_THREAD 1000

static void *bh__spam(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < BH_PER_THREAD; i++) {
    bh__logline l;
    bh__log_begin(&l, BH__INFO, "spam");
    bh__log_int(&l, "thread", id);
    bh__log_int(&l, "i", i);
    bh__log_str(&l, "note", "<tag> & \"quote\" \x01 \xff");
    bh__log_end(&l);
  }
  return NULL;
}

static void test_file(void) {
  char path[512];
  bh__tmpname(path, sizeof(path));
  uint64_t d0 = bh__log_dropped();
  CHECK_INT(bh__log_open(path, BH__DEBUG), 0);
  CHECK_INT(bh__log_open(path, BH__DEBUG), -EALREADY);
  /* SIGPIPE is ignored process-wide once the log is open */
  struct sigaction sa;
  sigaction(SIGPIPE, NULL, &sa);
  CHECK(sa.sa_handler == SIG_IGN);

  bh__logf(BH__DEBUG, "dbg", "value=%s", "x\ny");
  char big[2000];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  bh__logf(BH__WARN, "long", "%s|%s", big, "end");
  bh__logline l;
  bh__log_begin(&l, BH__ERROR, "nulls");
  bh__log_str(&l, "v", NULL);
  bh__log_end(&l);
  pthread_t t[BH_THREADS];
  for (int i = 0; i < BH_THREADS; i++)
    pthread_create(&t[i], NULL, bh__spam, (void *)(intptr_t)i);
  for (int i = 0; i < BH_THREADS; i++)
    pthread_join(t[i], NULL);
  bh__log_close();
  CHECK(bh__log_dropped() == d0); /* 4003 lines fit the queue */

  char *text = bh__slurp(path);
  CHECK(text != NULL);
  if (text) {
    CHECK(strstr(text, "\"level\":\"debug\",\"event\":\"dbg\","
                       "\"msg\":\"value=x\\ny\"}\n"));
    CHECK(strstr(text, "aaaa|end\"}\n"));
    CHECK(strstr(text, "\"event\":\"nulls\",\"v\":null}\n"));
    CHECK(strstr(text, "\\u003ctag\\u003e \\u0026 \\\"quote\\\" \\u0001 "
                       "\\ufffd"));
    int nl[4] = {0};
    CHECK_INT(bh__check_lines(text, nl), 3 + BH_THREADS * BH_PER_THREAD);
    CHECK_INT(nl[BH__DEBUG], 1);
    CHECK_INT(nl[BH__INFO], BH_THREADS * BH_PER_THREAD);
    CHECK_INT(nl[BH__WARN], 1);
    CHECK_INT(nl[BH__ERROR], 1);
  }
  free(text);

  /* a file is appended to, never truncated */
  CHECK_INT(bh__log_open(path, BH__INFO), 0);
  bh__logf(BH__INFO, "again", "x");
  bh__log_close();
  text = bh__slurp(path);
  if (text) CHECK_INT(bh__check_lines(text, NULL), 4 + 4000);
  free(text);
  unlink(path);
}

static void test_levels(void) {
  char path[512];
  bh__tmpname(path, sizeof(path));
  CHECK_INT(bh__log_open(path, BH__WARN), 0);
  bh__logline l;
  bh__log_begin(&l, BH__INFO, "skipped");
  CHECK(l.skip);
  bh__log_str(&l, "k", "v");
  bh__log_int(&l, "n", 1);
  CHECK_INT(l.b.len, 0); /* builders are no-ops */
  bh__log_end(&l);
  bh__log_begin(&l, BH__WARN, "kept");
  CHECK(!l.skip);
  bh__log_end(&l);
  bh__logf(BH__DEBUG, "d", "x");
  bh__logf(BH__INFO, "i", "x");
  bh__logf(BH__WARN, "w", "x");
  bh__logf(BH__ERROR, "e", "x");
  bh__log_close();
  char *text = bh__slurp(path);
  if (text) {
    int nl[4] = {0};
    CHECK_INT(bh__check_lines(text, nl), 3);
    CHECK_INT(nl[BH__WARN], 2);
    CHECK_INT(nl[BH__ERROR], 1);
  }
  free(text);
  unlink(path);
}

static void test_off(void) {
  uint64_t d0 = bh__log_dropped();
  CHECK_INT(bh__log_open("off", BH__DEBUG), 0);
  bh__logline l;
  bh__log_begin(&l, BH__ERROR, "gone");
  CHECK(l.skip);
  bh__log_end(&l);
  bh__logf(BH__ERROR, "gone", "x");
  bh__log_close();
  CHECK(bh__log_dropped() == d0); /* discarded on purpose, not dropped */
}

/* Points fd 1 at `fd` (saving the original) or restores it (fd < 0). */
static int bh__swap_stdout(int fd, int saved) {
  fflush(stdout);
  if (fd >= 0) {
    saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    return saved;
  }
  dup2(saved, STDOUT_FILENO);
  close(saved);
  return -1;
}

/* A sink nobody reads: the writer blocks in write(), producers must not. */
static void test_stalled_pipe(void) {
  int p[2];
  CHECK_INT(pipe(p), 0);
  int saved = bh__swap_stdout(p[1], -1);
  uint64_t d0 = bh__log_dropped();
  CHECK_INT(bh__log_open("stdout", BH__INFO), 0);
  double t0 = bh__now();
  for (int i = 0; i < 100000; i++)
    bh__logf(BH__INFO, "flood", "line %d of a log nobody reads", i);
  double dt = bh__now() - t0;
  fprintf(stderr, "stalled pipe: 100k lines in %.3f s, %llu dropped\n", dt,
          (unsigned long long)(bh__log_dropped() - d0));
  CHECK(dt < 2.0);
  CHECK(bh__log_dropped() - d0 > 50000);
  /* close gives up on the stuck writer after its bound */
  t0 = bh__now();
  bh__log_close();
  dt = bh__now() - t0;
  CHECK(dt < 3.0);
  /* the reader going away unblocks the orphaned writer, which exits */
  close(p[0]);
  bh__sleep_ms(300);
  bh__swap_stdout(-1, saved);
}

/* A sink whose reader is gone: EPIPE, no SIGPIPE death, lines counted. */
static void test_broken_pipe(void) {
  int p[2];
  CHECK_INT(pipe(p), 0);
  close(p[0]);
  int saved = bh__swap_stdout(p[1], -1);
  uint64_t d0 = bh__log_dropped();
  CHECK_INT(bh__log_open("stdout", BH__INFO), 0);
  for (int i = 0; i < 50; i++)
    bh__logf(BH__INFO, "lost", "line %d", i);
  bh__sleep_ms(250); /* let the writer hit EPIPE and back off */
  for (int i = 0; i < 50; i++)
    bh__logf(BH__INFO, "lost", "line %d", i);
  double t0 = bh__now();
  bh__log_close();
  double dt = bh__now() - t0;
  CHECK(dt < 1.0); /* a failing sink does not hold close up */
  CHECK_INT(bh__log_dropped() - d0, 100);
  /* the main thread's own write sees EPIPE too, not a signal */
  errno = 0;
  CHECK(write(STDOUT_FILENO, "x", 1) < 0 && errno == EPIPE);
  bh__swap_stdout(-1, saved);
}

/* A lone line reaches the sink within a few ms with no more lines after
 * it (tests read the access log right after one request); a line begun
 * while another is open keeps its own bytes; one thread's lines stay in
 * order; a line longer than the writer's batch is dropped and counted. */
static void *bh__seq_lines(void *arg) {
  (void)arg;
  for (int i = 0; i < 3000; i++)
    bh__logf(BH__INFO, "seq", "n=%d", i);
  return NULL;
}

static void test_prompt_and_order(void) {
  char path[512];
  bh__tmpname(path, sizeof(path));
  uint64_t d0 = bh__log_dropped();
  CHECK_INT(bh__log_open(path, BH__INFO), 0);
  bh__sleep_ms(20); /* the writer asleep on empty rings */
  bh__logf(BH__INFO, "lone", "x");
  double t0 = bh__now(), dt = 0;
  char *text = NULL;
  for (;;) {
    free(text);
    text = bh__slurp(path);
    dt = bh__now() - t0;
    if ((text && strstr(text, "\"event\":\"lone\"")) || dt > 2.0) break;
    bh__sleep_ms(1);
  }
  CHECK(text && strstr(text, "\"event\":\"lone\""));
  CHECK(dt < 0.5);
  free(text);

  bh__logline outer, inner;
  bh__log_begin(&outer, BH__INFO, "outer");
  bh__log_str(&outer, "k", "o1");
  bh__log_begin(&inner, BH__INFO, "inner");
  bh__log_str(&inner, "k", "i1");
  bh__log_str(&outer, "k2", "o2");
  bh__log_end(&inner);
  bh__log_end(&outer);

  pthread_t t[3];
  for (int i = 0; i < 3; i++)
    pthread_create(&t[i], NULL, bh__seq_lines, NULL);
  for (int i = 0; i < 3; i++)
    pthread_join(t[i], NULL);

  size_t bign = 300 * 1024;
  char *big = malloc(bign + 1);
  memset(big, 'b', bign);
  big[bign] = '\0';
  bh__logf(BH__INFO, "huge", "%s", big);
  free(big);
  bh__logf(BH__INFO, "after", "x");
  bh__log_close();
  CHECK_INT(bh__log_dropped() - d0, 1); /* the huge line only */

  text = bh__slurp(path);
  CHECK(text != NULL);
  if (text) {
    CHECK(strstr(text, "\"event\":\"outer\",\"k\":\"o1\",\"k2\":\"o2\"}\n"));
    CHECK(strstr(text, "\"event\":\"inner\",\"k\":\"i1\"}\n"));
    CHECK(strstr(text, "\"event\":\"after\""));
    CHECK(strstr(text, "huge") == NULL);
    /* each thread's n=0..2999 in order: the k-th seq line seen for a
     * value is the k-th line of some thread, so per value the count
     * never exceeds the count of the previous value */
    static int seen[3000];
    memset(seen, 0, sizeof(seen));
    int ordered = 1, total = 0;
    for (char *p = strstr(text, "\"msg\":\"n="); p;
         p = strstr(p + 1, "\"msg\":\"n=")) {
      int v = atoi(p + 9);
      if (v < 0 || v >= 3000) continue;
      seen[v]++;
      if (v > 0 && seen[v] > seen[v - 1]) ordered = 0;
      total++;
    }
    CHECK(ordered);
    CHECK_INT(total, 3 * 3000);
    CHECK_INT(bh__check_lines(text, NULL), 3 + 3 * 3000 + 1);
  }
  free(text);
  unlink(path);
}

int main(void) {
  test_level_parse();
  test_bad_open();
  test_sync_stderr();
  test_file();
  test_levels();
  test_off();
  test_stalled_pipe();
  test_broken_pipe();
  test_prompt_and_order();
  /* usable again after all that: reopen on a file */
  char path[512];
  bh__tmpname(path, sizeof(path));
  CHECK_INT(bh__log_open(path, BH__INFO), 0);
  bh__logf(BH__INFO, "final", "ok");
  bh__log_close();
  char *text = bh__slurp(path);
  if (text) CHECK_INT(bh__check_lines(text, NULL), 1);
  free(text);
  unlink(path);
  return check_finish("test_log");
}
