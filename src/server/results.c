/*
 * results — one file per commit under <data>/test_results/, as the seed does.
 *
 * When a build reaches a final state, a worker thread writes
 * <data>/test_results/<commit id>: a summary of the build (id, repository,
 * branch, commit, status, and each job's name, status, exit code and
 * duration) followed by each job's log. The file is replaced atomically (temp
 * file, fsync, rename), and the logs are copied in pieces rather than read into
 * memory whole (a job may log 50 MB). The worker keeps this disk work off the
 * request threads. Builds without a commit (POST /api/builds with "jobs") have
 * no file. A later build of the same commit replaces the file.
 *
 * The queue is in memory: at start the worker first catches up (catch_up())
 * on the files a crash may have left unwritten, and removes the temporary
 * files one left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "server/internal.h"
#include "store/logstore.h"
#include "store/store.h"
#include "lib/banned.h"

struct results {
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* build ids; a negative value -t asks for a scan since t, 0 for catch_up() */
    int64_t *queue;
    size_t len, cap;
    bool stopping;
    bool thread_started;
    pthread_t thread;
};

static void push(struct results *r, int64_t v)
{
    pthread_mutex_lock(&r->lock);
    if (r->len == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->queue = xrealloc(r->queue, r->cap * sizeof(*r->queue));
    }
    r->queue[r->len++] = v;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void results_build_done(struct results *r, int64_t build_id)
{
    if (r && build_id > 0)
        push(r, build_id);
}

void results_recent_errors(struct results *r, int64_t since_ms)
{
    if (r && since_ms > 0)
        push(r, -since_ms);
}

static bool final_status(const char *s)
{
    return s && (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "error") == 0 ||
                 strcmp(s, "cancelled") == 0);
}

