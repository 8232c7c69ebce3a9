"""python-rq as a peer of bench/suite: the stack of seed 000 (the interface is in
__init__.py). A redis-server on a free 127.0.0.1 port (no persistence, its
directory under `tmp`) and `slots` long-running forking `rq worker`s (Debian's
python3-rq, `python3 -m rq.cli worker`, rq's default Worker class: each job in
a forked work horse). A job is `peers.rq_jobs.run`: its command run with
subprocess (shell=True), output appended to the job's own log file, an
exception when it fails. Jobs are enqueued with Queue.enqueue; a job's result
is stored when rq has its status `finished`.

Note the module's name: bench/peers must not be on sys.path of anything that
imports the rq library (it would find this file). The workers get
PYTHONPATH=bench (the job function is `peers.rq_jobs.run`), and the self-test
(`python3 bench/peers/rq.py`) takes its own directory off sys.path."""

import os
import signal
import socket
import subprocess
import sys
import time

if __name__ == "__main__":
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from peers import PY, marker_cmd, read_marks, rss_bytes, tree_rss  # noqa: E402

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNC = "peers.rq_jobs.run"
QUEUE = "bench"


def _free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _epoch(dt):
    """rq's naive UTC datetime -> seconds since the epoch (time.time()'s clock)."""
    import datetime
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


