/*
 * daemon — the commands that run something: `yci server`, `yci runner` and
 * `yci up` (both in one process, plus the demo walk-through in up.c).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/common.h"
#include "cli/daemon.h"
#include "cli/sigwatch.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "os/spawn.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "runner/runner.h"
#include "server/server.h"
#include "lib/banned.h"

const char *cli_data_dir(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *env = getenv("YCI_DATA");
    return env && *env ? env : CLI_DEFAULT_DATA;
}

bool cli_label_valid(const char *s)
{
    const char *eq = strchr(s, '=');
    return eq && eq != s && strlen(s) <= YCI_MAX_LABEL_LEN;
}

void cli_labels_release(struct cli_labels *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cli_labels_add(struct cli_labels *l, const char *cmd, const char *s)
{
    if (!cli_label_valid(s))
        return cli_usage(cmd, "invalid --label '%s' (KEY=VALUE)", s);
    if (l->n >= YCI_MAX_LABELS)
        return cli_usage(cmd, "too many labels (at most %d)", YCI_MAX_LABELS);
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = s;
    return 0;
}

int cli_parse_size(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    int64_t mult = 1;
    char *num = xstrdup(s);
    if (n > 1 && strchr("kKmMgG", s[n - 1])) {
        char u = (char)tolower((unsigned char)s[n - 1]);
        mult = u == 'k' ? 1024 : u == 'm' ? 1024 * 1024 : 1024LL * 1024 * 1024;
        num[n - 1] = '\0';
    }
    int64_t v = 0;
    int r = parse_int64(num, 1, INT64_MAX / (1024LL * 1024 * 1024), &v);
    free(num);
    if (r < 0 || v * mult < 65536)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

/* Seed 000's configuration: the GITHUB_* variables and HTTP_ROOT. */
void cli_github_env(struct server_config *cfg)
{
    github_config_from_env(&cfg->github, &cfg->github_repos);
    const char *root = getenv("HTTP_ROOT");
    cfg->http_root = root && *root ? root : NULL;
    const char *hook = getenv("GITHUB_WEBHOOK_SECRET");
    cfg->github_webhook_secret = hook && *hook ? hook : NULL;
}

int cli_github_pass(void)
{
    struct server_config cfg = SERVER_CONFIG_INIT;
    cfg.data_dir = cli_data_dir(NULL);
    cli_github_env(&cfg);
    log_set_prefix("yci");
    struct buf err = BUF_INIT;
    int rc = server_github_pass(&cfg, &err);
    if (rc < 0)
        log_error("%s", err.data ? err.data : strerror(-rc));
    buf_release(&err);
    return rc == 0 ? 0 : 1;
}

int cli_cmd_server(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"data", required_argument, NULL, OPT_DATA},
        {"poll-interval", required_argument, NULL, OPT_POLL_INTERVAL},
        {"job-timeout", required_argument, NULL, OPT_JOB_TIMEOUT},
        {"max-jobs-per-build", required_argument, NULL, OPT_MAX_JOBS},
        {"plan-timeout", required_argument, NULL, OPT_PLAN_TIMEOUT},
        {"max-log-size", required_argument, NULL, OPT_MAX_LOG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *cmd = "server";
    struct server_config cfg = SERVER_CONFIG_INIT;
    const char *data = NULL;
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'h':
            return 0;
        case OPT_LISTEN:
            cfg.listen = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_POLL_INTERVAL:
            if (parse_int(optarg, 1, 86400, &cfg.poll_interval) < 0)
                return cli_usage(cmd, "invalid --poll-interval '%s' (1 to 86400 seconds)", optarg);
            break;
        case OPT_JOB_TIMEOUT:
            if (parse_int(optarg, 1, 7 * 86400, &cfg.job_timeout) < 0)
                return cli_usage(cmd, "invalid --job-timeout '%s' (1 to 604800 seconds)", optarg);
            break;
        case OPT_MAX_JOBS:
            if (parse_int(optarg, 1, YCI_MAX_JOBS_PER_BUILD_CAP, &cfg.max_jobs_per_build) < 0)
                return cli_usage(cmd, "invalid --max-jobs-per-build '%s' (1 to %d)", optarg,
                                 YCI_MAX_JOBS_PER_BUILD_CAP);
            break;
        case OPT_MAX_LOG:
            if (cli_parse_size(optarg, &cfg.max_log_bytes) < 0)
                return cli_usage(cmd, "invalid --max-log-size '%s' (bytes, or with K, M or G; "
                                      "at least 64K)", optarg);
            break;
        case OPT_PLAN_TIMEOUT:
            if (parse_int(optarg, 1, 86400, &cfg.plan_timeout) < 0)
                return cli_usage(cmd, "invalid --plan-timeout '%s' (1 to 86400 seconds)", optarg);
            break;
        default:
            return 2;
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    cfg.data_dir = cli_data_dir(data);
    cli_github_env(&cfg);
    if (!cfg.listen)
        cfg.listen = "127.0.0.1:8888";

    log_set_prefix("server");
    struct server *srv = NULL;
    struct buf err = BUF_INIT;
    int status = 1;
    int r = sigwatch_start();
    if (r < 0) {
        log_error("cannot watch signals: %s", strerror(-r));
        goto out;
    }
    if (server_start(&cfg, &srv, &err) < 0) {
        log_error("cannot start the server: %s", err.data ? err.data : "unknown error");
        goto out;
    }
    sigwatch_arm(); /* the server logs its URL */
    sigwatch_wait(-1);
    status = 0;
out:
    if (srv) {
        server_free(srv);
        log_info("stopped");
    }
    sigwatch_stop();
    buf_release(&err);
    return status;
}

