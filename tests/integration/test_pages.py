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
    jid = server.build(bid)["jobs"][0]["id"]
    assert '<a href="/jobs/%d">sleeper</a>' % jid in text, text
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
    assert overview.count("<tr class=\"row-") == 2, overview
    assert '<a href="/builds/%d">' % main["id"] in overview and new[:12] in overview
    assert old[:12] not in overview
    assert '<a href="/builds/%d">' % other["id"] in overview
    assert '<span class="st st-failed">failed</span>' in overview and \
        '<span class="st st-passed">passed</span>' in overview
    assert "<i>evil</i>" not in page and "&lt;i&gt;evil&lt;/i&gt;" in page


# ---------------------------------------------------------------------------
# What the dashboard's script relies on (the browser tests drive it all).

def test_changes_long_poll(server):
    import threading
    import time
    r = server.get("/api/changes")
    assert r.status == 200, r
    v = r.json()["version"]
    assert isinstance(v, int)
    # Behind: answered at once.
    if v > 0:
        assert server.get("/api/changes?since=%d&wait=10" % (v - 1)).json()["version"] == v
    # Nothing changes: the wait runs out with the same version.
    t0 = time.monotonic()
    assert server.get("/api/changes?since=%d&wait=1" % v).json()["version"] == v
    assert time.monotonic() - t0 >= 0.9
    # A change (a build) answers a waiting request at once.
    got = {}

    def waiter():
        t = time.monotonic()
        got["v"] = server.get("/api/changes?since=%d&wait=20" % v).json()["version"]
        got["t"] = time.monotonic() - t
    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    server.submit([{"name": "one", "commands": ["true"]}])
    th.join(25)
    assert got["v"] > v and got["t"] < 5, got
    assert server.get("/api/changes?since=x").status == 400


def test_static_files_and_csp(server):
    page = server.get("/")
    csp = page.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp, csp
    assert "<style" not in page.text and "<script>" not in page.text
    import re
    srcs = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {s.split("?")[0] for s in srcs} >= {"/static/app.js", "/static/yci.css"}, srcs
    for s in srcs:
        r = server.get(s)
        assert r.status == 200 and r.body, (s, r)
        assert "immutable" in r.header("Cache-Control"), r.header("Cache-Control")
        etag = r.header("ETag")
        again = server.get(s, headers={"If-None-Match": etag})
        assert again.status == 304 and not again.body, again
    js = server.get("/static/app.js")
    assert js.header("Content-Type").startswith("text/javascript")
    assert js.header("Cache-Control") == "no-cache"  # not the versioned URL
    assert server.get("/static/ansi_up.js").status == 200
    assert server.get("/static/nope.js").status == 404
    assert server.get("/static/..%2fserver.c").status == 404


def test_job_page_and_log_headers(server, runner):
    bid = server.submit([{"name": "lines", "commands": ["seq 1 5000"]}])["id"]
    jid = server.build(bid)["jobs"][0]["id"]
    server.wait_job(jid)
    page = server.get("/jobs/%d" % jid)
    assert page.status == 200, page
    assert 'id="log"' in page.text and 'data-job="%d"' % jid in page.text
    assert 'data-status="passed"' in page.text and '/api/jobs/%d/log?attempt=1' % jid in page.text
    assert server.get("/jobs/999999").status == 404
    assert server.get("/jobs/abc").status == 404
    raw = server.log(jid)
    # The number of newlines before an offset, for line numbers from the tail.
    off = len(raw) // 2
    r = server.get("/api/jobs/%d/log?offset=%d&lines=1" % (jid, off))
    assert r.header("X-Yci-Lines-Before") == str(raw[:off].count(b"\n")), r.headers
    assert r.header("X-Yci-Current-Attempt") == "1" and r.body == raw[off:]
    assert server.get("/api/jobs/%d/log?lines=2" % jid).status == 400


def test_author_subject_and_matrix_grid(server, runner, gitrepo):
    repo = gitrepo("grid")
    repo.env["GIT_AUTHOR_NAME"] = "Ada Lovelace"
    yml = ("jobs:\n  t:\n    run: 'true'\n    matrix:\n      PY: ['3.11', '3.12']\n"
           "      OS: [linux, bsd, mac]\n  single:\n    run: 'true'\n")
    sha = repo.commit({".yci.yml": yml}, message="Grid of jobs\n\nA body that is not shown.")
    server.add_repo(repo.path)
    b = server.wait_commit_build("grid", sha)
    assert b["author"] == "Ada Lovelace" and b["subject"] == "Grid of jobs", b
    page = server.get("/builds/%d" % b["id"]).text
    grid = page[page.index('<table class="matrix">'):]
    grid = grid[:grid.index("</table>")]
    assert "<caption>t</caption>" in grid
    # rows: the first value; columns: the last
    assert grid.count("<tr><th>3.1") == 2 and "<th>linux</th><th>bsd</th><th>mac</th>" in grid, grid
    assert grid.count('<span class="st st-passed">') == 6, grid
    assert page.count('<table class="matrix">') == 1  # not for the single job
    overview = server.get("/").text
    assert "Ada Lovelace" in overview and "Grid of jobs" in overview
    assert "A body" not in overview
    # A rebuild keeps them.
    r = server.post("/api/builds/%d/rebuild" % b["id"])
    assert r.status == 201 and r.json()["author"] == "Ada Lovelace", r
