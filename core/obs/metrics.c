/*
 * Prometheus text exposition (format 0.0.4).
 *
 * Families and their series live in open-addressing hash tables, so an
 * update to an existing series is a hash, a probe and a strcmp: no
 * allocation on the hot path. Families also sit on a list in declaration
 * order, which is the order they render in.
 *
 * Label strings are caller-formatted and may carry request-derived values,
 * so every family holds at most BH__METRICS_MAX_SERIES series of at most
 * BH__METRICS_MAX_LABELS bytes; updates that would need more are counted in
 * bulkhead_metrics_series_dropped_total instead of allocating.
 *
 * Every allocation of the registry, the registry itself included, goes
 * through the bh__allocator it was created with (a copy is kept inside),
 * so a registry built on a bh__arena lives entirely in that arena and any
 * process mapping it at the same address can update or render it. Only
 * rendering uses libc, for the caller's output and a scratch sort array.
 * There is no static mutable state, for the same reason.
 *
 * The tables are not thread-safe: lookups and inserts belong to the event
 * loop that owns the registry, or, when shared, to whoever holds the shared
 * lock. Values are different: every update is an atomic operation, so a
 * resolved series (bh__metrics_ref) is updated with no lock at all, from
 * any process mapping the registry, and rendering reads whole values.
 */
#include "obs/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/shard.h"

#define BH__METRICS_MAX_SERIES 10000
#define BH__METRICS_MAX_LABELS 1024
#define BH__METRICS_MAX_BUCKETS 64
#define BH__METRICS_DROPPED "bulkhead_metrics_series_dropped_total"

enum { BH__COUNTER, BH__GAUGE, BH__HISTOGRAM };

static const char *const bh__type_names[] = {"counter", "gauge", "histogram"};

static const double bh__default_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* Common head of everything stored in a table, so one table serves both
 * families (keyed by name) and series (keyed by label string). */
typedef struct bh__ment {
  uint64_t hash;
  const char *key;
} bh__ment;

typedef struct bh__mtab {
  bh__ment **slots; /* cap is 0 or a power of two, load <= 3/4 */
  size_t cap;
  size_t n;
} bh__mtab;

/* One process's share of a counter or histogram series (base/shard.h):
 * what its refs add, on cache lines no other process writes, so workers
 * updating the same series do not bounce a line between their cores.
 * Rendering adds the cells to the series' own values. */
typedef struct bh__cell {
  double value;
  uint64_t count;
  uint64_t buckets[];
} bh__cell;

typedef struct bh__series {
  bh__ment e;
  double value;   /* counter/gauge value, histogram sum */
  uint64_t count; /* histogram observations */
  /* NULL, or BH__SHARDS cells (NULL until that shard resolves a ref to
   * the series) followed by the BH__SHARDS blocks they were cut from */
  bh__cell **cells;
  uint64_t buckets[]; /* per-bucket hits, made cumulative when rendered; the
                         label string follows in the same allocation */
} bh__series;

typedef struct bh__family {
  bh__ment e;
  int type;
  char *help;
  double *bounds;
  size_t nbounds;
  bh__mtab series;
  struct bh__family *next;
  char name[];
} bh__family;

struct bh__metrics {
  bh__allocator a;
  bh__mtab families;
  bh__family *first, *last;
  bh__series *dropped;
};

/* Zeroed memory from the registry's allocator, NULL on overflow or when
 * out of memory. */
