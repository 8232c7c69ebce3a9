#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/common.h"
#include "cli/daemon.h"
#include "cli/help.h"
#include "http/client.h"
#include "lib/buf.h"
#include "lib/banned.h"

#ifndef YCI_VERSION
#define YCI_VERSION "unknown"
#endif

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"up", cli_cmd_up},         {"server", cli_cmd_server},   {"runner", cli_cmd_runner},
    {"repo", cli_cmd_repo},     {"builds", cli_cmd_builds},   {"build", cli_cmd_build},
    {"logs", cli_cmd_logs},     {"runners", cli_cmd_runners}, {"rebuild", cli_cmd_rebuild},
    {"cancel", cli_cmd_cancel}, {"run", cli_cmd_run},         {"watch", cli_cmd_watch},
};

static int unknown_command(const char *name)
{
    fprintf(stderr, "yci: unknown command '%s'\nTry 'yci --help'.\n", name);
    return 2;
}

/* `yci help [COMMAND [SUBCOMMAND]]` */
static int help(int argc, char **argv)
{
    if (argc < 2) {
        cli_help_print("yci", stdout);
        return 0;
    }
    struct buf name = BUF_INIT;
    for (int i = 1; i < argc; i++)
        buf_addf(&name, "%s%s", i > 1 ? " " : "", argv[i]);
    int status = 0;
    if (strcmp(name.data, "yci") != 0 && cli_help_find(name.data))
        cli_help_print(name.data, stdout);
    else
        status = unknown_command(name.data);
    buf_release(&name);
    return status;
}

int cli_main(int argc, char **argv)
{
    if (argc < 2) {
        /* Seed 000: `GITHUB_REPOSITORIES=owner/repo ... yci`, run by cron. */
        const char *repos = getenv("GITHUB_REPOSITORIES");
        if (repos && *repos) {
            http_client_global_init();
            int status = cli_github_pass();
            http_client_global_cleanup();
            return status;
        }
        cli_help_print("yci", stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0)
        return help(argc - 1, argv + 1);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0) {
        printf("yci %s\n", YCI_VERSION);
        return 0;
    }
    if (name[0] == '-') {
        fprintf(stderr,
                "yci: unknown option '%s' (options go after the command)\n"
                "Try 'yci --help'.\n",
                name);
        return 2;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            http_client_global_init();
            int status = commands[i].run(argc - 1, argv + 1);
            http_client_global_cleanup();
            fflush(stdout);
            return status;
        }
    }
    return unknown_command(name);
}
