/*
 * Retry policy: pure functions of their arguments (the caller supplies the
 * clock and the randomness), so every rule is unit-testable.
 */
#include "policy/retry.h"

#include <errno.h>
#include <string.h>

#include "bulkhead/plugin.h"

void bh__retry_cfg_defaults(bh__retry_cfg *cfg) {
  /* Every field, not only the zero ones: 0 is a meaningful max_retries
   * ("never retry") and budget_min, so config overrides after this. */
  cfg->max_retries = 2;
  cfg->base_ms = 100;
  cfg->cap_ms = 2000;
  cfg->budget_pct = 20;
  cfg->budget_min = 3;
  cfg->budget_window_ms = 10000;
  cfg->max_retry_after_s = 30;
}

int bh__retry_method_ok(const char *method, int marked_safe) {
  static const char *const idempotent[] = {"GET", "HEAD",   "OPTIONS",
                                           "PUT", "DELETE", "TRACE"};
  if (method == NULL) return 0;
  /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
  for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
    if (strcmp(method, idempotent[i]) == 0) return 1;
  if (marked_safe &&
      (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0))
    return 1;
  return 0;
}

int bh__retry_outcome_ok(uint32_t transport, int status) {
  if (transport != 0) {
    /* A timeout has spent the deadline; TLS failures (bad certificate,
     * protocol mismatch) would fail the same way again. */
    if (transport & (BH_TRANSPORT_TIMEOUT | BH_TRANSPORT_TLS)) return 0;
    return (transport & (BH_TRANSPORT_CONNECT | BH_TRANSPORT_DNS |
                         BH_TRANSPORT_RESET)) != 0;
  }
  switch (status) {
  case 408:
  case 429:
  case 502:
  case 503:
  case 504: return 1;
  default: return 0;
  }
}

int64_t bh__retry_delay_ms(const bh__retry_cfg *cfg, uint32_t attempt,
                           uint64_t rnd, int64_t retry_after_ms) {
  if (retry_after_ms >= 0 &&
      (uint64_t)retry_after_ms > (uint64_t)cfg->max_retry_after_s * 1000)
    return -1;
  uint32_t shift = attempt ? attempt - 1 : 0;
  /* base * 2^shift fits in 64 bits for shift < 32; beyond, it is past any
   * 32-bit cap anyway. */
  uint64_t ceil_ms = cfg->cap_ms;
  if (shift < 32) {
    uint64_t exp = (uint64_t)cfg->base_ms << shift;
    if (exp < ceil_ms) ceil_ms = exp;
  }
  /* Full jitter, inclusive of the ceiling. The modulo bias of a 64-bit
   * value over a range below 2^32 is negligible. */
  int64_t delay = (int64_t)(rnd % (ceil_ms + 1));
  if (retry_after_ms > delay) delay = retry_after_ms;
  return delay;
}

/* Moves the two-bucket window so now_ms falls in the current bucket. */
static void bh__budget_roll(bh__retry_budget *b, uint64_t w, uint64_t now_ms) {
  if (now_ms < b->window_start_ms + w) return; /* also: clock went back */
  uint64_t gone = (now_ms - b->window_start_ms) / w;
  if (gone == 1) {
    b->requests_prev = b->requests_cur;
    b->retries_prev = b->retries_cur;
  } else {
    b->requests_prev = b->retries_prev = 0;
  }
  b->requests_cur = b->retries_cur = 0;
  b->window_start_ms += gone * w;
}

static uint64_t bh__budget_w(const bh__retry_cfg *cfg) {
  return cfg->budget_window_ms ? cfg->budget_window_ms : 1;
}

#define BH__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define BH__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Requests are counted per process (a shard each, written by its process
 * only), retries in the shared part under the lock: a retry is rare, a
 * request is every call. Both windows move on the same grid (multiples of
 * w from 0), so take() can line the shards up with the shared part: rolling
 * lazily gives what rolling on every request gave. */
