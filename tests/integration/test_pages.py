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


# ---------------------------------------------------------------------------
# The page cache (web.c): the overview and build pages are kept per store
# version and wall-clock second; the ETag says which ("VERSION-SECOND").

def _etag(r):
    import re
    m = re.fullmatch(r'"(\d+)-(\d+)"', r.header("ETag") or "")
    assert m, r.headers
    return int(m.group(1)), int(m.group(2))


def _cached_get(server, path):
    """GET path twice: the second answer comes from the cache when both are of
    one second (and then is the same page)."""
    first = server.get(path)
    r = server.get(path)
    assert first.status == r.status == 200, r
    if _etag(first) == _etag(r):
        assert r.body == first.body
    return r


def _in_one_second(trial, tries=5):
    """trial() early in a second; again when it says (returns None) that the
    second turned in the middle (a slow machine)."""
    import time
    for _ in range(tries):
        while time.time() % 1 > 0.3:
            time.sleep(0.02)
        got = trial()
        if got:
            return got
    raise AssertionError("the second always turned in the middle")


def _row(text, bid):
    return text[text.index('<a href="/builds/%d">' % bid):].split("</tr>")[0]


def test_overview_cache_follows_changes(server):
    """A new build and a status change show at once, in the same second as a
    cached copy of the page: the store version keys the cache."""
    def new_build():
        before = _cached_get(server, "/")
        bid = server.submit(["true"])["id"]
        after = server.get("/")
        return (before, after, bid) if _etag(after)[1] == _etag(before)[1] else None
    before, after, bid = _in_one_second(new_build)
    assert _etag(after)[0] > _etag(before)[0], (before.headers, after.headers)
    assert '<a href="/builds/%d">' % bid not in before.text
    assert '<span class="st st-queued">queued</span>' in _row(after.text, bid), after.text

    def status_change(page):
        bid = server.submit(["true"])["id"]  # no runner: queued until cancelled
        before = _cached_get(server, page(bid))
        server.post("/api/builds/%d/cancel" % bid)
        after = server.get(page(bid))
        return (before, after, bid) if _etag(after)[1] == _etag(before)[1] else None
    before, after, bid = _in_one_second(lambda: status_change(lambda b: "/"))
    assert "st-queued" in _row(before.text, bid) and "st-cancelled" in _row(after.text, bid)
    # The build page too.
    before, after, bid = _in_one_second(lambda: status_change(lambda b: "/builds/%d" % b))
    head = lambda r: r.text.split("</h1>")[0]
    assert "st-queued" in head(before) and "st-cancelled" in head(after), after.text
    assert 'data-action="cancel"' in before.text and 'data-action="cancel"' not in after.text
    # Build pages that share a slot of the cache (16 slots: 15 for builds)
    # each show their own build, one after the other in the same second.
    while server.submit(["true"])["id"] < bid + 15:
        pass
    for _ in range(3):
        for b in (bid, bid + 15, bid, bid + 15):
            r = server.get("/builds/%d" % b)
            assert r.status == 200 and "<title>yci: build %d</title>" % b in r.text, r
    assert server.get("/builds/%d" % (bid + 30)).status == 404


def test_overview_ages_advance(server):
    """Ages are relative to the page's second (in its ETag), so a cached copy
    is never more than a second old, and they move on."""
    import re
    import time
    server.submit(["true"])

    def age():
        r = server.get("/")
        m = re.search(r'<time class="age" data-ms="(\d+)">(\d+) s ago</time>', r.text)
        assert m, r.text
        version, second = _etag(r)
        # Rendered with "now" at the start of its second.
        assert int(m.group(2)) == max(0, (second * 1000 - int(m.group(1))) // 1000), r.text
        return r, int(m.group(2)), second
    r1, a1, s1 = age()
    again = server.get("/")
    if _etag(again) == _etag(r1):
        assert again.body == r1.body  # the cached copy
    time.sleep(2.1)
    r2, a2, s2 = age()
    assert s2 >= s1 + 2 and a2 > a1, (a1, a2)
    assert abs(s2 - time.time()) < 2


def test_page_etag_not_modified(server):
    """If-None-Match of the current ETag is answered 304 with no body; after a
    change the page comes again, with a new ETag."""
    import time
    bid = server.submit(["true"])["id"]
    for path in ("/", "/builds/%d" % bid):
        for _ in range(5):
            while time.time() % 1 > 0.3:  # early in a second
                time.sleep(0.02)
            r = server.get(path)
            etag = r.header("ETag")
            again = server.get(path, headers={"If-None-Match": etag})
            if again.status == 304:
                break
            assert again.status == 200 and again.header("ETag") != etag, again  # a new second
        assert again.status == 304 and not again.body, again
        assert again.header("ETag") == etag
        assert "default-src" in again.header("Content-Security-Policy")
        server.submit(["true"])  # a new store version
        later = server.get(path, headers={"If-None-Match": etag})
        assert later.status == 200 and later.header("ETag") != etag, later
        assert later.text.endswith("</html>\n")
    assert server.get("/", headers={"If-None-Match": '"0-0"'}).status == 200


def test_pages_under_concurrent_changes(server):
    """Many GETs at once while builds come and go: every answer is a whole
    page (no response sends a freed or half-written copy)."""
    import threading
    errors = []
    stop = threading.Event()

    def reader(path):
        while not stop.is_set():
            r = server.get(path)
            if r.status != 200 or not r.text.endswith("</main></body></html>\n"):
                errors.append((path, r.status, r.text[-200:]))
    bid = server.submit(["true"])["id"]
    threads = [threading.Thread(target=reader, args=(p,))
               for p in ("/", "/", "/builds/%d" % bid, "/")]
    for t in threads:
        t.start()
    try:
        for _ in range(30):
            b = server.submit(["true"])["id"]
            server.post("/api/builds/%d/cancel" % b)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert '<a href="/builds/%d">' % b in server.get("/").text
