/*
 * commands — the client commands: repo, builds, build, runners, rebuild,
 * cancel (logs is in logs.c). Each is one or two API calls and a table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/common.h"
#include "cli/help.h"
#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define CLIENT_LONGOPTS                                                                            \
    {"server", required_argument, NULL, OPT_SERVER}, {"json", no_argument, NULL, OPT_JSON},        \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }
#define TOKEN_LONGOPT                                                                              \
    {                                                                                              \
        "data", required_argument, NULL, OPT_DATA                                                  \
    }
#define LONGOPTS_END                                                                               \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* Handle an option every client command shares; false if c is not one. */
static bool common_opt(int c, struct cli_target *t)
{
    switch (c) {
    case OPT_SERVER:
        t->server = optarg;
        return true;
    case OPT_DATA:
        t->data = optarg;
        return true;
    case OPT_JSON:
        t->json = true;
        return true;
    }
    return false;
}

/* The common shape of a command that takes only the shared options and
 * nargs operands: parse, returning -1 to go on, or an exit status. */
static int parse_simple(const char *cmd, int argc, char **argv, const struct option *longopts,
                        struct cli_target *t, int nargs, const char *operands)
{
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        if (c == 'h')
            return 0;
        if (c == '?' || !common_opt(c, t))
            return 2;
    }
    if (argc - optind < nargs)
        return cli_usage(cmd, "missing %s", operands);
    if (argc - optind > nargs)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + nargs]);
    return -1;
}

static void short_sha(char *out, size_t n, const char *sha)
{
    snprintf(out, n, "%.7s", sha ? sha : "-");
}

/* ---- yci repo ---------------------------------------------------------- */

/* True if s looks like a URL git fetches (scheme://, or scp-like host:path)
 * rather than a local path. */
static bool is_url(const char *s)
{
    if (strstr(s, "://"))
        return true;
    const char *colon = strchr(s, ':');
    const char *slash = strchr(s, '/');
    return colon && colon != s && (!slash || colon < slash);
}

static int repo_add(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, OPT_NAME}, TOKEN_LONGOPT, CLIENT_LONGOPTS, LONGOPTS_END};
    const char *cmd = "repo add";
    struct cli_target t = {0};
    const char *name = NULL;
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        if (c == 'h')
            return 0;
        if (c == OPT_NAME)
            name = optarg;
        else if (c == '?' || !common_opt(c, &t))
            return 2;
    }
    if (argc - optind < 1)
        return cli_usage(cmd, "missing PATH or URL");
    if (argc - optind > 1)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    const char *arg = argv[optind];
    if (!*arg)
        return cli_usage(cmd, "empty PATH or URL");
    if (name && !name_valid(name))
        return cli_usage(cmd,
                         "invalid name '%s': use letters, digits, '.', '_' and '-', "
                         "not first '.' or '-'",
                         name);

    struct cli_api api;
    int status = cli_api_open(&api, &t, true);
    if (status)
        return status;
    char *url = is_url(arg) ? xstrdup(arg) : cli_absolute_path(arg);
    json_t *body = json_pack("{ss}", "url", url);
    if (name)
        json_object_set_new(body, "name", json_string(name));
    json_t *repo = NULL;
    status = cli_api_call(&api, "POST", "/api/repos", body, &repo);
    if (status == 0) {
        if (api.json) {
            cli_print_json(repo);
        } else {
            const char *n = cli_jstr_or(repo, "name", "?");
            printf("Watching '%s' (%s).\n", n, cli_jstr_or(repo, "url", url));
            printf("Its branches are mirrored and built now; see them with: yci builds --repo %s\n",
                   n);
        }
    }
    json_decref(repo);
    json_decref(body);
    free(url);
    cli_api_close(&api);
    return status;
}

