/* Unit tests for os/spawn: argv, environment, descriptors, exit statuses,
 * exec failures, timeouts and containment of everything a child starts. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "os/spawn.h"
#include "lib/banned.h"

static int run(const char *const *argv, const char *const *envp, int64_t timeout_ms,
               struct buf *out, int *status)
{
    struct spawn_opts o = {argv, envp, NULL, SPAWN_PIPE};
    struct buf err = BUF_INIT;
    int ret = spawn_run(&o, timeout_ms, out, status, &err);
    buf_release(&err);
    return ret;
}

static int sh(const char *script, struct buf *out, int *status)
{
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    return run(argv, NULL, 0, out, status);
}

static void test_capture(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    int status = -1;
    const char *argv[] = {"echo", "hello", "world", NULL}; /* found in PATH */
    assert_int_equal(run(argv, NULL, 0, &out, &status), 0);
    assert_string_equal(out.data, "hello world\n");
    assert_int_equal(spawn_exit_code(status), 0);
    buf_reset(&out);
    /* stdout and stderr share the pipe, in order */
    assert_int_equal(sh("echo one; echo two >&2; echo three", &out, &status), 0);
    assert_string_equal(out.data, "one\ntwo\nthree\n");
    buf_release(&out);
}

static void test_argv_is_not_a_shell(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    int status;
    const char *argv[] = {"printf", "%s|", "a b", "$(id)", ";rm -rf /", NULL};
    assert_int_equal(run(argv, NULL, 0, &out, &status), 0);
    assert_string_equal(out.data, "a b|$(id)|;rm -rf /|");
    buf_release(&out);
}

static void test_exit_codes(void **state)
{
    (void)state;
    int status;
    assert_int_equal(sh("exit 3", NULL, &status), 0);
    assert_int_equal(spawn_exit_code(status), 3);
    assert_int_equal(sh("kill -9 $$", NULL, &status), 0);
    assert_int_equal(spawn_exit_code(status), 128 + 9);
    assert_int_equal(sh("true", NULL, &status), 0);
    assert_int_equal(spawn_exit_code(status), 0);
}

static void test_exec_failure(void **state)
{
    (void)state;
    struct buf err = BUF_INIT;
    struct spawn *s = NULL;
    const char *missing[] = {"yci-no-such-program", NULL};
    struct spawn_opts o = {missing, NULL, NULL, SPAWN_PIPE};
    assert_int_equal(spawn_start(&o, &s, &err), -ENOENT);
    assert_null(s);
    assert_non_null(strstr(err.data, "yci-no-such-program"));

    /* Found, but execve fails: reported through the close-on-exec pipe. */
    char path[] = "/tmp/yci-test-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd,
                           "\x7f"
                           "ELF garbage",
                           12),
                     12);
    close(fd);
    chmod(path, 0755);
    const char *garbage[] = {path, NULL};
    o.argv = garbage;
    assert_int_equal(spawn_start(&o, &s, &err), -ENOEXEC);
    unlink(path);
    const char *noexec[] = {"/etc/passwd", NULL};
    o.argv = noexec;
    assert_int_equal(spawn_start(&o, &s, &err), -EACCES);

    /* A missing working directory. */
    const char *ok[] = {"true", NULL};
    o.argv = ok;
    o.cwd = "/nonexistent/yci";
    assert_int_equal(spawn_start(&o, &s, &err), -ENOENT);
    assert_null(s);
    buf_release(&err);
}

static void test_environment_exact(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    int status;
    const char *argv[] = {"/usr/bin/env", NULL};
    const char *envp[] = {"A=1", "B=two words", NULL};
    assert_int_equal(run(argv, envp, 0, &out, &status), 0);
    assert_string_equal(out.data, "A=1\nB=two words\n");
    buf_reset(&out);
    const char *empty[] = {NULL};
    assert_int_equal(run(argv, empty, 0, &out, &status), 0);
    assert_string_equal(out.data, "");
    buf_release(&out);
}

