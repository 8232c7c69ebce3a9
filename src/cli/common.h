/*
 * cli/common — what the subcommands share: option-parsing helpers, the HTTP
 * API client context, JSON accessors and human-readable formatting.
 *
 * Conventions: a command function takes (argc, argv) with argv[0] the
 * command's own name and returns the process exit status (0, 1 or 2, see
 * cli.h). Helpers that print an error for the user return the exit status to
 * pass on (1 or 2), so a command can `return helper(...)` on failure.
 */
#ifndef YCI_CLI_COMMON_H
#define YCI_CLI_COMMON_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "http/client.h"
#include "lib/buf.h"

#define CLI_DEFAULT_SERVER "http://127.0.0.1:8888"
#define CLI_DEFAULT_DATA "yci-data"
/* Timeout of one API request made by a client command. */
#define CLI_REQUEST_TIMEOUT_MS 30000
#define CLI_PATIENCE_MS (10 * 60 * 1000)

/* Long-option codes shared by the commands (short options use their letter). */
enum {
    OPT_SERVER = 1000,
    OPT_DATA,
    OPT_JSON,
    OPT_NAME,
    OPT_LISTEN,
    OPT_POLL_INTERVAL,
    OPT_JOB_TIMEOUT,
    OPT_MAX_JOBS,
    OPT_PLAN_TIMEOUT,
    OPT_MAX_LOG,
    OPT_SECRET,
    OPT_LABEL,
    OPT_SLOTS,
    OPT_WORKDIR,
    OPT_HEARTBEAT,
    OPT_NO_DEMO,
    OPT_REPO,
    OPT_BRANCH,
    OPT_STATUS,
    OPT_LIMIT,
    OPT_ATTEMPT,
    OPT_JOB,
    OPT_ALL,
};

/* Print "yci CMD: <message>" and a pointer to --help on stderr; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* getopt_long() for a command: resets getopt, permutes (options may follow
 * the operands), and reports unknown options and missing arguments itself.
 * Returns the option, -1 at the end, or '?' after printing a usage error
 * (the command then returns 2). shortopts need not start with ':'. Prints
 * the help and returns 'h' for -h/--help (which the caller must list). */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
/* Call before the first cli_getopt() of a command. */
void cli_getopt_reset(void);

/* path made absolute (resolved if it exists, else joined to the cwd); free() it. */
char *cli_absolute_path(const char *path);

/* Parse a positive id ("12") for cmd; prints a usage error and returns 2 on failure. */
int cli_parse_id(const char *cmd, const char *what, const char *s, int64_t *out);

/* Where a client command finds the server and its admin token. */
struct cli_target {
    const char *server; /* --server; NULL: $YCI_SERVER, else the default */
    const char *data;   /* --data; NULL: $YCI_DATA, else ./yci-data if it exists */
    bool json;          /* --json */
};

struct cli_api {
    char *server; /* the base URL, without a trailing '/' */
    char *token;  /* the admin token, or NULL */
    struct http_client *http;
    bool json;
    /* Followers (logs -f, watch): a server that goes away (no connection, a
     * proxy's 502-504) is waited for, up to CLI_PATIENCE_MS, saying so once,
     * instead of being an error at once. */
    bool patient;
};

/* Set up api for target. With need_token, the admin token is read from
 * $YCI_TOKEN or the data directory; a missing token is not an error here (the
 * server answers 401 and api_call explains). Returns 0, or 1 after printing. */
int cli_api_open(struct cli_api *api, const struct cli_target *target, bool need_token);
void cli_api_close(struct cli_api *api);

/* One JSON request (body may be NULL). On a 2xx answer returns 0 and, if out
 * is not NULL, sets *out to the parsed body (a new reference; NULL for an
 * empty body). Otherwise prints "yci: <the server's error>" or "yci: cannot
 * reach the yci server at URL: ..." and returns 1. */
int cli_api_call(struct cli_api *api, const char *method, const char *path, json_t *body,
                 json_t **out);
/* A GET whose body is not JSON (a log); res holds the answer. 0 or 1 as above. */
int cli_api_get_raw(struct cli_api *api, const char *path, struct http_result *res);

/* Print v indented on stdout, with a newline. */
void cli_print_json(const json_t *v);

/* Accessors that tolerate missing keys and wrong types. */
const char *cli_jstr(const json_t *obj, const char *key);        /* NULL if not a string */
bool cli_jint(const json_t *obj, const char *key, int64_t *out); /* false if not an integer */
const char *cli_jstr_or(const json_t *obj, const char *key, const char *dflt);

/* Append s percent-encoded for a URL query value or path segment. */
void cli_url_escape(struct buf *b, const char *s);

/* "12s ago", "3m ago", "5h ago", "2d ago"; "-" for a time of 0 or less. */
void cli_fmt_age(char *out, size_t n, int64_t when_ms, int64_t now_ms);
/* "850ms", "12.3s", "3m04s", "2h05m"; "-" for a negative duration. */
void cli_fmt_duration(char *out, size_t n, int64_t ms);
/* The duration of a build or job object: duration_ms, else now - started
 * while it runs, else -1. */
int64_t cli_obj_duration(const json_t *obj, int64_t now_ms);

/* A table of strings printed with aligned columns (two spaces apart). */
struct cli_table;
struct cli_table *cli_table_new(size_t ncols);
/* Add a row of ncols strings (copied; NULL prints as "-"). */
void cli_table_add(struct cli_table *t, ...);
void cli_table_print(const struct cli_table *t, FILE *f);
void cli_table_free(struct cli_table *t);

/* Print a table of jobs (a build's "jobs" array) and their errors. */
void cli_print_jobs(const json_t *jobs, int64_t now_ms);
/* True if a job status is final (passed, failed, error, cancelled, timed_out). */
bool cli_job_status_final(const char *status);

/* The commands (argv[0] is the command's name). */
int cli_cmd_server(int argc, char **argv);
int cli_cmd_runner(int argc, char **argv);
int cli_cmd_up(int argc, char **argv);
int cli_cmd_repo(int argc, char **argv);
int cli_cmd_builds(int argc, char **argv);
int cli_cmd_build(int argc, char **argv);
int cli_cmd_logs(int argc, char **argv);
int cli_cmd_watch(int argc, char **argv);
int cli_cmd_runners(int argc, char **argv);
int cli_cmd_rebuild(int argc, char **argv);
int cli_cmd_cancel(int argc, char **argv);
int cli_cmd_run(int argc, char **argv);

#endif