static int repo_list(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, LONGOPTS_END};
    struct cli_target t = {0};
    int status = parse_simple("repo list", argc, argv, longopts, &t, 0, "");
    if (status >= 0)
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    json_t *list = NULL;
    status = cli_api_call(&api, "GET", "/api/repos", NULL, &list);
    if (status == 0 && api.json) {
        cli_print_json(list);
    } else if (status == 0) {
        if (json_array_size(list) == 0) {
            printf("No repositories. Add one with: yci repo add PATH|URL\n");
        } else {
            int64_t now = time_now_ms();
            struct cli_table *tab = cli_table_new(4);
            cli_table_add(tab, "NAME", "URL", "LAST POLL", "LAST ERROR");
            size_t i;
            json_t *r;
            json_array_foreach(list, i, r)
            {
                char age[32];
                int64_t when = 0;
                cli_jint(r, "last_poll", &when);
                cli_fmt_age(age, sizeof(age), when, now);
                cli_table_add(tab, cli_jstr(r, "name"), cli_jstr(r, "url"), age,
                              cli_jstr(r, "last_error"));
            }
            cli_table_print(tab, stdout);
            cli_table_free(tab);
        }
    }
    json_decref(list);
    cli_api_close(&api);
    return status;
}

static int repo_poll(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, LONGOPTS_END};
    struct cli_target t = {0};
    int status = parse_simple("repo poll", argc, argv, longopts, &t, 1, "NAME");
    if (status >= 0)
        return status;
    const char *name = argv[optind];
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    struct buf path = BUF_INIT;
    buf_adds(&path, "/api/repos/");
    cli_url_escape(&path, name);
    buf_adds(&path, "/poll");
    json_t *res = NULL;
    status = cli_api_call(&api, "POST", path.data, NULL, &res);
    if (status == 0) {
        if (api.json)
            cli_print_json(res ? res : json_null());
        else
            printf("Polling '%s' now; new commits show up in: yci builds --repo %s\n", name, name);
    }
    json_decref(res);
    buf_release(&path);
    cli_api_close(&api);
    return status;
}

int cli_cmd_repo(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "yci repo: missing command (add, list or poll)\nTry 'yci repo --help'.\n");
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(cli_help_find("repo")->text, stdout);
        return 0;
    }
    if (strcmp(sub, "add") == 0)
        return repo_add(argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
        return repo_list(argc - 1, argv + 1);
    if (strcmp(sub, "poll") == 0)
        return repo_poll(argc - 1, argv + 1);
    fprintf(stderr, "yci repo: unknown command '%s' (add, list or poll)\nTry 'yci repo --help'.\n",
            sub);
    return 2;
}

/* ---- yci builds -------------------------------------------------------- */

static void build_row(struct cli_table *tab, const json_t *b, int64_t now)
{
    char id[24], sha[16], age[32], dur[32];
    int64_t v = 0, created = 0;
    cli_jint(b, "id", &v);
    snprintf(id, sizeof(id), "%lld", (long long)v);
    short_sha(sha, sizeof(sha), cli_jstr(b, "commit"));
    cli_jint(b, "created", &created);
    cli_fmt_age(age, sizeof(age), created, now);
    cli_fmt_duration(dur, sizeof(dur), cli_obj_duration(b, now));
    cli_table_add(tab, id, cli_jstr(b, "repo"), cli_jstr(b, "branch"), sha, cli_jstr(b, "status"),
                  age, dur);
}

