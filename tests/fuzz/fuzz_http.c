/*
 * Fuzz target for the HTTP front: bytes in -> llhttp, limits, router,
 * dispatch, Problem encoder -> bytes out, through a real loopback socket
 * into a daemon running in this process (one listener, a few routes of an
 * in-process plugin). Every answer must be well framed, carry a request id,
 * and every Problem body must be valid JSON with extensions.code.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "host/host.h"
#include "problem/errmap.h"
#include "proc/daemon.h"
#include "proc/load.h"
#include "state/shm.h"

static uv_loop_t fz_loop;
static bh__daemon fz_d;
static bh__config fz_cfg;
static int fz_port;

static const bh_field fz_fields[] = {
    {"email", BH_FIELD_STRING, BH_FIELD_REQUIRED, 3, 254, NULL},
    {"age", BH_FIELD_INT, 0, 0, 150, NULL},
    {"tags", BH_FIELD_STRING_ARRAY, 0, 0, 5, NULL},
};
static const bh_body_shape fz_shape = {fz_fields, 3, 0};

static void fz_param(bh_req *req, void *data) {
  (void)data;
  const char *x = bh_req_param(req, "x");
  char body[64];
  snprintf(body, sizeof(body), "{\"length\":%zu}", x ? strlen(x) : 0);
  bh_respond_json(req, 200, body);
}

static void fz_json(bh_req *req, void *data) {
  (void)data;
  if (bh_body_parse(req, &fz_shape) != 0) return;
  bh_respond_json(req, 200, "{\"ok\":true}");
}

static void fz_problem(bh_req *req, void *data) {
  (void)data;
  bh_problem(req, bh_req_param(req, "*"), "echoed \"<detail>\"\n");
}

static void fz_init(void) {
  char dir[] = "/tmp/bh-fuzz-XXXXXX";
  if (mkdtemp(dir) == NULL) abort();
  char path[128];
  snprintf(path, sizeof(path), "%s/fuzz.ini", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL) abort();
  fprintf(f,
          "[server]\nlisten = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
          "data_dir = %s/data\nlog = off\nheader_timeout_ms = 200\n"
          "body_timeout_ms = 200\nkeepalive_timeout_ms = 200\n"
          "handler_timeout_ms = 200\nmax_header_bytes = 4096\n"
          "max_body_bytes = 4096\n",
          dir);
  fclose(f);
  char err[512];
  if (bh__load(path, &fz_cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    abort();
  }
  bh__log_open("off", BH__ERROR);
  uv_loop_init(&fz_loop);
  if (bh__shm_create((size_t)16 << 20) != 0) abort();
  if (bh__daemon_init(&fz_d, &fz_cfg, &fz_loop, BH__ROLE_SINGLE, -1) != 0)
    abort();

  /* an in-process plugin, registered through the same path as a .so */
  static char *mounts[] = {"/fz"};
  static bh__section sec = {"plugin.fz", 0, NULL, 0};
  static bh__plugin_conf pc = {.name = "fz",
                               .enabled = 1,
                               .path = "fz.so",
                               .mounts = mounts,
                               .nmounts = 1,
                               .retries = -1,
                               .section = &sec};
  free(fz_d.plugins); /* the loader's empty array */
  fz_d.plugins = calloc(1, sizeof(bh__plugin));
  fz_d.nplugins = 1;
  bh__plugin *p = &fz_d.plugins[0];
  p->d = &fz_d;
  p->conf = &pc;
  p->name = "fz";
  p->ctx.svc = fz_d.svc;
  p->ctx.plugin = p;
  p->loop_thread = pthread_self(); /* services check it */
  p->in_init = 1;
  bh_route routes[] = {
      {sizeof(bh_route), "GET", "/fz/p/{x}", fz_param, NULL, 0, 0, 0, NULL},
      {sizeof(bh_route), "POST", "/fz/json", fz_json, NULL, 0, 64, 0, NULL},
      {sizeof(bh_route), "GET", "/fz/problem/*", fz_problem, NULL, 0, 0, 0,
       NULL},
  };
  for (size_t i = 0; i < 3; i++)
    if (bh__route_register(p, &routes[i]) != 0) abort();
  static const bh_error_row rows[] = {{.on = BH_ON_CODE,
                                       .code = "fz.bad",
                                       .http_status = 400,
                                       .detail = "bad"}};
  char why[256];
  if (bh__errmap_register(p, rows, 1, why, sizeof(why)) ||
      bh__errmap_defaults(p))
    abort();
  p->in_init = 0;
  p->state = BH__PLUGIN_LOADED;
  if (bh__daemon_listen(&fz_d) != 0) abort();
  const char *colon = strrchr(fz_d.api.address, ':');
  fz_port = atoi(colon + 1);
  signal(SIGPIPE, SIG_IGN);
}

