""".yci.py, the seed's generator: the server never runs it; the build's first
job is a plan job a runner runs (in bubblewrap when it works), and the jobs the
generator yields come back with its finish, validated like .yci.yml's."""

import os

from conftest import wait_until

SEED_FIXED = """\
from yci.retry import IncrementalRetry
from yci.run import Bash

def test_generator(build_id, pull):
    ENV_VAR_1 = ['foo', 'bar']
    ENV_VAR_2 = ['x', 'y']

    for x in ENV_VAR_1:
        for y in ENV_VAR_2:
            # there i can skip or implement basic logic
            # I could even iterate over a set of files

            yield IncrementalRetry(Bash('./test.sh', env={'ENV_VAR_1': x, 'ENV_VAR_2': y}),
                retries=3, retry_increment=600)
"""

TEST_SH = "#!/bin/sh\necho \"yci-test ENV_VAR_1=$ENV_VAR_1 ENV_VAR_2=$ENV_VAR_2\"\n"

NAMES = ["./test.sh (foo, x)", "./test.sh (foo, y)", "./test.sh (bar, x)", "./test.sh (bar, y)"]


def commit_py(repo, source, extra=None):
    """Commit .yci.py with an executable test.sh (and extra files)."""
    repo.write({"test.sh": TEST_SH})
    os.chmod(os.path.join(repo.work, "test.sh"), 0o755)
    files = {".yci.py": source}
    files.update(extra or {})
    return repo.commit(files)


def test_seed_example_gives_its_four_tests(ctx, server, runner, gitrepo):
    repo = gitrepo("proj")
    sha = commit_py(repo, SEED_FIXED)
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=90)
    assert b["status"] == "passed", b
    jobs = server.build(b["id"])["jobs"]
    plan = jobs[0]
    assert plan["name"] == ".yci.py" and plan["kind"] == "plan", plan
    assert plan["status"] == "passed", plan
    assert [j["name"] for j in jobs[1:]] == NAMES
    for j, (x, y) in zip(jobs[1:], [("foo", "x"), ("foo", "y"), ("bar", "x"), ("bar", "y")]):
        assert j["planned"] is True and j["kind"] == "test", j
        assert j["env"] == {"ENV_VAR_1": x, "ENV_VAR_2": y}, j
        assert j["commands"] == ["./test.sh"], j
        assert j["max_retries"] == 3 and j["retry_increment"] == 600, j
        assert j["status"] == "passed", j
        log = server.log(j["id"]).decode()
        assert "yci-test ENV_VAR_1=%s ENV_VAR_2=%s" % (x, y) in log, log
    events = [e["message"] for e in server.build(b["id"])["events"]]
    assert ".yci.py planned 4 jobs" in events, events
