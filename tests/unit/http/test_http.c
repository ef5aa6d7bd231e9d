/*
 * core/http/http.c, request.c and response.c without a daemon: one
 * listener on a real libuv loop with test hooks installed, and a loopback
 * client. Parsing limits, keep-alive, pipelining, timeouts, the handler
 * deadline, and the close paths; nothing above http/ is involved.
 */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "check.h"
#include "config/config.h"
#include "http/http.h"
#include "loop_client.h"
#include "proc/daemon-t.h"

static uv_loop_t loop;
static bh__daemon d;
static bh__config cfg;
static bh__listener api;
static int port;

static int t_heads, t_requests, t_deadlines;
static char t_order[256];
static bh_req *t_held;

static void t_reset(void) {
  t_heads = t_requests = t_deadlines = 0;
  t_order[0] = '\0';
  t_held = NULL;
}

static int th_head(bh_req *req) {
  t_heads++;
  bh__req_parse_target(req);
  req->body_limit = 64;
  if (strcmp(req->path, "/refuse") == 0) {
    req->code = "route.not_found";
    return -1;
  }
  return 0;
}

static void th_request(bh_req *req) {
  t_requests++;
  strncat(t_order, req->path, sizeof(t_order) - strlen(t_order) - 2);
  strcat(t_order, " ");
  if (strcmp(req->path, "/hold") == 0) {
    /* answered later by the test, which holds a reference like a handler */
    req->refs++;
    t_held = req;
    return;
  }
  if (strcmp(req->path, "/deadline") == 0) {
    bh__conn_deadline(req->conn, 50);
    return;
  }
  char body[160];
  snprintf(body, sizeof(body), "%s:%zu:%s", req->path, req->body.len,
           req->query);
  bh__respond(req, 200, "text/plain", body, strlen(body), NULL);
}

static void th_deadline(bh_req *req) {
  t_deadlines++;
  bh__respond(req, 504, "text/plain", "late", 4, NULL);
}

static const bh__http_hooks hooks = {th_head, th_request, th_deadline};

