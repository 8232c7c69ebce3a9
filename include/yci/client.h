/*
 * yci/client.h — the runner's side of the yci job protocol, as a library.
 *
 * A yci server hands jobs to runners over HTTP + JSON (docs/api.md). The stock
 * `yci runner` is built on this library, and so can any custom runner: one
 * that drives a phone farm, a hardware lab or another CI system. In the manner
 * of testbot's Client.do_job, the simplest custom runner is a callback:
 *
 *     static void do_job(struct yci_client *c, struct yci_job *job,
 *                        struct yci_result *res, void *arg)
 *     {
 *         yci_client_job_log(c, job, "hello\n", 6, NULL);
 *         res->status = YCI_PASSED;       // or YCI_FAILED + res->exit_code
 *     }
 *
 *     struct yci_client_config cfg = {
 *         .server_url = "http://ci.example:8888",
 *         .registration_secret = secret,
 *         .labels = (const char *[]){"gpu=yes"}, .nlabels = 1,
 *     };
 *     struct yci_handler h = {.do_job = do_job};
 *     struct yci_client *c;
 *     if (yci_client_new(&cfg, &c, &err) == 0)
 *         yci_client_run(c, &h);          // blocks until yci_client_stop()
 *     yci_client_free(c);
 *
 * or yci_client_start(c, &h) to run in background threads and
 * yci_client_stop(c) to end. The loop registers (retrying with backoff while
 * the server is unreachable), heartbeats every `heartbeat` seconds with
 * client_info and the jobs in hand, runs `slots` claim loops (long-polls), calls
 * do_job for each claimed job, and delivers the result (retried with backoff
 * until the server answers). A job the server takes away (cancelled, or its
 * lease expired and another runner has it) is flagged: yci_job_cancelled()
 * turns true and handler->cancel is called, and do_job should stop soon.
 *
 * Lower down, the protocol calls are public too (yci_client_register,
 * _heartbeat, _claim, _log, _finish) for runners that want their own loop.
 *
 * Types here are plain C: strings, integers, arrays of "key=value" strings.
 * No JSON or HTTP library leaks through this header. All functions are
 * thread-safe (requests from several threads use separate connections).
 *
 * Errors: functions return 0 (or a documented positive value) on success and
 * a negative errno-style code on failure, with a message in *err when err is
 * not NULL:
 *   -ECONNREFUSED, -ETIMEDOUT, -EIO   no answer from the server: retry later
 *   -EAGAIN        the server answered 5xx: retry later
 *   -ESTALE        409 stale attempt: the job is no longer ours (another
 *                  attempt has it, or it was cancelled): stop it, drop it
 *   -ERANGE        409 log offset past the end: resume from the size given
 *   -EACCES        401/403: bad registration secret or runner token
 *   -ENOENT        404
 *   -EPROTO        another 4xx, or an answer that is not what the API says
 *   -EINVAL        a bad argument (bad label, missing server_url)
 */
#ifndef YCI_CLIENT_H
#define YCI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct yci_client;

/* A human-readable message for the last error of a call. */
struct yci_error {
    char message[512];
};

struct yci_client_config {
    const char *server_url;          /* "http://host:port", required */
    const char *registration_secret; /* required to register */
    const char *name;                /* default: the host name */
    const char *const *labels;       /* "key=value" strings; keys must be unique */
    size_t nlabels;
    int slots;      /* jobs run at once by yci_client_run/start; default 1 */
    int heartbeat;  /* seconds between heartbeats; default 10 */
    int claim_wait; /* seconds a claim long-polls; default 30, at most 60 */
    /* Platform, reported at registration; NULL: detected with uname(2). */
    const char *os;      /* e.g. "Linux" */
    const char *release; /* e.g. "6.1.0-18-amd64" */
    const char *machine; /* e.g. "x86_64" */
    /* The token of an earlier registration of this runner (yci_client_token()
     * of a previous run), or NULL: registering with it keeps the runner's
     * record, its id and history, instead of adding one (an unknown token
     * just registers anew). */
    const char *token;
};

/* A claimed job. Owned by the library; valid until yci_job_free() (or, in the
 * run loop, until the job's `finished` callback returns). */
