"""kill -9 of runners and of the server: nothing is lost, nothing is done
twice, runners come back by themselves, output written while the server was
away is spooled and replayed."""

import os
import time

import pytest

from conftest import wait_until


def lines(prefix, a, b):
    return b"".join(b"%s-%d\n" % (prefix.encode(), i) for i in range(a, b + 1))


def wait_file(path, timeout=60):
    wait_until(path.exists, timeout, what="%s to exist" % path)


@pytest.mark.slow
def test_runner_killed_mid_job_the_job_finishes_elsewhere(ctx, server, tmp_path):
    first = ctx.runner(server, name="first").start()
    started = tmp_path / "started"
    # A long job (6 s).
    cmd = "touch %s; sleep 6; echo job-completed" % started
    build, jobs = server.submit_jobs([{"name": "long", "commands": [cmd]}])
    jid = jobs[0]["id"]
    j = wait_until(lambda: (lambda j: j if j["status"] == "running" else None)(server.job(jid)),
                   30, what="the job to run on the first runner")
    assert j["runner"] == "first" and j["attempt"] == 1, j
    wait_file(started, 30)

    first.kill9()
    second = ctx.runner(server, name="second").start()
    done = server.wait_job(jid, timeout=60)
    assert done["status"] == "passed", done
    assert done["attempt"] >= 2 and done["infra_retries"] >= 1, done
    assert done["runner"] == "second", done
    assert b"job-completed" in server.log(jid)

    b = server.wait_build(build["id"])
    assert b["status"] == "passed" and len(b["jobs"]) == 1, b
    msgs = [e["message"].lower() for e in b["events"] if e.get("job_id") in (None, jid)]
    assert any("lease" in m for m in msgs), b["events"]
    # The first runner is shown dead; the second alive.
    wait_until(lambda: not first.record()["alive"], 15, what="the dead runner marked not alive")
    assert second.record()["alive"]


@pytest.mark.slow
def test_server_killed_mid_builds_nothing_is_lost(ctx, tmp_path):
    server = ctx.server().start()
    runner = ctx.runner(server, slots=2).start()
    n_lines = 40
    cmds = []
    for i in range(5):
        cmds.append({"name": "b%d" % i, "commands": [
            "for i in $(seq 1 %d); do echo b%d-$i; sleep 0.05; done; touch %s/done-b%d"
            % (n_lines, i, tmp_path, i)]})
    builds = [server.submit_jobs([c]) for c in cmds]
    job_ids = [jobs[0]["id"] for _, jobs in builds]

    # Kill the server while two jobs run and three wait.
    def running():
        js = [server.job(j) for j in job_ids]
        r = [j for j in js if j["status"] == "running" and j["log_size"] > 0]
        return r if len(r) == 2 else None
    was_running = wait_until(running, 30, what="two jobs running and logging")
    server.kill9()
    # Let the running jobs finish while the server is away.
    for j in was_running:
        wait_file(tmp_path / ("done-" + j["name"]), 30)
    server.restart()

    # The same runner process comes back by itself and everything finishes.
    for (b, jobs) in builds:
        done = server.wait_build(b["id"], timeout=90)
        assert done["status"] == "passed", done
    for b, jobs in builds:
        j = server.job(jobs[0]["id"])
        want = lines(j["name"], 1, n_lines)
        log = server.log(j["id"])
        assert want in log, "log of %s incomplete:\n%r" % (j["name"], log[-500:])
        assert j["log_size"] == len(log)
    # The results held by the runner while the server was down arrived: the
    # jobs that were running were not run again.
    for j in was_running:
        again = server.job(j["id"])
        assert again["attempt"] == 1 and again["runner"] == runner.rname, again
    assert runner.alive()
    assert runner.record()["alive"]


