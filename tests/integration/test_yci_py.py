""".yci.py, the seed's generator: the server never runs it; the build's first
job is a plan job a runner runs (in bubblewrap when it works), and the jobs the
generator yields come back with its finish, validated like .yci.yml's."""

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import CLEAN_PATH, marker, wait_until

SEED_FIXED = """\
from yci.retry import IncrementalRetry
from yci.run import Bash

def test_generator(build_id, pull):
    ENV_VAR_1 = ['foo', 'bar']
    ENV_VAR_2 = ['x', 'y']

    for x in ENV_VAR_1:
        for y in ENV_VAR_2:
            # there i can skip or implement basic logic
            # I could even iterate over a set of files

            yield IncrementalRetry(Bash('./test.sh', env={'ENV_VAR_1': x, 'ENV_VAR_2': y}),
                retries=3, retry_increment=600)
"""

TEST_SH = "#!/bin/sh\necho \"yci-test ENV_VAR_1=$ENV_VAR_1 ENV_VAR_2=$ENV_VAR_2\"\n"

NAMES = ["./test.sh (foo, x)", "./test.sh (foo, y)", "./test.sh (bar, x)", "./test.sh (bar, y)"]


def commit_py(repo, source, extra=None):
    """Commit .yci.py with an executable test.sh (and extra files)."""
    repo.write({"test.sh": TEST_SH})
    os.chmod(os.path.join(repo.work, "test.sh"), 0o755)
    files = {".yci.py": source}
    files.update(extra or {})
    return repo.commit(files)


def test_seed_example_gives_its_four_tests(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = commit_py(repo, SEED_FIXED)
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=90)
    assert b["status"] == "passed", b
    jobs = server.build(b["id"])["jobs"]
    plan = jobs[0]
    assert plan["name"] == ".yci.py" and plan["kind"] == "plan", plan
    assert plan["status"] == "passed", plan
    assert [j["name"] for j in jobs[1:]] == NAMES
    for j, (x, y) in zip(jobs[1:], [("foo", "x"), ("foo", "y"), ("bar", "x"), ("bar", "y")]):
        assert j["planned"] is True and j["kind"] == "test", j
        assert j["env"] == {"ENV_VAR_1": x, "ENV_VAR_2": y}, j
        assert j["commands"] == ["./test.sh"], j
        assert j["max_retries"] == 3 and j["retry_increment"] == 600, j
        assert j["status"] == "passed", j
        log = server.log(j["id"]).decode()
        assert "yci-test ENV_VAR_1=%s ENV_VAR_2=%s" % (x, y) in log, log
    events = [e["message"] for e in server.build(b["id"])["events"]]
    assert ".yci.py planned 4 jobs" in events, events


# ---------------------------------------------------------------------------
# The seed's example as printed, failures of the generator, the server's rules

# The example exactly as the seed prints it (/work/shared/seeds/000_*, "Test
# configuration"): keyword arguments before the positional one, a SyntaxError
# in Python. With the two imports and the blank line, the Bash(...) line is
# line 14, as in SEED_FIXED.
SEED_AS_PRINTED = """\
from yci.retry import IncrementalRetry
from yci.run import Bash

def test_generator(build_id, pull):
    ENV_VAR_1 = ['foo', 'bar']
    ENV_VAR_2 = ['x', 'y']

    for x in ENV_VAR_1:
        for y in ENV_VAR_2:
            # there i can skip or implement basic logic
            # I could even iterate over a set of files

            yield IncrementalRetry(retries=3, retry_increment=600,
                Bash('./test.sh', env={'ENV_VAR_1': x, 'ENV_VAR_2': y}))
"""

# The same four tests as plain dicts: CMD the command, RETRIES and RETRY_AFTER
# the retries, every other key an environment variable.
SEED_DICTS = """\
def test_generator(build_id, pull):
    for x in ['foo', 'bar']:
        for y in ['x', 'y']:
            yield {'CMD': './test.sh', 'ENV_VAR_1': x, 'ENV_VAR_2': y,
                   'RETRIES': 3, 'RETRY_AFTER': 600}
"""


def job_shape(job):
    return (job["name"], job["commands"], job["env"], job["max_retries"], job["retry_increment"])


def py_build(server, repo, source, name="proj", timeout=60, extra=None):
    """Commit source as .yci.py to repo, watch it, and return the finished
    build of that commit with its jobs and events."""
    sha = commit_py(repo, source, extra)
    server.add_repo(repo.path)
    b = server.wait_commit_build(name, sha, timeout=timeout)
    return server.build(b["id"])


