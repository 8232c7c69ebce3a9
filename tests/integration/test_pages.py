"""The server's HTML pages: the runners page (labels, platform, client_info,
last heartbeat, current jobs, dead runners), everything escaped."""

from conftest import http_request, wait_until

HOSTILE = "<script>alert(1)</script>\"'&"


def test_runners_page(ctx, server):
    runner = ctx.runner(server, labels={"os": "linux"}).start()
    bid = server.submit([{"name": "sleeper", "commands": ["sleep 30"]}])["id"]
    wait_until(lambda: any(r["jobs"] for r in server.runners()), 30, what="the job running")
    # A second runner, registered by hand, with hostile client_info and no heartbeat since.
    r = http_request(server.url, "POST", "/api/runners/register",
                     {"name": "hand-made", "labels": {}, "slots": 1, "heartbeat": 1},
                     token=server.secret)
    assert r.status == 201, r
    tok = r.json()["token"]
    r = http_request(server.url, "POST", "/api/runners/heartbeat",
                     {"client_info": {"note": HOSTILE}, "jobs": []}, token=tok)
    assert r.status == 200, r

    page = server.get("/runners")
    assert page.status == 200, page
    assert "default-src" in page.header("Content-Security-Policy")
    text = page.text
    assert runner.name in text and "os=linux" in text, text
    assert '<a href="/builds/%d">sleeper</a>' % bid in text, text
    assert "<script>" not in text and "&lt;script&gt;" in text, text
    assert "alive" in text and "s ago" in text
    # The hand-made runner stops heartbeating: shown dead.
    wait_until(lambda: ">dead<" in server.get("/runners").text, 30, what="a dead runner")
    # The link in every page's header.
    assert '<a href="/runners">runners</a>' in server.get("/").text


def test_overview_shows_each_branch_latest_build(ctx, server, runner, gitrepo):
    from conftest import PASSING_TESTS
    repo = gitrepo("proj")
    old = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    server.wait_commit_build("proj", old, timeout=60)
    new = repo.commit({"more.txt": "x\n"})
    main = server.wait_commit_build("proj", new, timeout=60)
    hostile = "<i>evil</i>"
    repo.checkout(hostile, new=True)
    bad = repo.commit({".yci.yml": "jobs:\n  t:\n    run: exit 1\n"})
    other = server.wait_commit_build("proj", bad, timeout=60)
    page = server.get("/").text
    assert "<h1>Branches and pull requests</h1>" in page and "<h2>proj</h2>" in page, page
    overview = page[page.index("<h2>proj</h2>"):page.index("<h1>Recent builds</h1>")]
    # One row per branch: the newest build of each.
    assert overview.count("<tr><td>") == 2, overview
    assert '<a href="/builds/%d">' % main["id"] in overview and new[:12] in overview
    assert old[:12] not in overview
    assert '<a href="/builds/%d">' % other["id"] in overview
    assert '<td class="failed">failed</td>' in overview and '<td class="passed">passed</td>' \
        in overview
    assert "<i>evil</i>" not in page and "&lt;i&gt;evil&lt;/i&gt;" in page