@pytest.mark.slow
def test_output_written_while_the_server_is_down_is_replayed(ctx, tmp_path):
    server = ctx.server().start()
    runner = ctx.runner(server).start()
    half, go, done = tmp_path / "half", tmp_path / "go", tmp_path / "done"
    cmd = ("for i in $(seq 1 100); do echo line-$i; done; touch %s; "
           "k=0; while [ ! -f %s ] && [ $k -lt 600 ]; do sleep 0.05; k=$((k+1)); done; "
           "for i in $(seq 101 300); do echo line-$i; sleep 0.005; done; touch %s"
           % (half, go, done))
    _, jobs = server.submit_jobs([{"name": "talker", "commands": [cmd]}])
    jid = jobs[0]["id"]
    wait_file(half, 30)
    want_first = lines("line", 1, 100)
    wait_until(lambda: want_first in server.log(jid), 20,
               what="the first 100 lines to reach the server")
    server.kill9()
    go.touch()
    wait_file(done, 30)  # lines 101..300 printed while no server listens
    # The runner says once that the server is gone, and once that it is back.
    wait_until(lambda: "cannot reach the server" in runner.output(), 30,
               what="the runner to say the server is gone")
    out = runner.output()
    assert out.count("cannot reach the server") == 1, out  # not once per retry
    server.restart()
    wait_until(lambda: "the server answers again" in runner.output(), 30,
               what="the runner to say the server is back")
    out = runner.output()
    assert out.rfind("the server answers again") > out.rfind("cannot reach the server"), out

    job = server.wait_job(jid, timeout=60)
    assert job["status"] == "passed", job
    log = server.log(jid)
    assert lines("line", 1, 300) in log, "log incomplete: %r" % log[-300:]
    assert log.count(b"line-150\n") == 1, "a replayed chunk was appended twice"
    assert job["attempt"] == 1, job


