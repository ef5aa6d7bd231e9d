/*
 * Composite routes: one request answered by dispatching several sections
 * in-process through the API's request path and merging their answers.
 *   composite_conf.c  [composite.NAME] and plugin-registered ones: parsed,
 *                     checked, the worker's table
 *   composite.c       serving one: sections, the one session check,
 *                     deadlines, the merged answer
 */
#ifndef BH_CORE_GATEWAY_COMPOSITE_H
#define BH_CORE_GATEWAY_COMPOSITE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "host/plugin-t.h"
#include "http/http-t.h"

#define BH__CSEC_KEY_MAX 64

typedef struct bh__csec_def {
  char key[BH__CSEC_KEY_MAX + 1];
  char method[16];
  char *target; /* "/path?query" */
  int required;
} bh__csec_def;

typedef struct bh__cdef {
  char *name;
  char method[16];
  char *path;
  bh__csec_def *secs;
  size_t nsecs;
  uint32_t timeout_ms; /* per section; resolved, never 0 */
  bh__plugin *plugin;  /* the plugin that registered it, or NULL (config) */
  bh__route route;     /* the composite's own line in metrics: pattern =
                          path, no plugin, no handler */
} bh__cdef;

typedef struct bh__composites {
  bh__cdef *defs;
  size_t n;
} bh__composites;

/* composite_conf.c */
/* Checks every [composite.NAME] of cfg (proc/load.c, so -t and a reload
 * refuse what a worker would). 0, or -EINVAL with one line
 * "FILE:LINE: [composite.NAME] KEY: problem" in err. */
int bh__composite_conf_check(const bh__config *cfg, char *err, size_t errlen);
/* The worker's table, from the config and the plugins loaded (d): a
 * plugin's composite that fails its checks is logged and left out. 0 or
 * -ENOMEM. */
int bh__composites_build(bh__daemon *d);
void bh__composites_free(bh__daemon *d);
/* The composite answering METHOD path, or NULL. */
const bh__cdef *bh__composite_find(bh__daemon *d, const char *method,
                                   const char *path);

/* The method of the composite at path (for a CORS preflight), or NULL. */
const char *bh__composite_method(bh__daemon *d, const char *path);

/* composite.c */
/* Serves req (message complete, id set) as composite c: answers later. */
void bh__composite_serve(bh_req *req, const bh__cdef *c);
/* At the session step of a section's path: 0 the composite's one check
 * let the caller in (principal set), -1 answered (that check's refusal),
 * 1 not decided there: run the section's own check. */
int bh__section_auth(bh_req *req);
/* Whether req is a composite's section. */
int bh__is_section(const bh_req *req);

#endif
