/*
 * Per-process shards of values every process updates on each request
 * (request counters, metric series, breaker and retry-budget windows).
 * A value shared by two workers is a cache line both write, which
 * bounces between their cores on every request; a shard is written by one
 * process only, and readers (/metrics, /admin/status, a breaker verdict)
 * add the shards up.
 *
 * Shard 0 belongs to the master, or to a single process (workers = 0);
 * shard 1 + i to whichever worker holds worker slot i of the shared
 * mapping. A shard outlives its worker: the worker that takes the slot
 * next keeps adding to the same shard, so a total never goes down when a
 * worker crashes or is replaced.
 */
#ifndef BH_CORE_SHARD_H
#define BH_CORE_SHARD_H

#define BH__SHARDS 65 /* 1 + BH__SHM_WORKERS (state/shm.h checks it) */
#define BH__CACHELINE 64

/* This process's shard, 0 until it claims a worker slot. */
extern int bh__shard_self;

#endif
