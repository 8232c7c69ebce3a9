"""The dashboard in a real browser: headless Chromium from Debian driven by
selenium (python3-selenium), against a real server, runner and git repository.

  * the overview shows a build turn from running to passed without a reload;
  * a job page shows lines as the job prints them, with their ANSI colours;
  * rebuild and cancel work from the build page (the admin token asked once);
  * hostile strings in every field stay text on every page;
  * a large log opens at its tail with the right line numbers, and earlier
    parts load on demand.

Every test saves screenshots under tests/artifacts/screenshots/. Chromium is
installed by scripts/install-deps; without it these tests fail (set
YCI_SKIP_BROWSER=1 to skip them on a machine that cannot have it).
"""

import json
import os
import time

import pytest

from conftest import ARTIFACTS, http_request, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = os.path.join(ARTIFACTS, "screenshots")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def browser(request):
    if os.environ.get("YCI_SKIP_BROWSER") == "1":
        pytest.skip("YCI_SKIP_BROWSER=1")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("python3-selenium is missing: run scripts/install-deps")
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.access(p, os.X_OK):
            pytest.fail("%s is missing: run scripts/install-deps (chromium, chromium-driver)" % p)
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    d.shots = 0

    def shot(name):
        os.makedirs(SHOTS, exist_ok=True)
        d.shots += 1
        d.save_screenshot(os.path.join(SHOTS, "%s-%02d-%s.png" % (request.node.name, d.shots,
                                                                    name)))
    d.shot = shot
    yield d
    try:
        shot("end")
    finally:
        d.quit()


def css(d, selector):
    from selenium.webdriver.common.by import By
    return d.find_elements(By.CSS_SELECTOR, selector)


def text(d, selector):
    """The text of the first element matching selector ("" when none), read in
    one script call: a live section may be swapped between two WebDriver calls
    (a stale element)."""
    return d.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
        selector)


def mark_page(d):
    """Tag the current document: a reload would lose the tag."""
    d.execute_script("window.__yciNoReload = 42;")


def not_reloaded(d):
    return d.execute_script("return window.__yciNoReload") == 42


def console_errors(d):
    """Browser console errors, apart from resources the test made fail."""
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def log_lines(d):
    """The text of each line of the log view (without its number)."""
    return d.execute_script("return Array.from(document.querySelectorAll('#log .ln .t'),"
                            " e => e.innerText);")


def gate_cmd(path):
    return "while [ ! -e %s ]; do sleep 0.05; done" % path


def test_overview_updates_without_reload(ctx, server, runner, gitrepo, browser):
    gate = ctx.tmp / "go"
    repo = gitrepo("live")
    sha = repo.commit({".yci.yml": "jobs:\n  wait:\n    run: %s\n" % gate_cmd(gate)},
                      message="Add the waiting job")
    server.add_repo(repo.path, "live")
    b = server.build(server.wait_commit_build("live", sha, finished=False)["id"])
    server.wait_job(b["jobs"][0]["id"], statuses=("running",))

    browser.get(server.url + "/")
    wait_until(lambda: css(browser, "table.overview tr.row-running"), 10, what="a running row")
    page = text(browser, "table.overview")
    assert "main" in page and "running" in page, page
    # the commit's author (read just after the build is made: the page updates)
    wait_until(lambda: "Test" in text(browser, "table.overview") and "Add the waiting job" in
               text(browser, "table.overview"), 10, what="the author and subject")
    mark_page(browser)
    browser.shot("running")

    gate.touch()
    server.wait_build(b["id"])
    wait_until(lambda: css(browser, "table.overview tr.row-passed"), 15,
               what="the overview turning passed by itself")
    assert not_reloaded(browser), "the page was reloaded"
    assert "passed" in text(browser, "table.overview tr.row-passed")
    browser.shot("passed")

    # A new commit: a new build appears on the same row, still without a reload.
    sha2 = repo.commit({".yci.yml": "jobs:\n  quick:\n    run: 'true'\n"}, message="Second")
    server.wait_commit_build("live", sha2)
    wait_until(lambda: "Second" in text(browser, "table.overview"), 15,
               what="the new commit on the overview")
    assert not_reloaded(browser)
    assert console_errors(browser) == []