static void test_stdio_and_descriptors(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    int status;
    /* stdin is /dev/null: cat ends at once. */
    assert_int_equal(sh("cat; echo done", &out, &status), 0);
    assert_string_equal(out.data, "done\n");
    buf_reset(&out);
    /* A descriptor without O_CLOEXEC does not leak into the child. */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);
    /* The shell's own test builtin: no pipe or child of the shell's can
     * add a descriptor while it looks (`ls /proc/$$/fd | ...` raced). */
    char script[160];
    snprintf(script, sizeof script,
             "for f in 0 1 2 3 4 5 6 7 8 9 %d; do [ -e /proc/$$/fd/$f ] && printf '%%s ' $f; "
             "done; true",
             leak);
    assert_int_equal(sh(script, &out, &status), 0);
    assert_string_equal(out.data, "0 1 2 ");
    close(leak);
    buf_release(&out);
}

static void test_signals_reset(void **state)
{
    (void)state;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    void (*prev)(int) = signal(SIGINT, SIG_IGN);
    struct buf out = BUF_INIT;
    int status;
    assert_int_equal(sh("grep -E '^Sig(Blk|Ign)' /proc/self/status", &out, &status), 0);
    assert_string_equal(out.data, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    signal(SIGINT, prev);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    buf_release(&out);
}

static void test_out_fd_and_cwd(void **state)
{
    (void)state;
    char path[] = "/tmp/yci-test-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *argv[] = {"/bin/sh", "-c", "pwd; echo err >&2", NULL};
    struct spawn_opts o = {argv, NULL, "/tmp", fd};
    struct buf err = BUF_INIT, content = BUF_INIT;
    struct spawn *s;
    assert_int_equal(spawn_start(&o, &s, &err), 0);
    assert_int_equal(spawn_out_fd(s), -1);
    int status;
    assert_int_equal(spawn_wait(s, -1, &status), 0);
    spawn_free(s);
    close(fd);
    assert_int_equal(file_read(path, &content), 0);
    assert_string_equal(content.data, "/tmp\nerr\n");
    unlink(path);
    buf_release(&content);
    buf_release(&err);
}

static void test_timeout_kills_term_ignorer(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    int status;
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo started; sleep 30; echo survived",
                          NULL};
    int64_t t0 = time_mono_ms();
    assert_int_equal(run(argv, NULL, 300, &out, &status), -ETIMEDOUT);
    int64_t took = time_mono_ms() - t0;
    assert_true(took < 5000);
    assert_string_equal(out.data, "started\n");
    assert_int_equal(spawn_exit_code(status), 128 + SIGKILL);
    buf_release(&out);
}

/* Read "pid" lines from the child's pipe until n pids are known. */
static void read_pids(struct spawn *s, pid_t *pids, int n)
{
    struct buf b = BUF_INIT;
    int got = 0;
    int64_t deadline = time_mono_ms() + 5000;
    while (got < n && time_mono_ms() < deadline) {
        char c;
        ssize_t r = read(spawn_out_fd(s), &c, 1);
        if (r < 0 && errno == EAGAIN) {
            time_sleep_ms(5);
            continue;
        }
        assert_true(r == 1);
        if (c == '\n') {
            int v;
            assert_int_equal(parse_int(b.data, 1, INT32_MAX, &v), 0);
            pids[got++] = v;
            buf_reset(&b);
        } else {
            buf_addch(&b, c);
        }
    }
    assert_int_equal(got, n);
    buf_release(&b);
}

