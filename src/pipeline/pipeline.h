/*
 * pipeline — what a repository asks yci to run, checked and expanded.
 *
 * Two sources describe a build's jobs, and both end here:
 *   - .yci.yml, a declarative file the server reads from its mirror
 *     (pipeline_parse_yml; the format is docs/pipelines.md);
 *   - the JSON a .yci.py plan job prints (pipeline_validate_jobs).
 * Both are data from the repository, so this module trusts nothing: every
 * input gives either a normalised job list or -EINVAL with one message for a
 * human, never a crash, and the work done is bounded by the limits below
 * whatever the input (sizes, nesting, YAML aliases, matrix products).
 *
 * The module is pure: no I/O, no logging, no global state. It uses lib/,
 * libyaml and jansson only; the server (and `yci run`) call it.
 *
 * A normalised job, the shape the store receives (every key always present):
 *   {"name": "tests (foo, x)",
 *    "commands": ["./test.sh", ...],     non-empty; run in order, stop at the first failure
 *    "env": {"ENV_VAR_1": "foo", ...},   names match [A-Za-z_][A-Za-z0-9_]*
 *    "labels": {"os": "linux"},          what a runner must have
 *    "timeout": 600,                     seconds; 0 = the server's default
 *    "retry": {"count": 3, "increment": 600},  retry n waits increment * n seconds
 *    "needs": ["lint", ...]}             names of jobs of the same list that must pass first
 * Jobs come in file order (a matrix job's cells in place, first matrix key
 * outermost). needs never names a job absent from the list and has no cycles.
 *
 * Ownership: *out is a new reference the caller json_decref()s. Inputs are
 * only read.
 */
#ifndef YCI_PIPELINE_PIPELINE_H
#define YCI_PIPELINE_PIPELINE_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"

/* Largest .yci.yml accepted, in bytes. */
#define PIPELINE_MAX_YML (1024 * 1024)
/* Deepest nesting of YAML collections. */
#define PIPELINE_MAX_DEPTH 64
/* YAML nodes, counting each alias as a full copy of what it names (this is
 * what stops "billion laughs" documents). */
#define PIPELINE_MAX_NODES 100000
/* Scalar bytes, counting each alias as a full copy of what it names. */
#define PIPELINE_MAX_EXPANDED (8 * 1024 * 1024)
/* Bytes of strings in the expanded job list (commands, env, labels, needs
 * summed over every job), so a big matrix of big commands cannot flood the
 * store. */
#define PIPELINE_MAX_OUTPUT (16 * 1024 * 1024)
/* Longest job name (the store's limit), matrix cell names included. */
#define PIPELINE_MAX_JOB_NAME 100
/* Retries of one job, and the longest wait, timeout and retry increment. */
#define PIPELINE_MAX_RETRIES 10
#define PIPELINE_MAX_SECONDS (7 * 24 * 3600)

/*
 * Parse a .yci.yml: data holds len bytes (no NUL needed); filename is used in
 * messages (normally ".yci.yml"); branch is the build's branch name ("main"),
 * or the full ref for refs that are not branches ("refs/tags/v1"), or NULL
 * when unknown, in which case branch filters exclude nothing. max_jobs is the
 * most jobs the build may have once matrices are expanded (<= 0: the default,
 * YCI_MAX_JOBS_PER_BUILD).
 *
 * On success returns 0 and sets *out to
 *   {"jobs": [job...], "cancel_superseded": true|false, "submodules": true|false}
 * where "jobs" may be empty when branch filters exclude every job (the caller
 * decides what a build without jobs is). On a problem returns -EINVAL, leaves
 * *out untouched and sets err to one line "FILE:LINE:COLUMN: message"
 * (1-based, pointing at the offending node), e.g.
 *   .yci.yml:7:5: unknown key 'tiemout' in job 'tests' (did you mean 'timeout'?)
 */
int pipeline_parse_yml(const char *data, size_t len, const char *filename, const char *branch,
                       int max_jobs, json_t **out, struct buf *err);

/*
 * Validate the jobs a .yci.py plan produced: a JSON array of job objects with
 * the keys of a normalised job ("name" and "commands" required, the others
 * optional or null; "commands" may also be one string, "needs" one name,
 * "timeout" and the retry's "increment" a duration string such as "10m", and
 * "retry" a bare count). The rules and limits are those of .yci.yml (no
 * matrices or branch filters: the generator has done that). On success returns
 * 0 and sets *out to a new, normalised array; otherwise -EINVAL with a message
 * naming the job by its 1-based index and name, e.g.
 *   job 2 'tests (foo, x)': 'timeout' must be ...
 * An empty array is valid (a plan that yields nothing) and gives [].
 */
int pipeline_validate_jobs(json_t *jobs, int max_jobs, json_t **out, struct buf *err);

#endif