def test_job_page_follows_the_log(ctx, server, runner, browser):
    g1, g2 = ctx.tmp / "g1", ctx.tmp / "g2"
    script = ("printf 'first line\\n'; %s; printf '\\033[31msecond line\\033[0m\\n'; %s; "
              "printf 'last line'" % (gate_cmd(g1), gate_cmd(g2)))
    bid = server.submit([{"name": "printer", "commands": [script]}])["id"]
    jid = server.build(bid)["jobs"][0]["id"]
    wait_until(lambda: b"first line" in server.log(jid), 30, what="the first line")

    browser.get(server.url + "/jobs/%d" % jid)
    wait_until(lambda: "first line" in log_lines(browser), 10, what="the first line on the page")
    assert "second line" not in log_lines(browser)
    mark_page(browser)
    browser.shot("first")

    t0 = time.monotonic()
    g1.touch()
    wait_until(lambda: "second line" in log_lines(browser), 10,
               what="the second line appearing by itself")
    took = time.monotonic() - t0
    red = css(browser, "#log .ln .ansi-red-fg")
    assert red and red[0].text == "second line", [e.get_attribute("outerHTML") for e in red]
    assert "\x1b" not in css(browser, "#log")[0].text
    assert not_reloaded(browser)
    browser.shot("second")

    g2.touch()
    server.wait_job(jid)
    # The last line had no newline: shown once the job ends; the header turns passed.
    wait_until(lambda: "last line" in log_lines(browser), 10, what="the last line")
    wait_until(lambda: css(browser, "#jobinfo h1 .st-passed"), 10, what="the status passed")
    numbers = [e.get_attribute("data-n") for e in css(browser, "#log .ln a.n")]
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)], numbers
    # A link to a line.
    link = css(browser, "#L2 a.n")[0]
    assert link.get_attribute("href").endswith("/jobs/%d#L2" % jid)
    assert not_reloaded(browser)
    assert console_errors(browser) == []
    print("second line shown %.0f ms after the gate opened" % (took * 1000))


def test_large_log_opens_at_its_tail(ctx, server, runner, browser):
    n = 120000  # ~4.7 MB: more than the 1 MiB the page loads at first
    bid = server.submit([{"name": "big", "commands": [
        "/usr/bin/python3 -c \"for i in range(%d): print('row %%06d' %% (i + 1) + ' x' * 16)\""
        % n]}])["id"]
    jid = server.build(bid)["jobs"][0]["id"]
    server.wait_job(jid)
    raw = server.log(jid).decode()
    lines = raw.split("\n")
    assert lines[-2].startswith("row %06d" % n), lines[-3:]

    t0 = time.monotonic()
    browser.get(server.url + "/jobs/%d" % jid)
    # (one script call per look: a WebDriver call per element would take minutes)
    view = lambda sel: browser.execute_script(
        "const ls = document.querySelectorAll(arguments[0]);"
        "return ls.length ? [ls.length, ls[0].id, ls[0].querySelector('.t').textContent,"
        " ls[ls.length - 1].querySelector('.t').textContent] : [0, '', '', ''];", sel)
    wait_until(lambda: view("#log .ln")[3].startswith("row %06d" % n), 20,
               what="the last line")
    print("tail shown in %.2f s" % (time.monotonic() - t0))
    count, first_id, first_text, _ = view("#log .ln")
    assert count < n // 2, "the whole log was loaded (%d lines)" % count
    # Line numbers are the log's: the number of a shown line is its index in the raw log.
    num = int(first_id[1:])
    assert first_text == lines[num - 1], (num, lines[num - 1], first_text)
    browser.shot("tail")

    earlier = [b for b in css(browser, "#log button.more") if b.get_attribute("data-action")
               == "earlier"][0]
    browser.execute_script("arguments[0].click()", earlier)
    wait_until(lambda: int(view("#log .gap ~ .ln")[1][1:]) < num, 10, what="earlier lines")
    count2, first_id, first_text, _ = view("#log .gap ~ .ln")
    num2 = int(first_id[1:])
    assert first_text == lines[num2 - 1], (num2, first_text)
    assert count2 == count + (num - num2), (count, count2, num, num2)
    # A link to line 3 loads the start of the log.
    browser.get("about:blank")
    browser.get(server.url + "/jobs/%d#L3" % jid)
    wait_until(lambda: css(browser, "#L3.hl"), 20, what="line 3 highlighted")
    assert lines[2] in css(browser, "#L3")[0].text
    browser.shot("line3")
    assert console_errors(browser) == []


def answer_prompt(d, value, timeout=10):
    from selenium.common.exceptions import NoAlertPresentException
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            a = d.switch_to.alert
            a.send_keys(value)
            a.accept()
            return
        except NoAlertPresentException:
            time.sleep(0.05)
    raise AssertionError("no prompt for the admin token")


def test_rebuild_and_cancel_from_the_build_page(ctx, server, runner, browser):
    bid = server.submit([{"name": "quick", "commands": ["true"]}])["id"]
    server.wait_build(bid)
    browser.get(server.url + "/builds/%d" % bid)
    assert not css(browser, "button[data-action=cancel]"), "a finished build has no cancel"

    # A wrong token: refused, and forgotten.
    css(browser, "button[data-action=rebuild]")[0].click()
    answer_prompt(browser, "not-the-token")
    wait_until(lambda: "refused" in text(browser, ".action-result"), 10,
               what="the refusal")
    assert [b["id"] for b in server.builds()] == [bid]

    # The right one: a new build, and the browser goes to it.
    css(browser, "button[data-action=rebuild]")[0].click()
    answer_prompt(browser, server.admin_token)
    wait_until(lambda: len(server.builds()) == 2, 10, what="the rebuild")
    new = server.builds()[0]
    assert new["rebuild_of"] == bid, new
    wait_until(lambda: browser.current_url.endswith("/builds/%d" % new["id"]), 10,
               what="the new build's page")
    browser.shot("rebuilt")

    # Cancel a running build: no prompt this time (the token is kept).
    gate = ctx.tmp / "never"
    slow = server.submit([{"name": "slow", "commands": [gate_cmd(gate)]}])["id"]
    server.wait_job(server.build(slow)["jobs"][0]["id"], statuses=("running",))
    browser.get(server.url + "/builds/%d" % slow)
    css(browser, "button[data-action=cancel]")[0].click()
    wait_until(lambda: server.build(slow)["status"] == "cancelled", 15, what="the cancel")
    wait_until(lambda: css(browser, "#build h1 .st-cancelled"), 10,
               what="the page showing it cancelled")
    browser.shot("cancelled")
    assert [e for e in console_errors(browser) if "401" not in e["message"]] == []


