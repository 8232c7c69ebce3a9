"""The scheduler and the runner protocol: labels, slots, runner records,
leases and attempts (spoken to directly, as a runner would), cancellation by
heartbeat, idempotent log chunks and finishes."""

import json
import os
import platform

from conftest import wait_until


def by_name(jobs):
    return {j["name"]: j for j in jobs}


def register(server, name="proto", labels=None, heartbeat=1):
    r = server.post("/api/runners/register",
                    {"name": name, "labels": labels or {},
                     "platform": {"os": "Linux", "release": "test", "machine": "x86_64"},
                     "slots": 1, "heartbeat": heartbeat}, token=server.secret)
    assert r.status == 201, r
    reg = r.json()
    assert isinstance(reg["token"], str) and reg["token"], reg
    assert reg["lease_seconds"] >= 3, reg
    return reg


def claim(server, token, wait=10):
    return server.post("/api/runners/claim?wait=%d" % wait, {}, token=token,
                       timeout=wait + 10)


def test_labelled_job_goes_only_to_a_runner_with_its_labels(ctx, server):
    wrong = ctx.runner(server, name="no-gpu", labels={"gpu": "no", "os": "linux"}).start()
    _, jobs = server.submit_jobs([
        {"name": "needs-gpu", "commands": ["echo ran-on-gpu"], "labels": {"gpu": "yes"}},
        {"name": "anywhere", "commands": ["echo ran-anywhere"]},
    ])
    j = by_name(jobs)
    done = server.wait_job(j["anywhere"]["id"])
    assert done["status"] == "passed" and done["runner"] == wrong.rname, done
    # A later job too: the runner kept claiming and still did not get it.
    _, later = server.submit_jobs(["true"])
    assert server.wait_job(later[0]["id"])["status"] == "passed"
    gpu = server.job(j["needs-gpu"]["id"])
    assert gpu["status"] == "queued" and gpu["runner"] in (None, ""), gpu

    right = ctx.runner(server, name="has-gpu", labels={"gpu": "yes", "os": "linux"}).start()
    gpu = server.wait_job(j["needs-gpu"]["id"])
    assert gpu["status"] == "passed" and gpu["runner"] == right.rname, gpu
    assert gpu["labels"] == {"gpu": "yes"}, gpu
    assert b"ran-on-gpu" in server.log(gpu["id"])


def test_a_runners_platform_is_matched_as_labels_os_and_arch(ctx, server):
    """testbot routes jobs by the platform a client reports: a runner has
    the labels os (its kernel, lower case) and arch (its machine) unless it
    sets them itself."""
    arch = platform.machine()
    plain = ctx.runner(server, name="plain").start()
    _, jobs = server.submit_jobs([
        {"name": "linux", "commands": ["true"], "labels": {"os": os.uname().sysname.lower()}},
        {"name": "arch", "commands": ["true"], "labels": {"os": "linux", "arch": arch}},
        {"name": "windows", "commands": ["true"], "labels": {"os": "windows"}},
    ])
    j = by_name(jobs)
    for name in ("linux", "arch"):
        done = server.wait_job(j[name]["id"])
        assert done["status"] == "passed" and done["runner"] == plain.rname, done
    win = server.job(j["windows"]["id"])
    assert win["status"] == "queued", win
    assert win["queued_reason"] == "no live runner has its labels: os=windows", win
    # A runner's own label wins over its platform.
    ctx.runner(server, name="says-windows", labels={"os": "windows"}).start()
    assert server.wait_job(j["windows"]["id"])["runner"] == "says-windows"


def test_two_slots_run_two_jobs_at_once(ctx, server, tmp_path):
    runner = ctx.runner(server, slots=2).start()
    go = tmp_path / "go"
    # Each job waits (at most 60 s) for a file the test makes once both run.
    cmd = ("touch %s/started-$JOBNAME; i=0; while [ ! -f %s ] && [ $i -lt 1200 ]; "
           "do sleep 0.05; i=$((i+1)); done; test -f %s" % (tmp_path, go, go))
    _, jobs = server.submit_jobs([{"name": n, "commands": [cmd], "env": {"JOBNAME": n}}
                                  for n in ("one", "two")])

    def both_running():
        js = [server.job(j["id"]) for j in jobs]
        return js if all(x["status"] == "running" for x in js) else None
    js = wait_until(both_running, 30, what="both jobs running at once")
    assert all(x["runner"] == runner.rname for x in js), js
    rec = runner.record()
    assert rec["slots"] == 2 and len(rec["jobs"]) == 2, rec
    wait_until(lambda: all((tmp_path / ("started-" + n)).exists() for n in ("one", "two")), 10,
               what="both jobs to start their command")
    go.touch()
    for j in jobs:
        assert server.wait_job(j["id"])["status"] == "passed"


