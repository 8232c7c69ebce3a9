"""Malformed JSON, wrong types, oversized bodies, unknown routes, bad tokens,
wrong methods: a 4xx with a JSON error, never a crash."""

import json
import random
import socket

import pytest

from conftest import wait_until

ADMIN, SECRET, RUNNER, NONE, BOGUS = "admin", "secret", "runner", "none", "bogus"

VALID_BUILD = {"jobs": [{"name": "a", "commands": ["true"], "env": {}, "labels": {},
                         "timeout": 10}]}


def nested(depth):
    v = 1
    for _ in range(depth):
        v = {"k": v}
    return {"url": "/tmp/x", "name": "deep", "extra": v}


# (id, method, path, body, token, accepted statuses)
CASES = [
    # malformed JSON and wrong types
    ("not-json", "POST", "/api/builds", b"{not json", ADMIN, {400}),
    ("truncated-json", "POST", "/api/builds", b'{"jobs": [', ADMIN, {400}),
    ("empty-body", "POST", "/api/builds", b"", ADMIN, {400}),
    ("json-null", "POST", "/api/builds", b"null", ADMIN, {400}),
    ("json-array", "POST", "/api/builds", b"[]", ADMIN, {400}),
    ("bad-utf8", "POST", "/api/repos", b'{"url": "\xff\xfe"}', ADMIN, {400}),
    ("nul-in-string", "POST", "/api/repos", b'{"url": "/tmp/a\\u0000b"}', ADMIN, {400}),
    ("repo-is-number", "POST", "/api/builds", {"repo": 5, "branch": "main"}, ADMIN, {400}),
    ("jobs-is-string", "POST", "/api/builds", {"jobs": "true"}, ADMIN, {400}),
    ("job-name-number", "POST", "/api/builds", {"jobs": [{"name": 1, "commands": ["true"]}]},
     ADMIN, {400}),
    ("commands-not-strings", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": [1, 2]}]}, ADMIN, {400}),
    ("env-not-object", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "env": ["X=1"]}]}, ADMIN, {400}),
    ("labels-not-strings", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "labels": {"gpu": 1}}]}, ADMIN, {400}),
    ("timeout-negative", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "timeout": -5}]}, ADMIN, {400}),
    ("timeout-string", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "timeout": "ten"}]}, ADMIN, {400}),
    # The rules of a pipeline's jobs: no unknown or internal keys, no empty
    # command, .yci.yml's limits.
    ("job-kind-plan", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "kind": "plan"}]}, ADMIN, {400}),
    ("job-unknown-key", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "extra": 1}]}, ADMIN, {400}),
    ("job-submodules", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "submodules": True}]}, ADMIN, {400}),
    ("retry-unknown-key", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "retry": {"count": 2, "x": 1}}]}, ADMIN,
     {400}),
    ("command-empty", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": [""]}]}, ADMIN, {400}),
    ("timeout-past-7-days", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "timeout": 2147483647}]}, ADMIN, {400}),
    ("env-too-long", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["true"], "env": {"BIG": "x" * 200000}}]}, ADMIN, {400}),
    ("too-many-jobs", "POST", "/api/builds",
     {"jobs": [{"name": "j%d" % i, "commands": ["true"]} for i in range(257)]}, ADMIN, {400, 413}),
    ("unknown-repo-build", "POST", "/api/builds", {"repo": "nope", "branch": "main"}, ADMIN,
     {400, 404}),
    ("repo-no-url", "POST", "/api/repos", {}, ADMIN, {400}),
    ("repo-url-number", "POST", "/api/repos", {"url": 7}, ADMIN, {400}),
    ("repo-name-traversal", "POST", "/api/repos", {"url": "/tmp/x", "name": "../evil"}, ADMIN,
     {400}),
    ("repo-name-slash", "POST", "/api/repos", {"url": "/tmp/x", "name": "a/b"}, ADMIN, {400}),
    ("repo-name-dot", "POST", "/api/repos", {"url": "/tmp/x", "name": ".hidden"}, ADMIN, {400}),
    ("repo-name-dash", "POST", "/api/repos", {"url": "/tmp/x", "name": "-oops"}, ADMIN, {400}),
    ("repo-name-long", "POST", "/api/repos", {"url": "/tmp/x", "name": "a" * 300}, ADMIN, {400}),
    ("too-deep", "POST", "/api/repos", nested(40), ADMIN, {400}),
    ("register-name-number", "POST", "/api/runners/register", {"name": 5}, SECRET, {400}),
    ("register-slots-string", "POST", "/api/runners/register",
     {"name": "r", "labels": {}, "slots": "two"}, SECRET, {400}),
    ("heartbeat-jobs-string", "POST", "/api/runners/heartbeat", {"jobs": "x"}, RUNNER, {400}),
    # oversized
    ("body-2mb", "POST", "/api/builds",
     {"jobs": [{"name": "a", "commands": ["x" * (2 * 1024 * 1024)]}]}, ADMIN, {413}),
    ("body-2mb-register", "POST", "/api/runners/register", b"{" + b" " * (2 << 20) + b"}",
     SECRET, {413}),
    # unknown routes and objects
    ("unknown-api-route", "GET", "/api/nope", None, NONE, {404}),
    ("no-such-build", "GET", "/api/builds/987654", None, NONE, {404}),
    ("build-id-text", "GET", "/api/builds/abc", None, NONE, {400, 404}),
    ("build-id-huge", "GET", "/api/builds/99999999999999999999999", None, NONE, {400, 404}),
    ("no-such-job", "GET", "/api/jobs/987654", None, NONE, {404}),
    ("no-such-job-log", "GET", "/api/jobs/987654/log", None, NONE, {404}),
    ("no-such-repo", "GET", "/api/repos/nope", None, NONE, {404}),
    ("rebuild-missing", "POST", "/api/builds/987654/rebuild", {}, ADMIN, {404}),
    ("cancel-missing", "POST", "/api/builds/987654/cancel", {}, ADMIN, {404}),
    # wrong methods
    ("delete-builds", "DELETE", "/api/builds", None, ADMIN, {405}),
    ("put-repos", "PUT", "/api/repos", {"url": "/x"}, ADMIN, {405}),
    ("get-claim", "GET", "/api/runners/claim", None, RUNNER, {405}),
    ("get-register", "GET", "/api/runners/register", None, NONE, {405}),
    ("post-health", "POST", "/api/health", {}, ADMIN, {405}),
    # tokens
    ("no-token", "POST", "/api/builds", VALID_BUILD, NONE, {401}),
    ("bogus-token", "POST", "/api/builds", VALID_BUILD, BOGUS, {401}),
    ("secret-as-admin", "POST", "/api/builds", VALID_BUILD, SECRET, {401, 403}),
    ("runner-as-admin", "POST", "/api/builds", VALID_BUILD, RUNNER, {403}),
    ("repo-no-token", "POST", "/api/repos", {"url": "/tmp/x"}, NONE, {401}),
    ("register-bogus", "POST", "/api/runners/register", {"name": "r"}, BOGUS, {401}),
    ("claim-no-token", "POST", "/api/runners/claim?wait=1", {}, NONE, {401}),
    ("claim-admin", "POST", "/api/runners/claim?wait=1", {}, ADMIN, {401, 403}),
    ("heartbeat-bogus", "POST", "/api/runners/heartbeat", {"jobs": []}, BOGUS, {401}),
    ("malformed-auth", "POST", "/api/builds", VALID_BUILD, "Basic xyz", {401}),
]


