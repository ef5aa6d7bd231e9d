/*
 * Structured JSON logs, one line per event. Writers on the loop never block:
 * lines go into a bounded in-memory ring per thread (no allocation, no lock
 * per line) drained by a dedicated thread; a
 * sink that fails or blocks (closed stdout, full disk, a stalled pipe) only
 * makes lines drop, counted in bh__log_dropped().
 */
#ifndef BH_CORE_LOG_H
#define BH_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum bh__log_level { BH__DEBUG = 0, BH__INFO, BH__WARN, BH__ERROR };

/* target: "stdout", "stderr", "off", or a file path (appended, created
 * 0640). 0 or negative errno. Until it is called, lines go synchronously to
 * stderr (start-up and `-t` diagnostics). */
int bh__log_open(const char *target, int min_level);
/* Around fork() in a process whose log writer runs: prepare holds the log
 * locks (and waits out the writer's start-up, after which it allocates
 * nothing; producers allocate nothing under them), the parent then
 * calls fork_parent, the child bh__log_after_fork. */
void bh__log_fork_prepare(void);
void bh__log_fork_parent(void);
/* In a child after fork(): fresh locks and a writer thread of its own on
 * the same sink; lines the parent had queued are left to the parent. */
int bh__log_after_fork(void);
/* Flushes what is queued (bounded wait) and stops the thread. */
void bh__log_close(void);
/* "debug" | "info" | "warn" | "error" -> level, or -EINVAL. */
int bh__log_level_parse(const char *s);

/* log_format: the field names of every line's time, level and event, and
 * of the access-log line's fields (http/response.c): ours, Elastic Common
 * Schema, or OpenTelemetry semantic conventions. */
enum bh__log_format {
  BH__LOGFMT_BULKHEAD = 0,
  BH__LOGFMT_ECS = 1,
  BH__LOGFMT_OTEL = 2
};
/* "bulkhead" | "ecs" | "otel" -> enum bh__log_format, or -EINVAL. */
int bh__log_format_parse(const char *s);
/* Set once at start-up, before workers fork. */
void bh__log_set_format(int format);
int bh__log_get_format(void);

/* A line under construction: {"time":"...","level":"...","event":"..." */
typedef struct bh__logline {
  bh__buf b;
  int level;
  int skip; /* below the minimum level: builders are no-ops */
  int lent; /* b is the thread's reused line buffer (log.c) */
} bh__logline;

void bh__log_begin(bh__logline *l, int level, const char *event);
/* The same with room for `size` bytes reserved at once: a line known to
 * be long (the access log's) costs one allocation, not a grow. */
void bh__log_begin_sized(bh__logline *l, int level, const char *event,
                         size_t size);
void bh__log_str(bh__logline *l, const char *key, const char *value);
void bh__log_int(bh__logline *l, const char *key, int64_t value);
/* The same with a key framed at compile time (BH__JKEY): no key scan, one
 * room check per field. The access log's way. */
void bh__log_kstr(bh__logline *l, const bh__jkey *key, const char *value);
void bh__log_kint(bh__logline *l, const bh__jkey *key, int64_t value);
/* A value the core made or checked to be plain characters only (request
 * ids, trace ids): quoted, with no escape scan. */
void bh__log_kraw(bh__logline *l, const bh__jkey *key, const char *value);
/* Closes the object and queues the line (or drops it, counted). */
void bh__log_end(bh__logline *l);

/* One-shot: an event with a printf-formatted "msg". */
void bh__logf(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

uint64_t bh__log_dropped(void);

#endif
