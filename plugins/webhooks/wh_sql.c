/*
 * Statements on either backend. On SQLite a wh_stmt wraps a prepared
 * statement. On PostgreSQL it holds the statement's SQL, translated once
 * from the SQLite text (?N parameters, the few SQLite-only phrases), and
 * its parameters as text; the first step sends it (PQexecParams) and the
 * rows are then read from the result, so wh_ops.c and wh_dispatch.c keep
 * one copy of their SQL and their stepping code.
 *
 * Store threads only: the statement belongs to its connection's thread.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wh.h"

#define WH_MAX_PARAMS 16

struct wh_stmt {
  wh_db *db;
  sqlite3_stmt *lite;
  /* postgres */
  char *sql;
  int nparams;
  /* 0: inferred; text for a parameter the statement does not use (the
   * SQL of a family of statements binds them all), which PostgreSQL
   * could not type */
  Oid types[WH_MAX_PARAMS];
  const char *val[WH_MAX_PARAMS];
  char num[WH_MAX_PARAMS][24];
  PGresult *res;
  int row, nrows;
};

/* ---- SQLite text to PostgreSQL text ------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static int starts(const char *s, const char *w) {
  return strncmp(s, w, strlen(w)) == 0;
}

/* The phrases SQLite has and PostgreSQL spells otherwise. Parameters of a
 * bare CASE WHEN / AND / IS NULL have no type PostgreSQL could infer: they
 * carry integer flags (0 / 1) or text, so say which. */
static const struct {
  const char *lite, *pg;
} phrases[] = {
    {"INSERT OR IGNORE INTO ", "INSERT INTO "},
    {"INSERT OR REPLACE INTO ", "INSERT INTO "},
    {"lower(hex(randomblob(12)))",
     "substr(md5(random()::text || clock_timestamp()::text), 1, 24)"},
    {"INDEXED BY deliveries_leased ", ""},
    {"+d.", "d."},
};

char *wh_sql_pg(const char *sql, int *nparams, unsigned *used) {
  sbuf b = {0};
  int maxp = 0;
  *used = 0;
  int ignore = starts(sql, "INSERT OR IGNORE INTO ");
  int replace = starts(sql, "INSERT OR REPLACE INTO attempts");
  for (const char *s = sql; *s;) {
    size_t k, np = sizeof(phrases) / sizeof(phrases[0]);
    for (k = 0; k < np; k++)
      if (starts(s, phrases[k].lite)) break;
    if (k < np) {
      put(&b, phrases[k].pg, strlen(phrases[k].pg));
      s += strlen(phrases[k].lite);
      continue;
    }
    if (*s == '?' && s[1] >= '0' && s[1] <= '9') {
      char *end;
      long n = strtol(s + 1, &end, 10);
      if (n > maxp) maxp = (int)n;
      if (n >= 1 && n <= 32) *used |= 1u << (n - 1);
      char p[32];
      const char *cast = "";
      int after_when = b.n >= 5 && (strncmp(b.p + b.n - 5, "WHEN ", 5) == 0 ||
                                    strncmp(b.p + b.n - 4, "AND ", 4) == 0);
      if (after_when && (starts(end, " THEN") || starts(end, " AND ")))
        cast = "::int <> 0";
      else if (starts(end, " IS NULL"))
        cast = "::text";
      snprintf(p, sizeof(p), "$%ld%s", n, cast);
      put(&b, p, strlen(p));
      s = end;
      continue;
    }
    put(&b, s, 1);
    s++;
  }
  if (ignore) put(&b, " ON CONFLICT DO NOTHING", 23);
  if (replace) {
    static const char up[] =
        " ON CONFLICT (delivery_seq, n) DO UPDATE SET at = excluded.at, "
        "duration_ms = excluded.duration_ms, status = excluded.status, "
        "error = excluded.error";
    put(&b, up, sizeof(up) - 1);
  }
  /* a claim's candidates: rows another instance is claiming are skipped,
   * never waited for (and never claimed twice) */
  if (strstr(sql, "ORDER BY next_at LIMIT"))
    put(&b, " FOR UPDATE SKIP LOCKED", 23);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *nparams = maxp;
  return b.p;
}

/* ---- statements -------------------------------------------------------- */

