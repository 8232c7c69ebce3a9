"""Buildbot 3.7 (Debian's `buildbot` and `buildbot-worker`) as a peer of
bench/suite: one master and `slots` workers (one build at a time each), all on
127.0.0.1 (the interface is in __init__.py).

The master (SQLite db, HTTP and PB ports on free 127.0.0.1 ports) has three
builders, each on every worker, collapseRequests=False:
  true      ShellCommand `true` (buildbot keeps the step's stdio log in its db)
  checkout  Git(repourl=<the build's property "repo">, mode=full,
            method=clobber: the workdir is removed and cloned afresh), then `true`
  latency   ShellCommand marker_cmd(<tmp>/marks), run by the worker's /bin/sh
and one ForceScheduler, "force", for all three: every build is forced through
the REST API (POST /api/v2/forceschedulers/force, JSON-RPC method "force").
Master and workers run under `twistd --nodaemon` (children of this process,
each in its own session, killed by stop()).

Debian does not package buildbot-www, without which the master does not serve
its REST API: buildbot_www/ next to this file is a stand-in "base" www plugin
(no UI), put on the master's PYTHONPATH.

When a build ends, as seen by the system: the master stores complete_at in
whole seconds only (int(time)), too coarse for runs of a few seconds. So the
time the build ended is taken from the master's own event stream (GET
/sse/listen/builds/*/finished, pushed right after the build's end is written
to the db): the time.time() at which the "finished" event arrives, bounded
above by complete_at + 1; the results are checked again through the REST API
(/api/v2/builds?complete=true...). No polling loads the master meanwhile.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from peers import PY, marker_cmd, read_marks, tree_rss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WWW = os.path.join(HERE, "buildbot_www")  # the stand-in "base" www plugin
TWISTD = "/usr/bin/twistd3"
BUILDBOT = "/usr/bin/buildbot"
BUILDBOT_WORKER = "/usr/bin/buildbot-worker"
SUCCESS, RETRY = 0, 4  # buildbot.process.results

MASTER_CFG = r'''# written by yci's bench/peers/buildbot.py
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {}
c["title"] = "yci bench"
c["buildbotURL"] = "http://127.0.0.1:%(http)d/"
c["buildbotNetUsageData"] = None
c["db"] = {"db_url": "sqlite:///state.sqlite"}
c["protocols"] = {"pb": {"port": "tcp:%(pb)d:interface=127.0.0.1"}}
c["www"] = {"port": "tcp:%(http)d:interface=127.0.0.1", "plugins": {}}
c["change_source"] = []
c["collapseRequests"] = False

WORKERS = %(workers)r
c["workers"] = [worker.Worker(w, "bench", max_builds=1) for w in WORKERS]

c["builders"] = [
    util.BuilderConfig(
        name="true", workernames=WORKERS, collapseRequests=False,
        factory=util.BuildFactory([steps.ShellCommand(name="true", command=["true"])])),
    util.BuilderConfig(
        name="checkout", workernames=WORKERS, collapseRequests=False,
        factory=util.BuildFactory([
            steps.Git(name="checkout", repourl=util.Property("repo"), mode="full",
                      method="clobber"),
            steps.ShellCommand(name="true", command=["true"])])),
    util.BuilderConfig(
        name="latency", workernames=WORKERS, collapseRequests=False,
        factory=util.BuildFactory([steps.ShellCommand(name="marker", command=%(marker)r)])),
]
c["schedulers"] = [
    schedulers.ForceScheduler(
        name="force", builderNames=["true", "checkout", "latency"],
        properties=[util.StringParameter(name="repo", default="")]),
]
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Api:
    """A keep-alive HTTP client of the master's REST API."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def call(self, method, path, body=None):
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body, headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def get(self, path):
        st, raw = self.call("GET", "/api/v2/" + path)
        if st != 200:
            raise RuntimeError("GET /api/v2/%s answered %d: %r" % (path, st, raw[:300]))
        return json.loads(raw)

    def force(self, scheduler, params):
        """Force a build; returns its buildrequest id."""
        st, raw = self.call("POST", "/api/v2/forceschedulers/" + scheduler,
                            {"method": "force", "id": 1, "jsonrpc": "2.0", "params": params})
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = {}
        if st != 200 or "result" not in reply:
            raise RuntimeError("force %r answered %d: %r" % (params, st, raw[:300]))
        _bsid, brids = reply["result"]
        return int(list(brids.values())[0])

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class Events(threading.Thread):
    """The master's server-sent events on `path` (e.g. builds/*/finished): each
    "finished" build message, with the time.time() of its arrival, by buildrequest id."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            self._subscribe(path)
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)
        self.cond = threading.Condition()
        self.builds = {}  # buildrequestid -> (arrival time.time(), build dict)
        self.closed = False
        self.start()

    def _subscribe(self, path):
        # HTTP/1.0: the stream comes unchunked and ends when the connection closes
        self.sock.sendall(("GET /sse/listen/%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
                           % path).encode())
        self.f = self.sock.makefile("rb")
        status = self.f.readline()
        if b" 200 " not in status:
            raise RuntimeError("GET /sse/listen/%s answered %r" % (path, status))
        while self.f.readline() not in (b"\r\n", b"\n", b""):
            pass
        # the handshake comes once the subscription is registered
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("the master closed its event stream")
            if line.startswith(b"event: handshake"):
                break

    def run(self):
        try:
            for line in self.f:
                if not line.startswith(b"data: "):
                    continue
                t = time.time()
                try:
                    b = json.loads(line[6:])["message"]
                    brid = b["buildrequestid"]
                except (ValueError, KeyError, TypeError):
                    continue  # the handshake's uuid
                with self.cond:
                    self.builds[brid] = (t, b)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, brids, timeout):
        """{brid: (arrival, build)} once every brid's build finished; raises on
        timeout, on a lost stream, and when a build did not pass."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for brid in brids:
                    got = self.builds.get(brid)
                    if got and got[1]["results"] != SUCCESS:
                        raise RuntimeError("build %d of buildrequest %d ended with results %s (%s)"
                                           % (got[1]["number"], brid, got[1]["results"],
                                              got[1].get("state_string")))
                if all(b in self.builds for b in brids):
                    return {b: self.builds[b] for b in brids}
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError("%d of %d builds did not end within %d s"
                                       % (len([b for b in brids if b not in self.builds]),
                                          len(brids), timeout))
                if self.closed:
                    raise RuntimeError("the master's event stream ended")
                self.cond.wait(min(left, 1.0))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(5)


