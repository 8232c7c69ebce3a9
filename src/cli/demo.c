#include "cli/demo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"
#include "lib/xalloc.h"
#include "os/spawn.h"
#include "lib/banned.h"

#define GIT_TIMEOUT_MS 60000

static const char readme[] =
    "# demo\n"
    "\n"
    "A demo repository made by `yci up`. yci runs what it finds at each commit:\n"
    "here, a `tests/` folder, so every build runs\n"
    "\n"
    "    python3 -m unittest discover -s tests -v\n"
    "\n"
    "Change a test (make one fail), commit, and watch the next build:\n"
    "\n"
    "    yci repo poll demo      # look now instead of at the next poll\n"
    "    yci builds --repo demo\n"
    "    yci logs -f JOB\n";

static const char test_demo[] = "import unittest\n"
                                "\n"
                                "\n"
                                "class TestArithmetic(unittest.TestCase):\n"
                                "    def test_addition(self):\n"
                                "        self.assertEqual(1 + 1, 2)\n"
                                "\n"
                                "    def test_multiplication(self):\n"
                                "        self.assertEqual(6 * 7, 42)\n"
                                "\n"
                                "\n"
                                "class TestStrings(unittest.TestCase):\n"
                                "    def test_upper(self):\n"
                                "        self.assertEqual('yci'.upper(), 'YCI')\n"
                                "\n"
                                "    def test_split(self):\n"
                                "        self.assertEqual('a,b,c'.split(','), ['a', 'b', 'c'])\n"
                                "\n"
                                "\n"
                                "if __name__ == '__main__':\n"
                                "    unittest.main()\n";

/* Run git with argv in dir; 0, or -errno / -EIO with git's output in err. */
static int git(const char *dir, const char *const *argv, struct buf *err)
{
    struct spawn_opts opts = {argv, NULL, dir, SPAWN_NULL};
    struct buf out = BUF_INIT;
    int status = 0;
    out.max = 64 * 1024;
    int r = spawn_run(&opts, GIT_TIMEOUT_MS, &out, &status, err);
    if (r == 0 && spawn_exit_code(status) != 0) {
        while (out.len && (out.data[out.len - 1] == '\n' || out.data[out.len - 1] == ' '))
            out.data[--out.len] = '\0';
        buf_setf(err, "'git %s' failed (exit %d): %s", argv[1], spawn_exit_code(status),
                 out.len ? out.data : "no output");
        r = -EIO;
    } else if (r < 0 && r != -ETIMEDOUT) {
        /* err says why git could not start */
    } else if (r == -ETIMEDOUT) {
        buf_setf(err, "'git %s' timed out", argv[1]);
    }
    buf_release(&out);
    return r;
}

static int write_file(const char *dir, const char *name, const char *text, struct buf *err)
{
    char *path = xasprintf("%s/%s", dir, name);
    int r = file_write_atomic(path, text, strlen(text), 0644);
    if (r < 0)
        buf_setf(err, "cannot write '%s': %s", path, strerror(-r));
    free(path);
    return r;
}

int cli_demo_create(const char *dir, struct buf *err)
{
    char *gitdir = xasprintf("%s/.git", dir);
    char *tests = xasprintf("%s/tests", dir);
    struct stat st;
    int r = 0;
    if (stat(gitdir, &st) == 0) {
        /* Made before: keep it, unless a first attempt stopped short of the commit. */
        const char *head[] = {"git", "rev-parse", "-q", "--verify", "HEAD", NULL};
        struct buf ignored = BUF_INIT;
        r = git(dir, head, &ignored);
        buf_release(&ignored);
        if (r == 0)
            goto out;
    }
    if ((r = mkdir_p(tests, 0755)) < 0) {
        buf_setf(err, "cannot create '%s': %s", tests, strerror(-r));
        goto out;
    }
    if ((r = write_file(dir, "README.md", readme, err)) < 0 ||
        (r = write_file(dir, "tests/test_demo.py", test_demo, err)) < 0)
        goto out;

    const char *init[] = {"git", "init", "-q", "-b", "main", ".", NULL};
    const char *add[] = {"git", "add", "README.md", "tests", NULL};
    const char *commit[] = {"git",
                            "-c",
                            "user.name=yci",
                            "-c",
                            "user.email=yci@localhost",
                            "-c",
                            "commit.gpgsign=false",
                            "commit",
                            "-q",
                            "-m",
                            "Demo: a tests/ folder of unittest tests",
                            NULL};
    if ((r = git(dir, init, err)) < 0 || (r = git(dir, add, err)) < 0 ||
        (r = git(dir, commit, err)) < 0)
        goto out;
out:
    free(gitdir);
    free(tests);
    return r;
}
