"""GitHub, against the fake GitHub API (fakegithub.py): yci server configured by
seed 000's variables builds each open pull request's head, marks forks
untrusted, hands the pull request to .yci.py, cancels a closed pull request's
jobs, and reports one commit status per job and per build through a durable
outbox that survives 5xx answers, rate limits and a server restart."""

import pytest

from conftest import wait_until
from fakegithub import FakeGitHub

TOKEN = "t0ken-of-the-tests"
SLOW_YML = "jobs:\n  slow:\n    run: sleep 30\n"
PASS_YML = "jobs:\n  unit:\n    run: echo yci-pr-ran\n  lint:\n    run: 'true'\n"


@pytest.fixture
def gh():
    g = FakeGitHub(token=TOKEN).start()
    yield g
    g.stop()


def github_server(ctx, gh, repos="octo/proj", token=TOKEN, extra_env=None, **kw):
    srv = ctx.server(**kw)
    env = {"GITHUB_REPOSITORIES": repos, "GITHUB_ACCESS_TOKEN": token,
           "GITHUB_API_URL": gh.url, "HTTP_ROOT": "https://ci.example.org/"}
    env.update(extra_env or {})
    srv.env = ctx.env(**env)
    return srv.start()


def project(gitrepo, gh, files=None):
    """The GitHub repository octo/proj: its clone_url is a local bare repo."""
    repo = gitrepo("proj")
    repo.commit(files or {".yci.yml": PASS_YML})
    gh.add_repo("octo", "proj", clone_url=repo.path)
    return repo


def open_pr(repo, gh, branch="feature", files=None, number=None):
    repo.checkout(branch, new=True)
    sha = repo.commit(files or {"feature.txt": "x\n"})
    repo.checkout("main")
    return sha, gh.open_pull("octo", "proj", number=number, head_ref=branch, head_sha=sha)


def pr_builds(server, number):
    return [b for b in server.builds(repo="octo.proj", limit=100)
            if b.get("pull_number") == number]


def wait_pr_build(server, number, sha, finished=True, timeout=60):
    def found():
        for b in pr_builds(server, number):
            if b["commit"] == sha and (not finished or b["status"] not in ("queued", "running")):
                return b
        return None
    return wait_until(found, timeout, what="build of pull request #%d at %s" % (number, sha[:7]))


def test_pull_request_is_built_and_reported(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh)
    ctx.runner(server, slots=2).start()
    sha, pull = open_pr(repo, gh)
    # The repository is registered under owner.repo, marked as GitHub's.
    r = wait_until(lambda: server.get_json("/api/repos/octo.proj")
                   if server.get("/api/repos/octo.proj").status == 200 else None, 30,
                   what="octo.proj registered")
    assert r["github"] == "octo/proj" and r["url"] == repo.path, r
    b = wait_pr_build(server, 1, sha)
    # One build for the pull request and its branch (made for whichever
    # ref a poll saw first).
    assert b["status"] == "passed", b
    assert b["ref"] in ("refs/pull/1/head", "refs/heads/feature"), b
    assert [x["id"] for x in commit_builds(server, sha)] == [b["id"]]
    assert b["untrusted"] is False, b
    jobs = {j["name"]: j for j in server.build(b["id"])["jobs"]}
    assert "yci-pr-ran" in server.log(jobs["unit"]["id"]).decode()

    # One status per job and one for the build, final ones success.
    targets = ["https://ci.example.org/jobs/%d" % j["id"] for j in jobs.values()]
    targets.append("https://ci.example.org/builds/%d" % b["id"])

    def final():
        sent = gh.statuses("octo", "proj", sha)
        last = {t: [s["state"] for s in sent if s["target_url"] == t][-1:] for t in targets}
        return sent if all(v and v[0] != "pending" for v in last.values()) else None
    sent = wait_until(final, 30, what="final statuses")
    states = gh.latest_states("octo", "proj", sha)
    assert states == {"yci": "success", "yci/unit": "success", "yci/lint": "success"}, states
    # The newest state is the last one sent: a pending may be skipped (the
    # outbox sends the latest), never sent after the final one.
    for t in targets:
        seq = [s["state"] for s in sent if s["target_url"] == t]
        assert seq[-1] == "success" and "pending" not in seq[seq.index("success"):], (t, seq)
    unit = [s for s in sent if s["context"] == "yci/unit"]
    assert unit[-1]["target_url"] == "https://ci.example.org/jobs/%d" % jobs["unit"]["id"]
    assert unit[-1]["description"].startswith("passed in "), unit[-1]
    build_status = [s for s in sent if s["context"] == "yci"][-1]
    assert build_status["target_url"] == "https://ci.example.org/builds/%d" % b["id"]
    # The token went as GitHub wants it.
    auths = {h.get("authorization") for (_, _, h, _) in gh.requests}
    assert auths == {"token " + TOKEN}, auths
    # The main branch was built too, as any branch.
    assert server.wait_commit_build("octo.proj", repo.head("main"), timeout=30)["status"] == "passed"
    assert "HTTP_ROOT is not set" not in server.output()


