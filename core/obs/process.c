/*
 * process_* as the Prometheus client libraries define them, read from
 * /proc/<pid>/stat and /proc/<pid>/fd of the master and each worker slot
 * in the shared state (or of this process alone without workers).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "obs/process.h"
#include "state/shm.h"

/* utime, stime, starttime (clock ticks) and rss (pages) of pid; 0 or -1. */
static int bh__stat_of(int pid, double *cpu_ticks, double *start_ticks,
                       double *rss_pages) {
  char path[48], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* the command name may hold spaces and parentheses: fields count from
   * the last ')' (field 2's end); state is field 3 */
  char *p = strrchr(buf, ')');
  if (p == NULL) return -1;
  /* field 3 (state) follows; count the fields after it */
  char *save = NULL;
  int field = 3;
  double utime = 0, stime = 0, start = 0, rss = 0;
  for (char *t = strtok_r(p + 1, " ", &save); t && field <= 24;
       t = strtok_r(NULL, " ", &save), field++) {
    if (field == 14) utime = strtod(t, NULL);
    if (field == 15) stime = strtod(t, NULL);
    if (field == 22) start = strtod(t, NULL);
    if (field == 24) rss = strtod(t, NULL);
  }
  if (field <= 24) return -1;
  *cpu_ticks = utime + stime;
  *start_ticks = start;
  *rss_pages = rss;
  return 0;
}

static double bh__fds_of(int pid) {
  char path[48];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid);
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  double n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  /* our own listing holds one descriptor of its own */
  return pid == getpid() && n > 0 ? n - 1 : n;
}

/* Boot time (unix seconds), from /proc/stat's btime. */
static double bh__boot_time(void) {
  FILE *f = fopen("/proc/stat", "re");
  if (f == NULL) return 0;
  char line[256];
  double bt = 0;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "btime ", 6) == 0) {
      bt = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return bt;
}

void bh__proc_sample(bh__proc_stats *s) {
  memset(s, 0, sizeof(*s));
  double hz = (double)sysconf(_SC_CLK_TCK);
  double page = (double)sysconf(_SC_PAGESIZE);
  if (hz <= 0) hz = 100;
  int pids[BH__SHM_WORKERS + 1];
  size_t n = 0;
  int master = bh__shm_g ? bh__shm_g->master_pid : 0;
  pids[n++] = master > 0 ? master : getpid();
  for (int i = 0; bh__shm_g && i < BH__SHM_WORKERS; i++) {
    int pid = bh__shm_g->workers[i].pid;
    if (pid > 0 && pid != pids[0]) pids[n++] = pid;
  }
  for (size_t i = 0; i < n; i++) {
    double cpu, start, rss;
    if (bh__stat_of(pids[i], &cpu, &start, &rss) != 0) continue;
    s->cpu_seconds += cpu / hz;
    s->resident_bytes += rss * page;
    s->open_fds += bh__fds_of(pids[i]);
    if (i == 0) s->start_time = bh__boot_time() + start / hz;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    s->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (double)rl.rlim_cur;
}