static void add_time(struct buf *b, const char *label, json_t *v)
{
    if (!json_is_integer(v)) {
        buf_addf(b, "%s: -\n", label);
        return;
    }
    int64_t ms = json_integer_value(v);
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char text[64];
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &tm);
    buf_addf(b, "%s: %s\n", label, text);
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static int copy_log(struct logstore *ls, int fd, int64_t job_id, int attempt)
{
    int in = -1;
    uint64_t size = 0;
    int rc = logstore_open_read(ls, job_id, attempt, &in, &size);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    char chunk[65536];
    char last = 0;
    while (size > 0) {
        ssize_t n = read(in, chunk, size < sizeof(chunk) ? size : sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        last = chunk[n - 1];
        rc = fd_write_all(fd, chunk, (size_t)n);
        if (rc < 0)
            break;
        size -= (uint64_t)n;
    }
    close(in);
    if (rc == 0 && last != '\n' && last != 0)
        rc = fd_write_all(fd, "\n", 1);
    return rc;
}

static int write_result(struct results *r, int64_t build_id, struct buf *err)
{
    struct server *srv = r->srv;
    struct buf b = BUF_INIT;
    char *path = NULL, *tmp = NULL;
    int fd = -1, rc = 0;
    json_t *build = store_build_get(srv->store, build_id);
    if (!build)
        return 0;
    const char *commit = json_string_value(json_object_get(build, "commit"));
    if (!sha_valid(commit) || !final_status(str_or(build, "status", NULL)))
        goto out;

    buf_addf(&b, "build %" PRId64 ": %s\n", build_id, str_or(build, "status", "?"));
    buf_addf(&b, "repo: %s\n", str_or(build, "repo", "-"));
    buf_addf(&b, "branch: %s\n", str_or(build, "branch", "-"));
    buf_addf(&b, "commit: %s\n", commit);
    if (json_is_integer(json_object_get(build, "rebuild_of")))
        buf_addf(&b, "rebuild of: %" PRId64 "\n",
                 (int64_t)json_integer_value(json_object_get(build, "rebuild_of")));
    add_time(&b, "created", json_object_get(build, "created"));
    add_time(&b, "finished", json_object_get(build, "finished"));
    if (json_is_integer(json_object_get(build, "duration_ms")))
        buf_addf(&b, "duration: %.3f s\n",
                 (double)json_integer_value(json_object_get(build, "duration_ms")) / 1000.0);
    if (json_string_value(json_object_get(build, "error")))
        buf_addf(&b, "error: %s\n", str_or(build, "error", ""));
    json_t *jobs = json_object_get(build, "jobs");
    size_t i;
    json_t *job;
    buf_addf(&b, "\njobs:\n");
    json_array_foreach(jobs, i, job)
    {
        buf_addf(&b, "  job %" PRId64 " %s: %s",
                 (int64_t)json_integer_value(json_object_get(job, "id")), str_or(job, "name", "?"),
                 str_or(job, "status", "?"));
        json_t *code = json_object_get(job, "exit_code");
        if (json_is_integer(code))
            buf_addf(&b, ", exit code %" PRId64, (int64_t)json_integer_value(code));
        json_t *dur = json_object_get(job, "duration_ms");
        if (json_is_integer(dur))
            buf_addf(&b, ", %.3f s", (double)json_integer_value(dur) / 1000.0);
        buf_addf(&b, ", attempt %" PRId64,
                 (int64_t)json_integer_value(json_object_get(job, "attempt")));
        if (json_string_value(json_object_get(job, "error")))
            buf_addf(&b, ", error: %s", str_or(job, "error", ""));
        buf_addch(&b, '\n');
    }

    path = xasprintf("%s/%s", srv->results_dir, commit);
    char *rnd = random_token(6);
    tmp = xasprintf("%s/.%s.%s.tmp", srv->results_dir, commit, rnd);
    free(rnd);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        buf_setf(err, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = fd_write_all(fd, b.data, b.len);
    json_array_foreach(jobs, i, job)
    {
        if (rc < 0)
            break;
        int64_t job_id = json_integer_value(json_object_get(job, "id"));
        int attempt = (int)json_integer_value(json_object_get(job, "attempt"));
        buf_reset(&b);
        buf_addf(&b, "\n=== job %" PRId64 " %s (attempt %d) ===\n", job_id,
                 str_or(job, "name", "?"), attempt);
        rc = fd_write_all(fd, b.data, b.len);
        if (rc == 0 && attempt > 0)
            rc = copy_log(srv->logs, fd, job_id, attempt);
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    fd = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        buf_setf(err, "cannot write %s: %s", path, strerror(-rc));
        unlink(tmp);
    }
out:
    if (fd >= 0)
        close(fd);
    free(path);
    free(tmp);
    buf_release(&b);
    json_decref(build);
    return rc;
}

static void scan_errors(struct results *r, int64_t since_ms)
{
    json_t *filter = json_pack("{s:s, s:i}", "status", "error", "limit", 100);
    json_t *list = store_build_list(r->srv->store, filter);
    json_decref(filter);
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b)
    {
        json_t *fin = json_object_get(b, "finished");
        if (json_is_integer(fin) && json_integer_value(fin) >= since_ms)
            push(r, json_integer_value(json_object_get(b, "id")));
    }
    json_decref(list);
}

/* write_result(), its failure logged; true when the file was written. */
static bool write_logged(struct results *r, int64_t build_id)
{
    struct buf err = BUF_INIT;
    int rc = write_result(r, build_id, &err);
    if (rc < 0)
        log_error("build %" PRId64 ": %s, ignoring", build_id, err.data);
    buf_release(&err);
    return rc == 0;
}

/* Builds looked at by catch_up(): those a crash just before could concern. */
#define RESULTS_CATCH_UP 200

/* What a crash left: the temporary files of writes it cut short, and the
 * files of the newest finished builds that are missing or older than their
 * build's end (the build finished, its file was still queued). */
static void catch_up(struct results *r)
{
    const char *dir = r->srv->results_dir;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' && n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
            char *p = xasprintf("%s/%s", dir, e->d_name);
            if (unlink(p) == 0)
                log_info("removed '%s', left by a crash", p);
            free(p);
        }
    }
    if (d)
        closedir(d);
    json_t *filter = json_pack("{s:i}", "limit", RESULTS_CATCH_UP);
    json_t *list = store_build_list(r->srv->store, filter);
    json_decref(filter);
    /* Oldest first: of two builds of a commit, the newer's file wins. */
    for (size_t i = json_array_size(list); i-- > 0;) {
        json_t *b = json_array_get(list, i);
        const char *commit = json_string_value(json_object_get(b, "commit"));
        json_t *fin = json_object_get(b, "finished");
        if (!sha_valid(commit) || !json_is_integer(fin) ||
            !final_status(json_string_value(json_object_get(b, "status"))))
            continue;
        char *path = xasprintf("%s/%s", dir, commit);
        struct stat st;
        bool stale = stat(path, &st) < 0 || (int64_t)st.st_mtim.tv_sec * 1000 +
                                                     st.st_mtim.tv_nsec / 1000000 <
                                                 json_integer_value(fin);
        free(path);
        if (!stale)
            continue;
        int64_t id = json_integer_value(json_object_get(b, "id"));
        if (write_logged(r, id))
            log_info("build %" PRId64 ": wrote its test_results file, which a crash had left "
                     "unwritten",
                     id);
    }
    json_decref(list);
}

static void *results_thread(void *arg)
{
    struct results *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (r->len == 0 && !r->stopping)
            pthread_cond_wait(&r->cond, &r->lock);
        if (r->len == 0)
            break; /* stopping, and everything queued is written */
        int64_t v = r->queue[0];
        memmove(r->queue, r->queue + 1, (r->len - 1) * sizeof(*r->queue));
        r->len--;
        pthread_mutex_unlock(&r->lock);
        if (v < 0) {
            scan_errors(r, -v);
        } else if (v == 0) {
            catch_up(r);
        } else {
            write_logged(r, v);
        }
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int results_new(struct server *srv, struct results **out, struct buf *err)
{
    struct results *r = xcalloc(1, sizeof(*r));
    r->srv = srv;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    push(r, 0); /* catch_up() first */
    int rc = pthread_create(&r->thread, NULL, results_thread, r);
    if (rc != 0) {
        buf_setf(err, "cannot start the results thread: %s", strerror(rc));
        results_free(r);
        return -rc;
    }
    r->thread_started = true;
    *out = r;
    return 0;
}

void results_free(struct results *r)
{
    if (!r)
        return;
    thread_stop(&r->lock, &r->cond, &r->stopping, r->thread, &r->thread_started);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r->queue);
    free(r);
}