HOSTILE = "<img src=x onerror=\"window.__pwned=1\">'\"&amp;<script>window.__pwned=2</script>"
BRANCH = "x<svg/onload=window.__pwned=3>"


def assert_inert(d, where):
    assert d.execute_script("return window.__pwned") is None, where
    assert not css(d, "main img, main svg, main script, main iframe"), where


def test_hostile_values_stay_text(ctx, server, gitrepo, browser):
    # A runner with hostile labels and client_info (registered by hand, so
    # that any label value goes in).
    r = http_request(server.url, "POST", "/api/runners/register",
                     {"name": "evil-runner", "labels": {"k<i>": HOSTILE}, "slots": 1,
                      "heartbeat": 30}, token=server.secret)
    assert r.status == 201, r
    tok = r.json()["token"]
    assert http_request(server.url, "POST", "/api/runners/heartbeat",
                        {"client_info": {"note": HOSTILE}, "jobs": []}, token=tok).status == 200

    # A repository whose author, commit subject, branch and job names are hostile.
    repo = gitrepo("evil")
    # (git drops < and > from names itself)
    repo.env["GIT_AUTHOR_NAME"] = "Mallory \"&amp;\" ' onerror=window.__pwned=4"
    name = "job <script>window.__pwned=5</script>"
    yml = "jobs:\n  %s:\n    run: printf '%%s\\n' %s\n    matrix:\n      A: ['<b>a</b>', 'b']\n" \
          "      B: ['<i>c</i>', 'd']\n" % (json.dumps(name), json.dumps(HOSTILE))
    repo.checkout(BRANCH, new=True)
    sha = repo.commit({".yci.yml": yml}, message=HOSTILE)
    server.add_repo(repo.path, "evil")
    bid = server.wait_commit_build("evil", sha, finished=False)["id"]
    # (the author is read from the mirror just after the build is made)
    b = wait_until(lambda: (lambda x: x if x["author"] else None)(server.build(bid)), 10,
                   what="the build's author")
    assert b["author"].startswith("Mallory"), b
    jid = b["jobs"][0]["id"]

    # The job runs on the hostile runner: claim it by hand, log hostile bytes
    # (HTML, an OSC 8 link to javascript:, ANSI), and finish it.
    r = http_request(server.url, "POST", "/api/runners/claim?wait=5", {}, token=tok)
    assert r.status == 200, r
    claim = r.json()
    jid = claim["id"]
    log = ("%s\n\x1b]8;;javascript:window.__pwned=6\x07click\x1b]8;;\x07\n"
           "\x1b[31m</span><script>window.__pwned=7</script>\x1b[0m\n" % HOSTILE).encode()
    r = http_request(server.url, "POST", "/api/jobs/%d/log?attempt=%d&offset=0"
                     % (jid, claim["attempt"]), log, token=tok,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    r = http_request(server.url, "POST", "/api/jobs/%d/finish" % jid,
                     {"attempt": claim["attempt"], "status": "failed", "exit_code": 1},
                     token=tok)
    assert r.status == 200, r

    for path in ("/", "/builds/%d" % b["id"], "/jobs/%d" % jid, "/runners"):
        browser.get(server.url + path)
        time.sleep(1.0)  # let the script run (and the log load)
        assert_inert(browser, path)
        main = text(browser, "main")
        browser.shot(path.strip("/").replace("/", "-") or "overview")
        if path == "/":
            assert BRANCH in main and "<script>" in main, main
            assert "Mallory \"&amp;\" ' onerror=window.__pwned=4" in main, main
        if path.startswith("/builds/"):
            assert "job <script>window.__pwned=5</script>" in main, main
            assert css(browser, "table.matrix"), "no matrix grid"
            grid = text(browser, "table.matrix")
            assert "<b>a</b>" in grid and "<i>c</i>" in grid, grid
        if path.startswith("/jobs/"):
            wait_until(lambda: len(css(browser, "#log .ln")) >= 3, 10, what="the log")
            log_text = css(browser, "#log")[0].text
            assert "<script>window.__pwned=7</script>" in log_text, log_text
            assert HOSTILE in log_text
            # the OSC 8 link to javascript: is dropped by ansi_up's allow-list
            assert not css(browser, "#log a[href^=javascript]")
            assert_inert(browser, path)
        if path == "/runners":
            assert "evil-runner" in main and "k<i>=" in main and HOSTILE in main, main
    assert console_errors(browser) == []
