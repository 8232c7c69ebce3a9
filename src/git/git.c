/*
 * git — see git.h.
 *
 * Every call but two goes through os/spawn.h's spawn_run(), which captures
 * stdout and stderr together: on success we parse what git printed, on
 * failure the same bytes are git's error message. The exceptions talk to git
 * while it runs, which spawn.h (stdin /dev/null, stderr merged into stdout)
 * does not offer, and are started here with posix_spawn:
 *   - upload-pack for a POST reads the client's request on its stdin and
 *     writes a clean protocol stream on stdout while the HTTP server streams
 *     it out (stdin the caller's descriptor, stdout a pipe, stderr ours); a
 *     small detached thread reaps it;
 *   - the object reader (`cat-file --batch-command`) answers question after
 *     question on one socket pair (stdin and stdout), its stderr kept in a
 *     memfd for the message if it fails; git_reader_close() reaps it.
 */
#include "git/git.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/utf8.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "os/spawn.h"
#include "lib/banned.h"

extern char **environ;

/* Bytes of git output kept for a command whose output we parse. */
#define GIT_MAX_OUTPUT (64 * 1024 * 1024)
/* Bytes of a commit object read for its author and subject: a message of
 * megabytes (a repository may hold anything) is not read whole. */
#define GIT_MAX_COMMIT (1024 * 1024)
/* Seconds for the small local commands (ls-tree, cat-file, for-each-ref). */
#define GIT_LOCAL_TIMEOUT 120

/*
 * The environment of every git child, built once: a few variables passed
 * through from ours (PATH to find git, HOME and SSH_AUTH_SOCK for ssh keys,
 * proxies and CA bundles for https), and the settings that make git
 * predictable.
 */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static char **git_env;

static void env_build(void)
{
    static const char *const pass[] = {"PATH",          "HOME",         "TMPDIR",
                                       "SSH_AUTH_SOCK", "GIT_SSH",      "GIT_SSH_COMMAND",
                                       "http_proxy",    "https_proxy",  "HTTP_PROXY",
                                       "HTTPS_PROXY",   "no_proxy",     "NO_PROXY",
                                       "all_proxy",     "ALL_PROXY",    "SSL_CERT_FILE",
                                       "SSL_CERT_DIR",  "GIT_EXEC_PATH"};
    static const char *const fixed[] = {
        "GIT_TERMINAL_PROMPT=0",       /* never ask for a password: fail */
        "GIT_CONFIG_NOSYSTEM=1",       /* no /etc/gitconfig */
        "GIT_CONFIG_GLOBAL=/dev/null", /* no ~/.gitconfig */
        "GIT_LITERAL_PATHSPECS=1",     /* a path is a path, never a pattern */
        "GIT_ASKPASS=/bin/false",      "SSH_ASKPASS=/bin/false", "LC_ALL=C", "LANG=C"};
    size_t n = 0, cap = sizeof(pass) / sizeof(pass[0]) + sizeof(fixed) / sizeof(fixed[0]) + 2;
    git_env = xcalloc(cap, sizeof(char *));
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        const char *v = getenv(pass[i]);
        if (v)
            git_env[n++] = xasprintf("%s=%s", pass[i], v);
    }
    if (!getenv("PATH"))
        git_env[n++] = xstrdup("PATH=/usr/local/bin:/usr/bin:/bin");
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        git_env[n++] = xstrdup(fixed[i]);
    git_env[n] = NULL;
}

static const char *const *env_get(void)
{
    pthread_once(&env_once, env_build);
    return (const char *const *)git_env;
}

/* git's output as a one-line message: lines joined with "; ", at most ~1000
 * characters (the first ones: git says what went wrong first). */
static void set_message(struct buf *err, const char *what, const struct buf *out, int status)
{
    struct buf m = BUF_INIT;
    const char *p = out->data ? out->data : "";
    const char *end = p + out->len;
    while (p < end && m.len < 1000) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p;
        while (s < le && isspace((unsigned char)*s))
            s++;
        const char *e = le;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            if (m.len)
                buf_adds(&m, "; ");
            buf_add(&m, s, (size_t)(e - s));
        }
        p = le + (nl ? 1 : 0);
    }
    if (m.len == 0)
        buf_addf(&m, "exit code %d", spawn_exit_code(status));
    buf_setf(err, "%s failed: %s", what, m.data);
    buf_release(&m);
}

