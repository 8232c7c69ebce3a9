/*
 * pipeline — what a commit runs.
 *
 * Given a repository's bare mirror and a commit, pipeline_for_commit() returns
 * the job descriptions of the build (the shape store.h documents). The server
 * only reads files from the mirror; nothing from the repository is executed.
 *
 * The rules, tried in order (each new source of configuration — .yci.yml, a
 * .yci.py plan job — becomes one more rule in front of the default):
 *   1. a tests/ folder → one job "tests":
 *      python3 -m unittest discover -s tests -v
 *   2. a Makefile (GNUmakefile, makefile, Makefile: make's own order) with a
 *      check: or test: target → one job "check" (make check) or "test"
 *      (make test); check wins
 *   3. otherwise the build fails with a message saying what yci looked for.
 */
#ifndef YCI_SERVER_PIPELINE_H
#define YCI_SERVER_PIPELINE_H

#include <jansson.h>

#include "lib/buf.h"

/* Largest build file (e.g. a Makefile) the pipeline rules read. */
#define PIPELINE_MAX_FILE (1024 * 1024)

/*
 * Returns 0 and a new JSON array of job descriptions in *jobs; or -EINVAL when
 * the commit has no valid pipeline, with the message for the build's error in
 * err (the build is created in state error); or another negative errno when
 * git itself failed (err says how; no build should be created, try again).
 */
int pipeline_for_commit(const char *mirror, const char *commit, json_t **jobs, struct buf *err);

#endif