int cli_cmd_builds(int argc, char **argv)
{
    static const struct option longopts[] = {{"repo", required_argument, NULL, OPT_REPO},
                                             {"branch", required_argument, NULL, OPT_BRANCH},
                                             {"status", required_argument, NULL, OPT_STATUS},
                                             {"limit", required_argument, NULL, OPT_LIMIT},
                                             CLIENT_LONGOPTS,
                                             LONGOPTS_END};
    const char *cmd = "builds";
    struct cli_target t = {0};
    const char *repo = NULL, *branch = NULL, *bstatus = NULL;
    int limit = 20, c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'h':
            return 0;
        case OPT_REPO:
            repo = optarg;
            break;
        case OPT_BRANCH:
            branch = optarg;
            break;
        case OPT_STATUS:
            bstatus = optarg;
            break;
        case OPT_LIMIT:
            if (parse_int(optarg, 1, YCI_MAX_LIST, &limit) < 0)
                return cli_usage(cmd, "invalid --limit '%s' (1 to %d)", optarg, YCI_MAX_LIST);
            break;
        default:
            if (c == '?' || !common_opt(c, &t))
                return 2;
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);

    struct cli_api api;
    int status = cli_api_open(&api, &t, false);
    if (status)
        return status;
    struct buf path = BUF_INIT;
    buf_addf(&path, "/api/builds?limit=%d", limit);
    const char *keys[] = {"repo", "branch", "status"};
    const char *vals[] = {repo, branch, bstatus};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        buf_addf(&path, "&%s=", keys[i]);
        cli_url_escape(&path, vals[i]);
    }
    json_t *list = NULL;
    status = cli_api_call(&api, "GET", path.data, NULL, &list);
    if (status == 0 && api.json) {
        cli_print_json(list);
    } else if (status == 0) {
        if (json_array_size(list) == 0) {
            printf("No builds.\n");
        } else {
            int64_t now = time_now_ms();
            struct cli_table *tab = cli_table_new(7);
            cli_table_add(tab, "ID", "REPO", "BRANCH", "COMMIT", "STATUS", "AGE", "DURATION");
            size_t i;
            json_t *b;
            json_array_foreach(list, i, b) build_row(tab, b, now);
            cli_table_print(tab, stdout);
            cli_table_free(tab);
        }
    }
    json_decref(list);
    buf_release(&path);
    cli_api_close(&api);
    return status;
}

/* ---- yci build --------------------------------------------------------- */

void cli_print_jobs(const json_t *jobs, int64_t now)
{
    struct cli_table *tab = cli_table_new(8);
    cli_table_add(tab, "JOB", "NAME", "STATUS", "ATTEMPT", "RETRIES", "RUNNER", "EXIT",
                  "DURATION");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        char id[24], attempt[24], retries[48], exitc[24], dur[32], status[64];
        int64_t v = 0, max = 0;
        cli_jint(j, "id", &v);
        snprintf(id, sizeof(id), "%lld", (long long)v);
        v = 0;
        cli_jint(j, "attempt", &v);
        snprintf(attempt, sizeof(attempt), "%lld", (long long)v);
        if (cli_jint(j, "exit_code", &v))
            snprintf(exitc, sizeof(exitc), "%lld", (long long)v);
        else
            snprintf(exitc, sizeof(exitc), "-");
        cli_fmt_duration(dur, sizeof(dur), cli_obj_duration(j, now));
        /* A retry waiting for its time, and a job that passed on a retry. */
        const char *st = cli_jstr_or(j, "status", "?");
        snprintf(status, sizeof(status), "%s", st);
        if (json_is_true(json_object_get(j, "flaky")))
            snprintf(status, sizeof(status), "%s (flaky)", st);
        else if (strcmp(st, "queued") == 0 && cli_jint(j, "not_before", &v) && v > now) {
            char in[32];
            cli_fmt_duration(in, sizeof(in), v - now);
            snprintf(status, sizeof(status), "queued (retry in %s)", in);
        }
        v = 0;
        cli_jint(j, "retries", &v);
        if (cli_jint(j, "max_retries", &max) && max > 0)
            snprintf(retries, sizeof(retries), "%lld/%lld", (long long)v, (long long)max);
        else
            snprintf(retries, sizeof(retries), "-");
        cli_table_add(tab, id, cli_jstr(j, "name"), status, attempt, retries,
                      cli_jstr(j, "runner"), exitc, dur);
    }
    cli_table_print(tab, stdout);
    cli_table_free(tab);
    json_array_foreach(jobs, i, j)
    {
        const char *err = cli_jstr(j, "error"), *why = cli_jstr(j, "queued_reason");
        int64_t id = 0;
        cli_jint(j, "id", &id);
        if (err && *err)
            printf("job %lld: %s\n", (long long)id, err);
        if (why && *why)
            printf("job %lld: queued: %s\n", (long long)id, why);
    }
}

