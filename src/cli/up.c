/*
 * up — `yci up`: the server and a local runner in one process, and on first
 * start a demo repository whose first build is shown from end to end.
 *
 * The local runner is an ordinary runner: it registers with the server's
 * registration secret and talks HTTP to the server's URL. The walk-through
 * uses the HTTP API too (with the admin token), never the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/common.h"
#include "cli/daemon.h"
#include "cli/demo.h"
#include "cli/sigwatch.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "os/spawn.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "runner/runner.h"
#include "server/server.h"
#include "lib/banned.h"

#define DEMO_NAME "demo"
/* How long the walk-through waits for the first build before it just says where to look. */
#define FIRST_BUILD_WAIT_MS (10 * 60 * 1000)
#define POLL_MS 250
/* Lines of each job's log shown after the first build. */
#define LOG_TAIL_LINES 8
#define LOG_TAIL_JOBS 3

struct up {
    struct server *srv;
    const char *url;
    char *data_abs;
    bool data_given; /* --data: tell the user to export YCI_DATA */
    struct cli_api api;
};

/* Print the last LOG_TAIL_LINES lines of a job's log, indented. */
static void print_log_tail(struct up *up, const json_t *job)
{
    int64_t id = 0, size = 0;
    cli_jint(job, "id", &id);
    cli_jint(job, "log_size", &size);
    char path[128];
    int64_t offset = size > 4096 ? size - 4096 : 0;
    snprintf(path, sizeof(path), "/api/jobs/%lld/log?offset=%lld", (long long)id,
             (long long)offset);
    struct http_result res = HTTP_RESULT_INIT;
    if (cli_api_get_raw(&up->api, path, &res) == 0 && res.body.len) {
        size_t end = res.body.len;
        while (end && res.body.data[end - 1] == '\n')
            end--;
        size_t start = end;
        int lines = 0;
        while (start > 0 && lines < LOG_TAIL_LINES) {
            start--;
            if (res.body.data[start] == '\n' && ++lines == LOG_TAIL_LINES) {
                start++;
                break;
            }
        }
        printf("\nLog of job %lld (%s), last lines:\n", (long long)id,
               cli_jstr_or(job, "name", "?"));
        const char *p = res.body.data + start, *e = res.body.data + end;
        while (p < e) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(e - p);
            printf("  | %.*s\n", (int)n, p);
            p += n + 1;
        }
    }
    http_result_release(&res);
}

static void print_next_steps(struct up *up, int64_t build_id, int64_t job_id)
{
    printf("\nTry next, in another terminal:\n");
    if (strcmp(up->url, CLI_DEFAULT_SERVER) != 0)
        printf("  export YCI_SERVER=%s\n", up->url);
    if (up->data_given)
        printf("  export YCI_DATA=%s\n", up->data_abs);
    printf("  yci builds                       list the builds\n");
    if (build_id > 0)
        printf("  yci build %-6lld                 this build and its jobs\n", (long long)build_id);
    if (job_id > 0)
        printf("  yci logs %-6lld                  the log of its job\n", (long long)job_id);
    printf("  yci repo add /path/to/your/repo  build your own repository (a tests/ folder,\n"
           "                                   or a Makefile with check or test)\n");
    printf("  yci runner --server %s --data %s\n"
           "                                   another runner (on any machine, with --secret)\n",
           up->url, up->data_abs);
    printf("\nDashboard: %s\nPress Ctrl-C to stop.\n", up->url);
    fflush(stdout);
}

/* Wait for the first build of the demo repository and show it. Returns true
 * when a stop was asked meanwhile. */
