#include "cli/sigwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/banned.h"

/* Signals closer than this to the first count as one. */
#define DEBOUNCE_MS 300

static int pipe_fds[2] = {-1, -1};
static pthread_t thread;
static bool thread_started;
static atomic_bool armed;
static atomic_bool done;
static sigset_t watched;

static void *watch(void *arg)
{
    (void)arg;
    int stops = 0;
    int64_t first = 0;
    for (;;) {
        int sig;
        if (sigwait(&watched, &sig) != 0)
            continue;
        if (atomic_load(&done))
            return NULL;
        /* A signal sent to the whole process group as well as to us (as
         * timeout(1) does) arrives twice at once: that is still one request. */
        if (stops > 0 && time_mono_ms() - first < DEBOUNCE_MS)
            continue;
        if (!atomic_load(&armed) || stops > 0) {
            log_warn("%s: quitting now", strsignal(sig));
            _exit(128 + sig);
        }
        stops++;
        first = time_mono_ms();
        log_info("%s: stopping (%s to quit at once)", strsignal(sig),
                 sig == SIGINT ? "press Ctrl-C again" : "signal again");
        char c = (char)sig;
        ssize_t w = write(pipe_fds[1], &c, 1);
        (void)w;
    }
}

int sigwatch_start(void)
{
    sigemptyset(&watched);
    sigaddset(&watched, SIGINT);
    sigaddset(&watched, SIGTERM);
    /* A peer that closes a connection must not kill a server or a runner:
     * writes fail with EPIPE instead. Children get SIGPIPE back (spawn.h
     * resets every disposition before exec). */
    signal(SIGPIPE, SIG_IGN);
    int r = pthread_sigmask(SIG_BLOCK, &watched, NULL);
    if (r != 0)
        return -r;
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return -errno;
    r = pthread_create(&thread, NULL, watch, NULL);
    if (r != 0)
        return -r;
    thread_started = true;
    return 0;
}

void sigwatch_arm(void)
{
    atomic_store(&armed, true);
}

bool sigwatch_wait(int64_t timeout_ms)
{
    struct pollfd p = {pipe_fds[0], POLLIN, 0};
    int r;
    do
        r = poll(&p, 1, timeout_ms < 0 ? -1 : (int)timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

void sigwatch_stop(void)
{
    if (thread_started) {
        atomic_store(&done, true);
        pthread_kill(thread, SIGTERM);
        pthread_join(thread, NULL);
        thread_started = false;
    }
    for (int i = 0; i < 2; i++) {
        if (pipe_fds[i] >= 0)
            close(pipe_fds[i]);
        pipe_fds[i] = -1;
    }
}
