/*
 * The control API: JSON in, JSON out, always answered at once. Served under
 * /__sim/ on the main listener and at both / and /__sim/ on the control
 * listener. Control requests are never counted nor recorded, so tests see
 * only what the gateway sent.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_json_reply(sim_conn *c, int status, json_t *doc) {
  char *body = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(doc);
  size_t n = body ? strlen(body) : 0;
  if (sim_g.verbose)
    sim_log("control %s %s -> %d", sim_method_name(c->req.method),
            sim_req_path(&c->req), status);
  sim_buf head = {0};
  sim_head(&head, status, "application/json",
           status == 405 ? "Allow: GET, POST, PUT, DELETE\r\n" : NULL,
           (long long)n, c->req.keep_alive, 0);
  sim_conn_write(c, head.data, head.len);
  if (c->req.method != HTTP_HEAD) sim_conn_write(c, body, n);
  sim_buf_free(&head);
  free(body);
}

static void error_reply(sim_conn *c, int status, const char *code,
                        const char *msg) {
  sim_json_reply(
      c, status,
      json_pack("{s:b,s:s,s:s}", "ok", 0, "error", code, "message", msg));
}

/* The decoded value of query parameter `name`, or NULL. */
static const char *query_param(const sim_req *r, const char *name, char *out,
                               size_t outlen) {
  const char *q = sim_req_query(r), *end = q + r->query_len;
  size_t nl = strlen(name);
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(q, '=', (size_t)(stop - q));
    const char *kend = eq ? eq : stop;
    if ((size_t)(kend - q) == nl && memcmp(q, name, nl) == 0) {
      const char *v = eq ? eq + 1 : stop;
      size_t vl = (size_t)(stop - v);
      if (vl >= outlen) vl = outlen - 1;
      memcpy(out, v, vl);
      vl = sim_url_decode(out, vl, 1);
      out[vl] = '\0';
      return out;
    }
    q = stop + 1;
  }
  return NULL;
}

/* Parses the request body as JSON, answering 400 itself on failure. */
static json_t *body_json(sim_conn *c) {
  sim_req *r = &c->req;
  json_error_t e;
  if (r->body.len == 0) {
    error_reply(c, 400, "invalid_json", "a JSON body is required");
    return NULL;
  }
  json_t *doc = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY, &e);
  if (!doc) {
    char msg[300];
    snprintf(msg, sizeof(msg), "line %d column %d: %s", e.line, e.column,
             e.text);
    error_reply(c, 400, "invalid_json", msg);
  }
  return doc;
}

static void add_rules(sim_conn *c, const char *path_override) {
  json_t *doc = body_json(c);
  if (!doc) return;
  char err[512];
  json_t *res = sim_rules_add(doc, path_override, err, sizeof(err));
  json_decref(doc);
  if (!res)
    error_reply(c, 400, "invalid_rule", err);
  else
    sim_json_reply(c, 200, res);
}

/* /behaviors/{path}: the rest of the URL, %-decoded, is the rule's path, so
 * both /behaviors/v1/charges and /behaviors/%2Fv1%2Fcharges work. */
static void behaviors_path(sim_conn *c, const char *rest, int m) {
  char path[2048];
  size_t n = strlen(rest);
  if (n + 2 > sizeof(path)) {
    error_reply(c, 414, "path_too_long", "rule path too long");
    return;
  }
  memcpy(path + 1, rest, n);
  n = sim_url_decode(path + 1, n, 0);
  path[n + 1] = '\0';
  const char *p = path + 1;
  if (*p != '/' && strcmp(p, "*") != 0) {
    path[0] = '/';
    p = path;
  }
  if (m == HTTP_PUT || m == HTTP_POST) {
    add_rules(c, p);
  } else if (m == HTTP_DELETE) {
    char mb[32];
    const char *method = query_param(&c->req, "method", mb, sizeof(mb));
    int removed = sim_rules_remove(p, method);
    sim_json_reply(c, 200, json_pack("{s:b,s:i}", "ok", 1, "removed", removed));
  } else {
    error_reply(c, 405, "method_not_allowed", "use PUT or DELETE");
  }
}

static void requests(sim_conn *c) {
  char pb[2048], mb[32], lb[32];
  const char *path = query_param(&c->req, "path", pb, sizeof(pb));
  const char *method = query_param(&c->req, "method", mb, sizeof(mb));
  const char *ls = query_param(&c->req, "limit", lb, sizeof(lb));
  long limit = 50;
  if (ls) {
    char *end;
    limit = strtol(ls, &end, 10);
    if (*end || limit < 0) {
      error_reply(c, 400, "invalid_query", "limit must be an integer >= 0");
      return;
    }
  }
  json_t *list = sim_requests_json(path && *path ? path : NULL,
                                   method && *method ? method : NULL, limit);
  sim_json_reply(c, 200,
                 json_pack("{s:I,s:o}", "count",
                           (json_int_t)json_array_size(list), "requests",
                           list));
}