class Buildbot:
    name = "Buildbot 3.7"

    def __init__(self, tmp, slots=2):
        self.tmp = os.path.abspath(tmp)
        self.slots = slots
        self.procs = []  # (name, Popen, log file); the master first
        self.api = None
        self.builders = {}
        self.marks = os.path.join(self.tmp, "bb-marks")
        self.startup_s = None

    def available(self):
        for f in (TWISTD, BUILDBOT, BUILDBOT_WORKER):
            if not os.path.exists(f):
                return False, "%s missing (apt-get install buildbot buildbot-worker)" % f
        if not shutil.which("git"):
            return False, "no git"
        r = subprocess.run([PY, "-c", "import buildbot, buildbot_worker, pkg_resources, jinja2"],
                           capture_output=True, text=True)
        if r.returncode:
            return False, "buildbot not importable: %s" % r.stderr.strip().splitlines()[-1:]
        return True, ""

    # -- processes --

    def _run(self, *args):
        r = subprocess.run(args, cwd=self.tmp, capture_output=True, text=True, timeout=180)
        if r.returncode:
            raise RuntimeError("%s failed (%d): %s" % (" ".join(args[:3]), r.returncode,
                                                       (r.stdout + r.stderr)[-2000:]))

    def _spawn(self, name, basedir, env=None):
        out = open(os.path.join(basedir, "twistd.out"), "ab")
        p = subprocess.Popen([PY, TWISTD, "--nodaemon", "--no_save",
                              "--pidfile", os.path.join(basedir, "twistd.pid"),
                              "-y", "buildbot.tac"],
                             cwd=basedir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, p, out))
        return p

    def _check_alive(self):
        for name, p, _ in self.procs:
            if p.poll() is not None:
                raise RuntimeError("buildbot %s exited (%s); its log ends with:\n%s"
                                   % (name, p.returncode,
                                      _tail(os.path.join(self.tmp, name, "twistd.log"))
                                      or _tail(os.path.join(self.tmp, name, "twistd.out"))))

    def start(self):
        t_start = time.monotonic()
        self.http_port, self.pb_port = free_port(), free_port()
        while self.pb_port == self.http_port:
            self.pb_port = free_port()
        master = os.path.join(self.tmp, "master")
        self.workers = ["w%d" % i for i in range(self.slots)]
        self._run(PY, BUILDBOT, "create-master", "--quiet", "--db=sqlite:///state.sqlite", master)
        with open(os.path.join(master, "master.cfg"), "w") as f:
            f.write(MASTER_CFG % {"http": self.http_port, "pb": self.pb_port,
                                  "workers": self.workers, "marker": marker_cmd(self.marks)})
        for w in self.workers:
            self._run(PY, BUILDBOT_WORKER, "create-worker", "--quiet",
                      os.path.join(self.tmp, w), "127.0.0.1:%d" % self.pb_port, w, "bench")
        env = dict(os.environ)
        env["PYTHONPATH"] = WWW + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._spawn("master", master, env)
        self.api = Api(self.http_port)
        deadline = time.monotonic() + 120
        while True:  # the REST API is up once the config is loaded
            self._check_alive()
            try:
                builders = self.api.get("builders")["builders"]
                if len(builders) >= 3:
                    break
            except (OSError, RuntimeError, http.client.HTTPException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the buildbot master did not serve its API within 120 s:\n"
                                   + _tail(os.path.join(master, "twistd.log")))
            time.sleep(0.2)
        self.builders = {b["name"]: b["builderid"] for b in builders}
        for w in self.workers:
            self._spawn(w, os.path.join(self.tmp, w))
        deadline = time.monotonic() + 60
        while True:  # every worker connected (and attached to its builders)
            self._check_alive()
            ws = self.api.get("workers")["workers"]
            if len([w for w in ws if w.get("connected_to")]) >= self.slots:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the buildbot workers did not connect within 60 s:\n"
                                   + _tail(os.path.join(master, "twistd.log")))
            time.sleep(0.2)
        time.sleep(1.0)  # settle before measuring anything idle
        self.startup_s = time.monotonic() - t_start

    def stop(self):
        if self.api:
            self.api.close()
            self.api = None
        procs, self.procs = self.procs, []
        for _, p, _ in reversed(procs):  # workers first, then the master
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        for _, p, out in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            # the process group: its own session (start_new_session), so only
            # what it started itself (a build's command still running)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            out.close()

    # -- figures --

    def _verify(self, builder, brids):
        """The builds of brids as stored (REST): all complete and passed; the
        newest complete_at (whole seconds)."""
        got = self.api.get("builders/%d/builds?buildrequestid__ge=%d&complete=true"
                           "&field=buildrequestid&field=complete&field=results&field=complete_at"
                           % (self.builders[builder], min(brids)))["builds"]
        mine = {b["buildrequestid"]: b for b in got if b["buildrequestid"] in set(brids)}
        if len(mine) != len(brids):
            raise RuntimeError("the REST API lists %d of %d complete builds" % (len(mine), len(brids)))
        bad = [b for b in mine.values() if b["results"] != SUCCESS]
        if bad:
            raise RuntimeError("%d builds did not pass: %r" % (len(bad), bad[:3]))
        return max(b["complete_at"] for b in mine.values())

    def throughput(self, n, checkout=False, repo=None):
        builder = "checkout" if checkout else "true"
        params = {"builderNames": [builder]}
        if checkout:
            if not repo:
                raise ValueError("the checkout row needs a repository")
            params["repo"] = os.path.abspath(repo)
        ev = Events(self.http_port, "builds/*/finished")
        try:
            t0 = time.time()
            brids = [self.api.force("force", params) for _ in range(n)]
            submitted = time.time()
            done = ev.wait(brids, 60 + 2 * n)
        finally:
            ev.close()
        seen = max(t for t, _ in done.values())
        stored = self._verify(builder, brids)
        # the event is pushed after the db write: the end is in [complete_at, complete_at + 1)
        end = min(seen, stored + 1.0)
        self.last_run = {"submit_s": round(submitted - t0, 3), "seen_s": round(seen - t0, 3),
                         "complete_at_s": round(stored - t0, 3)}
        return end - t0

    def latency(self, trials):
        out = []
        ev = Events(self.http_port, "builds/*/finished")
        try:
            for i in range(trials):
                before = len(read_marks(self.marks))
                t0 = time.time()
                brid = self.api.force("force", {"builderNames": ["latency"]})
                visible, _ = ev.wait([brid], 30)[brid]
                marks = read_marks(self.marks)
                if len(marks) != before + 1:
                    raise RuntimeError("latency build of buildrequest %d left no mark" % brid)
                out.append((marks[-1] - t0, visible - t0))
                time.sleep(0.2)  # idle again (the buildset completes after the build)
        finally:
            ev.close()
        return out

    def footprint(self):
        server = [p.pid for name, p, _ in self.procs if name == "master"]
        return {"server": tree_rss(server[0]),
                "worker": [tree_rss(p.pid) for name, p, _ in self.procs if name != "master"]}


