/*
 * pipeline — what a commit runs.
 *
 * Given a reader of a repository's bare mirror (git_reader_open()) and a
 * commit, pipeline_for_commit() returns the job descriptions of the build
 * (the shape store.h documents). The server only reads files from the
 * mirror; nothing from the repository is executed.
 *
 * The rules, tried in order:
 *   1. a .yci.yml file → its jobs, parsed and expanded by src/pipeline
 *      (docs/pipelines.md), for the ref's branch; a problem in the file is
 *      the build's error ".yci.yml:LINE:COLUMN: ..."
 *   1b. a .yci.py file → one plan job (name ".yci.py", "kind": "plan",
 *      timeout plan_timeout): a runner runs the generator and sends its
 *      jobs with the plan job's finish (store_plan_finish)
 *   2. a tests/ folder → one job "tests":
 *      python3 -m unittest discover -s tests -v
 *   3. a Makefile (GNUmakefile, makefile, Makefile: make's own order) with a
 *      check: or test: target → one job "check" (make check) or "test"
 *      (make test); check wins
 *   4. otherwise the build fails with a message saying what yci looked for.
 */
#ifndef YCI_SERVER_PIPELINE_H
#define YCI_SERVER_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "git/git.h"
#include "lib/buf.h"

/* Largest build file (e.g. a Makefile) the pipeline rules read. */
#define PIPELINE_MAX_FILE (1024 * 1024)

/* The event of a build whose .yci.yml has no job for its branch. */
#define PIPELINE_NO_JOBS "no jobs for this branch: the branch filters of .yci.yml exclude every job"

/* The name of the declarative pipeline file at the root of a repository. */
#define PIPELINE_YML ".yci.yml"
/* The seed's generator file, and the name of the job that runs it. */
#define PIPELINE_PY ".yci.py"
#define PIPELINE_PLAN_JOB ".yci.py"

/* The Makefile target the default rule runs for a Makefile's text: "check"
 * when it defines check:, else "test" when it defines test:, else NULL. Shared
 * with `yci run`, which reads the Makefile from a working tree. */
const char *pipeline_make_target(const char *text, size_t len);

/*
 * The jobs of commit, built for ref ("refs/heads/main"; the branch filters of
 * .yci.yml see "main", and the full ref for refs that are not branches; NULL:
 * filters drop nothing). max_jobs is the most jobs a build may have (<= 0:
 * YCI_MAX_JOBS_PER_BUILD); plan_timeout the time limit in seconds of a .yci.py
 * plan job (<= 0: YCI_PLAN_TIMEOUT).
 *
 * Returns 0 and a new JSON array of job descriptions in *jobs — empty when a
 * .yci.yml has no job for this branch (the caller makes a build without jobs
 * that is passed at once); or -EINVAL when the commit has no valid pipeline,
 * with the message for the build's error in err (the build is created in
 * state error); or another negative errno when git itself failed (err says
 * how; no build should be created, try again).
 *
 * *per_ref (may be NULL) is set on every return: true when the outcome came
 * from .yci.yml and so may differ between refs at the same commit; false when
 * it holds for every ref at this commit (callers may cache it by commit).
 *
 * *cancel_superseded (may be NULL) is set on every return: the .yci.yml's
 * cancel_superseded, true when there is none (or it could not be read): the
 * new build of a branch cancels the unfinished jobs of its older builds.
 */
int pipeline_for_commit(struct git_reader *git, const char *commit, const char *ref, int max_jobs,
                        int plan_timeout, json_t **jobs, bool *per_ref, bool *cancel_superseded, struct buf *err);

#endif
