"""Tests of the fake GitHub API server itself (tests/integration/fakegithub.py), over real
HTTP, so that yci's GitHub tests can trust it. Where the recorded GitHub data in
/work/shared/github is present, the fake's shapes and headers are checked against it."""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from fakegithub import DATA_DIR, FakeGitHub

TOKEN = "t0ken"
HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Used",
                "X-RateLimit-Reset", "X-RateLimit-Resource")


def fixture(name):
    path = os.path.join(DATA_DIR, name)
    if not os.path.exists(path):
        pytest.skip("recorded GitHub data not found: %s" % path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture
def gh(capfd):
    g = FakeGitHub(token=TOKEN, username="alice", password="s3cret").start()
    yield g
    g.stop()
    # The fake never writes to stderr except on a real bug in it.
    assert capfd.readouterr().err == ""


def call(gh, method, path, body=None, auth="token " + TOKEN, headers=None, timeout=10):
    """(status, headers, body bytes) of one request, any status."""
    url = path if path.startswith("http") else gh.url + path
    h = {"User-Agent": "yci-tests"}
    if auth:
        h["Authorization"] = auth
    h.update(headers or {})
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(gh, path, **kw):
    status, headers, body = call(gh, "GET", path, **kw)
    assert status == 200, (status, body)
    return json.loads(body), headers


def links(value):
    """{rel: url} of a Link header."""
    return {m.group(2): m.group(1) for m in re.finditer(r'<([^>]*)>; rel="(\w+)"', value or "")}


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def sha(n):
    return "%040x" % n


# ---------------------------------------------------------------------------
# Listing pull requests: pagination and conditional requests

def test_pagination_over_250_pulls(gh):
    repo = gh.add_repo("octo", "app", clone_url="/nonexistent/app.git")
    for i in range(250):
        gh.open_pull("octo", "app", head_sha=sha(i + 1), head_ref="f%d" % i)
    gh.open_pull("octo", "app", head_sha=sha(999), head_ref="gone")
    gh.close_pull("octo", "app", 251)

    base = "%s/repositories/%d/pulls?state=open&per_page=100&page=" % (gh.url, repo["id"])
    url = "/repos/octo/app/pulls?state=open&per_page=100"
    seen, pages, link_values = [], 0, []
    while url:
        items, headers = get_json(gh, url)
        pages += 1
        link_values.append(headers["Link"])
        seen += [p["number"] for p in items]
        assert len(items) == (100 if pages < 3 else 50)
        url = links(headers["Link"]).get("next")
    assert pages == 3
    assert seen == list(range(250, 0, -1))  # every open one once, newest first
    # Exactly GitHub's format (prev, next, last, first; /repositories/{id} URLs).
    assert link_values == [
        '<%s2>; rel="next", <%s3>; rel="last"' % (base, base),
        '<%s1>; rel="prev", <%s3>; rel="next", <%s3>; rel="last", <%s1>; rel="first"'
        % (base, base, base, base),
        '<%s2>; rel="prev", <%s1>; rel="first"' % (base, base),
    ]
    rec = fixture("rest/paginate-issues.json")
    shape = [re.sub(r"<[^>]*>", "<>", r["headers"]["link"]) for r in rec]
    assert [re.sub(r"<[^>]*>", "<>", v) for v in link_values] == [shape[0], shape[1], shape[4]]

    # per_page is capped at 100, defaults to 30; state=closed/all; one page → no Link.
    items, headers = get_json(gh, "/repos/octo/app/pulls?per_page=500")
    assert len(items) == 100
    items, headers = get_json(gh, "/repos/octo/app/pulls")
    assert len(items) == 30 and links(headers["Link"])["last"].endswith("page=9")
    items, headers = get_json(gh, "/repos/octo/app/pulls?state=closed")
    assert [p["number"] for p in items] == [251] and "Link" not in headers
    assert items[0]["state"] == "closed" and items[0]["closed_at"]
    items, _ = get_json(gh, "/repos/octo/app/pulls?state=all&per_page=1")
    assert items[0]["number"] == 251


def test_etag_304_until_a_push(gh):
    gh.add_repo("octo", "app")
    gh.open_pull("octo", "app", head_sha=sha(1))
    status, h1, body1 = call(gh, "GET", "/repos/octo/app/pulls")
    etag = h1["ETag"]
    assert status == 200 and re.fullmatch(r'W/"[0-9a-f]{64}"', etag)
    used = int(h1["X-RateLimit-Used"])

    for _ in range(3):  # unchanged: 304, no body, not counted against the rate limit
        status, h, body = call(gh, "GET", "/repos/octo/app/pulls",
                               headers={"If-None-Match": etag})
        assert (status, body) == (304, b"")
        assert h["ETag"] == etag and "Content-Length" not in h
        assert int(h["X-RateLimit-Used"]) == used
        assert h["X-RateLimit-Remaining"] == h1["X-RateLimit-Remaining"]
    before = json.loads(body1)[0]
    gh.push_pull("octo", "app", 1, sha(2))
    status, h2, body2 = call(gh, "GET", "/repos/octo/app/pulls", headers={"If-None-Match": etag})
    assert status == 200 and h2["ETag"] != etag
    assert int(h2["X-RateLimit-Used"]) == used + 1
    after = json.loads(body2)[0]
    assert after["head"]["sha"] == sha(2) and after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
    # The single pull request honours If-None-Match too, and a closed one leaves the list.
    _, h, _ = call(gh, "GET", "/repos/octo/app/pulls/1")
    assert call(gh, "GET", "/repos/octo/app/pulls/1",
                headers={"If-None-Match": h["ETag"]})[0] == 304
    gh.close_pull("octo", "app", 1)
    status, h3, body3 = call(gh, "GET", "/repos/octo/app/pulls",
                             headers={"If-None-Match": h2["ETag"]})
    assert status == 200 and json.loads(body3) == []


def test_shapes_match_github(gh):
    repo = gh.add_repo("octo", "app", clone_url="/srv/app.git", owner_type="Organization")
    rec = fixture("rest/get-repository.json")[0]
    got, headers = get_json(gh, "/repos/OCTO/App")  # names are case-insensitive
    assert list(got) == list(rec["response"])  # the same fields in the same order
    assert got["clone_url"] == "/srv/app.git" and got["full_name"] == "octo/app"
    assert got == repo and got["private"] is False
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    for h in RATE_HEADERS + ("X-GitHub-Request-Id", "ETag", "Last-Modified"):
        assert headers[h], h
    assert headers["X-RateLimit-Resource"] == "core"
    assert int(headers["X-RateLimit-Reset"]) > time.time()
    assert get_json(gh, "/repositories/%d" % repo["id"])[0]["full_name"] == "octo/app"

    pr = gh.open_pull("octo", "app", head_sha=sha(7), head_ref="feat", title="T", body=None,
                      head_repo=("mallory", "app", "/srv/fork.git"))
    hook = fixture("webhooks/pull_request_opened.payload.json")["pull_request"]
    single, _ = get_json(gh, "/repos/octo/app/pulls/1")
    assert single == pr and set(single) == set(hook)
    assert set(single["head"]) == set(hook["head"]) == set(single["base"])
    listed = get_json(gh, "/repos/octo/app/pulls")[0][0]
    full_only = {"merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments",
                 "review_comments", "maintainer_can_modify", "commits", "additions", "deletions",
                 "changed_files"}
    assert set(listed) == set(hook) - full_only
    assert listed["head"] == single["head"]
    head = single["head"]
    assert head["label"] == "mallory:feat" and head["sha"] == sha(7) and head["ref"] == "feat"
    assert head["repo"]["fork"] is True and head["repo"]["full_name"] == "mallory/app"
    assert head["repo"]["clone_url"] == "/srv/fork.git"
    assert single["base"]["repo"]["clone_url"] == "/srv/app.git"
    assert single["base"]["ref"] == "main" and single["user"]["login"] == "mallory"
    assert single["url"] == gh.url + "/repos/octo/app/pulls/1" and single["draft"] is False
    assert single["body"] is None and single["state"] == "open"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", single["created_at"])
    assert get_json(gh, "/repos/mallory/app")[0]["parent"]["full_name"] == "octo/app"

    # Webhook payloads made from the fake's state have the recorded payloads' fields.
    wh = fixture("webhooks/pull_request_synchronize.payload.json")
    gh.push_pull("octo", "app", 1, sha(8))
    mine = gh.pull_request_payload("octo", "app", 1, "synchronize")
    assert set(wh) - set(mine) == {"installation"} and set(mine) <= set(wh)
    assert (mine["before"], mine["after"]) == (sha(7), sha(8))
    push = fixture("webhooks/push_payload.json")
    assert set(gh.push_payload("octo", "app", "refs/heads/main", sha(1), sha(2))) == set(push)
    assert gh.payload("pull_request_opened.payload")["action"] == "opened"


def test_not_found_and_unknown_routes(gh):
    gh.add_repo("octo", "app")
    for path, doc in (("/repos/octo/nope", "get-a-repository"),
                      ("/repos/octo/nope/pulls", "list-pull-requests"),
                      ("/repos/octo/app/pulls/9", "get-a-pull-request")):
        status, headers, body = call(gh, "GET", path)
        assert status == 404
        d = json.loads(body)
        assert d["message"] == "Not Found" and d["documentation_url"].endswith("#" + doc)
        assert headers["X-RateLimit-Remaining"]
    status, _, body = call(gh, "GET", "/nothing/here")
    assert status == 404 and json.loads(body)["message"] == "Not Found"


# ---------------------------------------------------------------------------
# Commit statuses

def test_statuses_recorded_and_validated(gh):
    gh.add_repo("octo", "app")
    path = "/repos/octo/app/statuses/" + sha(5)
    post = {"state": "pending", "target_url": "http://ci/job/1", "description": "queued",
            "context": "yci/build"}
    status, headers, body = call(gh, "POST", path, post)
    assert status == 201
    obj = json.loads(body)
    rec = fixture("rest/create-status.json")[0]
    assert list(obj) == list(rec["response"])
    assert set(obj["creator"]) == set(rec["response"]["creator"])
    assert {k: obj[k] for k in post} == post
    assert headers["Location"] == obj["url"] == gh.url + path
    call(gh, "POST", path, {"state": "success", "context": "yci/build"})

    bad = [({"state": "bogus"}, 422, "Validation Failed"),
           ({"state": "success", "description": "x" * 141}, 422, "Validation Failed"),
           ({"description": "no state"}, 422, "Invalid request.\n\n\"state\" wasn't supplied."),
           (b'{"state": "success",', 400, "Problems parsing JSON")]
    for payload, code, message in bad:
        status, _, body = call(gh, "POST", path, payload)
        d = json.loads(body)
        assert (status, d["message"]) == (code, message), payload
        assert d["documentation_url"].endswith("#create-a-commit-status")
    status, _, body = call(gh, "POST", path, {"state": "bogus"})
    errors_rec = fixture("rest/errors.json")[0]["response"]
    d = json.loads(body)
    assert set(errors_rec) <= set(d)
    assert {"resource", "code", "field"} <= set(d["errors"][0])
    assert d["errors"][0]["field"] == "state"
    assert call(gh, "POST", "/repos/octo/app/statuses/abc123", {"state": "success"})[0] == 422
    assert call(gh, "POST", "/repos/octo/nope/statuses/" + sha(5), post)[0] == 404
    assert call(gh, "POST", path, {"state": "failure"}, auth="token wrong")[0] == 401
    assert call(gh, "POST", path, {"state": "success", "description": "y" * 140})[0] == 201

    got = gh.statuses("octo", "app", sha(5))
    assert [s["state"] for s in got] == ["pending", "success", "success"]
    assert {k: got[0][k] for k in post} == post and got[0]["sha"] == sha(5)
    assert got[0]["time"] <= got[1]["time"] <= time.time()
    assert gh.statuses("octo", "app", sha(6)) == [] and len(gh.statuses("octo", "app")) == 3
    assert gh.latest_states("octo", "app", sha(5)) == {"yci/build": "success",
                                                        "default": "success"}
    combined, _ = get_json(gh, "/repos/octo/app/commits/%s/status" % sha(5))
    assert combined["state"] == "success" and combined["total_count"] == 2
    listed, _ = get_json(gh, "/repos/octo/app/commits/%s/statuses" % sha(5))
    assert [s["state"] for s in listed] == ["success", "success", "pending"]


# ---------------------------------------------------------------------------
# Authentication

def test_authentication(gh):
    gh.add_repo("octo", "app")
    path = "/repos/octo/app"
    status, headers, body = call(gh, "GET", path, auth=None)
    assert status == 401 and json.loads(body)["message"] == "Requires authentication"
    for auth in ("token nope", "Bearer nope", basic("alice", "wrong"), basic("bob", "s3cret"),
                 "Basic !!!", "Digest x"):
        status, headers, body = call(gh, "GET", path, auth=auth)
        assert status == 401, auth
        assert json.loads(body) == {"message": "Bad credentials",
                                    "documentation_url": "https://docs.github.com/rest",
                                    "status": "401"}
        assert headers["X-RateLimit-Limit"] == "60"
    for auth in ("token " + TOKEN, "Bearer " + TOKEN, basic("alice", "s3cret"),
                 basic("alice", TOKEN)):
        assert call(gh, "GET", path, auth=auth)[0] == 200, auth
    # The authenticated user.
    assert get_json(gh, "/user")[0]["login"] == "alice"

    # No credentials configured: everything is let in.
    open_gh = FakeGitHub(token=None).start()
    try:
        open_gh.add_repo("octo", "app")
        assert call(open_gh, "GET", path, auth=None)[0] == 200
        assert call(open_gh, "GET", path, auth="token whatever")[0] == 200
    finally:
        open_gh.stop()
    # allow_anonymous: GitHub's behaviour without credentials (public only, 60 an hour).
    anon = FakeGitHub(token=TOKEN, allow_anonymous=True).start()
    try:
        anon.add_repo("octo", "app")
        anon.add_repo("octo", "secret", private=True)
        status, headers, _ = call(anon, "GET", path, auth=None)
        assert status == 200 and headers["X-RateLimit-Limit"] == "60"
        assert call(anon, "GET", "/repos/octo/secret", auth=None)[0] == 404
        assert call(anon, "GET", "/repos/octo/secret")[0] == 200
    finally:
        anon.stop()


def test_user_agent_is_required(gh):
    gh.add_repo("octo", "app")
    conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5)
    conn.request("GET", "/repos/octo/app", headers={"Authorization": "token " + TOKEN})
    resp = conn.getresponse()
    assert resp.status == 403 and b"User-Agent" in resp.read()
    conn.close()


