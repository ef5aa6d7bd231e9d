/*
 * CORS (cors.c): the policy of each mount ([plugin.NAME] cors_*, falling
 * back key by key to [server]), the Access-Control-* lines every answer to
 * an allowed origin carries, and preflights answered before auth and rate
 * limits.
 */
#ifndef BH_CORE_GATEWAY_CORS_H
#define BH_CORE_GATEWAY_CORS_H

#include <stddef.h>

#include "config/config.h"
#include "http/http-t.h"

typedef struct bh__cors_conf bh__cors_conf;

/* Reads and checks every cors_* key of [server] and of each
 * [plugin.NAME] into *out (NULL when no mount has cors_origins). 0, or
 * -EINVAL / -ENOMEM with one line "FILE:LINE: [SECTION] KEY: problem" in
 * err. */
int bh__cors_conf_load(const bh__config *cfg, bh__cors_conf **out, char *err,
                       size_t errlen);
void bh__cors_conf_free(bh__cors_conf *c);

/* At headers complete, once req->plugin is known: the lines every answer
 * of the request carries (req->cors). */
void bh__cors_head(bh_req *req);
/* At message complete: 1 when req was a preflight of a mount with CORS and
 * was answered (204), 0 otherwise. */
int bh__cors_preflight(bh_req *req);

#endif
