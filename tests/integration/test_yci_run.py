"""`yci run [PATH]`: a working tree's pipeline run locally, with no server:
.yci.yml as it is on disk (not committed), the default rule, errors, --job,
timeouts. Each test drives the real binary in a GitRepo's work tree."""

import os
import re
import time

from conftest import PASSING_TESTS, GitRepo, marker, pids_matching, wait_until


def run(ctx, repo, *args, timeout=60):
    return ctx.cli("run", repo.work, *args, timeout=timeout)


def tree(ctx, files):
    """A work tree with one commit, and files written after it (yci run reads
    the working tree: what is not committed counts)."""
    repo = GitRepo(ctx)
    repo.commit({"README": "x\n"}, push=False)
    repo.write(files)
    return repo


def test_matrix_pipeline_passes(ctx):
    # Not committed: yci run reads the working tree.
    repo = tree(ctx, {".yci.yml": (
        "jobs:\n"
        "  lint:\n"
        "    run: echo lint-ran CI=$CI YCI=$YCI\n"
        "  tests:\n"
        "    needs: lint\n"
        "    env: {GREETING: hello}\n"
        "    run:\n"
        "      - echo cell A=$A B=$B $GREETING\n"
        "      - echo second-command-$A$B\n"
        "    matrix:\n"
        "      A: [foo, bar]\n"
        "      B: [x]\n"
        "    labels: {os: plan9}\n")})
    r = run(ctx, repo)
    assert r.returncode == 0, r
    out = r.stdout
    assert "==> job lint" in out and "$ echo lint-ran" in out
    assert "lint-ran CI=true YCI=true" in out
    for a in ("foo", "bar"):
        assert "==> job tests (%s, x)" % a in out
        assert "cell A=%s B=x hello" % a in out
        assert "second-command-%sx" % a in out
    assert out.index("lint-ran") < out.index("cell A=foo")
    assert "ignoring the job's labels" in out
    # The summary table.
    summary = out[out.index("JOB"):]
    assert "tests (foo, x)" in summary and "passed" in summary
    assert "branch main" in out


def test_failing_command_stops_the_job_and_skips_dependents(ctx):
    repo = GitRepo(ctx)
    repo.write({".yci.yml": (
        "jobs:\n"
        "  build:\n"
        "    run: [echo before, 'exit 3', echo never-printed]\n"
        "  deploy:\n"
        "    needs: build\n"
        "    run: echo deploy-ran\n"
        "  other:\n"
        "    run: echo other-ran\n")})
    r = run(ctx, repo)
    assert r.returncode == 1, r
    assert "before" in r.stdout
    assert "never-printed" not in r.stdout.replace("$ echo never-printed", "")
    assert "deploy-ran" not in r.stdout
    assert "other-ran" in r.stdout
    lines = {l.split()[0]: l.split() for l in r.stdout[r.stdout.index("JOB"):].splitlines()}
    assert lines["build"][1:3] == ["failed", "3"], lines
    assert lines["deploy"][1] == "skipped", lines
    assert lines["other"][1] == "passed", lines


def test_retry_runs_again_without_waiting(ctx):
    repo = GitRepo(ctx)
    repo.write({".yci.yml": (
        "jobs:\n"
        "  flaky:\n"
        "    run: 'if [ -e done ]; then echo ok; else touch done; exit 1; fi'\n"
        "    retry: {count: 2, increment: 600}\n")})
    t0 = time.monotonic()
    r = run(ctx, repo)
    assert r.returncode == 0, r
    assert time.monotonic() - t0 < 30
    assert "attempt 2 of 3" in r.stdout and "does not wait" in r.stdout


def test_syntax_error_exits_2_with_line_and_column(ctx):
    repo = GitRepo(ctx)
    repo.write({".yci.yml": "jobs:\n  tests:\n    run: [echo, \n  bad: : :\n"})
    r = run(ctx, repo)
    assert r.returncode == 2, r
    assert ".yci.yml:" in r.stderr
    assert re.search(r"\.yci\.yml:\d+:\d+: ", r.stderr), r.stderr
    repo.write({".yci.yml": "jobs:\n  tests:\n    run: echo\n    tiemout: 5\n"})
    r = run(ctx, repo)
    assert r.returncode == 2, r
    assert ".yci.yml:4:5:" in r.stderr and "timeout" in r.stderr, r.stderr