/*
 * Run git with args (after "git" and the common options). With a git_dir, it
 * is passed as --git-dir. Returns 0 when git exited 0 (its output in out,
 * appended), -ETIMEDOUT, or -EIO with git's message in err (what names the
 * operation for the message).
 */
static int run_git_env(const char *git_dir, const char *const *args, const char *const *extra_env,
                       int timeout_s, struct buf *out, const char *what, struct buf *err);

static int run_git(const char *git_dir, const char *const *args, int timeout_s, struct buf *out,
                   const char *what, struct buf *err)
{
    return run_git_env(git_dir, args, NULL, timeout_s, out, what, err);
}

/* run_git with extra_env ("NAME=value", NULL-terminated, may be NULL) added
 * to the environment: how secrets reach git (never on its command line,
 * which every user of the machine can read). */
static int run_git_env(const char *git_dir, const char *const *args, const char *const *extra_env,
                       int timeout_s, struct buf *out, const char *what, struct buf *err)
{
    const char *argv[32];
    size_t n = 0;
    char *dir_arg = NULL;
    argv[n++] = "git";
    argv[n++] = "-c";
    argv[n++] = "protocol.ext.allow=never";
    argv[n++] = "-c";
    argv[n++] = "core.hooksPath=/dev/null"; /* never run a hook */
    if (git_dir) {
        dir_arg = xasprintf("--git-dir=%s", git_dir);
        argv[n++] = dir_arg;
    }
    for (size_t i = 0; args[i] && n < sizeof(argv) / sizeof(argv[0]) - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    const char *const *base = env_get();
    const char **envp = NULL;
    if (extra_env) {
        size_t nb = 0, ne = 0;
        while (base[nb])
            nb++;
        while (extra_env[ne])
            ne++;
        envp = xcalloc(nb + ne + 1, sizeof *envp);
        memcpy(envp, base, nb * sizeof *envp);
        memcpy(envp + nb, extra_env, ne * sizeof *envp);
    }
    struct spawn_opts opts = {.argv = argv, .envp = envp ? envp : base, .cwd = "/",
                              .out_fd = SPAWN_PIPE};
    struct buf o = BUF_INIT;
    o.max = GIT_MAX_OUTPUT;
    int status = 0;
    int rc = spawn_run(&opts, (int64_t)timeout_s * 1000, &o, &status, err);
    free(dir_arg);
    free(envp);
    if (rc == -ETIMEDOUT) {
        buf_setf(err, "%s took longer than %d s and was stopped", what, timeout_s);
        goto out;
    }
    if (rc < 0) {
        /* spawn_run set err: git could not start (not installed?) */
        struct buf m = BUF_INIT;
        buf_addf(&m, "%s failed: %s", what, err->len ? err->data : strerror(-rc));
        buf_reset(err);
        buf_add(err, m.data, m.len);
        buf_release(&m);
        goto out;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        set_message(err, what, &o, status);
        rc = -EIO;
        goto out;
    }
    if (out)
        buf_add(out, o.data ? o.data : "", o.len);
out:
    buf_release(&o);
    return rc;
}

int git_mirror_init(const char *mirror, struct buf *err)
{
    char *head = xasprintf("%s/HEAD", mirror);
    struct stat st;
    int exists = stat(head, &st) == 0;
    free(head);
    if (exists)
        return 0;
    const char *args[] = {"init", "--bare", "--quiet", "--", mirror, NULL};
    return run_git(NULL, args, GIT_LOCAL_TIMEOUT, NULL, "git init", err);
}

int git_mirror_fetch(const char *mirror, const char *url, const char *const *refspecs,
                     size_t nrefspecs, const char *http_header, struct buf *err)
{
    if (!url || !*url || url[0] == '-') {
        buf_setf(err, "bad repository url \"%s\"", url ? url : "");
        return -EINVAL;
    }
    const char *args[32];
    size_t n = 0;
    /* ssh must fail rather than ask (GIT_SSH_COMMAND, if set, still wins). */
    args[n++] = "-c";
    args[n++] = "core.sshCommand=ssh -o BatchMode=yes";
    args[n++] = "fetch";
    args[n++] = "--prune";
    args[n++] = "--no-tags";
    args[n++] = "--quiet";
    args[n++] = "--no-write-fetch-head";
    args[n++] = "--no-auto-maintenance"; /* git_mirror_maintain(), later */
    args[n++] = "--end-of-options";
    args[n++] = url;
    for (size_t i = 0; i < nrefspecs && n < sizeof(args) / sizeof(args[0]) - 1; i++)
        args[n++] = refspecs[i];
    args[n] = NULL;
    bool http = !strncmp(url, "https://", 8) || !strncmp(url, "http://", 7);
    if (!http_header || !http)
        return run_git(mirror, args, GIT_FETCH_TIMEOUT, NULL, "git fetch", err);
    char *value = xasprintf("GIT_CONFIG_VALUE_0=%s", http_header);
    const char *env[] = {"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", value, NULL};
    int rc = run_git_env(mirror, args, env, GIT_FETCH_TIMEOUT, NULL, "git fetch", err);
    free(value);
    return rc;
}

int git_mirror_maintain(const char *mirror, struct buf *err)
{
    /* In the foreground: a detached gc would outlive its supervisor. */
    const char *args[] = {"-c",          "gc.autoDetach=false", "-c",      "maintenance.autoDetach=false",
                          "maintenance", "run",                 "--auto",  "--quiet",
                          NULL};
    return run_git(mirror, args, GIT_FETCH_TIMEOUT, NULL, "git maintenance", err);
}

int git_list_refs(const char *mirror, const char *prefix, json_t **out, struct buf *err)
{
    const char *args[] = {"for-each-ref", "--format=%(objectname) %(refname)", "--", prefix, NULL};
    struct buf o = BUF_INIT;
    int rc = run_git(mirror, args, GIT_LOCAL_TIMEOUT, &o, "git for-each-ref", err);
    if (rc < 0) {
        buf_release(&o);
        return rc;
    }
    json_t *refs = json_object();
    char *save = NULL;
    for (char *line = strtok_r(o.data ? o.data : (char[]){""}, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        /* "<40 hex> <refname>"; anything else (a stray warning) is skipped */
        if (strlen(line) < 42 || line[40] != ' ')
            continue;
        line[40] = '\0';
        if (!sha_valid(line))
            continue;
        json_object_set_new(refs, line + 41, json_string(line));
    }
    buf_release(&o);
    *out = refs;
    return 0;
}

int git_mirror_fix_head(const char *mirror, json_t *heads, struct buf *err)
{
    if (json_object_size(heads) == 0)
        return 0;
    /* Read HEAD's file rather than spawn git: this runs on every poll. */
    char *path = xasprintf("%s/HEAD", mirror);
    struct buf b = BUF_INIT;
    int rc = file_read(path, &b);
    free(path);
    if (rc == 0 && b.len > 5 && strncmp(b.data, "ref: ", 5) == 0) {
        while (b.len > 0 && isspace((unsigned char)b.data[b.len - 1]))
            b.data[--b.len] = '\0';
        if (json_object_get(heads, b.data + 5)) {
            buf_release(&b);
            return 0;
        }
    }
    buf_release(&b);
    const char *target = NULL;
    if (json_object_get(heads, "refs/heads/main"))
        target = "refs/heads/main";
    else if (json_object_get(heads, "refs/heads/master"))
        target = "refs/heads/master";
    else {
        const char *key;
        json_t *v;
        json_object_foreach(heads, key, v)
        {
            if (strncmp(key, "refs/heads/", 11) == 0 && (!target || strcmp(key, target) < 0))
                target = key;
        }
    }
    if (!target)
        return 0;
    const char *args[] = {"symbolic-ref", "HEAD", target, NULL};
    return run_git(mirror, args, GIT_LOCAL_TIMEOUT, NULL, "git symbolic-ref", err);
}

/*
 * posix_spawnp git with argv (its whole command line): stdin from in_fd,
 * stdout to out_fd, stderr to err_fd (-1: ours), no other descriptor, every
 * signal default and unblocked, cwd "/" (the paths given git are absolute).
 * 0 and *pid, or a positive errno.
 */
static int spawn_git_io(const char *const *argv, int in_fd, int out_fd, int err_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 clears close-on-exec on the copies; everything else is closed. */
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawn_file_actions_addchdir_np(&fa, "/");
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(pid, "git", &fa, &attr, (char *const *)argv, (char *const *)env_get());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

/* ---- the object reader: one `git cat-file --batch-command` ------------- */

struct git_reader {
    char *mirror;
    pid_t pid;   /* 0: not started yet */
    int fd;      /* our end of the socket pair: questions out, answers in */
    int err_fd;  /* a memfd holding git's stderr */
    bool broken; /* git died or stalled: every call fails */
    struct buf in;
    size_t pos; /* in.data[pos..] is read and not yet used */
    int64_t deadline;
};

int git_reader_open(const char *mirror, struct git_reader **out, struct buf *err)
{
    if (!mirror || !*mirror) {
        buf_setf(err, "no repository");
        return -EINVAL;
    }
    struct git_reader *r = xcalloc(1, sizeof *r);
    r->mirror = xstrdup(mirror);
    r->fd = r->err_fd = -1;
    *out = r;
    return 0;
}

static void reader_stop(struct git_reader *r, bool kill_it)
{
    if (r->fd >= 0)
        close(r->fd); /* end of its input: cat-file exits */
    r->fd = -1;
    if (r->pid > 0) {
        if (kill_it)
            kill(r->pid, SIGKILL);
        /* It exits at once on end of input; a git stuck in the kernel gets
         * two seconds before it is killed. */
        int64_t until = time_mono_ms() + 2000;
        pid_t p;
        while ((p = waitpid(r->pid, NULL, WNOHANG)) == 0 && time_mono_ms() < until)
            usleep(1000);
        if (p == 0) {
            kill(r->pid, SIGKILL);
            while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    r->pid = 0;
    if (r->err_fd >= 0)
        close(r->err_fd);
    r->err_fd = -1;
}

void git_reader_close(struct git_reader *r)
{
    if (!r)
        return;
    reader_stop(r, false);
    buf_release(&r->in);
    free(r->mirror);
    free(r);
}

/* Mark r broken with a message: git's stderr when it said something. */
static int reader_fail(struct git_reader *r, const char *why, struct buf *err)
{
    char msg[1000];
    struct stat st;
    off_t from = r->err_fd >= 0 && fstat(r->err_fd, &st) == 0 && st.st_size > 1000
                     ? st.st_size - 1000
                     : 0; /* its last words */
    ssize_t n = r->err_fd >= 0 ? pread(r->err_fd, msg, sizeof msg, from) : -1;
    struct buf said = BUF_INIT;
    if (n > 0)
        buf_add(&said, msg, (size_t)n);
    else
        buf_adds(&said, why);
    char *what = xasprintf("git cat-file in %s (%s)", r->mirror, why);
    set_message(err, what, &said, 0);
    free(what);
    buf_release(&said);
    reader_stop(r, true);
    r->broken = true;
    return -EIO;
}

static int reader_start(struct git_reader *r, struct buf *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        buf_setf(err, "socketpair: %s", strerror(errno));
        return -errno;
    }
    r->err_fd = memfd_create("yci-git-stderr", MFD_CLOEXEC);
    if (r->err_fd < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        buf_setf(err, "memfd_create: %s", strerror(e));
        return -e;
    }
    char *dir_arg = xasprintf("--git-dir=%s", r->mirror);
    const char *argv[] = {"git", "-c", "protocol.ext.allow=never", "-c",
                          "core.hooksPath=/dev/null", dir_arg, "cat-file", "--batch-command",
                          NULL};
    pid_t pid;
    int rc = spawn_git_io(argv, sv[1], sv[1], r->err_fd, &pid);
    free(dir_arg);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        buf_setf(err, "cannot start git cat-file: %s", strerror(rc));
        return -rc;
    }
    r->pid = pid;
    r->fd = sv[0];
    return 0;
}

/* Ask one question ("info X" or "contents X"), starting git if need be. */
static int reader_ask(struct git_reader *r, const char *cmd, const char *object, struct buf *err)
{
    if (r->broken) {
        buf_setf(err, "git cat-file in %s failed earlier", r->mirror);
        return -EIO;
    }
    if (!r->pid) {
        int rc = reader_start(r, err);
        if (rc < 0) {
            r->broken = true;
            return rc;
        }
    }
    r->deadline = time_mono_ms() + (int64_t)GIT_LOCAL_TIMEOUT * 1000;
    char *line = xasprintf("%s %s\n", cmd, object);
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t n = send(r->fd, line + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(line);
            return reader_fail(r, strerror(errno), err);
        }
        off += (size_t)n;
    }
    free(line);
    return 0;
}

/* Have at least want unread bytes in r->in (or fail: git ended or stalled). */
static int reader_fill(struct git_reader *r, size_t want, struct buf *err)
{
    if (r->pos > 0 && r->pos == r->in.len) {
        buf_reset(&r->in);
        r->pos = 0;
    }
    while (r->in.len - r->pos < want) {
        int64_t left = r->deadline - time_mono_ms();
        if (left <= 0)
            return reader_fail(r, "no answer in time", err);
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return reader_fail(r, strerror(errno), err);
        if (pr == 0)
            continue;
        char chunk[65536];
        ssize_t n = read(r->fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return reader_fail(r, n == 0 ? "it ended" : strerror(errno), err);
        buf_add(&r->in, chunk, (size_t)n);
    }
    return 0;
}

/* The next answer line, without its '\n', NUL-terminated in r->in. */
static int reader_line(struct git_reader *r, char **line, struct buf *err)
{
    for (;;) {
        char *start = r->in.data ? r->in.data + r->pos : NULL;
        char *nl = start ? memchr(start, '\n', r->in.len - r->pos) : NULL;
        if (nl) {
            *nl = '\0';
            *line = start;
            r->pos += (size_t)(nl - start) + 1;
            return 0;
        }
        if (r->in.len - r->pos > 4096)
            return reader_fail(r, "an answer line too long", err);
        int rc = reader_fill(r, r->in.len - r->pos + 1, err);
        if (rc < 0)
            return rc;
    }
}

/*
 * Ask "cmd object" and read the answer's first line: "<oid> <type> <size>".
 * 1 with those; 0 when the repository has no such object (or the name is
 * ambiguous); or -EIO.
 */
static int reader_answer(struct git_reader *r, const char *cmd, const char *object, char oid[41],
                         char type[16], uint64_t *size, struct buf *err)
{
    int rc = reader_ask(r, cmd, object, err);
    char *line = NULL;
    if (rc == 0)
        rc = reader_line(r, &line, err);
    if (rc < 0)
        return rc;
    size_t n = strlen(line);
    if ((n > 8 && strcmp(line + n - 8, " missing") == 0) ||
        (n > 10 && strcmp(line + n - 10, " ambiguous") == 0))
        return 0;
    char id[64], sz[32];
    int64_t v = 0;
    if (sscanf(line, "%63s %15s %31s", id, type, sz) != 3 || !sha_valid(id) ||
        parse_int64(sz, 0, INT64_MAX, &v) < 0)
        return reader_fail(r, "an answer it should not give", err);
    memcpy(oid, id, 41);
    *size = (uint64_t)v;
    return 1;
}

/* The commit's object id and size, checked to be a commit: 0, -ENOENT when
 * the repository has no such commit, or -EIO. */
static int reader_commit(struct git_reader *r, const char *commit, char oid[41], uint64_t *size,
                         struct buf *err)
{
    char type[16];
    int rc = reader_answer(r, "info", commit, oid, type, size, err);
    if (rc < 0)
        return rc;
    if (rc == 0 || strcmp(type, "commit") != 0) {
        buf_setf(err, "no commit %s in %s", commit, r->mirror);
        return -ENOENT;
    }
    return 0;
}

/* "contents oid", which info said is a type of size bytes: appended to out. */
static int reader_contents(struct git_reader *r, const char *oid, uint64_t size, struct buf *out,
                           struct buf *err)
{
    char id[41], type[16];
    uint64_t got = 0;
    int rc = reader_answer(r, "contents", oid, id, type, &got, err);
    if (rc < 0)
        return rc;
    if (rc == 0 || strcmp(id, oid) != 0 || got != size)
        return reader_fail(r, "an answer it should not give", err);
    rc = reader_fill(r, size + 1, err); /* the object and its '\n' */
    if (rc < 0)
        return rc;
    if (r->in.data[r->pos + size] != '\n')
        return reader_fail(r, "an answer it should not give", err);
    buf_add(out, r->in.data + r->pos, size);
    r->pos += size + 1;
    return 0;
}

/* commit:path, checked: what is there (GIT_PATH_*), with its id and size. */
static int lookup_path(struct git_reader *r, const char *commit, const char *path, char oid[41],
                       uint64_t *size, struct buf *err)
{
    if (!sha_valid(commit)) {
        buf_setf(err, "bad commit id \"%s\"", commit ? commit : "");
        return -EINVAL;
    }
    if (!path || !*path || path[0] == '/' || strpbrk(path, "\n\r")) {
        buf_setf(err, "bad path \"%s\"", path ? path : "");
        return -EINVAL;
    }
    char type[16];
    char *spec = xasprintf("%s:%s", commit, path);
    int rc = reader_answer(r, "info", spec, oid, type, size, err);
    free(spec);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        /* Nothing there; or no such commit at all, which is an error. */
        char cid[41];
        uint64_t csize;
        rc = reader_commit(r, commit, cid, &csize, err);
        return rc == 0 ? GIT_PATH_NONE : rc == -ENOENT ? -EIO : rc;
    }
    if (strcmp(type, "blob") == 0)
        return GIT_PATH_BLOB;
    if (strcmp(type, "tree") == 0)
        return GIT_PATH_TREE;
    return GIT_PATH_NONE;
}

int git_path_type(struct git_reader *r, const char *commit, const char *path, struct buf *err)
{
    char oid[41];
    uint64_t size;
    return lookup_path(r, commit, path, oid, &size, err);
}

int git_read_blob(struct git_reader *r, const char *commit, const char *path, size_t max,
                  struct buf *out, struct buf *err)
{
    char oid[41];
    uint64_t size = 0;
    int rc = lookup_path(r, commit, path, oid, &size, err);
    if (rc < 0)
        return rc;
    if (rc != GIT_PATH_BLOB) {
        buf_setf(err, "no file %s at %s", path, commit);
        return -ENOENT;
    }
    if (size > max) {
        buf_setf(err, "%s at %s is larger than %zu bytes", path, commit, max);
        return -EFBIG;
    }
    return reader_contents(r, oid, size, out, err);
}

/* text (len bytes) from the commit's encoding to UTF-8, as git show does;
 * NULL when it cannot be converted. */
static char *to_utf8(const char *text, size_t len, const char *encoding)
{
    iconv_t cd = iconv_open("UTF-8", encoding);
    if (cd == (iconv_t)-1)
        return NULL;
    size_t cap = len * 4 + 1, left = cap - 1;
    char *outbuf = xmalloc(cap), *o = outbuf, *in = (char *)text;
    size_t inleft = len;
    size_t rc = iconv(cd, &in, &inleft, &o, &left);
    int e = errno;
    iconv_close(cd);
    if (rc == (size_t)-1 && e != EINVAL) { /* EINVAL: a character cut at the end */
        free(outbuf);
        return NULL;
    }
    *o = '\0';
    return outbuf;
}

/* s[0..len) cleaned for the pages: converted from encoding (may be NULL:
 * UTF-8), bad bytes as '?', at most max bytes. */
static char *clean_text(const char *s, size_t len, const char *encoding, size_t max)
{
    char *conv = encoding ? to_utf8(s, len, encoding) : NULL;
    char *out = conv ? utf8_clean(conv, strlen(conv), max) : utf8_clean(s, len, max);
    free(conv);
    return out;
}

/*
 * The author's name and the subject of a raw commit object, as git show's
 * %an and %s give them: the name before the '<' of the author header; the
 * message's first paragraph, its lines joined by spaces.
 */
static void parse_commit(const char *data, size_t len, char **author, char **subject)
{
    const char *p = data, *end = data + len;
    const char *an = NULL, *an_end = NULL;
    char encoding[64] = "";
    while (p < end) { /* headers, up to the first empty line */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le == p) {
            p = le + 1;
            break;
        }
        if (le - p > 7 && memcmp(p, "author ", 7) == 0) {
            an = p + 7;
            const char *lt = memchr(an, '<', (size_t)(le - an));
            an_end = lt ? lt : le;
            while (an_end > an && an_end[-1] == ' ')
                an_end--;
        } else if (le - p > 9 && memcmp(p, "encoding ", 9) == 0 && le - p - 9 < 64) {
            memcpy(encoding, p + 9, (size_t)(le - p - 9));
            encoding[le - p - 9] = '\0';
        }
        p = nl ? nl + 1 : end;
    }
    const char *enc = *encoding && strcasecmp(encoding, "UTF-8") != 0 &&
                              strcasecmp(encoding, "UTF8") != 0
                          ? encoding
                          : NULL;
    struct buf subj = BUF_INIT;
    bool started = false;
    while (p < end && subj.len < 4096) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *e = le;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        bool blank = true;
        for (const char *c = p; c < e && blank; c++)
            blank = isspace((unsigned char)*c);
        if (blank && started)
            break;
        if (!blank) {
            if (started)
                buf_addch(&subj, ' ');
            size_t n = (size_t)(e - p);
            buf_add(&subj, p, n < 4096 ? n : 4096); /* more is cut anyway */
            started = true;
        }
        p = nl ? nl + 1 : end;
    }
    size_t alen = an ? (size_t)(an_end - an) : 0;
    *author = clean_text(an ? an : "", alen < 1024 ? alen : 1024, enc, 200);
    *subject = clean_text(subj.data ? subj.data : "", subj.len, enc, 500);
    buf_release(&subj);
}

