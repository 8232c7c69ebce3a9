/*
 * misbehave — a child that does what jobs do wrong, on purpose, so that every
 * timeout, cancel and clean-up path of the runner is tested.
 *
 *   misbehave [--ignore-term] [--grandchild [--setsid]] [--lines N] [--bytes N]
 *             [--stderr] [--sleep SECONDS] [--exit K]
 *
 * Flags act in this order, whatever order they are given in:
 *   --ignore-term   ignore SIGTERM (the grandchild too), so only SIGKILL works
 *   --grandchild    fork a child that outlives this process and sleeps an hour;
 *                   its pid is printed as a line "grandchild PID" (on stdout,
 *                   which it keeps open, like a forgotten background server)
 *   --setsid        the grandchild calls setsid() (leaves group and session)
 *   --lines N       print N numbered lines as fast as possible
 *   --bytes N       print N bytes ('x', a newline every 100) as fast as possible
 *   --stderr        --lines and --bytes go to stderr instead of stdout
 *   --sleep S       sleep S seconds (fractions allowed)
 *   --exit K        exit with status K (default 0)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "lib/banned.h"

static void usage(void)
{
    fprintf(stderr, "usage: misbehave [--ignore-term] [--grandchild [--setsid]] [--lines N] "
                    "[--bytes N] [--stderr] [--sleep SECONDS] [--exit K]\n");
    exit(2);
}

static void sleep_seconds(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int64_t number(const char *s)
{
    int64_t v;
    if (!s || parse_int64(s, 0, INT64_MAX, &v) < 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    bool ignore_term = false, grandchild = false, new_session = false, to_stderr = false;
    int64_t lines = 0, bytes = 0;
    double sleep_s = 0;
    int64_t exit_code = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--ignore-term") == 0)
            ignore_term = true;
        else if (strcmp(a, "--grandchild") == 0)
            grandchild = true;
        else if (strcmp(a, "--setsid") == 0)
            new_session = grandchild = true;
        else if (strcmp(a, "--stderr") == 0)
            to_stderr = true;
        else if (strcmp(a, "--lines") == 0)
            lines = number(argv[++i < argc ? i : 0]);
        else if (strcmp(a, "--bytes") == 0)
            bytes = number(argv[++i < argc ? i : 0]);
        else if (strcmp(a, "--sleep") == 0) {
            char *end;
            if (++i >= argc)
                usage();
            sleep_s = strtod(argv[i], &end);
            if (*end || sleep_s < 0)
                usage();
        } else if (strcmp(a, "--exit") == 0) {
            exit_code = number(argv[++i < argc ? i : 0]);
            if (exit_code > 255)
                usage();
        } else
            usage();
    }

    if (ignore_term)
        signal(SIGTERM, SIG_IGN);
    if (grandchild) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (new_session)
                setsid();
            sleep_seconds(3600);
            _exit(0);
        }
        printf("grandchild %d\n", (int)pid);
        fflush(stdout);
    }

    FILE *out = to_stderr ? stderr : stdout;
    static char big[1 << 16];
    for (int64_t i = 0; i < lines; i++)
        fprintf(out, "line %lld of %lld\n", (long long)i + 1, (long long)lines);
    if (bytes > 0) {
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (i % 100 == 99) ? '\n' : 'x';
        int64_t left = bytes;
        while (left > 0) {
            size_t n = left < (int64_t)sizeof big ? (size_t)left : sizeof big;
            if (fwrite(big, 1, n, out) != n)
                return 1;
            left -= (int64_t)n;
        }
    }
    fflush(out);
    sleep_seconds(sleep_s);
    return (int)exit_code;
}
