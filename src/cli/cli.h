/*
 * cli — the `yci` command: argument parsing and every subcommand.
 *
 * main() hands its arguments to cli_main() and returns what it returns. The
 * subcommands that run something (`server`, `runner`, `up`) start the server
 * and runner modules in this process; every other subcommand is a client of
 * the HTTP API (docs/api.md) and never touches the data directory except to
 * read the admin token. The reference of every command and flag is
 * docs/cli.md, which holds the same texts as `--help`.
 *
 * Exit status: 0 on success, 1 when the server refused or could not be
 * reached (or the followed job did not pass), 2 on a usage error.
 */
#ifndef YCI_CLI_CLI_H
#define YCI_CLI_CLI_H

/* Run the yci command with main()'s arguments; returns the exit status. */
int cli_main(int argc, char **argv);

#endif
