/*
 * bulkhead: command line.
 *
 *   bulkhead [-c FILE] [--listen ADDR] [--admin-listen ADDR]
 *   bulkhead -t [-c FILE]        check config and plugin loading
 *   bulkhead --list-codes [-c FILE]
 *   bulkhead [-c FILE] user add|disable|enable EMAIL [-c FILE]  (auth_cli.c)
 *   bulkhead [-c FILE] migrate   apply the stores' schema migrations (the
 *                                identity store's, the plugins' on postgres)
 *   bulkhead --version
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "bh_version.h"
#include "host/host.h"
#include "identity/auth.h"
#include "proc/admin.h"
#include "proc/auth_cli.h"
#include "proc/daemon.h"
#include "proc/load.h"
#include "state/shm.h"

/* The admin API reaches the master through these (-ENOTSUP in one
 * process). */
static const bh__admin_ops bh__master_ops = {
    .reload = bh__master_reload,
    .release = bh__master_release,
    .reloading = bh__master_reloading,
};

static void bh__usage(FILE *f) {
  fprintf(f,
          "usage: bulkhead [-c FILE] [--listen HOST:PORT] "
          "[--admin-listen HOST:PORT]\n"
          "       bulkhead -t [-c FILE]          check config and plugins, "
          "then exit\n"
          "       bulkhead --list-codes [-c FILE] print the error code "
          "catalogue as JSON\n"
          "       bulkhead [-c FILE] user add|disable|enable EMAIL  local "
          "sign-in accounts\n"
          "                                      (bulkhead user --help)\n"
          "       bulkhead [-c FILE] migrate     apply the stores' schema "
          "migrations, then\n"
          "                                      exit: the identity store, "
          "and on\n"
          "                                      [store] backend = postgres "
          "each enabled\n"
          "                                      plugin's schema (on sqlite "
          "plugins migrate\n"
          "                                      their own files at start)\n"
          "       bulkhead --version\n"
          "\n"
          "  -c, --config FILE      the INI file; without it the embedded "
          "default\n"
          "                         configuration is used\n"
          "  --listen HOST:PORT     the API listener, replacing [server] "
          "listen\n"
          "                         (and its BULKHEAD_SERVER_LISTEN)\n"
          "  --admin-listen HOST:PORT\n"
          "                         the admin listener (/healthz, /readyz, "
          "/metrics,\n"
          "                         /admin/...), replacing [server] "
          "admin_listen;\n"
          "                         without admin_token only a loopback "
          "address\n"
          "  -t, --test             check the configuration and load every "
          "plugin;\n"
          "                         on postgres also connect and read each "
          "schema's\n"
          "                         version (pending migrations are noted)\n"
          "\n"
          "Environment:\n"
          "  BULKHEAD_<SECTION>_<KEY>  overrides that key of the file, the "
          "section\n"
          "                         name upper-cased with '.' as '_' "
          "(BULKHEAD_SERVER_ADMIN_TOKEN,\n"
          "                         BULKHEAD_AUTH_JWT_SECRET, "
          "BULKHEAD_UPSTREAM_AI_URL,\n"
          "                         BULKHEAD_PLUGIN_BILLING_SECRET_KEY)\n"
          "  any VAR named by a value \"@env:VAR\" (secrets: jwt_secret, "
          "header.<Name>)\n"
          "  NOTIFY_SOCKET          set by systemd (Type=notify): readiness, "
          "reloads\n"
          "                         and stopping are reported there\n");
}

static int bh__replace(char **slot, const char *value, const char *what) {
  char host[64];
  int port;
  if (bh__config_parse_addr(value, host, sizeof(host), &port) != 0) {
    fprintf(stderr, "bulkhead: %s: invalid address '%s' (HOST:PORT)\n", what,
            value);
    return -EINVAL;
  }
  char *dup = strdup(value);
  if (dup == NULL) return -ENOMEM;
  free(*slot);
  *slot = dup;
  return 0;
}

