"""The systems bench/suite measures side by side (issue 6).

Each module here defines one class with this interface (all times in seconds,
from time.monotonic() or time.time() as said; every process it starts listens
on 127.0.0.1 only, lives under `tmp`, and is gone after stop()):

    class Peer:
        name = "python-rq"              # the row label in the table
        def __init__(self, tmp, slots=2): ...
        def available(self) -> (bool, str)  # False and why when its packages are missing
        def start(self): ...            # set up and start everything, idle when it returns
        def stop(self): ...             # stop everything (also after a failure); idempotent

        # Figure 1: N trivial jobs end to end (queued -> result stored, log kept),
        # `slots` at a time in all. checkout=False: each job runs `true`;
        # checkout=True: each job first gets a fresh workspace with a checkout of
        # `repo` (a small local git repository, a path) then runs `true`.
        # Returns the wall time in seconds from the first submission to the last
        # result stored. Raises RuntimeError when a job did not pass.
        def throughput(self, n, checkout=False, repo=None) -> float

        # Figure 2: one job at a time on the idle system, `trials` times: the job's
        # process records the wall clock when it starts (its command is given by
        # `marker_cmd(path)`: a shell command appending the start time to path).
        # Returns a list of (trigger -> process start, trigger -> result visible
        # through the system's API) in seconds.
        def latency(self, trials) -> list[tuple[float, float]]

        # Figure 3: resident memory in bytes of the system's processes when idle:
        # {"server": ..., "worker": ... (each worker; a list when several)}.
        def footprint(self) -> dict

A method a peer cannot do raises NotImplementedError; the suite prints "n/a".
Figures only yci has (scale, longpoll, history, logs: see peers/yci.py) are
methods the suite calls when a peer has them.
"""

import shlex

PY = "/usr/bin/python3"


def marker_cmd(path):
    """A shell command that appends the wall-clock time (s.ns, one line) to
    path: `date` costs ~1 ms to start, a Python would cost ~20."""
    return "date +%%s.%%N >> %s" % shlex.quote(str(path))


def rss_bytes(pid):
    """VmRSS of a process, in bytes (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def read_marks(path):
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()]
    except OSError:
        return []


def tree_rss(pid):
    """RSS of pid and all its descendants, in bytes."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        total += rss_bytes(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total