static void assert_gone(pid_t pid)
{
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* A background child in the group, one in its own session after a double
 * fork, both ignoring TERM: after terminate, neither exists. */
static void test_group_kill_leaves_nothing(void **state)
{
    (void)state;
    const char *script = "trap '' TERM\n"
                         "sleep 1000 & echo $!\n"
                         "( setsid sh -c 'echo $$; exec sleep 1000' & )\n"
                         "sleep 1000\n";
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct spawn_opts o = {argv, NULL, NULL, SPAWN_PIPE};
    struct buf err = BUF_INIT;
    struct spawn *s;
    assert_int_equal(spawn_start(&o, &s, &err), 0);
    pid_t pids[2];
    read_pids(s, pids, 2);
    assert_int_equal(kill(pids[0], 0), 0);
    assert_int_equal(kill(pids[1], 0), 0);
    int status;
    assert_int_equal(spawn_wait(s, 100, &status), -ETIMEDOUT);
    assert_int_equal(spawn_terminate(s, 200, &status), 0);
    assert_int_equal(spawn_exit_code(status), 128 + SIGKILL);
    assert_gone(pids[0]);
    assert_gone(pids[1]);
    assert_gone(spawn_pid(s));
    spawn_free(s);
    buf_release(&err);
}

/* The main process exits normally, leaving a daemon behind: it is killed
 * before the end is reported, and the output pipe reaches end of file. */
static void test_exit_reaps_daemons(void **state)
{
    (void)state;
    const char *script = "( setsid sh -c 'echo $$; exec sleep 1000' & )\n"
                         "sleep 1000 & echo $!\n"
                         "sleep 0.2; exit 7\n";
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct spawn_opts o = {argv, NULL, NULL, SPAWN_PIPE};
    struct buf err = BUF_INIT;
    struct spawn *s;
    assert_int_equal(spawn_start(&o, &s, &err), 0);
    pid_t pids[2];
    read_pids(s, pids, 2);
    int status;
    int64_t t0 = time_mono_ms();
    assert_int_equal(spawn_wait(s, 5000, &status), 0);
    assert_true(time_mono_ms() - t0 < 3000);
    assert_int_equal(spawn_exit_code(status), 7);
    assert_gone(pids[0]);
    assert_gone(pids[1]);
    char c;
    assert_int_equal(read(spawn_out_fd(s), &c, 1), 0); /* EOF: no writer left */
    spawn_free(s);
    buf_release(&err);
}

static void test_free_kills(void **state)
{
    (void)state;
    const char *argv[] = {"/bin/sh", "-c", "echo $$; sleep 1000", NULL};
    struct spawn_opts o = {argv, NULL, NULL, SPAWN_PIPE};
    struct buf err = BUF_INIT;
    struct spawn *s;
    assert_int_equal(spawn_start(&o, &s, &err), 0);
    pid_t pid;
    read_pids(s, &pid, 1);
    assert_int_equal(pid, spawn_pid(s));
    spawn_free(s);
    assert_gone(pid);
    buf_release(&err);
}

static void test_output_cap(void **state)
{
    (void)state;
    struct buf out = BUF_INIT;
    out.max = 1000;
    int status;
    assert_int_equal(sh("head -c 1000000 /dev/zero; exit 2", &out, &status), 0);
    assert_true(out.len <= 1000);
    assert_int_equal(spawn_exit_code(status), 2);
    buf_release(&out);
}

/* The spawn helper's pid: the parent of the supervisor, the child's parent. */
static pid_t ppid_of(pid_t pid)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    char *rp = strrchr(st, ')');
    assert_non_null(rp);
    int ppid = 0;
    assert_int_equal(sscanf(rp + 2, "%*c %d", &ppid), 1);
    return ppid;
}

/* Set while the groups run with the spawn helper. */
static bool with_helper;

/* Children one after another: each gets its own output and status, nothing
 * of the one before (its late signals, its descriptors, its leftovers);
 * with the helper, one supervisor serves them all (no fork per child). */
