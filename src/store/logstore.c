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

/* A name that is a number as we write them (no sign, no leading zero). */
static bool id_name(const char *s, int64_t max, int64_t *v)
{
    return s[0] >= '1' && s[0] <= '9' && parse_int64(s, 1, max, v) == 0;
}

/* Make the directory of job's thousand; 0 or -errno. EEXIST: another
 * thread made it meanwhile, or an earlier job. */
static int make_thousand(struct logstore *ls, int64_t job_id)
{
    char *dir = xasprintf("%s/%" PRId64, ls->dir, job_id / JOBS_PER_DIR);
    int r = mkdir(dir, LOG_DIR_MODE) == 0 || errno == EEXIST ? 0 : -errno;
    free(dir);
    return r;
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
        if (!id_name(de->d_name, INT64_MAX, &job))
            continue;
        char *jdir = xasprintf("%s/%s", ls->dir, de->d_name);
        DIR *d = opendir(jdir);
        struct dirent *fe;
        bool moved = false;
        while (r == 0 && d && (fe = readdir(d))) {
            char num[24];
            size_t n = strlen(fe->d_name);
            int64_t attempt;
            if (n <= 4 || n - 4 >= sizeof num || strcmp(fe->d_name + n - 4, ".log") != 0)
                continue;
            memcpy(num, fe->d_name, n - 4);
            num[n - 4] = '\0';
            if (!id_name(num, 1000000, &attempt))
                continue;
            char *from = xasprintf("%s/%s", jdir, fe->d_name);
            char *to = logstore_path(ls, job, (int)attempt);
            r = make_thousand(ls, job);
            if (r == 0 && rename(from, to) < 0)
                r = -errno;
            if (r < 0)
                buf_setf(err, "log store: cannot move '%s' to '%s': %s", from, to, strerror(-r));
            moved = true;
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
        int r = make_thousand(ls, job_id);
        if (r < 0)
            errno = -r;
        else
            fd = open(path, flags, LOG_FILE_MODE);
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