/* Walks the answers: each framed, with an id; Problem bodies valid JSON. */
static void fz_check(const char *out, size_t len) {
  size_t pos = 0;
  while (pos < len) {
    if (len - pos < 9 || memcmp(out + pos, "HTTP/1.1 ", 9) != 0) {
      if (len - pos >= 25 &&
          memcmp(out + pos, "HTTP/1.1 100 Continue", 21) == 0)
        ;
      else
        abort();
    }
    const char *end = memmem(out + pos, len - pos, "\r\n\r\n", 4);
    if (end == NULL) abort();
    size_t hlen = (size_t)(end - (out + pos)) + 4;
    char *head = strndup(out + pos, hlen);
    if (strstr(head, "100 Continue") == head + 9) {
      pos += hlen;
      free(head);
      continue;
    }
    if (strstr(head, "\r\nX-Request-ID: ") == NULL) abort();
    const char *cl = strstr(head, "\r\nContent-Length: ");
    size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
    int is_problem = strstr(head, "application/problem+json") != NULL;
    /* a HEAD answer has a length but no body: the next answer (or the
     * end) follows the head directly; no body of ours starts that way */
    int is_head_req = 0;
    free(head);
    pos += hlen;
    if (pos == len ||
        (len - pos >= 9 && memcmp(out + pos, "HTTP/1.1 ", 9) == 0)) {
      is_head_req = 1;
      blen = 0;
    }
    if (pos + blen > len) abort();
    if (is_problem && !is_head_req && blen) {
      json_error_t e;
      json_t *j = json_loadb(out + pos, blen, 0, &e);
      if (j == NULL) abort();
      json_t *code = json_object_get(json_object_get(j, "extensions"), "code");
      if (!json_is_string(code)) abort();
      json_decref(j);
    }
    pos += blen;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fz_port == 0) fz_init();
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)fz_port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Thousands of exchanges a second can leave no local port free
   * (EADDRNOTAVAIL, EAGAIN), or a SYN can meet a TIME_WAIT socket and wait
   * for its retransmission, interrupted by libFuzzer's timer (EINTR): wait
   * and retry instead of reporting a crash. A daemon that stops listening
   * still aborts. */
  int fd = -1;
  for (int tries = 0; fd < 0; tries++) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) abort();
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) break;
    if ((errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINTR) ||
        tries >= 100) {
      fprintf(stderr, "connect: %s\n", strerror(errno));
      abort();
    }
    close(fd);
    fd = -1;
    uv_run(&fz_loop, UV_RUN_NOWAIT);
    usleep(50000);
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  size_t sent = 0, cap = 1 << 16, got = 0;
  char *out = malloc(cap);
  int closed = 0;
  uint64_t start = uv_hrtime();
  while (!closed && uv_hrtime() - start < 3000000000ull) {
    if (sent < size) {
      ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0)
        sent += (size_t)n;
      else if (n < 0 && errno != EAGAIN)
        sent = size;
      if (sent == size) shutdown(fd, SHUT_WR);
    }
    uv_run(&fz_loop, UV_RUN_NOWAIT);
    for (;;) {
      if (got == cap) out = realloc(out, cap *= 2);
      ssize_t n = recv(fd, out + got, cap - got, 0);
      if (n > 0) {
        got += (size_t)n;
        continue;
      }
      if (n == 0 || (n < 0 && errno != EAGAIN)) closed = 1;
      break;
    }
  }
  /* the exchange is over: reset rather than leave TIME_WAIT sockets
   * behind, thousands a second */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  for (int i = 0; i < 4; i++)
    uv_run(&fz_loop, UV_RUN_NOWAIT);
  if (!closed) abort(); /* the daemon must always end the exchange */
  fz_check(out, got);
  free(out);
  return 0;
}