struct yci_job {
    int64_t id;
    int attempt; /* the fencing token every write about this job carries */
    int64_t build_id;
    int slot; /* 0..slots-1 in the run loop; -1 from yci_client_claim() */
    const char *name;
    const char *repo;            /* NULL for a job with no repository */
    const char *fetch_url;       /* path on the server of the repo's mirror, or NULL */
    const char *commit;          /* 40 hex digits, or NULL */
    const char *ref;             /* e.g. "refs/heads/main", or NULL */
    const char *const *commands; /* run in order, each with /bin/sh -c */
    size_t ncommands;
    const char *const *env; /* "KEY=value" */
    size_t nenv;
    const char *const *labels; /* "key=value", the labels the job required */
    size_t nlabels;
    int timeout;         /* seconds; 0: none */
    bool plan;           /* a .yci.py plan job: run the generator, not commands;
                            finish with yci_result.plan_jobs */
    bool submodules;     /* check the repository's submodules out, recursively */
    const char *json;    /* the whole job as the server sent it, for fields added later */
    uint64_t log_offset; /* bytes of log the server acknowledged (yci_client_job_log) */
    struct yci_job_internal *internal;
};

enum yci_status {
    YCI_PASSED,
    YCI_FAILED,
    YCI_TIMED_OUT,
    YCI_ERROR,    /* the infrastructure failed (checkout, spawn), not the test */
    YCI_ABANDONED /* report nothing: the job was taken away, or we are stopping
                     and its lease will expire so that another runner runs it */
};

/* What do_job reports. error is copied by the library before do_job returns
 * to it, so it may point to the caller's memory. */
struct yci_result {
    enum yci_status status;
    int exit_code; /* -1: none (e.g. killed before it started) */
    const char *error;
    /* A plan job that passed: the JSON array of the jobs its generator
     * yielded (copied by the library, like error); NULL otherwise. */
    const char *plan_jobs;
    /* Optional: the log's last log_len bytes, at log_offset, delivered with
     * the result instead of by a last yci_client_log() (one request less
     * per job); copied by the library, like error. Text that is not UTF-8
     * is uploaded by itself just before the result. */
    const void *log;
    size_t log_len;
    uint64_t log_offset;
};

struct yci_handler {
    /* Required. Runs one job in a worker thread; fills *res (preset to
     * YCI_ERROR, exit code -1). Should return soon after
     * yci_job_cancelled(job) turns true. */
    void (*do_job)(struct yci_client *c, struct yci_job *job, struct yci_result *res, void *arg);
    /* Optional. Called from the heartbeat thread (or a worker that saw 409)
     * when a running job is taken away, or from yci_client_stop(); then
     * yci_job_cancelled() is already true. It runs with the client's lock
     * held: it must not block for long nor call yci_client_* functions. */
    void (*cancel)(struct yci_client *c, struct yci_job *job, void *arg);
    /* Optional. Called before each heartbeat; returns a malloc'ed JSON object
     * for client_info (freed by the library), or NULL to send the one set
     * with yci_client_set_info(). */
    char *(*client_info)(struct yci_client *c, void *arg);
    /* Optional. After the result was delivered (rc 0), refused (rc -ESTALE)
     * or given up on because the client is stopping (rc < 0); also after an
     * abandoned job (rc 0). */
    void (*finished)(struct yci_client *c, struct yci_job *job, int rc, void *arg);
    /* Optional. Called when a request finds no server (no connection, a
     * timeout, a proxy's 502, 503 or 504) and the one before had an answer
     * (reachable false, why says what failed), and when a request is answered
     * again (reachable true, why NULL): once each way, from whichever thread
     * made the request, without the client's lock. */
    void (*server_state)(struct yci_client *c, bool reachable, const char *why, void *arg);
    void *arg;
};

/* Make a client (no request is made). Strings are copied. */
int yci_client_new(const struct yci_client_config *cfg, struct yci_client **out,
                   struct yci_error *err);
/* Stops it if running, frees it. NULL is fine. */
void yci_client_free(struct yci_client *c);

/* ---- the run loop ---- */

/* Register (retrying with backoff while the server cannot be reached or
 * answers 5xx), then heartbeat and run `slots` claim loops calling handler
 * until yci_client_stop(). Returns 0 after a stop, or an error when
 * registration is refused (-EACCES, -EPROTO). handler must stay valid. */
int yci_client_run(struct yci_client *c, const struct yci_handler *handler);
/* The same in a background thread; returns at once. */
int yci_client_start(struct yci_client *c, const struct yci_handler *handler,
                     struct yci_error *err);
/* How long a stopping client still tries to deliver a result it holds. */
#define YCI_STOP_DELIVERY_MS 10000

