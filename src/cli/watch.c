/*
 * watch — `yci watch BUILD`: a build's jobs, updating in place until it ends.
 *
 * Polls GET /api/builds/{id} every WATCH_INTERVAL_MS. On a terminal the
 * table (one progress line per job) is redrawn in place; otherwise (a pipe,
 * a CI log) a line is printed each time a job's status changes, so the
 * output stays readable. Exits with the build: 0 when it passed, 1 otherwise
 * (or when the server cannot be reached).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/common.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define WATCH_INTERVAL_MS 500

static bool build_final(const char *s)
{
    return s && strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

/* The table of the build's jobs, as text; *lines its number of lines. */
static char *render(json_t *b, int64_t now, int *lines)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    char dur[32];
    int64_t id = 0;
    cli_jint(b, "id", &id);
    cli_fmt_duration(dur, sizeof dur, cli_obj_duration(b, now));
    fprintf(f, "Build %lld: %s (%s)\n", (long long)id, cli_jstr_or(b, "status", "?"), dur);
    struct cli_table *tab = cli_table_new(6);
    cli_table_add(tab, "JOB", "NAME", "STATUS", "ATTEMPT", "RUNNER", "DURATION");
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(b, "jobs"), i, j) {
        char jid[24], att[24];
        int64_t v = 0;
        cli_jint(j, "id", &v);
        snprintf(jid, sizeof jid, "%lld", (long long)v);
        v = 0;
        cli_jint(j, "attempt", &v);
        snprintf(att, sizeof att, "%lld", (long long)v);
        cli_fmt_duration(dur, sizeof dur, cli_obj_duration(j, now));
        const char *st = cli_jstr_or(j, "status", "?");
        if (json_is_true(json_object_get(j, "flaky")))
            st = "passed (flaky)";
        else if (strcmp(st, "queued") == 0 && json_is_true(json_object_get(j, "waiting")))
            st = "queued (needs)";
        cli_table_add(tab, jid, cli_jstr(j, "name"), st, att, cli_jstr(j, "runner"), dur);
    }
    cli_table_print(tab, f);
    cli_table_free(tab);
    fclose(f);
    *lines = 0;
    for (size_t k = 0; k < len; k++)
        *lines += text[k] == '\n';
    return text;
}

/* Without a terminal: one line per job whose status changed since seen. */
static void print_changes(json_t *b, json_t *seen)
{
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(b, "jobs"), i, j) {
        int64_t id = 0;
        cli_jint(j, "id", &id);
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)id);
        const char *st = cli_jstr_or(j, "status", "?");
        const char *old = json_string_value(json_object_get(seen, key));
        if (old && strcmp(old, st) == 0)
            continue;
        printf("job %lld %s: %s\n", (long long)id, cli_jstr_or(j, "name", "?"), st);
        json_object_set_new(seen, key, json_string(st));
    }
    fflush(stdout);
}

int cli_cmd_watch(int argc, char **argv)
{
    static const struct option longopts[] = {{"server", required_argument, NULL, OPT_SERVER},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "watch";
    struct cli_target t = {0};
    int c;
    cli_getopt_reset();
    while ((c = cli_getopt(cmd, argc, argv, "h", longopts)) != -1) {
        if (c == 'h')
            return 0;
        if (c != OPT_SERVER)
            return 2;
        t.server = optarg;
    }
    if (argc - optind < 1)
        return cli_usage(cmd, "missing BUILD (a build id; 'yci builds' lists them)");
    if (argc - optind > 1)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    int64_t id;
    int status = cli_parse_id(cmd, "build id", argv[optind], &id);
    if (status)
        return status;
    struct cli_api api;
    if ((status = cli_api_open(&api, &t, false)))
        return status;
    char path[64];
    snprintf(path, sizeof path, "/api/builds/%lld", (long long)id);
    bool tty = isatty(STDOUT_FILENO);
    int shown = 0;
    json_t *seen = json_object();
    for (;;) {
        json_t *b = NULL;
        if ((status = cli_api_call(&api, "GET", path, NULL, &b)))
            break;
        api.patient = true; /* it answered once: a restart is waited for */
        const char *st = cli_jstr(b, "status");
        bool final = build_final(st);
        if (tty) {
            int lines = 0;
            char *text = render(b, time_now_ms(), &lines);
            /* Back to the top of the last drawing, clearing as we go. */
            for (int k = 0; k < shown; k++)
                fputs("\033[1A\033[2K", stdout);
            fputs(text ? text : "", stdout);
            fflush(stdout);
            shown = lines;
            free(text);
        } else {
            print_changes(b, seen);
        }
        if (final) {
            if (!tty)
                printf("build %lld %s\n", (long long)id, st);
            status = strcmp(st, "passed") == 0 ? 0 : 1;
            json_decref(b);
            break;
        }
        json_decref(b);
        time_sleep_ms(WATCH_INTERVAL_MS);
    }
    json_decref(seen);
    cli_api_close(&api);
    return status;
}
