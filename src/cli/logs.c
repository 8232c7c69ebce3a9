/*
 * logs — `yci logs [-f] JOB`: print a job's log, and follow it while it runs.
 *
 * Following asks the API: GET /api/jobs/{id} for the status, the current
 * attempt and the log's size, then GET /api/jobs/{id}/log from the offset
 * printed so far (in chunks of at most YCI_MAX_LOG_CHUNK) with wait=20: the
 * server answers as soon as new bytes arrive (or the job ends), so output
 * shows within milliseconds of its upload. Before the first attempt starts
 * it asks every ~200 ms. The bytes go to stdout unbuffered as they arrive. When the
 * job is re-queued (its runner was lost) its attempt changes and the log of
 * the new attempt is printed from its start, after a note on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/common.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define FOLLOW_INTERVAL_MS 200
/* How long one follow request may wait on the server for new bytes. */
#define FOLLOW_WAIT_S 20

bool cli_job_status_final(const char *s)
{
    return s && (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "error") == 0 ||
                 strcmp(s, "cancelled") == 0 || strcmp(s, "timed_out") == 0);
}

/* Print the log of (job, attempt) from *offset up to its current end; attempt
 * 0 means the server's current one. Returns 0 or 1 (error printed). */
static int print_from(struct cli_api *api, int64_t job, int64_t attempt, int64_t *offset,
                      int wait)
{
    struct http_result res = HTTP_RESULT_INIT;
    int status = 0;
    for (;;) {
        char path[128];
        int n = snprintf(path, sizeof(path), "/api/jobs/%lld/log?offset=%lld&limit=%d",
                         (long long)job, (long long)*offset, YCI_MAX_LOG_CHUNK);
        if (attempt > 0)
            n += snprintf(path + n, sizeof(path) - (size_t)n, "&attempt=%lld", (long long)attempt);
        /* The first request may wait for new bytes (follow.c on the server). */
        if (wait > 0)
            snprintf(path + n, sizeof(path) - (size_t)n, "&wait=%d", wait);
        wait = 0;
        if ((status = cli_api_get_raw(api, path, &res)))
            break;
        if (res.body.len == 0)
            break;
        int r = fd_write_all(STDOUT_FILENO, res.body.data, res.body.len);
        if (r < 0) {
            if (r != -EPIPE)
                fprintf(stderr, "yci: cannot write the log: %s\n", strerror(-r));
            status = 1;
            break;
        }
        *offset += (int64_t)res.body.len;
        if (res.body.len < YCI_MAX_LOG_CHUNK)
            break;
    }
    http_result_release(&res);
    return status;
}

static int follow(struct cli_api *api, int64_t job, int64_t want_attempt)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/jobs/%lld", (long long)job);
    int64_t offset = 0, attempt = want_attempt;
    int status;
    for (;;) {
        json_t *j = NULL;
        if ((status = cli_api_call(api, "GET", path, NULL, &j)))
            return status;
        api->patient = true; /* it answered once: a restart is waited for */
        int64_t current = 0;
        cli_jint(j, "attempt", &current);
        const char *st = cli_jstr(j, "status");
        bool final = cli_job_status_final(st);
        bool passed = st && strcmp(st, "passed") == 0;
        char *st_copy = NULL;
        if (final && !passed)
            st_copy = xstrdup(st);
        json_decref(j);

        if (want_attempt == 0 && current > 0 && current != attempt) {
            if (attempt > 0)
                fprintf(stderr, "\nyci: job %lld was re-queued; attempt %lld follows\n",
                        (long long)job, (long long)current);
            attempt = current;
            offset = 0;
        }
        int64_t before = offset;
        /* Not final: the server holds the request until new bytes come. */
        status = attempt > 0 ? print_from(api, job, attempt, &offset, final ? 0 : FOLLOW_WAIT_S)
                             : 0;
        if (status) {
            free(st_copy);
            return status;
        }
        /* The status was read before the log: once final, the log read after
         * it is complete. */
        if (final) {
            if (st_copy)
                fprintf(stderr, "yci: job %lld %s\n", (long long)job, st_copy);
            free(st_copy);
            return passed ? 0 : 1;
        }
        if (offset == before && attempt == 0)
            time_sleep_ms(FOLLOW_INTERVAL_MS); /* not started: nothing to wait on */
    }
}

int cli_cmd_logs(int argc, char **argv)
{
    static const struct option longopts[] = {{"follow", no_argument, NULL, 'f'},
                                             {"attempt", required_argument, NULL, OPT_ATTEMPT},
                                             {"server", required_argument, NULL, OPT_SERVER},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "logs";
    struct cli_target t = {0};
    bool follow_opt = false;
    int64_t attempt = 0, job;
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "fh", longopts)) != -1) {
        switch (c) {
        case 'h':
            return 0;
        case 'f':
            follow_opt = true;
            break;
        case OPT_ATTEMPT:
            if (parse_int64(optarg, 1, INT32_MAX, &attempt) < 0)
                return cli_usage(cmd, "invalid --attempt '%s'", optarg);
            break;
        case OPT_SERVER:
            t.server = optarg;
            break;
        default:
            return 2;
        }
    }
    if (argc - optind < 1)
        return cli_usage(cmd, "missing JOB (a job id; 'yci build ID' lists them)");
    if (argc - optind > 1)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    int status = cli_parse_id(cmd, "job id", argv[optind], &job);
    if (status)
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    if (follow_opt) {
        status = follow(&api, job, attempt);
    } else {
        int64_t offset = 0;
        status = print_from(&api, job, attempt, &offset, 0);
    }
    cli_api_close(&api);
    return status;
}
