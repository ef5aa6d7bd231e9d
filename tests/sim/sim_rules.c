/*
 * Behaviour rules: what the simulator does for a path (and method).
 *
 * A rule is a chain of stages: a stage applies `times` times (or forever),
 * then its `then` stage takes over; when the chain runs out the rule no
 * longer matches and the next best rule, or the default answer, applies.
 * Presets and explicit fields are merged when the rule is added, so matching
 * on the request path is a cheap scan with nothing to compute.
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 16

typedef struct rule {
  long long id;
  char *path;  /* as given, "*" suffix included */
  size_t plen; /* length to compare */
  int prefix;
  char *method; /* upper case, "*" = any */
  sim_spec *spec;
  json_t *src;
  struct rule *next;
} rule;

static rule *rules;
static long long next_id = 1;

static const struct {
  const char *name;
  int action;
} actions[] = {
    {"respond", SIM_ACT_RESPOND},
    {"close", SIM_ACT_CLOSE},
    {"reset", SIM_ACT_RESET},
    {"trickle", SIM_ACT_TRICKLE},
    {"hang", SIM_ACT_HANG},
    {"reset_mid_body", SIM_ACT_RESET_MID_BODY},
    {"stream", SIM_ACT_STREAM},
    {"stream_fail_after", SIM_ACT_STREAM_FAIL_AFTER},
    {"stream_error_after", SIM_ACT_STREAM_ERROR_AFTER},
};

static const char *const spec_keys[] = {
    "status",          "body",
    "headers",         "delay_ms",
    "action",          "trickle_bytes_per_sec",
    "times",           "then",
    "preset",          "fail_after_events",
    "stream_delay_ms", "comment",
    "raw_headers",     NULL};

static void spec_free(sim_spec *s) {
  while (s) {
    sim_spec *next = s->then;
    free(s->body);
    free(s->ctype);
    free(s->headers);
    free(s);
    s = next;
  }
}

static void rule_free(rule *r) {
  free(r->path);
  free(r->method);
  spec_free(r->spec);
  json_decref(r->src);
  free(r);
}

#define FAIL(...)                                                              \
  do {                                                                         \
    snprintf(err, errlen, __VA_ARGS__);                                        \
    goto fail;                                                                 \
  } while (0)

static int get_int(json_t *o, const char *key, long long lo, long long hi,
                   long long *out, char *err, size_t errlen) {
  json_t *v = json_object_get(o, key);
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < lo ||
      json_integer_value(v) > hi) {
    snprintf(err, errlen, "'%s' must be an integer in [%lld, %lld]", key, lo,
             hi);
    return -1;
  }
  *out = json_integer_value(v);
  return 0;
}

static int valid_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s)) return 0;
  return 1;
}