static void test_children_in_a_row(void **state)
{
    (void)state;
    pid_t first_sup = 0;
    for (int i = 0; i < 6; i++) {
        char script[200];
        snprintf(script, sizeof script,
                 "echo $PPID; for f in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$f ] && echo fd $f; "
                 "done; echo out %d; echo err %d >&2; (sleep 1000 &); exit %d",
                 i, i, i);
        const char *argv[] = {"/bin/sh", "-c", script, NULL};
        struct spawn_opts o = {argv, NULL, NULL, i == 3 ? SPAWN_NULL : SPAWN_PIPE};
        struct buf err = BUF_INIT, out = BUF_INIT;
        struct spawn *s;
        assert_int_equal(spawn_start(&o, &s, &err), 0);
        if (i == 1) {
            /* Signals after the end, before spawn_wait() read it: pending in
             * the supervisor (it blocks them once its child is gone), they
             * must not reach the next child. */
            struct pollfd pfd = {spawn_done_fd(s), POLLIN, 0};
            assert_int_equal(poll(&pfd, 1, 10000), 1);
            assert_int_equal(spawn_signal(s, false), 0);
            assert_int_equal(spawn_signal(s, true), 0);
        }
        int status = -1;
        assert_int_equal(spawn_wait(s, 10000, &status), 0);
        if (spawn_out_fd(s) >= 0) {
            bool eof = false;
            while (!eof) {
                char b[512];
                ssize_t n = read(spawn_out_fd(s), b, sizeof b);
                if (n < 0 && errno == EINTR)
                    continue;
                assert_true(n >= 0); /* the writers are gone: no EAGAIN */
                buf_add(&out, b, (size_t)n);
                eof = n == 0;
            }
        }
        spawn_free(s);
        assert_int_equal(spawn_exit_code(status), i);
        if (i != 3) {
            int ppid = 0, n = 0;
            assert_int_equal(sscanf(out.data, "%d\n%n", &ppid, &n), 1);
            char want[64];
            snprintf(want, sizeof want, "out %d\nerr %d\n", i, i);
            assert_string_equal(out.data + n, want);
            if (!first_sup)
                first_sup = ppid;
            else if (with_helper)
                assert_int_equal(ppid, first_sup);
            else
                assert_int_not_equal(ppid, first_sup);
        }
        buf_release(&out);
        buf_release(&err);
    }
}

/* The supervisor of a spawn started with /bin/sh -c 'echo $PPID; ...'. */
static pid_t sup_of_run(const char *script)
{
    struct buf out = BUF_INIT;
    int status = -1;
    char full[256];
    snprintf(full, sizeof full, "echo $PPID; %s", script);
    assert_int_equal(sh(full, &out, &status), 0);
    assert_int_equal(spawn_exit_code(status), 0);
    int ppid = 0;
    assert_int_equal(sscanf(out.data, "%d", &ppid), 1);
    buf_release(&out);
    return ppid;
}

static bool gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (kill(pid, 0) < 0 && errno == ESRCH)
            return true;
        usleep(10000);
    }
    return false;
}

struct lease_run {
    pid_t first, second, while_busy;
};

static void *lease_thread(void *arg)
{
    struct lease_run *r = arg;
    r->first = sup_of_run("true");
    r->second = sup_of_run("true");
    /* A second child while the first runs: another supervisor. */
    const char *argv[] = {"/bin/sleep", "1000", NULL};
    struct spawn_opts o = {argv, NULL, NULL, SPAWN_NULL};
    struct buf err = BUF_INIT;
    struct spawn *s = NULL;
    if (spawn_start(&o, &s, &err) == 0) {
        r->while_busy = sup_of_run("true");
        spawn_free(s);
    }
    buf_release(&err);
    return NULL;
}

/* With the helper, a thread keeps the supervisor of its first child for the
 * next (its lease); one that is busy is not used; the supervisor exits when
 * the thread ends; and a leased supervisor that was killed is replaced. */
