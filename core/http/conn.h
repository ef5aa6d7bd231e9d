/*
 * Inside http/: what the connection (http.c) and its parser (parse.c)
 * share. Nothing outside this folder includes it.
 */
#ifndef BH_CORE_HTTP_CONN_H
#define BH_CORE_HTTP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "http/http-t.h"

/* http.c: (re)arms the connection timer (header, body, keep-alive). */
void bh__conn_timer(bh__conn *c, uint32_t ms);

/* parse.c: scans bytes about to be parsed for an obs-folded header line
 * (which llhttp accepts), state in c->fold_state; -EPROTO when one starts
 * in them, else 0. */
enum {
  BH__FOLD_START = 0,
  BH__FOLD_LINE,
  BH__FOLD_LINE_START,
  BH__FOLD_CR,
  BH__FOLD_DONE
};
int bh__fold_scan(bh__conn *c, const char *data, size_t len);

/* http.c: reading, for the streamed body. */
void bh__conn_read_stop(bh__conn *c);
void bh__conn_read_start(bh__conn *c);
/* What the paused parser left of data (len bytes) goes to c->pending.
 * 0 or -ENOMEM. */
int bh__conn_keep_rest(bh__conn *c, const char *data, size_t len);

/* stream_body.c: bytes of a streamed body read from the socket go to the
 * parser and on to the request's sink. */
void bh__conn_body_feed(bh__conn *c, const char *data, size_t len);
/* The streamed body ends (code NULL: whole); the sink hears it. */
void bh__conn_body_end(bh__conn *c, const char *code);

#endif