wh_stmt *wh_stmt_new(wh_db *db, const char *sql, int *rc) {
  wh_stmt *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  st->db = db;
  if (db->postgres) {
    unsigned used = 0;
    st->sql = wh_sql_pg(sql, &st->nparams, &used);
    if (st->sql == NULL || st->nparams > WH_MAX_PARAMS) {
      *rc = st->sql ? SQLITE_INTERNAL : SQLITE_NOMEM;
      wh_stmt_free(st);
      return NULL;
    }
    for (int i = 0; i < st->nparams; i++)
      st->types[i] = used & (1u << i) ? 0 : 25; /* TEXTOID */
    *rc = SQLITE_OK;
    return st;
  }
  *rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->lite,
                           NULL);
  if (*rc != SQLITE_OK) {
    wh_stmt_free(st);
    return NULL;
  }
  return st;
}

void wh_stmt_free(wh_stmt *st) {
  if (st == NULL) return;
  sqlite3_finalize(st->lite);
  PQclear(st->res);
  free(st->sql);
  free(st);
}

void wh_bind_int64(wh_stmt *st, int i, int64_t v) {
  if (st->lite) {
    sqlite3_bind_int64(st->lite, i, v);
  } else if (i >= 1 && i <= WH_MAX_PARAMS) {
    snprintf(st->num[i - 1], sizeof(st->num[0]), "%lld", (long long)v);
    st->val[i - 1] = st->num[i - 1];
  }
}

void wh_bind_int(wh_stmt *st, int i, int v) {
  wh_bind_int64(st, i, v);
}

void wh_bind_text(wh_stmt *st, int i, const char *s) {
  if (st->lite) {
    if (s)
      sqlite3_bind_text(st->lite, i, s, -1, SQLITE_STATIC);
    else
      sqlite3_bind_null(st->lite, i);
  } else if (i >= 1 && i <= WH_MAX_PARAMS) {
    st->val[i - 1] = s;
  }
}

/* A failed PostgreSQL statement as the SQLite code the callers expect. */
static int pg_failure(PGresult *r) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (state && strncmp(state, "23", 2) == 0) return SQLITE_CONSTRAINT;
  if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
    return SQLITE_BUSY;
  return SQLITE_IOERR;
}

int wh_step(wh_stmt *st) {
  if (st->lite) return sqlite3_step(st->lite);
  if (st->res == NULL) {
    PGconn *c = st->db->pg;
    if (c == NULL) return SQLITE_IOERR;
    PGresult *r = PQexecParams(c, st->sql, st->nparams, st->types, st->val,
                               NULL, NULL, 0);
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
      int rc = pg_failure(r);
      PQclear(r);
      st->db->pg_changes = 0;
      return rc;
    }
    st->db->pg_changes = atoll(PQcmdTuples(r));
    st->res = r;
    st->nrows = s == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    st->row = -1;
  }
  if (st->row + 1 < st->nrows) {
    st->row++;
    return SQLITE_ROW;
  }
  st->row = st->nrows;
  return SQLITE_DONE;
}

void wh_reset(wh_stmt *st) {
  if (st->lite) {
    sqlite3_reset(st->lite);
    return;
  }
  PQclear(st->res);
  st->res = NULL;
}

void wh_unbind(wh_stmt *st) {
  wh_reset(st);
  if (st->lite)
    sqlite3_clear_bindings(st->lite);
  else
    memset(st->val, 0, sizeof(st->val));
}

static int pg_row_ok(wh_stmt *st, int i) {
  return st->res && st->row >= 0 && st->row < st->nrows && i >= 0 &&
         i < PQnfields(st->res);
}

int wh_col_type(wh_stmt *st, int i) {
  if (st->lite) return sqlite3_column_type(st->lite, i);
  if (!pg_row_ok(st, i) || PQgetisnull(st->res, st->row, i)) return SQLITE_NULL;
  return SQLITE_TEXT;
}

int64_t wh_col_int64(wh_stmt *st, int i) {
  if (st->lite) return sqlite3_column_int64(st->lite, i);
  if (!pg_row_ok(st, i)) return 0;
  return strtoll(PQgetvalue(st->res, st->row, i), NULL, 10);
}

int wh_col_int(wh_stmt *st, int i) {
  return (int)wh_col_int64(st, i);
}

const unsigned char *wh_col_text(wh_stmt *st, int i) {
  if (st->lite) return sqlite3_column_text(st->lite, i);
  if (!pg_row_ok(st, i) || PQgetisnull(st->res, st->row, i)) return NULL;
  return (const unsigned char *)PQgetvalue(st->res, st->row, i);
}