@pytest.mark.slow
@pytest.mark.parametrize("after", ["uploaded", "with the result"])
def test_a_lost_log_tail_the_spool_gave_back_is_replaced_by_a_note(ctx, tmp_path, after):
    """The runner gives back (punches out) the spool's acknowledged MiBs; if the
    server then loses part of the log (its machine crashed: here the file is
    cut while it is down), the bytes the runner still has are resent and the
    ones it no longer has become a note of the same size: offsets hold, the
    log says what happened. When what follows comes with the result instead
    (the job's last bytes), the runner does not learn of the loss: the server
    itself puts a note of the lost bytes' size before them."""
    server = ctx.server().start()
    ctx.runner(server).start()
    half, go = tmp_path / "half", tmp_path / "go"
    mib = 1 << 20
    cmd = ("yes 0123456789abcdef | head -c %d; touch %s; k=0; "
           "while [ ! -f %s ] && [ $k -lt 600 ]; do sleep 0.05; k=$((k+1)); done; "
           "echo after-the-outage%s"
           % (3 * mib, half, go, "; sleep 1" if after == "uploaded" else ""))
    _, jobs = server.submit_jobs([{"name": "big", "commands": [cmd]}])
    jid = jobs[0]["id"]
    wait_file(half, 30)
    size = len(("$ %s\n" % cmd).encode()) + 3 * mib  # the command line, then its output
    before = wait_until(lambda: (lambda b: b if len(b) == size else None)(server.log(jid)),
                        30, what="all 3 MiB of output to reach the server")
    server.kill9()
    # The log file of attempt 1 (logstore.h), cut to 1000 bytes.
    path = "%s/logs/%d/%d.1.log" % (server.data, jid // 1000, jid)
    with open(path, "r+b") as f:
        f.truncate(1000)
    server.restart()
    go.touch()

    job = server.wait_job(jid, timeout=60)
    assert job["status"] == "passed", job
    log = server.log(jid)
    want = before + b"after-the-outage\n"
    assert len(log) == len(want) == job["log_size"], (len(log), len(want))
    assert log[:1000] == want[:1000]
    note = b"\n[yci: the server lost %d bytes of this log]" % (len(before) - 1000)
    # (The uploader may still send the last line first, if its interval ends
    # between the job's echo and its exit: then the runner's path, below.)
    if after == "with the result" and log[1000:1000 + len(note)] == note:
        assert log[1000 + len(note):len(before) - 1].strip(b" ") == b"", "blanks after the note"
        assert log[len(before) - 1:] == b"\nafter-the-outage\n"
        return
    released = 3 * mib  # what the runner had given back: whole MiBs acknowledged
    note = b"\n[yci: the server lost %d bytes of this log that the runner no longer had]" % (
        released - 1000)
    assert log[1000:1000 + len(note)] == note, log[1000:1200]
    assert log[1000 + len(note):released - 1].strip(b" ") == b"", "blanks after the note"
    assert log[released - 1:released] == b"\n"
    assert log[released:] == want[released:], "the bytes the spool still had were resent"


def test_a_stopped_runner_gives_its_job_back(ctx, server, tmp_path):
    """SIGTERM: the runner stops its job and gives it back; the server queues it
    again at once (not when the lease ends), and no infrastructure retry is
    spent on it."""
    first = ctx.runner(server, name="first", heartbeat=20).start()  # a 60 s lease
    started = tmp_path / "started"
    cmd = "touch %s; sleep 60; echo job-completed" % started
    build, jobs = server.submit_jobs([{"name": "long", "commands": [cmd]}])
    jid = jobs[0]["id"]
    wait_file(started, 30)
    assert first.stop() in (0, -15)
    j = server.job(jid)
    assert j["status"] == "queued" and j["infra_retries"] == 0, j
    assert "first" in first.output() and "goes back to the queue" in first.output()
    b = server.build(build["id"])
    assert any("runner 'first' stopped and gave it back, re-queued" in e["message"]
               for e in b["events"]), b["events"]
    # Another runner runs it, as attempt 2; stopped too, it gives it back too.
    started.unlink()
    second = ctx.runner(server, name="second").start()
    wait_file(started, 30)
    j = server.job(jid)
    assert j["status"] == "running" and j["runner"] == "second" and j["attempt"] == 2, j
    assert j["infra_retries"] == 0, j
    second.stop()
    assert server.job(jid)["status"] == "queued"


def test_a_stalled_server_does_not_hold_the_stall_against_its_runners(ctx, tmp_path):
    """A server that could not run for longer than the leases (stopped, its
    store locked or its disk full) must not expire them the moment it runs
    again, before the heartbeats waiting in its socket are read: a job that
    finished during the stall would be run again and its result refused."""
    import signal
    server = ctx.server().start()
    runner = ctx.runner(server, slots=2, heartbeat=1).start()  # 3 s leases
    short, long_ = tmp_path / "short", tmp_path / "long"
    _, jobs = server.submit_jobs([
        {"name": "short", "commands": ["touch %s; sleep 2; echo short-done" % short]},
        {"name": "long", "commands": ["touch %s; sleep 9; echo long-done" % long_]}])
    wait_file(short, 30)
    wait_file(long_, 30)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        time.sleep(6)  # the stall itself, longer than the 3 s leases
    finally:
        os.kill(server.pid, signal.SIGCONT)
    for j in jobs:
        done = server.wait_job(j["id"], timeout=60)
        assert done["status"] == "passed", done
        assert done["attempt"] == 1 and done["infra_retries"] == 0, done
    out = server.output()
    assert "lease(s) expired" not in out, out
    assert "running job lease(s) extended" in out, out
    assert "refused the result" not in runner.output()


class GitBlockingProxy:
    """A TCP proxy in front of the server that closes the first `block`
    connections whose request is for /git/ (a server restarting under a
    runner's fetch); everything else goes through."""

    def __init__(self, target_port, block):
        import socket
        import threading
        self.target, self.block, self.blocked = target_port, block, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            first = c.recv(65536)
            with self.lock:
                cut = b" /git/" in first.split(b"\r\n", 1)[0] and self.blocked < self.block
                if cut:
                    self.blocked += 1
            if cut:
                c.close()
                continue
            s = socket.create_connection(("127.0.0.1", self.target))
            s.sendall(first)
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(2)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def test_a_fetch_the_server_cuts_short_is_tried_again(ctx, server, gitrepo):
    """The runner's fetch of the job's commit fails when the server restarts
    under it: tried again (1, 2, 4, 8 s apart) before the job is an error."""
    repo = gitrepo("proj")
    sha = repo.commit({".yci.yml": "jobs:\n  t:\n    run: echo fetched-and-ran\n"})
    proxy = GitBlockingProxy(server.port, block=2)
    try:
        class Via:  # the runner knows the server only through the proxy
            url, secret = proxy.url, server.secret
        ctx.runner(Via).start(wait=False)
        server.add_repo(repo.path)
        b = server.wait_commit_build("proj", sha, timeout=60)
        assert b["status"] == "passed", b
        job = server.build(b["id"])["jobs"][0]
        assert job["attempt"] == 1, job
        log = server.log(job["id"]).decode()
        assert "failed (try 1 of 5); trying again in 1 s" in log, log
        assert "fetched-and-ran" in log, log
        assert proxy.blocked == 2
    finally:
        proxy.close()


def test_a_full_runner_disk_is_said_in_the_job_error(ctx, tmp_path):
    """The spool cannot be written (the runner's disk is full while the
    server is away): the job's error says why."""
    import subprocess
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                            str(small)]).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        server = ctx.server().start()
        runner = ctx.runner(server, heartbeat=10)
        runner.workdir = str(small / "work")
        runner.start()
        go, started = tmp_path / "go", tmp_path / "started"
        _, jobs = server.submit_jobs([{"name": "big", "commands": [
            "touch %s; k=0; while [ ! -f %s ] && [ $k -lt 600 ]; do sleep 0.05; k=$((k+1)); "
            "done; head -c 8000000 /dev/zero | tr '\\0' x; echo" % (started, go)]}])
        wait_file(started, 30)
        server.kill9()
        go.touch()  # 8 MB into a 2 MB disk, with no server to take it
        server.restart()
        j = server.wait_job(jobs[0]["id"], timeout=60)
        assert j["status"] == "error", j
        assert j["error"] == "cannot write the runner's spool file: No space left on device", j
        runner.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_a_stopping_runner_still_delivers_a_result_it_holds(ctx, tmp_path):
    """The job ended while the server was away and the runner is told to
    stop: a server back within seconds still gets the result (attempt 1),
    rather than the job running again."""
    import signal
    server = ctx.server().start()
    runner = ctx.runner(server, heartbeat=10).start()
    started, ended = tmp_path / "started", tmp_path / "ended"
    _, jobs = server.submit_jobs([{"name": "j", "commands": [
        "touch %s; sleep 1; echo finished-while-away; touch %s" % (started, ended)]}])
    wait_file(started, 30)
    server.kill9()
    wait_file(ended, 30)
    time.sleep(0.5)  # the job's process gone, its end recorded by the runner
    os.kill(runner.pid, signal.SIGTERM)
    time.sleep(1)  # the runner is stopping, its result not delivered
    server.restart()
    assert runner.popen.wait(30) == 0
    j = server.wait_job(jobs[0]["id"], timeout=30)
    assert j["status"] == "passed" and j["attempt"] == 1, j
    assert b"finished-while-away" in server.log(j["id"])


def test_a_locked_store_is_named_in_errors_and_logs(ctx, server):
    """Store failures say SQLite's reason ("database is locked"), not
    "Input/output error"; the server goes on once the lock is gone."""
    import sqlite3
    con = sqlite3.connect(os.path.join(server.data, "yci.db"), timeout=1,
                          isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        r = server.request("POST", "/api/builds",
                           {"jobs": [{"name": "a", "commands": ["true"]}]},
                           token=server.admin_token)
        assert r.status == 500 and b"database is locked" in r.body, (r.status, r.body)
        wait_until(lambda: "expiring leases failed: database is locked" in server.output(), 30,
                   what="the expiry pass to say why it failed")
    finally:
        con.execute("ROLLBACK")
        con.close()
    out = server.output()
    assert "store error on POST /api/builds" in out and "Input/output error" not in out, out
    build, _ = server.submit_jobs([{"name": "a", "commands": ["true"]}])
    assert build["id"] > 0
