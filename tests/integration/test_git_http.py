"""The server's mirrors over git's smart HTTP: clone, fetch any commit by id,
read-only, and nothing outside the mirrors."""

import os
import subprocess

import pytest

from conftest import PASSING_TESTS, wait_until


def git(ctx, *args, cwd=None):
    return subprocess.run(["git"] + [str(a) for a in args], cwd=str(cwd or ctx.tmp),
                          env=ctx.env(GIT_TERMINAL_PROMPT="0"), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


@pytest.fixture
def mirrored(ctx, server, gitrepo):
    """A repository "g" with two commits on main and one on a branch, mirrored."""
    repo = gitrepo("g")
    c1 = repo.commit(dict(PASSING_TESTS, **{"hello.txt": "first\n"}))
    c2 = repo.commit({"hello.txt": "second\n"})
    repo.checkout("side", new=True)
    c3 = repo.commit({"side.txt": "side\n"})
    server.add_repo(repo.path)
    wait_until(lambda: {b["commit"] for b in server.branch_builds("g")} >= {c2, c3}, 20,
               what="the mirror of g")
    return repo, c1, c2, c3


def test_clone_over_http(ctx, server, mirrored):
    repo, c1, c2, c3 = mirrored
    dest = ctx.tmp / "clone"
    r = git(ctx, "clone", "-q", server.url + "/git/g", dest)
    assert r.returncode == 0, r.stderr
    assert git(ctx, "rev-parse", "HEAD", cwd=dest).stdout.strip() == c2
    assert git(ctx, "rev-parse", "origin/side", cwd=dest).stdout.strip() == c3
    with open(dest / "hello.txt") as f:
        assert f.read() == "second\n"
    assert git(ctx, "fsck", "--no-progress", cwd=dest).returncode == 0


def test_fetch_a_commit_by_id(ctx, server, mirrored):
    repo, c1, c2, c3 = mirrored
    dest = ctx.tmp / "byid"
    assert git(ctx, "init", "-q", dest).returncode == 0
    # c1 is no branch's head: any commit id may be fetched.
    r = git(ctx, "fetch", "-q", server.url + "/git/g", c1, cwd=dest)
    assert r.returncode == 0, r.stderr
    assert git(ctx, "cat-file", "-t", c1, cwd=dest).stdout.strip() == "commit"
    r = git(ctx, "show", "%s:hello.txt" % c1, cwd=dest)
    assert r.stdout == "first\n", r


@pytest.mark.parametrize("path", [
    "/git/nope/info/refs?service=git-upload-pack",
    "/git/..%2F..%2Fetc/info/refs?service=git-upload-pack",
    "/git/../../etc/info/refs?service=git-upload-pack",
    "/git/%2e%2e/info/refs?service=git-upload-pack",
    "/git/g%2F..%2F..%2F..%2Fetc/info/refs?service=git-upload-pack",
    "/git/.git/info/refs?service=git-upload-pack",
    "/git/g/../../../../etc/passwd",
    "/git/g/HEAD",
    "/git/g/objects/info/packs",
    "/git/g/config",
])
def test_bad_git_paths_are_404(ctx, server, mirrored, path):
    r = server.get(path)
    assert r.status == 404, r
    assert b"root:" not in r.body and b"[core]" not in r.body
    assert server.get("/api/health").status == 200


def test_mirrors_are_read_only(ctx, server, mirrored):
    repo, c1, c2, c3 = mirrored
    r = server.get("/git/g/info/refs?service=git-receive-pack")
    assert r.status in (403, 404), r
    r = server.request("POST", "/git/g/git-receive-pack", b"0000",
                       headers={"Content-Type": "application/x-git-receive-pack-request"})
    assert r.status in (403, 404, 405), r
    clone = ctx.tmp / "pusher"
    assert git(ctx, "clone", "-q", server.url + "/git/g", clone).returncode == 0
    with open(clone / "evil.txt", "w") as f:
        f.write("x\n")
    git(ctx, "add", "evil.txt", cwd=clone)
    git(ctx, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "evil", cwd=clone)
    r = git(ctx, "push", "origin", "HEAD:main", cwd=clone)
    assert r.returncode != 0, "push to the mirror succeeded"
    assert repo.remote_head("main") == c2


def test_clone_of_unknown_repository_fails(ctx, server):
    r = git(ctx, "clone", "-q", server.url + "/git/nope", ctx.tmp / "x")
    assert r.returncode != 0
    assert not os.path.exists(ctx.tmp / "x" / ".git")