/* A daemon started with stdin, stdout or stderr closed would hand those
 * numbers to its first sockets, and then log lines or libuv's own checks
 * would hit them: keep 0..2 taken. */
static void bh__std_fds(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (n >= 0 && n != fd) {
      dup2(n, fd);
      close(n);
    }
  }
}

typedef struct bh__opts {
  const char *config_path, *listen, *admin_listen;
  int test_only, list_codes, migrate;
  int user_at; /* index of the `user` subcommand, 0 when none */
} bh__opts;

/* The command line into o. -1 to go on, else the exit status. */
static int bh__parse_args(int argc, char **argv, bh__opts *o) {
  memset(o, 0, sizeof(*o));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "user") == 0) {
      /* the subcommand takes the rest; options before it apply too */
      if (o->test_only || o->list_codes || o->listen || o->admin_listen) {
        fprintf(stderr, "bulkhead: user: only -c FILE may come before it\n");
        return 2;
      }
      o->user_at = i;
      return -1;
    }
    if (strcmp(a, "migrate") == 0)
      o->migrate = 1;
    else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
             i + 1 < argc)
      o->config_path = argv[++i];
    else if (strcmp(a, "-t") == 0 || strcmp(a, "--test") == 0)
      o->test_only = 1;
    else if (strcmp(a, "--list-codes") == 0)
      o->list_codes = 1;
    else if (strcmp(a, "--listen") == 0 && i + 1 < argc)
      o->listen = argv[++i];
    else if (strcmp(a, "--admin-listen") == 0 && i + 1 < argc)
      o->admin_listen = argv[++i];
    else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
      printf("bulkhead %s (plugin ABI %d.%d)\n", BH_VERSION, BH_ABI_MAJOR,
             BH_ABI_MINOR);
      return 0;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      bh__usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bulkhead: unknown or incomplete argument '%s'\n", a);
      bh__usage(stderr);
      return 2;
    }
  }
  return -1;
}

/* -t and --list-codes: load (init) every plugin as the daemon would,
 * report, unload. The exit status; cfg is freed. */
static int bh__check_only(const bh__opts *o, bh__config *cfg, uv_loop_t *loop) {
  char err[512];
  bh__daemon d;
  int rc = bh__auth_prepare(cfg, 1, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "bulkhead: %s\n", err);
    bh__unload(cfg);
    bh__shm_destroy();
    return 1;
  }
  rc = bh__daemon_init(&d, cfg, loop, BH__ROLE_SINGLE, -1);
  int failed = 0;
  for (size_t i = 0; rc == 0 && i < d.nplugins; i++)
    if (d.plugins[i].state == BH__PLUGIN_FAILED) failed++;
  /* the plugins' schemas, as the identity one above (postgres only) */
  int schemas = rc == 0 && o->test_only
                    ? bh__plugin_schemas_check(&d, err, sizeof(err))
                    : 0;
  if (rc == 0 && o->list_codes) {
    bh__buf b;
    bh__buf_init(&b);
    bh__catalogue_json(&d, &b);
    printf("%s\n", b.data ? b.data : "{}");
    bh__buf_free(&b);
  } else if (rc == 0) {
    if (failed)
      fprintf(stderr, "bulkhead: %s: %d plugin(s) failed to load\n",
              cfg->source, failed);
    else if (schemas)
      fprintf(stderr, "bulkhead: %s: %s\n", cfg->source, err);
    else
      fprintf(stderr, "bulkhead: %s: configuration OK, %zu plugin(s)\n",
              cfg->source, d.nplugins);
  }
  bh__daemon_free(&d);
  bh__unload(cfg);
  bh__loop_close(loop);
  bh__shm_destroy();
  return rc ? 1 : (o->test_only && (failed || schemas)) ? 1 : 0;
}

/* The daemon's life: log, identity store, then one process or a master
 * with workers until a drain completes. The exit status; cfg is freed. */