/* Stop claiming, mark running jobs cancelled (calling handler->cancel), wait
 * for every do_job to return, and join the threads. A job do_job abandoned
 * is given back to the server (yci_client_release()); a result already in
 * hand is still delivered if the server answers within 10 s (it may be
 * restarting). A claim long-poll in flight is waited for (up to claim_wait
 * seconds). Safe to call from another thread than the one in
 * yci_client_run(); idempotent. */
void yci_client_stop(struct yci_client *c);
/* True once yci_client_stop() was called. */
bool yci_client_stopping(struct yci_client *c);

/* client_info sent with each heartbeat when handler->client_info is not set
 * or returns NULL: a JSON object as text (copied). -EINVAL if it is not one. */
int yci_client_set_info(struct yci_client *c, const char *json_object);
/* Send a heartbeat now instead of at the next interval (testbot's
 * push_status). Only in the run loop; returns at once. */
void yci_client_push_status(struct yci_client *c);

/* True once the server asked for the job to stop, or it went stale. */
bool yci_job_cancelled(const struct yci_job *job);
/* Append data to the job's log at job->log_offset and advance it, retrying
 * with backoff while the server is unreachable (until the job is cancelled
 * or the client stops). Chunks larger than the server's limit are split. */
int yci_client_job_log(struct yci_client *c, struct yci_job *job, const void *data, size_t len,
                       struct yci_error *err);

/* ---- protocol calls, one request each (no retries) ---- */

/* POST /api/runners/register: keeps the token for the calls below. */
int yci_client_register(struct yci_client *c, struct yci_error *err);
/* The runner id and lease length the server gave at registration (0 before). */
int64_t yci_client_runner_id(struct yci_client *c);
/* A copy of the runner token (free() it), or NULL before registration: for
 * requests made outside the library, such as git fetching a private
 * repository's mirror from the server. */
char *yci_client_token(struct yci_client *c);
int yci_client_lease_seconds(struct yci_client *c);

/* A job in hand, as heartbeats list it. */
struct yci_job_ref {
    int64_t id;
    int attempt;
};

/* POST /api/runners/heartbeat with client_info (a JSON object as text, NULL:
 * {}) and the jobs in hand. On success *cancel (malloc'ed, free() it; NULL
 * when none) lists the jobs the runner must stop. */
int yci_client_heartbeat(struct yci_client *c, const char *client_info,
                         const struct yci_job_ref *jobs, size_t njobs, struct yci_job_ref **cancel,
                         size_t *ncancel, struct yci_error *err);
/* POST /api/runners/claim?wait=S: 1 and *job (free with yci_job_free) when a
 * job was claimed, 0 when none came within wait_seconds. */
int yci_client_claim(struct yci_client *c, int wait_seconds, struct yci_job **job,
                     struct yci_error *err);
void yci_job_free(struct yci_job *job);
/* POST /api/jobs/{id}/log: len bytes (at most 1 MiB) at offset. On success,
 * or on -ERANGE, *size is the server's log size (where to resume). */
int yci_client_log(struct yci_client *c, int64_t job_id, int attempt, uint64_t offset,
                   const void *data, size_t len, uint64_t *size, struct yci_error *err);
/* POST /api/jobs/{id}/finish. Idempotent; -ESTALE if the attempt is stale or
 * the job was cancelled meanwhile. status must not be YCI_ABANDONED. */
int yci_client_finish(struct yci_client *c, int64_t job_id, int attempt,
                      const struct yci_result *res, struct yci_error *err);
/* The same, asking for the runner's next job in the answer: then *next is a
 * job claimed for this runner (free with yci_job_free), or NULL when none
 * could be claimed at once (claim as usual). Ask only once per result: a
 * retried finish that asks again may claim a second job. */
int yci_client_finish_next(struct yci_client *c, int64_t job_id, int attempt,
                           const struct yci_result *r, struct yci_job **next,
                           struct yci_error *err);
/* POST /api/jobs/{id}/release: give back a job this client will not finish
 * (it is stopping): the server queues it again at once, for another attempt,
 * instead of when its lease expires. -ESTALE when that attempt is no longer
 * running here. The run loop does it for a job whose do_job returned
 * YCI_ABANDONED because yci_client_stop() was called. */
int yci_client_release(struct yci_client *c, int64_t job_id, int attempt, struct yci_error *err);

#ifdef __cplusplus
}
#endif

#endif
