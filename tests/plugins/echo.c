/*
 * echo: test plugin exercising the request side of the SDK. Mounted at
 * /t/echo by the integration tests.
 *
 *   GET  /t/echo/ok                 200 {"plugin":"echo","status":"ok"}
 *   POST /t/echo/validate           strict body; 200 {"email":..,"name":..}
 *   GET  /t/echo/params/{a}/{b}     200 {"a":..,"b":..}
 *   GET  /t/echo/files/ *           200 {"rest":..} (the "*" param)
 *   POST /t/echo/body               raw body, max 1024 B; 200 {"length":N}
 *   GET  /t/echo/never              never ended; 300 ms deadline, so the core
 *                                   answers echo.timeout
 *   POST /t/echo/never/release      ends every held /never request (each end
 *                                   call returns -ECANCELED once the core has
 *                                   answered it); 200 {"held":N,"canceled":M}
 *   GET  /t/echo/problem/{code}     bh_problem(code): unknown codes become
 *                                   generic.internal
 *   GET  /t/echo/conflict-target    200 (conflict.so registers it again)
 *   GET  /t/echo/config/{key}       200 {"value":..|null} for "public_*" keys,
 *                                   else 403 echo.forbidden_key
 *   GET  /t/echo/reqid              200 {"requestId":..}
 *   GET  /t/echo/pid                200 {"pid":N}: which worker process
 *                                   serves this connection
 *   GET  /t/echo/status/{code}      answers status code (200..599) with a
 *                                   16-byte body, even for 204 and 304
 *                                   (the core must drop it)
 *
 * [plugin.echo] init_delay_ms = N makes init take N ms (a generation of
 * workers that is slow to become ready, for the reload tests).
 *
 * [plugin.echo] composite = on registers two composite routes (ABI 1.3):
 * GET /t/echo/pair (sections ok and params, ok required) and GET
 * /v1/outside, which lies outside the mount and must be refused.
 */
#include <bulkhead/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- JSON output: a growable buffer and a string escaper ---- */

typedef struct jbuf {
  char *p;
  size_t len, cap;
  int failed;
} jbuf;

static void jb_put(jbuf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 128;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

/* Length of the well-formed UTF-8 sequence at s, 0 if ill-formed (overlong
 * forms, surrogates and code points past U+10FFFF included). Stops at NUL. */
static size_t utf8_seq(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return (s[1] & 0xc0) == 0x80 ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
                   (s[3] & 0xc0) == 0x80
               ? 4
               : 0;
  }
  return 0;
}

/* Appends s as a JSON string, or null when s is NULL. Quotes, backslashes
 * and control bytes are escaped; each ill-formed UTF-8 byte (a decoded path
 * may hold any byte) becomes U+FFFD so the document stays valid JSON. */
static void jb_str(jbuf *b, const char *s) {
  if (!s) {
    jb_put(b, "null", 4);
    return;
  }
  const unsigned char *u = (const unsigned char *)s;
  jb_put(b, "\"", 1);
  while (*u) {
    size_t n = utf8_seq(u);
    char esc[8];
    if (n > 1 || (n == 1 && *u >= 0x20 && *u != '"' && *u != '\\')) {
      jb_put(b, (const char *)u, n);
      u += n;
      continue;
    }
    switch (*u) {
    case '"': strcpy(esc, "\\\""); break;
    case '\\': strcpy(esc, "\\\\"); break;
    case '\n': strcpy(esc, "\\n"); break;
    case '\r': strcpy(esc, "\\r"); break;
    case '\t': strcpy(esc, "\\t"); break;
    default:
      if (n == 0)
        strcpy(esc, "\\ufffd");
      else
        snprintf(esc, sizeof(esc), "\\u%04x", *u);
    }
    jb_put(b, esc, strlen(esc));
    u++;
  }
  jb_put(b, "\"", 1);
}

