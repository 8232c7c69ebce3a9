"""The floor of bench/suite: the same N runs spawned directly by shell loops,
one per slot (no queue, no log, no result): what no CI system can beat."""

import shlex
import subprocess
import time


class Floor:
    name = "floor"

    def __init__(self, tmp, slots=2):
        self.tmp = tmp
        self.slots = slots

    def available(self):
        return True, ""

    def start(self):
        pass

    def stop(self):
        pass

    def throughput(self, n, checkout=False, repo=None):
        per = [n // self.slots + (1 if i < n % self.slots else 0) for i in range(self.slots)]
        body = "/bin/true"
        if checkout:
            # a fresh clone per run, as each job of the checkout row gets
            body = ('rm -rf "$w"; git clone -q --no-hardlinks %s "$w" && (cd "$w" && /bin/true)'
                    % shlex.quote(repo))
        loop = 'i=0; w="$2"; while [ "$i" -lt "$1" ]; do %s || exit 1; i=$((i+1)); done' % body
        t0 = time.monotonic()
        ps = [subprocess.Popen(["/bin/sh", "-c", loop, "sh", str(k), "%s/floor-ws-%d" % (self.tmp, i)])
              for i, k in enumerate(per)]
        bad = [p.wait() for p in ps]
        if any(bad):
            raise RuntimeError("the floor loop failed")
        return time.monotonic() - t0

    def latency(self, trials):
        raise NotImplementedError

    def footprint(self):
        raise NotImplementedError
