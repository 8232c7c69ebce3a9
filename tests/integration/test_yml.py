""".yci.yml drives builds: the server reads it from its mirror at the built
commit, and its jobs (matrix cells, command lists, labels, timeouts) run end
to end on real runners; a problem in the file is a build error with
.yci.yml:LINE:COLUMN, and the next good commit builds fine; a branch the
filters exclude gets a build with no jobs, passed at once."""

import os

from conftest import PASSING_TESTS, wait_until

MATRIX = """\
jobs:
  show:
    run: echo "yci-env A=$A B=$B C=$C"
    env: {C: common}
    matrix:
      A: [a1, a2]
      B: [b1, b2]
"""


def jobs_by_name(server, bid):
    return {j["name"]: j for j in server.build(bid)["jobs"]}


def log_text(server, job):
    return server.log(job["id"]).decode("utf-8", "replace")


def first_build(server, repo, files):
    """Commit files to repo, add it to the server and wait for the build of
    that commit: (the commit, the build)."""
    sha = repo.commit(files)
    server.add_repo(repo.path)
    return sha, server.wait_commit_build(repo.name, sha, timeout=60)


def test_matrix_makes_one_job_per_cell(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha, b = first_build(server, repo, {".yci.yml": MATRIX})
    assert b["status"] == "passed", b
    jobs = jobs_by_name(server, b["id"])
    assert sorted(jobs) == ["show (a1, b1)", "show (a1, b2)", "show (a2, b1)", "show (a2, b2)"]
    # File order, first matrix key outermost.
    assert [j["name"] for j in server.build(b["id"])["jobs"]] == [
        "show (a1, b1)", "show (a1, b2)", "show (a2, b1)", "show (a2, b2)"]
    for a in ("a1", "a2"):
        for bb in ("b1", "b2"):
            j = jobs[("show (%s, %s)" % (a, bb))]
            assert j["status"] == "passed" and j["exit_code"] == 0, j
            assert j["env"] == {"A": a, "B": bb, "C": "common"}, j
            assert "yci-env A=%s B=%s C=common" % (a, bb) in log_text(server, j)


def test_command_list_stops_at_first_failure(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha, b = first_build(server, repo, {".yci.yml": (
        "jobs:\n"
        "  steps:\n"
        "    run:\n"
        "      - echo yci-step-one\n"
        "      - echo yci-step-two; exit 7\n"
        "      - echo yci-step-three\n"
        "  fine:\n"
        "    run: [echo yci-fine-1, echo yci-fine-2]\n")})
    assert b["status"] == "failed", b
    jobs = jobs_by_name(server, b["id"])
    steps = jobs["steps"]
    assert steps["status"] == "failed" and steps["exit_code"] == 7, steps
    text = log_text(server, steps)
    assert "yci-step-one" in text and "yci-step-two" in text, text
    assert "yci-step-three" not in text.replace("echo yci-step-three", ""), text
    fine = jobs["fine"]
    assert fine["status"] == "passed", fine
    text = log_text(server, fine)
    assert "yci-fine-1" in text and "yci-fine-2" in text, text


def test_timeout_kills_the_job(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha, b = first_build(server, repo, {".yci.yml": (
        "jobs:\n"
        "  slow:\n"
        "    run: echo yci-started; sleep 60; echo yci-never\n"
        "    timeout: 2\n")})
    assert b["status"] == "failed", b
    (job,) = server.build(b["id"])["jobs"]
    assert job["status"] == "timed_out", job
    assert job["timeout"] == 2, job
    assert job["finished"] - job["started"] < 30000, job
    text = log_text(server, job)
    assert "yci-started" in text and "yci-never" not in text.replace("echo yci-never", "")


def test_labels_route_jobs_to_runners(ctx, server, gitrepo):
    plain = ctx.runner(server, name="plain").start()
    arm = ctx.runner(server, name="armbox", labels={"arch": "arm"}).start()
    repo = gitrepo("proj")
    sha, b = first_build(server, repo, {".yci.yml": (
        "jobs:\n"
        "  anywhere:\n"
        "    run: 'true'\n"
        "  on-arm:\n"
        "    run: echo yci-on-arm\n"
        "    labels: {arch: arm}\n")})
    assert b["status"] == "passed", b
    jobs = jobs_by_name(server, b["id"])
    assert jobs["on-arm"]["labels"] == {"arch": "arm"}
    assert jobs["on-arm"]["runner"] == arm.rname, jobs["on-arm"]
    assert jobs["anywhere"]["runner"] in (plain.rname, arm.rname)


def error_build(server, repo, sha):
    b = server.wait_commit_build(repo, sha, timeout=60)
    assert b["status"] == "error", b
    full = server.build(b["id"])
    assert full["jobs"] == [], full
    return full["error"]


def test_syntax_error_then_a_good_commit(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    bad = repo.commit({".yci.yml": "jobs:\n  t:\n    run: [a, b\n"})
    server.add_repo(repo.path)
    err = error_build(server, "proj", bad)
    assert err.startswith(".yci.yml:"), err
    line, col = err.split(":")[1:3]
    assert line.isdigit() and col.isdigit(), err
    assert "YAML syntax error" in err, err

    # The CLI shows the error too.
    r = ctx.cli("builds", server=server)
    assert r.returncode == 0 and "error" in r.stdout, r

    good = repo.commit({".yci.yml": "jobs:\n  t:\n    run: echo yci-fixed\n"})
    b = server.wait_commit_build("proj", good, timeout=60)
    assert b["status"] == "passed", b
    (job,) = server.build(b["id"])["jobs"]
    assert "yci-fixed" in log_text(server, job)


def test_unknown_key_says_did_you_mean(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": "jobs:\n  t:\n    run: 'true'\n    tiemout: 5\n"})
    server.add_repo(repo.path)
    err = error_build(server, "proj", sha)
    assert err == ".yci.yml:4:5: unknown key 'tiemout' in job 't' (did you mean 'timeout'?)", err


def test_non_utf8_is_an_error(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    with open(os.path.join(repo.work, ".yci.yml"), "wb") as f:
        f.write(b"jobs:\n  t:\n    run: echo \xff\xfe\n")
    sha = repo.commit({"other.txt": "x\n"})
    server.add_repo(repo.path)
    err = error_build(server, "proj", sha)
    assert err.startswith(".yci.yml:3:"), err
    assert "not valid UTF-8" in err, err


def test_too_many_jobs_follows_the_server_flag(ctx, gitrepo):
    server = ctx.server(args=["--max-jobs-per-build", "3"]).start()
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": "jobs:\n  t:\n    run: 'true'\n    matrix: {A: [1, 2, 3, 4]}\n"})
    server.add_repo(repo.path)
    err = error_build(server, "proj", sha)
    assert err.startswith(".yci.yml:") and "limit of 3 jobs" in err, err


def test_branch_filter_gives_a_build_without_jobs(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    yml = ("jobs:\n"
           "  deploy:\n"
           "    run: echo yci-deploying\n"
           "    branches: {only: [main]}\n")
    main_sha, b = first_build(server, repo, {".yci.yml": yml})
    assert b["status"] == "passed", b
    (job,) = server.build(b["id"])["jobs"]
    assert job["name"] == "deploy" and "yci-deploying" in log_text(server, job)

    repo.checkout("feature", new=True)
    feat_sha = repo.commit({"f.txt": "x\n"})
    fb = wait_until(lambda: [x for x in server.branch_builds("proj", "feature")
                             if x["commit"] == feat_sha] or None, 30,
                    what="the build of feature")[0]
    fb = server.wait_build(fb["id"], timeout=10)
    assert fb["status"] == "passed", fb
    full = server.build(fb["id"])
    assert full["jobs"] == [] and full["error"] is None, full
    assert isinstance(full["finished"], int), full
    assert any("no jobs for this branch" in e["message"] for e in full["events"]), full

    # Asking for a build of the branch through the API gives the same.
    r = server.post("/api/builds", {"repo": "proj", "branch": "feature"})
    assert r.status == 201, r
    nb = server.wait_build(r.json()["id"], timeout=10)
    assert nb["status"] == "passed" and nb["commit"] == feat_sha, nb
    assert server.build(nb["id"])["jobs"] == []

    # And a rebuild of it does not hang either.
    r = server.post("/api/builds/%d/rebuild" % fb["id"])
    assert r.status in (200, 201), r
    rb = server.wait_build(r.json()["id"], timeout=10)
    assert rb["status"] == "passed", rb


def test_without_yml_the_default_rule_still_runs(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha, b = first_build(server, repo, dict(PASSING_TESTS))
    assert b["status"] == "passed", b
    (job,) = server.build(b["id"])["jobs"]
    assert job["name"] == "tests", job
    # Adding a .yci.yml switches to it at the next commit.
    sha2 = repo.commit({".yci.yml": "jobs:\n  mine:\n    run: echo yci-mine\n"})
    b2 = server.wait_commit_build("proj", sha2, timeout=60)
    assert b2["status"] == "passed", b2
    (job,) = server.build(b2["id"])["jobs"]
    assert job["name"] == "mine" and "yci-mine" in log_text(server, job)


def test_submodules_are_checked_out_through_the_servers_mirrors(ctx, server, runner, gitrepo):
    """submodules: true checks the submodules out recursively; a relative URL
    in .gitmodules resolves against the server's mirror, so a runner needs no
    access to the origin of the submodule either."""
    inner = gitrepo("inner")
    inner.commit({"deep.txt": "yci-deep-content\n"})
    lib = gitrepo("lib")
    # Relative URLs, as git submodule add records them ("../inner.git").
    lib.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../inner.git", "inner")
    lib.commit({"hello.txt": "yci-submodule-content\n"})
    app = gitrepo("app")
    app.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../lib.git", "lib")
    assert "url = ../lib.git" in open(os.path.join(app.work, ".gitmodules")).read()
    yml = ("submodules: %s\n"
           "jobs:\n"
           "  show:\n"
           "    run: cat lib/hello.txt lib/inner/deep.txt\n")
    # Without the key the submodule's directory is empty: the job fails.
    sha = app.commit({".yci.yml": yml % "false"})
    for r in (inner, lib):
        server.add_repo(r.path)
    server.add_repo(app.path)
    b = server.wait_commit_build("app", sha, timeout=60)
    assert b["status"] == "failed", b
    sha = app.commit({".yci.yml": yml % "true"})
    b = server.wait_commit_build("app", sha, timeout=60)
    job = server.build(b["id"])["jobs"][0]
    assert b["status"] == "passed", (job, log_text(server, job))
    assert job["submodules"] is True, job
    text = log_text(server, job)
    assert "yci-submodule-content" in text and "yci-deep-content" in text, text
    assert "git submodule update --init --recursive" in text, text


def test_the_workspace_is_a_git_repository_at_the_commit(ctx, server, runner, gitrepo):
    """A job's workspace is a repository of its own at exactly the build's
    commit: HEAD detached there, a clean tree, the history readable, and the
    job may commit in it (the runner's cache is only borrowed from)."""
    repo = gitrepo("ws")
    first = repo.commit({"a.txt": "one\n"})
    yml = ("jobs:\n"
           "  inspect:\n"
           "    run:\n"
           "      - echo head=$(git rev-parse HEAD)\n"
           "      - echo status=[$(git status --porcelain)]\n"
           "      - echo count=$(git rev-list --count HEAD)\n"
           "      - echo parent=$(git rev-parse HEAD~1)\n"
           "      - echo branch=$(git symbolic-ref -q HEAD || echo detached)\n"
           "      - echo filemode=$(git config core.filemode)\n"
           "      - git -c user.name=j -c user.email=j@example.com commit -q --allow-empty -m mine\n"
           "      - git fsck --no-progress\n")
    sha, b = first_build(server, repo, {".yci.yml": yml})
    job = server.build(b["id"])["jobs"][0]
    text = log_text(server, job)
    assert b["status"] == "passed", text
    assert "head=%s" % sha in text, text
    assert "status=[]" in text, text
    assert "count=2" in text and "parent=%s" % first in text, text
    assert "branch=detached" in text, text
    assert "filemode=true" in text, text  # as git finds it on the tests' file system
    # The next build's job starts from a fresh workspace at its own commit.
    sha2 = repo.commit({"b.txt": "two\n"})
    b2 = server.wait_commit_build("ws", sha2, timeout=60)
    job2 = server.build(b2["id"])["jobs"][0]
    text2 = log_text(server, job2)
    assert b2["status"] == "passed", text2
    assert "head=%s" % sha2 in text2 and "count=3" in text2 and "status=[]" in text2, text2