/* Ends req with 200 and {"k0":v0,...}; kv holds npairs key/value pairs and
 * every value is escaped (NULL gives null). */
static void respond_pairs(bh_req *req, size_t npairs, const char *const *kv) {
  jbuf b = {0};
  jb_put(&b, "{", 1);
  for (size_t i = 0; i < npairs; i++) {
    if (i) jb_put(&b, ",", 1);
    jb_str(&b, kv[2 * i]);
    jb_put(&b, ":", 1);
    jb_str(&b, kv[2 * i + 1]);
  }
  jb_put(&b, "}", 1);
  if (b.failed)
    bh_problem(req, "generic.internal", NULL);
  else
    bh_respond(req, 200, NULL, b.p, b.len);
  free(b.p);
}

/* ---- handlers ---- */

static void ok_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"echo\",\"status\":\"ok\"}");
}

static const char *const tones[] = {"friendly", "formal", NULL};
static const bh_field person_fields[] = {
    {.name = "email",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .min = 3,
     .max = 254},
    {.name = "name",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .max = 100},
    {.name = "age", .type = BH_FIELD_INT, .min = 0, .max = 150},
    {.name = "tone", .type = BH_FIELD_STRING, .one_of = tones},
    {.name = "tags", .type = BH_FIELD_STRING_ARRAY, .max = 5},
    {.name = "active", .type = BH_FIELD_BOOL},
};
static const bh_body_shape person_shape = {person_fields, COUNT(person_fields),
                                           0};

static void validate_post(bh_req *req, void *data) {
  (void)data;
  /* On failure the core has already answered 400 request.invalid_body. */
  if (bh_body_parse(req, &person_shape) < 0) return;
  respond_pairs(req, 2,
                (const char *const[]){"email", bh_body_string(req, "email"),
                                      "name", bh_body_string(req, "name")});
}

static void params_get(bh_req *req, void *data) {
  (void)data;
  respond_pairs(req, 2,
                (const char *const[]){"a", bh_req_param(req, "a"), "b",
                                      bh_req_param(req, "b")});
}

static void files_get(bh_req *req, void *data) {
  (void)data;
  respond_pairs(req, 1, (const char *const[]){"rest", bh_req_param(req, "*")});
}

static void body_post(bh_req *req, void *data) {
  (void)data;
  size_t len = 0;
  char out[48];
  bh_req_body(req, &len);
  snprintf(out, sizeof(out), "{\"length\":%zu}", len);
  bh_respond_json(req, 200, out);
}

/* Requests /never keeps without ending them. The core answers echo.timeout
 * at the route deadline and still holds each req until the plugin's end call
 * (which then returns -ECANCELED). Past the capacity a request is simply not
 * remembered. Per process: each worker loads its own copy. */
static bh_req *never_held[1024];
static size_t never_count;

static void never_get(bh_req *req, void *data) {
  (void)data;
  if (never_count < COUNT(never_held)) never_held[never_count++] = req;
}

static void never_release_post(bh_req *req, void *data) {
  (void)data;
  size_t held = never_count, canceled = 0;
  char out[80];
  for (size_t i = 0; i < held; i++)
    if (bh_respond_json(never_held[i], 200, "{\"released\":true}") ==
        -ECANCELED)
      canceled++;
  never_count = 0;
  snprintf(out, sizeof(out), "{\"held\":%zu,\"canceled\":%zu}", held, canceled);
  bh_respond_json(req, 200, out);
}

static void problem_get(bh_req *req, void *data) {
  (void)data;
  bh_problem(req, bh_req_param(req, "code"), NULL);
}

static void conflict_target_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"echo\",\"route\":\"conflict\"}");
}

static void config_key_get(bh_req *req, void *data) {
  (void)data;
  const char *key = bh_req_param(req, "key");
  if (!key || strncmp(key, "public_", 7) != 0) {
    bh_problem(req, "echo.forbidden_key", NULL);
    return;
  }
  respond_pairs(
      req, 1, (const char *const[]){"value", bh_config(bh_req_ctx(req), key)});
}

