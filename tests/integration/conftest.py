"""Fixtures for yci's integration tests.

Every test drives real processes: `yci server`, `yci runner`, `yci up` and the
`yci` client commands, started from $YCI_BIN (default build/yci relative to the
repository root), against real git repositories made in temporary directories,
over real HTTP on 127.0.0.1 with free ports. Nothing is mocked.

What the fixtures promise:
  * every process a test starts is killed when the test ends, pass or fail,
    and so is anything left running in the test's temporary directory;
  * servers and runners stopped at the end of a test get SIGTERM first, and a
    crash, a sanitizer report or an unclean exit then fails the test (this is
    how the ASan+UBSan run catches leaks and errors in the processes);
  * the output of every process of a failing test is copied under
    tests/artifacts/<test>/ and its tail is printed in the report;
  * every test is bounded in time (pytest.ini; the `timeout` marker changes it).
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARTIFACTS = os.path.join(REPO_ROOT, "tests", "artifacts")
PY = "/usr/bin/python3"
# A plain PATH for everything the tests start: no pyenv shims, no user tools.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
TERMINAL_BUILD = ("passed", "failed", "error", "cancelled")
TERMINAL_JOB = ("passed", "failed", "error", "cancelled", "timed_out")
DEFAULT_TIMEOUT = 180


# ---------------------------------------------------------------------------
# Small helpers

def wait_until(fn, timeout=20.0, interval=0.05, what=None):
    """Call fn until it returns something truthy and return that; fail the
    test with `what` and the last value seen when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            desc = what or getattr(fn, "__name__", "condition")
            raise AssertionError("timed out after %.1fs waiting for %s; last value: %r"
                                 % (timeout, desc, _short(last)))
        time.sleep(interval)


def _short(v, n=600):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marker():
    """A unique string to put in a job's command line and find with pgrep -f."""
    return "yci-mark-" + uuid.uuid4().hex[:12]


def pids_matching(mark):
    """Pids of live processes whose command line contains mark (pgrep -f)."""
    r = subprocess.run(["pgrep", "-f", mark], stdout=subprocess.PIPE, text=True)
    return [int(p) for p in r.stdout.split()]


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("response %d is not JSON: %r" % (self.status, self.body[:300]))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def http_request(base, method, path, body=None, token=None, headers=None, timeout=30):
    """One HTTP request to base ("http://127.0.0.1:PORT"); body may be bytes,
    str or a JSON-able object. Never raises for an HTTP status."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    try:
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (413) before reading a large body: the
            # answer is still there to read.
            pass
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Processes

class Proc:
    """A process started by a test, its output in a log file."""

    def __init__(self, ctx, name, argv, env=None, cwd=None):
        self.ctx = ctx
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = ctx.log_path(name)
        self.env = env
        self.cwd = cwd
        self.popen = None
        self.expect_dead = False  # set when the test kills it on purpose
        ctx.procs.append(self)

    def start(self):
        logf = open(self.log_path, "ab")
        logf.write(("\n=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.argv))).encode())
        logf.flush()
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT, env=self.env or self.ctx.env(),
                                      cwd=self.cwd, start_new_session=True)
        logf.close()
        self.expect_dead = False
        return self

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill9(self):
        """kill -9, as a crash would; the test expects it."""
        self.expect_dead = True
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status (None if it had to be
        killed with SIGKILL)."""
        if not self.alive():
            return self.popen.returncode if self.popen else None
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
            return None

    def check_clean_exit(self):
        """Problems to report after stop(): sanitizer messages anywhere in
        the log; an exit that was neither 0 nor the default death by SIGTERM."""
        problems = []
        out = self.output()
        for m in SANITIZER_MARKS:
            if m in out:
                problems.append("%s: sanitizer report (%r) in its output" % (self.name, m))
                break
        return problems