def test_runner_record(ctx, server):
    r = ctx.runner(server, name="rec", slots=3, labels={"arch": "x", "team": "core"}).start()
    rec = wait_until(lambda: (lambda x: x if x and x["alive"] else None)(r.record()), 10)
    assert rec["labels"] == {"arch": "x", "team": "core"}, rec
    assert rec["slots"] == 3 and rec["heartbeat"] == 1, rec
    u = os.uname()
    assert rec["platform"]["os"] == u.sysname, rec
    assert rec["platform"]["release"] == u.release, rec
    assert rec["platform"]["machine"] == platform.machine(), rec
    # Heartbeats keep last_seen moving, and carry client_info.
    seen = rec["last_seen"]
    wait_until(lambda: r.record()["last_seen"] > seen, 10, what="a heartbeat")
    rec = wait_until(lambda: (lambda x: x if x["client_info"] is not None else None)(r.record()),
                     10, what="client_info from a heartbeat")
    assert isinstance(rec["client_info"], dict) and rec["client_info"], rec
    # Dead: not alive once its leases would have expired.
    r.kill9()
    wait_until(lambda: not r.record()["alive"], 15, what="the killed runner to be not alive")


def test_a_restarted_runner_keeps_its_record_and_its_work_directory(ctx, server, tmp_path):
    # A long lease (heartbeat 20 s: 60 s), so that only the restart re-queues.
    r = ctx.runner(server, name="keep", heartbeat=20).start()
    first = wait_until(r.record, 10, what="the runner's record")
    token_file = os.path.join(r.workdir, "runner-token")
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    # A second runner in the same work directory refuses to start.
    twin = ctx.runner(server, name="twin")
    twin.workdir = r.workdir
    twin.start(wait=False)
    twin.expect_dead = True
    assert twin.popen.wait(30) != 0
    assert "another runner works in" in twin.output(), twin.output()
    # Killed in the middle of a job and started again: the same record, and
    # the job it ran is re-queued at once (its new process does not have it).
    started = tmp_path / "started"
    build, jobs = server.submit_jobs([{"name": "j", "commands": [
        "if [ -e %s ]; then echo second run; else touch %s; sleep 60; fi" % (started, started)]}])
    wait_until(started.exists, 30, what="the job to start")
    r.kill9()
    r.start()
    j = server.wait_job(jobs[0]["id"], timeout=30)
    assert j["status"] == "passed" and j["attempt"] == 2, j
    assert b"second run" in server.log(j["id"])
    recs = [x for x in server.runners() if x["name"] == "keep"]
    assert [x["id"] for x in recs] == [first["id"]], recs
    assert "registered again" in server.output()
    # A graceful restart too, with other labels: the server routes by them.
    r.stop()
    r.labels = {"gpu": "yes"}
    r.start()
    wait_until(lambda: r.record()["labels"] == {"gpu": "yes"}, 10,
               what="the restarted runner to register its new labels")
    assert [x["id"] for x in server.runners() if x["name"] == "keep"] == [first["id"]]
    _, jobs = server.submit_jobs([{"name": "g", "commands": ["true"], "labels": {"gpu": "yes"}}])
    assert server.wait_job(jobs[0]["id"], timeout=30)["status"] == "passed"
    # Another server is not given this token: a new registration there.
    with open(token_file) as f:
        assert json.load(f)["server"] == server.url


