/*
 * Secret values: "@env:NAME" and "@file:PATH" resolved in one place, with
 * one trimming rule, so that the same file reads the same in every section,
 * and with every buffer that held a secret wiped before it is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/secret.h"

int bh__secret_read_file(const char *path, char **out, size_t *outlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char *buf = malloc(BH__SECRET_FILE_MAX + 1);
  size_t n = 0;
  int rc = 0;
  while (buf && n < BH__SECRET_FILE_MAX) {
    ssize_t r = read(fd, buf + n, BH__SECRET_FILE_MAX - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) rc = -errno;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (buf == NULL) return -ENOMEM;
  if (rc == 0 && n == BH__SECRET_FILE_MAX) rc = -EFBIG;
  if (rc) {
    sodium_memzero(buf, n);
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  *outlen = n;
  return 0;
}

int bh__secret_resolve(const char *v, char **out, size_t *outlen, char *why,
                       size_t whylen) {
  if (strncmp(v, "@env:", 5) == 0) {
    const char *e = getenv(v + 5);
    if (e == NULL) {
      snprintf(why, whylen, "environment variable %s is not set", v + 5);
      return -ENOENT;
    }
    v = e;
  } else if (strncmp(v, "@file:", 6) == 0) {
    int rc = bh__secret_read_file(v + 6, out, outlen);
    if (rc == -ENOMEM) return rc;
    if (rc) {
      snprintf(why, whylen, "cannot read %s: %s", v + 6, strerror(-rc));
      return rc;
    }
    /* one line break, as an editor or `echo` leaves it */
    if (*outlen && (*out)[*outlen - 1] == '\n') (*out)[--*outlen] = '\0';
    if (*outlen && (*out)[*outlen - 1] == '\r') (*out)[--*outlen] = '\0';
    return 0;
  }
  *outlen = strlen(v);
  *out = strdup(v);
  return *out ? 0 : -ENOMEM;
}

void bh__secret_free(char *s, size_t len) {
  if (s == NULL) return;
  sodium_memzero(s, len);
  free(s);
}
