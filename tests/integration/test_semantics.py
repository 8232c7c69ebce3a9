""".yci.yml semantics end to end: retry (IncrementalRetry; a job passing on a
retry is passed and flaky, every attempt's log kept), needs (a job waits for
the jobs it needs, and is cancelled when one of them does not pass), and
cancel_superseded (a branch's new commit cancels its older builds' jobs)."""

from conftest import wait_until


def jobs_by_name(server, bid):
    return {j["name"]: j for j in server.build(bid)["jobs"]}


def events(server, bid):
    return [e["message"] for e in server.build(bid)["events"]]


def test_retry_passes_on_second_attempt_and_is_flaky(ctx, server, runner, gitrepo):
    mark = ctx.tmp / "attempted"
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": (
        "jobs:\n"
        "  shaky:\n"
        "    run: if [ -e \"$MARK\" ]; then echo yci-second; else touch \"$MARK\";"
        " echo yci-first; exit 3; fi\n"
        "    env: {MARK: '%s'}\n"
        "    retry: {count: 2, increment: 1}\n"
        "  never:\n"
        "    run: echo yci-never-ok; exit 4\n"
        "    retry: {count: 1, increment: 0}\n" % mark)})
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == "failed", b
    jobs = jobs_by_name(server, b["id"])
    shaky = jobs["shaky"]
    assert shaky["status"] == "passed" and shaky["flaky"] is True, shaky
    assert shaky["attempt"] == 2 and shaky["retries"] == 1 and shaky["max_retries"] == 2, shaky
    assert b"yci-first" in server.log(shaky["id"], attempt=1)
    assert b"yci-second" in server.log(shaky["id"], attempt=2)
    assert b"yci-second" in server.log(shaky["id"])  # the current attempt
    never = jobs["never"]
    assert never["status"] == "failed" and never["flaky"] is False, never
    assert never["attempt"] == 2 and never["retries"] == 1 and never["exit_code"] == 4, never
    ev = events(server, b["id"])
    assert any("(shaky): failed, retry 1 of 2 in 1 s" in m for m in ev), ev
    assert any("(never): failed, retry 1 of 1 in 0 s" in m for m in ev), ev


def test_retry_waits_and_build_stays_running(ctx, server, runner):
    b, (job,) = server.submit_jobs([{
        "name": "late", "commands": ["exit 1"], "retry": {"count": 1, "increment": 3}}])
    def queued_again():
        j = server.job(job["id"])
        return j if j["status"] == "queued" and j["retries"] == 1 else None
    j = wait_until(queued_again, 30, what="the retry to be queued")
    assert j["not_before"] is not None, j
    assert server.build(b["id"])["status"] == "running"
    # Not claimed before its time (3 s after the failure).
    j = server.wait_job(job["id"], timeout=30)
    assert j["status"] == "failed" and j["attempt"] == 2, j
    assert j["started"] >= j["not_before"], j


def test_needs_waits_then_runs(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": (
        "jobs:\n"
        "  deploy:\n"
        "    run: echo yci-deploy\n"
        "    needs: tests\n"
        "  lint:\n"
        "    run: sleep 1; echo yci-lint\n"
        "  tests:\n"
        "    run: echo yci-tests\n"
        "    matrix: {PY: ['3.11', '3.12']}\n"
        "    needs: lint\n")})
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == "passed", b
    jobs = jobs_by_name(server, b["id"])
    assert jobs["deploy"]["needs"] == ["tests (3.11)", "tests (3.12)"], jobs["deploy"]
    for t in ("tests (3.11)", "tests (3.12)"):
        assert jobs[t]["started"] >= jobs["lint"]["finished"], jobs
        assert jobs["deploy"]["started"] >= jobs[t]["finished"], jobs


def test_needs_failed_cancels_dependents(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": (
        "jobs:\n"
        "  lint:\n"
        "    run: exit 1\n"
        "  tests:\n"
        "    run: echo yci-tests\n"
        "    needs: lint\n"
        "  deploy:\n"
        "    run: echo yci-deploy\n"
        "    needs: tests\n"
        "  other:\n"
        "    run: echo yci-other\n")})
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == "failed", b
    jobs = jobs_by_name(server, b["id"])
    assert jobs["lint"]["status"] == "failed"
    assert jobs["other"]["status"] == "passed"
    assert jobs["tests"]["status"] == "cancelled", jobs["tests"]
    assert jobs["tests"]["error"] == "needed job 'lint' failed", jobs["tests"]
    assert jobs["tests"]["attempt"] == 0, jobs["tests"]
    assert jobs["deploy"]["status"] == "cancelled", jobs["deploy"]
    assert jobs["deploy"]["error"] == "needed job 'tests' was cancelled", jobs["deploy"]


def _long_job_yml(extra=""):
    return extra + "jobs:\n  slow:\n    run: echo yci-slow-started; sleep 30\n"


def test_cancel_superseded(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha1 = repo.commit({".yci.yml": _long_job_yml()})
    server.add_repo(repo.path)
    b1 = server.wait_commit_build("proj", sha1, finished=False)
    (job,) = server.build(b1["id"])["jobs"]
    server.wait_job(job["id"], statuses=("running",))
    sha2 = repo.commit({".yci.yml": "jobs:\n  quick:\n    run: echo yci-quick\n"})
    b2 = server.wait_commit_build("proj", sha2, timeout=60)
    assert b2["status"] == "passed", b2
    old = server.wait_build(b1["id"], timeout=10)
    assert old["status"] == "cancelled", old
    assert any("superseded by build %d" % b2["id"] in m for m in events(server, b1["id"])), \
        events(server, b1["id"])
    # The runner stopped it (at its next heartbeat) and is free again: b2 ran.


def test_cancel_superseded_false_keeps_older_builds(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    yml = "cancel_superseded: false\njobs:\n  slow:\n    run: sleep 2; echo yci-slow\n"
    sha1 = repo.commit({".yci.yml": yml})
    server.add_repo(repo.path)
    b1 = server.wait_commit_build("proj", sha1, finished=False)
    (job,) = server.build(b1["id"])["jobs"]
    server.wait_job(job["id"], statuses=("running",))
    sha2 = repo.commit({".yci.yml": yml + "# another commit\n"})
    b2 = server.wait_commit_build("proj", sha2, timeout=60)
    assert b2["status"] == "passed", b2
    assert server.wait_build(b1["id"])["status"] == "passed"
