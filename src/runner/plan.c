#include "runner/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "os/spawn.h"
#include "lib/banned.h"

/* How long the bubblewrap probe may take. */
#define PLAN_PROBE_TIMEOUT_MS 10000

int plan_prepare(const char *dir, json_t *pull, struct buf *err)
{
    int r = remove_tree(dir);
    if (r < 0 && r != -ENOENT) {
        buf_setf(err, "cannot clear '%s': %s", dir, strerror(-r));
        return r;
    }
    for (const struct embed_file *f = plan_files; f->name; f++) {
        char *path = xasprintf("%s/%s", dir, f->name);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        r = mkdir_p(path, 0755);
        *slash = '/';
        if (r == 0)
            r = file_write_atomic(path, f->data, f->size, 0644);
        if (r < 0)
            buf_setf(err, "cannot write '%s': %s", path, strerror(-r));
        free(path);
        if (r < 0)
            return r;
    }
    char *text = json_dumps(pull, JSON_COMPACT);
    char *path = xasprintf("%s/pull.json", dir);
    r = text ? file_write_atomic(path, text, strlen(text), 0644) : -EINVAL;
    if (r < 0)
        buf_setf(err, "cannot write '%s': %s", path, strerror(-r));
    free(path);
    free(text);
    return r;
}

static bool sandbox_works;
static pthread_once_t sandbox_once = PTHREAD_ONCE_INIT;

static void sandbox_probe(void)
{
    const char *argv[] = {"bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                          "--unshare-all", "--die-with-parent", "--", "true", NULL};
    struct spawn_opts o = {argv, NULL, "/", SPAWN_NULL};
    struct buf err = BUF_INIT;
    int status = 0;
    int r = spawn_run(&o, PLAN_PROBE_TIMEOUT_MS, NULL, &status, &err);
    sandbox_works = r == 0 && spawn_exit_code(status) == 0;
    if (r == -ENOENT)
        log_info("bubblewrap (bwrap) is not installed: .yci.py plans run without a sandbox");
    else if (!sandbox_works)
        log_warn("bubblewrap (bwrap) does not work here (no user namespaces?): .yci.py plans "
                 "run without a sandbox");
    buf_release(&err);
}

bool plan_sandbox(void)
{
    pthread_once(&sandbox_once, sandbox_probe);
    return sandbox_works;
}

char **plan_argv(const char *dir, const char *ws, int64_t build_id, int max_jobs, bool sandbox)
{
    const char *head[] = {"bwrap",   "--ro-bind",       "/",  "/",           "--dev",
                          "/dev",    "--proc",          "/proc", "--tmpfs",   "/tmp",
                          "--bind",  ws,                ws,   "--bind",      dir,
                          dir,       "--chdir",         ws,   "--unshare-all", "--new-session",
                          "--die-with-parent", "--"};
    size_t nhead = sandbox ? sizeof head / sizeof head[0] : 0;
    char **argv = xcalloc(nhead + 8, sizeof *argv);
    size_t n = 0;
    for (size_t i = 0; i < nhead; i++)
        argv[n++] = xstrdup(head[i]);
    argv[n++] = xstrdup("python3");
    argv[n++] = xstrdup("-I");
    argv[n++] = xasprintf("%s/yci_plan.py", dir);
    argv[n++] = xasprintf("%" PRId64, build_id);
    argv[n++] = xasprintf("%s/pull.json", dir);
    argv[n++] = xasprintf("%s/%s", dir, PLAN_OUT);
    argv[n++] = xasprintf("%d", max_jobs);
    argv[n] = NULL;
    return argv;
}

void plan_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

int plan_result(const char *dir, json_t **jobs, struct buf *err)
{
    /* The sandboxed generator can write in dir: the result must be a plain
     * file there (not a FIFO that would block this open or read for ever, a
     * device, or a link to elsewhere), and is read up to the limit only. */
    char *path = xasprintf("%s/%s", dir, PLAN_OUT);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    free(path);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        buf_setf(err, "the .yci.py plan driver left no result (%s)",
                 fd >= 0 || errno == ELOOP ? "not a regular file" : strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    struct buf text = BUF_INIT;
    ssize_t n = 1;
    int read_errno = 0;
    while (n > 0 && text.len <= YCI_MAX_PLAN_BODY) {
        char chunk[65536];
        n = read(fd, chunk, sizeof chunk);
        if (n > 0)
            buf_add(&text, chunk, (size_t)n);
        else if (n < 0 && errno == EINTR)
            n = 1;
        else if (n < 0)
            read_errno = errno;
    }
    close(fd);
    if (text.len > YCI_MAX_PLAN_BODY) {
        buf_setf(err, ".yci.py: the generated jobs are larger than %d bytes", YCI_MAX_PLAN_BODY);
        buf_release(&text);
        return -EINVAL;
    }
    json_error_t je;
    json_t *out = n < 0 ? NULL
                        : json_loadb(text.data ? text.data : "", text.len,
                                     JSON_REJECT_DUPLICATES, &je);
    if (n < 0)
        snprintf(je.text, sizeof je.text, "%s", strerror(read_errno));
    buf_release(&text);
    if (!json_is_object(out)) {
        buf_setf(err, "the .yci.py plan driver left no result (%s)", je.text);
        json_decref(out);
        return -EINVAL;
    }
    json_t *e = json_object_get(out, "error"), *j = json_object_get(out, "jobs");
    int r = 0;
    if (json_is_string(e)) {
        buf_setf(err, "%.1000s", json_string_value(e));
        r = -EINVAL;
    } else if (!json_is_array(j)) {
        buf_setf(err, "the .yci.py plan driver's result has neither jobs nor an error");
        r = -EINVAL;
    } else {
        *jobs = json_incref(j);
    }
    json_decref(out);
    return r;
}
