/*
 * bulkhead-sim entry point: command line, listeners, the "listening" line
 * that tells the test harness which ports were picked, signals.
 *
 *   bulkhead-sim --listen 127.0.0.1:0 [--control 127.0.0.1:0]
 *                [--port-file FILE] [--stream-delay-ms N] [--name NAME]
 *                [--verbose]
 */
#include "sim.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

sim_state sim_g;

static sim_listener main_l, control_l;
static int have_control;
static uv_signal_t sig_term, sig_int;

static void usage(FILE *f) {
  fputs("usage: bulkhead-sim --listen HOST:PORT [--control HOST:PORT]\n"
        "                    [--port-file FILE] [--stream-delay-ms N] "
        "[--name NAME] [--verbose]\n"
        "Port 0 picks a free port. Once listening, prints one JSON line:\n"
        "  {\"event\":\"listening\",\"listen\":\"H:P\",\"control\":\"H:P\"}\n"
        "The control API is always under /__sim/ on the main listener.\n",
        f);
}

/* Written beside the target and renamed, so a reader never sees half. */
static int write_port_file(const char *path, const char *line) {
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  if (!tmp) return -1;
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  int rc = -1;
  if (f) {
    int ok = fputs(line, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) == 0) rc = 0;
  }
  if (rc != 0) unlink(tmp);
  free(tmp);
  return rc;
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  if (sim_g.verbose) sim_log("signal %d: shutting down", signum);
  /* Closing every handle lets uv_run return on its own. */
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&main_l.tcp, NULL);
  if (have_control) uv_close((uv_handle_t *)&control_l.tcp, NULL);
  sim_close_all();
}

int main(int argc, char **argv) {
  const char *listen = NULL, *control = NULL, *port_file = NULL;
  sim_g.stream_delay_ms = 5;
  sim_g.name = "sim";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--verbose") == 0) {
      sim_g.verbose = 1;
      continue;
    }
    if (strcmp(a, "--listen") != 0 && strcmp(a, "--control") != 0 &&
        strcmp(a, "--port-file") != 0 && strcmp(a, "--stream-delay-ms") != 0 &&
        strcmp(a, "--name") != 0) {
      fprintf(stderr, "bulkhead-sim: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (!v) {
      fprintf(stderr, "bulkhead-sim: %s needs a value\n", a);
      usage(stderr);
      return 2;
    }
    i++;
    if (strcmp(a, "--listen") == 0) {
      listen = v;
    } else if (strcmp(a, "--control") == 0) {
      control = v;
    } else if (strcmp(a, "--port-file") == 0) {
      port_file = v;
    } else if (strcmp(a, "--name") == 0) {
      sim_g.name = v;
    } else {
      char *end;
      sim_g.stream_delay_ms = strtoll(v, &end, 10);
      if (*end || sim_g.stream_delay_ms < 0) {
        fprintf(stderr, "bulkhead-sim: bad --stream-delay-ms '%s'\n", v);
        return 2;
      }
    }
  }
  if (!listen) {
    usage(stderr);
    return 2;
  }
  sim_g.stream_delay_default = sim_g.stream_delay_ms;
  /* A peer that vanishes must cost an error code, not the process. */
  signal(SIGPIPE, SIG_IGN);
  sim_g.loop = uv_default_loop();

  char main_addr[96], ctl_addr[96];
  int rc = sim_listen(&main_l, listen, 0, main_addr, sizeof(main_addr));
  if (rc < 0) {
    fprintf(stderr, "bulkhead-sim: cannot listen on %s: %s\n", listen,
            uv_strerror(rc));
    return 1;
  }
  snprintf(ctl_addr, sizeof(ctl_addr), "%s", main_addr);
  if (control) {
    rc = sim_listen(&control_l, control, 1, ctl_addr, sizeof(ctl_addr));
    if (rc < 0) {
      fprintf(stderr, "bulkhead-sim: cannot listen on %s: %s\n", control,
              uv_strerror(rc));
      return 1;
    }
    have_control = 1;
  }

  uv_signal_init(sim_g.loop, &sig_term);
  uv_signal_init(sim_g.loop, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);

  char line[300];
  snprintf(line, sizeof(line),
           "{\"event\":\"listening\",\"listen\":\"%s\",\"control\":\"%s\"}",
           main_addr, ctl_addr);
  if (port_file && write_port_file(port_file, line) != 0) {
    fprintf(stderr, "bulkhead-sim: cannot write port file %s\n", port_file);
    return 1;
  }
  printf("%s\n", line);
  fflush(stdout);

  uv_run(sim_g.loop, UV_RUN_DEFAULT);

  sim_rules_clear();
  sim_record_free();
  uv_loop_close(sim_g.loop);
  return 0;
}
