"""The yci command line as a client of the HTTP API: --help everywhere,
--json that parses, builds/build/logs/runners, rebuild, cancel, logs -f."""

import json
import os
import select
import subprocess
import time

import pytest

from conftest import PASSING_TESTS, PY, SANITIZER_MARKS, marker, pids_matching, wait_until

COMMANDS = [[], ["server"], ["runner"], ["up"], ["repo"], ["repo", "add"], ["repo", "list"],
            ["repo", "poll"], ["builds"], ["build"], ["logs"], ["watch"], ["runners"], ["rebuild"],
            ["cancel"], ["run"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c) or "yci")
def test_help(ctx, cmd):
    r = ctx.cli(*(cmd + ["--help"]), timeout=10)
    assert r.returncode == 0, r
    out = r.stdout.lower()
    assert "usage" in out, r.stdout
    if cmd:
        assert cmd[-1] in out, r.stdout


def test_unknown_command_and_option_fail(ctx):
    for args in (["no-such-command"], ["builds", "--no-such-option"], ["repo", "frobnicate"]):
        r = ctx.cli(*args, timeout=10, env={"YCI_SERVER": "http://127.0.0.1:9"})
        assert r.returncode != 0, (args, r)
        assert r.stderr.strip(), (args, "no message on stderr")


def test_client_reports_an_unreachable_server(ctx):
    r = ctx.cli("builds", timeout=30, env={"YCI_SERVER": "http://127.0.0.1:9"})
    assert r.returncode != 0
    assert "127.0.0.1:9" in r.stderr, r.stderr


@pytest.fixture
def built(ctx, server, runner, gitrepo):
    """A repository "cli" with one passed build."""
    repo = gitrepo("cli")
    sha = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    b = server.wait_commit_build("cli", sha)
    assert b["status"] == "passed", b
    return server.build(b["id"])


def test_builds_build_logs_runners(ctx, server, runner, built, cli):
    bid, job = built["id"], built["jobs"][0]

    r = cli("builds", check=True)
    assert str(bid) in r.stdout and "passed" in r.stdout and "cli" in r.stdout, r.stdout
    data = json.loads(cli("builds", "--json", check=True).stdout)
    assert [b["id"] for b in data] == [bid], data

    r = cli("build", bid, check=True)
    assert "passed" in r.stdout and built["commit"][:7] in r.stdout, r.stdout
    data = json.loads(cli("build", bid, "--json", check=True).stdout)
    assert data["id"] == bid and data["jobs"][0]["id"] == job["id"], data

    r = cli("logs", job["id"], check=True)
    assert "Ran 2 tests" in r.stdout and "OK" in r.stdout, r.stdout
    assert r.stdout.encode() == server.log(job["id"])

    r = cli("runners", check=True)
    assert runner.rname in r.stdout
    data = json.loads(cli("runners", "--json", check=True).stdout)
    assert [x["name"] for x in data] == [runner.rname], data

    r = cli("build", "987654")
    assert r.returncode != 0 and r.stderr.strip(), r


def test_token_comes_from_the_data_directory(ctx, server, runner, built):
    bid = built["id"]
    # YCI_DATA only: the admin token is read from <data>/admin-token.
    r = ctx.cli("rebuild", bid, server=server, token=False, data=True)
    assert r.returncode == 0, r
    # A wrong token: refused, and the command says so.
    r = ctx.cli("rebuild", bid, server=server, token=False, env={"YCI_TOKEN": "wrong"})
    assert r.returncode != 0
    assert "401" in r.stderr or "token" in r.stderr.lower(), r.stderr
    rebuilds = [b for b in server.builds() if b["rebuild_of"] == bid]
    assert len(rebuilds) == 1, rebuilds


def test_rebuild(ctx, server, runner, built, cli):
    bid = built["id"]
    cli("rebuild", bid, check=True)
    new = wait_until(lambda: [b for b in server.builds() if b["rebuild_of"] == bid], 10,
                     what="the rebuild")[0]
    assert new["id"] != bid and new["commit"] == built["commit"], new
    assert new["branch"] == built["branch"] and new["repo"] == "cli", new
    done = server.wait_build(new["id"])
    assert done["status"] == "passed", done
    assert server.build(bid)["status"] == "passed"  # the old one is untouched


def test_cancel(ctx, server, runner, cli):
    mark = marker()
    build, jobs = server.submit_jobs([
        {"name": "long", "commands": ["%s -c 'import time; time.sleep(1000)' %s" % (PY, mark)]},
        {"name": "queued-behind", "commands": ["true"]},
    ])
    wait_until(lambda: pids_matching(mark), 30, what="the long job to start")
    cli("cancel", build["id"], check=True)
    b = server.wait_build(build["id"], timeout=20)
    assert b["status"] == "cancelled", b
    assert all(j["status"] == "cancelled" for j in b["jobs"]), b["jobs"]
    wait_until(lambda: not pids_matching(mark), 20, what="the cancelled job to be killed")