static void config(sim_conn *c, int m) {
  if (m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH) {
    json_t *doc = body_json(c);
    if (!doc) return;
    const char *key;
    json_t *v;
    if (!json_is_object(doc)) {
      json_decref(doc);
      error_reply(c, 400, "invalid_config", "expected a JSON object");
      return;
    }
    json_object_foreach(doc, key, v) {
      if (strcmp(key, "stream_delay_ms") != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "unknown field '%s'", key);
        json_decref(doc);
        error_reply(c, 400, "invalid_config", msg);
        return;
      }
      if (!json_is_integer(v) || json_integer_value(v) < 0 ||
          json_integer_value(v) > 3600000) {
        json_decref(doc);
        error_reply(c, 400, "invalid_config",
                    "'stream_delay_ms' must be an integer >= 0");
        return;
      }
    }
    v = json_object_get(doc, "stream_delay_ms");
    if (v) sim_g.stream_delay_ms = json_integer_value(v);
    json_decref(doc);
  } else if (m != HTTP_GET && m != HTTP_HEAD) {
    error_reply(c, 405, "method_not_allowed", "use GET or POST");
    return;
  }
  sim_json_reply(
      c, 200,
      json_pack("{s:I}", "stream_delay_ms", (json_int_t)sim_g.stream_delay_ms));
}

void sim_control(sim_conn *c, const char *sub) {
  sim_req *r = &c->req;
  int m = r->method;
  int get = m == HTTP_GET || m == HTTP_HEAD;
  if (r->body_total > r->body.len) {
    error_reply(c, 413, "too_large", "control bodies are limited to 1 MiB");
    return;
  }
  if (strcmp(sub, "/") == 0 || strcmp(sub, "/health") == 0) {
    sim_json_reply(c, 200,
                   json_pack("{s:b,s:s}", "ok", 1, "service", "bulkhead-sim"));
  } else if (strcmp(sub, "/behavior") == 0 || strcmp(sub, "/behaviors") == 0 ||
             strcmp(sub, "/behaviors/") == 0) {
    if (m == HTTP_POST || m == HTTP_PUT)
      add_rules(c, NULL);
    else if (get)
      sim_json_reply(c, 200, json_pack("{s:o}", "rules", sim_rules_json()));
    else if (m == HTTP_DELETE)
      sim_json_reply(
          c, 200,
          json_pack("{s:b,s:i}", "ok", 1, "removed", sim_rules_clear()));
    else
      error_reply(c, 405, "method_not_allowed", "use GET, POST or DELETE");
  } else if (strncmp(sub, "/behaviors/", 11) == 0) {
    behaviors_path(c, sub + 11, m);
  } else if (strcmp(sub, "/stats") == 0) {
    if (get) {
      sim_json_reply(c, 200, sim_stats_json(c));
    } else if (m == HTTP_DELETE) {
      sim_stats_reset();
      sim_json_reply(c, 200, json_pack("{s:b}", "ok", 1));
    } else {
      error_reply(c, 405, "method_not_allowed", "use GET or DELETE");
    }
  } else if (strcmp(sub, "/stats/reset") == 0) {
    if (get) {
      error_reply(c, 405, "method_not_allowed", "use POST");
      return;
    }
    sim_stats_reset();
    sim_json_reply(c, 200, json_pack("{s:b}", "ok", 1));
  } else if (strcmp(sub, "/requests") == 0) {
    if (get) {
      requests(c);
    } else if (m == HTTP_DELETE) {
      sim_record_clear();
      sim_json_reply(c, 200, json_pack("{s:b}", "ok", 1));
    } else {
      error_reply(c, 405, "method_not_allowed", "use GET or DELETE");
    }
  } else if (strcmp(sub, "/config") == 0) {
    config(c, m);
  } else if (strcmp(sub, "/presets") == 0) {
    sim_json_reply(c, 200, json_pack("{s:o}", "presets", sim_presets_json()));
  } else if (strcmp(sub, "/reset") == 0) {
    if (get) {
      error_reply(c, 405, "method_not_allowed", "use POST");
      return;
    }
    /* Everything back to a fresh start, for test isolation. */
    int removed = sim_rules_clear();
    sim_stats_reset();
    sim_record_clear();
    sim_g.stream_delay_ms = sim_g.stream_delay_default;
    sim_json_reply(c, 200,
                   json_pack("{s:b,s:i}", "ok", 1, "removed_rules", removed));
  } else {
    error_reply(c, 404, "not_found", "unknown control endpoint");
  }
}
