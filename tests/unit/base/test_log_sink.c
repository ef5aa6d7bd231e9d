/* core/base/log_sink.c: log bytes leave in whole lines, each write at most
 * one piece, so lines of several processes sharing a pipe never mix. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log_sink.h"
#include "check.h"

int main(void) {
  /* a record socket keeps each write() apart for the reader to see */
  int sv[2];
  CHECK_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  CHECK_INT(bh__log_sink_piece(sv[0]), PIPE_BUF);
  int pp[2];
  CHECK_INT(pipe(pp), 0);
  CHECK_INT(bh__log_sink_piece(pp[1]), PIPE_BUF);
  FILE *f = tmpfile();
  CHECK_INT(bh__log_sink_piece(fileno(f)), 0); /* a file: one write */
  fclose(f);
  close(pp[0]);
  close(pp[1]);

  static char batch[24000];
  size_t n = 0;
  int lines = 0;
  for (int i = 0; n < sizeof(batch) - 2000; i++, lines++) {
    int len = 40 + (i * 37) % 300;
    memset(batch + n, 'a' + i % 26, (size_t)len);
    n += (size_t)len;
    batch[n++] = '\n';
  }
  /* one line longer than a piece goes alone */
  size_t piece = 1000;
  size_t long_at = n;
  memset(batch + n, 'L', 1500);
  n += 1500;
  batch[n++] = '\n';
  lines++;
  CHECK_INT(bh__log_sink_write(sv[0], piece, batch, n), 0);
  shutdown(sv[0], SHUT_WR);

  static char got[sizeof(batch)];
  size_t total = 0;
  int records = 0, bad = 0, seen_lines = 0;
  for (;;) {
    ssize_t r = read(sv[1], got + total, sizeof(got) - total);
    if (r <= 0) break;
    records++;
    if (got[total + (size_t)r - 1] != '\n') bad++; /* ends at a line end */
    if ((size_t)r > piece && total != long_at) bad++;
    for (ssize_t k = 0; k < r; k++)
      seen_lines += got[total + (size_t)k] == '\n';
    total += (size_t)r;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(total, n);
  CHECK(memcmp(got, batch, n) == 0);
  CHECK_INT(seen_lines, lines);
  CHECK(records > (int)(n / piece)); /* it was cut */
  close(sv[0]);
  close(sv[1]);
  return check_finish("base/log_sink");
}