static void *bh__mcalloc(const bh__allocator *a, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  void *p = a->alloc(a->ctx, n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

static void bh__mfree(const bh__allocator *a, void *p) {
  if (p) a->free(a->ctx, p);
}

/* Atomic double updates through the bits (there is no atomic add for
 * doubles): a compare-and-swap loop that is uncontended almost always. */
static void bh__atomic_add_double(double *p, double v) {
  uint64_t *bits = (uint64_t *)(void *)p;
  uint64_t old = __atomic_load_n(bits, __ATOMIC_RELAXED), nv;
  do {
    double cur;
    memcpy(&cur, &old, sizeof(cur));
    cur += v;
    memcpy(&nv, &cur, sizeof(nv));
  } while (!__atomic_compare_exchange_n(bits, &old, nv, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
}

static void bh__atomic_set_double(double *p, double v) {
  uint64_t nv;
  memcpy(&nv, &v, sizeof(nv));
  __atomic_store_n((uint64_t *)(void *)p, nv, __ATOMIC_RELAXED);
}

static double bh__atomic_get_double(const double *p) {
  uint64_t bits =
      __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED);
  double v;
  memcpy(&v, &bits, sizeof(v));
  return v;
}

static uint64_t bh__atomic_get_u64(const uint64_t *p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* FNV-1a; stops after max + 1 bytes, since a longer key is rejected anyway
 * and hashing it whole would let a huge label string cost unbounded time. */
static uint64_t bh__hash(const char *s, size_t max, size_t *len) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; s[i] && i <= max; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  *len = i;
  return h;
}

/* The slot holding `key`, or the empty slot where it would go; NULL while
 * the table has never been allocated. */
static bh__ment **bh__mtab_slot(const bh__mtab *t, uint64_t h,
                                const char *key) {
  if (t->cap == 0) return NULL;
  size_t mask = t->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    bh__ment *e = t->slots[i];
    if (e == NULL || (e->hash == h && strcmp(e->key, key) == 0))
      return &t->slots[i];
  }
}

/* Places e in the first free slot of its probe chain; the caller
 * guarantees a free slot exists and that e's key is absent. */
static void bh__mtab_put(bh__ment **slots, size_t cap, bh__ment *e) {
  size_t j = (size_t)e->hash & (cap - 1);
  while (slots[j])
    j = (j + 1) & (cap - 1);
  slots[j] = e;
}

/* Inserts an entry whose key is known to be absent. */
static int bh__mtab_add(const bh__allocator *a, bh__mtab *t, bh__ment *e) {
  if ((t->n + 1) * 4 > t->cap * 3) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    bh__ment **slots = bh__mcalloc(a, cap, sizeof(*slots));
    if (slots == NULL) return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
      if (t->slots[i]) bh__mtab_put(slots, cap, t->slots[i]);
    bh__mfree(a, t->slots);
    t->slots = slots;
    t->cap = cap;
  }
  bh__mtab_put(t->slots, t->cap, e);
  t->n++;
  return 0;
}

static bh__family *bh__family_find(const bh__metrics *m, const char *name) {
  size_t len;
  uint64_t h = bh__hash(name, SIZE_MAX - 1, &len);
  bh__ment **slot = bh__mtab_slot(&m->families, h, name);
  return slot ? (bh__family *)*slot : NULL;
}

static void bh__series_free(const bh__allocator *a, bh__series *s) {
  if (s == NULL) return;
  if (s->cells) {
    for (int i = 0; i < BH__SHARDS; i++)
      bh__mfree(a, s->cells[BH__SHARDS + i]);
    bh__mfree(a, s->cells);
  }
  bh__mfree(a, s);
}

static void bh__family_free(const bh__allocator *a, bh__family *f) {
  for (size_t i = 0; i < f->series.cap; i++)
    bh__series_free(a, (bh__series *)f->series.slots[i]);
  bh__mfree(a, f->series.slots);
  bh__mfree(a, f->bounds);
  bh__mfree(a, f->help);
  bh__mfree(a, f);
}

/* The series for `labels`, created if needed; NULL (and counted as dropped)
 * when the family is full, the labels too long or memory short. */
static bh__series *bh__series_get(bh__metrics *m, bh__family *f,
                                  const char *labels) {
  if (labels == NULL) labels = "";
  size_t len;
  uint64_t h = bh__hash(labels, BH__METRICS_MAX_LABELS, &len);
  if (len > BH__METRICS_MAX_LABELS) goto drop;
  bh__ment **slot = bh__mtab_slot(&f->series, h, labels);
  if (slot && *slot) return (bh__series *)*slot;
  if (f->series.n >= BH__METRICS_MAX_SERIES) goto drop;
  size_t nb = f->type == BH__HISTOGRAM ? f->nbounds : 0;
  bh__series *s =
      bh__mcalloc(&m->a, 1, sizeof(*s) + nb * sizeof(uint64_t) + len + 1);
  if (s == NULL) goto drop;
  char *key = (char *)(s->buckets + nb);
  memcpy(key, labels, len + 1);
  s->e.hash = h;
  s->e.key = key;
  if (bh__mtab_add(&m->a, &f->series, &s->e) != 0) {
    bh__mfree(&m->a, s);
    goto drop;
  }
  return s;
drop:
  if (m->dropped) bh__atomic_add_double(&m->dropped->value, 1);
  return NULL;
}

static int bh__valid_name(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
        *s == ':'))
    return 0;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == ':'))
      return 0;
  return 1;
}

