/*
 * yci-spawn — the spawn helper as a small program of its own (see
 * supervise.h): a process with a handful of mappings forks the supervisors
 * far more cheaply than a copy of the runner. Started by
 * spawn_helper_start() with its socket as descriptor 3 and the pid of the
 * process it serves as its one argument; not meant to be run by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "supervise.h"
#include "lib/banned.h"

int main(int argc, char **argv)
{
    char *end = NULL;
    long parent = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (parent <= 0 || !end || *end) {
        fputs("yci-spawn: the spawn helper of yci runner and yci up; not to be run by hand\n",
              stderr);
        return 2;
    }
    helper_main(3, (pid_t)parent);
}