/* Header `name` already in a "Name: value\r\n" list? */
static int has_header(const sim_buf *b, const char *name, size_t nlen) {
  const char *p = b->data, *end = b->data + b->len;
  while (p && p < end) {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (!colon) break;
    if ((size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0)
      return 1;
    const char *nl = memchr(colon, '\n', (size_t)(end - colon));
    p = nl ? nl + 1 : NULL;
  }
  return 0;
}

static int add_header(sim_spec *s, sim_buf *hb, const char *name, json_t *v,
                      char *err, size_t errlen) {
  char num[32];
  const char *val;
  if (json_is_string(v)) {
    val = json_string_value(v);
  } else if (json_is_integer(v)) {
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
    val = num;
  } else {
    snprintf(err, errlen, "header '%s' must be a string", name);
    return -1;
  }
  if (!valid_token(name)) {
    snprintf(err, errlen, "invalid header name '%s'", name);
    return -1;
  }
  if (strpbrk(val, "\r\n") ||
      strlen(val) !=
          (json_is_string(v) ? json_string_length(v) : strlen(val))) {
    snprintf(err, errlen, "header '%s' value has CR, LF or NUL", name);
    return -1;
  }
  if (strcasecmp(name, "content-type") == 0) {
    free(s->ctype);
    s->ctype = strdup(val);
    return 0;
  }
  if (strcasecmp(name, "content-length") == 0 ||
      strcasecmp(name, "transfer-encoding") == 0)
    s->user_framing =
        1; /* the rule wants to send its own (maybe bad) framing */
  sim_buf_printf(hb, "%s: %s\r\n", name, val);
  return 0;
}

static sim_spec *parse_spec(json_t *o, int depth, int is_rule, char *err,
                            size_t errlen) {
  sim_buf hb = {0};
  sim_spec *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->times = -1;
  s->stream_delay_ms = -1;
  s->trickle_bps = 10;
  s->fail_after = -1;
  if (!json_is_object(o)) FAIL("a rule must be a JSON object");
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    int known = 0;
    for (int i = 0; spec_keys[i] && !known; i++)
      known = strcmp(key, spec_keys[i]) == 0;
    if (is_rule && (strcmp(key, "path") == 0 || strcmp(key, "method") == 0))
      known = 1;
    if (!known) FAIL("unknown field '%s'", key);
  }

  const sim_preset *preset = NULL;
  if ((v = json_object_get(o, "preset"))) {
    if (!json_is_string(v)) FAIL("'preset' must be a string");
    preset = sim_preset_find(json_string_value(v));
    if (!preset)
      FAIL("unknown preset '%s' (GET /__sim/presets lists them)",
           json_string_value(v));
    s->status = preset->status;
    s->body = strdup(preset->body);
    s->body_len = strlen(preset->body);
    s->ctype = strdup("application/json");
  }
  long long n = 0;
  if ((v = json_object_get(o, "action"))) {
    size_t i, na = sizeof(actions) / sizeof(actions[0]);
    for (i = 0; i < na; i++)
      if (json_is_string(v) &&
          strcmp(json_string_value(v), actions[i].name) == 0)
        break;
    if (i == na)
      FAIL("'action' must be one of respond, close, reset, trickle, hang, "
           "reset_mid_body, stream, stream_fail_after, stream_error_after");
    s->action = actions[i].action;
  }
  if (s->action == SIM_ACT_STREAM_FAIL_AFTER ||
      s->action == SIM_ACT_STREAM_ERROR_AFTER)
    s->fail_after = 2;
  if (get_int(o, "status", 100, 999, &n, err, errlen)) goto fail;
  if (json_object_get(o, "status")) s->status = (int)n;
  if (get_int(o, "delay_ms", 0, 86400000, &s->delay_ms, err, errlen) ||
      get_int(o, "trickle_bytes_per_sec", 1, 1LL << 30, &s->trickle_bps, err,
              errlen) ||
      get_int(o, "times", 1, 1LL << 50, &s->times, err, errlen) ||
      get_int(o, "stream_delay_ms", 0, 3600000, &s->stream_delay_ms, err,
              errlen))
    goto fail;
  if (json_object_get(o, "fail_after_events")) {
    if (get_int(o, "fail_after_events", 0, 1000, &n, err, errlen)) goto fail;
    s->fail_after = (int)n;
  }

  if ((v = json_object_get(o, "body"))) {
    free(s->body);
    free(s->ctype);
    s->ctype = NULL;
    if (json_is_string(v)) {
      s->body_len = json_string_length(v);
      s->body = malloc(s->body_len + 1);
      if (!s->body) abort();
      memcpy(s->body, json_string_value(v), s->body_len + 1);
      json_t *probe = json_loadb(s->body, s->body_len, JSON_DECODE_ANY, NULL);
      s->ctype =
          strdup(probe ? "application/json" : "text/plain; charset=utf-8");
      json_decref(probe);
    } else if (json_is_null(v)) {
      s->body = strdup("");
      s->body_len = 0;
    } else {
      /* A JSON value instead of a string: send it serialized. */
      s->body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      s->body_len = strlen(s->body);
      s->ctype = strdup("application/json");
    }
  }

  /* Explicit headers first, then the preset's unless overridden. */
  if ((v = json_object_get(o, "headers"))) {
    if (json_is_object(v)) {
      const char *hk;
      json_t *hv;
      json_object_foreach(v, hk, hv) {
        if (add_header(s, &hb, hk, hv, err, errlen)) goto fail;
      }
    } else if (json_is_array(v)) {
      size_t i;
      json_t *pair;
      json_array_foreach(v, i, pair) {
        if (!json_is_array(pair) || json_array_size(pair) != 2 ||
            !json_is_string(json_array_get(pair, 0)))
          FAIL("'headers' list entries must be [name, value]");
        if (add_header(s, &hb, json_string_value(json_array_get(pair, 0)),
                       json_array_get(pair, 1), err, errlen))
          goto fail;
      }
    } else {
      FAIL("'headers' must be an object or a list of [name, value]");
    }
  }
  /* Bytes written into the head as they are, after the other headers:
   * for answers no well-behaved upstream sends (a bare CR inside a value,
   * a header name with a space, an obs-fold line). The rule writes its
   * own line ends. */
  if ((v = json_object_get(o, "raw_headers"))) {
    if (!json_is_string(v) ||
        strlen(json_string_value(v)) != json_string_length(v))
      FAIL("'raw_headers' must be a string without NUL bytes");
    sim_buf_append(&hb, json_string_value(v), json_string_length(v));
  }
  if (preset && preset->headers) {
    const char *p = preset->headers;
    while (*p) {
      const char *colon = strchr(p, ':'), *nl = strstr(p, "\r\n");
      if (!has_header(&hb, p, (size_t)(colon - p)))
        sim_buf_append(&hb, p, (size_t)(nl + 2 - p));
      p = nl + 2;
    }
  }
  sim_buf_append(&hb, "", 1);
  s->headers = hb.data;
  hb.data = NULL;

  if ((v = json_object_get(o, "then"))) {
    if (depth >= MAX_DEPTH) FAIL("'then' nested too deeply");
    s->then = parse_spec(v, depth + 1, 0, err, errlen);
    if (!s->then) goto fail;
  }
  return s;
fail:
  sim_buf_free(&hb);
  spec_free(s);
  return NULL;
}