def plan_job(build):
    plans = [j for j in build["jobs"] if j["kind"] == "plan"]
    assert len(plans) == 1 and build["jobs"][0] is plans[0], build["jobs"]
    assert plans[0]["name"] == ".yci.py", plans[0]
    return plans[0]


def error_of(build):
    """The build's error, for a build that ended in error with only its plan
    job (which ended in error with the same message)."""
    assert build["status"] == "error", build
    assert len(build["jobs"]) == 1, build["jobs"]
    plan = plan_job(build)
    assert plan["status"] == "error", plan
    assert plan["error"] == build["error"], (plan, build["error"])
    return build["error"]


def test_seed_example_as_printed_is_a_syntax_error_then_the_fix_builds(ctx, server, runner,
                                                                      gitrepo):
    repo = gitrepo("proj")
    b = py_build(server, repo, SEED_AS_PRINTED)
    err = error_of(b)
    assert re.match(r"^\.yci\.py:14:\d+: SyntaxError: positional argument follows keyword "
                    r"argument$", err), err

    # The CLI and the page show it.
    r = ctx.cli("build", b["id"], server=server)
    assert r.returncode == 0, r
    assert "  error      " + err in r.stdout, r.stdout
    page = server.get("/builds/%s" % b["id"])
    assert page.status == 200, page
    assert html.escape(err) in page.text, page.text[:2000]

    # The plan job's log holds the Python traceback.
    log = server.log(plan_job(b)["id"]).decode("utf-8", "replace")
    assert "Traceback (most recent call last)" in log, log
    assert 'File ".yci.py", line 14' in log, log
    assert "SyntaxError: positional argument follows keyword argument" in log, log

    # The next commit, fixed, builds normally: nothing is stuck.
    good = commit_py(repo, SEED_FIXED)
    gb = server.wait_commit_build("proj", good, timeout=60)
    assert gb["status"] == "passed", gb
    gb = server.build(gb["id"])
    assert gb["error"] is None, gb
    assert [j["name"] for j in gb["jobs"][1:]] == NAMES, gb["jobs"]


def test_plain_dicts_give_the_same_jobs_as_the_seed(ctx, server, gitrepo):
    ctx.runner(server, slots=4).start()
    repo = gitrepo("proj")
    fixed = py_build(server, repo, SEED_FIXED)
    assert fixed["status"] == "passed", fixed
    # The first build is over before the next commit: nothing supersedes it.
    sha = commit_py(repo, SEED_DICTS)
    dicts = server.build(server.wait_commit_build("proj", sha, timeout=60)["id"])
    assert dicts["status"] == "passed", dicts
    assert [job_shape(j) for j in dicts["jobs"][1:]] == [job_shape(j) for j in fixed["jobs"][1:]]
    assert len(dicts["jobs"]) == 5, dicts["jobs"]
    for j in dicts["jobs"][1:]:
        assert j["planned"] is True and j["kind"] == "test" and j["status"] == "passed", j


FAILING_GENERATORS = {
    "raises": ("from yci.run import Bash\n"
               "\n"
               "def test_generator(build_id, pull):\n"
               "    yield Bash('true')\n"
               "    raise ValueError('boom')\n",
               ".yci.py:5: test_generator raised ValueError: boom"),
    "yields-42": ("from yci.run import Bash\n"
                  "\n"
                  "def test_generator(build_id, pull):\n"
                  "    yield Bash('true')\n"
                  "    yield 42\n",
                  ".yci.py: test 2 is 42 (int), not a test: yield yci.run.Bash(...), "
                  "yci.retry.IncrementalRetry(...) or a dict with a CMD key"),
    "dict-without-cmd": ("def test_generator(build_id, pull):\n"
                         "    yield {'RUN': 'true'}\n",
                         ".yci.py: test 1 is a dict without a CMD key"),
    # The generator runs with the driver: it can replace the result file.
    # A FIFO would have blocked the runner's slot for ever; a link would
    # have read another file.
    "result-a-fifo": ("import os, sys\n"
                      "def test_generator(build_id, pull):\n"
                      "    os.mkfifo(sys.argv[3] + '.x')\n"
                      "    os.replace(sys.argv[3] + '.x', sys.argv[3])\n"
                      "    os._exit(0)\n"
                      "    yield None\n",
                      "the .yci.py plan driver left no result (not a regular file)"),
    "result-a-link": ("import os, sys\n"
                      "def test_generator(build_id, pull):\n"
                      "    os.symlink('/etc/hostname', sys.argv[3] + '.x')\n"
                      "    os.replace(sys.argv[3] + '.x', sys.argv[3])\n"
                      "    os._exit(0)\n"
                      "    yield None\n",
                      "the .yci.py plan driver left no result (not a regular file)"),
    "no-generator": ("def tests(build_id, pull):\n"
                     "    yield {'CMD': 'true'}\n",
                     ".yci.py: no test_generator(build_id, pull) function"),
}


