/*
 * cli/sigwatch — how `yci server`, `yci runner` and `yci up` wait for
 * SIGINT/SIGTERM.
 *
 * sigwatch_start() blocks SIGINT and SIGTERM in the calling (main) thread
 * before any other thread exists, so every thread the server and runner
 * start inherits the mask and the signals are taken only by sigwait() in a
 * small thread of our own. (Children inherit the mask too: the spawn helper
 * must reset the signal mask before exec, as os/spawn.h does.) SIGPIPE is
 * ignored from sigwatch_start() on, for the same reason runners need it:
 * a peer closing a connection must not kill the process.
 *
 * Until sigwatch_arm() a signal quits at once (_exit): start-up, such as a
 * runner registering with a server that is down, can block and has nothing
 * to clean up. Once armed, the first signal asks for a clean stop
 * (sigwatch_wait() returns true) and a second one quits at once.
 */
#ifndef YCI_CLI_SIGWATCH_H
#define YCI_CLI_SIGWATCH_H

#include <stdbool.h>
#include <stdint.h>

/* Block the signals and start the watching thread; 0 or -errno. */
int sigwatch_start(void);
/* From now on, the first signal asks for a clean stop. */
void sigwatch_arm(void);
/* Wait up to timeout_ms (-1: forever) for a stop request; true if one came. */
bool sigwatch_wait(int64_t timeout_ms);
/* Stop and join the thread (the mask stays). Safe if start failed. */
void sigwatch_stop(void);

#endif
