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

import atexit
import fcntl
import os
import shlex
import struct
import subprocess
import termios
import time

PY = "/usr/bin/python3"


# The recorder of marker_cmd(): reads lines from the FIFO (opened for reading
# and writing, so that a writer never blocks and the reader never sees an end)
# and appends the wall-clock time each one arrived to the times file. A process
# of its own, so that the bench's own threads cannot delay the reading; it ends
# when its parent does.
_RECORDER = r"""
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
out = open(sys.argv[2], "a")
parent = os.getppid()
print("ready", flush=True)
while os.getppid() == parent:
    if not select.select([fd], [], [], 1.0)[0]:
        continue
    now = time.time()
    for _ in range(os.read(fd, 4096).count(b"\n")):
        out.write("%.6f\n" % now)
    out.flush()
"""
_recorders = {}


def marker_cmd(path):
    """A shell command with which a job's own shell records that it started:
    it writes a line to the FIFO at path with its builtin `echo` (no further
    process starts), and a recorder process notes the wall-clock time the line
    arrived (read back by read_marks(path)). A mark by `date` would add the
    start of one more process: ~1 ms on one VM, ~4 on another."""
    path = str(path)
    if path not in _recorders:
        if not os.path.exists(path):
            os.mkfifo(path, 0o600)
        p = subprocess.Popen([PY, "-c", _RECORDER, path, path + ".times"],
                             stdout=subprocess.PIPE)
        atexit.register(lambda: p.poll() is None and p.kill())
        # The FIFO open before any job writes to it: a writer that came
        # first would wait for the recorder's start, which is not the
        # system's latency.
        if p.stdout.readline() != b"ready\n":
            raise RuntimeError("the marks' recorder did not start")
        p.stdout.close()
        _recorders[path] = p
    return "echo >> %s" % shlex.quote(path)


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


def _pending(path):
    """Bytes written to the FIFO at path that its recorder has not read yet."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    finally:
        os.close(fd)


def read_marks(path):
    """The times marker_cmd(path) recorded so far, oldest first."""
    deadline = time.monotonic() + 1.0
    while path in _recorders and _recorders[path].poll() is None:
        # a line written is read at once; this waits out a busy machine
        if time.monotonic() > deadline or _pending(path) == 0:
            break
        time.sleep(0.001)
    try:
        with open(str(path) + ".times") as f:
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