class Server(Proc):
    """`yci server` on 127.0.0.1 with its own data directory and port."""

    def __init__(self, ctx, name="server", data=None, port=None, poll_interval=1, args=(),
                 command="server"):
        self.command = command  # "server", or "up" (server and runner slots in one)
        self.port = port or free_port()
        self.data = str(data or ctx.tmp / ("data-" + name))
        self.poll_interval = poll_interval
        self.extra = list(args)
        self.url = "http://127.0.0.1:%d" % self.port
        self.admin_token = None
        self.secret = None
        super().__init__(ctx, name, [])
        self.argv = self._argv()

    def _argv(self):
        argv = [self.ctx.yci, self.command, "--listen", "127.0.0.1:%d" % self.port,
                "--data", self.data]
        if self.poll_interval is not None:
            argv += ["--poll-interval", str(self.poll_interval)]
        return argv + self.extra

    def start(self, timeout=30):
        super().start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        def ready():
            if not self.alive():
                raise AssertionError("%s exited with %s before it answered /api/health:\n%s"
                                     % (self.name, self.popen.returncode, tail(self.log_path)))
            try:
                r = http_request(self.url, "GET", "/api/health", timeout=2)
            except OSError:
                return False
            return r.status == 200
        wait_until(ready, timeout, what="%s /api/health" % self.name)
        self.admin_token = self._read("admin-token")
        self.secret = self._read("registration-secret")

    def _read(self, fname):
        path = os.path.join(self.data, fname)
        with open(path) as f:
            v = f.read().strip()
        assert v, "%s is empty" % path
        return v

    def restart(self, timeout=30):
        """Start again on the same data directory and port."""
        assert not self.alive()
        self.argv = self._argv()
        return self.start(timeout)

    # -- HTTP ----------------------------------------------------------------
    def request(self, method, path, body=None, token=None, headers=None, timeout=30):
        return http_request(self.url, method, path, body, token, headers, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, token="admin", **kw):
        """POST with the admin token by default; token=None sends none."""
        if token == "admin":
            token = self.admin_token
        return self.request("POST", path, body, token=token, **kw)

    def get_json(self, path, status=200):
        r = self.get(path)
        assert r.status == status, "GET %s: %r" % (path, r)
        return r.json()

    # -- domain helpers --------------------------------------------------------
    def add_repo(self, url, name=None):
        body = {"url": str(url)}
        if name:
            body["name"] = name
        r = self.post("/api/repos", body)
        assert r.status == 201, "POST /api/repos: %r" % r
        return r.json()

    def repo(self, name):
        return self.get_json("/api/repos/" + name)

    def builds(self, **query):
        query.setdefault("limit", 1000)
        return self.get_json("/api/builds?" + urllib.parse.urlencode(query))

    def build(self, bid):
        return self.get_json("/api/builds/%s" % bid)

    def job(self, jid):
        return self.get_json("/api/jobs/%s" % jid)

    def log(self, jid, **query):
        q = ("?" + urllib.parse.urlencode(query)) if query else ""
        r = self.get("/api/jobs/%s/log%s" % (jid, q), timeout=120)
        assert r.status == 200, "GET log of job %s: %r" % (jid, r)
        return r.body

    def submit(self, jobs):
        """POST /api/builds {"jobs": [...]}; a job may be a dict or a shell command."""
        js = []
        for i, j in enumerate(jobs):
            if isinstance(j, str):
                j = {"name": "job%d" % (i + 1), "commands": [j]}
            js.append(j)
        r = self.post("/api/builds", {"jobs": js})
        assert r.status == 201, "POST /api/builds: %r" % r
        return r.json()

    def submit_jobs(self, jobs):
        """submit(), then the build's jobs (POST answers the build without them)."""
        b = self.submit(jobs)
        full = self.build(b["id"])
        assert len(full["jobs"]) == len(jobs), "build %s has jobs %r" % (b["id"], full["jobs"])
        return full, full["jobs"]

    def wait_build(self, bid, timeout=60, statuses=TERMINAL_BUILD):
        def done():
            b = self.build(bid)
            return b if b["status"] in statuses else None
        return wait_until(done, timeout, 0.1, what="build %s to reach %s" % (bid, statuses))

    def wait_job(self, jid, timeout=60, statuses=TERMINAL_JOB):
        def done():
            j = self.job(jid)
            return j if j["status"] in statuses else None
        return wait_until(done, timeout, 0.1, what="job %s to reach %s" % (jid, statuses))

    def branch_builds(self, repo, branch=None):
        """Builds of a repo (and branch), filtered again on our side."""
        q = {"repo": repo}
        if branch:
            q["branch"] = branch
        return [b for b in self.builds(**q)
                if b["repo"] == repo and (branch is None or b["branch"] == branch)]

    def wait_commit_build(self, repo, commit, timeout=30, finished=True):
        """The one build of (repo, commit); waits for it to appear (and finish)."""
        def found():
            bs = [b for b in self.branch_builds(repo) if b["commit"] == commit]
            return bs[0] if bs else None
        b = wait_until(found, timeout, 0.1, what="a build of %s at %s" % (repo, commit[:12]))
        if finished:
            b = self.wait_build(b["id"], timeout)
        return b

    def wait_polls(self, repo, n=2, timeout=30):
        """Wait until the observer has polled repo n more times (last_poll moved
        n times), so that anything it would do on a poll has been done."""
        seen = [self.repo(repo)["last_poll"]]

        def moved():
            lp = self.repo(repo)["last_poll"]
            if lp is not None and lp != seen[-1]:
                seen.append(lp)
            return len(seen) > n
        wait_until(moved, timeout, 0.1, what="%d polls of %s" % (n, repo))

    def runners(self):
        return self.get_json("/api/runners")


