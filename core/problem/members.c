/*
 * A plugin's extra Problem members (the problem_with service): checked
 * once here, so the encoder can append them as they are. jansson parses
 * and re-encodes them: what reaches the client is compact, valid UTF-8
 * JSON with unique member names, whatever the plugin sent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "problem/problem.h"

/* `v` in the core's own escaping (bh__buf_json_str: '<' '>' '&' as
 * \u00XX, like every other string of a Problem), not jansson's. */
static int bh__member_value(bh__buf *out, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *k;
    json_t *m;
    int first = 1;
    bh__buf_putc(out, '{');
    json_object_foreach((json_t *)v, k, m) {
      if (!first) bh__buf_putc(out, ',');
      first = 0;
      bh__buf_json_str(out, k);
      bh__buf_putc(out, ':');
      if (bh__member_value(out, m)) return -ENOMEM;
    }
    bh__buf_putc(out, '}');
    break;
  }
  case JSON_ARRAY:
    bh__buf_putc(out, '[');
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) bh__buf_putc(out, ',');
      if (bh__member_value(out, json_array_get(v, i))) return -ENOMEM;
    }
    bh__buf_putc(out, ']');
    break;
  case JSON_STRING:
    bh__buf_json_strn(out, json_string_value(v), json_string_length(v));
    break;
  default: {
    /* numbers (their digits as jansson keeps them), true, false, null */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) return -ENOMEM;
    bh__buf_puts(out, text);
    free(text);
  }
  }
  return bh__buf_failed(out) ? -ENOMEM : 0;
}

int bh__problem_members(const char *json, bh__buf *out, char *why,
                        size_t whylen) {
  if (why && whylen) why[0] = '\0';
  if (json == NULL) return 0;
  size_t n = strlen(json);
  if (n > BH__PROBLEM_MEMBERS_MAX) {
    if (why)
      snprintf(why, whylen, "members: %zu bytes, past %d", n,
               BH__PROBLEM_MEMBERS_MAX);
    return -E2BIG;
  }
  json_error_t err;
  json_t *doc = json_loadb(json, n, JSON_REJECT_DUPLICATES, &err);
  if (!json_is_object(doc)) {
    if (why)
      snprintf(why, whylen, "members: %s",
               doc ? "not a JSON object" : err.text);
    json_decref(doc);
    return -EINVAL;
  }
  const char *key;
  json_t *v;
  int rc = 0;
  json_object_foreach(doc, key, v) {
    if (bh__problem_reserved_key(key)) {
      if (why)
        snprintf(why, whylen, "members: \"%.64s\" is the core's member", key);
      rc = -EINVAL;
      break;
    }
    bh__buf_putc(out, ',');
    bh__buf_json_str(out, key);
    bh__buf_putc(out, ':');
    rc = bh__member_value(out, v);
    if (rc) break;
  }
  json_decref(doc);
  if (rc == 0 && bh__buf_failed(out)) rc = -ENOMEM;
  return rc;
}
