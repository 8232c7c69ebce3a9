"""The observer: new heads on every branch become builds, each (branch,
commit) exactly once; the poll endpoint and a post-receive hook make it look
now; force-pushes and vanished repositories are handled."""

import collections
import json
import os
import stat
import time

import pytest

from conftest import PASSING_TESTS, wait_until


def pairs(builds):
    return [(b["branch"], b["commit"]) for b in builds]


def assert_no_duplicates(builds):
    dup = [p for p, n in collections.Counter(pairs(builds)).items() if n > 1]
    assert not dup, "(branch, commit) built more than once: %r" % dup


def polled(ctx, gitrepo, name):
    """A server polling every minute (so that only what a test asks for
    polls), and a repository added to it, its first commit built."""
    server = ctx.server(poll_interval=60).start()
    repo = gitrepo(name)
    c0 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    # The first poll comes with the add, not after the interval.
    server.wait_commit_build(name, c0, timeout=20, finished=False)
    return server, repo


def test_new_commit_and_new_branch_are_built(ctx, server, runner, gitrepo):
    repo = gitrepo("obs")
    c1 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    b1 = server.wait_commit_build("obs", c1)
    assert b1["status"] == "passed" and b1["branch"] == "main", b1

    c2 = repo.commit({"more.txt": "x\n"})
    b2 = server.wait_commit_build("obs", c2)
    assert b2["id"] != b1["id"] and b2["branch"] == "main" and b2["status"] == "passed", b2

    # A new branch at an already built commit is a new (branch, commit).
    repo.checkout("feature", new=True)
    repo.push()
    fb = wait_until(lambda: server.branch_builds("obs", "feature"), 20,
                    what="a build of the new branch")
    assert fb[0]["commit"] == c2, fb
    c3 = repo.commit({"feature.txt": "f\n"})
    b3 = server.wait_commit_build("obs", c3)
    assert b3["branch"] == "feature", b3

    server.wait_polls("obs", 3)
    builds = server.branch_builds("obs")
    assert_no_duplicates(builds)
    assert sorted(pairs(builds)) == sorted([("main", c1), ("main", c2), ("feature", c2),
                                            ("feature", c3)])
    r = server.repo("obs")
    assert r["last_error"] in (None, ""), r
    assert r["url"] == repo.path and isinstance(r["last_poll"], int), r


@pytest.mark.slow
def test_burst_of_100_pushes_builds_each_head_at_most_once(ctx, server, gitrepo):
    # No runner: the builds stay queued, which is all this test looks at.
    repo = gitrepo("burst")
    c0 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    server.wait_commit_build("burst", c0, finished=False)
    shas = [repo.commit({"n.txt": "%d\n" % i}) for i in range(100)]

    server.wait_commit_build("burst", shas[-1], finished=False)
    server.wait_polls("burst", 3)
    builds = server.branch_builds("burst")
    assert_no_duplicates(builds)
    assert all(b["branch"] == "main" for b in builds), builds
    unknown = {b["commit"] for b in builds} - set(shas) - {c0}
    assert not unknown, "builds of commits that were never a head: %r" % unknown
    assert len(builds) <= 101


def test_100_commits_in_one_push_make_one_build(ctx, server, gitrepo):
    repo = gitrepo("onepush")
    c0 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    server.wait_commit_build("onepush", c0, finished=False)
    for i in range(100):
        repo.commit({"n.txt": "%d\n" % i}, push=False)
    head = repo.head()
    repo.push()
    server.wait_commit_build("onepush", head, finished=False)
    server.wait_polls("onepush", 3)
    builds = server.branch_builds("onepush")
    assert sorted(b["commit"] for b in builds) == sorted([c0, head]), pairs(builds)


def test_20_branches_in_one_push_make_20_builds(ctx, server, gitrepo):
    repo = gitrepo("many")
    c0 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    server.wait_commit_build("many", c0, finished=False)
    expected = {("main", c0)}
    names = []
    for i in range(20):
        name = "topic-%02d" % i
        repo.checkout(name, new=True, start="main")
        expected.add((name, repo.commit({"topic.txt": name + "\n"}, push=False)))
        names.append(name)
    repo.push(*names)

    wait_until(lambda: len(server.branch_builds("many")) >= 21, 30, what="21 builds")
    server.wait_polls("many", 3)
    builds = server.branch_builds("many")
    assert_no_duplicates(builds)
    assert set(pairs(builds)) == expected
    assert len(builds) == 21


def test_poll_endpoint_and_cli_make_a_build_appear_now(ctx, gitrepo):
    server, repo = polled(ctx, gitrepo, "hinted")

    c1 = repo.commit()
    t0 = time.monotonic()
    r = server.post("/api/repos/hinted/poll", token=None)
    assert r.status == 202, r
    assert r.json() == {"queued": True}
    server.wait_commit_build("hinted", c1, timeout=15, finished=False)
    assert time.monotonic() - t0 < 15

    c2 = repo.commit()
    ctx.cli("repo", "poll", "hinted", server=server, check=True)
    server.wait_commit_build("hinted", c2, timeout=15, finished=False)

    r = server.post("/api/repos/no-such-repo/poll", token=None)
    assert r.status == 404 and "error" in r.json(), r


