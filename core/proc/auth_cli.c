/*
 * `bulkhead user add|disable|enable EMAIL [-c FILE]`: accounts of the
 * embedded identity provider, written straight into the identity store
 * (migrated first if needed). The password is read from standard input:
 * prompted for twice without echo on a terminal, else the first line.
 * Safe while the daemon runs (WAL, busy timeout).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "identity/auth.h"
#include "identity/store.h"
#include "identity/store_ops.h"
#include "proc/auth_cli.h"
#include "proc/load.h"

#define BH__PW_MIN 8
#define BH__PW_MAX 1024

static void bh__cli_usage(FILE *f) {
  fprintf(f,
          "usage: bulkhead [-c FILE] user add EMAIL      create a sign-in "
          "account (password on stdin)\n"
          "       bulkhead [-c FILE] user disable EMAIL  refuse its sign-ins\n"
          "       bulkhead [-c FILE] user enable EMAIL\n"
          "-c FILE may also follow the subcommand. The accounts live in the "
          "identity\n"
          "store the configuration names.\n");
}

static int bh__email_ok(const char *e) {
  size_t n = strlen(e);
  const char *at = strchr(e, '@');
  if (n < 3 || n > 254 || at == NULL || at == e || at[1] == '\0' ||
      strchr(at + 1, '@'))
    return 0;
  for (; *e; e++)
    if ((unsigned char)*e <= 0x20 || *e == 0x7f) return 0;
  return 1;
}

/* One line from stdin, without echo on a terminal. 0 or -1. */
static int bh__read_line(const char *prompt, char *out, size_t n) {
  int tty = isatty(STDIN_FILENO);
  struct termios old, quiet;
  if (tty) {
    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    tcgetattr(STDIN_FILENO, &old);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  char *r = fgets(out, (int)n, stdin);
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fprintf(stderr, "\n");
  }
  if (r == NULL) return -1;
  out[strcspn(out, "\r\n")] = '\0';
  return 0;
}

static int bh__read_password(char *pw, size_t n) {
  if (bh__read_line("Password: ", pw, n) != 0) {
    fprintf(stderr, "bulkhead: no password on standard input\n");
    return -1;
  }
  size_t len = strlen(pw);
  if (len < BH__PW_MIN || len >= BH__PW_MAX) {
    fprintf(stderr, "bulkhead: the password must be %d to %d bytes\n",
            BH__PW_MIN, BH__PW_MAX - 1);
    return -1;
  }
  if (isatty(STDIN_FILENO)) {
    char again[BH__PW_MAX + 2];
    int same = bh__read_line("Again: ", again, sizeof(again)) == 0 &&
               strcmp(again, pw) == 0;
    sodium_memzero(again, sizeof(again));
    if (!same) {
      fprintf(stderr, "bulkhead: the passwords differ\n");
      return -1;
    }
  }
  return 0;
}

/* The verb, the email and -c PATH from argv. -1: go on; else the exit
 * status (0 after --help, 2 for a usage error, printed). */
static int bh__cli_args(int argc, char **argv, const char **config_path,
                        const char **verb, const char **email) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      bh__cli_usage(stdout);
      return 0;
    }
  }
  for (int i = 1; i < argc; i++) {
    if (*verb == NULL && argv[i][0] != '-') {
      *verb = argv[i];
      continue;
    }
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
        i + 1 < argc)
      *config_path = argv[++i];
    else if (*email == NULL && argv[i][0] != '-')
      *email = argv[i];
    else {
      bh__cli_usage(stderr);
      return 2;
    }
  }
  if (*verb == NULL || *email == NULL ||
      (strcmp(*verb, "add") && strcmp(*verb, "disable") &&
       strcmp(*verb, "enable"))) {
    bh__cli_usage(stderr);
    return 2;
  }
  if (!bh__email_ok(*email)) {
    fprintf(stderr, "bulkhead: not an email address\n");
    return 2;
  }
  return -1;
}

/* Opens the identity store [auth] names, migrated like at start-up. 0, or
 * -1 with the reason printed (conn may still hold what to close). */