def test_stale_attempt_writes_are_refused_and_the_result_recorded_once(ctx, server):
    reg = register(server, "doomed")
    tok = reg["token"]
    build, jobs = server.submit_jobs([{"name": "j", "commands": ["echo from-the-successor"]}])
    r = claim(server, tok)
    assert r.status == 200, r
    job = r.json()
    jid = job["id"]
    assert job["attempt"] == 1 and job["build_id"] == build["id"] and job["fetch_url"] is None
    assert job["commands"] == ["echo from-the-successor"], job

    path = "/api/jobs/%s/log?attempt=1&offset=%d"
    r = server.post(path % (jid, 0), b"zombie-1\n", token=tok)
    assert r.status == 200 and r.json()["size"] == 9, r
    r = server.post(path % (jid, 0), b"zombie-1\n", token=tok)  # a retried chunk
    assert r.status == 200 and r.json()["size"] == 9, r
    r = server.post(path % (jid, 100), b"gap", token=tok)  # past the end
    assert r.status == 409 and r.json()["size"] == 9, r
    assert server.log(jid) == b"zombie-1\n"

    # This runner now goes silent: its lease expires, the job is queued again.
    requeued = wait_until(lambda: (lambda j: j if j["status"] == "queued" or j["attempt"] >= 2
                                   else None)(server.job(jid)),
                          reg["lease_seconds"] + 15, 0.1, what="the job to be re-queued")
    assert requeued["status"] in ("queued", "running"), requeued
    assert requeued["infra_retries"] >= 1, requeued
    heir = ctx.runner(server, name="heir").start()
    done = server.wait_job(jid)
    assert done["status"] == "passed" and done["attempt"] == 2, done
    assert done["runner"] == heir.rname and done["infra_retries"] >= 1, done

    # The presumed-dead runner comes back and writes: refused.
    r = server.post(path % (jid, 9), b"late\n", token=tok)
    assert r.status == 409, r
    body = r.json()
    assert "stale" in body["error"] and body["attempt"] == 2, body
    r = server.post("/api/jobs/%s/finish" % jid,
                    {"attempt": 1, "status": "failed", "exit_code": 1, "error": None}, token=tok)
    assert r.status == 409 and "error" in r.json(), r

    after = server.job(jid)
    for k in ("status", "attempt", "exit_code", "finished", "runner", "log_size"):
        assert after[k] == done[k], (k, after, done)
    log = server.log(jid)
    assert b"from-the-successor" in log and b"zombie" not in log and b"late" not in log
    b = server.build(build["id"])
    assert b["status"] == "passed", b
    assert any("lease" in e["message"].lower() for e in b["events"]), b["events"]


def test_finish_is_idempotent_and_cancel_comes_back_in_the_heartbeat(ctx, server):
    tok = register(server, "proto")["token"]
    _, jobs = server.submit_jobs(["true", "true"])

    # Finish twice: 200 both times, the second changes nothing.
    j1 = claim(server, tok).json()
    r = server.post("/api/jobs/%s/log?attempt=%d&offset=0" % (j1["id"], j1["attempt"]),
                    b"hello\n", token=tok)
    assert r.status == 200, r
    fin = {"attempt": j1["attempt"], "status": "passed", "exit_code": 0, "error": None}
    r1 = server.post("/api/jobs/%s/finish" % j1["id"], fin, token=tok)
    assert r1.status == 200 and r1.json()["status"] == "passed", r1
    r2 = server.post("/api/jobs/%s/finish" % j1["id"],
                     dict(fin, status="failed", exit_code=1), token=tok)
    assert r2.status == 200, r2
    now = server.job(j1["id"])
    assert now["status"] == "passed" and now["exit_code"] == 0, now
    assert now["finished"] == r1.json()["finished"], (now, r1.json())

    # Cancel a running job: the next heartbeat tells the runner; finish is refused.
    j2 = claim(server, tok).json()
    assert j2["id"] != j1["id"]
    r = server.post("/api/jobs/%s/cancel" % j2["id"])
    assert r.status == 200 and r.json()["status"] == "cancelled", r
    r = server.post("/api/runners/heartbeat",
                    {"client_info": {"load": 0.5}, "jobs": [{"id": j2["id"],
                                                             "attempt": j2["attempt"]}]},
                    token=tok)
    assert r.status == 200, r
    assert {"id": j2["id"], "attempt": j2["attempt"]} in r.json()["cancel"], r.json()
    r = server.post("/api/jobs/%s/finish" % j2["id"],
                    {"attempt": j2["attempt"], "status": "passed", "exit_code": 0}, token=tok)
    assert r.status == 409, r
    assert server.job(j2["id"])["status"] == "cancelled"

    # Nothing left: a claim waits and answers 204.
    r = claim(server, tok, wait=1)
    assert r.status == 204, r
    # client_info sent by the heartbeat is shown on the runner.
    rec = [x for x in server.runners() if x["name"] == "proto"][0]
    assert rec["client_info"] == {"load": 0.5}, rec