static void print_build(const json_t *b)
{
    int64_t now = time_now_ms(), id = 0, v = 0;
    char when[32], dur[32];
    cli_jint(b, "id", &id);
    printf("Build %lld: %s\n", (long long)id, cli_jstr_or(b, "status", "?"));
    if (cli_jstr(b, "repo"))
        printf("  repo       %s\n", cli_jstr(b, "repo"));
    if (cli_jstr(b, "branch") || cli_jstr(b, "ref"))
        printf("  branch     %s%s%s%s\n", cli_jstr_or(b, "branch", "-"),
               cli_jstr(b, "ref") ? " (" : "", cli_jstr_or(b, "ref", ""),
               cli_jstr(b, "ref") ? ")" : "");
    if (cli_jstr(b, "commit"))
        printf("  commit     %s\n", cli_jstr(b, "commit"));
    if (cli_jint(b, "pull_number", &v))
        printf("  pull       #%lld%s\n", (long long)v,
               json_is_true(json_object_get(b, "untrusted")) ? " (untrusted: from a fork)" : "");
    if (cli_jint(b, "created", &v)) {
        cli_fmt_age(when, sizeof(when), v, now);
        printf("  created    %s\n", when);
    }
    cli_fmt_duration(dur, sizeof(dur), cli_obj_duration(b, now));
    printf("  duration   %s\n", dur);
    if (cli_jint(b, "rebuild_of", &v))
        printf("  rebuild of %lld\n", (long long)v);
    if (cli_jstr(b, "error") && *cli_jstr(b, "error"))
        printf("  error      %s\n", cli_jstr(b, "error"));

    json_t *jobs = json_object_get(b, "jobs");
    if (json_array_size(jobs)) {
        printf("\n");
        cli_print_jobs(jobs, now);
    }
    json_t *events = json_object_get(b, "events");
    if (json_array_size(events)) {
        printf("\nEvents:\n");
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e)
        {
            int64_t t = 0, job = 0;
            cli_jint(e, "time", &t);
            cli_fmt_age(when, sizeof(when), t, now);
            if (cli_jint(e, "job_id", &job))
                printf("  %-9s job %lld: %s\n", when, (long long)job,
                       cli_jstr_or(e, "message", ""));
            else
                printf("  %-9s %s\n", when, cli_jstr_or(e, "message", ""));
        }
    }
}

int cli_cmd_build(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, LONGOPTS_END};
    struct cli_target t = {0};
    int64_t id;
    int status = parse_simple("build", argc, argv, longopts, &t, 1, "build ID");
    if (status >= 0)
        return status;
    if ((status = cli_parse_id("build", "build id", argv[optind], &id)))
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    char path[64];
    snprintf(path, sizeof(path), "/api/builds/%lld", (long long)id);
    json_t *b = NULL;
    status = cli_api_call(&api, "GET", path, NULL, &b);
    if (status == 0) {
        if (api.json)
            cli_print_json(b);
        else
            print_build(b);
    }
    json_decref(b);
    cli_api_close(&api);
    return status;
}

/* ---- yci runners ------------------------------------------------------- */