static void test_leases(void **state)
{
    (void)state;
    struct lease_run a = {0, 0, 0}, b = {0, 0, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, lease_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, lease_thread, &b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_true(a.first > 0 && b.first > 0 && a.while_busy > 0 && b.while_busy > 0);
    assert_int_equal(a.second, a.first);
    assert_int_equal(b.second, b.first);
    assert_int_not_equal(a.first, b.first);
    assert_int_not_equal(a.while_busy, a.first);
    assert_int_not_equal(b.while_busy, b.first);
    /* Their threads ended: their leased supervisors went. */
    assert_true(gone_within(a.first, 5000));
    assert_true(gone_within(b.first, 5000));

    /* Here: lease one, kill it while idle; the next spawn still runs. */
    pid_t sup = sup_of_run("true");
    assert_int_equal(sup_of_run("true"), sup);
    assert_int_equal(kill(sup, SIGKILL), 0);
    assert_true(gone_within(sup, 5000));
    pid_t next = sup_of_run("true");
    assert_int_not_equal(next, sup);
    assert_int_equal(sup_of_run("true"), next);
}

/* With the helper: killing it kills the jobs (their supervisors die with
 * it), and spawning goes on without it. */
static void test_helper_death(void **state)
{
    (void)state;
    const char *argv[] = {"/bin/sleep", "1000", NULL};
    struct spawn_opts o = {argv, NULL, NULL, SPAWN_NULL};
    struct buf err = BUF_INIT;
    struct spawn *s = NULL;
    assert_int_equal(spawn_start(&o, &s, &err), 0);
    pid_t sup = ppid_of(spawn_pid(s)), helper = ppid_of(sup);
    assert_int_not_equal(sup, getpid());
    assert_int_equal(ppid_of(helper), getpid());
    assert_int_equal(kill(helper, SIGKILL), 0);
    int status = 0;
    assert_int_equal(spawn_wait(s, 10000, &status), 0);
    assert_int_equal(spawn_exit_code(status), 128 + SIGKILL);
    assert_int_equal(kill(spawn_pid(s), 0), -1); /* the child is gone */
    spawn_free(s);
    /* The next spawn notices the helper is gone and forks itself. */
    struct buf out = BUF_INIT;
    assert_int_equal(sh("echo still here", &out, &status), 0);
    assert_string_equal(out.data, "still here\n");
    buf_release(&out);
    buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture),
        cmocka_unit_test(test_argv_is_not_a_shell),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_exec_failure),
        cmocka_unit_test(test_environment_exact),
        cmocka_unit_test(test_stdio_and_descriptors),
        cmocka_unit_test(test_signals_reset),
        cmocka_unit_test(test_out_fd_and_cwd),
        cmocka_unit_test(test_timeout_kills_term_ignorer),
        cmocka_unit_test(test_group_kill_leaves_nothing),
        cmocka_unit_test(test_exit_reaps_daemons),
        cmocka_unit_test(test_free_kills),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_children_in_a_row),
    };
    int failed = cmocka_run_group_tests_name("direct", tests, NULL, NULL);
    /* Again with the supervisors forked by the spawn helper: a forked copy
     * of this process, then the yci-spawn program. */
    const char *helpers[] = {"", YCI_SPAWN_HELPER};
    const char *names[] = {"helper (forked copy)", "helper (yci-spawn)"};
    const struct CMUnitTest last[] = {cmocka_unit_test(test_leases),
                                      cmocka_unit_test(test_helper_death)};
    for (int i = 0; i < 2; i++) {
        struct buf err = BUF_INIT;
        int r = spawn_helper_start(helpers[i], &err);
        if (r == -ENOSYS) { /* no pidfds here (valgrind): spawning goes on without */
            fprintf(stderr, "%s: skipped: %s\n", names[i], err.data);
            buf_release(&err);
            continue;
        }
        if (r < 0) {
            fprintf(stderr, "cannot start the spawn helper: %s\n", err.data);
            return 1;
        }
        buf_release(&err);
        with_helper = true;
        failed += cmocka_run_group_tests_name(names[i], tests, NULL, NULL);
        failed += cmocka_run_group_tests_name("leases, helper death", last, NULL, NULL);
        spawn_helper_stop();
        with_helper = false;
    }
    return failed;
}
