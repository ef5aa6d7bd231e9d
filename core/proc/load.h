/*
 * Loading a configuration file (load.c): the one place that parses it
 * (config/) and then runs the check of every section whose owner sits in a
 * higher layer, so that `bulkhead -t`, a reload and a worker refuse the
 * same files.
 */
#ifndef BH_CORE_PROC_LOAD_H
#define BH_CORE_PROC_LOAD_H

#include <stddef.h>

#include "config/config.h"

/* bh__config_load, then every [upstream.NAME] and [rate_limit.NAME]
 * section checked and [auth] resolved into cfg->auth. 0, or -errno with
 * one line "FILE:LINE: [SECTION] KEY: problem" in err; on error cfg is
 * freed. */
int bh__load(const char *path, bh__config *cfg, char *err, size_t errlen);
/* Frees what bh__load made (cfg->auth, then the config). NULL is fine. */
void bh__unload(bh__config *cfg);

#endif