static void t_answer_held(const char *body) {
  bh_req *req = t_held;
  t_held = NULL;
  bh__respond(req, 200, "text/plain", body, strlen(body), NULL);
  bh__req_unref(req);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

static void test_keep_alive(void) {
  t_reset();
  tc_conn c;
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/a?x=1"));
  CHECK(tc_wait(&loop, &c, "/a:0:x=1", 1, 0, 2000));
  CHECK(strncmp(c.buf, "HTTP/1.1 200 ", 13) == 0);
  tc_send(&c, GET("/b"));
  CHECK(tc_wait(&loop, &c, "/b:0:", 1, 0, 2000));
  /* still open: nothing asked to close */
  tc_wait(&loop, &c, NULL, 0, 1, 50);
  CHECK_INT(c.eof, 0);
  CHECK_INT(t_requests, 2);
  CHECK_STR(t_order, "/a /b ");
  tc_close(&c);
}

static void test_pipelining_in_order(void) {
  t_reset();
  tc_conn c;
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/hold") GET("/b") GET("/c"));
  tc_wait(&loop, &c, NULL, 0, 1, 100);
  /* one request in flight at a time: the others wait, unanswered */
  CHECK_INT(t_requests, 1);
  CHECK(t_held != NULL);
  CHECK_INT(c.len, 0);
  if (t_held) t_answer_held("held-answer");
  CHECK(tc_wait(&loop, &c, "/c:0:", 1, 0, 2000));
  CHECK_STR(t_order, "/hold /b /c ");
  const char *h = strstr(c.buf, "held-answer"), *b = strstr(c.buf, "/b:0:"),
             *cc = strstr(c.buf, "/c:0:");
  CHECK(h && b && cc && h < b && b < cc);
  CHECK_INT(tc_count(&c, "HTTP/1.1 200 "), 3);
  tc_close(&c);
}

static void test_header_limit(void) {
  t_reset();
  tc_conn c;
  CHECK_INT(tc_open(&c, port), 0);
  char req[4096];
  char big[2048];
  memset(big, 'v', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  snprintf(req, sizeof(req), "GET /a HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n",
           big);
  tc_send(&c, req);
  CHECK(tc_wait(&loop, &c, NULL, 0, 1, 2000));
  CHECK(strncmp(c.buf, "HTTP/1.1 431 ", 13) == 0);
  CHECK(strstr(c.buf, "request.headers_too_large") != NULL);
  CHECK_INT(t_heads, 0);
  CHECK_INT(t_requests, 0);
  tc_close(&c);
}

static void test_body_limit(void) {
  t_reset();
  tc_conn c;
  CHECK_INT(tc_open(&c, port), 0);
  /* under the limit the hook set: read whole */
  tc_send(&c, "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(tc_wait(&loop, &c, "/p:5:", 1, 0, 2000));
  /* over it: refused from the Content-Length, before the body is read */
  tc_send(&c, "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
  CHECK(tc_wait(&loop, &c, "HTTP/1.1 413 ", 1, 1, 2000));
  CHECK(strstr(c.buf, "request.too_large") != NULL);
  CHECK_INT(t_heads, 2);
  CHECK_INT(t_requests, 1);
  tc_close(&c);
}

static void test_close_paths(void) {
  t_reset();
  tc_conn c;
  /* Connection: close is honoured after the answer */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  CHECK(tc_wait(&loop, &c, "/a:0:", 1, 1, 2000));
  CHECK(strstr(c.buf, "Connection: close") != NULL);
  tc_close(&c);
  /* HTTP/1.0 without keep-alive: one answer, then close */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, "GET /z HTTP/1.0\r\n\r\n");
  CHECK(tc_wait(&loop, &c, "/z:0:", 1, 1, 2000));
  tc_close(&c);
  /* malformed: 400, and the stream is no longer trusted */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, "NOT HTTP AT ALL\r\n\r\n");
  CHECK(tc_wait(&loop, &c, "HTTP/1.1 400 ", 1, 1, 2000));
  CHECK(strstr(c.buf, "request.bad_request") != NULL);
  tc_close(&c);
  /* the head hook refused: its code, then close */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/refuse") GET("/after"));
  CHECK(tc_wait(&loop, &c, "HTTP/1.1 404 ", 1, 1, 2000));
  CHECK(strstr(c.buf, "route.not_found") != NULL);
  CHECK(strstr(c.buf, "/after") == NULL);
  tc_close(&c);
  CHECK_INT(t_requests, 2);
}

static void test_timeouts(void) {
  t_reset();
  tc_conn c;
  /* a head that never completes: 408 after header_timeout_ms */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, "GET /a HTTP/1.1\r\nHost: t\r\n");
  CHECK(tc_wait(&loop, &c, "HTTP/1.1 408 ", 1, 1, 3000));
  CHECK(strstr(c.buf, "request.timeout") != NULL);
  tc_close(&c);
  /* idle keep-alive: closed quietly after keepalive_timeout_ms */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/a"));
  CHECK(tc_wait(&loop, &c, "/a:0:", 1, 1, 3000));
  CHECK_INT(tc_count(&c, "HTTP/1.1 "), 1);
  tc_close(&c);
  /* the handler deadline goes to the listener's on_deadline hook */
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/deadline"));
  CHECK(tc_wait(&loop, &c, "late", 1, 0, 3000));
  CHECK(strncmp(c.buf, "HTTP/1.1 504 ", 13) == 0);
  CHECK_INT(t_deadlines, 1);
  tc_close(&c);
}

static void test_client_gone_while_held(void) {
  t_reset();
  tc_conn c;
  CHECK_INT(tc_open(&c, port), 0);
  tc_send(&c, GET("/hold"));
  tc_wait(&loop, &c, NULL, 0, 1, 50);
  CHECK(t_held != NULL);
  tc_close(&c);
  /* EOF with a request in flight is held: the answer still goes out (a
   * half-closed client may be waiting for it), then the connection goes */
  uint64_t end = tc_now_ms() + 100;
  while (tc_now_ms() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  CHECK_INT((int)d.nconns, 1);
  if (t_held) t_answer_held("nobody-reads-this");
  end = tc_now_ms() + 1000;
  while (d.nconns && tc_now_ms() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  CHECK_INT((int)d.nconns, 0);
}

static void t_setup(void) {
  char err[512];
  if (bh__config_load(NULL, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  cfg.max_header_bytes = 1024;
  cfg.header_timeout_ms = 150;
  cfg.body_timeout_ms = 150;
  cfg.keepalive_timeout_ms = 150;
  bh__log_open("off", BH__ERROR);
  uv_loop_init(&loop);
  memset(&d, 0, sizeof(d));
  d.loop = &loop;
  d.cfg = &cfg;
  bh__http_settings_init(&d.parser_settings);
  if (bh__listen(&d, &api, BH__LISTENER_API, "127.0.0.1:0", &hooks) != 0)
    exit(1);
  port = tc_port_of(api.address);
}

static void t_teardown(void) {
  bh__conn_close_all(&d);
  uv_close((uv_handle_t *)&api.tcp, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  bh__config_free(&cfg);
  bh__log_close();
}

int main(void) {
  t_setup();
  test_keep_alive();
  test_pipelining_in_order();
  test_header_limit();
  test_body_limit();
  test_close_paths();
  test_timeouts();
  test_client_gone_while_held();
  t_teardown();
  return check_finish("test_http");
}