static void reqid_get(bh_req *req, void *data) {
  (void)data;
  respond_pairs(req, 1, (const char *const[]){"requestId", bh_req_id(req)});
}

static void pid_get(bh_req *req, void *data) {
  (void)data;
  char body[48];
  snprintf(body, sizeof(body), "{\"pid\":%ld}", (long)getpid());
  bh_respond_json(req, 200, body);
}

static void status_get(bh_req *req, void *data) {
  (void)data;
  const char *code = bh_req_param(req, "code");
  int status = code ? atoi(code) : 0;
  static const char body[] = "{\"ignored\":true}";
  if (status < 200 || status > 599) {
    bh_problem(req, "request.bad_request", NULL);
    return;
  }
  bh_respond(req, status, NULL, body, sizeof(body) - 1);
}

/* ---- registration ---- */

#define ROUTE(m, p, h)                                                         \
  { .size = sizeof(bh_route), .method = m, .pattern = p, .handler = h }

static const bh_route routes[] = {
    ROUTE("GET", "/t/echo/ok", ok_get),
    ROUTE("POST", "/t/echo/validate", validate_post),
    ROUTE("GET", "/t/echo/params/{a}/{b}", params_get),
    ROUTE("GET", "/t/echo/files/*", files_get),
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/t/echo/body",
     .handler = body_post,
     .flags = BH_ROUTE_RAW_BODY,
     .max_body_bytes = 1024},
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/t/echo/never",
     .handler = never_get,
     .timeout_ms = 300},
    ROUTE("POST", "/t/echo/never/release", never_release_post),
    ROUTE("GET", "/t/echo/problem/{code}", problem_get),
    ROUTE("GET", "/t/echo/conflict-target", conflict_target_get),
    ROUTE("GET", "/t/echo/config/{key}", config_key_get),
    ROUTE("GET", "/t/echo/reqid", reqid_get),
    ROUTE("GET", "/t/echo/pid", pid_get),
    ROUTE("GET", "/t/echo/status/{code}", status_get),
};

static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "echo.forbidden_key",
     .http_status = 403,
     .detail = "This configuration key is not readable."},
    {.on = BH_ON_CODE,
     .code = "echo.timeout",
     .http_status = 504,
     .detail = "The echo handler did not answer in time.",
     .retryable = 1},
};

static int echo_init(bh_ctx *ctx, const bh_services *svc) {
  const char *delay = bh_config(ctx, "init_delay_ms");
  if (delay) usleep((useconds_t)strtoul(delay, NULL, 10) * 1000);
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  const char *comp = bh_config(ctx, "composite");
  if (comp && strcmp(comp, "on") == 0 && BH_SVC_HAS(svc, composite_add)) {
    static const char *const pair[] = {"ok = GET /t/echo/ok",
                                       "params = GET /t/echo/params/x/y", NULL};
    bh_composite c = {.size = sizeof(c),
                      .name = "echo_pair",
                      .route = "GET /t/echo/pair",
                      .sections = pair,
                      .required = "ok",
                      .timeout_ms = 2000};
    if ((rc = bh_composite_add(ctx, &c)) < 0) return rc;
    c.name = "echo_outside";
    c.route = "GET /v1/outside";
    if ((rc = bh_composite_add(ctx, &c)) < 0) return rc;
  }
  bh_log(ctx, BH_LOG_INFO, "echo ready: %zu routes", COUNT(routes));
  return 0;
}

/* The reqs still held belong to the core; only forget them. */
static void echo_fini(bh_ctx *ctx) {
  (void)ctx;
  never_count = 0;
}

static const bh_plugin_desc echo_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "echo",
    .version = "0.1.0",
    .init = echo_init,
    .fini = echo_fini,
};

BH_PLUGIN_ENTRY(echo_desc)
