/*
 * cli/help — the `--help` text of every command, kept identical to the code
 * blocks of docs/cli.md.
 */
#ifndef YCI_CLI_HELP_H
#define YCI_CLI_HELP_H

#include <stddef.h>
#include <stdio.h>

struct cli_help {
    const char *name; /* "yci" for the overview, "logs", "repo add", ... */
    const char *text; /* the whole --help output, ending in a newline */
};

/* The help of a command by name, or NULL. */
const struct cli_help *cli_help_find(const char *name);
/* Every help, in the order of docs/cli.md. */
const struct cli_help *cli_help_all(size_t *n);
/* Print the help of name (nothing if unknown). */
void cli_help_print(const char *name, FILE *f);

#endif
