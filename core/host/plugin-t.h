/*
 * A plugin as the host keeps it (plugins.c), and its routes.
 */
#ifndef BH_CORE_HOST_PLUGIN_T_H
#define BH_CORE_HOST_PLUGIN_T_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/plugin.h"

typedef struct bh__daemon bh__daemon;
typedef struct bh__plugin bh__plugin;
typedef struct bh__plugin_conf bh__plugin_conf;
typedef struct bh__code bh__code;
struct bh__limit;
struct bh__shm_plugin;

enum bh__plugin_state {
  BH__PLUGIN_DISABLED = 0, /* enabled = false in config */
  BH__PLUGIN_FAILED,       /* load or init or start failed */
  BH__PLUGIN_INITIALIZED,  /* init done, loop not started yet */
  BH__PLUGIN_LOADED,       /* serving */
  BH__PLUGIN_QUARANTINED   /* charged with too many crashes or hangs */
};

struct bh_ctx {
  const bh_services *svc; /* bh_handle_head: must stay first */
  bh__plugin *plugin;
};

/* A composite route a plugin registered (ABI 1.3), copied as given; the
 * gateway parses and checks it once every plugin is loaded
 * (gateway/composite_conf.c). */
typedef struct bh__pcomposite {
  char *name;
  char *route;
  char **sections; /* "KEY = METHOD /path?query" */
  size_t nsections;
  char *required; /* or NULL */
  uint32_t timeout_ms;
} bh__pcomposite;

typedef struct bh__route {
  char *method;
  char *pattern;
  bh_handler_fn handler;
  void *data;
  uint32_t flags;
  size_t max_body_bytes; /* resolved: never 0 */
  uint32_t timeout_ms;   /* resolved: never 0 */
  char *rate_limit;
  struct bh__limit *limit; /* resolved rate_limit policy */
  int retries; /* upstream retries of the route's calls; -1: upstream's */
  bh__plugin *plugin;
} bh__route;

struct bh__plugin {
  bh_ctx ctx;
  bh__daemon *d;
  const bh__plugin_conf *conf;
  char *name;
  char *path; /* resolved path of the .so */
  char *data_dir;
  void *dl;
  const bh_plugin_desc *desc;
  int state;
  int in_init;                /* registration services are allowed only then */
  pthread_t loop_thread;      /* the only thread services may be called on */
  int thread_warned;          /* the wrong-thread line is logged once */
  char *reg_error;            /* first registration failure during init */
  struct bh__shm_plugin *shm; /* containment state and what ops see */
  int shm_index;
  char last_error[256];
  const char *reason; /* why not serving: "disabled", "load_failed",
                         "init_failed", "start_failed" */
  void *data;         /* bh_set_data */

  bh_error_row *rows; /* copied error map, strings owned */
  size_t nrows;
  bh__code *codes; /* catalogue: rows deduplicated by code + defaults */
  size_t ncodes;

  bh__route **routes; /* routes this plugin registered */
  size_t nroutes;
  void **proxies; /* proxy route data, freed at unload */
  size_t nproxies;
  bh__pcomposite *composites; /* composite_add (host/composites.c) */
  size_t ncomposites;
};

#endif