def test_without_http_root_the_links_are_the_servers_and_it_says_so(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh, extra_env={"HTTP_ROOT": ""})
    assert "HTTP_ROOT is not set: the commit statuses link to %s/jobs/ID" % server.url \
        in server.output(), server.output()
    ctx.runner(server).start()
    sha = repo.head("main")
    b = server.wait_commit_build("octo.proj", sha, timeout=60)
    want = "%s/builds/%d" % (server.url, b["id"])
    wait_until(lambda: any(s["target_url"] == want for s in gh.statuses("octo", "proj", sha)),
               30, what="a status linking to the server's own build page")


def test_unchanged_pull_requests_cost_no_rate_limit(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh)
    ctx.runner(server).start()
    sha, _ = open_pr(repo, gh)
    wait_pr_build(server, 1, sha)
    gh.clear_requests()
    server.wait_polls("octo.proj", n=2)
    lists = [(m, p, h) for (m, p, h, _) in gh.requests if "/pulls" in p and m == "GET"]
    assert lists, gh.requests
    assert all(h.get("if-none-match") for (_, _, h) in lists), lists
    codes = [code for (m, p, code) in gh.responses if "/pulls" in p and m == "GET"]
    assert codes and set(codes) == {304}, codes
    # A change shows at once: a new pull request is built.
    sha2, _ = open_pr(repo, gh, branch="other")
    assert wait_pr_build(server, 2, sha2)["status"] == "passed"