# ---------------------------------------------------------------------------
# Failures and rate limits on demand

def test_fail_next_and_rate_limits(gh):
    gh.add_repo("octo", "app")
    gh.fail_next(2, status=502, path_prefix="/repos/octo/app/pulls")
    assert call(gh, "GET", "/repos/octo/app")[0] == 200          # another path
    status, _, body = call(gh, "GET", "/repos/octo/app/pulls")
    assert (status, json.loads(body)) == (502, {"message": "Server Error"})
    assert call(gh, "GET", "/repos/octo/app/pulls")[0] == 502
    assert call(gh, "GET", "/repos/octo/app/pulls")[0] == 200
    gh.fail_next(1, status=500)
    assert call(gh, "POST", "/repos/octo/app/statuses/" + sha(1), {"state": "success"})[0] == 500
    assert gh.statuses("octo", "app") == []                       # nothing recorded

    # 403: the primary rate limit (X-RateLimit-Remaining 0 until X-RateLimit-Reset).
    gh.fail_next(1, status=403, reset_in=30)
    status, h, body = call(gh, "GET", "/repos/octo/app")
    d = json.loads(body)
    assert status == 403 and d["message"].startswith("API rate limit exceeded for user ID ")
    assert h["X-RateLimit-Remaining"] == "0"
    assert 25 <= int(h["X-RateLimit-Reset"]) - time.time() <= 31
    assert h["X-GitHub-Request-Id"] in d["message"]
    # 429 with Retry-After: a secondary rate limit.
    gh.fail_next(1, status=429, retry_after=7)
    status, h, body = call(gh, "GET", "/repos/octo/app")
    assert status == 429 and h["Retry-After"] == "7"
    assert "secondary rate limit" in json.loads(body)["message"]
    assert call(gh, "GET", "/repos/octo/app")[0] == 200

    # rate_limit(): exhausted until the reset, 304s and all; then a new window.
    gh.rate_limit(remaining=0, reset_in=1)
    status, h, body = call(gh, "GET", "/repos/octo/app")
    assert status == 403 and h["X-RateLimit-Remaining"] == "0"
    assert h["X-RateLimit-Used"] == h["X-RateLimit-Limit"] == "5000"
    reset = int(h["X-RateLimit-Reset"])
    assert json.loads(body)["documentation_url"].startswith("https://docs.github.com/rest/")
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    status, h, _ = call(gh, "GET", "/repos/octo/app")
    assert status == 200 and h["X-RateLimit-Remaining"] == "4999"
    gh.rate_limit(remaining=2, reset_in=60, status=429)
    assert [call(gh, "GET", "/repos/octo/app")[0] for _ in range(3)] == [200, 200, 429]
    rl, _ = get_json(gh, "/rate_limit")                           # not counted, always served
    assert rl["resources"]["core"]["remaining"] == 0