static rule *parse_rule(json_t *o, const char *path_override, char *err,
                        size_t errlen) {
  rule *r = calloc(1, sizeof(*r));
  if (!r) abort();
  if (!json_is_object(o)) FAIL("a rule must be a JSON object");
  const char *path = path_override;
  json_t *v = json_object_get(o, "path");
  if (!path) {
    if (!json_is_string(v)) FAIL("'path' (a string) is required");
    path = json_string_value(v);
  } else if (v && !json_is_string(v)) {
    FAIL("'path' must be a string");
  }
  if (path[0] != '/' && strcmp(path, "*") != 0)
    FAIL("'path' must start with '/' (or be \"*\")");
  r->path = strdup(path);
  r->plen = strlen(path);
  if (r->plen && path[r->plen - 1] == '*') r->prefix = 1, r->plen--;
  v = json_object_get(o, "method");
  if (v && !json_is_string(v)) FAIL("'method' must be a string");
  r->method = strdup(v ? json_string_value(v) : "*");
  for (char *p = r->method; *p; p++)
    *p = (char)toupper((unsigned char)*p);
  if (strcmp(r->method, "*") != 0 && !valid_token(r->method))
    FAIL("invalid method '%s'", r->method);
  r->spec = parse_spec(o, 0, 1, err, errlen);
  if (!r->spec) goto fail;
  r->src = json_deep_copy(o);
  if (path_override) json_object_set_new(r->src, "path", json_string(path));
  return r;
fail:
  rule_free(r);
  return NULL;
}

