"""yci as a peer of bench/suite: `yci server` and one `yci runner --slots 2`
(the interface is in __init__.py)."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Conn, Yci as YciProcs  # noqa: E402
from peers import marker_cmd, read_marks, rss_bytes, tree_rss  # noqa: E402

BATCH = 256  # jobs per ad-hoc build (the server's default --max-jobs-per-build)
MATRIX = 100  # jobs per build of the checkout row


class Yci:
    name = "yci"

    def __init__(self, tmp, slots=2):
        self.tmp = tmp
        self.slots = slots
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
        self.y.server("--poll-interval", "3600", "--max-jobs-per-build", "10000")
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

    def _wait_builds(self, ids, timeout):
        """The newest `finished` of the builds once all ended; raises when one
        did not pass."""
        end = time.monotonic() + timeout
        last = 0
        for bid in ids:
            while True:
                b = self._get("/api/builds/%d" % bid)
                if b["status"] not in ("queued", "running"):
                    break
                if time.monotonic() > end:
                    raise RuntimeError("build %d did not end within %d s" % (bid, timeout))
                time.sleep(0.01)
            if b["status"] != "passed":
                raise RuntimeError("build %d ended %s" % (bid, b["status"]))
            last = max(last, b["finished"])
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
        out = []
        for i in range(trials):
            done = len(read_marks(self.marks))
            t0 = time.time()
            b = self._post({"jobs": [{"name": "lat", "commands": [marker_cmd(self.marks)]}]})
            jid = b["jobs"][0]["id"]
            end = time.monotonic() + 30
            while True:
                j = self._get("/api/jobs/%d" % jid)
                if j["status"] == "passed":
                    visible = time.time()
                    break
                if j["status"] not in ("queued", "running") or time.monotonic() > end:
                    raise RuntimeError("latency job %d: %s" % (jid, j["status"]))
                time.sleep(0.001)
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
