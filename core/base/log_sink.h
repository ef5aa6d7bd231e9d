/*
 * Writing log bytes to the sink (base/log.c's writer thread and its
 * synchronous path).
 */
#ifndef BH_CORE_LOG_SINK_H
#define BH_CORE_LOG_SINK_H

#include <stddef.h>

/* The largest write that keeps lines whole on fd: PIPE_BUF when fd is a
 * pipe or a socket (the master and its workers share one stdout pipe, and
 * only writes up to PIPE_BUF are atomic there: a longer one may be split
 * around another process's line, corrupting both), 0 (no limit) for a
 * file. */
size_t bh__log_sink_piece(int fd);
/* Writes p[0, n), whole lines, in pieces of at most `piece` bytes that
 * end at a line end (a single longer line goes alone); 0: one write.
 * EINTR retried, EAGAIN waits for room. 0 or negative errno. */
int bh__log_sink_write(int fd, size_t piece, const char *p, size_t n);

#endif