@pytest.mark.parametrize("case", sorted(FAILING_GENERATORS))
def test_generator_failure_is_the_build_error(ctx, server, runner, gitrepo, case):
    source, expected = FAILING_GENERATORS[case]
    repo = gitrepo("proj")
    b = py_build(server, repo, source)
    assert error_of(b) == expected
    r = ctx.cli("build", b["id"], server=server)
    assert r.returncode == 0 and "  error      " + expected in r.stdout, r.stdout
    if case == "raises":
        log = server.log(plan_job(b)["id"]).decode("utf-8", "replace")
        assert "Traceback (most recent call last)" in log and "ValueError: boom" in log, log


def test_generator_yielding_nothing_is_a_passed_build(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    b = py_build(server, repo, "def test_generator(build_id, pull):\n"
                               "    print('yci-generator-ran')\n"
                               "    return iter(())\n")
    assert b["status"] == "passed" and b["error"] is None, b
    (plan,) = b["jobs"]
    assert plan["kind"] == "plan" and plan["status"] == "passed", plan
    events = [e["message"] for e in b["events"]]
    assert "no jobs: the .yci.py test_generator yielded nothing" in events, events
    assert "yci-generator-ran" in server.log(plan["id"]).decode("utf-8", "replace")


def test_generator_past_the_plan_timeout_is_killed(ctx, gitrepo):
    server = ctx.server(args=["--plan-timeout", "3"]).start()
    ctx.runner(server).start()
    mark = marker()
    repo = gitrepo("proj")
    sha = commit_py(repo, "import time\n"
                          "\n"
                          "def test_generator(build_id, pull):\n"
                          "    print('yci-sleeping %s', flush=True)\n"
                          "    time.sleep(60)\n"
                          "    yield {'CMD': 'true'}\n" % mark)
    server.add_repo(repo.path)
    start = time.monotonic()
    b = server.wait_commit_build("proj", sha, timeout=20)
    assert time.monotonic() - start < 20
    b = server.build(b["id"])
    assert error_of(b) == ".yci.py: test_generator ran past its time limit of 3 s"
    plan = plan_job(b)
    assert plan["timeout"] == 3, plan
    log = server.log(plan["id"]).decode("utf-8", "replace")
    assert "yci-sleeping " + mark in log, log
    assert "ran past its time limit of 3 s; killed" in log, log
    # The driver (run from the runner's work directory, in this test's) is
    # gone; the teardown checks that nothing else is left either.
    def drivers():
        return [ctx.describe(pid) for pid in ctx.leftovers()
                if "yci_plan.py" in ctx.describe(pid)]
    wait_until(lambda: not drivers(), 10, what="the plan driver to be gone")


def test_server_rules_refuse_a_bad_env_name(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    b = py_build(server, repo, "def test_generator(build_id, pull):\n"
                               "    yield {'CMD': 'true', 'GOOD': '1'}\n"
                               "    yield {'CMD': 'true', 'BAD-NAME': 'x'}\n")
    err = error_of(b)
    assert err.startswith(".yci.py: ") and "'BAD-NAME'" in err, err
    assert "not a valid environment variable name" in err, err
    assert "job 2" in err, err


def test_too_many_generated_jobs_follow_the_server_flag(ctx, gitrepo):
    server = ctx.server(args=["--max-jobs-per-build", "5"]).start()
    ctx.runner(server).start()
    repo = gitrepo("proj")
    b = py_build(server, repo, "def test_generator(build_id, pull):\n"
                               "    for i in range(10):\n"
                               "        yield {'CMD': 'true', 'I': i}\n")
    err = error_of(b)
    assert err.startswith(".yci.py: ") and "too many jobs" in err, err
    assert re.search(r"\blimit of 5\b", err), err


# ---------------------------------------------------------------------------
# What the generator gets; rebuilds; generated jobs that retry

PULL_NAME = """\
from yci.run import Bash

def test_generator(build_id, pull):
    name = 'b%d %s/%s@%s same-id=%s' % (build_id, pull['repo'], pull['branch'],
                                        pull['commit'][:7], pull['build_id'] == build_id)
    yield Bash('echo hi', name=name)
"""


def test_build_id_and_pull_reach_the_generator(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    b = py_build(server, repo, PULL_NAME)
    assert b["status"] == "passed", b
    assert len(b["jobs"]) == 2, b["jobs"]
    job = b["jobs"][1]
    assert isinstance(b["id"], int), b
    assert job["name"] == "b%d proj/main@%s same-id=True" % (b["id"], b["commit"][:7]), job
    assert "hi" in server.log(job["id"]).decode("utf-8", "replace")


def test_rebuild_plans_again(ctx, server, gitrepo):
    first_runner = ctx.runner(server, slots=4).start()
    repo = gitrepo("proj")
    b = py_build(server, repo, SEED_FIXED)
    assert b["status"] == "passed", b
    # No runner while the rebuild is made: it has its plan job and nothing else.
    assert first_runner.stop() in (0, -signal.SIGTERM)
    r = server.post("/api/builds/%s/rebuild" % b["id"])
    assert r.status == 201, r
    nb = server.build(r.json()["id"])
    assert nb["id"] != b["id"] and nb["rebuild_of"] == b["id"], nb
    assert nb["commit"] == b["commit"], nb
    (plan,) = nb["jobs"]
    assert plan["kind"] == "plan" and plan["name"] == ".yci.py", plan
    assert plan["status"] == "queued", plan

    ctx.runner(server, slots=4).start()
    nb = server.build(server.wait_build(nb["id"], timeout=60)["id"])
    assert nb["status"] == "passed", nb
    assert [j["name"] for j in nb["jobs"]] == [j["name"] for j in b["jobs"]]
    assert [j["name"] for j in nb["jobs"][1:]] == NAMES
    assert all(j["planned"] for j in nb["jobs"][1:]), nb["jobs"]
    assert plan_job(nb)["id"] != plan_job(b)["id"]
    assert ".yci.py planned 4 jobs" in [e["message"] for e in nb["events"]], nb["events"]


FLAKY = """\
from yci.retry import IncrementalRetry
from yci.run import Bash

def test_generator(build_id, pull):
    yield IncrementalRetry(Bash('echo "yci-attempt $YCI_ATTEMPT"; test "$YCI_ATTEMPT" != 1',
                                name='flaky'),
                           retries=2, retry_increment=0)
"""


def test_generated_job_that_passes_on_a_retry_is_flaky(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    b = py_build(server, repo, FLAKY)
    assert b["status"] == "passed", b
    job = b["jobs"][1]
    assert job["name"] == "flaky" and job["planned"] is True, job
    assert job["status"] == "passed" and job["flaky"] is True, job
    assert job["retries"] == 1 and job["max_retries"] == 2 and job["attempt"] == 2, job

    r = ctx.cli("build", b["id"], server=server)
    assert r.returncode == 0, r
    line = [ln for ln in r.stdout.splitlines() if " flaky " in ln + " "]
    assert line and "passed (flaky)" in line[0] and "1/2" in line[0], r.stdout
    page = server.get("/builds/%s" % b["id"])
    assert page.status == 200 and "passed (flaky)" in page.text, page.text[:2000]

    first = server.log(job["id"], attempt=1).decode("utf-8", "replace")
    assert "yci-attempt 1" in first, first
    second = server.log(job["id"], attempt=2).decode("utf-8", "replace")
    assert "yci-attempt 2" in second, second


# ---------------------------------------------------------------------------
# The sandbox

SANDBOX_PROBE = """\
import os
from yci.run import Bash

PROBE = %r

def test_generator(build_id, pull):
    try:
        with open(PROBE, 'w') as f:
            f.write('written by .yci.py')
    except OSError as e:
        print('yci-probe refused: %%s' %% e)
        yield Bash('true', name='sandboxed')
    else:
        yield Bash('true', name='not sandboxed')
"""


def bwrap_works():
    if not shutil.which("bwrap", path=CLEAN_PATH):
        return False
    r = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "true"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    return r.returncode == 0


def test_generator_runs_in_a_bubblewrap_sandbox(ctx, server, runner, gitrepo):
    if not bwrap_works():
        pytest.skip("bwrap --ro-bind / / --unshare-all true does not work here")
    if not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable outside the sandbox here")
    probe = "/var/tmp/yci-sandbox-probe-" + uuid.uuid4().hex[:12]
    try:
        repo = gitrepo("proj")
        b = py_build(server, repo, SANDBOX_PROBE % probe)
        assert b["status"] == "passed", b
        assert [j["name"] for j in b["jobs"][1:]] == ["sandboxed"], b["jobs"]
        assert not os.path.exists(probe)
        log = server.log(plan_job(b)["id"]).decode("utf-8", "replace")
        assert "in a bubblewrap sandbox" in log, log
        assert "yci-probe refused" in log, log
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(probe)
