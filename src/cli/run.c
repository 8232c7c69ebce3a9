/*
 * run — `yci run [PATH]`: run a repository's pipeline locally, with no server.
 *
 * The pipeline comes from the working tree's files as they are on disk (users
 * try a .yci.yml before committing it): .yci.yml parsed by src/pipeline for
 * the current branch, else .yci.py (its generator run by the plan driver, as a
 * runner does, see runner/plan.h), else the server's default rule (a tests/ folder, a
 * Makefile with a check or test target, see server/pipeline.h). Jobs run one
 * after the other in PATH itself, in file order moved only as far as `needs`
 * requires; a job whose needs did not pass is skipped. Each command runs as
 * `/bin/sh -c COMMAND` (the user's own command) through os/spawn, in its own
 * contained process group, with its output on our stdout as it comes.
 *
 * What differs from a runner, on purpose: no clean workspace and no commit
 * checkout (the point is to run what is on disk), the user's whole
 * environment (plus CI, YCI and the job's env), labels are ignored, and a
 * retry starts at once instead of waiting its increment.
 *
 * Exit status: 0 when every job passed, 1 otherwise, 2 when there is nothing
 * to run or the pipeline is invalid (usage errors too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/common.h"
#include "lib/buf.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/limits.h"
#include "os/spawn.h"
#include "pipeline/pipeline.h"
#include "runner/plan.h"
#include "server/pipeline.h"
#include "lib/banned.h"

/* How long a timed-out job's process group has between SIGTERM and SIGKILL. */
#define RUN_KILL_GRACE_MS 5000
/* How long `git rev-parse` may take to name the current branch. */
#define RUN_GIT_TIMEOUT_MS 10000

extern char **environ;

/* The outcome of one job, for the summary. */
struct run_result {
    const char *status;  /* passed, failed, timed_out, error, skipped */
    int exit_code;       /* -1: none */
    int64_t duration_ms; /* -1: did not run */
};

/* The type of path: 'd' directory, 'f' regular file, 'o' other, 0 missing. */
static char path_type(const char *dir, const char *name)
{
    char *p = xasprintf("%s/%s", dir, name);
    struct stat st;
    int r = stat(p, &st);
    free(p);
    if (r < 0)
        return 0;
    return S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'o';
}

/* The current branch of the working tree at dir, or NULL (not a repository,
 * a detached HEAD, no git). */
static char *current_branch(const char *dir)
{
    const char *const argv[] = {"git", "-C", dir, "rev-parse", "--abbrev-ref", "HEAD", NULL};
    struct spawn_opts o = {.argv = argv, .envp = NULL, .cwd = NULL, .out_fd = SPAWN_PIPE};
    struct buf out = BUF_INIT, err = BUF_INIT;
    out.max = 4096;
    int status = 0;
    char *branch = NULL;
    if (spawn_run(&o, RUN_GIT_TIMEOUT_MS, &out, &status, &err) == 0 &&
        spawn_exit_code(status) == 0 && out.data) {
        size_t len = out.len;
        while (len > 0 && (out.data[len - 1] == '\n' || out.data[len - 1] == '\r'))
            len--;
        if (len > 0 && memchr(out.data, '\n', len) == NULL &&
            !(len == 4 && memcmp(out.data, "HEAD", 4) == 0))
            branch = xstrndup(out.data, len);
    }
    buf_release(&out);
    buf_release(&err);
    return branch;
}

/* Read dir/name into text when it is at most max bytes. 0, or 2 after printing. */
static int read_small_file(const char *dir, const char *name, size_t max, struct buf *text)
{
    char *p = xasprintf("%s/%s", dir, name);
    struct stat st;
    int status = 0;
    if (stat(p, &st) == 0 && (size_t)st.st_size > max) {
        fprintf(stderr, "yci run: %s is larger than %zu bytes\n", p, max);
        status = 2;
    } else {
        int r = file_read(p, text);
        if (r < 0) {
            fprintf(stderr, "yci run: cannot read %s: %s\n", p, strerror(-r));
            status = 2;
        }
    }
    free(p);
    return status;
}

