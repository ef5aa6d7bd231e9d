/*
 * A loopback client for unit tests that drive a listener of the core on a
 * real libuv loop in this thread: the client socket is non-blocking, and
 * tc_wait() alternates one turn of the loop with reading what came back.
 */
#ifndef BH_TEST_LOOP_CLIENT_H
#define BH_TEST_LOOP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct tc_conn {
  int fd;
  char buf[65536];
  size_t len;
  int eof;
} tc_conn;

static int tc_port_of(const char *address) {
  const char *colon = strrchr(address, ':');
  return colon ? atoi(colon + 1) : -1;
}

/* Connected (the listener's backlog accepts at once), then non-blocking. */
static int tc_open(tc_conn *c, int port) {
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return -1;
  return fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

static void tc_close(tc_conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* Small requests: the kernel takes them whole. */
static int tc_send(tc_conn *c, const char *data) {
  size_t n = strlen(data);
  return send(c->fd, data, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

static void tc_read(tc_conn *c) {
  for (;;) {
    if (c->len + 1 >= sizeof(c->buf)) return;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n > 0) {
      c->len += (size_t)n;
      c->buf[c->len] = '\0';
    } else {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c->eof = 1;
      return;
    }
  }
}

static uint64_t tc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Occurrences of needle in what was read. */
static int tc_count(const tc_conn *c, const char *needle) {
  int n = 0;
  for (const char *p = c->buf; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Runs the loop until `needle` was read `times` times (needle NULL: not
 * asked) and, with want_eof, the server closed; or until ms passed. 1 when
 * the condition held. */
static int tc_wait(uv_loop_t *loop, tc_conn *c, const char *needle, int times,
                   int want_eof, int ms) {
  uint64_t end = tc_now_ms() + (uint64_t)ms;
  for (;;) {
    uv_run(loop, UV_RUN_NOWAIT);
    tc_read(c);
    int ok = (needle == NULL || tc_count(c, needle) >= times) &&
             (!want_eof || c->eof);
    if (ok) return 1;
    if (tc_now_ms() >= end) return 0;
    usleep(1000);
  }
}

#endif