@pytest.mark.parametrize("code", [0, 3])
def test_logs_follow(ctx, server, runner, tmp_path, code):
    go = tmp_path / "go"
    cmd = ("echo first; k=0; while [ ! -f %s ] && [ $k -lt 600 ]; do sleep 0.05; k=$((k+1)); "
           "done; for i in $(seq 1 30); do echo follow-$i; sleep 0.02; done; exit %d"
           % (go, code))
    _, jobs = server.submit_jobs([{"name": "f", "commands": [cmd]}])
    jid = jobs[0]["id"]
    wait_until(lambda: b"first" in server.log(jid), 30, what="the job to start printing")
    env = ctx.env(YCI_SERVER=server.url, YCI_TOKEN=server.admin_token)
    follower = subprocess.Popen([ctx.yci, "logs", "-f", str(jid)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    try:
        # It shows what is already there at once (flushed, while the job runs)...
        head = b""
        deadline = time.monotonic() + 15
        while b"first\n" not in head and time.monotonic() < deadline:
            if select.select([follower.stdout], [], [], 0.2)[0]:
                chunk = os.read(follower.stdout.fileno(), 65536)
                if not chunk:
                    break
                head += chunk
        assert b"first\n" in head, "yci logs -f showed %r while the job ran" % head
        assert follower.poll() is None, "yci logs -f exited while the job ran"
        # ...then follows to the end and exits with the job's status.
        go.touch()
        out, err = follower.communicate(timeout=60)
        out = head + out
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    for m in SANITIZER_MARKS:
        assert m.encode() not in err, err.decode("utf-8", "replace")
    want = b"first\n" + b"".join(b"follow-%d\n" % i for i in range(1, 31))
    assert want in out, out
    job = server.job(jid)
    assert job["status"] == ("passed" if code == 0 else "failed")
    if code == 0:
        assert follower.returncode == 0, err
    else:
        assert follower.returncode != 0, err


def test_logs_follow_and_watch_wait_for_a_restarting_server(ctx, server, runner, tmp_path):
    go = tmp_path / "go"
    cmd = ("echo before; k=0; while [ ! -f %s ] && [ $k -lt 600 ]; do sleep 0.05; k=$((k+1)); "
           "done; echo after" % go)
    build, jobs = server.submit_jobs([{"name": "f", "commands": [cmd]}])
    jid = jobs[0]["id"]
    wait_until(lambda: b"before" in server.log(jid), 30, what="the job to start printing")
    env = ctx.env(YCI_SERVER=server.url, YCI_TOKEN=server.admin_token)
    procs = [subprocess.Popen([ctx.yci] + args, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for args in (["logs", "-f", str(jid)], ["watch", str(build["id"])])]
    try:
        time.sleep(1)  # both are following: the restart comes under them
        server.kill9()
        go.touch()
        time.sleep(1)
        server.restart()
        outs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    (log_out, log_err), (watch_out, watch_err) = outs
    assert procs[0].returncode == 0, log_err
    assert b"before\n" in log_out and b"after\n" in log_out, log_out
    assert b"lost the yci server" in log_err and b"the server is back" in log_err, log_err
    assert procs[1].returncode == 0, watch_err
    assert watch_out.splitlines()[-1] == b"build %d passed" % build["id"], watch_out
    # A server that was never there is an error at once, as before.
    r = ctx.cli("logs", "-f", str(jid), env={"YCI_SERVER": "http://127.0.0.1:9"}, timeout=10)
    assert r.returncode == 1 and "cannot reach the yci server" in r.stderr, r


def test_watch_follows_a_build_to_its_end(ctx, server, runner):
    """yci watch BUILD: a line per job status change without a terminal, and
    the build's status as the exit status."""
    bid = server.submit([{"name": "slow", "commands": ["sleep 1"]},
                         {"name": "bad", "commands": ["exit 4"]}])["id"]
    r = ctx.cli("watch", bid, server=server, timeout=60)
    assert r.returncode == 1, r
    out = r.stdout.splitlines()
    assert any(l.endswith("slow: passed") for l in out), out
    assert any(l.endswith("bad: failed") for l in out), out
    assert out[-1] == "build %d failed" % bid, out
    ok = server.submit([{"name": "fine", "commands": ["true"]}])["id"]
    r = ctx.cli("watch", ok, server=server, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "build %d passed" % ok, r
    r = ctx.cli("watch", 999999, server=server)
    assert r.returncode == 1 and "no build 999999" in r.stderr, r