static json_t *one_job(const char *name, const char *command)
{
    return json_pack("[{s:s, s:[s], s:{}, s:{}, s:i, s:{s:i, s:i}, s:[]}]", "name", name,
                     "commands", command, "env", "labels", "timeout", 0, "retry", "count", 0,
                     "increment", 0, "needs");
}

/*
 * The jobs of a .yci.py: its test_generator(0, pull) run by the plan driver
 * (runner/plan.h) in dir, in bubblewrap when it works here, with the time
 * limit a runner gives it; its output on our stdout. 0, or 2 after printing.
 */
static int load_py(const char *dir, const char *branch, json_t **jobs, const char **source)
{
    const char *tmp = getenv("TMPDIR");
    char *pdir = xasprintf("%s/yci-plan-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int status = 2;
    char **argv = NULL;
    json_t *found = NULL;
    struct buf err = BUF_INIT;
    if (!mkdtemp(pdir)) {
        fprintf(stderr, "yci run: cannot make a directory like %s: %s\n", pdir, strerror(errno));
        free(pdir);
        return 2;
    }
    char *ref = branch ? xasprintf("refs/heads/%s", branch) : NULL;
    json_t *pull = json_pack("{s:n, s:s?, s:s?, s:n, s:i}", "repo", "ref", ref, "branch", branch,
                             "commit", "build_id", 0);
    free(ref);
    int r = plan_prepare(pdir, pull, &err);
    json_decref(pull);
    if (r < 0) {
        fprintf(stderr, "yci run: %s\n", err.data);
        goto out;
    }
    bool sandbox = plan_sandbox();
    printf("yci run: running test_generator(0, pull) of %s/%s%s\n", dir, PIPELINE_PY,
           sandbox ? " in a bubblewrap sandbox" : "");
    fflush(stdout);
    argv = plan_argv(pdir, dir, 0, YCI_MAX_JOBS_PER_BUILD_CAP, sandbox);
    struct spawn_opts o = {(const char *const *)argv, NULL, dir, STDOUT_FILENO};
    struct spawn *s;
    if (spawn_start(&o, &s, &err) < 0) {
        fprintf(stderr, "yci run: cannot run the .yci.py plan: %s\n", err.data);
        goto out;
    }
    int wstatus = 0;
    if (spawn_wait(s, (int64_t)YCI_PLAN_TIMEOUT * 1000, &wstatus) == -ETIMEDOUT) {
        spawn_terminate(s, RUN_KILL_GRACE_MS, &wstatus);
        spawn_free(s);
        fprintf(stderr, "%s: test_generator ran past its time limit of %d s\n", PIPELINE_PY,
                YCI_PLAN_TIMEOUT);
        goto out;
    }
    spawn_free(s);
    buf_reset(&err);
    if (plan_result(pdir, &found, &err) < 0) {
        fprintf(stderr, "%s\n", err.data);
        goto out;
    }
    buf_reset(&err);
    if (pipeline_validate_jobs(found, 0, jobs, &err) < 0) {
        fprintf(stderr, "%s: %s\n", PIPELINE_PY, err.data);
        goto out;
    }
    *source = PIPELINE_PY;
    status = 0;
out:
    plan_argv_free(argv);
    json_decref(found);
    remove_tree(pdir);
    free(pdir);
    buf_release(&err);
    return status;
}

/* The jobs of the working tree at dir: *jobs set and 0, or 2 after printing. */
static int load_jobs(const char *dir, const char *branch, json_t **jobs, const char **source)
{
    char t = path_type(dir, PIPELINE_YML);
    if (t == 'f') {
        struct buf text = BUF_INIT, err = BUF_INIT;
        int status = read_small_file(dir, PIPELINE_YML, PIPELINE_MAX_YML, &text);
        if (status == 0) {
            json_t *parsed = NULL;
            if (pipeline_parse_yml(text.data ? text.data : "", text.len, PIPELINE_YML, branch, 0,
                                   &parsed, &err) < 0) {
                fprintf(stderr, "%s\n", err.data ? err.data : "invalid " PIPELINE_YML);
                status = 2;
            } else {
                *jobs = json_incref(json_object_get(parsed, "jobs"));
                json_decref(parsed);
                *source = PIPELINE_YML;
            }
        }
        buf_release(&text);
        buf_release(&err);
        return status;
    }
    if (t != 0) {
        fprintf(stderr, "yci run: %s/%s is not a regular file\n", dir, PIPELINE_YML);
        return 2;
    }
    t = path_type(dir, PIPELINE_PY);
    if (t == 'f')
        return load_py(dir, branch, jobs, source);
    if (t != 0) {
        fprintf(stderr, "yci run: %s/%s is not a regular file\n", dir, PIPELINE_PY);
        return 2;
    }
    if (path_type(dir, "tests") == 'd') {
        *jobs = one_job("tests", "python3 -m unittest discover -s tests -v");
        *source = "the default rule (a tests/ folder)";
        return 0;
    }
    static const char *const makefiles[] = {"GNUmakefile", "makefile", "Makefile"};
    for (size_t i = 0; i < sizeof(makefiles) / sizeof(makefiles[0]); i++) {
        if (path_type(dir, makefiles[i]) != 'f')
            continue;
        struct buf text = BUF_INIT;
        int status = read_small_file(dir, makefiles[i], PIPELINE_MAX_FILE, &text);
        const char *target =
            status == 0 ? pipeline_make_target(text.data ? text.data : "", text.len) : NULL;
        buf_release(&text);
        if (status)
            return status;
        if (!target)
            break; /* make reads only the first of its names that exists */
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "make %s", target);
        *jobs = one_job(target, cmd);
        *source = "the default rule (a Makefile)";
        return 0;
    }
    fprintf(stderr,
            "yci run: no pipeline found in %s: yci looked for a .yci.yml file, a .yci.py file, "
            "a tests/ folder "
            "(run with python3 -m unittest discover) and a Makefile with a check or test "
            "target\n",
            dir);
    return 2;
}

