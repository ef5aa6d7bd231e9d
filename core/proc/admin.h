/*
 * The admin API (admin.c), served on the admin listener through its own
 * hooks.
 */
#ifndef BH_CORE_PROC_ADMIN_H
#define BH_CORE_PROC_ADMIN_H

#include <stddef.h>

#include "http/http-t.h"

/* What the admin API asks of the process that runs it: re-read the config,
 * lift a plugin's quarantine (0, or a negative errno with a one-line reason
 * in err: -ENOTSUP in one process, -EBUSY for a reload while the previous
 * one's generation is starting), and whether a reload is under way. */
typedef struct bh__admin_ops {
  int (*reload)(char *err, size_t errlen);
  int (*release)(const char *name, char *err, size_t errlen);
  int (*reloading)(void);
} bh__admin_ops;

/* Handed in once at start-up, before the admin listener opens. */
void bh__admin_set_ops(const bh__admin_ops *ops);
/* Frees what the admin API built (its router), at the daemon's end. */
void bh__admin_free(void);
/* The hooks the admin listener is given (proc/daemon.c). */
extern const bh__http_hooks bh__admin_hooks;

#endif
