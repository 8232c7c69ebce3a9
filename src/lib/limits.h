/*
 * limits — every resource a client or a job can grow, named in one place.
 *
 * A limit that users may want to change is also a server flag; the value here
 * is its default.
 */
#ifndef YCI_LIB_LIMITS_H
#define YCI_LIB_LIMITS_H

/* Largest JSON request body the API accepts. */
#define YCI_MAX_JSON_BODY (1024 * 1024)
/* Largest single log chunk a runner may upload. */
#define YCI_MAX_LOG_CHUNK (1024 * 1024)
/* Largest git-upload-pack request (the client's wants and haves). */
#define YCI_MAX_GIT_BODY (64 * 1024 * 1024)
/* Deepest nesting accepted in a JSON body. */
#define YCI_MAX_JSON_DEPTH 32
/* Longest a claim may wait for a job, in seconds. */
#define YCI_MAX_CLAIM_WAIT 60
/* Jobs in one build (yci server --max-jobs-per-build), and the most that flag
 * may allow (the store's own check). */
#define YCI_MAX_JOBS_PER_BUILD 256
#define YCI_MAX_JOBS_PER_BUILD_CAP 10000
/* Registered runners. */
#define YCI_MAX_RUNNERS 10000
/* Labels on one runner or job, and the length of a key or value. */
#define YCI_MAX_LABELS 64
#define YCI_MAX_LABEL_LEN 128
/* Repository names: [A-Za-z0-9._-], not starting with '.' */
#define YCI_MAX_NAME_LEN 100
/* client_info JSON a heartbeat may carry, in bytes once serialised. */
#define YCI_MAX_CLIENT_INFO 16384
/* How many times a job whose lease expired is re-queued before it is an error. */
#define YCI_MAX_INFRA_RETRIES 3
/* A job's own retries after failed attempts ("retry": {"count"}), and the
 * longest increment between them, in seconds (as .yci.yml allows). */
#define YCI_MAX_JOB_RETRIES 10
#define YCI_MAX_RETRY_INCREMENT (7 * 24 * 3600)
/* A .yci.py plan job: its time limit in seconds, and the largest finish
 * request (which carries the generated jobs). */
#define YCI_PLAN_TIMEOUT 120
#define YCI_MAX_PLAN_BODY (17 * 1024 * 1024)
/* A job log's default cap (yci server --max-log-size): past it the runner
 * keeps the first and the last halves, with a marker between. */
#define YCI_MAX_LOG_DEFAULT (100LL * 1024 * 1024)
/* GitHub's limit on a webhook payload. */
#define YCI_MAX_WEBHOOK_BODY (25 * 1024 * 1024)
/* Builds returned by one list request. */
#define YCI_MAX_LIST 1000
/* A job's command, and each NAME=value of its environment, is one string of
 * an execve(): Linux takes at most 128 KiB with its NUL (MAX_ARG_STRLEN). */
#define YCI_MAX_ARG_LEN (128 * 1024 - 1)
/* A job's environment in all (its env and matrix values; the runner adds
 * ~1 KiB): well under the 2 MiB that execve() allows with the usual 8 MiB
 * stack limit (ARG_MAX is a quarter of it). */
#define YCI_MAX_JOB_ENV (1024 * 1024)
/* Rendered pages the page cache keeps (server/web.c: the overview and build
 * pages), and the largest page it keeps (a bigger one is rendered each time). */
#define YCI_PAGE_CACHE_SLOTS 16
#define YCI_PAGE_CACHE_MAX_BYTES (256 * 1024)

#endif