static bool show_first_build(struct up *up)
{
    int64_t id = 0, deadline = time_mono_ms() + FIRST_BUILD_WAIT_MS;
    char last[32] = "";
    json_t *build = NULL;
    printf("Waiting for its first build...\n");
    fflush(stdout);
    for (;;) {
        json_t *list = NULL;
        if (cli_api_call(&up->api, "GET", "/api/builds?repo=" DEMO_NAME, NULL, &list) != 0)
            break;
        size_t n = json_array_size(list);
        json_t *first =
            n ? json_array_get(list, n - 1) : NULL; /* newest first: the last is the first */
        const char *st = cli_jstr(first, "status");
        if (first && st) {
            cli_jint(first, "id", &id);
            if (strcmp(st, last) != 0) {
                printf("  build %lld: %s\n", (long long)id, st);
                fflush(stdout);
                snprintf(last, sizeof(last), "%s", st);
            }
            if (cli_job_status_final(st)) {
                json_decref(list);
                break;
            }
        }
        json_decref(list);
        if (sigwatch_wait(POLL_MS))
            return true;
        if (time_mono_ms() > deadline) {
            printf("The first build is taking long; it will show up on the dashboard.\n");
            id = 0;
            break;
        }
    }
    if (id <= 0 || !cli_job_status_final(last)) {
        print_next_steps(up, 0, 0);
        return false;
    }

    char path[64];
    snprintf(path, sizeof(path), "/api/builds/%lld", (long long)id);
    int64_t job_id = 0;
    if (cli_api_call(&up->api, "GET", path, NULL, &build) == 0) {
        char dur[32], sha[16];
        int64_t now = time_now_ms();
        cli_fmt_duration(dur, sizeof(dur), cli_obj_duration(build, now));
        snprintf(sha, sizeof(sha), "%.7s", cli_jstr_or(build, "commit", "-"));
        printf("\nBuild %lld of %s (%s, %s): %s in %s\n", (long long)id, DEMO_NAME,
               cli_jstr_or(build, "branch", "-"), sha, cli_jstr_or(build, "status", "?"), dur);
        if (cli_jstr(build, "error") && *cli_jstr(build, "error"))
            printf("  error: %s\n", cli_jstr(build, "error"));
        json_t *jobs = json_object_get(build, "jobs");
        if (json_array_size(jobs)) {
            printf("\n");
            cli_print_jobs(jobs, now);
            cli_jint(json_array_get(jobs, 0), "id", &job_id);
        }
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job)
        {
            if (i >= LOG_TAIL_JOBS)
                break;
            print_log_tail(up, job);
        }
        printf("\nSee it at %s/builds/%lld\n", up->url, (long long)id);
    }
    json_decref(build);
    print_next_steps(up, id, job_id);
    return false;
}

/* The first-start walk-through; returns true when a stop was asked meanwhile. */
static bool walkthrough(struct up *up, bool demo)
{
    json_t *repos = NULL, *body = NULL, *repo = NULL;
    char *demo_dir = NULL;
    struct buf err = BUF_INIT;
    bool stop = false;
    if (cli_api_call(&up->api, "GET", "/api/repos", NULL, &repos) != 0)
        goto out;
    size_t n = json_array_size(repos);
    if (n > 0) {
        printf("Watching %zu repositor%s:", n, n == 1 ? "y" : "ies");
        size_t i;
        json_t *r;
        json_array_foreach(repos, i, r) printf(" %s", cli_jstr_or(r, "name", "?"));
        printf("\n");
        print_next_steps(up, 0, 0);
        goto out;
    }
    if (!demo) {
        printf("No repository yet.\n");
        print_next_steps(up, 0, 0);
        goto out;
    }
    demo_dir = xasprintf("%s/" DEMO_NAME, up->data_abs);
    int r = cli_demo_create(demo_dir, &err);
    if (r < 0) {
        log_error("cannot create the demo repository in '%s': %s", demo_dir,
                  err.len ? err.data : strerror(-r));
        print_next_steps(up, 0, 0);
        goto out;
    }
    body = json_pack("{ssss}", "url", demo_dir, "name", DEMO_NAME);
    if (cli_api_call(&up->api, "POST", "/api/repos", body, &repo) != 0) {
        print_next_steps(up, 0, 0);
        goto out;
    }
    printf("Created a demo repository in %s (a tests/ folder of unittest tests)\n"
           "and added it as '%s'.\n",
           demo_dir, DEMO_NAME);
    stop = show_first_build(up);
out:
    fflush(stdout);
    json_decref(repos);
    json_decref(body);
    json_decref(repo);
    free(demo_dir);
    buf_release(&err);
    return stop;
}