def test_delay_next_client_timeout_and_keep_alive(gh):
    gh.add_repo("octo", "app")
    gh.delay_next(1, 1.0)
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        call(gh, "GET", "/repos/octo/app", timeout=0.3)
    t0 = time.monotonic()
    assert call(gh, "GET", "/repos/octo/app")[0] == 200
    assert time.monotonic() - t0 < 0.9  # not delayed (the delay was 1 s)

    # HTTP/1.1 keep-alive: many requests, one connection, correct Content-Length.
    conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5)
    hdrs = {"Authorization": "token " + TOKEN, "User-Agent": "yci-tests"}
    local = None
    for i in range(5):
        body = json.dumps({"state": "success", "context": "c%d" % i})
        conn.request("POST", "/repos/octo/app/statuses/" + sha(3), body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 201 and int(resp.getheader("Content-Length")) == len(data)
        conn.request("GET", "/repos/octo/app/pulls", headers=dict(hdrs, **{
            "If-None-Match": 'W/"x"'}))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"[]"
        local = local or conn.sock.getsockname()
        assert conn.sock.getsockname() == local
    conn.close()
    time.sleep(1.0)  # the delayed answer to the timed-out client goes nowhere, quietly

    # Thread-safe: concurrent clients.
    results = []

    def worker(n):
        for i in range(10):
            results.append(call(gh, "POST", "/repos/octo/app/statuses/" + sha(4),
                                {"state": "pending", "context": "w%d" % n})[0])
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 80 and len(gh.statuses("octo", "app", sha(4))) == 80
    assert len([r for r in gh.requests if r[0] == "POST"]) == 85
    method, path, headers, body = gh.requests[-1]
    assert method == "POST" and headers["authorization"] == "token " + TOKEN
    assert headers["Authorization"] == "token " + TOKEN and json.loads(body)["state"] == "pending"


def test_stop_closes_connections_and_restart(gh):
    gh.add_repo("octo", "app")
    conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5)
    hdrs = {"Authorization": "token " + TOKEN, "User-Agent": "yci-tests"}
    conn.request("GET", "/repos/octo/app", headers=hdrs)
    assert conn.getresponse().read()
    port = gh.port
    gh.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/repos/octo/app", headers=hdrs)
        conn.getresponse().read()
    conn.close()
    gh.start(port)  # GitHub is back, same URL, same state
    assert call(gh, "GET", "/repos/octo/app")[0] == 200