def test_default_rule_with_tests_folder(ctx):
    repo = GitRepo(ctx)
    repo.write(PASSING_TESTS)
    r = run(ctx, repo)
    assert r.returncode == 0, r
    assert "==> job tests" in r.stdout
    assert "$ python3 -m unittest discover -s tests -v" in r.stdout
    assert "Ran 2 tests" in r.stdout


def test_default_rule_with_makefile(ctx):
    repo = GitRepo(ctx)
    repo.write({"Makefile": "all:\n\t@echo wrong\ncheck:\n\t@echo make-check-ran\n"})
    r = run(ctx, repo)
    assert r.returncode == 0, r
    assert "make-check-ran" in r.stdout and "wrong" not in r.stdout


def test_no_pipeline_exits_2(ctx):
    repo = GitRepo(ctx)
    repo.write({"README": "nothing to run\n"})
    r = run(ctx, repo)
    assert r.returncode == 2, r
    assert "no pipeline found" in r.stderr and "tests/" in r.stderr


def test_yci_py_runs_the_generators_jobs(ctx):
    # The seed's example with Bash(...) before the keywords, and the plain
    # dicts of the published .yci.py: the same jobs.
    repo = tree(ctx, {".yci.py": (
        "from yci.retry import IncrementalRetry\n"
        "from yci.run import Bash\n"
        "\n"
        "def test_generator(build_id, pull):\n"
        "    print('generator saw', build_id, pull['branch'])\n"
        "    for x in ['foo', 'bar']:\n"
        "        yield IncrementalRetry(Bash('echo cell $V', env={'V': x}), retries=1,\n"
        "                               retry_increment=600)\n"
        "    yield {'CMD': 'echo dict $W', 'W': 'w1', 'RETRIES': 0}\n"
        "    yield Bash('[[ $V == b* ]] && echo bash ran it', env={'V': 'bash'})\n")})
    r = run(ctx, repo)
    assert r.returncode == 0, r
    out = r.stdout
    assert "generator saw 0 main" in out, out
    assert "4 jobs from .yci.py" in out, out
    for name, line in (("echo cell $V (foo)", "cell foo"), ("echo cell $V (bar)", "cell bar"),
                       ("echo dict $W (w1)", "dict w1"),
                       ("[[ $V == b* ]] && echo bash ran it (bash)", "bash ran it")):
        assert "==> job " + name in out, out
        assert line in out, out
    # The driver writes nothing into the working tree.
    assert sorted(os.listdir(repo.work)) == [".git", ".yci.py", "README"]


def test_yci_py_errors_exit_2(ctx):
    repo = GitRepo(ctx)
    # The seed's example as printed: a SyntaxError, with the file and line.
    repo.write({".yci.py": (
        "from yci.run import Bash\n"
        "from yci.retry import IncrementalRetry\n"
        "def test_generator(build_id, pull):\n"
        "    yield IncrementalRetry(retries=3, retry_increment=600,\n"
        "        Bash('./test.sh', env={'A': 'b'}))\n")})
    r = run(ctx, repo)
    assert r.returncode == 2, r
    assert re.search(r"^\.yci\.py:5:\d+: SyntaxError: positional argument follows keyword "
                     r"argument$", r.stderr, re.M), r.stderr
    # A job the server would refuse is refused here too, the same way.
    repo.write({".yci.py": (
        "def test_generator(build_id, pull):\n"
        "    yield {'CMD': 'true', 'BAD-NAME': 'x'}\n")})
    r = run(ctx, repo)
    assert r.returncode == 2, r
    assert "not a valid environment variable name" in r.stderr, r.stderr
    # Nothing yielded: nothing to run, not an error.
    repo.write({".yci.py": "def test_generator(build_id, pull):\n    return []\n"})
    r = run(ctx, repo)
    assert r.returncode == 0, r
    assert "no jobs: the .yci.py test_generator yielded nothing" in r.stdout, r.stdout


