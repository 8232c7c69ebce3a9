"""What a commit runs when it has no configuration: tests/ by unittest
discovery, else a Makefile's check or test target, else an error that says
what yci looked for. Results through the API and in <data>/test_results/<sha>."""

import os

import pytest

from conftest import FAILING_TESTS, PASSING_TESTS, wait_until

BOTH = dict(PASSING_TESTS)
BOTH["Makefile"] = "check:\n\t@echo yci-make-ran-instead\n"

# case: (files, build status, job exit code, strings the log must contain,
#        strings it must not)
CASES = {
    "unittest-passing": (PASSING_TESTS, "passed", 0,
                         ["test_add", "test_mul", "Ran 2 tests", "OK"], ["FAILED"]),
    "unittest-failing": (FAILING_TESTS, "failed", 1,
                         ["test_wrong", "yci-expected-failure", "Ran 2 tests",
                          "FAILED (failures=1)"], []),
    "make-check": ({"Makefile": ("all:\n\t@echo yci-wrong-target\n"
                                 "check:\n\t@echo yci-make-check-ran\n")},
                   "passed", 0, ["yci-make-check-ran"], ["yci-wrong-target"]),
    "make-test": ({"Makefile": ("all:\n\t@echo yci-wrong-target\n"
                                "test:\n\t@echo yci-make-test-ran\n")},
                  "passed", 0, ["yci-make-test-ran"], ["yci-wrong-target"]),
    "make-check-failing": ({"Makefile": "check:\n\t@echo yci-about-to-fail; exit 3\n"},
                           "failed", 2, ["yci-about-to-fail"], []),
    "tests-dir-wins-over-makefile": (BOTH, "passed", 0, ["Ran 2 tests"], ["yci-make-ran-instead"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_pipeline(ctx, server, runner, gitrepo, case):
    files, status, code, needles, absent = CASES[case]
    repo = gitrepo("proj")
    sha = repo.commit(files)
    server.add_repo(repo.path)

    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == status, b
    assert b["branch"] == "main" and b["repo"] == "proj"
    full = server.build(b["id"])
    assert len(full["jobs"]) == 1, full
    job = full["jobs"][0]
    assert job["status"] == status and job["exit_code"] == code, job
    assert job["attempt"] == 1 and job["runner"] == runner.rname, job

    # Timings: all set, in order, and the duration is what they say.
    for obj in (full, job):
        assert all(isinstance(obj[k], int) for k in ("created", "started", "finished")), obj
        assert obj["created"] <= obj["started"] <= obj["finished"], obj
        assert abs(obj["duration_ms"] - (obj["finished"] - obj["started"])) <= 1, obj

    # The full log, through the API.
    log = server.log(job["id"])
    text = log.decode("utf-8", "replace")
    for n in needles:
        assert n in text, "%r not in the log:\n%s" % (n, text[-2000:])
    for n in absent:
        assert n not in text, "%r in the log:\n%s" % (n, text[-2000:])
    assert server.job(job["id"])["log_size"] == len(log)

    # As the seed: one file per commit under <data>/test_results/.
    path = os.path.join(server.data, "test_results", sha)
    wait_until(lambda: os.path.isfile(path), 10, what=path)
    with open(path) as f:
        result = f.read()
    assert status in result, "%s says %r" % (path, result)


@pytest.mark.parametrize("files", [
    {"README": "nothing to run here\n"},
    {"Makefile": "all:\n\t@echo yci-no-check-target\n", "src/x.c": "int x;\n"},
], ids=["nothing", "makefile-without-check-or-test"])
def test_nothing_to_run_is_a_build_error_that_says_what_was_looked_for(ctx, server, runner,
                                                                      gitrepo, files):
    repo = gitrepo("empty")
    sha = repo.commit(files)
    server.add_repo(repo.path)
    b = server.wait_commit_build("empty", sha, timeout=60)
    assert b["status"] == "error", b
    full = server.build(b["id"])
    words = [full.get("error") or ""] + [e["message"] for e in full["events"]]
    words += [j.get("error") or "" for j in full["jobs"]]
    text = "\n".join(words)
    assert "tests" in text and "Makefile" in text, \
        "the error should name tests/ and Makefile (check/test): %r" % text
    assert "check" in text and "test" in text, text
    # Nothing was run.
    for j in full["jobs"]:
        assert j["status"] in ("error", "cancelled"), j


def test_a_result_file_a_crash_left_unwritten_is_written_at_start(ctx, gitrepo):
    """The file is written after the build ends, by a queue in memory: a
    server killed in between writes it when it starts again, and removes the
    temporary file of a write it cut short."""
    server = ctx.server().start()
    ctx.runner(server).start()
    repo = gitrepo("proj")
    sha = repo.commit({"Makefile": "check:\n\t@echo yci-result-file\n"})
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == "passed", b
    results = os.path.join(server.data, "test_results")
    path = os.path.join(results, sha)
    wait_until(lambda: os.path.isfile(path), 10, what=path)
    server.kill9()
    # As a crash between the build's end and its file would leave it: no
    # file (or an older one), and the temporary file of a write cut short.
    os.unlink(path)
    tmp = os.path.join(results, ".%s.abcdef.tmp" % sha)
    with open(tmp, "w") as f:
        f.write("half a result")
    server.restart()
    wait_until(lambda: os.path.isfile(path), 10, what=path + " written again")
    with open(path) as f:
        text = f.read()
    assert "build %d: passed" % b["id"] in text and "yci-result-file" in text, text
    wait_until(lambda: not os.path.exists(tmp), 10, what="the temporary file removed")
    assert "wrote its test_results file, which a crash had left unwritten" in server.output()