class Runner(Proc):
    """`yci runner` registered with a Server."""

    def __init__(self, ctx, server, name=None, slots=1, labels=None, heartbeat=1, args=()):
        self.server = server
        self.rname = name or "runner-" + uuid.uuid4().hex[:6]
        self.slots = slots
        self.labels = dict(labels or {})
        self.heartbeat = heartbeat
        self.workdir = str(ctx.tmp / ("work-" + self.rname))
        self.extra = list(args)
        super().__init__(ctx, self.rname, [])

    def start(self, wait=True, timeout=30):
        self.argv = [self.ctx.yci, "runner", "--server", self.server.url,
                     "--secret", self.server.secret, "--name", self.rname,
                     "--slots", str(self.slots), "--heartbeat", str(self.heartbeat),
                     "--workdir", self.workdir] + self.extra
        for k, v in self.labels.items():
            self.argv += ["--label", "%s=%s" % (k, v)]
        super().start()
        if wait:
            wait_until(lambda: self.record() or self._dead(), timeout,
                       what="runner %s to register" % self.rname)
        return self

    def _dead(self):
        if not self.alive():
            raise AssertionError("runner %s exited with %s:\n%s"
                                 % (self.rname, self.popen.returncode, tail(self.log_path)))
        return False

    def record(self):
        """This runner as GET /api/runners shows it (the newest of that name)."""
        rs = [r for r in self.server.runners() if r["name"] == self.rname]
        if not rs:
            return None
        return max(rs, key=lambda r: (r.get("created") or 0, str(r["id"])))


