"""The client library for runners of one's own (testbot's Client, seed 002):
installed with its header and pkg-config file, contrib/custom-runner.c builds
against it the way docs/client.md says and runs a server's jobs."""

import json
import os
import shutil
import signal
import subprocess

import pytest

from conftest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_custom_runner_built_on_the_installed_library_runs_jobs(ctx, server, tmp_path):
    builddir = os.path.dirname(os.path.abspath(ctx.yci))
    if not os.path.exists(os.path.join(builddir, "libyciclient.a")) or not shutil.which("cc"):
        pytest.skip("needs the meson build directory of YCI_BIN and a C compiler")
    dest = tmp_path / "inst"
    r = subprocess.run(["meson", "install", "-C", builddir, "--destdir", str(dest),
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "yciclient.pc"]
    assert len(pcs) == 1, pcs
    # Its only global names are the API's: its helpers cannot clash with a
    # program's own buf_add or parse_int.
    lib = os.path.join(os.path.dirname(os.path.dirname(pcs[0])), "libyciclient.a")
    nm = subprocess.run(["nm", "-g", "--defined-only", lib], capture_output=True, text=True,
                        check=True).stdout
    names = [line.split()[-1] for line in nm.splitlines() if len(line.split()) == 3]
    assert names and all(n.startswith("yci_") for n in names), names
    assert "yci_client_new" in names and "yci_client_release" in names
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
               PKG_CONFIG_SYSROOT_DIR=str(dest))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "yciclient"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    # A sanitized build's library needs the sanitizers' runtime.
    with open(os.path.join(builddir, "meson-info", "intro-buildoptions.json")) as f:
        sanitize = [o["value"] for o in json.load(f) if o["name"] == "b_sanitize"]
    if sanitize and sanitize[0] != "none":
        flags.append("-fsanitize=" + sanitize[0])
    exe = str(tmp_path / "custom-runner")
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror",
                        os.path.join(ROOT, "contrib", "custom-runner.c")] + flags + ["-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "custom.log"
    with open(out, "wb") as f:
        p = subprocess.Popen([exe, server.url, server.secret], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        rec = wait_until(lambda: [x for x in server.runners() if x["name"] == "custom-runner"],
                         30, what="the custom runner to register")[0]
        assert rec["labels"] == {"kind": "custom"}, rec
        _, jobs = server.submit_jobs([{"name": "on-custom", "commands": ["true"],
                                       "labels": {"kind": "custom"}}])
        j = server.wait_job(jobs[0]["id"], timeout=30)
        assert j["status"] == "passed" and j["runner"] == "custom-runner", j
        assert b"custom runner ran job %d 'on-custom'" % j["id"] in server.log(j["id"])
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    assert rc == 0, out.read_text()
    assert "custom-runner: stopped" in out.read_text()
