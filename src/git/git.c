/*
 * git — see git.h.
 *
 * Every call but one goes through os/spawn.h's spawn_run(), which captures
 * stdout and stderr together: on success we parse what git printed, on
 * failure the same bytes are git's error message. The exception is
 * upload-pack for a POST, which must read the client's request on its stdin
 * and write a clean protocol stream on stdout while the HTTP server streams it
 * out; spawn.h gives every child /dev/null as stdin and merges stderr into
 * stdout, so that one child is started here with posix_spawn (stdin from the
 * caller's descriptor, stdout a pipe, stderr ours) and reaped by a small
 * detached thread.
 */
#include "git/git.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    /* gc in the foreground: a detached gc would be killed with the fetch. */
    args[n++] = "-c";
    args[n++] = "gc.autoDetach=false";
    args[n++] = "-c";
    args[n++] = "maintenance.autoDetach=false";
    /* ssh must fail rather than ask (GIT_SSH_COMMAND, if set, still wins). */
    args[n++] = "-c";
    args[n++] = "core.sshCommand=ssh -o BatchMode=yes";
    args[n++] = "fetch";
    args[n++] = "--prune";
    args[n++] = "--no-tags";
    args[n++] = "--quiet";
    args[n++] = "--no-write-fetch-head";
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

/* ls-tree -l: the entry at path, as type (GIT_PATH_*), object id and size. */
static int lookup_path(const char *mirror, const char *commit, const char *path, char oid[41],
                       uint64_t *size, struct buf *err)
{
    if (!sha_valid(commit)) {
        buf_setf(err, "bad commit id \"%s\"", commit ? commit : "");
        return -EINVAL;
    }
    if (!path || !*path || path[0] == '/') {
        buf_setf(err, "bad path \"%s\"", path ? path : "");
        return -EINVAL;
    }
    const char *args[] = {"ls-tree", "-l", "-z", "--end-of-options", commit, "--", path, NULL};
    struct buf o = BUF_INIT;
    int rc = run_git(mirror, args, GIT_LOCAL_TIMEOUT, &o, "git ls-tree", err);
    if (rc < 0)
        goto out;
    rc = GIT_PATH_NONE;
    /* "<mode> SP <type> SP <oid> SP+ <size> TAB <path> NUL", one entry per
     * path; the entry whose path is exactly ours is the answer. */
    for (size_t i = 0; i < o.len;) {
        const char *ent = o.data + i;
        size_t elen = strnlen(ent, o.len - i);
        i += elen + 1;
        const char *tab = memchr(ent, '\t', elen);
        if (!tab || strcmp(tab + 1, path) != 0)
            continue;
        char mode[16], type[16], id[64], sz[32];
        char line[160];
        size_t hlen = (size_t)(tab - ent);
        if (hlen >= sizeof(line))
            continue;
        memcpy(line, ent, hlen);
        line[hlen] = '\0';
        if (sscanf(line, "%15s %15s %63s %31s", mode, type, id, sz) != 4 || !sha_valid(id))
            continue;
        if (strcmp(type, "blob") == 0)
            rc = GIT_PATH_BLOB;
        else if (strcmp(type, "tree") == 0)
            rc = GIT_PATH_TREE;
        else
            continue; /* a submodule (commit) */
        memcpy(oid, id, 41);
        int64_t v = 0;
        *size = parse_int64(sz, 0, INT64_MAX, &v) == 0 ? (uint64_t)v : 0;
        break;
    }
out:
    buf_release(&o);
    return rc;
}

int git_path_type(const char *mirror, const char *commit, const char *path, struct buf *err)
{
    char oid[41];
    uint64_t size;
    return lookup_path(mirror, commit, path, oid, &size, err);
}

int git_read_blob(const char *mirror, const char *commit, const char *path, size_t max,
                  struct buf *out, struct buf *err)
{
    char oid[41];
    uint64_t size = 0;
    int rc = lookup_path(mirror, commit, path, oid, &size, err);
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
    const char *args[] = {"cat-file", "blob", oid, NULL};
    struct buf o = BUF_INIT;
    rc = run_git(mirror, args, GIT_LOCAL_TIMEOUT, &o, "git cat-file", err);
    if (rc == 0 && o.len > max) {
        buf_setf(err, "%s at %s is larger than %zu bytes", path, commit, max);
        rc = -EFBIG;
    }
    if (rc == 0)
        buf_add(out, o.data ? o.data : "", o.len);
    buf_release(&o);
    return rc;
}

int git_commit_info(const char *mirror, const char *commit, char **author, char **subject,
                    struct buf *err)
{
    *author = *subject = NULL;
    if (!sha_valid(commit)) {
        buf_setf(err, "not a commit id: %.50s", commit);
        return -EINVAL;
    }
    const char *args[] = {"show", "-s", "--no-show-signature", "--format=%an%x00%s", commit, "--",
                          NULL};
    struct buf o = BUF_INIT;
    int rc = run_git(mirror, args, GIT_LOCAL_TIMEOUT, &o, "git show", err);
    if (rc == 0) {
        const char *text = o.data;
        size_t n = text ? strlen(text) : 0;
        if (!text || n == o.len) { /* no NUL: not what was asked for */
            buf_setf(err, "git show: unexpected output for %s", commit);
            rc = -EIO;
        } else {
            const char *subj = text + n + 1;
            *author = utf8_clean(text, n, 200);
            *subject = utf8_clean(subj, strcspn(subj, "\n"), 500);
        }
    }
    buf_release(&o);
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
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 clears close-on-exec on the copies; everything else is closed. */
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, &attr, (char *const *)argv, (char *const *)env_get());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
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