/* Does job name match the --job argument sel: the name itself, or every
 * cell of the matrix job sel ("tests" selects "tests (foo, x)")? */
static bool job_selected(const char *name, const char *sel)
{
    size_t n = strlen(sel);
    return strcmp(name, sel) == 0 ||
           (strncmp(name, sel, n) == 0 && strncmp(name + n, " (", 2) == 0);
}

/* The user's environment, PWD (dir's, as the shell would export it), CI=true,
 * YCI=true, then the job's env. */
static char **job_env(const json_t *job, const char *dir, size_t *n)
{
    char **env = xcalloc(1, sizeof *env);
    *n = 0;
    for (char **e = environ; *e; e++)
        if (strchr(*e, '='))
            env_set(&env, n, *e);
    char *abs = realpath(dir, NULL), *pwd = xasprintf("PWD=%s", abs ? abs : dir);
    env_set(&env, n, pwd);
    free(pwd);
    free(abs);
    env_set(&env, n, "CI=true");
    env_set(&env, n, "YCI=true");
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(job, "env"), key, value)
    {
        char *kv = xasprintf("%s=%s", key, json_is_string(value) ? json_string_value(value) : "");
        env_set(&env, n, kv);
        free(kv);
    }
    return env;
}

/* Run one command of a job until it ends or the deadline (0: none) passes.
 * Sets *exit_code; returns 0, 1 when the command could not start (printed)
 * or -ETIMEDOUT when the job timed out (its processes are then gone). A
 * command of plain words starts without a shell, as on a runner
 * (spawn_command()). */
static int run_command(const char *cmd, const char *dir, char **env, int64_t deadline,
                       int *exit_code)
{
    struct spawn_opts o = {.envp = (const char *const *)env, .cwd = dir, .out_fd = STDOUT_FILENO};
    struct spawn *s = NULL;
    struct buf err = BUF_INIT;
    bool direct = false;
    fflush(stdout);
    int r = spawn_command(cmd, &o, &s, &direct, &err);
    if (r < 0) {
        fprintf(stderr, "yci run: cannot run the command: %s\n", err.data ? err.data : "?");
        buf_release(&err);
        *exit_code = -1;
        return 1;
    }
    buf_release(&err);
    int status = 0;
    int64_t wait_ms = deadline > 0 ? deadline - time_mono_ms() : -1;
    r = spawn_wait(s, wait_ms < 0 && deadline > 0 ? 0 : wait_ms, &status);
    if (r == -ETIMEDOUT) {
        spawn_terminate(s, RUN_KILL_GRACE_MS, &status);
        *exit_code = spawn_exit_code(status);
        spawn_free(s);
        return -ETIMEDOUT;
    }
    *exit_code = r < 0 ? -1 : spawn_exit_code(status);
    char note[96];
    if (r >= 0 && direct && spawn_death_note(status, note, sizeof note)) {
        fputs(note, stdout);
        fflush(stdout);
    }
    spawn_free(s);
    return r < 0 ? 1 : 0;
}

