/*
 * W3C Trace Context (trace.c): the incoming traceparent is checked as the
 * Recommendation says; a request without a valid one starts a new trace.
 * The gateway is one span of the trace: its own span id is the parent-id
 * of every upstream call the request makes.
 */
#ifndef BH_CORE_BASE_TRACE_H
#define BH_CORE_BASE_TRACE_H

#include <stddef.h>

/* The longest tracestate passed on (the Recommendation's 32 members of at
 * most 256 + 1 + 256 bytes are more than any real header carries; 512 is
 * what it asks a platform to keep at least). */
#define BH__TRACESTATE_MAX 512
/* "traceparent: " + 55 + NUL */
#define BH__TRACEPARENT_LINE 72

typedef struct bh__trace {
  char trace_id[33];  /* 32 lowercase hex, "" until started */
  char span_id[17];   /* ours */
  char parent_id[17]; /* the caller's span, "" when the trace began here */
  char flags[3];      /* the caller's trace-flags, "00" on a new trace */
} bh__trace;

/* 0 when `tp` is a traceparent we may continue, with its trace id, parent
 * id and flags in t; -EINVAL otherwise (t untouched). */
int bh__trace_parse(const char *tp, bh__trace *t);
/* Starts the gateway's span: continues `traceparent` when valid, else a new
 * trace; a fresh span id either way. 1 when continued, 0 when new. */
int bh__trace_start(bh__trace *t, const char *traceparent);
/* A tracestate value we pass on: at most BH__TRACESTATE_MAX bytes of
 * visible ASCII, spaces and tabs (list members are not re-parsed). */
int bh__tracestate_ok(const char *ts);
/* "traceparent: 00-<trace>-<span>-<flags>" into out (BH__TRACEPARENT_LINE
 * bytes), our span as the parent-id; "" when t was never started. */
void bh__trace_line(const bh__trace *t, char *out);

#endif
