/*
 * hello: the example bulkhead plugin. Copy it to start your own.
 *
 *   POST /hello/echo           body {"message": 1..280 bytes}
 *                              200 {"message":"...","length":N}
 *   GET  /hello/quote/{topic}  GET <[upstream.hello] url>/quotes/<topic>:
 *                              200 {"topic":...,"quote":...,"author":...}
 *                              404 hello.no_such_topic when it answers 404,
 *                              the core's 502 / 503 / 504 for the rest
 *
 * Ops mount it at /hello in [plugin.hello] and give [upstream.hello] a url.
 */
#include <bulkhead/plugin.h> /* the only bulkhead header a plugin needs */

#include <string.h>

static bh_upstream *quotes; /* a worker is a process: one per worker */

/* The body's shape: the core answers 400 (every failing field listed)
 * before the handler reads anything. */
static const bh_field echo_fields[] = {
    {"message", BH_FIELD_STRING, BH_FIELD_REQUIRED, 1, 280, NULL}};
static const bh_body_shape echo_shape = {echo_fields, BH_COUNT(echo_fields), 0};

static void echo(bh_req *req, void *data) {
  if (bh_body_parse(req, &echo_shape) != 0) return; /* 400 already sent */
  const char *msg = bh_body_string(req, "message");
  bh_json j; /* the writer escapes: request text may hold any byte */
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kstr(&j, "message", msg);
  bh_json_kuint(&j, "length", strlen(msg));
  bh_json_end(&j);
  bh_respond_json(req, 200, &j); /* sends, and frees the writer */
}

static void quote_done(bh_req *req, const bh_upstream_result *res, void *d) {
  if (res->outcome != BH_OUTCOME_RESPONSE || res->status != 200) {
    bh_problem_upstream(req, res); /* the error map below decides */
    return;
  }
  char author[64] = ""; /* into our buffer: no call can overwrite it */
  bh_upstream_header_get(req, res, "X-Author", author, sizeof(author));
  bh_json j;
  bh_json_init(&j, 0);
  bh_json_obj(&j);
  bh_json_kstr(&j, "topic", bh_req_param(req, "topic"));
  bh_json_kstrn(&j, "quote", res->body, res->body_len);
  bh_json_kstr(&j, "author", author[0] ? author : NULL); /* NULL: null */
  bh_json_end(&j);
  bh_respond_json(req, 200, &j);
}

static void quote(bh_req *req, void *data) {
  char path[128] = "/quotes"; /* a parameter goes in encoded, never raw */
  bh_upstream_request call = {
      .size = sizeof(call), .method = "GET", .path = path};
  if (bh_path_append_segment(path, sizeof(path), bh_req_param(req, "topic")))
    bh_problem(req, "hello.no_such_topic", "That topic name is too long.");
  else if (bh_upstream_call(req, quotes, &call, quote_done, NULL) != 0)
    bh_problem(req, "generic.internal", NULL);
}

/* The plugin's catalogue; an upstream outcome no row matches gets the
 * core's default answer (hello.upstream_error, _unavailable, _timeout). */
static const bh_error_row errors[] = {
    {.on = BH_ON_STATUS,
     .status = 404,
     .code = "hello.no_such_topic",
     .http_status = 404,
     .detail = "There is no quote on that topic."}};

static const bh_route routes[] = {
    BH_ROUTE("POST", "/hello/echo", echo),
    BH_ROUTE("GET", "/hello/quote/{topic}", quote)};

/* No fini: the plugin owns nothing the core does not free. */
static int hello_init(bh_ctx *ctx, const bh_services *svc) {
  static const bh_upstream_def up = {.size = sizeof(up), .name = "hello"};
  int rc = bh_error_map(ctx, errors, BH_COUNT(errors));
  if (rc == 0) rc = bh_upstream_add(ctx, &up, &quotes);
  return rc ? rc : bh_routes_add(ctx, routes, BH_COUNT(routes));
}

BH_PLUGIN("hello", "2.0.0", hello_init)