def assert_json_error(r, accepted):
    assert r.status in accepted, "expected %s, got %r" % (sorted(accepted), r)
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


def token_for(server, kind, runner_token):
    return {ADMIN: server.admin_token, SECRET: server.secret, RUNNER: runner_token,
            NONE: None, BOGUS: "x" * 40}.get(kind, kind)


@pytest.fixture
def runner_token(server):
    r = server.post("/api/runners/register",
                    {"name": "probe", "labels": {}, "platform": {"os": "Linux", "release": "x",
                                                                "machine": "x"},
                     "slots": 1, "heartbeat": 10}, token=server.secret)
    assert r.status == 201, r
    return r.json()["token"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_json_4xx(ctx, server, runner_token, case):
    _, method, path, body, kind, accepted = case
    tok = token_for(server, kind, runner_token)
    headers = {}
    if kind == "Basic xyz":
        headers["Authorization"], tok = "Basic xyz", None
    r = server.request(method, path, body, token=tok, headers=headers)
    assert_json_error(r, accepted)
    assert server.alive() and server.get("/api/health").status == 200
    # Nothing was created by a refused request.
    if method == "POST" and path in ("/api/builds", "/api/repos"):
        assert server.get_json(path) == []


def test_bad_log_chunks(ctx, server, runner_token):
    server.submit_jobs(["true"])
    r = server.post("/api/runners/claim?wait=10", {}, token=runner_token, timeout=20)
    assert r.status == 200, r
    job = r.json()
    base = "/api/jobs/%s/log?attempt=%d" % (job["id"], job["attempt"])
    # 2 MB in one chunk: over the limit.
    assert_json_error(server.post(base + "&offset=0", b"x" * (2 << 20), token=runner_token),
                      {413})
    # Offsets that are not numbers, negative, missing.
    for q in ("&offset=abc", "&offset=-1", "", "&offset=99999999999999999999999"):
        assert_json_error(server.post(base + q, b"abc", token=runner_token), {400, 409})
    assert_json_error(server.post("/api/jobs/%s/log?attempt=zz&offset=0" % job["id"], b"a",
                                  token=runner_token), {400, 409})
    # Not this runner's token / no token.
    assert_json_error(server.post(base + "&offset=0", b"a", token=None), {401})
    assert_json_error(server.post(base + "&offset=0", b"a", token=server.admin_token), {401, 403})
    # Finish with a wrong status value or type.
    fin = "/api/jobs/%s/finish" % job["id"]
    assert_json_error(server.post(fin, {"attempt": job["attempt"], "status": "great"},
                                  token=runner_token), {400})
    assert_json_error(server.post(fin, {"attempt": "1", "status": "passed"},
                                  token=runner_token), {400})
    # None of that broke the job: a correct finish still works.
    r = server.post(base + "&offset=0", b"fine\n", token=runner_token)
    assert r.status == 200 and r.json()["size"] == 5, r
    r = server.post(fin, {"attempt": job["attempt"], "status": "passed", "exit_code": 0},
                    token=runner_token)
    assert r.status == 200, r
    assert server.log(job["id"]) == b"fine\n"


def test_unknown_page_outside_the_api_is_404(ctx, server):
    # Outside /api/ the dashboard answers (HTML is fine there).
    r = server.get("/nope/at/all")
    assert r.status == 404, r
    assert server.alive()


def test_garbage_on_the_socket_and_random_bodies(ctx, server):
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02" * 1000,
                b"POST /api/builds HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
                b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            try:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
            except OSError:
                pass
        assert server.get("/api/health").status == 200

    # Random mutations of valid bodies: never a 5xx, never a crash.
    rnd = random.Random(1234)
    valid = json.dumps(VALID_BUILD).encode()
    for i in range(300):
        b = bytearray(valid)
        for _ in range(rnd.randint(1, 6)):
            op = rnd.randrange(3)
            pos = rnd.randrange(len(b) + 1)
            if op == 0 and b:
                del b[min(pos, len(b) - 1)]
            elif op == 1:
                b.insert(pos, rnd.randrange(256))
            else:
                b[min(pos, len(b) - 1)] = rnd.choice(b'{}[]",:0-e.\\u')
        r = server.post("/api/builds", bytes(b), headers={"Content-Type": "application/json"})
        assert r.status < 500, (bytes(b), r)
        if r.status >= 400:
            assert_json_error(r, {r.status})
    assert server.alive()
    wait_until(lambda: server.get("/api/health").status == 200, 5)


def test_repository_url_cannot_inject_git_options(ctx, server, tmp_path):
    pwned = tmp_path / "pwned"
    urls = ["--upload-pack=touch %s" % pwned, "-u touch %s" % pwned,
            "ext::sh -c touch%% %s" % pwned]
    for i, url in enumerate(urls):
        name = "opt%d" % i
        r = server.post("/api/repos", {"url": url, "name": name})
        if r.status == 201:
            # Accepted as a URL: fetching it must fail, not run anything.
            wait_until(lambda: server.repo(name)["last_error"], 20,
                       what="an error on the repository %r" % url)
        else:
            assert_json_error(r, {400})
    assert not pwned.exists(), "a repository URL ran a command"
    assert server.alive() and server.get("/api/health").status == 200


def test_an_encoded_nul_in_the_path_routes_nowhere(ctx, server):
    """libmicrohttpd decodes the path before yci sees it: a %00 used to end it
    there, so /api/builds/1%00/x was build 1 and a POST to
    /api/repos/y%00x/poll was a GET-only route."""
    import http.client
    build, _ = server.submit_jobs([{"name": "a", "commands": ["true"]}])
    bid = build["id"]
    assert server.get("/api/builds/%d" % bid).status == 200
    for method, path in (("GET", "/api/builds/%d%%00/x" % bid), ("GET", "/api/builds/%d%%00" % bid),
                         ("GET", "/api/jobs/1%00zzz/log"), ("GET", "/badge/x%00/main.svg"),
                         ("POST", "/api/repos/y%00garbage/poll")):
        r = server.request(method, path, {} if method == "POST" else None)
        assert r.status in (400, 404), (path, r.status, r.body)
        assert json.loads(r.body)["error"], r.body
    # Query arguments too: an encoded NUL is no number.
    r = server.get("/api/builds?limit=5%00")
    assert r.status == 400, r.body
    # Escapes that are not a NUL still decode.
    assert server.get("/api/build%%73/%d" % bid).status == 200
    # One X-Content-Type-Options per response, errors included.
    for path in ("/api/builds/987654", "/api/builds/%d" % bid):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        names = [k.lower() for k, _ in resp.getheaders()]
        conn.close()
        assert names.count("x-content-type-options") == 1, (path, resp.getheaders())
        assert names.count("content-type") == 1, (path, resp.getheaders())
