/*
 * hello: the example bulkhead plugin. Copy it to start your own.
 *
 *   GET  /hello/greet/{name}  200 {"greeting":"Hello, <name>!"}
 *                             400 hello.name_too_long past 64 bytes
 *   POST /hello/echo          body {"message": string, at most 280 bytes}
 *                             200 {"message": ...}
 *
 * Ops mount it at /hello in the [plugin.hello] section of the config.
 */

/* The SDK header is the only bulkhead header a plugin includes. The core's
 * internals, libuv and jansson stay out of your build: everything the core
 * offers comes through the services table the header wraps. */
#include <bulkhead/plugin.h>

#include <stdio.h>
#include <string.h>

#define HELLO_VERSION "1.0.0"
#define NAME_MAX_BYTES 64
#define MESSAGE_MAX_BYTES 280
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Everything but the entry is static: with -fvisibility=hidden nothing else
 * leaves the .so, so two plugins can never clash over a symbol name. */

/* Escapes s into out as the inside of a JSON string; 0, or -1 if out is too
 * small. Any text that came from a request (path, body, headers) must pass
 * through here before it goes into a JSON document: a quote in a name would
 * otherwise break, or inject into, the response. A decoded path may hold
 * any byte, so ill-formed UTF-8 becomes U+FFFD to keep the JSON valid. At
 * most 6 output bytes per input byte, plus the NUL. */
static int json_escape(char *out, size_t cap, const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0;
  while (*u) {
    char esc[8] = "";
    size_t n = 1; /* bytes of input consumed */
    unsigned c = u[0];
    if (c == '"' || c == '\\')
      snprintf(esc, sizeof(esc), "\\%c", c);
    else if (c < 0x20)
      snprintf(esc, sizeof(esc), "\\u%04x", c);
    else if (c >= 0x80) {
      /* Accept only well-formed sequences (no overlongs, no surrogates). */
      if (c >= 0xc2 && c <= 0xdf && (u[1] & 0xc0) == 0x80)
        n = 2;
      else if (c >= 0xe0 && c <= 0xef && u[1] >= (c == 0xe0 ? 0xa0 : 0x80) &&
               u[1] <= (c == 0xed ? 0x9f : 0xbf) && (u[2] & 0xc0) == 0x80)
        n = 3;
      else if (c >= 0xf0 && c <= 0xf4 && u[1] >= (c == 0xf0 ? 0x90 : 0x80) &&
               u[1] <= (c == 0xf4 ? 0x8f : 0xbf) && (u[2] & 0xc0) == 0x80 &&
               (u[3] & 0xc0) == 0x80)
        n = 4;
      else
        strcpy(esc, "\\ufffd");
    }
    const char *src = esc[0] ? esc : (const char *)u;
    size_t len = esc[0] ? strlen(esc) : n;
    if (o + len >= cap) return -1;
    memcpy(out + o, src, len);
    o += len;
    u += n;
  }
  out[o] = '\0';
  return 0;
}

/* Handlers run on the event loop thread: never block in them (no sleep, no
 * blocking I/O). Each must end its request exactly once, with bh_respond*()
 * or bh_problem(); after the end call `req` is gone. */
static void greet_get(bh_req *req, void *data) {
  (void)data;
  /* Params are percent-decoded and borrowed until the request ends. NULL
   * when the segment cannot be a C string (it decodes to a NUL byte). */
  const char *name = bh_req_param(req, "name");
  if (name == NULL) {
    bh_problem(req, "request.bad_request", NULL); /* a core code */
    return;
  }
  if (strlen(name) > NAME_MAX_BYTES) {
    /* A code from our error map: the core builds the Problem JSON (status,
     * detail, retryable, request id). Never write an error body by hand. */
    bh_problem(req, "hello.name_too_long", NULL);
    return;
  }
  char esc[NAME_MAX_BYTES * 6 + 1];
  char body[sizeof(esc) + 32];
  if (json_escape(esc, sizeof(esc), name) < 0) {
    bh_problem(req, "generic.internal", NULL); /* cannot happen: bounded */
    return;
  }
  snprintf(body, sizeof(body), "{\"greeting\":\"Hello, %s!\"}", esc);
  bh_respond_json(req, 200, body); /* the core copies the body */
}

