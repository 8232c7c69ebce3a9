"""Jobs that misbehave: huge output, no end, children that outlive them.
The log is kept whole, the timeout fires, no process is left behind.

The helper tests/helpers/misbehave (built beside yci) is used when it exists;
otherwise the same behaviour comes from small Python scripts."""

import hashlib
import os
import re
import subprocess

import pytest

from conftest import PY, marker, pids_matching, wait_until

LINE_LEN = 100
FIFTY_MB = 50 * 1024 * 1024


def gen_lines_script(tmp, n):
    """A script printing n numbered lines of exactly LINE_LEN bytes."""
    path = tmp / "lines.py"
    path.write_text(
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "pad = b'abcdefghijklmnopqrstuvwxyz0123456789' * 3\n"
        "for i in range(%d):\n"
        "    w(b'%%09d ' %% i + pad[:%d] + b'\\n')\n" % (n, LINE_LEN - 11))
    return path


def alive(pid):
    """True if pid is a live process (not gone, not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_50_mb_of_output_is_kept_whole(ctx, server, runner, tmp_path):
    # Numbered lines rather than misbehave's --bytes (all 'x'): a chunk lost,
    # repeated or reordered changes the checksum, not only the size.
    cmd = [PY, str(gen_lines_script(tmp_path, FIFTY_MB // LINE_LEN))]
    # What the job prints, produced here the same way.
    expected = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=120).stdout
    assert len(expected) == FIFTY_MB
    again = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=120).stdout
    assert hashlib.sha256(again).digest() == hashlib.sha256(expected).digest(), \
        "the generator is not deterministic"
    del again

    _, jobs = server.submit_jobs([{"name": "big", "commands": [" ".join(cmd)], "timeout": 240}])
    job = server.wait_job(jobs[0]["id"], timeout=240)
    assert job["status"] == "passed", job
    log = server.log(job["id"])
    # The log may frame the output (a header line, say), but not lose or
    # change a byte of it.
    assert job["log_size"] == len(log)
    assert len(log) >= FIFTY_MB and len(log) - FIFTY_MB < 4096, len(log)
    at = log.find(expected[:4096])
    assert at >= 0, "the start of the output is not in the log"
    got = log[at:at + FIFTY_MB]
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest(), \
        "the log differs from what was printed (first difference at byte %d)" % next(
            (i for i in range(0, len(got), 4096) if got[i:i + 4096] != expected[i:i + 4096]), -1)
    # A ranged read returns the same bytes.
    part = server.log(job["id"], offset=at + 1000000, limit=1000)
    assert part == expected[1000000:1001000]


def test_a_job_that_never_ends_times_out_and_is_gone(ctx, server, runner, misbehave, tmp_path):
    mark = marker()
    if misbehave:
        prog = tmp_path / mark
        os.symlink(misbehave, prog)
        cmd = "%s --sleep 1000 --ignore-term" % prog
    else:
        cmd = ("%s -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "print(\"started\", flush=True); time.sleep(1000)' %s" % (PY, mark))
    _, jobs = server.submit_jobs([{"name": "forever", "commands": [cmd], "timeout": 2}])
    jid = jobs[0]["id"]
    wait_until(lambda: pids_matching(mark), 30, what="the job's process to start")
    job = server.wait_job(jid, timeout=60)
    assert job["status"] == "timed_out", job
    assert 2000 <= job["duration_ms"] < 30000, job
    wait_until(lambda: not pids_matching(mark), 20,
               what="the timed-out job's processes (TERM ignored) to be killed")


def test_exit_code_and_env_are_reported(ctx, server, runner, misbehave):
    if misbehave:
        cmd = "%s --lines 5 --exit 7" % misbehave
    else:
        cmd = "for i in 1 2 3 4 5; do echo line $i; done; exit 7"
    _, jobs = server.submit_jobs([
        {"name": "seven", "commands": [cmd]},
        {"name": "env", "commands": ['echo "value=[$YCI_TEST_VAR]"', "echo second-command"],
         "env": {"YCI_TEST_VAR": "hello world"}},
        {"name": "stops", "commands": ["echo one", "false", "echo never-printed"]},
    ])
    j = {x["name"]: x for x in jobs}
    seven = server.wait_job(j["seven"]["id"])
    assert seven["status"] == "failed" and seven["exit_code"] == 7, seven
    env = server.wait_job(j["env"]["id"])
    assert env["status"] == "passed" and env["exit_code"] == 0, env
    log = server.log(env["id"])
    assert b"value=[hello world]" in log and b"second-command" in log, log
    stops = server.wait_job(j["stops"]["id"])
    assert stops["status"] == "failed" and stops["exit_code"] == 1, stops
    assert b"never-printed" not in server.log(stops["id"])
    b = server.build(seven["build_id"])
    assert b["status"] == "failed", b


CHILDREN = r'''
import os, signal, sys, time
mode, go, mark = sys.argv[1], sys.argv[2], sys.argv[3]

def wait_go():
    for _ in range(600):
        if os.path.exists(go):
            return
        time.sleep(0.05)

def linger(pidfile):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(1000)
    os._exit(0)

if mode == "background":          # a child in the job's process group
    if os.fork() == 0:
        linger(go + ".pid")
else:                              # a grandchild in a session of its own
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            if mode == "setsid-quiet":
                fd = os.open(os.devnull, os.O_RDWR)
                for i in (0, 1, 2):
                    os.dup2(fd, i)
            linger(go + ".pid")
        os._exit(0)
print("parent waiting", flush=True)
wait_go()
print("parent exits", flush=True)
'''


@pytest.mark.parametrize("mode", ["background", "setsid-quiet", "setsid-holding-stdout"])
def test_children_that_outlive_the_job_are_killed(ctx, server, runner, tmp_path, mode):
    mark = marker()
    script = tmp_path / "children.py"
    script.write_text(CHILDREN)
    go = tmp_path / "go"
    pidfile = tmp_path / "go.pid"
    _, jobs = server.submit_jobs([{"name": "forks", "timeout": 60,
                                   "commands": ["%s %s %s %s %s" % (PY, script, mode, go, mark)]}])
    # The left-behind process exists while the job runs...
    wait_until(pidfile.exists, 30, what="the child to start")
    pid = int(pidfile.read_text())
    assert alive(pid) and pid in pids_matching(mark)
    go.touch()
    job = server.wait_job(jobs[0]["id"], timeout=45)
    # ...the job itself ended normally (not by its timeout)...
    assert job["status"] == "passed", job
    assert job["duration_ms"] < 30000, job
    assert b"parent exits" in server.log(job["id"])
    # ...and nothing of it is left.
    wait_until(lambda: not alive(pid) and not pids_matching(mark), 20,
               what="the %s child (pid %d) to be killed" % (mode, pid))


@pytest.mark.parametrize("flags", ["--grandchild", "--grandchild --setsid --ignore-term"])
def test_grandchild_of_misbehave_is_killed(ctx, server, runner, misbehave, tmp_path, flags):
    if not misbehave:
        pytest.skip("tests/helpers/misbehave is not built (the Python variant above runs)")
    mark = marker()
    prog = tmp_path / mark
    os.symlink(misbehave, prog)
    _, jobs = server.submit_jobs([{"name": "gc", "timeout": 60,
                                   "commands": ["%s %s --sleep 2" % (prog, flags)]}])
    jid = jobs[0]["id"]
    m = wait_until(lambda: re.search(rb"grandchild (\d+)", server.log(jid)), 30,
                   what="misbehave to print its grandchild's pid")
    pid = int(m.group(1))
    assert alive(pid) and pid in pids_matching(mark)
    job = server.wait_job(jid, timeout=45)
    assert job["status"] == "passed", job
    assert job["duration_ms"] < 30000, job
    wait_until(lambda: not alive(pid) and not pids_matching(mark), 20,
               what="the grandchild (pid %d) to be killed" % pid)


def test_cancel_kills_the_running_job(ctx, server, runner, tmp_path):
    mark = marker()
    cmd = "%s -c 'import time; print(\"up\", flush=True); time.sleep(1000)' %s" % (PY, mark)
    build, jobs = server.submit_jobs([{"name": "long", "commands": [cmd]}])
    wait_until(lambda: pids_matching(mark), 30, what="the job to start")
    r = server.post("/api/builds/%s/cancel" % build["id"])
    assert r.status == 200 and r.json()["cancelled"] == 1, r
    job = server.wait_job(jobs[0]["id"], timeout=10)
    assert job["status"] == "cancelled", job
    wait_until(lambda: not pids_matching(mark), 20, what="the cancelled job's process to die")
    b = server.wait_build(build["id"], timeout=10)
    assert b["status"] == "cancelled", b
    assert any("cancel" in e["message"].lower() for e in server.build(build["id"])["events"])
    # The runner is free again.
    _, more = server.submit_jobs(["true"])
    assert server.wait_job(more[0]["id"])["status"] == "passed"


def test_log_cap_keeps_head_and_tail(ctx):
    """Past --max-log-size a log keeps its first and last halves with a marker
    between; the job is not failed for it."""
    server = ctx.server(args=["--max-log-size", "64K"]).start()
    ctx.runner(server).start()
    bid = server.submit([{"name": "loud", "commands": ["seq 1 1000000"]}])["id"]
    b = server.wait_build(bid, timeout=120)
    job = server.build(bid)["jobs"][0]
    assert b["status"] == "passed" and job["status"] == "passed", job
    log = server.log(job["id"]).decode()
    assert log.startswith("$ seq 1 1000000\n1\n2\n3\n"), log[:100]
    m = re.search(r"\[yci: (\d+) bytes of output dropped here \(the log is capped at 65536 "
                  r"bytes\); the last 32768 bytes follow\]\n", log)
    assert m, log[32000:33500]
    assert log.endswith("999999\n1000000\n"), log[-100:]
    total = len("".join("%d\n" % i for i in range(1, 1000001))) + len("$ seq 1 1000000\n")
    assert m.start() == 32768 + 1, m.start()  # after the marker's own newline
    assert int(m.group(1)) == total - 32768 - 32768
    assert len(log) < 65536 + 400, len(log)
    # Under the cap: whole, no marker.
    bid = server.submit([{"name": "fits", "commands": ["seq 1 9000"]}])["id"]
    server.wait_build(bid)
    log = server.log(server.build(bid)["jobs"][0]["id"]).decode()
    assert log == "$ seq 1 9000\n" + "".join("%d\n" % i for i in range(1, 9001)), log[-200:]
    r = ctx.cli("server", "--max-log-size", "1K", "--data", str(ctx.tmp / "x"))
    assert r.returncode == 2 and "--max-log-size" in r.stderr, r


def test_short_jobs_logs_of_every_size_are_whole(ctx, server, runner):
    """A job that ends quickly is sent by its slot's own thread when it ended:
    its output whole with the result when it fits (64 KiB), in chunks first
    when it does not, and through the uploader thread once it passed 512 KiB
    (docs/architecture.md, "The runner"). Every size arrives byte for byte."""
    sizes = (0, 1, 65535, 65536 + 17, 300000, 2000000)
    cmds = ["head -c %d /dev/zero | tr '\\0' x" % n for n in sizes]
    build, jobs = server.submit_jobs([{"name": "size-%d" % n, "commands": [c]}
                                      for n, c in zip(sizes, cmds)])
    b = server.wait_build(build["id"], timeout=120)
    assert b["status"] == "passed", b
    for job, n, c in zip(jobs, sizes, cmds):
        log = server.log(job["id"]).decode()
        assert log == "$ %s\n" % c + "x" * n, (n, len(log), log[:80])


def test_log_windows_by_offset_and_http_range(ctx, server, runner):
    from conftest import http_request
    bid = server.submit([{"name": "digits", "commands": ["printf 0123456789"]}])["id"]
    server.wait_build(bid)
    jid = server.build(bid)["jobs"][0]["id"]
    full = server.log(jid)
    assert full.endswith(b"0123456789"), full
    n = len(full)
    path = "/api/jobs/%d/log" % jid

    def get(rng):
        return http_request(server.url, "GET", path, headers={"Range": rng})
    r = get("bytes=0-3")
    assert r.status == 206 and r.body == full[:4], r
    assert r.header("Content-Range") == "bytes 0-3/%d" % n
    r = get("bytes=-4")
    assert r.status == 206 and r.body == b"6789" and r.header("Content-Range") == \
        "bytes %d-%d/%d" % (n - 4, n - 1, n), r
    r = get("bytes=%d-" % (n - 2))
    assert r.status == 206 and r.body == b"89", r
    r = get("bytes=%d-%d" % (n - 3, n + 100))
    assert r.status == 206 and r.body == b"789", r
    r = get("bytes=%d-" % n)
    assert r.status == 416 and r.header("Content-Range") == "bytes */%d" % n, r
    # Several ranges, or a malformed one: the whole log, as HTTP allows.
    for rng in ("bytes=0-1,3-4", "lines=1-2", "bytes=5-2"):
        r = get(rng)
        assert r.status == 200 and r.body == full, (rng, r)
    assert http_request(server.url, "GET", path).header("Accept-Ranges") == "bytes"
    # The API's own window: offset and limit.
    assert server.log(jid, offset=n - 6, limit=3) == b"456"


def test_log_follower_waits_for_new_bytes(ctx, server, runner):
    """GET .../log?offset=N&wait=S holds the request until the job prints more
    (or ends): a follower gets output as it comes, without polling."""
    import time as _time
    from conftest import http_request
    bid = server.submit([{"name": "slowprint",
                          "commands": ["echo first-part; sleep 2; echo second-part"]}])["id"]
    jid = server.build(bid)["jobs"][0]["id"]
    wait_until(lambda: b"first-part" in server.log(jid), 30, what="the first part")
    n = len(server.log(jid))
    t0 = _time.monotonic()
    r = http_request(server.url, "GET", "/api/jobs/%d/log?offset=%d&wait=20" % (jid, n),
                     timeout=30)
    took = _time.monotonic() - t0
    assert r.status == 200 and b"second-part" in r.body, r
    assert 0.5 < took < 10, took  # it waited for the print, not for the 20 s
    server.wait_build(bid)
    # The job is over: no waiting, an empty answer at the end, its status in a header.
    end = int(r.header("X-Yci-Log-Size"))
    t0 = _time.monotonic()
    r = http_request(server.url, "GET", "/api/jobs/%d/log?offset=%d&wait=20" % (jid, end + 10),
                     timeout=30)
    assert r.status == 200 and r.body == b"" and _time.monotonic() - t0 < 5, r
    assert r.header("X-Yci-Job-Status") == "passed"
    bad = http_request(server.url, "GET", "/api/jobs/%d/log?wait=61" % jid)
    assert bad.status == 400, bad


def test_log_waiters_that_go_away_or_outlive_the_server(ctx, server, runner):
    import socket
    bid = server.submit([{"name": "long", "commands": ["echo x; sleep 30"]}])["id"]
    jid = server.build(bid)["jobs"][0]["id"]
    wait_until(lambda: server.log(jid), 30, what="the job's first bytes")
    n = len(server.log(jid))
    req = ("GET /api/jobs/%d/log?offset=%d&wait=30 HTTP/1.1\r\nHost: x\r\n\r\n" % (jid, n))
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(req.encode())
        socks.append(s)
    socks[0].close()  # a follower that goes away: forgotten
    socks[1].close()
    assert server.get("/api/health").status == 200
    # The others are still waiting when the server stops: it answers them and
    # exits cleanly (the teardown checks the exit status and the sanitizers).
    assert server.stop() in (0, -15)
    for s in socks[2:]:
        s.settimeout(10)
        data = s.recv(4096)
        assert data == b"" or data.startswith(b"HTTP/1.1 "), data
        s.close()


def test_each_job_starts_in_a_clean_workspace(ctx, server, runner):
    """What a job leaves in its workspace (files, hidden files, a read-only
    directory with files in it, a symlink out, the workspace itself made
    read-only) is gone when the next job of the slot starts, and what the
    symlink pointed at is untouched; the next job can write there."""
    outside = ctx.tmp / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep me")
    mess = ("echo a > a; echo b > .hidden; mkdir -p ro/deep; echo x > ro/deep/x; "
            "chmod 0500 ro/deep ro; ln -s %s out; chmod 0500 ." % outside)
    _, jobs = server.submit_jobs([{"name": "mess", "commands": [mess]}])
    assert server.wait_job(jobs[0]["id"])["status"] == "passed"
    look = ('ls -A; echo "mode=$(stat -c %a .)"; echo new > new && echo wrote; '
            'test -z "$(ls -A | grep -v new)" && echo empty')
    _, jobs = server.submit_jobs([{"name": "look", "commands": [look]}])
    done = server.wait_job(jobs[0]["id"])
    log = server.log(done["id"]).decode()
    assert done["status"] == "passed", (done, log)
    lines = log.splitlines()  # the log also shows the command: whole lines only
    assert "mode=755" in lines and "wrote" in lines and "empty" in lines, log
    assert not {"a", ".hidden", "ro", "out"} & set(lines), log
    assert (outside / "keep").read_text() == "keep me"


@pytest.mark.parametrize("end", ["text", "bytes"])
def test_a_short_log_arrives_whole_with_the_result(ctx, server, runner, end):
    """A job's last bytes go with its result (one request less): the log is
    byte for byte what the job printed, whether those bytes are text (sent in
    the finish's JSON) or not (not UTF-8, a NUL: uploaded before it)."""
    tail = r"\303\251t\303\251 \033[1mok\033[0m\n" if end == "text" else r"\377\000\376 raw\n"
    cmd = "printf 'first\\n'; printf '%s'; exit 3" % tail
    _, jobs = server.submit_jobs([{"name": "short", "commands": [cmd]}])
    done = server.wait_job(jobs[0]["id"])
    assert done["status"] == "failed" and done["exit_code"] == 3, done
    printed = subprocess.run(["/bin/sh", "-c", cmd], stdout=subprocess.PIPE).stdout
    assert server.log(done["id"]) == b"$ " + cmd.encode() + b"\n" + printed
    assert done["log_size"] == len(server.log(done["id"]))


def test_plain_commands_run_without_a_shell(ctx, server, runner, tmp_path):
    """A command of plain words (no quotes, $, globs, redirections, separators;
    not a builtin) is started as it is, not by a shell that would start it: one
    process fewer, the same outcome. One that cannot start goes to the shell
    after all, so its message and exit code are the shell's; a signal's death
    is logged as the shell would. Anything else still goes to the shell."""
    tools = tmp_path / "tools"
    tools.mkdir()

    def tool(name, text, mode=0o755):
        p = tools / name
        p.write_text(text)
        p.chmod(mode)
        return str(p)

    parent = tool("parent", '#!/bin/sh\necho "parent=$(cat /proc/$PPID/comm)"\n'
                            'echo "pwd=$PWD"\nfor a; do echo "[$a]"; done\n')
    noshebang = tool("noshebang", "echo no-shebang-ran\n")
    notexec = tool("notexec", "#!/bin/sh\necho never\n", 0o644)
    segv = tool("segv", "#!/bin/sh\nkill -SEGV $$\n")
    _, jobs = server.submit_jobs([
        {"name": "plain", "commands": [parent + " a,b  c=d --x=1 @p %q", "true",
                                       'echo "ws=$YCI_WORKSPACE"']},
        {"name": "shelled", "commands": [parent + " ; true"]},
        {"name": "missing", "commands": ["no-such-program-yci"]},
        {"name": "notexec", "commands": [notexec]},
        {"name": "noshebang", "commands": [noshebang]},
        {"name": "segv", "commands": [segv]},
        {"name": "false", "commands": ["false"]},
    ])
    done = {j["name"]: server.wait_job(j["id"]) for j in jobs}
    log = {n: server.log(j["id"]).decode() for n, j in done.items()}

    assert done["plain"]["status"] == "passed", (done["plain"], log["plain"])
    lines = log["plain"].splitlines()
    assert "parent=sh" not in lines and any(x.startswith("parent=") for x in lines), lines
    assert ["[a,b]", "[c=d]", "[--x=1]", "[@p]", "[%q]"] == [x for x in lines if x[:1] == "["]
    ws = [x[3:] for x in lines if x.startswith("ws=")]
    assert ws and ws[0] and "pwd=" + ws[0] in lines, lines  # as the shell exports it
    assert "parent=sh" in log["shelled"].splitlines(), log["shelled"]

    def ended(name, status, code, text):
        assert (done[name]["status"], done[name]["exit_code"]) == (status, code), \
            (done[name], log[name])
        assert text in log[name], log[name]

    ended("missing", "failed", 127, "no-such-program-yci: not found")
    ended("notexec", "failed", 126, "Permission denied")
    ended("noshebang", "passed", 0, "no-shebang-ran")
    ended("segv", "failed", 139, "Segmentation fault")
    ended("false", "failed", 1, "$ false")