int bh__metrics_family(bh__metrics *m, const char *name, const char *type,
                       const char *help, const double *buckets,
                       size_t nbuckets) {
  if (m == NULL || name == NULL || type == NULL || !bh__valid_name(name))
    return -EINVAL;
  int t = -1;
  for (int i = 0; i < 3; i++)
    if (strcmp(type, bh__type_names[i]) == 0) t = i;
  if (t < 0) return -EINVAL;
  bh__family *old = bh__family_find(m, name);
  if (old) return old->type == t ? 0 : -EINVAL;

  size_t nb = 0;
  if (t == BH__HISTOGRAM) {
    if (buckets == NULL) {
      buckets = bh__default_buckets;
      nbuckets = sizeof(bh__default_buckets) / sizeof(double);
    }
    /* +Inf is implicit; bounds must be finite and strictly ascending or
     * the cumulative counts would be meaningless. */
    if (nbuckets == 0 || nbuckets > BH__METRICS_MAX_BUCKETS) return -EINVAL;
    for (size_t i = 0; i < nbuckets; i++)
      if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
        return -EINVAL;
    nb = nbuckets;
  }

  size_t len = strlen(name);
  bh__family *f = bh__mcalloc(&m->a, 1, sizeof(*f) + len + 1);
  if (f == NULL) return -ENOMEM;
  memcpy(f->name, name, len + 1);
  f->e.hash = bh__hash(name, SIZE_MAX - 1, &len);
  f->e.key = f->name;
  f->type = t;
  if (help && *help) {
    size_t hlen = strlen(help);
    if ((f->help = m->a.alloc(m->a.ctx, hlen + 1)) == NULL) goto oom;
    memcpy(f->help, help, hlen + 1);
  }
  if (nb) {
    f->bounds = m->a.alloc(m->a.ctx, nb * sizeof(double));
    if (f->bounds == NULL) goto oom;
    memcpy(f->bounds, buckets, nb * sizeof(double));
    f->nbounds = nb;
  }
  if (bh__mtab_add(&m->a, &m->families, &f->e) != 0) goto oom;
  if (m->last)
    m->last->next = f;
  else
    m->first = f;
  m->last = f;
  return 0;
oom:
  bh__family_free(&m->a, f);
  return -ENOMEM;
}

bh__metrics *bh__metrics_new(void) {
  return bh__metrics_new_with(&bh__libc_allocator);
}

bh__metrics *bh__metrics_new_with(const bh__allocator *a) {
  if (a == NULL) a = &bh__libc_allocator;
  bh__metrics *m = bh__mcalloc(a, 1, sizeof(*m));
  if (m == NULL) return NULL;
  /* A copy, so the registry does not depend on the caller's struct (which
   * may be on the stack or outside the shared mapping). */
  m->a = *a;
  /* Declared first and created with its series at 0 so it is always
   * exported; it is the operator's only sign of a cardinality problem. */
  if (bh__metrics_family(m, BH__METRICS_DROPPED, "counter",
                         "Metric updates dropped because a family reached "
                         "its series limit.",
                         NULL, 0) != 0)
    goto fail;
  m->dropped = bh__series_get(m, m->first, "");
  if (m->dropped == NULL) goto fail;
  return m;
fail:
  bh__metrics_free(m);
  return NULL;
}

void bh__metrics_free(bh__metrics *m) {
  if (m == NULL) return;
  for (bh__family *f = m->first, *n; f; f = n) {
    n = f->next;
    bh__family_free(&m->a, f);
  }
  bh__mfree(&m->a, m->families.slots);
  /* The allocator lives inside the block being freed. */
  bh__allocator a = m->a;
  bh__mfree(&a, m);
}

