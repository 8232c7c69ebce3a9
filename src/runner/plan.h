/*
 * plan — running a repository's .yci.py generator, on a runner or in `yci run`.
 *
 * A .yci.py is code from the repository, so the server never runs it: the
 * build's first job is a *plan* job, and a runner runs it like any job but,
 * instead of commands, it executes the plan driver (python/yci_plan.py):
 *
 *     python3 -I DIR/yci_plan.py BUILD_ID DIR/pull.json DIR/out.json MAX_JOBS
 *
 * in the checkout, with DIR holding the driver and the `yci` package (both
 * embedded in the yci binary: plan_files[], made by scripts/embed). The driver
 * imports ./.yci.py, calls test_generator(build_id, pull) and writes
 * DIR/out.json: {"jobs": [...]} or {"error": "one line"}.
 *
 * Sandbox: when bubblewrap works on this machine (plan_sandbox(); it often
 * does not in containers without user namespaces), the driver runs in it:
 * the whole file system read-only, the checkout and DIR writable, a private
 * /tmp, no network, new PID/IPC/UTS namespaces, dying with its parent.
 * Without it the driver runs as the runner's user, like any job would.
 */
#ifndef YCI_RUNNER_PLAN_H
#define YCI_RUNNER_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/embed.h"

/* Generated from python/ at build time; ends with a NULL name. */
extern const struct embed_file plan_files[];

/* The driver's output file inside DIR. */
#define PLAN_OUT "out.json"

/*
 * Make dir afresh (removing what was there) with the embedded files and
 * pull.json (the object the generator gets as `pull`). 0 or -errno + err.
 */
int plan_prepare(const char *dir, json_t *pull, struct buf *err);

/* Whether bubblewrap is on PATH and works here; probed once per process. */
bool plan_sandbox(void);

/*
 * The argv that runs the plan of the checkout ws with the files of dir:
 * NULL-terminated, to free with plan_argv_free(). sandbox: wrap it in bwrap.
 */
char **plan_argv(const char *dir, const char *ws, int64_t build_id, int max_jobs, bool sandbox);
void plan_argv_free(char **argv);

/*
 * Read dir/out.json. Returns 0 with *jobs (a new JSON array) when the
 * generator gave jobs; -EINVAL with the generator's error (or what is wrong
 * with the file) in err otherwise.
 */
int plan_result(const char *dir, json_t **jobs, struct buf *err);

#endif