class Ctx:
    """Per-test state: the temporary directory, the processes, the env."""

    def __init__(self, request, tmp, yci):
        self.request = request
        self.tmp = tmp
        self.yci = yci
        self.procs = []
        (tmp / "logs").mkdir()

    def log_path(self, name):
        return str(self.tmp / "logs" / (name + ".log"))

    def env(self, **extra):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("YCI_", "PYENV", "PYTHON", "GIT_"))}
        e["PATH"] = CLEAN_PATH
        e["HOME"] = str(self.tmp / "home")
        e["LANG"] = "C.UTF-8"
        e["GIT_CONFIG_NOSYSTEM"] = "1"
        os.makedirs(e["HOME"], exist_ok=True)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def server(self, **kw):
        return Server(self, **kw)

    def runner(self, server, **kw):
        return Runner(self, server, **kw)

    def cli(self, *args, server=None, token=True, data=False, env=None, timeout=60,
            check=False, input=None):
        """Run `yci ARGS` as a client of server (YCI_SERVER, YCI_TOKEN and,
        with data=True, YCI_DATA). Returns a CompletedProcess with text output."""
        extra = {}
        if server is not None:
            extra["YCI_SERVER"] = server.url
            if token:
                extra["YCI_TOKEN"] = server.admin_token
            if data:
                extra["YCI_DATA"] = server.data
        extra.update(env or {})
        argv = [self.yci] + [str(a) for a in args]
        r = subprocess.run(argv, env=self.env(**extra), stdin=subprocess.DEVNULL if input is None
                           else None, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=str(self.tmp))
        with open(self.log_path("cli"), "a") as f:
            f.write("$ %s\n[exit %d]\n%s%s\n" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        for m in SANITIZER_MARKS:
            assert m not in r.stderr, "yci %s: sanitizer report:\n%s" % (" ".join(map(str, args)),
                                                                         r.stderr)
        if check:
            assert r.returncode == 0, "yci %s exited %d:\n%s%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr)
        return r

    # -- teardown ---------------------------------------------------------------
    def teardown(self, failed):
        problems = []
        for p in reversed(self.procs):
            if p.popen is None:
                continue
            if p.expect_dead and not p.alive():
                continue
            if not p.alive():
                rc = p.popen.returncode
                if rc not in (0,):
                    problems.append("%s had exited by itself with status %s" % (p.name, rc))
                problems += p.check_clean_exit()
                continue
            rc = p.stop()
            if rc is None:
                problems.append("%s did not exit within 20 s of SIGTERM (killed)" % p.name)
            elif rc not in (0, -signal.SIGTERM):
                problems.append("%s exited with status %s on SIGTERM" % (p.name, rc))
            problems += p.check_clean_exit()
        # Whatever is still running in this test's directory (jobs of killed
        # runners, say) was started by this test: end it, by pid. When no
        # yci process was killed on purpose, nothing may be left: a runner
        # stopped by SIGTERM kills its jobs.
        killed = any(p.expect_dead for p in self.procs)
        left = self.leftovers()
        if left and not killed:
            deadline = time.monotonic() + 5
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = self.leftovers()
            if left:
                problems.append("processes left running after every yci process stopped: %s"
                                % "; ".join(self.describe(pid) for pid in left))
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if failed or problems:
            self.save_artifacts()
        return problems

    def leftovers(self):
        """Pids of processes whose cwd or command line is inside self.tmp."""
        me = os.getpid()
        tmp = str(self.tmp)
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                cwd = os.readlink("/proc/%s/cwd" % d)
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if cwd == tmp or cwd.startswith(tmp + "/") or tmp + "/" in cmd:
                found.append(int(d))
        return found

    @staticmethod
    def describe(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return "%d %s" % (pid, f.read().replace(b"\0", b" ").decode("utf-8", "replace"))
        except OSError:
            return "%d (gone)" % pid

    def save_artifacts(self):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.request.node.nodeid)[-150:]
        dest = os.path.join(ARTIFACTS, name)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest, exist_ok=True)
        logs = self.tmp / "logs"
        for f in sorted(os.listdir(logs)):
            shutil.copy(logs / f, dest)
            sys.stderr.write("\n----- tail of %s (saved in %s) -----\n%s\n"
                             % (f, os.path.relpath(dest, REPO_ROOT), tail(logs / f)))


# ---------------------------------------------------------------------------
# Git