int git_commit_info(struct git_reader *r, const char *commit, char **author, char **subject,
                    struct buf *err)
{
    *author = *subject = NULL;
    if (!sha_valid(commit)) {
        buf_setf(err, "not a commit id: %.50s", commit);
        return -EINVAL;
    }
    char oid[41];
    uint64_t size = 0;
    int rc = reader_commit(r, commit, oid, &size, err);
    if (rc < 0)
        return rc;
    if (size > GIT_MAX_COMMIT) {
        buf_setf(err, "commit %s is larger than %d bytes", commit, GIT_MAX_COMMIT);
        return -EFBIG;
    }
    struct buf raw = BUF_INIT;
    rc = reader_contents(r, oid, size, &raw, err);
    if (rc == 0)
        parse_commit(raw.data ? raw.data : "", raw.len, author, subject);
    buf_release(&raw);
    return rc;
}

int git_upload_pack_advertise(const char *mirror, struct buf *out, struct buf *err)
{
    const char *args[] = {"-c",
                          "uploadpack.allowAnySHA1InWant=true",
                          "upload-pack",
                          "--stateless-rpc",
                          "--advertise-refs",
                          "--strict",
                          mirror,
                          NULL};
    struct buf o = BUF_INIT;
    int rc = run_git(NULL, args, GIT_LOCAL_TIMEOUT, &o, "git upload-pack", err);
    if (rc == 0) {
        /* pkt-line "# service=git-upload-pack\n" (4 + 26 = 0x1e bytes), flush */
        buf_adds(out, "001e# service=git-upload-pack\n0000");
        buf_add(out, o.data ? o.data : "", o.len);
    }
    buf_release(&o);
    return rc;
}

