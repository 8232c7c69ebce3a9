"""The quick start: `yci up` makes a demo repository (a tests/ folder of
unittest tests, as the seed), builds it with its own runner slots, shows the
result and the URL; the CLI then shows the build and its log."""

import json
import os

from conftest import TERMINAL_BUILD, wait_until


def test_up_builds_the_demo_and_the_cli_shows_it(ctx):
    up = ctx.server(name="up", command="up", poll_interval=None, args=["--slots", "1"])
    up.start(timeout=60)
    b = wait_until(lambda: up.builds(), 60, what="a build of the demo repository")[-1]
    b = up.wait_build(b["id"], timeout=120)
    assert b["status"] == "passed", b
    repos = up.get_json("/api/repos")
    assert [r["name"] for r in repos] == [b["repo"]], repos
    assert repos[0]["last_error"] in (None, ""), repos

    # The runner slots run in the same process.
    runners = up.runners()
    assert len(runners) == 1 and runners[0]["slots"] == 1 and runners[0]["alive"], runners

    # It tells the user where to look and how the first build went.
    wait_until(lambda: up.url in up.output(), 10, what="the URL in yci up's output")
    wait_until(lambda: "passed" in up.output(), 10, what="the first result in yci up's output")

    # The demo is a real git repository with unittest tests, built at its head.
    full = up.build(b["id"])
    job = full["jobs"][0]
    log = up.log(job["id"]).decode()
    assert "Ran " in log and "OK" in log, log
    assert os.path.isfile(os.path.join(up.data, "test_results", b["commit"]))

    # The CLI, with only YCI_SERVER and YCI_DATA.
    r = ctx.cli("builds", server=up, token=False, data=True, check=True)
    assert str(b["id"]) in r.stdout and "passed" in r.stdout, r.stdout
    r = ctx.cli("build", b["id"], server=up, token=False, data=True, check=True)
    assert "passed" in r.stdout and job["name"] in r.stdout, r.stdout
    r = ctx.cli("logs", job["id"], server=up, token=False, data=True, check=True)
    assert "Ran " in r.stdout and "OK" in r.stdout, r.stdout
    data = json.loads(ctx.cli("builds", "--json", server=up, token=False, data=True,
                              check=True).stdout)
    assert all(x["status"] in TERMINAL_BUILD + ("queued", "running") for x in data), data


def test_up_restarts_on_the_same_data(ctx):
    """A second `yci up` on the same data directory keeps the history and does
    not build the demo again."""
    up = ctx.server(name="up", command="up", poll_interval=None, args=["--slots", "1"])
    up.start(timeout=60)
    first = wait_until(lambda: [b for b in up.builds() if b["status"] == "passed"], 120,
                       what="the demo build to pass")
    assert up.stop() in (0, -15)
    up.restart(timeout=60)
    up.wait_polls(first[0]["repo"], 1, timeout=30)
    again = up.builds()
    assert [b["id"] for b in again] == [b["id"] for b in first], again
