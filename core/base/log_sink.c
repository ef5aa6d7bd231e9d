#include "base/log_sink.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whole line or an error. EINTR retried; EAGAIN (someone made the sink
 * non-blocking, e.g. a shared stdout pipe) waits for room instead of
 * spinning. 0 or negative errno. */
static int bh__write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return -errno;
      continue;
    }
    return w < 0 ? -errno : -EIO;
  }
  return 0;
}

size_t bh__log_sink_piece(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return PIPE_BUF;
  return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ? PIPE_BUF : 0;
}

int bh__log_sink_write(int fd, size_t piece, const char *p, size_t n) {
  while (piece && n > piece) {
    /* the last line end within the piece; a longer line goes alone */
    size_t k = piece;
    while (k > 0 && p[k - 1] != '\n')
      k--;
    if (k == 0) {
      const char *nl = memchr(p + piece, '\n', n - piece);
      k = nl ? (size_t)(nl - p) + 1 : n;
    }
    int rc = bh__write_all(fd, p, k);
    if (rc) return rc;
    p += k;
    n -= k;
  }
  return n ? bh__write_all(fd, p, n) : 0;
}
