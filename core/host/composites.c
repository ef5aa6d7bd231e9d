/*
 * The composite_add slot (ABI 1.3): a plugin's composite route is copied
 * here during its init. What it means (routes, sections, required keys)
 * is the gateway's to parse and check once every plugin is loaded
 * (gateway/composite_conf.c), the same way as a [composite.NAME] section,
 * so both sources go through one parser.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "host/host.h"

static void bh__pcomposite_free(bh__pcomposite *c) {
  free(c->name);
  free(c->route);
  for (size_t i = 0; i < c->nsections; i++)
    free(c->sections[i]);
  free(c->sections);
  free(c->required);
}

int bh__svc_composite_add(bh_ctx *ctx, const bh_composite *in) {
  bh__plugin *p = ctx->plugin;
  if (!p->in_init) return -EPERM;
  if (in == NULL ||
      in->size < offsetof(bh_composite, timeout_ms) + sizeof(uint32_t) ||
      in->name == NULL || in->route == NULL || in->sections == NULL ||
      in->sections[0] == NULL)
    return -EINVAL;
  bh__pcomposite c;
  memset(&c, 0, sizeof(c));
  size_t n = 0;
  while (in->sections[n])
    n++;
  c.name = strdup(in->name);
  c.route = strdup(in->route);
  c.sections = calloc(n, sizeof(char *));
  c.required = in->required ? strdup(in->required) : NULL;
  c.timeout_ms = in->timeout_ms;
  int ok = c.name && c.route && c.sections && (!in->required || c.required);
  for (size_t i = 0; ok && i < n; i++) {
    c.sections[i] = strdup(in->sections[i]);
    ok = c.sections[i] != NULL;
    c.nsections = i + 1;
  }
  bh__pcomposite *grown =
      ok ? realloc(p->composites, (p->ncomposites + 1) * sizeof(*grown)) : NULL;
  if (grown == NULL) {
    bh__pcomposite_free(&c);
    return -ENOMEM;
  }
  p->composites = grown;
  p->composites[p->ncomposites++] = c;
  return 0;
}

void bh__plugin_composites_free(bh__plugin *p) {
  for (size_t i = 0; i < p->ncomposites; i++)
    bh__pcomposite_free(&p->composites[i]);
  free(p->composites);
  p->composites = NULL;
  p->ncomposites = 0;
}