/* The registration secret for `yci runner`, or NULL after printing why not. */
static char *runner_secret(const char *opt, const char *data_opt)
{
    if (opt && *opt)
        return xstrdup(opt);
    const char *env = getenv("YCI_REGISTRATION_SECRET");
    if (env && *env)
        return xstrdup(env);
    const char *data = data_opt && *data_opt ? data_opt : getenv("YCI_DATA");
    if (!data || !*data) {
        cli_usage("runner", "no registration secret: give --secret S, set "
                            "YCI_REGISTRATION_SECRET, or --data DIR (the server's data "
                            "directory)");
        return NULL;
    }
    char *path = xasprintf("%s/registration-secret", data);
    struct buf b = BUF_INIT;
    char *secret = NULL;
    int r = file_read(path, &b);
    if (r < 0) {
        fprintf(stderr, "yci runner: cannot read the registration secret '%s': %s\n", path,
                strerror(-r));
    } else {
        while (b.len && isspace((unsigned char)b.data[b.len - 1]))
            b.data[--b.len] = '\0';
        if (b.len)
            secret = buf_detach(&b, NULL);
        else
            fprintf(stderr, "yci runner: the registration secret '%s' is empty\n", path);
    }
    buf_release(&b);
    free(path);
    return secret;
}

int cli_cmd_runner(int argc, char **argv)
{
    static const struct option longopts[] = {{"server", required_argument, NULL, OPT_SERVER},
                                             {"secret", required_argument, NULL, OPT_SECRET},
                                             {"data", required_argument, NULL, OPT_DATA},
                                             {"name", required_argument, NULL, OPT_NAME},
                                             {"label", required_argument, NULL, OPT_LABEL},
                                             {"slots", required_argument, NULL, OPT_SLOTS},
                                             {"workdir", required_argument, NULL, OPT_WORKDIR},
                                             {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "runner";
    struct runner_config cfg = {0};
    struct cli_labels labels = {0};
    const char *secret_opt = NULL, *data = NULL;
    char *secret = NULL, *url = NULL;
    struct runner *runner = NULL;
    struct buf err = BUF_INIT;
    int status = 2, c;
    cfg.slots = 1;
    cfg.heartbeat = 10;
    cfg.claim_wait = CLI_CLAIM_WAIT;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'h':
            status = 0;
            goto out;
        case OPT_SERVER:
            cfg.server_url = optarg;
            break;
        case OPT_SECRET:
            secret_opt = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_NAME:
            if (!name_valid(optarg)) {
                cli_usage(cmd, "invalid --name '%s': use letters, digits, '.', '_' and '-'",
                          optarg);
                goto out;
            }
            cfg.name = optarg;
            break;
        case OPT_LABEL:
            if (cli_labels_add(&labels, cmd, optarg))
                goto out;
            break;
        case OPT_SLOTS:
            if (parse_int(optarg, 1, 1024, &cfg.slots) < 0) {
                cli_usage(cmd, "invalid --slots '%s' (1 to 1024)", optarg);
                goto out;
            }
            break;
        case OPT_WORKDIR:
            cfg.workdir = optarg;
            break;
        case OPT_HEARTBEAT:
            if (parse_int(optarg, 1, 3600, &cfg.heartbeat) < 0) {
                cli_usage(cmd, "invalid --heartbeat '%s' (1 to 3600 seconds)", optarg);
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
    if (!cfg.server_url || !*cfg.server_url)
        cfg.server_url = getenv("YCI_SERVER");
    if (!cfg.server_url || !*cfg.server_url) {
        cli_usage(cmd, "missing --server URL (or set YCI_SERVER)");
        goto out;
    }
    size_t n = strlen(cfg.server_url);
    while (n > 1 && cfg.server_url[n - 1] == '/')
        n--;
    url = xstrndup(cfg.server_url, n);
    cfg.server_url = url;
    if (!(secret = runner_secret(secret_opt, data)))
        goto out;
    cfg.registration_secret = secret;
    cfg.labels = labels.v;
    cfg.nlabels = labels.n;
    if (!cfg.workdir)
        cfg.workdir = "yci-runner";

    status = 1;
    log_set_prefix("runner");
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
    if (runner_start(&cfg, &runner, &err) < 0) {
        log_error("cannot start the runner: %s", err.data ? err.data : "unknown error");
        goto out;
    }
    sigwatch_arm();
    log_info("yci %s runner for %s: %d slot%s, working in %s", YCI_VERSION, url, cfg.slots,
             cfg.slots == 1 ? "" : "s", cfg.workdir);
    sigwatch_wait(-1);
    status = 0;
out:
    if (runner) {
        runner_free(runner);
        log_info("stopped");
    }
    spawn_helper_stop();
    sigwatch_stop();
    free(secret);
    free(url);
    cli_labels_release(&labels);
    buf_release(&err);
    return status;
}
