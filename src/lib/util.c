#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"
#include "xalloc.h"
#include "banned.h"

int64_t time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_int(const char *s, int min, int max, int *out)
{
    int64_t v;
    int r = parse_int64(s, min, max, &v);
    if (r < 0)
        return r;
    *out = (int)v;
    return 0;
}

bool name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > YCI_MAX_NAME_LEN || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

bool sha_valid(const char *s)
{
    if (!s || strlen(s) != 40)
        return false;
    for (int i = 0; i < 40; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

bool secret_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t la = strlen(a), lb = strlen(b);
    /* Compare over the longer length so the time does not depend on where
     * the first difference is; a length difference still fails. */
    size_t n = la > lb ? la : lb;
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= ca ^ cb;
    }
    return diff == 0;
}

int random_bytes(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

char *random_token(size_t nbytes)
{
    unsigned char *raw = xmalloc(nbytes);
    if (random_bytes(raw, nbytes) < 0) {
        fprintf(stderr, "yci: no randomness from the kernel\n");
        abort();
    }
    char *hex = xmalloc(nbytes * 2 + 1);
    for (size_t i = 0; i < nbytes; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    free(raw);
    return hex;
}

int file_read(const char *path, struct buf *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char tmp[65536];
    int ret = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (n == 0)
            break;
        if (buf_add(b, tmp, (size_t)n) < 0) {
            ret = -E2BIG;
            break;
        }
    }
    close(fd);
    return ret;
}

int fd_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    int ret = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    ret = fd_write_all(fd, data, len);
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret < 0)
        unlink(tmp);
out:
    free(tmp);
    return ret;
}

int mkdir_p(const char *path, unsigned mode)
{
    /* Mostly it, or its parent, is there already: one call. */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    char *p = xstrdup(path);
    int ret = 0;
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                ret = -errno;
                break;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    return ret;
}

static int remove_at(int parent, const char *name, bool keep);

/* A job may have left a directory we cannot list or write: the owner may
 * always give itself the rights back. Then remove what it holds. */
static int remove_entries(int parent, const char *name, const struct stat *st)
{
    if ((st->st_mode & 0700) != 0700)
        fchmodat(parent, name, (st->st_mode & 07777) | 0700, 0);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int r = remove_at(dirfd(d), de->d_name, false);
        if (r < 0 && ret == 0)
            ret = r;
    }
    closedir(d);
    return ret;
}

/* Remove name (below parent) and all it holds; with keep, a directory
 * itself stays (emptied). */
static int remove_at(int parent, const char *name, bool keep)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    int ret = remove_entries(parent, name, &st);
    if (!keep && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && ret == 0)
        ret = -errno;
    return ret;
}

int remove_tree(const char *path)
{
    return remove_at(AT_FDCWD, path, false);
}

int remove_contents(const char *path)
{
    return remove_at(AT_FDCWD, path, true);
}

void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

void cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(c, m, &ts);
}

void log_gap_fill(char *buf, size_t n, uint64_t at, uint64_t from, uint64_t to, const char *note)
{
    memset(buf, ' ', n);
    size_t len = strlen(note);
    if (at < from + len) {
        size_t skip = (size_t)(at - from), k = len - skip < n ? len - skip : n;
        memcpy(buf, note + skip, k);
    }
    if (n > 0 && at + n == to)
        buf[n - 1] = '\n';
}

int log_gap_write(uint64_t from, uint64_t to,
                  int (*write)(void *arg, uint64_t at, const char *p, size_t n), void *arg)
{
    char note[96], *fill = xmalloc(YCI_MAX_LOG_CHUNK);
    snprintf(note, sizeof note, LOG_LOST_NOTE, to - from);
    int rc = 0;
    for (uint64_t at = from; rc == 0 && at < to;) {
        size_t n = to - at > YCI_MAX_LOG_CHUNK ? YCI_MAX_LOG_CHUNK : (size_t)(to - at);
        log_gap_fill(fill, n, at, from, to, note);
        rc = write(arg, at, fill, n);
        at += n;
    }
    free(fill);
    return rc;
}

void env_set(char ***env, size_t *n, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return;
    size_t klen = (size_t)(eq - kv) + 1;
    for (size_t i = 0; i < *n; i++)
        if (strncmp((*env)[i], kv, klen) == 0) {
            free((*env)[i]);
            (*env)[i] = xstrdup(kv);
            return;
        }
    *env = xrealloc(*env, (*n + 2) * sizeof **env);
    (*env)[(*n)++] = xstrdup(kv);
    (*env)[*n] = NULL;
}

void env_free(char **env, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    free(env);
}

void thread_stop(pthread_mutex_t *m, pthread_cond_t *c, bool *stop, pthread_t t, bool *started)
{
    pthread_mutex_lock(m);
    *stop = true;
    pthread_cond_signal(c);
    pthread_mutex_unlock(m);
    if (*started) {
        pthread_join(t, NULL);
        *started = false;
    }
}
