"""The server's HTML pages: the runners page (labels, platform, client_info,
last heartbeat, current jobs, dead runners), everything escaped."""

from conftest import http_request, wait_until

HOSTILE = "<script>alert(1)</script>\"'&"


def test_runners_page(ctx, server):
    runner = ctx.runner(server, labels={"os": "linux"}).start()
    bid = server.submit([{"name": "sleeper", "commands": ["sleep 30"]}])["id"]
    wait_until(lambda: any(r["jobs"] for r in server.runners()), 30, what="the job running")
    # A second runner, registered by hand, with hostile client_info and no heartbeat since.
    r = http_request(server.url, "POST", "/api/runners/register",
                     {"name": "hand-made", "labels": {}, "slots": 1, "heartbeat": 1},
                     token=server.secret)
    assert r.status == 201, r
    tok = r.json()["token"]
    r = http_request(server.url, "POST", "/api/runners/heartbeat",
                     {"client_info": {"note": HOSTILE}, "jobs": []}, token=tok)
    assert r.status == 200, r

    page = server.get("/runners")
    assert page.status == 200, page
    assert "default-src" in page.header("Content-Security-Policy")
    text = page.text
    assert runner.name in text and "os=linux" in text, text
    assert '<a href="/builds/%d">sleeper</a>' % bid in text, text
    assert "<script>" not in text and "&lt;script&gt;" in text, text
    assert "alive" in text and "s ago" in text
    # The hand-made runner stops heartbeating: shown dead.
    wait_until(lambda: ">dead<" in server.get("/runners").text, 30, what="a dead runner")
    # The link in every page's header.
    assert '<a href="/runners">runners</a>' in server.get("/").text