class Rq:
    name = "python-rq"

    def __init__(self, tmp, slots=2):
        self.tmp = tmp
        self.slots = slots
        self.port = None
        self.redis = None       # the redis-server Popen
        self.workers = []       # the `rq worker` Popens
        self.files = []
        self.conn = None
        self.q = None
        self.runs = 0
        self.marks = os.path.join(tmp, "rq-marks")
        self.logs = os.path.join(tmp, "rq-logs")
        self.startup = None     # seconds start() took

    def available(self):
        import importlib.util
        import shutil
        if not shutil.which("redis-server"):
            return False, "no redis-server (Debian package redis-server)"
        for mod, pkg in (("redis", "python3-redis"), ("rq", "python3-rq")):
            spec = importlib.util.find_spec(mod)
            if spec is None or (spec.origin or "").startswith(os.path.dirname(os.path.abspath(__file__))):
                return False, "no Python module %s (Debian package %s)" % (mod, pkg)
        return True, ""

    def _spawn(self, argv, logname, env=None):
        out = open(os.path.join(self.tmp, logname), "ab")
        self.files.append(out)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=self.tmp, env=env, start_new_session=True)

    def start(self):
        import redis
        from rq import Queue, Worker
        t_start = time.monotonic()
        os.makedirs(self.logs, exist_ok=True)
        rdir = os.path.join(self.tmp, "rq-redis")
        os.makedirs(rdir, exist_ok=True)
        try:
            # redis-server: a free port (retried if someone took it meanwhile)
            for attempt in range(5):
                self.port = _free_port()
                self.redis = self._spawn(
                    ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", rdir],
                    "rq-redis.log")
                self.conn = redis.Redis(host="127.0.0.1", port=self.port)
                end = time.monotonic() + 10
                while self.redis.poll() is None and time.monotonic() < end:
                    try:
                        if self.conn.ping():
                            break
                    except redis.exceptions.ConnectionError:
                        time.sleep(0.02)
                if self.redis.poll() is None:
                    break
                self.redis = None
            else:
                raise RuntimeError("redis-server did not start (see %s/rq-redis.log)" % self.tmp)
            if not self.conn.ping():
                raise RuntimeError("redis-server does not answer")
            self.q = Queue(QUEUE, connection=self.conn)

            # the workers: long-running, forking (rq's default Worker)
            env = dict(os.environ)
            env["PYTHONPATH"] = BENCH + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            url = "redis://127.0.0.1:%d" % self.port
            for i in range(self.slots):
                self.workers.append(self._spawn(
                    [PY, "-m", "rq.cli", "worker", "-u", url, "--name", "bench-%d-%d" % (self.port, i),
                     QUEUE],
                    "rq-worker-%d.log" % i, env=env))
            end = time.monotonic() + 60
            while True:
                ws = Worker.all(connection=self.conn)
                if len(ws) == self.slots and all(w.get_state() == "idle" for w in ws):
                    break
                dead = [w.args for w in self.workers if w.poll() is not None]
                if dead:
                    raise RuntimeError("rq worker exited (see %s/rq-worker-*.log)" % self.tmp)
                if time.monotonic() > end:
                    raise RuntimeError("the rq workers did not register within 60 s")
                time.sleep(0.05)
            self.startup = time.monotonic() - t_start
            time.sleep(1.0)  # settle before measuring anything idle
        except BaseException:
            self.stop()
            raise

    def stop(self):
        procs = self.workers + ([self.redis] if self.redis else [])
        # workers first (SIGTERM: rq's warm shutdown), then redis
        for group in (self.workers, [self.redis] if self.redis else []):
            for p in group:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            end = time.monotonic() + 10
            for p in group:
                try:
                    p.wait(max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for p in procs:
            # whatever is left of the group (a work horse, its children)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if p.poll() is None:
                p.wait(5)
        self.workers = []
        self.redis = None
        for f in self.files:
            f.close()
        self.files = []
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def _wait(self, jobs, timeout):
        """Wait until every job has ended; the jobs (refreshed) when all
        finished, RuntimeError when one did not. Polls the newest job (the
        workers take them in order), then reads all the others once."""
        from rq.job import Job, JobStatus
        ended = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
        end = time.monotonic() + timeout
        pending = list(jobs)
        done = []
        while pending:
            st = pending[-1].get_status()
            if st is None or st == JobStatus.FINISHED or st in ended:
                still = []
                for j, f in zip(pending, Job.fetch_many([j.id for j in pending], connection=self.conn)):
                    s = f.get_status(refresh=False) if f is not None else None
                    if s == JobStatus.FINISHED:
                        done.append(f)
                    elif s is None or s in ended:
                        raise RuntimeError("rq job %s (%s) ended %s: %s"
                                           % (j.id, j.args, s, f and (f.exc_info or "")[-500:]))
                    else:
                        still.append(f)
                pending = still
                if not pending:
                    break
            if time.monotonic() > end:
                raise RuntimeError("%d rq jobs did not end within %d s" % (len(pending), timeout))
            time.sleep(0.005)
        return done

    def throughput(self, n, checkout=False, repo=None):
        self.runs += 1
        logs = os.path.join(self.logs, "run%d" % self.runs)
        os.makedirs(logs, exist_ok=True)
        ws = os.path.join(self.tmp, "rq-ws")
        if checkout:
            if not repo:
                raise ValueError("checkout=True needs repo")
            os.makedirs(ws, exist_ok=True)
            args = [("true", os.path.join(logs, "%d.log" % i), str(repo),
                     os.path.join(ws, "r%d-%d" % (self.runs, i))) for i in range(n)]
        else:
            args = [("true", os.path.join(logs, "%d.log" % i)) for i in range(n)]
        q = self.q
        t0 = time.time()
        jobs = [q.enqueue(FUNC, *a) for a in args]
        done = self._wait(jobs, 60 + n * (1.0 if checkout else 0.2))
        last = max(_epoch(j.ended_at) for j in done)
        return last - t0

    def latency(self, trials):
        from rq.job import JobStatus
        ended = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
        log = os.path.join(self.logs, "latency.log")
        out = []
        cmd = marker_cmd(self.marks)  # its recorder started before the first trial
        for i in range(trials):
            done = len(read_marks(self.marks))
            t0 = time.time()
            job = self.q.enqueue(FUNC, cmd, log)
            end = time.monotonic() + 30
            while True:
                st = job.get_status()
                if st == JobStatus.FINISHED:
                    visible = time.time()
                    break
                if st is None or st in ended or time.monotonic() > end:
                    raise RuntimeError("rq latency job %s: %s" % (job.id, st))
                time.sleep(0.001)
            marks = read_marks(self.marks)
            if len(marks) != done + 1:
                raise RuntimeError("rq latency job %s left no mark" % job.id)
            out.append((marks[-1] - t0, visible - t0))
            time.sleep(0.05)  # idle again
        return out

    def footprint(self):
        if not self.redis:
            raise RuntimeError("not started")
        return {"server": rss_bytes(self.redis.pid),
                "worker": [tree_rss(w.pid) for w in self.workers]}


def _selftest():
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="rq-peer-")
    peer = Rq(tmp)
    ok, why = peer.available()
    if not ok:
        print("python-rq not available:", why)
        return 1
    try:
        repo = os.path.join(tmp, "repo")
        env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.com",
                   GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.com")
        subprocess.run(["git", "init", "-q", repo], check=True, env=env)
        with open(os.path.join(repo, "README"), "w") as f:
            f.write("a small repository\n")
        subprocess.run(["git", "add", "README"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, check=True, env=env)

        peer.start()
        print("start-up: %.2f s (redis + %d workers registered and idle)" % (peer.startup, peer.slots))
        fp = peer.footprint()
        n = 50
        t = peer.throughput(n)
        print("throughput: %d jobs in %.3f s = %.0f jobs/s" % (n, t, n / t))
        n = 20
        t = peer.throughput(n, checkout=True, repo=repo)
        print("throughput with checkout: %d jobs in %.3f s = %.0f jobs/s" % (n, t, n / t))
        lat = peer.latency(10)
        for k, name in ((0, "trigger -> process start"), (1, "trigger -> result visible")):
            xs = sorted(x[k] * 1000 for x in lat)
            p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
            print("latency %s: p50 %.1f ms, p99 %.1f ms (min %.1f, max %.1f, %d trials)"
                  % (name, p(0.5), p(0.99), xs[0], xs[-1], len(xs)))
        print("footprint (idle, before the runs): server %.1f MB, workers %s MB"
              % (fp["server"] / 1e6, " + ".join("%.1f" % (w / 1e6) for w in fp["worker"])))
        fp = peer.footprint()
        print("footprint (idle, after the runs): server %.1f MB, workers %s MB"
              % (fp["server"] / 1e6, " + ".join("%.1f" % (w / 1e6) for w in fp["worker"])))
        if not fp["server"] or not all(fp["worker"]):
            raise RuntimeError("a process is gone: %r" % fp)
    except Exception as e:
        import traceback
        traceback.print_exc()
        print("FAILED:", e, "(logs kept in %s)" % tmp)
        return 1
    finally:
        peer.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(_selftest())
