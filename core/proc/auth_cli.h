/*
 * The `user` command line (auth_cli.c): local sign-in accounts in the
 * identity store, without a running daemon.
 */
#ifndef BH_CORE_PROC_AUTH_CLI_H
#define BH_CORE_PROC_AUTH_CLI_H

/* `bulkhead user add|disable|enable EMAIL [-c FILE]`; argv[0] is "user".
 * The exit status. */
/* argv[0] is "user"; config_path: a -c given before the subcommand (one
 * after it wins), or NULL. The exit status. */
int bh__auth_cli(int argc, char **argv, const char *config_path);

#endif
