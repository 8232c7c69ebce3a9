#include "server/pipeline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "git/git.h"
#include "lib/buf.h"
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

static int rule_tests_dir(const char *mirror, const char *commit, json_t **jobs, struct buf *err)
{
    int r = git_path_type(mirror, commit, "tests", err);
    if (r < 0)
        return r;
    if (r != GIT_PATH_TREE)
        return 0;
    *jobs = one_job("tests", "python3 -m unittest discover -s tests -v");
    return 1;
}

static int rule_makefile(const char *mirror, const char *commit, json_t **jobs, struct buf *err)
{
    static const char *const names[] = {"GNUmakefile", "makefile", "Makefile"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = git_path_type(mirror, commit, names[i], err);
        if (r < 0)
            return r;
        if (r != GIT_PATH_BLOB)
            continue;
        struct buf text = BUF_INIT;
        r = git_read_blob(mirror, commit, names[i], PIPELINE_MAX_FILE, &text, err);
        if (r == -EFBIG) {
            buf_setf(err, "%s at %s is larger than %d bytes", names[i], commit, PIPELINE_MAX_FILE);
            return -EINVAL;
        }
        if (r < 0)
            return r;
        const char *target = NULL;
        if (make_has_target(text.data, text.len, "check"))
            target = "check";
        else if (make_has_target(text.data, text.len, "test"))
            target = "test";
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

int pipeline_for_commit(const char *mirror, const char *commit, json_t **jobs, struct buf *err)
{
    typedef int (*rule_fn)(const char *, const char *, json_t **, struct buf *);
    static const rule_fn rules[] = {rule_tests_dir, rule_makefile};
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        json_t *out = NULL;
        int r = rules[i](mirror, commit, &out, err);
        if (r < 0)
            return r;
        if (r > 0) {
            *jobs = out;
            return 0;
        }
    }
    buf_setf(err,
             "no pipeline found at %s: yci looked for a tests/ folder (run with python3 -m "
             "unittest discover) and a Makefile with a check or test target",
             commit);
    return -EINVAL;
}
