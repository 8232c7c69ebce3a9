#include "server/pipeline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "git/git.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "pipeline/pipeline.h"
#include "lib/banned.h"

static json_t *one_job(const char *name, const char *command)
{
    return json_pack("[{s:s, s:[s]}]", "name", name, "commands", command);
}

/* Does the Makefile text define target (a line "target:" or "target :" that is
 * not a ":=" assignment)? A rule with several targets on one line ("all
 * check:") is not recognised: the rule is a line starting with the
 * target's name. */
static bool make_has_target(const char *text, size_t len, const char *target)
{
    size_t tlen = strlen(target);
    size_t i = 0;
    while (i < len) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t llen = nl ? (size_t)(nl - line) : len - i;
        i += llen + 1;
        if (llen <= tlen || memcmp(line, target, tlen) != 0)
            continue;
        size_t j = tlen;
        while (j < llen && (line[j] == ' ' || line[j] == '\t'))
            j++;
        if (j < llen && line[j] == ':' && !(j + 1 < llen && line[j + 1] == '='))
            return true;
    }
    return false;
}

const char *pipeline_make_target(const char *text, size_t len)
{
    if (make_has_target(text, len, "check"))
        return "check";
    if (make_has_target(text, len, "test"))
        return "test";
    return NULL;
}

static int rule_tests_dir(struct git_reader *git, const char *commit, json_t **jobs, struct buf *err)
{
    int r = git_path_type(git, commit, "tests", err);
    if (r < 0)
        return r;
    if (r != GIT_PATH_TREE)
        return 0;
    *jobs = one_job("tests", "python3 -m unittest discover -s tests -v");
    return 1;
}

static int rule_makefile(struct git_reader *git, const char *commit, json_t **jobs, struct buf *err)
{
    static const char *const names[] = {"GNUmakefile", "makefile", "Makefile"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = git_path_type(git, commit, names[i], err);
        if (r < 0)
            return r;
        if (r != GIT_PATH_BLOB)
            continue;
        struct buf text = BUF_INIT;
        r = git_read_blob(git, commit, names[i], PIPELINE_MAX_FILE, &text, err);
        if (r == -EFBIG) {
            buf_setf(err, "%s at %s is larger than %d bytes", names[i], commit, PIPELINE_MAX_FILE);
            return -EINVAL;
        }
        if (r < 0)
            return r;
        const char *target = pipeline_make_target(text.data ? text.data : "", text.len);
        buf_release(&text);
        if (!target)
            return 0; /* make reads only the first of its names that exists */
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "make %s", target);
        *jobs = one_job(target, cmd);
        return 1;
    }
    return 0;
}

/* ref → what branch filters match: refs/heads/X → X, other refs whole. */
static const char *filter_name(const char *ref)
{
    if (ref && strncmp(ref, "refs/heads/", 11) == 0)
        return ref + 11;
    return ref;
}

/* The .yci.yml rule: 0 when the commit has none, 1 with its jobs, or a
 * negative errno (-EINVAL: a problem in the file, err is the build's error). */
static int rule_yml(struct git_reader *git, const char *commit, const char *ref, int max_jobs,
                    json_t **jobs, bool *cancel_superseded, struct buf *err)
{
    int r = git_path_type(git, commit, PIPELINE_YML, err);
    if (r < 0)
        return r;
    if (r == GIT_PATH_NONE)
        return 0;
    if (r != GIT_PATH_BLOB) {
        buf_setf(err, "%s is a directory, not a file", PIPELINE_YML);
        return -EINVAL;
    }
    struct buf text = BUF_INIT;
    r = git_read_blob(git, commit, PIPELINE_YML, PIPELINE_MAX_YML, &text, err);
    if (r == -EFBIG) {
        buf_setf(err, "%s: the file is larger than %d bytes", PIPELINE_YML, PIPELINE_MAX_YML);
        return -EINVAL;
    }
    if (r < 0)
        return r;
    json_t *parsed = NULL;
    r = pipeline_parse_yml(text.data ? text.data : "", text.len, PIPELINE_YML, filter_name(ref),
                           max_jobs, &parsed, err);
    buf_release(&text);
    if (r < 0)
        return r;
    *jobs = json_incref(json_object_get(parsed, "jobs"));
    if (json_is_true(json_object_get(parsed, "submodules"))) {
        size_t i;
        json_t *job;
        json_array_foreach(*jobs, i, job) {
            json_object_set_new(job, "submodules", json_true());
        }
    }
    if (cancel_superseded)
        *cancel_superseded = json_is_true(json_object_get(parsed, "cancel_superseded"));
    json_decref(parsed);
    return 1;
}

/* The .yci.py rule: 0 when the commit has none, 1 with its plan job. The
 * server never runs the file: a runner does, as the build's first job. */
static int rule_py(struct git_reader *git, const char *commit, int timeout, json_t **jobs,
                   struct buf *err)
{
    int r = git_path_type(git, commit, PIPELINE_PY, err);
    if (r < 0)
        return r;
    if (r == GIT_PATH_NONE)
        return 0;
    if (r != GIT_PATH_BLOB) {
        buf_setf(err, "%s is a directory, not a file", PIPELINE_PY);
        return -EINVAL;
    }
    *jobs = json_pack("[{s:s, s:s, s:[s], s:i}]", "name", PIPELINE_PLAN_JOB, "kind", "plan",
                      "commands", "test_generator(build_id, pull) of .yci.py", "timeout",
                      timeout > 0 ? timeout : YCI_PLAN_TIMEOUT);
    return 1;
}

int pipeline_for_commit(struct git_reader *git, const char *commit, const char *ref, int max_jobs,
                        int plan_timeout, json_t **jobs, bool *per_ref, bool *cancel_superseded, struct buf *err)
{
    if (per_ref)
        *per_ref = true;
    if (cancel_superseded)
        *cancel_superseded = true;
    int r = rule_yml(git, commit, ref, max_jobs, jobs, cancel_superseded, err);
    if (r != 0)
        return r < 0 ? r : 0;
    r = rule_py(git, commit, plan_timeout, jobs, err);
    if (r != 0)
        return r < 0 ? r : 0;
    if (per_ref)
        *per_ref = false;
    typedef int (*rule_fn)(struct git_reader *, const char *, json_t **, struct buf *);
    static const rule_fn rules[] = {rule_tests_dir, rule_makefile};
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        json_t *out = NULL;
        r = rules[i](git, commit, &out, err);
        if (r < 0)
            return r;
        if (r > 0) {
            *jobs = out;
            return 0;
        }
    }
    buf_setf(err,
             "no pipeline found at %s: yci looked for a .yci.yml file, a .yci.py file, a tests/ folder (run "
             "with python3 -m unittest discover) and a Makefile with a check or test target",
             commit);
    return -EINVAL;
}