/* One attempt of a job: its commands in order, stopping at the first failure. */
static void run_attempt(const json_t *job, const char *dir, struct run_result *res)
{
    const char *name = json_string_value(json_object_get(job, "name"));
    size_t nenv;
    char **env = job_env(job, dir, &nenv);
    json_int_t timeout = json_integer_value(json_object_get(job, "timeout"));
    int64_t deadline = timeout > 0 ? time_mono_ms() + (int64_t)timeout * 1000 : 0;
    res->status = "passed";
    res->exit_code = 0;
    size_t i;
    json_t *cmd;
    json_array_foreach(json_object_get(job, "commands"), i, cmd)
    {
        const char *c = json_string_value(cmd);
        printf("$ %s\n", c ? c : "");
        int code = 0;
        int r = run_command(c ? c : "", dir, env, deadline, &code);
        res->exit_code = code;
        if (r == -ETIMEDOUT) {
            fflush(stdout);
            fprintf(stderr,
                    "yci run: job '%s' timed out after %llds: its processes got SIGTERM, then "
                    "SIGKILL after %d s\n",
                    name, (long long)timeout, RUN_KILL_GRACE_MS / 1000);
            res->status = "timed_out";
            break;
        }
        if (r) {
            res->status = "error";
            break;
        }
        if (code != 0) {
            printf("yci run: command exited %d\n", code);
            res->status = "failed";
            break;
        }
    }
    fflush(stdout);
    env_free(env, nenv);
}

/* Run job with its retries; fills res. */
static void run_job(const json_t *job, const char *dir, struct run_result *res)
{
    const char *name = json_string_value(json_object_get(job, "name"));
    json_t *retry = json_object_get(job, "retry");
    json_int_t count = json_integer_value(json_object_get(retry, "count"));
    json_int_t increment = json_integer_value(json_object_get(retry, "increment"));
    int64_t start = time_mono_ms();
    printf("==> job %s\n", name);
    json_t *labels = json_object_get(job, "labels");
    if (json_object_size(labels) > 0) {
        printf("yci run: ignoring the job's labels (");
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(labels, k, v)
        {
            printf("%s%s=%s", first ? "" : ", ", k, json_is_string(v) ? json_string_value(v) : "");
            first = false;
        }
        printf("): jobs run on this machine\n");
    }
    for (json_int_t attempt = 1;; attempt++) {
        run_attempt(job, dir, res);
        if (strcmp(res->status, "passed") == 0 || attempt > count)
            break;
        printf("==> job %s: attempt %lld of %lld (retry; yci run does not wait the %llds "
               "increment)\n",
               name, (long long)attempt + 1, (long long)count + 1,
               (long long)(increment * attempt));
    }
    res->duration_ms = time_mono_ms() - start;
}

/* Has every job job needs (among the selected ones) finished? *failed is set
 * when one of them did not pass. Needs naming unselected jobs are ignored. */
static bool needs_done(const json_t *job, json_t *jobs, const bool *selected,
                       const struct run_result *res, bool *failed)
{
    *failed = false;
    size_t i, j;
    json_t *need, *other;
    json_array_foreach(json_object_get(job, "needs"), i, need)
    {
        json_array_foreach(jobs, j, other)
        {
            if (!selected[j] || !json_equal(json_object_get(other, "name"), need))
                continue;
            if (!res[j].status)
                return false;
            if (strcmp(res[j].status, "passed") != 0)
                *failed = true;
        }
    }
    return true;
}