def _small_repo(tmp):
    path = os.path.join(tmp, "small-repo")
    os.makedirs(os.path.join(path, "src"))
    for i in range(20):
        with open(os.path.join(path, "src", "f%02d.txt" % i), "w") as f:
            f.write(("line %d\n" % i) * 200)
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.com")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "small"]):
        subprocess.run(["git"] + args, cwd=path, env=env, check=True, capture_output=True)
    return path


def main():
    import argparse
    import statistics
    import tempfile
    ap = argparse.ArgumentParser(description="self-test of the Buildbot peer")
    ap.add_argument("-n", type=int, default=50, help="jobs of the throughput row")
    ap.add_argument("--nc", type=int, default=20, help="jobs of the checkout row")
    ap.add_argument("--trials", type=int, default=10)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bb-peer-")
    peer = Buildbot(os.path.join(tmp, "peer"))
    os.makedirs(peer.tmp)
    ok, why = peer.available()
    if not ok:
        print("Buildbot not available:", why)
        return 1
    rc = 1
    try:
        peer.start()
        print("start-up: %.1f s (http %d, pb %d)" % (peer.startup_s, peer.http_port, peer.pb_port))
        fp = peer.footprint()
        print("footprint: server %.1f MB, workers %s MB" % (
            fp["server"] / 1048576, ", ".join("%.1f" % (w / 1048576) for w in fp["worker"])))
        secs = peer.throughput(a.n)
        print("throughput: %d jobs in %.2f s = %.1f jobs/s  (%r)" % (a.n, secs, a.n / secs,
                                                                   peer.last_run))
        repo = _small_repo(tmp)
        secs = peer.throughput(a.nc, checkout=True, repo=repo)
        print("throughput, checkout: %d jobs in %.2f s = %.1f jobs/s  (%r)"
              % (a.nc, secs, a.nc / secs, peer.last_run))
        lat = peer.latency(a.trials)
        start = sorted(x[0] for x in lat)
        done = sorted(x[1] for x in lat)
        p99 = lambda v: v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]  # noqa: E731
        print("latency (%d trials): start p50 %.1f ms p99 %.1f ms; result p50 %.1f ms p99 %.1f ms"
              % (len(lat), statistics.median(start) * 1e3, p99(start) * 1e3,
                 statistics.median(done) * 1e3, p99(done) * 1e3))
        fp = peer.footprint()
        print("footprint after: server %.1f MB, workers %s MB" % (
            fp["server"] / 1048576, ", ".join("%.1f" % (w / 1048576) for w in fp["worker"])))
        rc = 0
    except Exception:
        import traceback
        traceback.print_exc()
    finally:
        pids = [p.pid for _, p, _ in peer.procs]
        peer.stop()
        left = [pid for pid in pids if os.path.exists("/proc/%d" % pid)]
        if left:
            print("left running:", left)
            rc = 1
        if os.environ.get("YCI_BENCH_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