static void *reap_thread(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return NULL;
}

int git_upload_pack_start(const char *mirror, int in_fd, int *out_fd, struct buf *err)
{
    const char *argv[] = {"git",
                          "-c",
                          "protocol.ext.allow=never",
                          "-c",
                          "core.hooksPath=/dev/null",
                          "-c",
                          "uploadpack.allowAnySHA1InWant=true",
                          "upload-pack",
                          "--stateless-rpc",
                          "--strict",
                          "--timeout=600",
                          mirror,
                          NULL};
    int pfd[2] = {-1, -1};
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        buf_setf(err, "pipe: %s", strerror(errno));
        return -errno;
    }
    pid_t pid;
    int rc = spawn_git_io(argv, in_fd, pfd[1], -1, &pid);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        buf_setf(err, "cannot start git upload-pack: %s", strerror(rc));
        return -rc;
    }
    pthread_t t;
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    /* A small stack is plenty for waitpid(), but static TLS of the linked
     * libraries may not fit in one: fall back to the default size. */
    pthread_attr_setstacksize(&ta, 256 * 1024);
    rc = pthread_create(&t, &ta, reap_thread, (void *)(intptr_t)pid);
    if (rc == EINVAL) {
        pthread_attr_destroy(&ta);
        pthread_attr_init(&ta);
        pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &ta, reap_thread, (void *)(intptr_t)pid);
    }
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        /* Cannot reap in the background: end it now rather than leave a zombie. */
        close(pfd[0]);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        buf_setf(err, "cannot start a thread: %s", strerror(rc));
        return -rc;
    }
    *out_fd = pfd[0];
    return 0;
}
