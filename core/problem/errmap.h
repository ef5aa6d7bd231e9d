/*
 * Plugin error maps (errmap.c): a plugin's declared rows checked and
 * copied into its code catalogue, and an upstream outcome matched to the
 * code, status and Retry-After the client sees.
 */
#ifndef BH_CORE_PROBLEM_ERRMAP_H
#define BH_CORE_PROBLEM_ERRMAP_H

#include <stddef.h>

#include "bulkhead/plugin.h"
#include "host/plugin-t.h"
#include "problem/problem.h"

/* Checks and copies `rows` into p (rows + codes). 0, or -EINVAL with the
 * reason written to why. */
int bh__errmap_register(bh__plugin *p, const bh_error_row *rows, size_t n,
                        char *why, size_t whylen);
/* Adds "<plugin>.timeout", ".upstream_unavailable", ".upstream_timeout",
 * ".upstream_error" unless the plugin declared them. */
int bh__errmap_defaults(bh__plugin *p);
void bh__errmap_free(bh__plugin *p);
const bh__code *bh__errmap_code(const bh__plugin *p, const char *code);

/* errmap matching: the code, status and Retry-After for an outcome.
 * malformed: the upstream answered with a head the client must not see
 * (bh__result_malformed, upstream/): <plugin>.upstream_error whatever the
 * rows say. */
typedef struct bh__mapped {
  const char *code;
  long retry_after; /* -1: none */
} bh__mapped;
void bh__errmap_match(const bh__plugin *p, const bh_upstream_result *res,
                      int malformed, bh__mapped *out, char *codebuf,
                      size_t codelen);
/* 1 when an error-map row matches this HTTP status on its own (used by the
 * proxy to decide whether to buffer an answer). */
int bh__errmap_status_mapped(const bh__plugin *p, int status);

#endif
