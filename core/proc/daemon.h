/*
 * The process: the daemon's life cycle (daemon.c) and, with workers, the
 * master's supervision (master.c).
 */
#ifndef BH_CORE_PROC_DAEMON_H
#define BH_CORE_PROC_DAEMON_H

#include <uv.h>

#include "config/config.h"
#include "proc/daemon-t.h"

/* daemon.c: lifecycle */
/* Creates the data directory, router, metrics; in a single process or a
 * worker also the upstream client and the plugins (loaded and inited). */
int bh__daemon_init(bh__daemon *d, bh__config *cfg, uv_loop_t *loop, int role,
                    int api_fd);
int bh__daemon_listen(bh__daemon *d);
/* Logs the "listening" events (tests and ops wait for them). */
void bh__daemon_announce(bh__daemon *d);
/* Starts plugins and runs the loop until a drain completes. */
int bh__daemon_run(bh__daemon *d);
void bh__daemon_free(bh__daemon *d);
/* Closes every handle left and the loop itself. */
void bh__loop_close(uv_loop_t *loop);
/* workers = auto resolved to the number of CPUs. */
int bh__workers_count(const bh__config *cfg);
/* A forked worker's whole life; returns its exit status. */
int bh__worker_main(bh__config *cfg, int api_fd, int generation);
void bh__sd_notify(const char *state);

/* master.c: supervision (see there) */
int bh__master_run(bh__daemon *d, const char *config_path);
/* From the admin API (through bh__admin_ops): re-read the config / lift a
 * quarantine. 0, or a negative errno with a one-line reason in err
 * (-ENOTSUP in one process, -EBUSY for a reload while the previous one's
 * generation is starting). */
int bh__master_reload(char *err, size_t errlen);
/* 1 while a reload's new generation is starting (master only). */
int bh__master_reloading(void);
int bh__master_release(const char *name, char *err, size_t errlen);

#endif