class GitRepo:
    """A bare "origin" repository (what yci watches) and a work tree that
    commits and pushes to it, so that every change arrives as a real push."""

    def __init__(self, ctx, name="demo", branch="main"):
        self.ctx = ctx
        self.name = name
        self.path = str(ctx.tmp / "origin" / (name + ".git"))  # watched by yci
        self.work = str(ctx.tmp / "work" / name)
        self.env = ctx.env(GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@example.com",
                           GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@example.com")
        os.makedirs(self.path)
        os.makedirs(self.work)
        self.git("init", "-q", "--bare", "-b", branch, self.path, cwd=self.path)
        self.git("init", "-q", "-b", branch)
        self.git("remote", "add", "origin", self.path)
        self.branch = branch

    def git(self, *args, cwd=None, check=True):
        r = subprocess.run(["git"] + [str(a) for a in args], cwd=cwd or self.work, env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("git %s failed (%d): %s%s" % (" ".join(map(str, args)),
                                                               r.returncode, r.stdout, r.stderr))
        return r.stdout.strip()

    def write(self, files):
        for rel, content in files.items():
            p = os.path.join(self.work, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if content is None:
                os.remove(p)
                continue
            with open(p, "w") as f:
                f.write(content)

    def commit(self, files=None, message="change", push=True):
        """Commit files ({path: text, or None to delete}) on the current
        branch; push it unless push=False. Returns the commit id."""
        self.write(files or {"change.txt": uuid.uuid4().hex + "\n"})
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        sha = self.head()
        if push:
            self.push()
        return sha

    def head(self, ref="HEAD"):
        return self.git("rev-parse", ref)

    def checkout(self, branch, new=False, start=None):
        args = ["checkout", "-q"] + (["-b"] if new else []) + [branch]
        if new and start:
            args.append(start)
        self.git(*args)
        self.branch = branch

    def push(self, *branches, force=False):
        self.git("push", "-q", *(["-f"] if force else []), "origin",
                 *(branches or [self.branch]))

    def remote_head(self, branch):
        return self.git("rev-parse", "refs/heads/" + branch, cwd=self.path)

    def delete(self):
        shutil.rmtree(self.path)


# A repository whose tests/ pass, as in the seed's demo.
PASSING_TESTS = {
    "tests/__init__.py": "",
    "tests/test_math.py": (
        "import unittest\n\n"
        "class MathTest(unittest.TestCase):\n"
        "    def test_add(self):\n"
        "        self.assertEqual(1 + 1, 2)\n\n"
        "    def test_mul(self):\n"
        "        self.assertEqual(2 * 3, 6)\n"),
}
FAILING_TESTS = {
    "tests/__init__.py": "",
    "tests/test_math.py": (
        "import unittest\n\n"
        "class MathTest(unittest.TestCase):\n"
        "    def test_add(self):\n"
        "        self.assertEqual(1 + 1, 2)\n\n"
        "    def test_wrong(self):\n"
        "        self.assertEqual(2 * 3, 7, 'yci-expected-failure')\n"),
}


# ---------------------------------------------------------------------------
# Fixtures

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than ~10 seconds")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Fallback for python3-pytest-timeout: the same limit by SIGALRM."""
    if request.config.pluginmanager.hasplugin("timeout"):
        yield
        return
    m = request.node.get_closest_marker("timeout")
    limit = int(m.args[0]) if m and m.args else DEFAULT_TIMEOUT

    def expired(signum, frame):
        pytest.fail("test exceeded its time limit of %d s" % limit, pytrace=True)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def yci_bin():
    path = os.environ.get("YCI_BIN") or os.path.join(REPO_ROOT, "build", "yci")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.exit("yci binary not found at %s: build it (ninja -C build) or set YCI_BIN"
                    % path, returncode=2)
    return path


@pytest.fixture(scope="session")
def misbehave(yci_bin):
    """The misbehaving-child helper (tests/helpers/misbehave.c) if built, else None."""
    p = os.environ.get("YCI_MISBEHAVE") or os.path.join(os.path.dirname(yci_bin), "tests",
                                                          "helpers", "misbehave")
    return p if os.access(p, os.X_OK) else None


@pytest.fixture
def ctx(request, tmp_path, yci_bin):
    c = Ctx(request, tmp_path, yci_bin)
    yield c
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    problems = c.teardown(failed)
    if problems:
        pytest.fail("process problems at the end of the test:\n  " + "\n  ".join(problems),
                    pytrace=False)


@pytest.fixture
def server(ctx):
    """A started `yci server` (poll interval 1 s) with its own data dir and port."""
    return ctx.server().start()


@pytest.fixture
def runner(ctx, server):
    """One started runner (1 slot, heartbeat 1 s) registered with `server`."""
    return ctx.runner(server).start()


@pytest.fixture
def gitrepo(ctx):
    """Make GitRepo objects: gitrepo("name")."""
    return lambda name="demo", **kw: GitRepo(ctx, name, **kw)


@pytest.fixture
def cli(ctx, server):
    """Run `yci ...` as a client of `server`: cli("builds", "--json")."""
    return lambda *args, **kw: ctx.cli(*args, server=server, **kw)
