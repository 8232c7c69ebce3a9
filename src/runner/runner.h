/*
 * runner — the yci runner agent: registers with a server, heartbeats, claims
 * jobs, runs them in clean workspaces and streams their output back.
 *
 * runner_start() registers and starts one thread per slot plus a heartbeat
 * thread, and returns. It is used by `yci runner` and, in the same process
 * as the server, by `yci up`.
 *
 * Work directory layout:
 *   <workdir>/cache/<repo>.git     a bare clone per repository, fetched from the server
 *   <workdir>/ws/<slot>/           the workspace of the job running in that slot
 *   <workdir>/spool/<job>-<attempt>.log   output not yet acknowledged by the server
 */
#ifndef YCI_RUNNER_RUNNER_H
#define YCI_RUNNER_RUNNER_H

#include <stddef.h>

#include "lib/buf.h"

struct runner;

struct runner_config {
    const char *server_url;          /* "http://host:port" */
    const char *registration_secret;
    const char *name;                /* default: the host name */
    const char *const *labels;       /* "key=value" strings */
    size_t nlabels;
    int slots;                       /* default 1 */
    const char *workdir;             /* default "yci-runner" */
    int heartbeat;                   /* seconds; default 10 */
};

/* Register and start; on failure *out is untouched and err says why.
 * Registration is retried with backoff until it succeeds or stop is asked. */
int runner_start(const struct runner_config *cfg, struct runner **out, struct buf *err);
/* Stop claiming, kill running jobs (their process groups), join, free. */
void runner_free(struct runner *r);

#endif
