/*
 * A request's life cycle on the HTTP side: its target split into path and
 * query, header lookup, and the last reference dropped. A request is held
 * by its connection and, while a handler runs, by the plugin; whoever
 * drops the last reference frees it.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "http/validate.h"

/* "." and ".." segments are refused rather than normalised: a gateway that
 * resolves them differently from the upstream behind it invites route
 * confusion. */
static int bh__path_ok(const char *p) {
  if (p[0] != '/') return 0;
  for (const char *s = p; *s; s++) {
    if (*s == '#') return 0;
    if (s[0] == '/' && s[1] == '.') {
      if (s[2] == '/' || s[2] == '\0') return 0;
      if (s[2] == '.' && (s[3] == '/' || s[3] == '\0')) return 0;
    }
  }
  return 1;
}

void bh__req_parse_target(bh_req *req) {
  char *url = req->raw.data;
  char *q = strchr(url, '?');
  if (q) {
    *q = '\0';
    req->query = q + 1;
  } else {
    req->query = "";
  }
  req->path = url;
  req->bad_path = !bh__path_ok(url);
  const char *expect = bh__req_header(req, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0)
    req->expect_continue = 1;
}

void bh__req_unref(bh_req *req) {
  if (--req->refs > 0) return;
  if (req->params) {
    for (size_t i = 0; i < req->match.nparams; i++)
      free(req->params[i]);
    free(req->params);
  }
  if (req->json) bh__body_free(req->json);
  free(req->authn); /* plain data: principal and scopes inline */
  bh__buf_free(&req->raw);
  bh__buf_free(&req->body);
  bh__buf_free(&req->resp_headers);
  bh__buf_free(&req->cors);
  bh__buf_free(&req->head_out);
  bh__buf_free(&req->sink_out);
  free(req->headers);
  free(req);
}

void bh__req_deadline(bh_req *req, uint32_t ms) {
  if (req->conn)
    bh__conn_deadline(req->conn, ms);
  else if (req->sink)
    req->sink->deadline(req, ms);
}

const char *bh__req_header(bh_req *req, const char *name) {
  if (req->headers == NULL) return NULL; /* head not complete */
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

int bh__is_json(const char *ct) {
  if (ct == NULL) return 0;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
  return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
         strncasecmp(ct + n - 5, "+json", 5) == 0;
}
