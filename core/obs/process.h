/*
 * The process_* metrics (process.c), read from /proc at scrape time and
 * summed over the master and every live worker: the daemon is one service
 * to whoever scrapes it, whichever process answers the scrape.
 */
#ifndef BH_CORE_OBS_PROCESS_H
#define BH_CORE_OBS_PROCESS_H

#include <stdint.h>

typedef struct bh__proc_stats {
  double cpu_seconds;    /* user + system, summed */
  double resident_bytes; /* summed */
  double open_fds;       /* summed */
  double max_fds;        /* the soft RLIMIT_NOFILE of one process */
  double start_time;     /* unix seconds the master (or lone process) began */
} bh__proc_stats;

/* Fills s; what cannot be read counts as 0. */
void bh__proc_sample(bh__proc_stats *s);

#endif