void bh__retry_budget_request(bh__retry_budget *b, const bh__retry_cfg *cfg,
                              uint64_t now_ms) {
  uint32_t k = bh__shard_self > 0 && bh__shard_self < BH__SHARDS
                   ? (uint32_t)bh__shard_self
                   : 0;
  bh__retry_budget_shard *sh = &b->shards[k];
  uint64_t w = bh__budget_w(cfg);
  if (now_ms >= sh->window_start_ms + w) {
    uint64_t gone = (now_ms - sh->window_start_ms) / w;
    BH__STORE(&sh->requests_prev, gone == 1 ? sh->requests_cur : 0);
    BH__STORE(&sh->requests_cur, 0);
    BH__STORE(&sh->window_start_ms, sh->window_start_ms + gone * w);
  }
  if (sh->requests_cur < UINT32_MAX)
    BH__STORE(&sh->requests_cur, sh->requests_cur + 1);
  uint32_t n = BH__LOAD(&b->nshards);
  while (n <= k &&
         !__atomic_compare_exchange_n(&b->nshards, &n, k + 1, 0,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

/* Rolls the shared part to now_ms, or further to a shard's window when
 * that process already counted in a later one (its clock read later: the
 * latest roll wins, as when one struct counted everything), then sums the
 * shards' requests into requests_prev / requests_cur. */
static void bh__budget_gather(bh__retry_budget *b, uint64_t w,
                              uint64_t now_ms) {
  bh__budget_roll(b, w, now_ms);
  uint32_t n = BH__LOAD(&b->nshards);
  if (n > BH__SHARDS) n = BH__SHARDS;
  for (uint32_t s = 0; s < n; s++) {
    uint64_t ws = BH__LOAD(&b->shards[s].window_start_ms);
    if (ws > b->window_start_ms) bh__budget_roll(b, w, ws);
  }
  uint64_t prev = 0, cur = 0;
  for (uint32_t s = 0; s < n; s++) {
    const bh__retry_budget_shard *sh = &b->shards[s];
    uint64_t ws = BH__LOAD(&sh->window_start_ms);
    uint32_t sc = BH__LOAD(&sh->requests_cur),
             sp = BH__LOAD(&sh->requests_prev);
    if (ws == b->window_start_ms) {
      prev += sp;
      cur += sc;
    } else if (ws + w == b->window_start_ms) {
      prev += sc;
    }
  }
  b->requests_prev = prev > UINT32_MAX ? UINT32_MAX : (uint32_t)prev;
  b->requests_cur = cur > UINT32_MAX ? UINT32_MAX : (uint32_t)cur;
}

int bh__retry_budget_take(bh__retry_budget *b, const bh__retry_cfg *cfg,
                          uint64_t now_ms) {
  uint64_t w = bh__budget_w(cfg);
  bh__budget_gather(b, w, now_ms);
  /* Sliding estimate: the previous bucket weighs by how much of it still
   * overlaps the window ending now. */
  uint64_t elapsed =
      now_ms > b->window_start_ms ? now_ms - b->window_start_ms : 0;
  double prev_weight = (double)(w - elapsed) / (double)w;
  double requests = b->requests_cur + b->requests_prev * prev_weight;
  double retries = b->retries_cur + b->retries_prev * prev_weight;
  /* retries < max(min, pct% of requests), without a division. */
  int ok = retries < (double)cfg->budget_min ||
           retries * 100.0 < (double)cfg->budget_pct * requests;
  if (!ok) return 0;
  if (b->retries_cur < UINT32_MAX) b->retries_cur++;
  return 1;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" (IMF-fixdate, RFC 9110 5.6.7). The
 * obsolete RFC 850 and asctime forms are not accepted: a sender of
 * Retry-After that old gets no retry, which is the safe side. */
static int bh__two(const char *s, int *v) {
  if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
  *v = (s[0] - '0') * 10 + (s[1] - '0');
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so no timegm/TZ dependency. */
static int64_t bh__days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int bh__imf_fixdate(const char *s, size_t len, int64_t *out) {
  static const char *const days[] = {"Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat", "Sun"};
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (len != 29) return -1;
  int ok = 0;
  for (int i = 0; i < 7; i++)
    if (memcmp(s, days[i], 3) == 0) ok = 1;
  if (!ok || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' ||
      s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
      memcmp(s + 25, " GMT", 4) != 0)
    return -1;
  int day, mon = 0, yh, yl, hh, mm, ss;
  for (int i = 0; i < 12; i++)
    if (memcmp(s + 8, months + 3 * i, 3) == 0) mon = i + 1;
  if (mon == 0 || bh__two(s + 5, &day) || bh__two(s + 12, &yh) ||
      bh__two(s + 14, &yl) || bh__two(s + 17, &hh) || bh__two(s + 20, &mm) ||
      bh__two(s + 23, &ss))
    return -1;
  int year = yh * 100 + yl;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int dim = mon == 2 && !leap ? 28 : mdays[mon - 1];
  /* Second 60 is a leap second (RFC 9110 allows it). */
  if (day < 1 || day > dim || hh > 23 || mm > 59 || ss > 60) return -1;
  *out = bh__days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
  return 0;
}

int64_t bh__retry_after_parse(const char *value, int64_t now_s) {
  if (value == NULL) return -1;
  /* Optional whitespace around a field value is not part of it. */
  const char *s = value;
  while (*s == ' ' || *s == '\t')
    s++;
  size_t len = strlen(s);
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len == 0) return -1;

  if (s[0] >= '0' && s[0] <= '9') {
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
      if (s[i] < '0' || s[i] > '9') return -1;
      int d = s[i] - '0';
      if (v > (INT64_MAX - d) / 10) return -1;
      v = v * 10 + d;
    }
    return v;
  }

  int64_t t;
  if (bh__imf_fixdate(s, len, &t) != 0) return -1;
  if (t <= now_s) return 0;
  /* Unsigned: a far-past now_s must not overflow the subtraction. */
  uint64_t d = (uint64_t)t - (uint64_t)now_s;
  return d > INT64_MAX ? INT64_MAX : (int64_t)d;
}
