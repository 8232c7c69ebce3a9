/*
 * cli/daemon — helpers shared by `yci server`, `yci runner` and `yci up`.
 */
#ifndef YCI_CLI_DAEMON_H
#define YCI_CLI_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

/* How long a runner's claim long-polls. A stopping runner cancels its claims
 * in flight (within about a second), so this does not bound Ctrl-C. */
#define CLI_CLAIM_WAIT 30

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

/* `yci` alone with GITHUB_REPOSITORIES set: one pass of seed 000's cron job
 * (server_github_pass) on $YCI_DATA. 0, or 1 when something failed. */
int cli_github_pass(void);

/* "100M" → 104857600 (K, M, G: powers of 1024); at least 64K. 0 or -EINVAL. */
int cli_parse_size(const char *s, int64_t *out);

struct server_config;
/* Seed 000's configuration from the environment: GITHUB_REPOSITORIES,
 * GITHUB_ACCESS_TOKEN, GITHUB_USERNAME/PASSWORD, GITHUB_API_URL,
 * GITHUB_WEBHOOK_SECRET, HTTP_ROOT (docs/github.md). */
void cli_github_env(struct server_config *cfg);

#endif
