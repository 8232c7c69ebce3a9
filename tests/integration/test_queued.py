"""Every queued job says why it is not running yet (queued_reason in the API,
on the build page and in `yci build`)."""

from conftest import wait_until


def reasons(server, bid):
    return {j["name"]: j.get("queued_reason") for j in server.build(bid)["jobs"]}


def test_queued_jobs_say_why(ctx, server):
    bid = server.submit([{"name": "anyone", "commands": ["true"]}])["id"]
    assert reasons(server, bid)["anyone"] == "no live runner"
    runner = ctx.runner(server, slots=1).start()
    server.wait_build(bid)

    bid = server.submit([
        {"name": "slow", "commands": ["sleep 30"]},
        {"name": "after", "commands": ["true"], "needs": ["slow"]},
        {"name": "second", "commands": ["true"]},
        {"name": "plan9", "commands": ["true"], "labels": {"os": "plan9"}},
        {"name": "flaky", "commands": ["exit 1"], "retry": {"count": 1, "increment": 600}},
    ])["id"]

    def settled():
        r = reasons(server, bid)
        return r if r["second"] and r["second"].startswith("all") else None
    r = wait_until(settled, 30, what="the one slot busy")
    assert r["slow"] is None, r  # running: no reason
    assert r["after"] == "waiting for the jobs it needs: slow (running)", r
    assert r["second"] == "all 1 matching runner is busy (1 of 1 slots in use)", r
    assert r["plan9"] == "no live runner has its labels: os=plan9", r
    job = server.job([j for j in server.build(bid)["jobs"] if j["name"] == "plan9"][0]["id"])
    assert job["queued_reason"] == "no live runner has its labels: os=plan9", job

    out = ctx.cli("build", bid, server=server, check=True).stdout
    assert "queued: no live runner has its labels: os=plan9" in out, out
    page = server.get("/builds/%d" % bid).text
    assert "all 1 matching runner is busy (1 of 1 slots in use)" in page

    # A failed attempt waiting out its retry's delay.
    ctx.cli("cancel", "--job",
            [j for j in server.build(bid)["jobs"] if j["name"] == "slow"][0]["id"],
            server=server, check=True)

    def retrying():
        r = reasons(server, bid)
        return r if (r.get("flaky") or "").startswith("waiting out a retry delay") else None
    r = wait_until(retrying, 30, what="the flaky job's retry delay")
    assert r["flaky"].startswith("waiting out a retry delay: retry 1 of 1 in "), r
    runner.stop()
