/*
 * exec — see exec.h. The executor's one loop (pump()) polls three
 * descriptors: the job's output pipe (appended to the spool), the
 * supervisor's done descriptor (the command and everything it started are
 * gone), and the wake eventfd (someone asked us to stop); its timeout is the
 * job's deadline or the end of the kill grace period.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/limits.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "os/spawn.h"
#include "runner/plan.h"
#include "lib/banned.h"

int exec_new(const struct yci_job *job, const char *server_url, const char *workdir, int slot,
             int spool_fd, struct exec **out, struct buf *err)
{
    int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
        buf_setf(err, "eventfd: %s", strerror(errno));
        return -errno;
    }
    struct exec *x = xcalloc(1, sizeof *x);
    x->job = job;
    x->server_url = xstrdup(server_url);
    x->workdir = xstrdup(workdir);
    x->slot = slot;
    x->spool_fd = spool_fd;
    x->wake_fd = wake;
    atomic_init(&x->stop, EXEC_RUNNING);
    pthread_mutex_init(&x->mu, NULL);
    cond_init_monotonic(&x->cond);
    x->status = YCI_ERROR;
    x->exit_code = -1;
    x->tail_fd = -1;
    x->tail_path = xasprintf("%s/spool/tail-%d", workdir, slot);
    x->chunk = xmalloc(EXEC_CHUNK);
    x->claim = job->json ? json_loads(job->json, 0, NULL) : NULL;
    json_t *cap = json_object_get(x->claim, "max_log_bytes");
    /* At least 64 KiB, so that head and tail both mean something. */
    if (json_is_integer(cap) && json_integer_value(cap) > 0)
        x->log_cap = json_integer_value(cap) < 65536 ? 65536 : (uint64_t)json_integer_value(cap);
    *out = x;
    return 0;
}

void exec_free(struct exec *x)
{
    if (!x)
        return;
    close(x->wake_fd);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cond);
    buf_release(&x->error);
    free(x->plan_jobs);
    if (x->tail_fd >= 0) {
        close(x->tail_fd);
        unlink(x->tail_path);
    }
    free(x->tail_path);
    free(x->chunk);
    json_decref(x->claim);
    free(x->token);
    free(x->server_url);
    free(x->workdir);
    free(x);
}

void exec_stop(struct exec *x, enum exec_stop_reason why)
{
    int expected = EXEC_RUNNING;
    if (atomic_compare_exchange_strong(&x->stop, &expected, (int)why)) {
        uint64_t one = 1;
        if (write(x->wake_fd, &one, sizeof one) < 0) {
            /* An eventfd write only fails on overflow: it is readable anyway. */
        }
    }
}

static bool stopping(struct exec *x)
{
    return atomic_load(&x->stop) != EXEC_RUNNING;
}

/* Start the uploader once it has something to do (see kick in exec.h).
 * written is only ever changed by this thread: read unlocked. */
static void kick_maybe(struct exec *x)
{
    if (!x->kick || x->kicked || x->written == 0)
        return;
    if (x->written >= EXEC_WAKE_BYTES || time_mono_ms() >= x->kick_at) {
        x->kicked = true;
        x->kick(x->kick_arg);
    }
}

/* len more bytes are in the spool: tell the uploader now and then. */
static void spool_written(struct exec *x, size_t len)
{
    pthread_mutex_lock(&x->mu);
    uint64_t before = x->written;
    x->written += len;
    if (x->written / EXEC_WAKE_BYTES != before / EXEC_WAKE_BYTES)
        pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->mu);
    kick_maybe(x);
}

