/*
 * logstore — job logs as files: <dir>/<job / 1000>/<job>.<attempt>.log.
 *
 * Each call opens, writes and closes its file: no descriptor outlives a call,
 * so there is no cache to bound or to lock, and the struct holds only the
 * directory (which makes the module thread-safe without a mutex). A chunk
 * costs an open, an fstat, a pwrite and a close, a few microseconds: far
 * below the HTTP request that carried it.
 *
 * Concurrent appends to one log are safe at the file level (pwrite at an
 * offset); the protocol has one writer per attempt anyway.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/logstore.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

#define LOG_DIR_MODE 0755
#define LOG_FILE_MODE 0644
#define JOBS_PER_DIR 1000
/* Written once the logs of the first layout are moved (see migrate()). */
#define LAYOUT_MARK ".layout-2"

struct logstore {
    char *dir;
};

/* A whole name of decimal digits (no sign, no leading zero), in *v. */
static bool parse_id(const char *s, size_t n, int64_t *v)
{
    if (n == 0 || n > 18 || s[0] == '0')
        return false;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

/*
 * Move the logs of the first layout (<dir>/<job>/<attempt>.log) to this one
 * and remove their emptied directories. A directory of the first layout and
 * one of this layout may have the same name (job 5's, and jobs 5000-5999's):
 * only the files named <attempt>.log are moved. Interrupted, it starts again
 * at the next open; the mark says it is done.
 */
static int migrate(struct logstore *ls, struct buf *err)
{
    char *mark = xasprintf("%s/" LAYOUT_MARK, ls->dir);
    int r = 0;
    if (access(mark, F_OK) == 0)
        goto out;
    DIR *top = opendir(ls->dir);
    if (!top) {
        r = -errno;
        buf_setf(err, "log store: %s: %s", ls->dir, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while (r == 0 && (de = readdir(top))) {
        int64_t job;
        if (!parse_id(de->d_name, strlen(de->d_name), &job))
            continue;
        char *jdir = xasprintf("%s/%s", ls->dir, de->d_name);
        DIR *d = opendir(jdir);
        struct dirent *fe;
        bool moved = false;
        while (r == 0 && d && (fe = readdir(d))) {
            size_t n = strlen(fe->d_name);
            int64_t attempt;
            if (n <= 4 || strcmp(fe->d_name + n - 4, ".log") != 0 ||
                !parse_id(fe->d_name, n - 4, &attempt) || attempt > 1000000)
                continue;
            char *from = xasprintf("%s/%s", jdir, fe->d_name);
            char *to = logstore_path(ls, job, (int)attempt);
            char *sdir = xasprintf("%s/%" PRId64, ls->dir, job / JOBS_PER_DIR);
            if ((mkdir(sdir, LOG_DIR_MODE) < 0 && errno != EEXIST) || rename(from, to) < 0) {
                r = -errno;
                buf_setf(err, "log store: cannot move '%s' to '%s': %s", from, to,
                         strerror(errno));
            }
            moved = true;
            free(sdir);
            free(from);
            free(to);
        }
        if (d)
            closedir(d);
        if (moved)
            rmdir(jdir); /* fails, rightly, while it holds new logs too */
        free(jdir);
    }
    closedir(top);
    if (r == 0)
        r = file_write_atomic(mark, "", 0, LOG_FILE_MODE);
    if (r < 0 && !err->len)
        buf_setf(err, "log store: %s: %s", mark, strerror(-r));
out:
    free(mark);
    return r;
}

int logstore_open(const char *dir, struct logstore **out, struct buf *err)
{
    if (!dir || !*dir) {
        buf_setf(err, "log store: no directory");
        return -EINVAL;
    }
    int r = mkdir_p(dir, LOG_DIR_MODE);
    if (r < 0) {
        buf_setf(err, "log store: %s: %s", dir, strerror(-r));
        return r;
    }
    struct logstore *ls = xcalloc(1, sizeof(*ls));
    ls->dir = xstrdup(dir);
    r = migrate(ls, err);
    if (r < 0) {
        logstore_free(ls);
        return r;
    }
    *out = ls;
    return 0;
}

void logstore_free(struct logstore *ls)
{
    if (!ls)
        return;
    free(ls->dir);
    free(ls);
}

char *logstore_path(struct logstore *ls, int64_t job_id, int attempt)
{
    return xasprintf("%s/%" PRId64 "/%" PRId64 ".%d.log", ls->dir, job_id / JOBS_PER_DIR, job_id,
                     attempt);
}

static bool ids_valid(int64_t job_id, int attempt)
{
    return job_id > 0 && attempt > 0;
}

/* Open the log for writing, creating it and its directory as needed. */
static int open_write(struct logstore *ls, int64_t job_id, int attempt)
{
    char *path = logstore_path(ls, job_id, attempt);
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    int fd = open(path, flags, LOG_FILE_MODE);
    if (fd < 0 && errno == ENOENT) {
        char *dir = xasprintf("%s/%" PRId64, ls->dir, job_id / JOBS_PER_DIR);
        /* EEXIST: another thread made it meanwhile. */
        if (mkdir(dir, LOG_DIR_MODE) == 0 || errno == EEXIST)
            fd = open(path, flags, LOG_FILE_MODE);
        free(dir);
    }
    int r = fd < 0 ? -errno : fd;
    free(path);
    return r;
}

int logstore_append(struct logstore *ls, int64_t job_id, int attempt, uint64_t offset,
                    const void *data, size_t len, uint64_t *size)
{
    if (!ids_valid(job_id, attempt) || offset > (uint64_t)INT64_MAX - len)
        return -EINVAL;
    int fd = open_write(ls, job_id, attempt);
    if (fd < 0)
        return fd;
    int r = 0;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        r = -errno;
        goto out;
    }
    uint64_t cur = (uint64_t)sb.st_size;
    if (offset > cur) {
        *size = cur;
        r = -ERANGE;
        goto out;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, p + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        done += (size_t)n;
    }
    *size = offset + len > cur ? offset + len : cur;
out:
    close(fd);
    return r;
}

int logstore_size(struct logstore *ls, int64_t job_id, int attempt, uint64_t *size)
{
    if (!ids_valid(job_id, attempt))
        return -EINVAL;
    char *path = logstore_path(ls, job_id, attempt);
    struct stat sb;
    int r = 0;
    if (stat(path, &sb) == 0)
        *size = (uint64_t)sb.st_size;
    else if (errno == ENOENT)
        *size = 0;
    else
        r = -errno;
    free(path);
    return r;
}

int logstore_open_read(struct logstore *ls, int64_t job_id, int attempt, int *fd, uint64_t *size)
{
    if (!ids_valid(job_id, attempt))
        return -ENOENT; /* nothing can be stored under such ids */
    char *path = logstore_path(ls, job_id, attempt);
    int r = 0;
    int f = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (f < 0)
        return -errno;
    struct stat sb;
    if (fstat(f, &sb) < 0) {
        r = -errno;
        close(f);
        return r;
    }
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return 0;
}

int logstore_count_lines(struct logstore *ls, int64_t job_id, int attempt, uint64_t upto,
                         uint64_t *count)
{
    *count = 0;
    int fd = -1;
    uint64_t size = 0;
    int r = logstore_open_read(ls, job_id, attempt, &fd, &size);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    if (upto > size)
        upto = size;
    enum { BLOCK = 256 * 1024 };
    char *block = xmalloc(BLOCK);
    uint64_t at = 0, n = 0;
    while (at < upto) {
        size_t want = upto - at < BLOCK ? (size_t)(upto - at) : BLOCK;
        ssize_t got = pread(fd, block, want, (off_t)at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            r = got < 0 ? -errno : -EIO;
            break;
        }
        for (const char *p = block, *end = block + got; (p = memchr(p, '\n', (size_t)(end - p)));
             p++)
            n++;
        at += (uint64_t)got;
    }
    free(block);
    close(fd);
    *count = n;
    return r;
}