def test_job_option_selects_jobs(ctx):
    repo = GitRepo(ctx)
    repo.write({".yci.yml": (
        "jobs:\n"
        "  lint:\n"
        "    run: echo lint-ran\n"
        "  tests:\n"
        "    needs: lint\n"
        "    run: echo tests-ran-$V\n"
        "    matrix: {V: [1, 2]}\n"
        "  docs:\n"
        "    run: echo docs-ran\n")})
    r = run(ctx, repo, "--job", "docs")
    assert r.returncode == 0, r
    assert "docs-ran" in r.stdout
    assert "lint-ran" not in r.stdout and "tests-ran" not in r.stdout
    r = run(ctx, repo, "--job", "tests")
    assert r.returncode == 0, r
    assert "tests-ran-1" in r.stdout and "tests-ran-2" in r.stdout
    assert "lint-ran" not in r.stdout
    r = run(ctx, repo, "--job", "nope")
    assert r.returncode == 2, r
    assert "nope" in r.stderr


def test_branch_filters_use_the_current_branch(ctx):
    repo = GitRepo(ctx)
    repo.write({".yci.yml": (
        "jobs:\n"
        "  main-only:\n"
        "    run: echo main-only-ran\n"
        "    branches: {only: [main]}\n"
        "  always:\n"
        "    run: echo always-ran\n")})
    repo.commit(push=False)
    r = run(ctx, repo)
    assert r.returncode == 0 and "main-only-ran" in r.stdout, r
    r = run(ctx, repo, "--branch", "feature")
    assert r.returncode == 0 and "main-only-ran" not in r.stdout, r
    assert "always-ran" in r.stdout


def test_timeout_kills_the_job(ctx):
    repo = GitRepo(ctx)
    mark = marker()
    # The job ignores SIGTERM, so it takes the 5 s grace and then SIGKILL.
    repo.write({".yci.yml": (
        "jobs:\n"
        "  slow:\n"
        "    timeout: 1\n"
        "    run:\n"
        "      - trap '' TERM; sleep 300 # %s\n"
        "      - echo never-reached\n" % mark)})
    t0 = time.monotonic()
    r = run(ctx, repo, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 1, r
    assert 5 <= took < 30, took
    assert "timed out" in r.stderr
    assert "never-reached" not in r.stdout.replace("$ echo never-reached", "")
    assert "timed_out" in r.stdout[r.stdout.index("JOB"):]
    assert not pids_matching(mark)


def test_plain_commands_run_without_a_shell(ctx):
    """As on a runner: a command of plain words starts without a shell (its
    parent is yci's supervisor, PWD is the tree's), one that cannot start gets
    the shell's message and exit code, a death by signal is printed as dash
    prints it, and the rest still goes to the shell."""
    repo = tree(ctx, {
        "parent.sh": '#!/bin/sh\necho "parent=$(cat /proc/$PPID/comm) pwd=$PWD"\n',
        "segv.sh": "#!/bin/sh\nkill -SEGV $$\n",
        ".yci.yml": ("jobs:\n"
                     "  plain:\n"
                     "    run:\n"
                     "      - ./parent.sh\n"
                     "      - ./parent.sh; true\n"
                     "  missing:\n"
                     "    run: no-such-program-yci\n"
                     "  segv:\n"
                     "    run: ./segv.sh\n")})
    os.chmod(os.path.join(repo.work, "parent.sh"), 0o755)
    os.chmod(os.path.join(repo.work, "segv.sh"), 0o755)
    r = run(ctx, repo)
    out = r.stdout
    assert r.returncode == 1, r
    lines = out.splitlines()
    pwd = os.path.realpath(repo.work)
    direct = [x for x in lines if x.startswith("parent=")]
    assert len(direct) == 2 and direct[0] != "parent=sh pwd=" + pwd, direct
    assert direct[0].endswith(" pwd=" + pwd) and direct[1] == "parent=sh pwd=" + pwd, direct
    assert "no-such-program-yci: not found" in out + r.stderr, r
    assert "command exited 127" in out and "command exited 139" in out, out
    assert "Segmentation fault" in out, out