def test_fork_is_untrusted_and_pull_reaches_yci_py(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    fork = gitrepo("fork")
    fork.git("fetch", "-q", repo.path, "main")
    fork.git("reset", "-q", "--hard", "FETCH_HEAD")
    sha = fork.commit({".yci.yml": None, ".yci.py": (
        "from yci.run import Bash\n"
        "def test_generator(build_id, pull):\n"
        "    yield Bash('true', name='pr%d from %s' % (pull['number'],\n"
        "                                              pull['head']['repo']['full_name']))\n")})
    server = github_server(ctx, gh)
    ctx.runner(server).start()
    gh.open_pull("octo", "proj", head_ref="main", head_sha=sha,
                 head_repo=("mallory", "proj", fork.path))
    b = wait_pr_build(server, 1, sha)
    assert b["untrusted"] is True, b
    assert b["status"] == "passed", b
    out = ctx.cli("build", b["id"], server=server, check=True).stdout
    assert "pull       #1 (untrusted: from a fork)" in out, out
    page = server.get("/builds/%d" % b["id"]).text
    assert "pull request #1 (fork)" in page and "untrusted: from a fork" in page, page
    names = [j["name"] for j in server.build(b["id"])["jobs"]]
    assert names == [".yci.py", "pr1 from mallory/proj"], names


def test_new_push_supersedes_and_close_cancels(ctx, gh, gitrepo):
    """A pull request's own builds (here a fork's: a same-repository pull
    request shares its branch's build, test_a_pull_request_and_its_branch_are_
    built_once) are superseded by a push and cancelled by closing it."""
    repo = project(gitrepo, gh, {".yci.yml": SLOW_YML})
    fork = gitrepo("fork")
    fork.git("fetch", "-q", repo.path, "main")
    fork.git("reset", "-q", "--hard", "FETCH_HEAD")
    sha1 = fork.commit({"feature.txt": "x\n"})
    server = github_server(ctx, gh)
    ctx.runner(server).start()
    gh.open_pull("octo", "proj", head_ref="main", head_sha=sha1,
                 head_repo=("mallory", "proj", fork.path))
    wait_pr_build(server, 1, sha1, finished=False)
    sha2 = fork.commit({"more.txt": "y\n"})
    gh.push_pull("octo", "proj", 1, sha2)
    b1 = wait_pr_build(server, 1, sha1)
    assert b1["status"] == "cancelled", b1
    assert any("superseded by build" in e["message"] for e in server.build(b1["id"])["events"])
    b2 = wait_pr_build(server, 1, sha2, finished=False)
    gh.close_pull("octo", "proj", 1)
    b2 = wait_pr_build(server, 1, sha2)
    assert b2["status"] == "cancelled", b2
    events = [e["message"] for e in server.build(b2["id"])["events"]]
    assert any(m.startswith("pull request #1 was closed") for m in events), events
    # GitHub hears that too.
    wait_until(lambda: gh.latest_states("octo", "proj", sha2).get("yci") == "error", 30,
               what="the closed pull request's build status")
    # Reopened: built again, though that commit had a (cancelled) build.
    gh.reopen_pull("octo", "proj", 1)
    b3 = wait_until(lambda: next((b for b in pr_builds(server, 1) if b["commit"] == sha2 and
                                  b["id"] != b2["id"]), None), 30, what="a build after reopening")
    assert b3["status"] in ("queued", "running"), b3


def test_statuses_survive_errors_rate_limits_and_restarts(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh)
    runner = ctx.runner(server).start()
    # GitHub fails the first status posts, then rate-limits.
    gh.fail_next(3, status=502, path_prefix="/repos/octo/proj/statuses")
    gh.fail_next(1, status=403, path_prefix="/repos/octo/proj/statuses", reset_in=2)
    gh.fail_next(1, status=429, path_prefix="/repos/octo/proj/statuses", retry_after=1)
    sha, _ = open_pr(repo, gh)
    wait_pr_build(server, 1, sha)
    wait_until(lambda: gh.latest_states("octo", "proj", sha).get("yci") == "success", 60,
               what="statuses delivered after failures")
    codes = [c for (m, p, c) in gh.responses if p.startswith("/repos/octo/proj/statuses")]
    assert codes[:5] == [502, 502, 502, 403, 429], codes
    assert "GitHub rate limited the statuses" in server.output()
    # GitHub goes away; a second pull request is built meanwhile, and the
    # server restarts before it can report: nothing is lost.
    gh.stop()
    sha2, _ = open_pr(repo, gh, branch="second")
    server.stop()
    gh.start(port=gh.port)
    server.start()
    b = wait_pr_build(server, 2, sha2, timeout=60)
    assert b["status"] == "passed", b
    want = {"yci": "success", "yci/unit": "success", "yci/lint": "success"}
    states = wait_until(lambda: (lambda st: st if st == want else None)(
        gh.latest_states("octo", "proj", sha2)), 60, what="statuses after the restart")
    assert states == {"yci": "success", "yci/unit": "success", "yci/lint": "success"}, states
    runner.stop()


def test_bad_credentials_are_reported_and_lose_nothing(ctx, gh, gitrepo):
    project(gitrepo, gh)
    server = github_server(ctx, gh, token="wrong")
    wait_until(lambda: "Bad credentials" in server.output(), 30, what="the error in the log")
    assert server.get("/api/repos/octo.proj").status == 404
    assert server.alive()


HOOK_SECRET = "hook-s3cret"


def test_webhooks_are_verified_and_trigger_builds_at_once(ctx, gh, gitrepo):
    repo = project(gitrepo, gh)
    # Polls every hour: only the webhook can make the pull request's build.
    server = github_server(ctx, gh, poll_interval=3600,
                           extra_env={"GITHUB_WEBHOOK_SECRET": HOOK_SECRET})
    ctx.runner(server).start()
    wait_until(lambda: server.get("/api/repos/octo.proj").status == 200, 30,
               what="octo.proj registered")
    hook = server.url + "/hooks/github"
    ping = gh.ping_payload("octo", "proj")
    assert gh.webhook("ping", ping, HOOK_SECRET, hook)[0] == 200
    # Missing or wrong signatures: 401, nothing done.
    assert gh.webhook("ping", ping, HOOK_SECRET, hook, signature="")[0] == 401
    assert gh.webhook("ping", ping, "not-the-secret", hook)[0] == 401
    assert gh.webhook("ping", ping, HOOK_SECRET, hook,
                      signature="sha256=" + "0" * 64)[0] == 401
    # A signed body that is not JSON; a form-encoded hook.
    assert gh.webhook("push", b"{not json", HOOK_SECRET, hook)[0] == 400
    assert gh.webhook("ping", ping, HOOK_SECRET, hook, content_type="form")[0] == 415
    # A repository yci does not watch.
    other = gh.payload("pull_request_opened.payload")
    other["repository"]["full_name"] = "someone/else"
    status, body = gh.webhook("pull_request", other, HOOK_SECRET, hook)
    assert status == 202 and b"does not watch" in body, body

    sha, _ = open_pr(repo, gh)
    payload = gh.pull_request_payload("octo", "proj", 1, "opened")
    status, body = gh.webhook("pull_request", payload, HOOK_SECRET, hook, delivery="d-1")
    assert status == 202, body
    b = wait_pr_build(server, 1, sha, finished=False, timeout=10)
    assert b["ref"] in ("refs/pull/1/head", "refs/heads/feature"), b
    # The same delivery again is handled once.
    status, body = gh.webhook("pull_request", payload, HOOK_SECRET, hook, delivery="d-1")
    assert status == 200 and b"seen already" in body, body
    assert wait_pr_build(server, 1, sha)["status"] == "passed"
    assert len(pr_builds(server, 1)) == 1
    # A push to a new branch: its webhook builds it at once too.
    repo.checkout("pushed", new=True)
    psha = repo.commit({"p.txt": "p\n"})
    repo.checkout("main")
    payload = gh.push_payload("octo", "proj", "refs/heads/pushed", "0" * 40, psha)
    assert gh.webhook("push", payload, HOOK_SECRET, hook)[0] == 202
    assert server.wait_commit_build("octo.proj", psha, timeout=10)["branch"] == "pushed"


def test_webhooks_off_without_a_secret_and_big_bodies_refused(ctx, gh, gitrepo):
    project(gitrepo, gh)
    server = github_server(ctx, gh)
    hook = server.url + "/hooks/github"
    status, body = gh.webhook("ping", gh.ping_payload("octo", "proj"), HOOK_SECRET, hook)
    assert status == 403 and b"GITHUB_WEBHOOK_SECRET" in body, body
    server.stop()
    server.env = ctx.env(GITHUB_WEBHOOK_SECRET=HOOK_SECRET)
    server.start()
    big = b'{"zen": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    try:
        status, _ = gh.webhook("ping", big, HOOK_SECRET, hook, timeout=30)
    except (ConnectionError, OSError):
        status = 413  # refused before the whole body was sent
    assert status == 413
    assert server.alive()


def pass_env(gh, data, repos="octo/proj", token=TOKEN):
    return {"GITHUB_REPOSITORIES": repos, "GITHUB_ACCESS_TOKEN": token,
            "GITHUB_API_URL": gh.url, "YCI_DATA": data}


def test_one_shot_pass_as_the_seed_runs_it_from_cron(ctx, gh, gitrepo):
    """GITHUB_USERNAME=foo GITHUB_ACCESS_TOKEN=bar GITHUB_REPOSITORIES=owner/repo yci"""
    repo = project(gitrepo, gh)
    sha, _ = open_pr(repo, gh)
    data = str(ctx.tmp / "data-cron")
    env = pass_env(gh, data)
    env["GITHUB_USERNAME"] = "foo"
    r = ctx.cli(env=env)
    assert r.returncode == 0, r
    # The pass queued the builds; a server on the same data runs them.
    server = ctx.server(data=data).start()
    ctx.runner(server).start()
    b = wait_pr_build(server, 1, sha)
    assert b["status"] == "passed", b
    # The next pass reports the statuses (no server needs GitHub's token).
    r = ctx.cli(env=env)
    assert r.returncode == 0, r
    st = gh.latest_states("octo", "proj", sha)
    assert st == {"yci": "success", "yci/unit": "success", "yci/lint": "success"}, (st, r.stderr)
    # Nothing new: no new build.
    n = len(server.builds(repo="octo.proj"))
    assert ctx.cli(env=env).returncode == 0
    assert len(server.builds(repo="octo.proj")) == n


def test_one_shot_pass_lock_and_errors(ctx, gh, gitrepo):
    import fcntl
    import glob
    project(gitrepo, gh)
    data = str(ctx.tmp / "data-cron")
    assert ctx.cli(env=pass_env(gh, data)).returncode == 0
    # An overlapping run of the same configuration does nothing and says so.
    locks = glob.glob(data + "/github-pass-*.lock")
    assert len(locks) == 1, locks
    with open(locks[0], "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        gh.clear_requests()
        r = ctx.cli(env=pass_env(gh, data))
        assert r.returncode == 0 and "another pass holds" in r.stderr, r
        assert gh.requests == []
        # Another user's repositories take another lock.
        gh.add_repo("other", "thing", clone_url=gitrepo("thing").path)
        r = ctx.cli(env=pass_env(gh, data, repos="other/thing"))
        assert r.returncode == 0 and "another pass holds" not in r.stderr, r
    # Errors: a clear message and a non-zero exit, nothing lost.
    r = ctx.cli(env=pass_env(gh, data, token="wrong"))
    assert r.returncode == 1 and "Bad credentials" in r.stderr, r
    r = ctx.cli(env=pass_env(gh, data, repos="octo/nope"))
    assert r.returncode == 1 and "Not Found" in r.stderr, r
    r = ctx.cli(env=pass_env(gh, data, repos="not a repo"))
    assert r.returncode == 1 and "is not a repository" in r.stderr, r
    gh.stop()
    r = ctx.cli(env=pass_env(gh, data))
    assert r.returncode == 1 and "octo" in r.stderr, r


def test_passes_of_two_users_on_one_data_keep_to_their_repositories(ctx, gh, gitrepo):
    """Seed 000: "If you have multiple users for different git repositories then
    just run the script several times with the different variables." Each pass
    sends its own repositories' statuses with its own credentials, and a server
    on that data without GitHub's variables leaves the GitHub repositories to
    the passes (it has no credentials for them)."""
    repo = project(gitrepo, gh)
    other = FakeGitHub(token="the-other-users-token").start()
    try:
        thing = gitrepo("thing")
        thing_sha = thing.commit({".yci.yml": PASS_YML})
        other.add_repo("other", "thing", clone_url=thing.path)
        data = str(ctx.tmp / "data-cron")
        env_a = pass_env(gh, data)
        env_b = pass_env(other, data, repos="other/thing", token="the-other-users-token")
        assert ctx.cli(env=env_a).returncode == 0
        assert ctx.cli(env=env_b).returncode == 0
        server = ctx.server(data=data).start()
        ctx.runner(server).start()
        sha = repo.head()
        for name, commit in (("octo.proj", sha), ("other.thing", thing_sha)):
            b = wait_until(lambda: [b for b in server.builds(repo=name)
                                    if b["commit"] == commit
                                    and b["status"] not in ("queued", "running")],
                           60, what="the build of %s" % name)[0]
            assert b["status"] == "passed", b
        out = server.output()
        assert "is GitHub's octo/proj, which is not in GITHUB_REPOSITORIES" in out, out
        # B's pass first: it sends B's statuses, to B's API, and nothing of A's.
        gh.clear_requests()
        r = ctx.cli(env=env_b)
        assert r.returncode == 0, r
        assert other.latest_states("other", "thing", thing_sha) == {
            "yci": "success", "yci/unit": "success", "yci/lint": "success"}, r.stderr
        assert not [q for q in other.requests if "/octo/" in q[1]], other.requests
        assert gh.requests == [], gh.requests
        assert "octo/proj" not in r.stderr, r.stderr
        # A's pass then sends all of A's, none left for later.
        r = ctx.cli(env=env_a)
        assert r.returncode == 0, r
        st = gh.latest_states("octo", "proj", sha)
        assert st == {"yci": "success", "yci/unit": "success", "yci/lint": "success"}, r.stderr
        assert "left for the next pass" not in r.stderr, r.stderr
        assert not [q for q in gh.requests if "/other/" in q[1]], gh.requests
    finally:
        other.stop()


def test_more_than_a_page_of_pull_requests(ctx, gh, gitrepo):
    repo = project(gitrepo, gh, {"Makefile": "check:\n\ttrue\n"})
    sha = repo.head("main")
    for n in range(1, 106):
        gh.open_pull("octo", "proj", head_ref="main", head_sha=sha, title="pr %d" % n)
    server = github_server(ctx, gh)

    def all_built():
        nums = {b.get("pull_number") for b in server.builds(repo="octo.proj")}
        return nums if set(range(1, 106)) <= nums else None
    wait_until(all_built, 60, what="a build for each of 105 pull requests")
    pages = [p for (m, p, _, _) in gh.requests if m == "GET" and "pulls" in p]
    assert any("page=2" in p for p in pages), pages


def test_private_repository_is_fetched_with_the_token(ctx, gh, gitrepo):
    """The mirror of a GitHub repository is fetched over HTTPS with the token
    (user x-access-token), given to git through its environment."""
    import base64
    import http.server
    import threading
    seen = []

    class Git(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Git)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/octo/proj.git" % srv.server_address[1]
        gh.add_repo("octo", "proj", clone_url=url, private=True)
        # A clone_url on another host than GitHub's (the API's): no credentials go there.
        gh.add_repo("octo", "other", clone_url="http://localhost:%d/octo/other.git"
                    % srv.server_address[1])
        server = github_server(ctx, gh, repos="octo/proj octo/other")
        wait_until(lambda: {p.split("/")[2] for p, _ in seen} >= {"proj.git", "other.git"}, 30,
                   what="git fetching both mirrors")
        want = "Basic " + base64.b64encode(("x-access-token:" + TOKEN).encode()).decode()
        auth = {p.split("/")[2]: a for p, a in seen}
        assert auth == {"proj.git": want, "other.git": None}, seen
        assert all("/info/refs?service=git-upload-pack" in p for p, _ in seen), seen
        # The failure is the repository's error, and the server goes on.
        r = wait_until(lambda: (lambda x: x if x.get("last_error") else None)(
            server.get_json("/api/repos/octo.proj")), 30, what="the fetch error")
        assert "git fetch failed" in r["last_error"], r
    finally:
        srv.shutdown()
        srv.server_close()


def test_private_repository_mirror_is_for_runners_and_admins(ctx, gh, gitrepo):
    import subprocess
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": PASS_YML})
    gh.add_repo("octo", "proj", clone_url=repo.path, private=True)
    server = github_server(ctx, gh)
    ctx.runner(server).start()
    # The runner fetches the private mirror with its token: the build runs.
    assert server.wait_commit_build("octo.proj", sha, timeout=60)["status"] == "passed"
    assert server.get_json("/api/repos/octo.proj")["private"] is True

    def clone(*extra):
        dest = str(ctx.tmp / ("clone%d" % len(extra)))
        return subprocess.run(["git"] + list(extra) + ["clone", "-q", server.url + "/git/octo.proj",
                                                       dest],
                              capture_output=True, text=True, env=ctx.env())
    r = clone()
    assert r.returncode != 0 and ("401" in r.stderr or "Username" in r.stderr), r.stderr
    r = clone("-c", "http.extraHeader=Authorization: Bearer wrong-token")
    assert r.returncode != 0, r
    r = clone("-c", "http.extraHeader=Authorization: Bearer " + server.admin_token)
    assert r.returncode == 0, r.stderr
    assert server.get("/git/octo.proj/info/refs?service=git-upload-pack").status == 401
    # Its GitHub path too.
    assert server.get("/git/octo/proj.git/info/refs?service=git-upload-pack").status == 401


def test_relative_submodule_urls_resolve_as_on_github(ctx, gh, gitrepo):
    """A relative submodule URL in a GitHub repository means what it means on
    GitHub: "../lib.git" in octo/proj is octo/lib, yci's repository octo.lib
    (not a repository named lib), fetched through the server's mirror."""
    lib = gitrepo("lib")
    lib.commit({"hello.txt": "yci-octo-lib-content\n"})
    gh.add_repo("octo", "lib", clone_url=lib.path)
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh, repos="octo/proj octo/lib")
    ctx.runner(server).start()
    assert server.wait_commit_build("octo.proj", repo.head("main"), timeout=60)["status"] == "passed"
    # octo.lib is mirrored, and served by its GitHub path as by its name.
    refs = "/info/refs?service=git-upload-pack"
    wait_until(lambda: server.get("/git/octo/lib.git" + refs).status == 200, 30,
               what="octo/lib's mirror")
    assert server.get("/git/octo.lib" + refs).body == server.get("/git/octo/lib.git" + refs).body
    assert server.get("/git/octo/nothing.git" + refs).status == 404
    assert server.get("/git/lib" + refs).status == 404  # there is no repository "lib"

    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../lib.git", "lib")
    sha = repo.commit({".yci.yml": "submodules: true\njobs:\n  show:\n    run: cat lib/hello.txt\n"})
    assert server.post("/api/repos/octo.proj/poll").status in (200, 202)
    b = server.wait_commit_build("octo.proj", sha, timeout=60)
    (job,) = server.build(b["id"])["jobs"]
    text = server.log(job["id"]).decode()
    assert b["status"] == "passed", (b, text)
    assert "yci-octo-lib-content" in text, text


def polled_since(server, repo):
    """Wait until a poll of repo has started after this call: two polls end
    (the first may have started before)."""
    def last():
        return server.get_json("/api/repos/" + repo)["last_poll"]
    seen = [last()]
    wait_until(lambda: seen.append(last()) or len(set(seen)) >= 3, 30,
               what="two polls of %s" % repo)


def commit_builds(server, sha):
    return [b for b in server.builds(repo="octo.proj") if b["commit"] == sha]


def stands_for(server, build_id, ref):
    """Whether the build's events say it stands for ref too."""
    return any(e["message"].startswith(ref + " is at this commit too")
               for e in server.build(build_id)["events"])


def test_a_pull_request_and_its_branch_are_built_once(ctx, gh, gitrepo):
    """A pull request from the repository itself and its branch at one commit
    are one build, whichever of the two was seen first: the branch's build
    becomes the pull request's, or the pull request's stands for the branch.
    Closing the pull request cancels it."""
    repo = project(gitrepo, gh, {".yci.yml": SLOW_YML})
    server = github_server(ctx, gh)
    ctx.runner(server, slots=2).start()
    # The branch first, built as any branch, then the pull request.
    repo.checkout("feature", new=True)
    sha = repo.commit({"feature.txt": "x\n"})
    repo.checkout("main")
    b = server.wait_commit_build("octo.proj", sha, timeout=60, finished=False)
    assert b["ref"] == "refs/heads/feature" and b.get("pull_number") is None, b
    gh.open_pull("octo", "proj", head_ref="feature", head_sha=sha)
    wait_until(lambda: server.build(b["id"]).get("pull_number") == 1, 30,
               what="the branch's build to become the pull request's")
    assert stands_for(server, b["id"], "refs/pull/1/head")
    assert [x["id"] for x in commit_builds(server, sha)] == [b["id"]]

    # A push to the pull request: one build again, the older one superseded.
    repo.checkout("feature")
    sha2 = repo.commit({"more.txt": "y\n"})
    repo.checkout("main")
    gh.push_pull("octo", "proj", 1, sha2)
    b2 = wait_pr_build(server, 1, sha2, finished=False)
    twin = "refs/pull/1/head" if b2["ref"] == "refs/heads/feature" else "refs/heads/feature"
    wait_until(lambda: stands_for(server, b2["id"], twin), 30, what="both refs at %s" % sha2[:7])
    assert [x["id"] for x in commit_builds(server, sha2)] == [b2["id"]]
    assert server.wait_build(b["id"], 30)["status"] == "cancelled"

    # Closing the pull request leaves the build to its branch, which is
    # still at that commit and needs it.
    gh.close_pull("octo", "proj", 1)
    polled_since(server, "octo.proj")
    b2 = server.build(b2["id"])
    assert b2["status"] in ("queued", "running"), b2
    assert not any(e["message"].startswith("pull request #1 was closed") for e in b2["events"])


def test_a_build_with_no_jobs_reports_no_status(ctx, gh, gitrepo):
    """When branch filters leave the pull request's build without jobs, the
    two are not one build; the build without jobs tested nothing and reports
    nothing, so the branch build's failure stays the commit's status."""
    yml = ("jobs:\n"
           "  unit:\n"
           "    run: 'false'\n"
           "    branches:\n"
           "      only: feature\n")
    repo = project(gitrepo, gh)
    server = github_server(ctx, gh)
    ctx.runner(server, slots=2).start()
    repo.checkout("feature", new=True)
    sha = repo.commit({".yci.yml": yml})
    repo.checkout("main")
    b = server.wait_commit_build("octo.proj", sha, timeout=60)
    assert b["status"] == "failed", b
    wait_until(lambda: gh.latest_states("octo", "proj", sha).get("yci") == "failure", 30,
               what="the branch build's failure on GitHub")
    gh.open_pull("octo", "proj", head_ref="feature", head_sha=sha)
    pb = wait_pr_build(server, 1, sha)
    assert pb["id"] != b["id"] and pb["status"] == "passed", pb
    assert server.build(pb["id"])["jobs"] == []
    # The main branch's build (after the pull request's) reports: the
    # outbox has sent everything before it.
    repo.commit({"later.txt": "z\n"})
    m = server.wait_commit_build("octo.proj", repo.head("main"), timeout=60)
    wait_until(lambda: gh.latest_states("octo", "proj", m["commit"]).get("yci") == "success", 30,
               what="a later build's status")
    assert gh.latest_states("octo", "proj", sha) == {"yci": "failure", "yci/unit": "failure"}
    assert not [s for s in gh.statuses("octo", "proj", sha)
                if s["target_url"].endswith("/builds/%d" % pb["id"])]