int cli_cmd_up(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, OPT_LISTEN},
                                             {"data", required_argument, NULL, OPT_DATA},
                                             {"slots", required_argument, NULL, OPT_SLOTS},
                                             {"label", required_argument, NULL, OPT_LABEL},
                                             {"no-demo", no_argument, NULL, OPT_NO_DEMO},
                                             {"max-jobs-per-build", required_argument, NULL,
                                              OPT_MAX_JOBS},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "up";
    struct server_config scfg = SERVER_CONFIG_INIT;
    struct runner_config rcfg = {0};
    struct cli_labels labels = {0};
    struct up up = {0};
    struct runner *runner = NULL;
    struct buf err = BUF_INIT;
    const char *data = NULL;
    char *workdir = NULL;
    bool demo = true;
    int status = 2, c;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rcfg.slots = ncpu > 0 ? (int)(ncpu > 1024 ? 1024 : ncpu) : 1;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'h':
            status = 0;
            goto out;
        case OPT_LISTEN:
            scfg.listen = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_SLOTS:
            if (parse_int(optarg, 1, 1024, &rcfg.slots) < 0) {
                cli_usage(cmd, "invalid --slots '%s' (1 to 1024)", optarg);
                goto out;
            }
            break;
        case OPT_LABEL:
            if (cli_labels_add(&labels, cmd, optarg))
                goto out;
            break;
        case OPT_NO_DEMO:
            demo = false;
            break;
        case OPT_MAX_JOBS:
            if (parse_int(optarg, 1, YCI_MAX_JOBS_PER_BUILD_CAP, &scfg.max_jobs_per_build) < 0) {
                cli_usage(cmd, "invalid --max-jobs-per-build '%s' (1 to %d)", optarg,
                          YCI_MAX_JOBS_PER_BUILD_CAP);
                goto out;
            }
            break;
        default:
            goto out;
        }
    }
    if (optind < argc) {
        cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    up.data_given = data != NULL;
    scfg.data_dir = cli_data_dir(data);
    cli_github_env(&scfg);
    if (!scfg.listen)
        scfg.listen = "127.0.0.1:8888";

    status = 1;
    log_set_prefix("up");
    /* Before any thread starts: job supervisors are then forked by a small
     * helper process, not by this large one (src/os/spawn.c). */
    if (spawn_helper_start(NULL, &err) < 0) {
        log_warn("%s: spawning without it", err.data);
        buf_reset(&err);
    }
    int r = sigwatch_start();
    if (r < 0) {
        log_error("cannot watch signals: %s", strerror(-r));
        goto out;
    }
    if (server_start(&scfg, &up.srv, &err) < 0) {
        log_error("cannot start the server: %s", err.len ? err.data : "unknown error");
        goto out;
    }
    up.url = server_url(up.srv);
    up.data_abs = cli_absolute_path(scfg.data_dir);
    workdir = xasprintf("%s/runner", up.data_abs);
    rcfg.server_url = up.url;
    rcfg.registration_secret = server_registration_secret(up.srv);
    rcfg.labels = labels.v;
    rcfg.nlabels = labels.n;
    rcfg.workdir = workdir;
    rcfg.heartbeat = 10;
    rcfg.claim_wait = CLI_CLAIM_WAIT;
    if (runner_start(&rcfg, &runner, &err) < 0) {
        log_error("cannot start the local runner: %s", err.len ? err.data : "unknown error");
        goto out;
    }
    sigwatch_arm();
    printf("yci %s is up at %s (data in %s, a local runner with %d slot%s)\n", YCI_VERSION, up.url,
           up.data_abs, rcfg.slots, rcfg.slots == 1 ? "" : "s");
    fflush(stdout);

    struct cli_target t = {up.url, NULL, false};
    if ((status = cli_api_open(&up.api, &t, false)))
        goto out;
    up.api.token = xstrdup(server_admin_token(up.srv));
    http_client_set_token(up.api.http, up.api.token);
    if (!walkthrough(&up, demo))
        sigwatch_wait(-1);
    status = 0;
out:
    cli_api_close(&up.api);
    if (runner) {
        log_debug("stopping the local runner");
        runner_free(runner);
    }
    if (up.srv) {
        log_debug("stopping the server");
        server_free(up.srv);
        log_info("stopped");
    }
    spawn_helper_stop();
    sigwatch_stop();
    free(up.data_abs);
    free(workdir);
    cli_labels_release(&labels);
    buf_release(&err);
    return status;
}
