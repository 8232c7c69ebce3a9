"""yci as a peer of bench/suite: `yci server` and one `yci runner --slots 2`
(the interface is in __init__.py); and the figures only yci has (scale,
longpoll, history, logs), the last three each on a yci of its own."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import (Conn, Yci as YciProcs, memory, post_builds,  # noqa: E402
                      raise_nofile, wait_builds_ended)
from peers import marker_cmd, read_marks, rss_bytes, tree_rss  # noqa: E402

BATCH = 256  # jobs per ad-hoc build (the server's default --max-jobs-per-build)
MATRIX = 100  # jobs per build of the checkout row
LINE = 101  # bytes a line of the log figure's bulk: 100 digits and a newline


class Yci:
    name = "yci"

    def __init__(self, tmp, slots=2, server_args=(), runner=True):
        self.tmp = tmp
        self.slots = slots
        self.server_args = tuple(server_args)
        self.with_runner = runner
        self.y = None
        self.api = None
        self.repo_name = None
        self.marks = os.path.join(tmp, "yci-marks")

    def available(self):
        try:
            YciProcs(self.tmp)  # finds the binary, or exits with a message
        except SystemExit:
            return False, "no yci binary (ninja -C build)"
        return True, ""

    def start(self):
        self.y = YciProcs(self.tmp)
        self.y.server("--poll-interval", "3600", "--max-jobs-per-build", "10000",
                      *self.server_args)
        if self.with_runner:
            self.y.runner(name="bench", slots=self.slots)
        self.api = Conn(self.y.port, token=self.y.token)
        time.sleep(1.0)  # settle before measuring anything idle

    def stop(self):
        if self.y:
            self.y.stop()
            self.y = None

    def _post(self, body):
        st, _, raw = self.api.call("POST", "/api/builds", body)
        if st != 201:
            raise RuntimeError("POST /api/builds answered %d: %r" % (st, raw[:300]))
        return json.loads(raw)

    def _get(self, path):
        st, _, raw = self.api.get(path)
        if st != 200:
            raise RuntimeError("GET %s answered %d" % (path, st))
        return json.loads(raw)

    def _newest(self):
        """The newest build's id (builds are numbered from 1), 0 when none."""
        b = self._get("/api/builds?limit=1")
        return b[0]["id"] if b else 0

    def _wait_builds(self, ids, timeout):
        """The newest `finished` of the builds once all ended; raises when one
        did not pass. Polls the newest of them in the builds list (no jobs in
        it: light), since the runner takes jobs in order, then reads each
        build once, as the rq peer does with its jobs. (A build page of 256
        jobs every 10 ms cost the server more than the jobs did: the end is
        the server's own `finished`, so how often we look does not change the
        figure, only what the looking takes from the system measured.)"""
        end = time.monotonic() + timeout
        pending = sorted(ids)
        last = 0
        while pending:
            newest = self._get("/api/builds?before=%d&limit=1" % (pending[-1] + 1))
            if not newest or newest[0]["id"] != pending[-1]:
                raise RuntimeError("build %d is not in the list" % pending[-1])
            if newest[0]["status"] not in ("queued", "running"):
                still = []
                for bid in pending:
                    b = self._get("/api/builds/%d" % bid)
                    if b["status"] in ("queued", "running"):
                        still.append(bid)
                    elif b["status"] != "passed":
                        raise RuntimeError("build %d ended %s" % (bid, b["status"]))
                    else:
                        last = max(last, b["finished"])
                pending = still
                if not pending:
                    break
            if time.monotonic() > end:
                raise RuntimeError("%d builds did not end within %d s" % (len(pending), timeout))
            time.sleep(0.005)
        return last / 1000.0

    def _checkout_repo(self, repo):
        """Register (once) a copy of repo whose .yci.yml has MATRIX jobs of `true`."""
        if self.repo_name:
            return
        work = os.path.join(self.tmp, "yci-repo-work")
        bare = os.path.join(self.tmp, "yci-repo.git")
        env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.com",
                   GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.com")
        run = lambda *a, **kw: subprocess.run(a, check=True, env=env, capture_output=True, **kw)
        run("git", "clone", "-q", repo, work)
        with open(os.path.join(work, ".yci.yml"), "w") as f:
            f.write("jobs:\n  t:\n    run: 'true'\n    matrix:\n      I: [%s]\n"
                    % ", ".join(str(i) for i in range(MATRIX)))
        run("git", "add", ".yci.yml", cwd=work)
        run("git", "commit", "-qm", "yci jobs", cwd=work)
        run("git", "clone", "-q", "--bare", work, bare)
        branch = run("git", "rev-parse", "--abbrev-ref", "HEAD", cwd=work).stdout.decode().strip()
        st, _, raw = self.api.call("POST", "/api/repos", {"name": "bench", "url": bare})
        if st != 201:
            raise RuntimeError("POST /api/repos answered %d: %r" % (st, raw[:300]))
        self.branch = branch
        # The first poll mirrors it (and builds it: wait for that build to end).
        end = time.monotonic() + 60
        while True:
            builds = self._get("/api/builds?repo=bench")
            if builds and builds[0]["status"] not in ("queued", "running"):
                break
            if time.monotonic() > end:
                raise RuntimeError("the repository's first build did not end")
            time.sleep(0.05)
        self.repo_name = "bench"

    def throughput(self, n, checkout=False, repo=None):
        if checkout:
            self._checkout_repo(repo)
            if n % MATRIX:
                raise ValueError("n must be a multiple of %d for the checkout row" % MATRIX)
            t0 = time.time()
            ids = [self._post({"repo": self.repo_name, "branch": self.branch})["id"]
                   for _ in range(n // MATRIX)]
        else:
            t0 = time.time()
            ids = []
            for start in range(0, n, BATCH):
                jobs = [{"name": "true-%d" % i, "commands": ["true"]}
                        for i in range(start, min(n, start + BATCH))]
                ids.append(self._post({"jobs": jobs})["id"])
        last = self._wait_builds(ids, 60 + n)
        return last - t0

    def latency(self, trials):
        """Figure 2: per trial, the job's start mark and the moment its result
        is visible, from just before the POST. The bench waits as the pages
        and a client do, on GET /api/changes (one answer per change of state,
        then the job read once), not by asking for the job every millisecond:
        that polling took a core's fifth of a 2-vCPU machine just while the
        job was starting, and measured the bench as much as yci (start p50
        0.3-0.5 ms later on the VM of 2026-12-01)."""
        out = []
        cmd = marker_cmd(self.marks)  # its recorder started before the first trial
        for i in range(trials):
            done = len(read_marks(self.marks))
            version = self._get("/api/changes")["version"]
            t0 = time.time()
            b = self._post({"jobs": [{"name": "lat", "commands": [cmd]}]})
            jid = b["jobs"][0]["id"]
            end = time.monotonic() + 30
            while True:
                j = self._get("/api/jobs/%d" % jid)
                if j["status"] == "passed":
                    visible = time.time()
                    break
                if j["status"] not in ("queued", "running") or time.monotonic() > end:
                    raise RuntimeError("latency job %d: %s" % (jid, j["status"]))
                version = self._get("/api/changes?since=%d&wait=30" % version)["version"]
            marks = read_marks(self.marks)
            if len(marks) != done + 1:
                raise RuntimeError("latency job %d left no mark" % jid)
            out.append((marks[-1] - t0, visible - t0))
            time.sleep(0.05)  # idle again
        return out

    def footprint(self):
        server, runner = self.y.procs[0].pid, self.y.procs[1].pid
        return {"server": rss_bytes(server), "worker": [tree_rss(runner)]}

    # Figure 6 (yci only): claims with a long queue.
    def _queue(self, count, labels=None):
        """Queue count jobs of `true` (with labels) in builds of up to 10,000."""
        ids = []
        for start in range(0, count, 10000):
            job = {"name": "q", "commands": ["true"]}
            if labels:
                job["labels"] = labels
            jobs = [dict(job, name="q-%d" % i) for i in range(start, min(count, start + 10000))]
            ids.append(self._post({"jobs": jobs})["id"])
        return ids

    def _cancel(self, ids):
        for bid in ids:
            st, _, raw = self.api.call("POST", "/api/builds/%d/cancel" % bid, {})
            if st != 200:
                raise RuntimeError("cancel of build %d answered %d" % (bid, st))

    def scale(self, n, queued):
        """{"ahead": s}: the time of n jobs of `true` while `queued` jobs that no
        runner can take (a label nobody has) wait ahead of them. (Queued jobs
        the runner can take would run first; inserting them behind the n while
        those run measures the bulk insert, not the claim.)"""
        ahead = self._queue(queued, labels={"pool": "nobody-has-it"})
        try:
            return {"ahead": self.throughput(n)}
        finally:
            self._cancel(ahead)

    # The figures below are yci's only. Each runs on a yci of its own (a fresh
    # store in a subdirectory: what ran before does not count), stopped before
    # it returns.
    def _fresh(self, sub, **kw):
        y = Yci(tempfile.mkdtemp(prefix=sub + "-", dir=self.tmp), slots=self.slots, **kw)
        try:
            y.start()
        except BaseException:
            self._dispose(y)
            raise
        return y

    def _dispose(self, y):
        """Stop a yci of _fresh() and remove its directory (a 1 GB log, say)."""
        y.stop()
        if not os.environ.get("YCI_BENCH_KEEP"):
            shutil.rmtree(y.tmp, ignore_errors=True)

    def longpoll(self, n):
        """Figure 3: the server's memory with n runners long-polling. n runners
        are simulated by one process (asyncio, a connection each, on loopback):
        each registers (slots 1, label pool=sim), then keeps a claim open
        (wait=60, asked again after a 204). Once all n claims are sent and 2 s
        passed, the server's VmRSS and Pss (the largest of 5 samples over 1 s).
        Then the sanity check: a build of n jobs for pool=sim is queued, every
        runner must get one of them and finish it (passed), and the build must
        pass. {"idle": (rss, pss) before, "polling": (rss, pss), "register_s",
        "answer_s": from queueing the jobs to the last claim answered,
        "repolls": claims answered 204 meanwhile, "threads"}."""
        raise_nofile(n + 256)
        h = self._fresh("longpoll", runner=False)
        try:
            pid = h.y.procs[0].pid
            idle = memory(pid)
            with open(os.path.join(h.y.data, "registration-secret")) as f:
                secret = f.read().strip()
            out = asyncio.run(_longpoll(h, secret, n, lambda: memory(pid)))
            out["idle"] = idle
            if h.y.procs[0].poll() is not None:
                raise RuntimeError("the server exited with %s" % h.y.procs[0].returncode)
            return out
        finally:
            self._dispose(h)

    def history(self, n, reps, passed, total, queued):
        """Figures 3 and 1 with a history. On a yci of its own (server and one
        runner, 2 slots): the idle server's memory; the throughput of n jobs
        (reps times) on the fresh store; builds of one job of `true` made up to
        `passed` builds in all, run by the runner (waited until all ended):
        the idle server's memory; then builds cancelled as soon as made up to
        `total` in all (a cancelled build is history too, and one costs ~1 ms
        against ~5 for one that runs: the runner's pace); `queued` jobs for a
        label no runner has; the throughput of n jobs again (reps times).
        {"fresh": [s...], "history": [s...], "mem_fresh", "mem_history":
        (rss, pss), "made_passed", "fill_passed_s", "made_cancelled",
        "fill_cancelled_s", "builds": the newest build's id at the end}."""
        h = self._fresh("history")
        try:
            pid = h.y.procs[0].pid
            out = {"mem_fresh": memory(pid)}
            out["fresh"] = [h.throughput(n) for _ in range(reps)]
            have = h._newest()
            t0 = time.monotonic()
            out["made_passed"] = max(0, passed - have)
            post_builds(h.api, out["made_passed"],
                        lambda i: {"jobs": [{"name": "h", "commands": ["true"]}]})
            left = wait_builds_ended(h.y.port, 60 + passed / 20)
            if left:
                raise RuntimeError("%d builds of the history did not end" % left)
            out["fill_passed_s"] = time.monotonic() - t0
            failed = h._get("/api/builds?status=failed&limit=1")
            if failed:
                raise RuntimeError("build %d of the history failed" % failed[0]["id"])
            time.sleep(1.0)  # idle again
            out["mem_history"] = memory(pid)
            have = h._newest()
            t0 = time.monotonic()
            out["made_cancelled"] = max(0, total - have)
            post_builds(h.api, out["made_cancelled"],
                        lambda i: {"jobs": [{"name": "h", "commands": ["true"],
                                             "labels": {"pool": "nobody-has-it"}}]},
                        cancel=True)
            out["fill_cancelled_s"] = time.monotonic() - t0
            have = h._newest()
            if have < total:
                raise RuntimeError("the history holds %d builds, not %d" % (have, total))
            ahead = h._queue(queued, labels={"pool": "nobody-has-it"})
            try:
                out["history"] = [h.throughput(n) for _ in range(reps)]
            finally:
                h._cancel(ahead)
            out["builds"] = h._newest()
            return out
        finally:
            self._dispose(h)

    def logs(self, nbytes, marks, follow=True):
        """Figure 4: a job that prints nbytes (lines of 100 digits, by `yes |
        head`) in `marks` chunks, each followed by a line `yci-mark TIME` (date
        +%s.%N), the whole between `yci-start TIME` and `yci-end TIME` lines.
        Its server runs with --max-log-size twice nbytes and more (the runner
        keeps the first half of the cap live, the second for the job's end).
        The same script is first run by the bench itself into /dev/null. With
        follow, a follower reads the log as `yci logs -f` does (offset, limit=1
        MiB, wait=20) from the job's creation on, and notes when each mark
        arrives. {"direct_s", "job_s" (the job's own start -> end marks),
        "api_s" (the job's started -> finished as the server records them),
        "stored" (the log's size), "lag": [seen - printed, s, per mark]}."""
        per = max(1, nbytes // marks // LINE)
        script = ('l=$(printf %%0100d 0); i=0; echo "yci-start $(date +%%s.%%N)"; '
                  'while [ $i -lt %d ]; do yes "$l" | head -n %d; '
                  'echo "yci-mark $(date +%%s.%%N)"; i=$((i+1)); done; '
                  'echo "yci-end $(date +%%s.%%N)"' % (marks, per))
        cap = max(2 * nbytes + (1 << 20), 1 << 26)
        t0 = time.monotonic()
        subprocess.run(["/bin/sh", "-c", script], stdout=subprocess.DEVNULL, check=True)
        direct = time.monotonic() - t0
        h = self._fresh("logs", server_args=("--max-log-size", str(cap)))
        try:
            b = h._post({"jobs": [{"name": "log", "commands": [script]}]})
            jid = b["jobs"][0]["id"]
            f = _Follower(h.y.port, jid)
            if follow:
                f.start()
                f.join(120 + nbytes / 1e6)
                if f.is_alive():
                    raise RuntimeError("the follower did not see job %d end" % jid)
                if f.error:
                    raise RuntimeError("the follower: %s" % f.error)
            else:
                h._wait_builds([b["id"]], 120 + nbytes / 1e6)
            j = h._get("/api/jobs/%d" % jid)
            if j["status"] != "passed":
                raise RuntimeError("the log job %d ended %s" % (jid, j["status"]))
            if j["log_size"] < marks * per * LINE or (follow and j["log_size"] != f.bytes):
                raise RuntimeError("job %d: printed %d bytes and more, %d stored, %d followed"
                                   % (jid, marks * per * LINE, j["log_size"], f.bytes))
            if not follow:  # the start and end marks: the log's head and tail
                for path in ("/api/jobs/%d/log?limit=4096" % jid,
                             "/api/jobs/%d/log?offset=%d" % (jid, j["log_size"] - 4096)):
                    st, _, raw = h.api.get(path)
                    if st != 200:
                        raise RuntimeError("GET %s answered %d" % (path, st))
                    f.scan(raw, 0)
                f.lag = [None] * marks
            if len(f.lag) != marks or not f.span:
                raise RuntimeError("the follower saw %d marks of %d" % (len(f.lag), marks))
            return {"direct_s": direct, "job_s": f.span, "stored": j["log_size"],
                    "api_s": (j["finished"] - j["started"]) / 1000.0,
                    "lag": f.lag if follow else []}
        finally:
            self._dispose(h)


class _Follower(threading.Thread):
    """Follows a job's log as `yci logs -f` does; notes for each `yci-mark T`
    line the time it arrived minus T, and the job's own start -> end span."""

    def __init__(self, port, jid):
        super().__init__(daemon=True)
        self.port, self.jid = port, jid
        self.lag, self.span, self.bytes, self.error = [], None, 0, None
        self.t_start, self.pending = None, b"\n"  # a line starts after pending

    def run(self):
        try:
            self._follow()
        except Exception as e:  # reported by the caller
            self.error = "%s: %s" % (type(e).__name__, e)

    def _follow(self):
        conn = Conn(self.port, timeout=60)
        while True:
            st, hdrs, data = conn.get("/api/jobs/%d/log?offset=%d&limit=1048576&wait=20"
                                      % (self.jid, self.bytes))
            now = time.time()
            if st != 200:
                raise RuntimeError("GET log answered %d" % st)
            self.bytes += len(data)
            self.scan(data, now)
            if hdrs.get("x-yci-job-status") not in ("queued", "running") and not data:
                break
        conn.close()

    def scan(self, data, now):
        """Note the marks in the next bytes of the log, seen at `now`."""
        # The marks start lines, and the bulk never holds "yci-" (the
        # command, shown first in the log, holds it within a line).
        buf = self.pending + data
        cut = buf.rfind(b"\n") + 1
        pos = buf.find(b"yci-", 0, cut)
        while pos >= 0:
            eol = buf.index(b"\n", pos)
            what, _, t = buf[pos:eol].partition(b" ")
            if buf[pos - 1] != 0x0a:
                pass
            elif what == b"yci-mark":
                self.lag.append(now - float(t))
            elif what == b"yci-start":
                self.t_start = float(t)
            elif what == b"yci-end" and self.t_start is not None:
                self.span = float(t) - self.t_start
            pos = buf.find(b"yci-", eol, cut)
        self.pending = buf[cut - 1:] if cut else buf


async def _http(reader, writer, method, path, token, body):
    """One request on a kept-alive connection: (status, body bytes)."""
    data = json.dumps(body).encode()
    writer.write(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (method, path, token, len(data))).encode() + data)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    hdrs = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "chunked" in hdrs.get("transfer-encoding", ""):
        raise RuntimeError("%s %s: a chunked answer" % (method, path))
    n = int(hdrs.get("content-length", "0"))
    return int(head[0].split()[1]), (await reader.readexactly(n) if n else b"")


async def _sim_runner(i, port, secret, st):
    """A runner of one slot on one connection: register, claim until a job
    comes, finish it passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with st["sem"]:
            code, body = await _http(reader, writer, "POST", "/api/runners/register", secret,
                                     {"name": "sim-%05d" % i, "labels": {"pool": "sim"},
                                      "slots": 1, "heartbeat": 60})
        if code != 201:
            raise RuntimeError("runner %d: register answered %d %r" % (i, code, body[:200]))
        token = json.loads(body)["token"]
        while True:
            st["sent"] += 1
            code, body = await _http(reader, writer, "POST", "/api/runners/claim?wait=60",
                                     token, {})
            st["sent"] -= 1
            if code == 204:
                st["repolls"] += 1
                continue
            if code != 200:
                raise RuntimeError("runner %d: claim answered %d %r" % (i, code, body[:200]))
            job = json.loads(body)
            code, body = await _http(reader, writer, "POST", "/api/jobs/%d/finish" % job["id"],
                                     token, {"attempt": job["attempt"], "status": "passed",
                                             "exit_code": 0})
            if code != 200:
                raise RuntimeError("runner %d: finish answered %d %r" % (i, code, body[:200]))
            return
    finally:
        writer.close()


async def _longpoll(h, secret, n, measure):
    """The simulated runners of Yci.longpoll()."""
    st = {"sem": asyncio.Semaphore(16), "sent": 0, "repolls": 0}
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    tasks = [asyncio.create_task(_sim_runner(i, h.y.port, secret, st)) for i in range(n)]
    try:
        while st["sent"] < n:
            for t in tasks:
                if t.done():
                    t.result()  # raises what failed; a runner done early is a bug too
                    raise RuntimeError("a simulated runner ended before any job was queued")
            if time.monotonic() - t0 > 60 + n / 10:
                raise RuntimeError("only %d of %d claims sent" % (st["sent"], n))
            await asyncio.sleep(0.05)
        register_s = time.monotonic() - t0
        await asyncio.sleep(2.0)
        samples = []
        for _ in range(5):
            samples.append(measure())
            await asyncio.sleep(0.2)
        threads = len(os.listdir("/proc/%d/task" % h.y.procs[0].pid))
        t1 = time.monotonic()
        jobs = [{"name": "sim-%d" % i, "commands": ["true"], "labels": {"pool": "sim"}}
                for i in range(n)]
        b = await loop.run_in_executor(None, h._post, {"jobs": jobs})
        done, _ = await asyncio.wait(tasks, timeout=60 + n / 10)
        for t in done:
            t.result()
        if len(done) != n:
            raise RuntimeError("%d of %d runners got no job" % (n - len(done), n))
        answer_s = time.monotonic() - t1
        end = time.monotonic() + 30
        while True:
            status = (await loop.run_in_executor(None, h._get,
                                                 "/api/builds/%d" % b["id"]))["status"]
            if status == "passed":
                break
            if status not in ("queued", "running") or time.monotonic() > end:
                raise RuntimeError("the build of the %d runners' jobs ended %s" % (n, status))
            await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"polling": (max(s[0] for s in samples), max(s[1] for s in samples)),
            "register_s": register_s, "answer_s": answer_s, "repolls": st["repolls"],
            "threads": threads}