# ---------------------------------------------------------------------------
# Webhooks

class _Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    SECRET = b"hook-s3cret"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((dict(self.headers), body))
        want = "sha256=" + hmac.new(self.SECRET, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(self.headers.get("X-Hub-Signature-256", ""), want)
        reply = b"accepted" if ok else b"bad signature"
        self.send_response(202 if ok else 401)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def test_webhook_is_signed_like_github(gh):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    srv.got = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/hooks/github" % srv.server_address[1]
    try:
        payload = gh.payload("pull_request_opened.payload")
        assert gh.webhook("pull_request", payload, "hook-s3cret", url) == (202, b"accepted")
        headers, body = srv.got[-1]
        assert json.loads(body) == payload
        assert headers["X-GitHub-Event"] == "pull_request"
        assert uuid.UUID(headers["X-GitHub-Delivery"])
        assert headers["User-Agent"].startswith("GitHub-Hookshot/")
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Hub-Signature-256"] == FakeGitHub.sign(body, "hook-s3cret")
        assert headers["X-Hub-Signature"] == \
            "sha1=" + hmac.new(b"hook-s3cret", body, hashlib.sha1).hexdigest()

        assert gh.webhook("ping", {"zen": "x"}, "other", url, delivery="d-1")[0] == 401
        assert srv.got[-1][0]["X-GitHub-Delivery"] == "d-1"
        assert gh.webhook("push", b'{"a": 1}', "hook-s3cret", url,
                          signature="sha256=" + "0" * 64)[0] == 401
        assert gh.webhook("push", "{}", None, url)[0] == 401
        assert "X-Hub-Signature-256" not in srv.got[-1][0]
        raw = b'{\n  "ref": "refs/heads/main"\n}'  # the raw bytes are what is signed
        assert gh.webhook("push", raw, "hook-s3cret", url)[0] == 202
        assert srv.got[-1][1] == raw
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------------------
# refs/pull/N/head in local bare repositories, and standalone use

def _git(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git"] + list(args), cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_pull_refs_in_bare_repositories(gh, tmp_path):
    work, base, fork = tmp_path / "work", tmp_path / "app.git", tmp_path / "fork.git"
    _git("init", "-q", "-b", "main", str(work))
    _git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    main_sha = _git("rev-parse", "HEAD", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(base))
    _git("clone", "-q", "--bare", str(work), str(fork))
    _git("checkout", "-q", "-b", "feature", cwd=work)
    _git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
    _git("push", "-q", str(fork), "feature", cwd=work)
    first = _git("rev-parse", "HEAD", cwd=work)

    gh.add_repo("octo", "app", clone_url=str(base))
    pr = gh.open_pull("octo", "app", head_repo=("mallory", "app", str(fork)))
    assert pr["head"]["sha"] == first and pr["base"]["sha"] == main_sha
    assert _git("--git-dir", str(base), "rev-parse", "refs/pull/1/head") == first
    _git("commit", "-q", "--allow-empty", "-m", "three", cwd=work)
    _git("push", "-q", str(fork), "feature", cwd=work)
    second = _git("rev-parse", "HEAD", cwd=work)
    gh.push_pull("octo", "app", 1, second)
    assert _git("--git-dir", str(base), "rev-parse", "refs/pull/1/head") == second
    assert _git("--git-dir", str(base), "for-each-ref", "refs/fakegithub") == ""
    with pytest.raises(ValueError):
        gh.push_pull("octo", "app", 1, sha(12345))


def test_standalone(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([PY, os.path.join(HERE, "fakegithub.py"), "--port", str(port),
                          "--token", "tk", "--repo", "octo/app=/srv/app.git"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.strip() == "fakegithub listening on http://127.0.0.1:%d" % port
        fake = FakeGitHub(token=None)
        fake.url = "http://127.0.0.1:%d" % port
        status, _, body = call(fake, "POST", "/_fake/open_pull", auth=None, body={
            "owner": "octo", "name": "app", "head_sha": sha(1)})
        assert status == 200 and json.loads(body)["number"] == 1
        items = json.loads(call(fake, "GET", "/repos/octo/app/pulls", auth="token tk")[2])
        assert [i["head"]["sha"] for i in items] == [sha(1)]
        assert items[0]["base"]["repo"]["clone_url"] == "/srv/app.git"
        assert call(fake, "GET", "/repos/octo/app", auth="token bad")[0] == 401
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert p.returncode == 0 and err == ""