static int bh__cli_store_open(const bh__config *cfg, bh__sconn *conn) {
  char err[600];
  conn->backend = cfg->auth->store_backend;
  if (conn->backend == BH__STORE_POSTGRES) {
    /* the shared store: migrated like at start-up, then the same ops */
    if (bh__pg_prepare(cfg->auth->store_url, BH__PG_CONNECT, 0, NULL, NULL, err,
                       sizeof(err)) != 0 ||
        bh__pg_open(cfg->auth->store_url, BH__PG_IDENTITY_SCHEMA, &conn->pg,
                    err, sizeof(err)) != 0) {
      fprintf(stderr, "bulkhead: %s\n", err);
      return -1;
    }
    return 0;
  }
  char path[4096];
  const char *file = cfg->auth->store_file;
  int w = file[0] == '/'
              ? snprintf(path, sizeof(path), "%s", file)
              : snprintf(path, sizeof(path), "%s/%s", cfg->data_dir, file);
  if (w < 0 || (size_t)w >= sizeof(path)) {
    fprintf(stderr, "bulkhead: store path too long\n");
    return -1;
  }
  if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "bulkhead: cannot create %s: %s\n", cfg->data_dir,
            strerror(errno));
    return -1;
  }
  sqlite3 *db = NULL;
  int rc = bh__store_open(path, bh__core_migrations, bh__core_nmigrations, &db,
                          err, sizeof(err));
  conn->lite = db;
  if (rc != 0) {
    fprintf(stderr, "bulkhead: identity store: %s\n", err);
    return -1;
  }
  return 0;
}

static const char *bh__cli_store_err(const bh__sconn *conn) {
  return conn->lite ? sqlite3_errmsg(conn->lite) : PQerrorMessage(conn->pg);
}

/* `user add`: reads the password, stores its Argon2id hash, prints the
 * new user's id. 0 or 1 (printed). */
static int bh__cli_user_add(bh__sconn *conn, const char *email) {
  char pw[BH__PW_MAX + 2];
  char hash[crypto_pwhash_STRBYTES];
  if (bh__read_password(pw, sizeof(pw)) != 0) {
    sodium_memzero(pw, sizeof(pw));
    return 1;
  }
  int h = crypto_pwhash_str(hash, pw, strlen(pw),
                            crypto_pwhash_OPSLIMIT_INTERACTIVE,
                            crypto_pwhash_MEMLIMIT_INTERACTIVE);
  sodium_memzero(pw, sizeof(pw));
  if (h != 0) {
    fprintf(stderr, "bulkhead: cannot hash the password (out of memory)\n");
    return 1;
  }
  char id[64];
  int r = bh__op_user_add(conn, email, hash, bh__store_now(), id, sizeof(id));
  if (r == -EEXIST) {
    fprintf(stderr, "bulkhead: a user with this email exists already\n");
    return 1;
  }
  if (r != 0) {
    fprintf(stderr, "bulkhead: cannot add the user: %s\n",
            bh__cli_store_err(conn));
    return 1;
  }
  printf("%s\n", id);
  return 0;
}

/* `user disable` / `user enable`. 0 or 1 (printed). */
static int bh__cli_user_set(bh__sconn *conn, const char *email, int disable) {
  int r = bh__op_user_set_disabled(conn, email, disable);
  if (r == -ENOENT) {
    fprintf(stderr, "bulkhead: no user with this email\n");
    return 1;
  }
  if (r != 0) {
    fprintf(stderr, "bulkhead: cannot update the user: %s\n",
            bh__cli_store_err(conn));
    return 1;
  }
  return 0;
}

int bh__auth_cli(int argc, char **argv, const char *config_path) {
  const char *verb = NULL;
  const char *email = NULL;
  int rc = bh__cli_args(argc, argv, &config_path, &verb, &email);
  if (rc >= 0) return rc;
  if (sodium_init() < 0) {
    fprintf(stderr, "bulkhead: libsodium failed to initialise\n");
    return 1;
  }
  bh__config cfg;
  char err[600];
  if (bh__load(config_path, &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "bulkhead: %s\n", err);
    return 2;
  }
  bh__sconn conn = {.backend = cfg.auth->store_backend};
  rc = 1;
  if (bh__cli_store_open(&cfg, &conn) == 0)
    rc = strcmp(verb, "add") == 0
             ? bh__cli_user_add(&conn, email)
             : bh__cli_user_set(&conn, email, strcmp(verb, "disable") == 0);
  sqlite3_close_v2(conn.lite);
  if (conn.pg) PQfinish(conn.pg);
  bh__unload(&cfg);
  return rc;
}