/* A strict body shape: the core parses the JSON and checks it before we
 * read a field. Unknown fields, wrong types and bounds are all reported at
 * once in a 400 request.invalid_body. String bounds count bytes. */
static const bh_field echo_fields[] = {
    {.name = "message",
     .type = BH_FIELD_STRING,
     .flags = BH_FIELD_REQUIRED,
     .max = MESSAGE_MAX_BYTES},
};
static const bh_body_shape echo_shape = {echo_fields, COUNT(echo_fields), 0};

static void echo_post(bh_req *req, void *data) {
  (void)data;
  /* On failure the core has already answered: just return. */
  if (bh_body_parse(req, &echo_shape) < 0) return;
  char esc[MESSAGE_MAX_BYTES * 6 + 1];
  char body[sizeof(esc) + 32];
  if (json_escape(esc, sizeof(esc), bh_body_string(req, "message")) < 0) {
    bh_problem(req, "generic.internal", NULL);
    return;
  }
  snprintf(body, sizeof(body), "{\"message\":\"%s\"}", esc);
  bh_respond_json(req, 200, body);
}

/* Routes must lie under the mounts ops gave the plugin, or bh_route_add()
 * fails with -EINVAL. The core copies each struct, so a static const table
 * is enough. .size lets a newer core tell which fields we know. */
static const bh_route routes[] = {
    {.size = sizeof(bh_route),
     .method = "GET",
     .pattern = "/hello/greet/{name}",
     .handler = greet_get},
    {.size = sizeof(bh_route),
     .method = "POST",
     .pattern = "/hello/echo",
     .handler = echo_post,
     .max_body_bytes = 4096}, /* over it: 413 before the handler runs */
};

/* The plugin's whole code catalogue. Codes are "<plugin>.<reason>", stable
 * forever: front ends translate them. detail is shown to users, so it holds
 * no secrets and no personal data. */
static const bh_error_row errors[] = {
    {.on = BH_ON_CODE,
     .code = "hello.name_too_long",
     .http_status = 400,
     .detail = "The name is too long: at most 64 bytes."},
};

/* init: register everything, read config. A negative return fails the load
 * (only this plugin's routes answer plugin.unavailable) and fini() runs. */
static int hello_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc; /* kept for BH_SVC_HAS() checks of slots added after 1.0 */
  int rc = bh_error_map(ctx, errors, COUNT(errors));
  if (rc < 0) return rc;
  for (size_t i = 0; i < COUNT(routes); i++)
    if ((rc = bh_route_add(ctx, &routes[i])) < 0) return rc;
  /* One JSON log line tagged "hello". Never log secrets or user data. */
  bh_log(ctx, BH_LOG_INFO, "hello %s ready", HELLO_VERSION);
  return 0;
}

/* fini: free what the plugin owns. It runs once, after a failed init()
 * too, so it must cope with a half-initialised plugin. */
static void hello_fini(bh_ctx *ctx) {
  (void)ctx;
}

/* The descriptor: static and const, the core keeps a pointer to it. */
static const bh_plugin_desc hello_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR, /* must equal the core's */
    .abi_minor = BH_ABI_MINOR, /* must not exceed the core's */
    .name = "hello",           /* = the [plugin.hello] section, hello.so */
    .version = HELLO_VERSION,
    .init = hello_init,
    .fini = hello_fini,
    /* .start, .stop, .health are optional. */
};

/* The one exported symbol, bulkhead_plugin_entry: it returns the descriptor,
 * or NULL for a core of another ABI major. */
BH_PLUGIN_ENTRY(hello_desc)