int cli_cmd_runners(int argc, char **argv)
{
    static const struct option longopts[] = {{"all", no_argument, NULL, OPT_ALL}, CLIENT_LONGOPTS,
                                             LONGOPTS_END};
    struct cli_target t = {0};
    bool all = false;
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt("runners", argc, argv, "h", longopts)) != -1) {
        if (c == 'h')
            return 0;
        if (c == OPT_ALL)
            all = true;
        else if (c == '?' || !common_opt(c, &t))
            return 2;
    }
    if (optind < argc)
        return cli_usage("runners", "unexpected argument '%s'", argv[optind]);
    int status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    json_t *list = NULL;
    status = cli_api_call(&api, "GET", all ? "/api/runners?all=1" : "/api/runners", NULL, &list);
    if (status == 0 && api.json) {
        cli_print_json(list);
    } else if (status == 0 && json_array_size(list) == 0) {
        printf("No runners. Start one with: yci runner --server URL\n");
    } else if (status == 0) {
        int64_t now = time_now_ms();
        struct cli_table *tab = cli_table_new(7);
        cli_table_add(tab, "ID", "NAME", "LABELS", "SLOTS", "ALIVE", "LAST SEEN", "JOBS");
        size_t i;
        json_t *r;
        json_array_foreach(list, i, r)
        {
            char id[24], slots[24], seen[32];
            int64_t v = 0;
            struct buf labels = BUF_INIT, jobs = BUF_INIT;
            cli_jint(r, "id", &v);
            snprintf(id, sizeof(id), "%lld", (long long)v);
            v = 0;
            cli_jint(r, "slots", &v);
            snprintf(slots, sizeof(slots), "%lld", (long long)v);
            v = 0;
            cli_jint(r, "last_seen", &v);
            cli_fmt_age(seen, sizeof(seen), v, now);
            const char *key;
            json_t *val;
            json_object_foreach(json_object_get(r, "labels"), key, val)
            {
                buf_addf(&labels, "%s%s=%s", labels.len ? "," : "", key,
                         json_is_string(val) ? json_string_value(val) : "?");
            }
            size_t k;
            json_t *job;
            json_array_foreach(json_object_get(r, "jobs"), k, job)
            {
                int64_t jid = 0;
                cli_jint(job, "id", &jid);
                buf_addf(&jobs, "%s%lld", jobs.len ? "," : "", (long long)jid);
            }
            json_t *alive = json_object_get(r, "alive");
            cli_table_add(tab, id, cli_jstr(r, "name"), labels.data, slots,
                          json_is_true(alive) ? "yes" : "no", seen, jobs.data);
            buf_release(&labels);
            buf_release(&jobs);
        }
        cli_table_print(tab, stdout);
        cli_table_free(tab);
    }
    json_decref(list);
    cli_api_close(&api);
    return status;
}

/* ---- yci rebuild, yci cancel ------------------------------------------- */

int cli_cmd_rebuild(int argc, char **argv)
{
    static const struct option longopts[] = {TOKEN_LONGOPT, CLIENT_LONGOPTS, LONGOPTS_END};
    struct cli_target t = {0};
    int64_t id;
    int status = parse_simple("rebuild", argc, argv, longopts, &t, 1, "build ID");
    if (status >= 0)
        return status;
    if ((status = cli_parse_id("rebuild", "build id", argv[optind], &id)))
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, true)))
        return status;
    char path[64];
    snprintf(path, sizeof(path), "/api/builds/%lld/rebuild", (long long)id);
    json_t *b = NULL;
    status = cli_api_call(&api, "POST", path, NULL, &b);
    if (status == 0) {
        int64_t nid = 0;
        cli_jint(b, "id", &nid);
        if (api.json)
            cli_print_json(b);
        else
            printf("Build %lld queued (a rebuild of %lld); follow it with: yci build %lld\n",
                   (long long)nid, (long long)id, (long long)nid);
    }
    json_decref(b);
    cli_api_close(&api);
    return status;
}

int cli_cmd_cancel(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"job", no_argument, NULL, OPT_JOB}, TOKEN_LONGOPT, CLIENT_LONGOPTS, LONGOPTS_END};
    const char *cmd = "cancel";
    struct cli_target t = {0};
    bool job = false;
    int64_t id;
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        if (c == 'h')
            return 0;
        if (c == OPT_JOB)
            job = true;
        else if (c == '?' || !common_opt(c, &t))
            return 2;
    }
    if (argc - optind < 1)
        return cli_usage(cmd, "missing %s ID", job ? "job" : "build");
    if (argc - optind > 1)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    int status = cli_parse_id(cmd, job ? "job id" : "build id", argv[optind], &id);
    if (status)
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, true)))
        return status;
    char path[64];
    snprintf(path, sizeof(path), "/api/%s/%lld/cancel", job ? "jobs" : "builds", (long long)id);
    json_t *res = NULL;
    status = cli_api_call(&api, "POST", path, NULL, &res);
    if (status == 0 && api.json) {
        cli_print_json(res);
    } else if (status == 0 && job) {
        printf("Job %lld: %s\n", (long long)id, cli_jstr_or(res, "status", "?"));
    } else if (status == 0) {
        int64_t n = 0;
        cli_jint(res, "cancelled", &n);
        printf("Cancelled %lld job%s of build %lld.\n", (long long)n, n == 1 ? "" : "s",
               (long long)id);
    }
    json_decref(res);
    cli_api_close(&api);
    return status;
}