static void insert(rule *nr) {
  /* Same path and method: the new rule replaces the old one. */
  for (rule **pp = &rules; *pp;) {
    rule *r = *pp;
    if (strcmp(r->path, nr->path) == 0 && strcmp(r->method, nr->method) == 0) {
      *pp = r->next;
      rule_free(r);
    } else {
      pp = &r->next;
    }
  }
  nr->id = next_id++;
  nr->next = rules;
  rules = nr;
}

json_t *sim_rules_add(json_t *in, const char *path_override, char *err,
                      size_t errlen) {
  size_t n = json_is_array(in) ? json_array_size(in) : 1;
  if (n == 0 || n > 10000) {
    snprintf(err, errlen, "expected a rule object or a non-empty list");
    return NULL;
  }
  rule **parsed = calloc(n, sizeof(*parsed));
  if (!parsed) abort();
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_is_array(in) ? json_array_get(in, i) : in;
    parsed[i] = parse_rule(o, path_override, err, errlen);
    if (!parsed[i]) {
      if (json_is_array(in)) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "rule %zu: %s", i, err);
        snprintf(err, errlen, "%s", tmp);
      }
      for (size_t j = 0; j < i; j++)
        rule_free(parsed[j]);
      free(parsed);
      return NULL;
    }
  }
  json_t *ids = json_array();
  for (size_t i = 0; i < n; i++) {
    insert(parsed[i]);
    json_array_append_new(ids, json_integer(parsed[i]->id));
  }
  free(parsed);
  json_t *res = json_pack("{s:b,s:o}", "ok", 1, "ids", ids);
  if (n == 1) json_object_set(res, "id", json_array_get(ids, 0));
  return res;
}

int sim_rules_remove(const char *path, const char *method) {
  int n = 0;
  for (rule **pp = &rules; *pp;) {
    rule *r = *pp;
    if (strcmp(r->path, path) == 0 &&
        (!method || strcasecmp(r->method, method) == 0)) {
      *pp = r->next;
      rule_free(r);
      n++;
    } else {
      pp = &r->next;
    }
  }
  return n;
}

int sim_rules_clear(void) {
  int n = 0;
  while (rules) {
    rule *r = rules;
    rules = r->next;
    rule_free(r);
    n++;
  }
  return n;
}

static sim_spec *current(const rule *r) {
  sim_spec *s = r->spec;
  while (s && s->times == 0)
    s = s->then;
  return s;
}

json_t *sim_rules_json(void) {
  json_t *arr = json_array();
  for (const rule *r = rules; r; r = r->next) {
    json_t *left = json_array();
    for (const sim_spec *s = r->spec; s; s = s->then)
      json_array_append_new(left, s->times < 0 ? json_null()
                                               : json_integer(s->times));
    /* Oldest first: the order they were added in. */
    json_array_insert_new(arr, 0,
                          json_pack("{s:I,s:s,s:s,s:O,s:o,s:b}", "id", r->id,
                                    "path", r->path, "method", r->method,
                                    "rule", r->src, "times_left", left,
                                    "exhausted", current(r) == NULL));
  }
  return arr;
}

const sim_spec *sim_rules_match(const char *path, const char *method) {
  const rule *best = NULL;
  size_t best_score = 0;
  size_t plen = 0;
  if (!rules) return NULL;
  plen = strlen(path);
  for (const rule *r = rules; r; r = r->next) {
    int exact = !r->prefix;
    if (exact ? (plen != r->plen || memcmp(path, r->path, plen) != 0)
              : (plen < r->plen || memcmp(path, r->path, r->plen) != 0))
      continue;
    int any = r->method[0] == '*';
    if (!any && strcmp(r->method, method) != 0) continue;
    if (!current(r)) continue;
    /* Exact beats prefix, longer prefix beats shorter, a named method beats
     * "*"; rules are newest first, so on a tie the newest wins. */
    size_t score = (exact ? ((size_t)1 << 40) : (r->plen + 1) * 2) + !any;
    if (score > best_score) best = r, best_score = score;
  }
  if (!best) return NULL;
  sim_spec *s = current(best);
  if (s->times > 0) s->times--;
  return s;
}