/* One observation: its bucket (none past the last bound: +Inf only), the
 * count and the sum, each atomically. Rendering may see them a moment
 * apart, which Prometheus tolerates (scrapes are not snapshots). */
static void bh__observe(const bh__family *f, double *sum, uint64_t *count,
                        uint64_t *buckets, double seconds) {
  size_t i = 0;
  while (i < f->nbounds && seconds > f->bounds[i])
    i++;
  if (i < f->nbounds) __atomic_fetch_add(&buckets[i], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
  bh__atomic_add_double(sum, seconds);
}

static void bh__series_observe(const bh__family *f, bh__series *s,
                               double seconds) {
  bh__observe(f, &s->value, &s->count, s->buckets, seconds);
}

/* This process's cell of s, made on first use (under the same lock as any
 * insert); NULL when memory is short, and the ref then updates the series
 * itself, as before. A cell is never freed before the registry, so the
 * next holder of a worker slot keeps adding to it. */
static bh__cell *bh__cell_get(bh__metrics *m, const bh__family *f,
                              bh__series *s) {
  int k = bh__shard_self;
  if (k < 0 || k >= BH__SHARDS) return NULL;
  if (s->cells == NULL) {
    s->cells = bh__mcalloc(&m->a, 2 * BH__SHARDS, sizeof(*s->cells));
    if (s->cells == NULL) return NULL;
  }
  if (s->cells[k]) return s->cells[k];
  size_t nb = f->type == BH__HISTOGRAM ? f->nbounds : 0;
  size_t n = sizeof(bh__cell) + nb * sizeof(uint64_t);
  /* whole cache lines, aligned: the allocator only promises 16 bytes */
  n = (n + BH__CACHELINE - 1) & ~(size_t)(BH__CACHELINE - 1);
  void *raw = bh__mcalloc(&m->a, 1, n + BH__CACHELINE - 16);
  if (raw == NULL) return NULL;
  uintptr_t at =
      ((uintptr_t)raw + BH__CACHELINE - 1) & ~(uintptr_t)(BH__CACHELINE - 1);
  s->cells[BH__SHARDS + k] = raw;
  s->cells[k] = (bh__cell *)at;
  return s->cells[k];
}

void bh__metrics_inc(bh__metrics *m, const char *name, const char *labels,
                     double v) {
  if (m == NULL || name == NULL) return;
  bh__family *f = bh__family_find(m, name);
  if (f == NULL || f->type == BH__HISTOGRAM) return;
  /* A counter only goes up; a negative or NaN step would corrupt rate(). */
  if (f->type == BH__COUNTER && !(v >= 0)) return;
  bh__series *s = bh__series_get(m, f, labels);
  if (s) bh__atomic_add_double(&s->value, v);
}

void bh__metrics_set(bh__metrics *m, const char *name, const char *labels,
                     double v) {
  if (m == NULL || name == NULL) return;
  bh__family *f = bh__family_find(m, name);
  if (f == NULL || f->type == BH__HISTOGRAM) return;
  bh__series *s = bh__series_get(m, f, labels);
  if (s) bh__atomic_set_double(&s->value, v);
}

void bh__metrics_observe(bh__metrics *m, const char *name, const char *labels,
                         double seconds) {
  if (m == NULL || name == NULL) return;
  bh__family *f = bh__family_find(m, name);
  /* NaN would poison _sum forever and belongs to no bucket. */
  if (f == NULL || f->type != BH__HISTOGRAM || isnan(seconds)) return;
  bh__series *s = bh__series_get(m, f, labels);
  if (s) bh__series_observe(f, s, seconds);
}

int bh__metrics_ref_get(bh__metrics *m, const char *name, const char *labels,
                        bh__metrics_ref *out) {
  out->family = NULL;
  out->series = NULL;
  out->cell = NULL;
  if (m == NULL || name == NULL) return -ENOENT;
  bh__family *f = bh__family_find(m, name);
  if (f == NULL) return -ENOENT;
  bh__series *s = bh__series_get(m, f, labels);
  if (s == NULL) return -ENOSPC;
  out->family = f;
  out->series = s;
  out->cell = NULL;
  /* A gauge stays one value: it may be set, and a set cannot reach the
   * other processes' cells. Counters and histograms only add up. */
  if (f->type != BH__GAUGE) out->cell = bh__cell_get(m, f, s);
  return 0;
}

void bh__metrics_ref_inc(const bh__metrics_ref *r, double v) {
  const bh__family *f = r->family;
  if (f == NULL || f->type == BH__HISTOGRAM) return;
  if (f->type == BH__COUNTER && !(v >= 0)) return;
  bh__cell *c = r->cell;
  bh__atomic_add_double(c ? &c->value : &((bh__series *)r->series)->value, v);
}

void bh__metrics_ref_observe(const bh__metrics_ref *r, double seconds) {
  const bh__family *f = r->family;
  if (f == NULL || f->type != BH__HISTOGRAM || isnan(seconds)) return;
  bh__cell *c = r->cell;
  if (c)
    bh__observe(f, &c->value, &c->count, c->buckets, seconds);
  else
    bh__series_observe(f, r->series, seconds);
}

void bh__metrics_label_escape(bh__buf *b, const char *value) {
  if (value == NULL) return;
  const char *run = value;
  for (const char *p = value; *p; p++) {
    const char *esc = *p == '\\'   ? "\\\\"
                      : *p == '"'  ? "\\\""
                      : *p == '\n' ? "\\n"
                                   : NULL;
    if (esc == NULL) continue;
    bh__buf_append(b, run, (size_t)(p - run));
    bh__buf_puts(b, esc);
    run = p + 1;
  }
  bh__buf_puts(b, run);
}

/* Formats v the way Prometheus clients do: integral values without a
 * fraction, others in the shortest form that reads back exactly. */
static const char *bh__fmt_num(char out[32], double v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0"; /* also -0 */
  if (fabs(v) < 1e15 && v == trunc(v)) {
    snprintf(out, 32, "%.0f", v);
    return out;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(out, 32, "%.*g", prec, v);
    if (strtod(out, NULL) == v) break;
  }
  return out;
}

/* name + suffix, then the label body and le (either may be absent), then
 * the value separator. */
static void bh__series_name(bh__buf *b, const bh__family *f, const char *suffix,
                            const char *labels, const char *le) {
  bh__buf_puts(b, f->name);
  bh__buf_puts(b, suffix);
  if (*labels || le) {
    bh__buf_putc(b, '{');
    bh__buf_puts(b, labels);
    if (le) bh__buf_printf(b, "%sle=\"%s\"", *labels ? "," : "", le);
    bh__buf_putc(b, '}');
  }
  bh__buf_putc(b, ' ');
}

/* The series' value (sum) and count with every process's cell added. */
static double bh__series_value(const bh__series *s) {
  double v = bh__atomic_get_double(&s->value);
  for (int k = 0; s->cells && k < BH__SHARDS; k++)
    if (s->cells[k]) v += bh__atomic_get_double(&s->cells[k]->value);
  return v;
}

static uint64_t bh__series_count(const bh__series *s) {
  uint64_t n = bh__atomic_get_u64(&s->count);
  for (int k = 0; s->cells && k < BH__SHARDS; k++)
    if (s->cells[k]) n += bh__atomic_get_u64(&s->cells[k]->count);
  return n;
}

static uint64_t bh__series_bucket(const bh__series *s, size_t i) {
  uint64_t n = bh__atomic_get_u64(&s->buckets[i]);
  for (int k = 0; s->cells && k < BH__SHARDS; k++)
    if (s->cells[k]) n += bh__atomic_get_u64(&s->cells[k]->buckets[i]);
  return n;
}

static void bh__render_series(bh__buf *b, const bh__family *f,
                              const bh__series *s, int om) {
  char num[32];
  const char *l = s->e.key;
  if (f->type != BH__HISTOGRAM) {
    bh__series_name(b, f, "", l, NULL);
    bh__buf_puts(b, bh__fmt_num(num, bh__series_value(s)));
    bh__buf_putc(b, '\n');
    return;
  }
  /* the count first, and never less than the buckets' sum, so the
   * cumulative buckets stay monotonic up to +Inf even while observations
   * land during the scrape */
  uint64_t count = bh__series_count(s);
  uint64_t cum = 0;
  for (size_t i = 0; i < f->nbounds; i++) {
    cum += bh__series_bucket(s, i);
    if (cum > count) cum = count;
    const char *le = bh__fmt_num(num, f->bounds[i]);
    /* OpenMetrics wants le in its canonical float form: "1.0", not "1" */
    if (om && strpbrk(le, ".eEnN") == NULL && strlen(le) < sizeof(num) - 2) {
      if (le != num) le = strcpy(num, le);
      strcat(num, ".0");
    }
    bh__series_name(b, f, "_bucket", l, le);
    bh__buf_u64(b, cum);
    bh__buf_putc(b, '\n');
  }
  bh__series_name(b, f, "_bucket", l, "+Inf");
  bh__buf_u64(b, count);
  bh__buf_putc(b, '\n');
  bh__series_name(b, f, "_sum", l, NULL);
  bh__buf_puts(b, bh__fmt_num(num, bh__series_value(s)));
  bh__buf_putc(b, '\n');
  bh__series_name(b, f, "_count", l, NULL);
  bh__buf_u64(b, count);
  bh__buf_putc(b, '\n');
}

static int bh__series_cmp(const void *a, const void *b) {
  const bh__series *x = *(const bh__series *const *)a;
  const bh__series *y = *(const bh__series *const *)b;
  return strcmp(x->e.key, y->e.key);
}

/* The family's name as # HELP / # TYPE give it. OpenMetrics names a
 * counter's family without its _total (the samples keep it); the text
 * format 0.0.4 names it in full. *_info stays a gauge in both: promtool
 * and the 0.0.4 parsers know no info type. */
static void bh__family_head(bh__buf *out, const bh__family *f, int om) {
  size_t n = strlen(f->name);
  const char *type = bh__type_names[f->type];
  if (om && f->type == BH__COUNTER && n > 6 &&
      strcmp(f->name + n - 6, "_total") == 0)
    n -= 6;
  if (f->help) {
    bh__buf_append(out, "# HELP ", 7);
    bh__buf_append(out, f->name, n);
    bh__buf_putc(out, ' ');
    /* HELP escapes only \ and newline (and " in OpenMetrics) */
    for (const char *p = f->help; *p; p++) {
      if (*p == '\\')
        bh__buf_puts(out, "\\\\");
      else if (*p == '\n')
        bh__buf_puts(out, "\\n");
      else if (om && *p == '"')
        bh__buf_puts(out, "\\\"");
      else
        bh__buf_putc(out, *p);
    }
    bh__buf_putc(out, '\n');
  }
  bh__buf_append(out, "# TYPE ", 7);
  bh__buf_append(out, f->name, n);
  bh__buf_putc(out, ' ');
  bh__buf_puts(out, type);
  bh__buf_putc(out, '\n');
}

static int bh__render(const bh__metrics *m, bh__buf *out, int om) {
  if (m == NULL || out == NULL) return -EINVAL;
  for (const bh__family *f = m->first; f; f = f->next) {
    bh__family_head(out, f, om);
    if (f->series.n == 0) continue;
    /* Hash order changes with every insert; sorting keeps scrapes and
     * diffs stable. */
    bh__series **v = malloc(f->series.n * sizeof(*v));
    if (v == NULL) {
      out->failed = 1;
      return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < f->series.cap; i++)
      if (f->series.slots[i]) v[n++] = (bh__series *)f->series.slots[i];
    qsort(v, n, sizeof(*v), bh__series_cmp);
    for (size_t i = 0; i < n; i++)
      bh__render_series(out, f, v[i], om);
    free(v);
  }
  if (om) bh__buf_puts(out, "# EOF\n");
  return bh__buf_failed(out) ? -ENOMEM : 0;
}

int bh__metrics_render(const bh__metrics *m, bh__buf *out) {
  return bh__render(m, out, 0);
}

int bh__metrics_render_om(const bh__metrics *m, bh__buf *out) {
  return bh__render(m, out, 1);
}