static int bh__serve(const bh__opts *o, bh__config *cfg, uv_loop_t *loop) {
  char err[512];
  bh__daemon d;
  bh__log_set_format(cfg->log_format);
  if (bh__log_open(cfg->log_target, cfg->log_level) != 0) {
    fprintf(stderr, "bulkhead: cannot open log '%s'\n", cfg->log_target);
    bh__unload(cfg);
    return 1;
  }
  bh__logf(BH__INFO, "config", "using %s", cfg->source);
  /* keys, and the identity store migrated before any worker opens it: a
   * failed migration stops here, with the file as it was */
  if (bh__auth_prepare(cfg, 0, err, sizeof(err)) != 0) {
    fprintf(stderr, "bulkhead: %s\n", err);
    bh__logf(BH__ERROR, "start_failed", "%s", err);
    bh__log_close();
    bh__unload(cfg);
    bh__shm_destroy();
    return 1;
  }
  int single = bh__workers_count(cfg) == 0;
  bh__admin_set_ops(&bh__master_ops);
  /* the master keeps its config on the heap: a reload swaps it */
  bh__config *live = cfg;
  if (!single) {
    live = malloc(sizeof(*live));
    if (live == NULL) return 1;
    *live = *cfg;
    memset(cfg, 0, sizeof(*cfg));
  }
  int rc = bh__daemon_init(&d, live, loop,
                           single ? BH__ROLE_SINGLE : BH__ROLE_MASTER, -1);
  if (rc == 0) rc = bh__daemon_listen(&d);
  if (rc == 0)
    rc = single ? bh__daemon_run(&d) : bh__master_run(&d, o->config_path);
  else
    uv_run(loop, UV_RUN_NOWAIT);
  if (d.api_fd > 0) close(d.api_fd);
  live = d.cfg;
  bh__daemon_free(&d);
  bh__loop_close(loop);
  bh__logf(BH__INFO, "stopped", "exit %d", rc ? 1 : 0);
  bh__log_close();
  bh__unload(live);
  if (live != cfg) free(live);
  bh__shm_destroy();
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  bh__std_fds();
  bh__opts o;
  int rc = bh__parse_args(argc, argv, &o);
  if (rc >= 0) return rc;
  if (o.user_at)
    return bh__auth_cli(argc - o.user_at, argv + o.user_at, o.config_path);
  if (sodium_init() < 0) {
    fprintf(stderr, "bulkhead: libsodium failed to initialise\n");
    return 1;
  }
  /* a client that goes away must not kill the daemon mid-write */
  signal(SIGPIPE, SIG_IGN);

  bh__config cfg;
  char err[512];
  memset(&cfg, 0, sizeof(cfg));
  if (bh__load(o.config_path, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "bulkhead: %s\n", err);
    return 2;
  }
  if ((o.listen && bh__replace(&cfg.listen, o.listen, "--listen")) ||
      (o.admin_listen &&
       bh__replace(&cfg.admin_listen, o.admin_listen, "--admin-listen"))) {
    bh__unload(&cfg);
    return 2;
  }
  if (o.migrate) {
    /* the identity schema, then each enabled plugin's (postgres; on
     * sqlite each plugin migrates its own file at start) */
    rc = bh__auth_migrate(&cfg, err, sizeof(err));
    if (rc == 0) rc = bh__plugin_schemas_migrate(&cfg, err, sizeof(err));
    if (rc) fprintf(stderr, "bulkhead: %s\n", err);
    bh__unload(&cfg);
    return rc ? 1 : 0;
  }
  if (bh__config_admin_check(&cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "bulkhead: %s\n", err);
    bh__unload(&cfg);
    return 2;
  }

  /* shared state first: upstream breakers live there even in -t */
  rc = bh__shm_create((size_t)256 << 20);
  if (rc != 0) {
    fprintf(stderr, "bulkhead: cannot map shared memory: %s\n", strerror(-rc));
    bh__unload(&cfg);
    return 1;
  }
  uv_loop_t *loop = uv_default_loop();
  if (o.test_only || o.list_codes) return bh__check_only(&o, &cfg, loop);
  return bh__serve(&o, &cfg, loop);
}
