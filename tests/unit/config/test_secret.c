/*
 * core/config/secret.c: the one "@env:" / "@file:" resolver. A file's one
 * trailing line break goes and nothing else, whichever section asks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config/secret.h"

static char dir[] = "/tmp/bh-unit-secret-XXXXXX";

static const char *t_file(const char *name, const char *data, size_t len) {
  static char path[128];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL) exit(1);
  fwrite(data, 1, len, f);
  fclose(f);
  return path;
}

/* The resolved value, or NULL with rc set. */
static char *t_resolve(const char *v, size_t *len, int *rc, char *why) {
  char *out = NULL;
  why[0] = '\0';
  *rc = bh__secret_resolve(v, &out, len, why, 256);
  return *rc ? NULL : out;
}

static void test_literal_and_env(void) {
  char why[256];
  size_t len;
  int rc;
  char *s = t_resolve("plain value ", &len, &rc, why);
  CHECK_STR(s, "plain value ");
  CHECK_INT(len, 12);
  bh__secret_free(s, len);
  setenv("BH_TEST_SECRET_X", "from-env\n", 1);
  s = t_resolve("@env:BH_TEST_SECRET_X", &len, &rc, why);
  CHECK_STR(s, "from-env\n"); /* the environment is taken as it is */
  bh__secret_free(s, len);
  unsetenv("BH_TEST_SECRET_X");
  CHECK(t_resolve("@env:BH_TEST_SECRET_X", &len, &rc, why) == NULL);
  CHECK_INT(rc, -ENOENT);
  CHECK_STR(why, "environment variable BH_TEST_SECRET_X is not set");
}

static void test_file(void) {
  char why[256], ref[192];
  size_t len;
  int rc;
  struct {
    const char *data, *want;
  } cases[] = {
      {"token\n", "token"},   {"token\r\n", "token"},   {"token", "token"},
      {"token \n", "token "}, {"token\n\n", "token\n"}, {"\n", ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(ref, sizeof(ref), "@file:%s",
             t_file("s", cases[i].data, strlen(cases[i].data)));
    char *s = t_resolve(ref, &len, &rc, why);
    CHECK_STR(s, cases[i].want);
    CHECK_INT(len, strlen(cases[i].want));
    bh__secret_free(s, len);
  }
  snprintf(ref, sizeof(ref), "@file:%s/missing", dir);
  CHECK(t_resolve(ref, &len, &rc, why) == NULL);
  CHECK_INT(rc, -ENOENT);
  CHECK(strncmp(why, "cannot read ", 12) == 0 && strstr(why, "/missing: "));
  /* bounded: a file of the maximum size is refused, not truncated */
  char *big = malloc(BH__SECRET_FILE_MAX);
  memset(big, 'k', BH__SECRET_FILE_MAX);
  snprintf(ref, sizeof(ref), "@file:%s",
           t_file("big", big, BH__SECRET_FILE_MAX));
  free(big);
  CHECK(t_resolve(ref, &len, &rc, why) == NULL);
  CHECK_INT(rc, -EFBIG);
  snprintf(ref, sizeof(ref), "%s/s", dir);
  unlink(ref);
  snprintf(ref, sizeof(ref), "%s/big", dir);
  unlink(ref);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  test_literal_and_env();
  test_file();
  rmdir(dir);
  return check_finish("test_secret");
}
