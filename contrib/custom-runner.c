/*
 * custom-runner — a runner of one's own on libyciclient, in the manner of
 * testbot's Client subclass (seed 002): it registers with the label
 * kind=custom, and for each job it is given it writes one line to the job's
 * log and passes. A real one would drive a phone farm, a hardware lab or
 * another CI system in do_job.
 *
 *   cc custom-runner.c $(pkg-config --cflags --libs yciclient) -o custom-runner
 *   ./custom-runner http://127.0.0.1:8888 "$(cat yci-data/registration-secret)"
 *
 * Runs until SIGINT or SIGTERM. See docs/client.md.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <yci/client.h>

static void do_job(struct yci_client *c, struct yci_job *job, struct yci_result *res, void *arg)
{
    (void)arg;
    char line[256];
    int n = snprintf(line, sizeof line, "custom runner ran job %lld '%s'\n", (long long)job->id,
                     job->name);
    if (yci_client_job_log(c, job, line, (size_t)n, NULL) < 0 || yci_job_cancelled(job)) {
        res->status = YCI_ABANDONED; /* taken away, or we are stopping */
        return;
    }
    res->status = YCI_PASSED;
    res->exit_code = 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SERVER_URL REGISTRATION_SECRET\n", argv[0]);
        return 2;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread: sigwait below */

    const char *labels[] = {"kind=custom"};
    struct yci_client_config cfg = {
        .server_url = argv[1],
        .registration_secret = argv[2],
        .name = "custom-runner",
        .labels = labels,
        .nlabels = 1,
    };
    struct yci_handler h = {.do_job = do_job};
    struct yci_client *c;
    struct yci_error err;
    if (yci_client_new(&cfg, &c, &err) < 0 || yci_client_start(c, &h, &err) < 0) {
        fprintf(stderr, "custom-runner: %s\n", err.message);
        return 1;
    }
    printf("custom-runner: running\n");
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    yci_client_stop(c); /* gives back a job it did not finish */
    yci_client_free(c);
    printf("custom-runner: stopped\n");
    return 0;
}
