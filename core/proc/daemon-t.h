/*
 * The daemon's state: one per process, on one event loop; nothing is
 * shared across threads except through base/log.h.
 */
#ifndef BH_CORE_PROC_DAEMON_T_H
#define BH_CORE_PROC_DAEMON_T_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/http-t.h"
#include "llhttp.h"

typedef struct bh__daemon bh__daemon;
typedef struct bh__plugin bh__plugin;
typedef struct bh__config bh__config;
typedef struct bh__router bh__router;
struct bh__client;
struct bh_upstream;
struct bh__metrics;
struct bh__limit;
struct bh__redis;

enum bh__role {
  BH__ROLE_SINGLE = 0, /* workers = 0: everything in one process */
  BH__ROLE_MASTER,     /* admin listener, supervises workers, runs no plugin */
  BH__ROLE_WORKER      /* API listener and plugins */
};

struct bh__daemon {
  uv_loop_t *loop;
  int role;
  int api_fd; /* worker: the listening socket inherited from the master */
  uv_timer_t heartbeat;
  struct bh__client *client; /* upstream client */
  struct bh_upstream *upstreams;
  struct bh__metrics *metrics;
  int metrics_shared;       /* the registry lives in the shared mapping */
  struct bh__limit *limits; /* rate-limit policies in use */
  struct bh__redis *redis;  /* the shared buckets' connection, or NULL
                               (upstream/redis.c) */
  bh__config *cfg;
  const bh_services *svc;
  bh__router *router;
  bh__plugin *plugins;
  size_t nplugins;
  struct bh__composites *composites; /* composite routes (gateway/) */
  bh__listener api;
  bh__listener admin;
  bh__conn *conns;
  size_t nconns;
  llhttp_settings_t parser_settings;
  uv_signal_t sig_term, sig_int;
  uv_timer_t drain_timer;
  uint64_t beats;
  uint64_t drain_started_ms;
  int stopping;
  uint64_t started_ms;
  uint64_t requests_total;
};

#endif
