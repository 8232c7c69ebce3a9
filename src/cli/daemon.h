/*
 * cli/daemon — helpers shared by `yci server`, `yci runner` and `yci up`.
 */
#ifndef YCI_CLI_DAEMON_H
#define YCI_CLI_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

/* How long a runner's claim long-polls. runner_free() may wait for a claim
 * in flight, so this bounds how long Ctrl-C takes; a claim is still answered
 * at once when a job is queued, so a short wait costs one idle request per
 * slot every few seconds and nothing in latency. */
#define CLI_CLAIM_WAIT 5

/* --data, else $YCI_DATA, else "yci-data". */
const char *cli_data_dir(const char *opt);

/* The --label KEY=VALUE options (pointers into argv, not copied). */
struct cli_labels {
    const char **v;
    size_t n;
};

bool cli_label_valid(const char *s);
/* Add s after checking it; 0, or 2 after a usage error. */
int cli_labels_add(struct cli_labels *l, const char *cmd, const char *s);
void cli_labels_release(struct cli_labels *l);

#endif
