/*
 * github — the few calls of GitHub's REST API yci makes.
 *
 * Listing a repository's open pull requests (all pages, each page
 * conditional on its last ETag so that an unchanged list costs no rate
 * limit) and creating commit statuses. Everything else about GitHub (which
 * repositories, what to build, the outbox of statuses) is the server's.
 *
 * Configuration follows seed 000: GITHUB_ACCESS_TOKEN (sent as
 * "Authorization: token X"), or GITHUB_USERNAME + GITHUB_PASSWORD (basic
 * auth), and GITHUB_API_URL (default https://api.github.com; GitHub
 * Enterprise's is https://HOST/api/v3). Pagination follows the Link
 * header's rel="next" only while it stays under the API URL, so credentials
 * never go to another host.
 *
 * A struct github is used by one thread at a time (it keeps one keep-alive
 * connection); make one per thread.
 *
 * Errors: functions return 0 on success or a negative errno value with a
 * message in err:
 *   -EAGAIN      try again later: 5xx, a timeout, no connection, or a rate
 *                limit (403/429); *retry_at_ms (wall clock) says when, from
 *                Retry-After or X-RateLimit-Reset, else a short backoff
 *   -EACCES      401 bad credentials (or 403 without a rate limit)
 *   -ENOENT      404: no such repository, or no access to it
 *   -EINVAL      422 or another 4xx: the request itself is wrong
 *   -EPROTO      an answer that is not what GitHub sends
 */
#ifndef YCI_GITHUB_GITHUB_H
#define YCI_GITHUB_GITHUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"

#define GITHUB_API_URL_DEFAULT "https://api.github.com"
/* Pull requests per page (GitHub's maximum), and the most pages read. */
#define GITHUB_PER_PAGE 100
#define GITHUB_MAX_PAGES 50
/* Bound on one request. */
#define GITHUB_TIMEOUT_MS 30000

struct github_config {
    const char *api_url;  /* NULL: GITHUB_API_URL_DEFAULT */
    const char *token;    /* GITHUB_ACCESS_TOKEN, or NULL */
    const char *username; /* with password: basic auth when there is no token */
    const char *password;
};

/* Read the GITHUB_* variables of the environment into cfg (pointers into
 * the environment). Returns 1 when GITHUB_REPOSITORIES is set (non-empty),
 * else 0. */
int github_config_from_env(struct github_config *cfg, const char **repositories);

/* Is full_name one of list's (GITHUB_REPOSITORIES: separated by commas or
 * white space), GitHub's way: without regard to case? */
bool github_list_has(const char *list, const char *full_name);

/* list's names as a JSON array of strings, in lower case. */
json_t *github_list_json(const char *list);

/* Is full_name "owner/repo" with GitHub's characters? */
bool github_full_name_valid(const char *full_name);

/* The header git sends to fetch over HTTPS with these credentials (a token
 * as user "x-access-token"), or NULL without credentials. A new string. */
char *github_git_header(const struct github_config *cfg);
/* May the credentials go with a fetch of url? Only to GitHub's own host (the
 * API's, or github.com for api.github.com), over https or the API's scheme. */
bool github_url_trusted(const struct github_config *cfg, const char *url);

struct github;

struct github *github_new(const struct github_config *cfg);
void github_free(struct github *gh);

/*
 * The open pull requests of full_name ("owner/repo"), oldest first: a new
 * JSON array of GitHub's pull request objects. Returns 1 (err says why) when
 * the list is partial (more than GITHUB_MAX_PAGES pages): what is missing
 * must not be taken as closed. The ETags and bodies of the
 * pages are kept in gh, per repository, so a repeated call whose pages are
 * all unchanged (304) costs no rate limit and returns the same list.
 */
int github_open_pulls(struct github *gh, const char *full_name, json_t **pulls,
                      int64_t *retry_at_ms, struct buf *err);

/* The repository full_name ("owner/repo"): a new JSON object (GitHub's). */
int github_get_repo(struct github *gh, const char *full_name, json_t **repo, int64_t *retry_at_ms,
                    struct buf *err);

/* yci's name for the GitHub repository owner/repo: "owner.repo" (owners
 * have no dots, so the first dot splits it back). A new string. */
char *github_repo_name(const char *full_name);

/*
 * Create a commit status: state pending, success, failure or error; the
 * description is cut to GitHub's 140 characters; target_url may be NULL.
 */
int github_create_status(struct github *gh, const char *full_name, const char *sha,
                         const char *state, const char *target_url, const char *description,
                         const char *context, int64_t *retry_at_ms, struct buf *err);

#endif