def test_a_mirror_is_kept_tidy_after_the_builds(ctx, gitrepo):
    """git's housekeeping of a mirror (`git maintenance run --auto`) is left
    out of the fetch and runs a little after the poll that fetched, so that
    it does not delay the builds the fetch brings; but it runs."""
    import subprocess
    server, repo = polled(ctx, gitrepo, "tidy")
    mirror = os.path.join(server.data, "mirrors", "tidy.git")
    # A task that is due as soon as one commit is new: the commit-graph.
    for k, v in (("maintenance.commit-graph.enabled", "true"),
                 ("maintenance.commit-graph.auto", "1")):
        subprocess.run(["git", "--git-dir", mirror, "config", k, v], check=True)
    chain = os.path.join(mirror, "objects", "info", "commit-graphs", "commit-graph-chain")
    time.sleep(3)  # what the first poll left due has run by now
    if os.path.exists(chain):
        os.unlink(chain)
    c1 = repo.commit({"x.txt": "x\n"})
    assert server.post("/api/repos/tidy/poll", token=None).status == 202
    server.wait_commit_build("tidy", c1, timeout=15, finished=False)
    wait_until(lambda: os.path.exists(chain), 20, what="the mirror's housekeeping")
    # Nothing fetched, nothing to do: a poll with no new commit runs none.
    os.unlink(chain)
    assert server.post("/api/repos/tidy/poll", token=None).status == 202
    time.sleep(3)
    assert not os.path.exists(chain)


def test_post_receive_hook_triggers_a_build(ctx, gitrepo):
    """The hook the README documents: curl the poll endpoint."""
    server, repo = polled(ctx, gitrepo, "hooked")

    hook = os.path.join(repo.path, "hooks", "post-receive")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\ncurl -fsS -X POST %s/api/repos/hooked/poll >/dev/null\n" % server.url)
    os.chmod(hook, os.stat(hook).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    c1 = repo.commit()
    server.wait_commit_build("hooked", c1, timeout=10, finished=False)


def test_repo_add_and_list_via_the_cli(ctx, server, runner, gitrepo, cli):
    repo = gitrepo("viacli")
    c = repo.commit(PASSING_TESTS)
    cli("repo", "add", repo.path, "--name", "mine", check=True)
    r = cli("repo", "list", "--json", check=True)
    repos = json.loads(r.stdout)
    mine = [x for x in repos if x["name"] == "mine"]
    assert len(mine) == 1 and mine[0]["url"] == repo.path, repos
    r = cli("repo", "list", check=True)
    assert "mine" in r.stdout

    b = server.wait_commit_build("mine", c)
    assert b["status"] == "passed", b

    # The name is taken: the command fails and says so.
    r = cli("repo", "add", repo.path, "--name", "mine")
    assert r.returncode != 0, r
    assert r.stderr.strip(), "no message on stderr"

    # Without --name: the last path component, without .git.
    cli("repo", "add", repo.path, check=True)
    assert server.repo("viacli")["url"] == repo.path


def test_force_push_makes_a_new_build(ctx, server, runner, gitrepo):
    repo = gitrepo("forced")
    c1 = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    server.wait_commit_build("forced", c1)
    c2 = repo.commit({"a.txt": "first version\n"})
    server.wait_commit_build("forced", c2)

    repo.git("reset", "-q", "--hard", c1)
    c3 = repo.commit({"a.txt": "rewritten history\n"}, push=False)
    repo.push(force=True)
    assert repo.remote_head("main") == c3
    b3 = server.wait_commit_build("forced", c3)
    assert b3["branch"] == "main" and b3["status"] == "passed", b3
    r = server.repo("forced")
    assert r["last_error"] in (None, ""), r


def test_vanished_repository_shows_an_error_and_others_keep_building(ctx, server, runner,
                                                                      gitrepo):
    gone = gitrepo("gone")
    kept = gitrepo("kept")
    g0 = gone.commit(PASSING_TESTS)
    k0 = kept.commit(PASSING_TESTS)
    server.add_repo(gone.path)
    server.add_repo(kept.path)
    server.wait_commit_build("gone", g0)
    server.wait_commit_build("kept", k0)

    gone.delete()
    err = wait_until(lambda: server.repo("gone")["last_error"], 20,
                     what="last_error on the deleted repository")
    assert isinstance(err, str) and len(err) > 5, err

    k1 = kept.commit({"x.txt": "still watched\n"})
    b = server.wait_commit_build("kept", k1)
    assert b["status"] == "passed", b
    assert server.repo("kept")["last_error"] in (None, "")
    assert server.get("/api/health").status == 200
