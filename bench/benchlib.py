"""Shared pieces of the benchmarks in bench/: start yci, ask its API, wait.

Benchmarks never fail for being slow: die() is for a broken run only.
"""

import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def die(msg):
    print("%s: %s" % (os.path.basename(sys.argv[0]), msg), file=sys.stderr)
    sys.exit(1)


def yci_bin():
    path = os.environ.get("YCI_BIN", os.path.join(ROOT, "build", "yci"))
    if not os.access(path, os.X_OK):
        die("no binary at %s (ninja -C build)" % path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, token=None, timeout=30):
    """(status, headers dict with lower-case names, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                  headers=hdrs)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def get_json(port, path):
    status, _, body = request(port, "GET", path)
    return status, (json.loads(body) if body else None)


def wait(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.01)
    die("timed out waiting for " + what)


class Yci:
    """A yci server and runners in a temporary directory; stop() ends them."""

    def __init__(self, tmp, env=None):
        self.yci = yci_bin()
        self.tmp = tmp
        self.env = env
        self.procs = []
        self.port = None
        self.data = os.path.join(tmp, "data")

    def server(self, *args):
        self.port = free_port()
        log = open(os.path.join(self.tmp, "server.log"), "wb")
        self.procs.append(subprocess.Popen(
            [self.yci, "server", "--listen", "127.0.0.1:%d" % self.port, "--data", self.data]
            + list(args), env=self.env, stdout=log, stderr=subprocess.STDOUT))

        def up():
            try:
                return (os.path.exists(os.path.join(self.data, "registration-secret")) and
                        get_json(self.port, "/api/health")[0] == 200)
            except OSError:
                return False
        wait(up, 30, "the server")
        with open(os.path.join(self.data, "admin-token")) as f:
            self.token = f.read().strip()
        return self

    def runner(self, name="bench", slots=1):
        with open(os.path.join(self.data, "registration-secret")) as f:
            secret = f.read().strip()
        log = open(os.path.join(self.tmp, "runner-%s.log" % name), "wb")
        self.procs.append(subprocess.Popen(
            [self.yci, "runner", "--server", "http://127.0.0.1:%d" % self.port, "--secret",
             secret, "--name", name, "--slots", str(slots), "--heartbeat", "1",
             "--workdir", os.path.join(self.tmp, "runner-" + name)],
            stdout=log, stderr=subprocess.STDOUT))
        wait(lambda: any(r["name"] == name and r["alive"]
                         for r in get_json(self.port, "/api/runners")[1] or []),
             30, "the runner")
        return self

    def stop(self):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


class Conn:
    """One kept-alive HTTP/1.1 connection to the server, for timing requests
    back to back. get()/call() return (status, headers dict with lower-case
    names, body bytes); `reconnects` counts the times the server closed it."""

    def __init__(self, port, token=None, timeout=60):
        self.port = port
        self.token = token
        self.timeout = timeout
        self.conn = None
        self.reconnects = -1  # the first connect is not a reconnect

    def call(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if self.token and method != "GET":
            hdrs["Authorization"] = "Bearer " + self.token
        while True:
            # Once more on a new connection when a kept-alive one fails (the
            # server closed it meanwhile); never twice on a fresh connection.
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
                self.reconnects += 1
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                hd = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self.close()
                return r.status, hd, raw
            except (http.client.HTTPException, OSError):
                self.close()
                if fresh:
                    raise

    def get(self, path, headers=None):
        return self.call("GET", path, headers=headers)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(sorted_values, p):
    """The p-th percentile (0-100) of an already sorted list, nearest rank."""
    if not sorted_values:
        return float("nan")
    n = len(sorted_values)
    return sorted_values[min(n - 1, int(round(p / 100.0 * (n - 1))))]


def memory(pid):
    """(VmRSS, Pss) of a process in bytes, (0, 0) when it is gone. Pss (from
    /proc/PID/smaps_rollup) charges each shared page to its sharers in part:
    RSS counts the shared libraries' pages whole."""
    rss = pss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def raise_nofile(need):
    """Raise this process's soft limit on descriptors to the hard one (its
    children, a server started after, inherit it); RuntimeError when even the
    hard limit is under `need`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise RuntimeError("%d descriptors needed, the hard limit is %d (ulimit -Hn)"
                           % (need, hard))
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def post_builds(conn, count, body, cancel=False):
    """Create `count` builds through POST /api/builds on conn (a Conn with the
    admin token), one after the other: body(i) is the i-th request's JSON.
    With cancel, each build is cancelled right after it is made (a cancelled
    build is history too, at one request more and no run). Returns each POST's
    time in ms; RuntimeError on an answer that is not 201 (or 200 to a cancel).
    This is how the benchmarks fill a history: on one kept-alive connection the
    server takes ~1,000 of them a second; a build that runs a job ends at the
    runner's pace, a few hundred a second."""
    times = []
    for i in range(count):
        b = body(i)
        t0 = time.perf_counter()
        st, _, raw = conn.call("POST", "/api/builds", b)
        times.append((time.perf_counter() - t0) * 1000.0)
        if st != 201:
            raise RuntimeError("POST /api/builds %s: %d %r" % (b, st, raw[:200]))
        if cancel:
            bid = json.loads(raw)["id"]
            st, _, raw = conn.call("POST", "/api/builds/%d/cancel" % bid, {})
            if st != 200:
                raise RuntimeError("cancel of build %d: %d %r" % (bid, st, raw[:200]))
    return times


def builds_pending(port):
    """Builds queued or running (counted up to 1,000 each)."""
    n = 0
    for status in ("queued", "running"):
        st, lst = get_json(port, "/api/builds?status=%s&limit=1000" % status)
        if st != 200:
            raise RuntimeError("GET /api/builds?status=%s answered %d" % (status, st))
        n += len(lst)
    return n


def wait_builds_ended(port, timeout):
    """Wait (at most timeout seconds) for no build to be queued or running;
    returns how many still are (0 when all ended)."""
    end = time.monotonic() + timeout
    while True:
        left = builds_pending(port)
        if left == 0 or time.monotonic() >= end:
            return left
        time.sleep(0.2)
