/*
 * Metrics in Prometheus text format. Counters and histograms are keyed by a
 * family name and a label string; the set of label values is bounded by
 * what the daemon declares (routes, plugins, upstreams, codes), never by
 * client input.
 */
#ifndef BH_CORE_METRICS_H
#define BH_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/buf.h"

typedef struct bh__metrics bh__metrics;

/* On libc's heap. */
bh__metrics *bh__metrics_new(void);
/* Every allocation of the registry (itself included) through `a`, which
 * is copied into it; NULL means libc. For a registry in shared memory, `a`
 * allocates from the shared arena and the caller holds the shared lock
 * around every call below. Rendering still builds the caller's bh__buf on
 * the process's own heap. */
bh__metrics *bh__metrics_new_with(const bh__allocator *a);
/* Frees through the registry's allocator. */
void bh__metrics_free(bh__metrics *m);

/* Declares a family once: type "counter" | "gauge" | "histogram". For
 * histograms, `buckets` are the upper bounds in seconds (ascending), NULL
 * for the default latency buckets (0.001 .. 10). 0 or -EINVAL/-ENOMEM. */
int bh__metrics_family(bh__metrics *m, const char *name, const char *type,
                       const char *help, const double *buckets,
                       size_t nbuckets);

/* labels: a preformatted label body like `plugin="auth",status="200"` (the
 * caller escapes values with bh__metrics_label_escape), or "" for none.
 * Unknown family: ignored. Adds to / sets the series, creating it. */
void bh__metrics_inc(bh__metrics *m, const char *name, const char *labels,
                     double v);
void bh__metrics_set(bh__metrics *m, const char *name, const char *labels,
                     double v);
void bh__metrics_observe(bh__metrics *m, const char *name, const char *labels,
                         double seconds);

/* A series resolved once, for hot paths that update the same series over
 * and over: no label formatting, hashing or lock per update. Valid as long
 * as the registry. */
typedef struct bh__metrics_ref {
  const void *family; /* NULL: unresolved or dropped, updates are no-ops */
  void *series;
  void *cell; /* the resolving process's share of a counter or histogram
                 series (base/shard.h), NULL: the series itself */
} bh__metrics_ref;

/* Resolves (creating it if needed) the series of family `name` with
 * `labels`. 0, or -ENOENT (unknown family), -ENOSPC (dropped: family full,
 * labels too long, memory short) with *out unresolved. Same locking rule
 * as the calls above (it may insert). */
int bh__metrics_ref_get(bh__metrics *m, const char *name, const char *labels,
                        bh__metrics_ref *out);
/* Updates through a ref. Lock-free: every value update of the registry is
 * an atomic operation, so these need no lock even on a shared registry.
 * A counter or histogram ref adds to a cell of the process that resolved
 * it (its shard, base/shard.h), which rendering adds to the series: a ref
 * belongs to the process that resolved it. */
void bh__metrics_ref_inc(const bh__metrics_ref *r, double v);
void bh__metrics_ref_observe(const bh__metrics_ref *r, double seconds);

/* Appends value escaped for a label value (\\, \", \n). */
void bh__metrics_label_escape(bh__buf *b, const char *value);

/* Renders every family: # HELP, # TYPE, series sorted by labels,
 * histograms with _bucket{le=...} (cumulative, +Inf), _sum and _count. */
int bh__metrics_render(const bh__metrics *m, bh__buf *out);
/* The same in OpenMetrics 1.0 text: counter families named without
 * _total, HELP escaping '"' too, "# EOF" last. */
int bh__metrics_render_om(const bh__metrics *m, bh__buf *out);

#endif