def test_finish_may_bring_the_next_job(ctx, server):
    """"claim": true in a finish claims the runner's next job in the same
    answer (labels honoured); none left: no "next", and the runner claims."""
    tok = register(server, "next", labels={"os": "linux"})["token"]
    _, jobs = server.submit_jobs([
        {"name": "first", "commands": ["true"]},
        {"name": "not-mine", "commands": ["true"], "labels": {"os": "mac"}},
        {"name": "second", "commands": ["true"]},
    ])
    j = by_name(jobs)
    first = claim(server, tok).json()
    assert first["id"] == j["first"]["id"], first
    fin = {"attempt": first["attempt"], "status": "passed", "exit_code": 0, "claim": True}
    r = server.post("/api/jobs/%s/finish" % first["id"], fin, token=tok)
    assert r.status == 200 and r.json()["status"] == "passed", r
    nxt = r.json()["next"]
    assert nxt["id"] == j["second"]["id"] and nxt["attempt"] == 1, nxt
    assert nxt["commands"] == ["true"] and "fetch_url" in nxt and nxt["max_log_bytes"] > 0, nxt
    running = server.job(nxt["id"])
    assert running["status"] == "running" and running["runner"] == "next", running
    # The job handed out is this runner's: its finish is accepted; nothing is
    # left for it (the mac job is not), so no "next".
    r = server.post("/api/jobs/%s/finish" % nxt["id"],
                    dict(fin, attempt=nxt["attempt"]), token=tok)
    assert r.status == 200 and "next" not in r.json(), r.json()
    assert server.job(j["not-mine"]["id"])["status"] == "queued"
    # Without "claim", nothing is claimed: the old protocol is unchanged.
    _, more = server.submit_jobs(["true"])
    third = claim(server, tok).json()
    r = server.post("/api/jobs/%s/finish" % third["id"],
                    {"attempt": third["attempt"], "status": "passed", "exit_code": 0}, token=tok)
    assert r.status == 200 and "next" not in r.json(), r.json()
    assert server.job(third["id"])["status"] == "passed"


def test_a_runner_cannot_store_more_than_twice_the_log_cap(ctx):
    """Whatever a runner sends, the server keeps at most twice --max-log-size
    of a log, then a note; bytes past that are answered as taken (by chunk,
    by a finish, even past the end), so a runner that ignores the cap neither
    fills the disk nor gets stuck sending them again."""
    server = ctx.server(args=["--max-log-size", "64K"]).start()
    tok = register(server, "loud")["token"]
    server.submit_jobs(["true"])
    job = claim(server, tok).json()
    jid, att = job["id"], job["attempt"]
    limit = 2 * 65536
    data = bytes(range(256)) * 1024  # 256 KiB
    path = "/api/jobs/%s/log?attempt=%d&offset=%d"

    def post(offset, n):
        r = server.post(path % (jid, att, offset), data[offset:offset + n], token=tok)
        assert r.status == 200 and r.json()["size"] == offset + n, (offset, n, r)

    post(0, 100000)
    assert server.log(jid) == data[:100000]
    post(100000, 60000)  # crosses the limit
    note = ("\n[yci: the server dropped the rest of this log: it keeps at most %d bytes, "
            "twice --max-log-size]\n" % limit).encode()
    kept = data[:limit] + note
    assert server.log(jid) == kept
    post(100000, 60000)  # sent again (the answer was lost): the same
    post(160000, 10000)
    post(200000, 5000)  # past the end as well
    assert server.log(jid) == kept
    r = server.post("/api/jobs/%s/finish" % jid,
                    {"attempt": att, "status": "passed", "exit_code": 0,
                     "log": {"offset": 205000, "text": "the end\n"}}, token=tok)
    assert r.status == 200 and r.json()["status"] == "passed", r
    assert server.log(jid) == kept
    assert server.job(jid)["log_size"] == len(kept)

    # Bytes past the limit while the server lacks some before it (it lost
    # them): a chunk gets 409 and the size, to send those first; a finish's
    # last bytes far past the end get the lost bytes' note up to the limit
    # only, then the note of the limit.
    server.submit_jobs(["true"])
    job = claim(server, tok).json()
    jid, att = job["id"], job["attempt"]
    post(0, 1000)
    r = server.post(path % (jid, att, limit + 10), b"x" * 100, token=tok)
    assert r.status == 409 and r.json()["size"] == 1000, r
    r = server.post("/api/jobs/%s/finish" % jid,
                    {"attempt": att, "status": "passed", "exit_code": 0,
                     "log": {"offset": 1 << 40, "text": "far away\n"}}, token=tok)
    assert r.status == 200 and r.json()["status"] == "passed", r
    log = server.log(jid)
    assert len(log) == limit + len(note) and log.startswith(data[:1000]), len(log)
    assert log.endswith(note) and b"the server lost %d bytes" % (limit - 1000) in log