/* Append to the spool and tell the uploader now and then. */
static int spool_append(struct exec *x, const void *data, size_t len)
{
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        /* Only this thread writes, so written is ours to read unlocked. */
        ssize_t n = pwrite(x->spool_fd, p, left, (off_t)(x->written + (len - left)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        left -= (size_t)n;
    }
    spool_written(x, len);
    return 0;
}

/*
 * The log's cap (the claim's "max_log_bytes"): the first half of the cap
 * goes to the spool as it comes; past it, output goes round a ring file of
 * the other half, and when the job ends the spool gets the ring in order —
 * after a marker saying how much was dropped when the ring went round. A log
 * under the cap is so kept whole (its second half shown when the job ends);
 * a longer one keeps its head and its tail.
 */
static int tail_write(struct exec *x, const char *p, size_t len)
{
    uint64_t ring = x->log_cap - x->log_cap / 2;
    if (x->tail_fd < 0) {
        x->tail_fd = open(x->tail_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (x->tail_fd < 0)
            return -errno;
    }
    while (len > 0) {
        uint64_t at = x->tail_total % ring;
        size_t n = len < ring - at ? len : (size_t)(ring - at);
        ssize_t w = pwrite(x->tail_fd, p, n, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        x->tail_total += (uint64_t)w;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int spool(struct exec *x, const void *data, size_t len)
{
    uint64_t head = x->log_cap / 2;
    if (!x->log_cap || x->raw + len <= head) {
        x->raw += len;
        return spool_append(x, data, len);
    }
    const char *p = data;
    if (x->raw < head) {
        size_t first = (size_t)(head - x->raw);
        int r = spool_append(x, p, first);
        if (r < 0)
            return r;
        p += first;
        len -= first;
        x->raw = head;
    }
    x->raw += len;
    return tail_write(x, p, len);
}

/*
 * Move what the job's pipe holds straight into the spool (splice: no copy
 * through our buffer, one system call instead of a read and a write), as
 * long as the output goes to the spool as it comes (under half the cap).
 * Returns the bytes moved, 0 at the end of the output, -EAGAIN when the pipe
 * is empty, or -ENOTSUP when the caller must read (past half the cap, or
 * splice failed: then the spool is written the usual way, whose errors the
 * caller handles).
 */
static ssize_t spool_splice(struct exec *x, int fd)
{
    size_t max = EXEC_SPLICE_MAX;
    if (x->log_cap) {
        uint64_t head = x->log_cap / 2;
        if (x->raw >= head)
            return -ENOTSUP;
        if (head - x->raw < max)
            max = (size_t)(head - x->raw);
    }
    if (x->no_splice)
        return -ENOTSUP;
    loff_t at = (loff_t)x->written;
    ssize_t n;
    do
        n = splice(fd, NULL, x->spool_fd, &at, max, SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return -EAGAIN;
    if (n < 0) {
        x->no_splice = true;
        return -ENOTSUP;
    }
    x->raw += (uint64_t)n;
    spool_written(x, (size_t)n);
    return n;
}

/* At the end of a capped job: the marker, then the ring in order. */
static void spool_tail(struct exec *x)
{
    if (x->tail_fd < 0)
        return;
    uint64_t ring = x->log_cap - x->log_cap / 2;
    uint64_t kept = x->tail_total < ring ? x->tail_total : ring;
    uint64_t dropped = x->tail_total - kept;
    if (dropped) {
        char note[200];
        int n = snprintf(note, sizeof note,
                         "\n[yci: %" PRIu64 " bytes of output dropped here (the log is capped "
                         "at %" PRIu64 " bytes); the last %" PRIu64 " bytes follow]\n",
                         dropped, x->log_cap, kept);
        spool_append(x, note, (size_t)n);
    }
    char *chunk = x->chunk;
    uint64_t start = x->tail_total > ring ? x->tail_total % ring : 0;
    for (uint64_t done = 0; done < kept;) {
        uint64_t at = (start + done) % ring;
        size_t want = EXEC_CHUNK;
        if (want > kept - done)
            want = (size_t)(kept - done);
        if (want > ring - at)
            want = (size_t)(ring - at);
        ssize_t r = pread(x->tail_fd, chunk, want, (off_t)at);
        if (r <= 0 || spool_append(x, chunk, (size_t)r) < 0)
            break;
        done += (uint64_t)r;
    }
    close(x->tail_fd);
    x->tail_fd = -1;
    unlink(x->tail_path);
}

static void spoolf(struct exec *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void spoolf(struct exec *x, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    spool(x, b.data, b.len);
    buf_release(&b);
}

static void set_result(struct exec *x, enum yci_status status, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_result(struct exec *x, enum yci_status status, int exit_code, const char *fmt, ...)
{
    x->status = status;
    x->exit_code = exit_code;
    buf_reset(&x->error);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        buf_vaddf(&x->error, fmt, ap);
        va_end(ap);
    }
}

enum pump_end { PUMP_EXITED, PUMP_TIMED_OUT, PUMP_STOPPED, PUMP_SPOOL_FAILED };

/*
 * Run one child to its end. Output goes to the spool (to_spool) or to
 * capture. deadline_ms is on the monotonic clock (0: none). *status is the
 * child's wait status.
 */
static enum pump_end pump(struct exec *x, struct spawn *s, int64_t deadline_ms, bool to_spool,
                          struct buf *capture, int *status)
{
    enum pump_end end = PUMP_EXITED;
    int64_t kill_at = 0;
    int64_t nap_until = 0; /* the pipe is left alone until then: see EXEC_NAP_MS */
    bool eof = spawn_out_fd(s) < 0, wake_seen = false, killed = false;
    char *chunk = x->chunk;

    for (;;) {
        int64_t now = time_mono_ms();
        bool napping = nap_until > now;
        struct pollfd pfd[3] = {
            {spawn_done_fd(s), POLLIN, 0},
            {eof || napping ? -1 : spawn_out_fd(s), POLLIN, 0},
            {wake_seen ? -1 : x->wake_fd, POLLIN, 0},
        };
        int64_t next = kill_at ? kill_at : (end == PUMP_EXITED ? deadline_ms : 0);
        if (napping && (!next || nap_until < next))
            next = nap_until;
        if (x->kick && !x->kicked && x->written > 0 && (!next || x->kick_at < next))
            next = x->kick_at;
        int wait = -1;
        if (next)
            wait = next > now ? (int)(next - now > INT_MAX ? INT_MAX : next - now) : 0;
        int n = poll(pfd, 3, wait);
        if (n < 0 && errno != EINTR)
            break;
        if (napping && time_mono_ms() >= nap_until) {
            nap_until = 0;
            pfd[1].revents = POLLIN; /* read it now: a read that finds nothing is harmless */
        }
        kick_maybe(x);

        /* Output first, so that nothing is lost when the child ends. */
        if (pfd[1].revents && !eof) {
            size_t got = 0;
            for (int i = 0; i < 16; i++) { /* bounded: look at the others too */
                ssize_t r = to_spool ? spool_splice(x, spawn_out_fd(s)) : -ENOTSUP;
                if (r > 0) {
                    got += (size_t)r;
                    continue;
                }
                if (r == -ENOTSUP) {
                    r = read(spawn_out_fd(s), chunk, EXEC_CHUNK);
                    if (r < 0 && errno == EINTR)
                        continue;
                } else if (r == -EAGAIN) {
                    errno = EAGAIN;
                    r = -1;
                }
                if (r <= 0) {
                    if (r == 0 || errno != EAGAIN)
                        eof = true;
                    else if (got > 0 && got < EXEC_NAP_BELOW)
                        nap_until = time_mono_ms() + EXEC_NAP_MS;
                    break;
                }
                got += (size_t)r;
                if (to_spool) {
                    int sr = spool(x, chunk, (size_t)r);
                    if (sr < 0 && end != PUMP_SPOOL_FAILED) {
                        x->spool_errno = -sr;
                        end = PUMP_SPOOL_FAILED;
                        spawn_signal(s, true);
                        killed = true;
                    }
                } else if (capture) {
                    buf_add(capture, chunk, (size_t)r);
                }
            }
        }
        if (pfd[0].revents)
            break;

        now = time_mono_ms();
        if (pfd[2].revents && !wake_seen) {
            wake_seen = true;
            if (end == PUMP_EXITED) {
                end = PUMP_STOPPED;
                spawn_signal(s, false);
                kill_at = now + EXEC_KILL_GRACE_MS;
            }
        }
        if (end == PUMP_EXITED && deadline_ms && now >= deadline_ms) {
            end = PUMP_TIMED_OUT;
            spawn_signal(s, false);
            kill_at = now + EXEC_KILL_GRACE_MS;
        }
        if (kill_at && now >= kill_at && !killed) {
            spawn_signal(s, true);
            killed = true;
            kill_at = 0;
        }
    }
    spawn_wait(s, -1, status);
    /* Everything below the child is dead: what is left in the pipe is all. */
    while (!eof) {
        ssize_t r = read(spawn_out_fd(s), chunk, EXEC_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (to_spool)
            spool(x, chunk, (size_t)r);
        else if (capture)
            buf_add(capture, chunk, (size_t)r);
    }
    return end;
}

/* The environment git runs with: ours, minus anything that could make it
 * prompt, plus low-speed limits so a stuck server does not hang a fetch. */
static const char *const *git_env(const char **vec, size_t cap)
{
    size_t n = 0;
    static const char *keep[] = {"PATH",        "HOME",        "LANG",     "TMPDIR",
                                 "http_proxy",  "https_proxy", "no_proxy", "HTTP_PROXY",
                                 "HTTPS_PROXY", "NO_PROXY"};
    extern char **environ;
    for (char **e = environ; *e && n + 8 < cap; e++)
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            size_t l = strlen(keep[k]);
            if (strncmp(*e, keep[k], l) == 0 && (*e)[l] == '=')
                vec[n++] = *e;
        }
    vec[n++] = "GIT_TERMINAL_PROMPT=0";
    vec[n++] = "GIT_ASKPASS=/bin/false";
    vec[n++] = "GIT_HTTP_LOW_SPEED_LIMIT=1000";
    vec[n++] = "GIT_HTTP_LOW_SPEED_TIME=60";
    vec[n++] = "GIT_CONFIG_NOSYSTEM=1";
    vec[n] = NULL;
    return vec;
}

/* Run git with argv; on failure the command and its output go to the log
 * and the result is set to error. 0 or negative. */
static int git(struct exec *x, const char *const *argv, bool quiet_fail)
{
    const char *envv[64];
    const char *const *envp = git_env(envv, sizeof envv / sizeof *envv);
    /* The runner token, so that the server lets us fetch a private
     * repository's mirror; through the environment, never on the command
     * line. */
    char *auth = NULL;
    if (x->token) {
        size_t n = 0;
        while (envv[n])
            n++;
        auth = xasprintf("GIT_CONFIG_VALUE_0=Authorization: Bearer %s", x->token);
        envv[n++] = "GIT_CONFIG_COUNT=1";
        envv[n++] = "GIT_CONFIG_KEY_0=http.extraHeader";
        envv[n++] = auth;
        envv[n] = NULL;
    }
    struct spawn_opts o = {argv, envp, NULL, SPAWN_PIPE};
    struct buf out = BUF_INIT, err = BUF_INIT, cmd = BUF_INIT;
    out.max = 64 * 1024;
    struct spawn *s;
    int status = 0, ret;
    for (const char *const *a = argv; *a; a++)
        buf_addf(&cmd, "%s%s", a == argv ? "" : " ", *a);

    ret = spawn_start(&o, &s, &err);
    if (ret < 0) {
        spoolf(x, "$ %s\n%s\n", cmd.data, err.data);
        set_result(x, YCI_ERROR, -1, "%s", err.data);
        goto out;
    }
    enum pump_end end = pump(x, s, time_mono_ms() + EXEC_GIT_TIMEOUT_MS, false, &out, &status);
    spawn_free(s);
    if (end == PUMP_STOPPED) {
        ret = -ECANCELED;
    } else if (end == PUMP_TIMED_OUT) {
        spoolf(x, "$ %s\n%s", cmd.data, out.data ? out.data : "");
        set_result(x, YCI_ERROR, -1, "'%s' timed out", cmd.data);
        ret = -ETIMEDOUT;
    } else if (spawn_exit_code(status) != 0) {
        if (!quiet_fail) {
            spoolf(x, "$ %s\n%s", cmd.data, out.data ? out.data : "");
            set_result(x, YCI_ERROR, -1, "'%s' exited with %d", cmd.data, spawn_exit_code(status));
        }
        ret = -EIO;
    }
out:
    free(auth);
    buf_release(&out);
    buf_release(&err);
    buf_release(&cmd);
    return ret;
}

/*
 * Empty ws of whatever the last job left (remove_contents copes with
 * read-only directories). The directory itself stays, and a job that left
 * nothing costs nothing: making and removing a directory per job was the
 * runner's largest cost on ext4 (inode allocation, and with the "discard"
 * mount option a synchronous TRIM per removal; bench/throughput).
 */
static int clean_dir(struct exec *x, const char *path)
{
    int ret = remove_contents(path);
    if (ret < 0)
        set_result(x, YCI_ERROR, -1, "cannot remove the old workspace '%s': %s", path,
                   strerror(-ret));
    return ret;
}

/* Whether the runner's cache of a repository (a bare repository) exists. */
static bool cache_made(const char *cache)
{
    char *head = xasprintf("%s/HEAD", cache);
    bool made = access(head, F_OK) == 0;
    free(head);
    return made;
}

/* Make sure the cache (a bare repository) has commit: made if missing, and
 * fetched from url unless want (COMMIT^{commit}) is there already, under
 * the repository's lock, so that slots fetch one at a time (and a second
 * finds what the first fetched). *lock_fd: the lock file, opened once. */
static int cache_fetch(struct exec *x, const char *cache, const char *lock, const char *url,
                       const char *want, const char *commit, int *lock_fd)
{
    if (*lock_fd < 0)
        *lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*lock_fd < 0 || flock(*lock_fd, LOCK_EX) < 0) {
        int e = errno;
        set_result(x, YCI_ERROR, -1, "cannot lock '%s': %s", lock, strerror(e));
        return -e;
    }
    int ret = 0;
    bool exists = cache_made(cache);
    if (!exists) {
        const char *init[] = {"git", "init", "--bare", "-q", cache, NULL};
        ret = git(x, init, false);
    }
    const char *have[] = {"git", "-C", cache, "cat-file", "-e", want, NULL};
    if (ret == 0 && (!exists || git(x, have, true) < 0)) {
        const char *fetch[] = {"git", "-C", cache, "fetch", "--no-tags", "-q", url, commit, NULL};
        /* The server may be restarting (a fetch cut short, a refused
         * connection): tried again for a while before the job is an error. */
        int64_t wait_ms = 1000;
        for (int tries = 1;; tries++) {
            if (stopping(x)) {
                ret = -ECANCELED;
                break;
            }
            bool last = tries == EXEC_FETCH_TRIES;
            ret = git(x, fetch, !last);
            if (ret == 0 || last || ret == -ECANCELED)
                break;
            spoolf(x, "yci: fetching %.12s from the server failed (try %d of %d); trying again in "
                      "%d s\n",
                   commit, tries, EXEC_FETCH_TRIES, (int)(wait_ms / 1000));
            for (int64_t until = time_mono_ms() + wait_ms; time_mono_ms() < until && !stopping(x);)
                time_sleep_ms(100);
            wait_ms *= 2;
        }
    }
    flock(*lock_fd, LOCK_UN);
    return ret;
}

/* Write text into a new file at dir/name. 0 or -errno. */
static int file_new(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    free(path);
    if (fd < 0)
        return -errno;
    int ret = fd_write_all(fd, text, strlen(text));
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    return ret;
}

/* What git init finds out about the file system of a new repository, and
 * writes into its config when it is not the default. */
struct fs_caps {
    bool filemode;   /* the executable bit holds (not on vfat) */
    bool symlinks;   /* symbolic links can be made */
    bool ignorecase; /* names are found whatever their case */
};

/* Probe dir's file system as git init does (a file, its mode changed, the
 * same name in other case, a symbolic link); when no file can be made there,
 * the mode and the case are taken to be the defaults (true, false). */
static void fs_probe(const char *dir, struct fs_caps *fs)
{
    *fs = (struct fs_caps){true, true, false};
    char *probe = xasprintf("%s/yci-probe", dir), *upper = xasprintf("%s/YCI-PROBE", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        struct stat st;
        if (fchmod(fd, 0755) == 0 && fstat(fd, &st) == 0)
            fs->filemode = (st.st_mode & 0100) != 0;
        close(fd);
        fs->ignorecase = access(upper, F_OK) == 0;
        unlink(probe);
    }
    fs->symlinks = symlink("testing", probe) == 0;
    if (fs->symlinks)
        unlink(probe);
    free(probe);
    free(upper);
}

/*
 * Make the empty directory ws a repository that borrows the cache's objects,
 * as `git clone --shared --no-checkout <cache> <ws>` does (its origin is the
 * cache; the cache has no branches to copy), without starting git: a
 * .git with HEAD, config, refs/ and objects/info/alternates. git clone cost
 * a process start and the copy of git's templates (a score of sample hooks)
 * per job: the checkout row went from 26 to 63 jobs/s (docs/architecture.md,
 * "The runner"). The file system is probed as git init does (fs_probe()).
 * 1: the cache's path cannot be written plainly into these files (a
 * newline, a quote or a backslash in it); let git clone do it.
 */
static int ws_init(const char *ws, const char *cache)
{
    if (strpbrk(cache, "\n\"\\") || cache[0] != '/')
        return 1;
    static const char *const dirs[] = {".git", ".git/objects", ".git/objects/info",
                                       ".git/objects/pack", ".git/refs", ".git/refs/heads",
                                       ".git/refs/tags"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char *d = xasprintf("%s/%s", ws, dirs[i]);
        int r = mkdir(d, 0755) < 0 ? -errno : 0;
        free(d);
        if (r < 0)
            return r;
    }
    char *git_dir = xasprintf("%s/.git", ws);
    struct fs_caps fs;
    fs_probe(git_dir, &fs);
    char *config = xasprintf("[core]\n"
                             "\trepositoryformatversion = 0\n"
                             "\tfilemode = %s\n"
                             "\tbare = false\n"
                             "\tlogallrefupdates = true\n"
                             "%s%s"
                             "[remote \"origin\"]\n"
                             "\turl = \"%s\"\n"
                             "\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
                             fs.filemode ? "true" : "false",
                             fs.symlinks ? "" : "\tsymlinks = false\n",
                             fs.ignorecase ? "\tignorecase = true\n" : "", cache);
    char *alternates = xasprintf("%s/objects\n", cache);
    int ret = file_new(git_dir, "HEAD", "ref: refs/heads/master\n");
    if (ret == 0)
        ret = file_new(git_dir, "config", config);
    if (ret == 0)
        ret = file_new(git_dir, "objects/info/alternates", alternates);
    free(alternates);
    free(config);
    free(git_dir);
    return ret;
}

/* Make <workdir>/ws/<slot> hold the job's commit (or nothing). */
static int make_workspace(struct exec *x, const char *ws)
{
    const struct yci_job *job = x->job;
    int ret = clean_dir(x, ws);
    if (ret < 0)
        return ret;
    struct stat st;
    ret = mkdir_p(ws, 0755);
    if (ret == 0 && stat(ws, &st) == 0 && (st.st_mode & 07777) != 0755 && chmod(ws, 0755) < 0)
        ret = -errno;
    if (ret < 0) {
        set_result(x, YCI_ERROR, -1, "cannot make the workspace '%s': %s", ws, strerror(-ret));
        return ret;
    }
    if (!job->fetch_url)
        return 0;
    if (!job->repo || !name_valid(job->repo) || !job->commit || !sha_valid(job->commit) ||
        job->fetch_url[0] != '/') {
        spoolf(x, "yci: the job names no valid repository, commit and fetch URL\n");
        set_result(x, YCI_ERROR, -1, "bad repository, commit or fetch_url in the job");
        return -EINVAL;
    }

    char *cache_dir = xasprintf("%s/cache", x->workdir);
    char *cache = xasprintf("%s/%s.git", cache_dir, job->repo);
    char *lock = xasprintf("%s/%s.lock", cache_dir, job->repo);
    char *url = xasprintf("%s%s", x->server_url, job->fetch_url);
    char *want = xasprintf("%s^{commit}", job->commit);
    int lock_fd = -1;

    ret = mkdir_p(cache_dir, 0755);
    if (ret < 0) {
        set_result(x, YCI_ERROR, -1, "cannot make '%s': %s", cache_dir, strerror(-ret));
        goto out;
    }
    /* The cache has the commit already for all but a build's first job
     * (on this runner): clone from it and check out, and only when the
     * checkout finds no such commit, fetch it and check out again. That
     * spares asking the cache first, a git process per job. */
    bool exists = cache_made(cache);
    if (!exists && (ret = cache_fetch(x, cache, lock, url, want, job->commit, &lock_fd)) < 0)
        goto out;
    ret = ws_init(ws, cache);
    if (ret < 0) {
        set_result(x, YCI_ERROR, -1, "cannot make a repository in '%s': %s", ws, strerror(-ret));
        goto out;
    }
    const char *clone[] = {"git", "clone", "--shared", "--no-checkout", "-q", cache, ws, NULL};
    if (ret > 0 && (ret = git(x, clone, false)) < 0)
        goto out;
    const char *checkout[] = {"git", "-C", ws, "checkout", "--detach", "-q", job->commit, NULL};
    if (!exists) /* just fetched */
        ret = git(x, checkout, false);
    else if (git(x, checkout, true) == 0)
        ret = 0;
    else if (stopping(x))
        ret = -ECANCELED;
    else if ((ret = cache_fetch(x, cache, lock, url, want, job->commit, &lock_fd)) == 0)
        ret = git(x, checkout, false);
    if (ret < 0 || !job->submodules)
        goto out;
    /* Submodules: with origin pointing at the server's mirror, relative
     * URLs in .gitmodules ("../lib.git") resolve to the server's mirrors of
     * those repositories; absolute ones are fetched from where they say. */
    const char *origin[] = {"git", "-C", ws, "remote", "set-url", "origin", url, NULL};
    if ((ret = git(x, origin, false)) < 0)
        goto out;
    spoolf(x, "$ git submodule update --init --recursive\n");
    const char *sub[] = {"git", "-C", ws, "submodule", "update", "--init", "--recursive", "-q",
                         NULL};
    ret = git(x, sub, false);
out:
    if (lock_fd >= 0)
        close(lock_fd);
    free(cache_dir);
    free(cache);
    free(lock);
    free(url);
    free(want);
    return ret;
}

static void env_setf(char ***env, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_setf(char ***env, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *kv = xvasprintf(fmt, ap);
    va_end(ap);
    env_set(env, n, kv);
    free(kv);
}

/* The job's environment: a clean base, the job's env, then the YCI_*
 * variables, which a job cannot override. */
static char **job_env(const struct yci_job *job, const char *ws, size_t *n)
{
    char **env = xcalloc(1, sizeof *env);
    *n = 0;
    const char *path = getenv("PATH"), *home = getenv("HOME"), *lang = getenv("LANG");
    env_setf(&env, n, "PATH=%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    env_setf(&env, n, "HOME=%s", home && *home ? home : ws);
    env_setf(&env, n, "LANG=%s", lang && *lang ? lang : "C.UTF-8");
    env_setf(&env, n, "PWD=%s", ws); /* as the shell would export it */
    env_set(&env, n, "CI=true");
    for (size_t i = 0; i < job->nenv; i++)
        env_set(&env, n, job->env[i]);
    env_set(&env, n, "YCI=true");
    env_setf(&env, n, "YCI_JOB_ID=%" PRId64, job->id);
    env_setf(&env, n, "YCI_BUILD_ID=%" PRId64, job->build_id);
    env_setf(&env, n, "YCI_COMMIT=%s", job->commit ? job->commit : "");
    env_setf(&env, n, "YCI_REF=%s", job->ref ? job->ref : "");
    env_setf(&env, n, "YCI_ATTEMPT=%d", job->attempt);
    env_setf(&env, n, "YCI_JOB_NAME=%s", job->name ? job->name : "");
    env_setf(&env, n, "YCI_WORKSPACE=%s", ws);
    return env;
}

/* Run the shell command cmd (spawn_command()), or argv when cmd is NULL, in
 * ws with env to its end, its output to the spool; *code is its exit code.
 * -1 when it could not start (the result is then set). A command started
 * without the shell that a signal killed is logged as the shell would have
 * logged it. */
static int run_one(struct exec *x, const char *cmd, const char *const *argv, char **env,
                   const char *ws, int64_t deadline, int *code)
{
    struct spawn_opts o = {argv, (const char *const *)env, ws, SPAWN_PIPE};
    struct buf err = BUF_INIT;
    struct spawn *s;
    bool direct = false;
    int r = cmd ? spawn_command(cmd, &o, &s, &direct, &err) : spawn_start(&o, &s, &err);
    if (r < 0) {
        spoolf(x, "yci: %s\n", err.data);
        set_result(x, YCI_ERROR, -1, "%s", err.data);
        buf_release(&err);
        return -1;
    }
    buf_release(&err);
    int status = 0;
    enum pump_end end = pump(x, s, deadline, true, NULL, &status);
    spawn_free(s);
    *code = spawn_exit_code(status);
    char note[96];
    if (direct && end == PUMP_EXITED && spawn_death_note(status, note, sizeof note))
        spoolf(x, "%s", note);
    return (int)end;
}

static int64_t job_deadline(const struct yci_job *job)
{
    return job->timeout > 0 ? time_mono_ms() + (int64_t)job->timeout * 1000 : 0;
}

static void run_commands(struct exec *x, const char *ws)
{
    const struct yci_job *job = x->job;
    size_t nenv;
    char **env = job_env(job, ws, &nenv);
    int64_t deadline = job_deadline(job);
    set_result(x, YCI_PASSED, 0, NULL);

    for (size_t i = 0; i < job->ncommands && !stopping(x); i++) {
        const char *cmd = job->commands[i];
        spoolf(x, "$ %s\n", cmd);
        int code = 0, end = run_one(x, cmd, NULL, env, ws, deadline, &code);
        if (end < 0)
            break;
        if (end == PUMP_TIMED_OUT) {
            spoolf(x, "\nyci: timed out after %d s; the job's processes were killed\n",
                   job->timeout);
            set_result(x, YCI_TIMED_OUT, code, "timed out after %d s", job->timeout);
            break;
        }
        if (end == PUMP_SPOOL_FAILED) {
            set_result(x, YCI_ERROR, -1, "cannot write the runner's spool file: %s",
                       strerror(x->spool_errno));
            break;
        }
        if (end == PUMP_STOPPED)
            break;
        if (code != 0) {
            /* The first line of the command, shortened: a message, not a log. */
            size_t len = strcspn(cmd, "\n");
            bool cut = len > 60 || cmd[len];
            set_result(x, YCI_FAILED, code, "'%.*s%s' exited with %d", (int)(len > 60 ? 60 : len),
                       cmd, cut ? "..." : "", code);
            break;
        }
    }
    env_free(env, nenv);
}

/* What the generator gets as `pull` when the build is not a pull request's:
 * the branch and commit (the claim's "pull" when the server sends one). */
static json_t *plan_pull(const struct exec *x)
{
    const struct yci_job *job = x->job;
    json_t *pull = json_incref(json_object_get(x->claim, "pull"));
    if (!json_is_object(pull)) {
        json_decref(pull);
        const char *ref = job->ref ? job->ref : "";
        pull = json_pack("{s:s?, s:s?, s:s?, s:s?, s:I}", "repo", job->repo, "ref", job->ref,
                         "branch", strncmp(ref, "refs/heads/", 11) == 0 ? ref + 11 : NULL,
                         "commit", job->commit, "build_id", (json_int_t)job->build_id);
    }
    return pull;
}

/* A .yci.py plan job: run the generator (plan.h) and keep the jobs it
 * yielded for the finish. A generator that fails, or runs past the time
 * limit, is the job's error (and so the build's), never a test failure. */
static void run_plan(struct exec *x, const char *ws)
{
    const struct yci_job *job = x->job;
    char *dir = xasprintf("%s/plan/%d", x->workdir, x->slot);
    struct buf err = BUF_INIT;
    json_t *pull = plan_pull(x);
    int r = plan_prepare(dir, pull, &err);
    json_decref(pull);
    if (r < 0) {
        spoolf(x, "yci: %s\n", err.data);
        set_result(x, YCI_ERROR, -1, "%s", err.data);
        goto out;
    }
    bool sandbox = plan_sandbox();
    spoolf(x, "$ test_generator(%" PRId64 ", pull) of .yci.py%s\n", job->build_id,
           sandbox ? " (in a bubblewrap sandbox)" : "");
    char **argv = plan_argv(dir, ws, job->build_id, YCI_MAX_JOBS_PER_BUILD_CAP, sandbox);
    size_t nenv;
    char **env = job_env(job, ws, &nenv);
    env_set(&env, &nenv, "PYTHONDONTWRITEBYTECODE=1");
    int code = 0;
    int end = run_one(x, NULL, (const char *const *)argv, env, ws, job_deadline(job), &code);
    plan_argv_free(argv);
    env_free(env, nenv);
    if (end < 0 || end == PUMP_STOPPED)
        goto out;
    if (end == PUMP_SPOOL_FAILED) {
        set_result(x, YCI_ERROR, -1, "cannot write the runner's spool file: %s",
                       strerror(x->spool_errno));
        goto out;
    }
    if (end == PUMP_TIMED_OUT) {
        spoolf(x, "\nyci: the .yci.py test_generator ran past its time limit of %d s; killed\n",
               job->timeout);
        set_result(x, YCI_ERROR, code, ".yci.py: test_generator ran past its time limit of %d s",
                   job->timeout);
        goto out;
    }
    json_t *jobs = NULL;
    buf_reset(&err);
    if (plan_result(dir, &jobs, &err) < 0) {
        spoolf(x, "yci: %s\n", err.data);
        set_result(x, YCI_ERROR, code, "%s", err.data);
        goto out;
    }
    x->plan_jobs = json_dumps(jobs, JSON_COMPACT);
    size_t n = json_array_size(jobs);
    json_decref(jobs);
    if (!x->plan_jobs) {
        set_result(x, YCI_ERROR, code, ".yci.py: the generated jobs are not valid UTF-8");
        goto out;
    }
    spoolf(x, "yci: .yci.py yielded %zu job%s\n", n, n == 1 ? "" : "s");
    set_result(x, YCI_PASSED, code, NULL);
out:
    remove_tree(dir);
    free(dir);
    buf_release(&err);
}

void exec_run(struct exec *x)
{
    char *ws = xasprintf("%s/ws/%d", x->workdir, x->slot);
    if (make_workspace(x, ws) == 0 && !stopping(x)) {
        if (x->job->plan)
            run_plan(x, ws);
        else
            run_commands(x, ws);
    }
    spool_tail(x);
    bool own = !stopping(x);
    if (!own)
        set_result(x, YCI_ABANDONED, -1,
                   atomic_load(&x->stop) == EXEC_SHUTDOWN ? "the runner stopped" : "cancelled");
    free(ws);
    pthread_mutex_lock(&x->mu);
    x->own_end = own;
    x->done = true;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->mu);
}
