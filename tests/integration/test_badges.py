"""Status badges: /badge/REPO/BRANCH.svg shows the branch's newest finished
build, for a README."""

from conftest import PASSING_TESTS

FAILING = {".yci.yml": "jobs:\n  t:\n    run: exit 3\n"}


def badge(server, path):
    r = server.get(path)
    return r


def test_badges_follow_the_branches(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    assert server.wait_commit_build("proj", sha, timeout=60)["status"] == "passed"
    r = badge(server, "/badge/proj/main.svg")
    assert r.status == 200 and r.header("Content-Type").startswith("image/svg+xml"), r
    assert ">passing</text>" in r.text and "#4c1" in r.text, r.text
    assert r.header("Cache-Control").startswith("no-cache")

    repo.checkout("feature/x", new=True)
    bad = repo.commit(FAILING)
    assert server.wait_commit_build("proj", bad, timeout=60)["status"] == "failed"
    r = badge(server, "/badge/proj/feature/x.svg")
    assert r.status == 200 and ">failing</text>" in r.text, r.text
    # main is unchanged by another branch's failure.
    assert ">passing</text>" in badge(server, "/badge/proj/main.svg").text

    assert ">no builds</text>" in badge(server, "/badge/proj/nothing-here.svg").text
    assert ">no builds</text>" in badge(server, "/badge/nosuchrepo/main.svg").text
    assert badge(server, "/badge/proj/main.png").status == 404
    assert badge(server, "/badge/..%2Fetc/main.svg").status == 404
    # Only fixed words: a hostile branch name never reaches the SVG.
    r = badge(server, "/badge/proj/%3Cscript%3E.svg")
    assert r.status == 200 and "<script" not in r.text, r.text
