/*
 * help — the text of every `yci ... --help`.
 *
 * docs/cli.md holds the same texts, each in a code block under the command's
 * heading; keep the two identical (scripts can diff `yci help CMD` against
 * the document).
 */
#include "cli/help.h"

#include <stdio.h>
#include <string.h>

#include "lib/banned.h"

#define CLIENT_OPTS                                                                                \
    "  --server URL          the yci server (default: $YCI_SERVER, else\n"                         \
    "                        http://127.0.0.1:8888)\n"

#define TOKEN_OPTS                                                                                 \
    "  --data DIR            read the admin token from DIR/admin-token when $YCI_TOKEN\n"          \
    "                        is not set (default: $YCI_DATA, else ./yci-data if it\n"              \
    "                        exists)\n"

#define JSON_OPT "  --json                print the API's JSON response (pretty-printed)\n"
#define HELP_OPT "  -h, --help            show this help\n"

static const struct cli_help helps[] = {
    {"yci", "Usage: yci COMMAND [ARGS...]\n"
            "       yci help [COMMAND]\n"
            "       yci --version\n"
            "\n"
            "yci is a distributed continuous-integration system: a server watches git\n"
            "repositories and queues a build for every new commit on every branch; runners\n"
            "claim the jobs over HTTP, run them at the exact commit and stream their logs.\n"
            "\n"
            "Run yci:\n"
            "  up                    the server and a local runner in one process (try this)\n"
            "  server                the yci server: HTTP API, observer, scheduler\n"
            "  runner                a runner agent that runs jobs for a server\n"
            "  run [PATH]            run a working tree's pipeline here, with no server\n"
            "\n"
            "Use a running server (through its HTTP API):\n"
            "  repo add PATH|URL     watch a repository\n"
            "  repo list             list the watched repositories\n"
            "  repo poll NAME        look for new commits now\n"
            "  builds                list builds, newest first\n"
            "  build ID              show a build and its jobs\n"
            "  logs [-f] JOB         print (and follow) a job's log\n"
            "  watch BUILD           show a build's jobs updating until it ends\n"
            "  runners               list the runners\n"
            "  rebuild ID            run a build again\n"
            "  cancel ID             cancel a build (or --job ID: one job)\n"
            "\n"
            "Environment:\n"
            "  YCI_SERVER            the server's URL for client commands and runners\n"
            "  YCI_TOKEN             the admin token for commands that change something\n"
            "  YCI_DATA              the data directory (default ./yci-data)\n"
            "  YCI_REGISTRATION_SECRET  the secret a runner registers with\n"
            "  YCI_DEBUG=1           log debug lines\n"
            "\n"
            "GitHub (docs/github.md), read by `yci server`, `yci up` and `yci` alone:\n"
            "  GITHUB_REPOSITORIES   owner/repo ... to watch, with their pull requests;\n"
            "                        `yci` with no command then makes one pass (update the\n"
            "                        mirrors, queue a build per new head, send the commit\n"
            "                        statuses due) and exits: for cron\n"
            "  GITHUB_ACCESS_TOKEN   token auth, or GITHUB_USERNAME + GITHUB_PASSWORD\n"
            "  GITHUB_API_URL        default https://api.github.com\n"
            "  GITHUB_WEBHOOK_SECRET enables POST /hooks/github\n"
            "  HTTP_ROOT             public root URL for the statuses' links\n"
            "\n"
            "Exit status: 0 on success, 1 when the server refused or could not be\n"
            "reached (or, for `logs -f`, when the job did not pass), 2 on a usage error.\n"
            "\n"
            "Run 'yci help COMMAND' (or 'yci COMMAND --help') for a command's options.\n"},

    {"server",
     "Usage: yci server [--listen HOST:PORT] [--data DIR] [--poll-interval S]\n"
     "                  [--job-timeout S] [--max-jobs-per-build N] [--plan-timeout S]\n"
     "                  [--max-log-size SIZE]\n"
     "\n"
     "Run the yci server: the HTTP API and dashboard, the observer that polls the\n"
     "watched repositories, the scheduler that hands jobs to runners, and the git\n"
     "mirrors runners fetch from. Runs until SIGINT or SIGTERM. The data directory\n"
     "holds everything (the SQLite store, logs, mirrors, the admin token and the\n"
     "registration secret, both made on first start); restarting loses nothing.\n"
     "\n"
     "Options:\n"
     "  --listen HOST:PORT    address to listen on (default: 127.0.0.1:8888;\n"
     "                        port 0 picks a free port)\n"
     "  --data DIR            data directory (default: $YCI_DATA, else ./yci-data)\n"
     "  --poll-interval S     seconds between two polls of a repository (default: 5)\n"
     "  --job-timeout S       timeout in seconds of jobs that set none (default: 3600)\n"
     "  --max-jobs-per-build N  most jobs in a build, after .yci.yml matrices are\n"
     "                        expanded (default: 256, at most 10000)\n"
     "  --plan-timeout S      time limit of a .yci.py test_generator, run by a\n"
     "                        runner as the build's first job (default: 120)\n"
     "  --max-log-size SIZE   a job log's cap, e.g. 100M (default: 100M, at least\n"
     "                        64K): a longer log keeps its first and last halves with a\n"
     "                        line saying what was dropped; output past half the cap\n"
     "                        shows when the job ends (runners keep to it; the server\n"
     "                        stores at most twice it per log, whatever a runner sends)\n"
     HELP_OPT},

    {"runner", "Usage: yci runner --server URL [--secret S] [--data DIR] [--name N]\n"
               "                  [--label KEY=VALUE]... [--slots N] [--workdir DIR]\n"
               "                  [--heartbeat S]\n"
               "\n"
               "Run a runner agent: register with the server, then claim jobs whose labels\n"
               "this runner has, run each at its exact commit in a clean workspace and stream\n"
               "its output back. Runs until SIGINT or SIGTERM, which stop the running jobs\n"
               "and give them back to the server to run again (a second signal quits at once).\n"
               "\n"
               "The registration secret comes from --secret, else $YCI_REGISTRATION_SECRET,\n"
               "else DIR/registration-secret when --data DIR (or $YCI_DATA) is given.\n"
               "\n"
               "Options:\n"
               "  --server URL          the yci server (default: $YCI_SERVER)\n"
               "  --secret S            the server's registration secret\n"
               "  --data DIR            read the secret from DIR/registration-secret\n"
               "  --name N              the runner's name (default: the host name)\n"
               "  --label KEY=VALUE     a label jobs can require; repeat for several\n"
               "  --slots N             jobs run at once (default: 1)\n"
               "  --workdir DIR         cached clones, workspaces and spooled logs\n"
               "                        (default: ./yci-runner)\n"
               "  --heartbeat S         seconds between heartbeats (default: 10)\n" HELP_OPT},

    {"up", "Usage: yci up [--listen HOST:PORT] [--data DIR] [--slots N] [--label KEY=VALUE]...\n"
           "              [--no-demo] [--max-jobs-per-build N]\n"
           "\n"
           "Run the server and a local runner in one process: the embedded default. The\n"
           "runner works in DIR/runner and talks HTTP to the server like any other.\n"
           "\n"
           "When the server watches no repository yet, yci up creates a demo repository\n"
           "in DIR/demo (a tests/ folder of unittest tests), adds it, waits for its first\n"
           "build and prints the result and the URL to look at it. Then it runs until\n"
           "SIGINT or SIGTERM (Ctrl-C).\n"
           "\n"
           "Options:\n"
           "  --listen HOST:PORT    address to listen on (default: 127.0.0.1:8888)\n"
           "  --data DIR            data directory (default: $YCI_DATA, else ./yci-data)\n"
           "  --slots N             jobs run at once (default: the number of CPUs)\n"
           "  --label KEY=VALUE     a label of the local runner; repeat for several\n"
           "  --no-demo             do not create the demo repository\n"
           "  --max-jobs-per-build N  most jobs in a build (default: 256; see yci server)\n" HELP_OPT},

    {"run",
     "Usage: yci run [PATH] [--job NAME]... [--branch B]\n"
     "\n"
     "Run the pipeline of the working tree at PATH (default: .) on this machine,\n"
     "with no server: to try a .yci.yml before committing it. The files are read\n"
     "as they are on disk: .yci.yml, else .yci.py (its test_generator(0, pull) run\n"
     "with python3, in bubblewrap when it works here, within 120 s), else the\n"
     "default rule (a tests/ folder run by python3 -m unittest discover -s tests\n"
     "-v, else a Makefile's check or test target).\n"
     "\n"
     "Jobs run one at a time in PATH itself, in file order except where needs asks\n"
     "for another; a job whose needs did not pass is skipped. Each command runs with\n"
     "/bin/sh -c (plain words without it, as on a runner) in your environment plus\n"
     "PWD, CI=true, YCI=true and the job's env,\n"
     "printed as '$ COMMAND' under a '==> job NAME' header, its output shown as it\n"
     "comes; a job stops at its first failing command. A job's timeout sends\n"
     "SIGTERM to its processes, then SIGKILL 5 seconds later. Retries run at once\n"
     "(the increment is not waited); labels are ignored. A summary table ends the\n"
     "run.\n"
     "\n"
     "Exit status: 0 if every job passed, 1 if one did not, 2 when PATH has no\n"
     "pipeline or its .yci.yml is invalid (the message is .yci.yml:LINE:COL: ...).\n"
     "\n"
     "Options:\n"
     "  --job NAME            run only job NAME (a matrix job's name selects all its\n"
     "                        cells); repeat for several. Needs on jobs that are not\n"
     "                        selected are ignored\n"
     "  --branch B            the branch .yci.yml branch filters see (default: the\n"
     "                        current branch of PATH, none when detached)\n" HELP_OPT},

    {"repo", "Usage: yci repo add PATH|URL [--name N]\n"
             "       yci repo list\n"
             "       yci repo poll NAME\n"
             "\n"
             "Manage the repositories the server watches. Run 'yci repo COMMAND --help'\n"
             "for the options of each.\n"},

    {"repo add", "Usage: yci repo add PATH|URL [--name N] [--server URL] [--data DIR] [--json]\n"
                 "\n"
                 "Watch a repository: the server mirrors it and builds the head of every branch,\n"
                 "then every new commit. PATH is a local repository (a relative path is made\n"
                 "absolute first); URL is anything git can fetch. Needs the admin token.\n"
                 "\n"
                 "To build at once on every push instead of at the next poll, add a\n"
                 "post-receive hook to the repository that runs:\n"
                 "    curl -fsS -X POST $YCI_SERVER/api/repos/NAME/poll\n"
                 "\n"
                 "Options:\n"
                 "  --name N              the repository's name (default: the last component of\n"
                 "                        the path or URL, without .git)\n" CLIENT_OPTS TOKEN_OPTS
                     JSON_OPT HELP_OPT},

    {"repo list", "Usage: yci repo list [--server URL] [--json]\n"
                  "\n"
                  "List the watched repositories: name, URL, last poll and last error.\n"
                  "\n"
                  "Options:\n" CLIENT_OPTS JSON_OPT HELP_OPT},

    {"repo poll", "Usage: yci repo poll NAME [--server URL] [--json]\n"
                  "\n"
                  "Ask the server to fetch the repository now instead of at the next poll (the\n"
                  "same call a post-receive hook makes). Needs no token.\n"
                  "\n"
                  "Options:\n" CLIENT_OPTS JSON_OPT HELP_OPT},

    {"builds",
     "Usage: yci builds [--repo R] [--branch B] [--status S] [--limit N]\n"
     "                  [--server URL] [--json]\n"
     "\n"
     "List builds, newest first: id, repository, branch, commit, status, age and\n"
     "duration.\n"
     "\n"
     "Options:\n"
     "  --repo R              only builds of repository R\n"
     "  --branch B            only builds of branch B\n"
     "  --status S            only builds with status S (queued, running, passed,\n"
     "                        failed, error, cancelled)\n"
     "  --limit N             at most N builds (default: 20)\n" CLIENT_OPTS JSON_OPT HELP_OPT},

    {"build", "Usage: yci build ID [--server URL] [--json]\n"
              "\n"
              "Show a build: its repository, branch, commit, status and timings, its jobs\n"
              "(id, name, status, attempt, runner, exit code, duration) and its events\n"
              "(lease expiries, re-queues, cancellations, configuration errors).\n"
              "\n"
              "Options:\n" CLIENT_OPTS JSON_OPT HELP_OPT},

    {"logs", "Usage: yci logs [-f] JOB [--attempt N] [--server URL]\n"
             "\n"
             "Print the log of a job (of its current attempt unless --attempt is given).\n"
             "\n"
             "With -f, print the log from the start and follow it while the job runs, then\n"
             "exit when the job is over: 0 if it passed, 1 if it failed, timed out, was\n"
             "cancelled or met an error. If the job is re-queued meanwhile (its runner was\n"
             "lost), the log of the new attempt follows. Without -f, print what there is\n"
             "and exit 0.\n"
             "\n"
             "Options:\n"
             "  -f, --follow          follow the log until the job is over\n"
             "  --attempt N           the log of attempt N\n" CLIENT_OPTS HELP_OPT},

    {"watch", "Usage: yci watch BUILD [--server URL]\n"
              "\n"
              "Show a build's jobs updating in place until the build is over: a line per\n"
              "job with its status, attempt, runner and duration, redrawn twice a second on\n"
              "a terminal. When the output is not a terminal, print a line each time a\n"
              "job's status changes instead. Exit 0 if the build passed, else 1.\n"
              "\n"
              "Options:\n" CLIENT_OPTS HELP_OPT},

    {"runners", "Usage: yci runners [--all] [--server URL] [--json]\n"
                "\n"
                "List the runners the server knows: id, name, labels, slots, whether it is\n"
                "alive, when it was last seen and the jobs it is running. Runners not seen\n"
                "for 7 days are left out.\n"
                "\n"
                "Options:\n"
                "  --all                 also the runners not seen for 7 days\n" CLIENT_OPTS
                    JSON_OPT HELP_OPT},

    {"rebuild", "Usage: yci rebuild ID [--server URL] [--data DIR] [--json]\n"
                "\n"
                "Run build ID again at the same commit, as a new build; print the new build's\n"
                "id. Needs the admin token.\n"
                "\n"
                "Options:\n" CLIENT_OPTS TOKEN_OPTS JSON_OPT HELP_OPT},

    {"cancel", "Usage: yci cancel ID [--server URL] [--data DIR] [--json]\n"
               "       yci cancel --job ID [--server URL] [--data DIR] [--json]\n"
               "\n"
               "Cancel every unfinished job of build ID (or, with --job, the one job ID); a\n"
               "running job is killed on its runner. Needs the admin token.\n"
               "\n"
               "Options:\n"
               "  --job ID              cancel one job instead of a build\n" CLIENT_OPTS TOKEN_OPTS
                   JSON_OPT HELP_OPT},
};

const struct cli_help *cli_help_find(const char *name)
{
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
        if (strcmp(helps[i].name, name) == 0)
            return &helps[i];
    return NULL;
}

const struct cli_help *cli_help_all(size_t *n)
{
    *n = sizeof(helps) / sizeof(helps[0]);
    return helps;
}

void cli_help_print(const char *name, FILE *f)
{
    const struct cli_help *h = cli_help_find(name);
    if (h)
        fputs(h->text, f);
}