def test_finish_may_carry_the_log_tail(ctx, server):
    """"log": {"offset", "text"} in a finish appends the log's last bytes by
    offset, as POST .../log would: a retried finish does not repeat them, a
    stale attempt's are refused with its finish, bytes the server lost before
    them are noted, and a malformed "log" is a 400 that finishes nothing."""
    tok = register(server, "tail")["token"]
    _, jobs = server.submit_jobs(["true", "true", "true"])
    first = claim(server, tok).json()
    jid, att = first["id"], first["attempt"]
    r = server.post("/api/jobs/%s/log?attempt=%d&offset=0" % (jid, att), b"$ true\n", token=tok)
    assert r.status == 200 and r.json()["size"] == 7, r

    fin = {"attempt": att, "status": "passed", "exit_code": 0}
    for bad in ({"offset": -1, "text": "x"}, {"offset": 7}, {"offset": 7, "text": 5}, "x"):
        r = server.post("/api/jobs/%s/finish" % jid, dict(fin, log=bad), token=tok)
        assert r.status == 400 and "log" in r.json()["error"], (bad, r)
    assert server.job(jid)["status"] == "running"

    tail = {"offset": 7, "text": "héllo \x1b[1mbold\x1b[0m\tend\n"}
    r = server.post("/api/jobs/%s/finish" % jid, dict(fin, log=tail), token=tok)
    assert r.status == 200 and r.json()["status"] == "passed", r
    want = b"$ true\n" + tail["text"].encode()
    assert server.log(jid) == want
    assert server.job(jid)["log_size"] == len(want)
    # The answer was lost, the runner retries: same result, the log once.
    r = server.post("/api/jobs/%s/finish" % jid, dict(fin, log=tail), token=tok)
    assert r.status == 200 and server.log(jid) == want, r

    # A tail past the end of what the server has: a note of the lost bytes'
    # size (offsets hold), then the bytes.
    second = claim(server, tok).json()
    r = server.post("/api/jobs/%s/finish" % second["id"],
                    {"attempt": second["attempt"], "status": "failed", "exit_code": 1,
                     "log": {"offset": 100, "text": "last words\n"}}, token=tok)
    assert r.status == 200 and r.json()["status"] == "failed", r
    note = b"\n[yci: the server lost 100 bytes of this log]"
    assert server.log(second["id"]) == note + b" " * (99 - len(note)) + b"\nlast words\n"

    # Another runner's (or a stale) finish: refused, its bytes not written.
    third = claim(server, tok).json()
    other = register(server, "intruder")["token"]
    r = server.post("/api/jobs/%s/finish" % third["id"],
                    {"attempt": third["attempt"], "status": "passed", "exit_code": 0,
                     "log": {"offset": 0, "text": "not mine\n"}}, token=other)
    assert r.status == 409, r
    assert server.log(third["id"]) == b""
    assert server.job(third["id"])["status"] == "running"
