/*
 * runner — the yci runner agent: registers with a server, heartbeats, claims
 * jobs, runs them in clean workspaces and streams their output back. Built on
 * the client library (include/yci/client.h); see runner.c and exec.h.
 *
 * runner_start() checks the configuration, prepares the work directory, tries
 * to register once (a refused registration — wrong secret — is an error
 * returned at once; an unreachable server is not: registration is then
 * retried in the background with backoff), starts one thread per slot plus a
 * heartbeat thread, and returns. It is used by `yci runner` and, in the same
 * process as the server, by `yci up`. runner_free() (from any thread) is the
 * way to stop it.
 *
 * Work directory layout:
 *   <workdir>/cache/<repo>.git     a bare clone per repository, fetched from the server
 *   <workdir>/ws/<slot>/           the workspace of the job running in that slot
 *   <workdir>/spool/<job>-<attempt>.log   output not yet acknowledged by the server
 *                                  (emptied at start: those jobs' leases expired)
 *
 * Guarantees about processes: each command of a job runs in its own process
 * group under a supervisor that is a child subreaper (os/spawn.h); when the
 * command ends, times out or is cancelled, its group and every process below
 * it — including ones that called setsid() or double-forked — are killed
 * before the next command starts or the result is reported.
 *
 * The process should ignore SIGPIPE (a server that closes a connection must
 * not kill the runner); the CLI does this for `yci runner` and `yci up`.
 */
#ifndef YCI_RUNNER_RUNNER_H
#define YCI_RUNNER_RUNNER_H

#include <stddef.h>

#include "lib/buf.h"

struct runner;

struct runner_config {
    const char *server_url; /* "http://host:port" */
    const char *registration_secret;
    const char *name;          /* default: the host name */
    const char *const *labels; /* "key=value" strings */
    size_t nlabels;
    int slots;           /* default 1 */
    const char *workdir; /* default "yci-runner" */
    int heartbeat;       /* seconds; default 10 */
    int claim_wait;      /* seconds a claim long-polls; default 30. runner_free()
                            cancels a claim in flight (within about a second). */
};

/* Start; on failure *out is untouched and err says why. Strings in cfg are
 * copied. */
int runner_start(const struct runner_config *cfg, struct runner **out, struct buf *err);
/* Stop claiming, stop running jobs (SIGTERM to their process groups, SIGKILL
 * to everything they started EXEC_KILL_GRACE_MS later; their results are not
 * reported, so the server re-queues them when their leases expire), join
 * every thread, free. NULL is fine. */
void runner_free(struct runner *r);

#endif