static int run_jobs(json_t *jobs, const bool *selected, const char *dir)
{
    size_t n = json_array_size(jobs);
    struct run_result *res = xcalloc(n ? n : 1, sizeof *res);
    for (;;) {
        /* The first job in file order that can run now: the parser rejects
         * cycles, so there is one while any selected job is left. */
        size_t pick = n;
        bool failed = false;
        for (size_t i = 0; i < n && pick == n; i++)
            if (selected[i] && !res[i].status &&
                needs_done(json_array_get(jobs, i), jobs, selected, res, &failed))
                pick = i;
        if (pick == n)
            break;
        json_t *job = json_array_get(jobs, pick);
        if (failed) {
            printf("==> job %s: skipped (a job it needs did not pass)\n",
                   json_string_value(json_object_get(job, "name")));
            res[pick] = (struct run_result){"skipped", -1, -1};
            continue;
        }
        run_job(job, dir, &res[pick]);
        printf("\n");
    }

    int status = 0;
    struct cli_table *tab = cli_table_new(4);
    cli_table_add(tab, "JOB", "STATUS", "EXIT", "DURATION");
    for (size_t i = 0; i < n; i++) {
        if (!selected[i])
            continue;
        char code[16] = "-", dur[32] = "-";
        if (res[i].exit_code >= 0)
            snprintf(code, sizeof(code), "%d", res[i].exit_code);
        if (res[i].duration_ms >= 0)
            cli_fmt_duration(dur, sizeof(dur), res[i].duration_ms);
        const char *st = res[i].status ? res[i].status : "skipped";
        cli_table_add(tab, json_string_value(json_object_get(json_array_get(jobs, i), "name")), st,
                      code, dur);
        if (strcmp(st, "passed") != 0)
            status = 1;
    }
    cli_table_print(tab, stdout);
    cli_table_free(tab);
    free(res);
    return status;
}

int cli_cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"job", required_argument, NULL, OPT_JOB},
        {"branch", required_argument, NULL, OPT_BRANCH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char **sel = xcalloc((size_t)argc + 1, sizeof *sel);
    size_t nsel = 0;
    const char *branch_opt = NULL;
    char *branch = NULL, *dir = NULL;
    json_t *jobs = NULL;
    bool *selected = NULL;
    int status = 0, c;
    cli_getopt_reset();
    while ((c = cli_getopt("run", argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case OPT_JOB:
            sel[nsel++] = optarg;
            break;
        case OPT_BRANCH:
            branch_opt = optarg;
            break;
        case 'h':
            goto out;
        default:
            status = 2;
            goto out;
        }
    }
    if (argc - optind > 1) {
        status = cli_usage("run", "too many arguments (one PATH at most)");
        goto out;
    }
    const char *path = optind < argc ? argv[optind] : ".";
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        status = cli_usage("run", "'%s' is not a directory", path);
        goto out;
    }
    dir = cli_absolute_path(path);
    branch = branch_opt ? xstrdup(branch_opt) : current_branch(dir);

    const char *source = NULL;
    if ((status = load_jobs(dir, branch, &jobs, &source)))
        goto out;
    size_t n = json_array_size(jobs);
    selected = xcalloc(n ? n : 1, sizeof *selected);
    size_t nrun = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(jobs, i), "name"));
        selected[i] = nsel == 0;
        for (size_t k = 0; k < nsel && !selected[i]; k++)
            selected[i] = job_selected(name, sel[k]);
        nrun += selected[i];
    }
    for (size_t k = 0; k < nsel; k++) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = job_selected(
                json_string_value(json_object_get(json_array_get(jobs, i), "name")), sel[k]);
        if (!found) {
            fprintf(stderr, "yci run: no job named '%s' in %s%s%s\n", sel[k], source,
                    branch ? " for branch " : "", branch ? branch : "");
            status = 2;
            goto out;
        }
    }
    printf("yci run: %zu job%s from %s in %s%s%s\n", nrun, nrun == 1 ? "" : "s", source, dir,
           branch ? ", branch " : "", branch ? branch : "");
    if (n == 0) {
        if (strcmp(source, PIPELINE_PY) == 0)
            printf("yci run: no jobs: the .yci.py test_generator yielded nothing\n");
        else
            printf("yci run: no jobs for this branch: the branch filters of .yci.yml exclude "
                   "every job\n");
        goto out;
    }
    printf("\n");
    status = run_jobs(jobs, selected, dir);
out:
    free(sel);
    free(selected);
    free(branch);
    free(dir);
    json_decref(jobs);
    return status;
}
