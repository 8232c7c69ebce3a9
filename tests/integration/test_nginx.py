"""contrib/nginx.conf with a real nginx from Debian in front of yci: the API
proxied (a runner's long-polls, log uploads and git fetches go through it),
the logs served as static files, nothing else of the data directory."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT, PASSING_TESTS, Proc, free_port, http_request, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(ctx, server, port):
    with open(os.path.join(REPO_ROOT, "contrib", "nginx.conf")) as f:
        site = f.read()
    for old, new in (("server 127.0.0.1:8888;", "server 127.0.0.1:%d;" % server.port),
                     ("listen 80;", "listen 127.0.0.1:%d;" % port),
                     ("/var/lib/yci/logs/", os.path.join(server.data, "logs") + "/")):
        assert old in site, old
        site = site.replace(old, new)
    prefix = str(ctx.tmp / "nginx")
    os.makedirs(prefix, exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        # The test runs as root and yci's data directory is 0700: workers as root.
        f.write("daemon off;\nuser root;\nworker_processes 1;\npid %s/nginx.pid;\n"
                "error_log %s/error.log warn;\nevents {}\nhttp {\n"
                "  access_log off;\n  client_body_temp_path %s/body;\n"
                "  proxy_temp_path %s/proxy;\n  fastcgi_temp_path %s/fastcgi;\n"
                "  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n%s\n}\n"
                % ((prefix,) * 7 + (site,)))
    return conf, prefix


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed "
                    "(scripts/install-deps installs nginx-light)")
def test_nginx_in_front_of_yci(ctx, server, gitrepo):
    port = free_port()
    conf, prefix = nginx_conf(ctx, server, port)
    t = subprocess.run([NGINX, "-t", "-c", conf, "-p", prefix], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    Proc(ctx, "nginx", [NGINX, "-c", conf, "-p", prefix]).start()
    front = "http://127.0.0.1:%d" % port
    wait_until(lambda: _ok(front), 20, what="nginx")

    # The only runner knows only nginx: its claims (long-polls), log uploads and
    # git fetches all go through it.
    class Front:
        url, secret, runners = front, server.secret, server.runners
    ctx.runner(Front, name="via-nginx").start()
    repo = gitrepo("proj")
    sha = repo.commit(PASSING_TESTS)
    server.add_repo(repo.path)
    b = server.wait_commit_build("proj", sha, timeout=60)
    assert b["status"] == "passed", b
    job = server.build(b["id"])["jobs"][0]

    # The log, as a static file and through the proxied API: the same bytes.
    api_log = http_request(front, "GET", "/api/jobs/%d/log" % job["id"])
    static = http_request(front, "GET", "/logs/%d/%d.log" % (job["id"], job["attempt"]))
    assert static.status == 200 and static.body == api_log.body == server.log(job["id"])
    assert static.header("Content-Type").startswith("text/plain"), static
    assert static.header("Cache-Control") == "no-cache"
    assert static.header("X-Content-Type-Options") == "nosniff"
    # A job id of four digits and more is in its thousand's directory: a log
    # put there by hand is served for job 1234567 (the server has no such job).
    thousands = os.path.join(server.data, "logs", "1234")
    os.makedirs(thousands, exist_ok=True)
    with open(os.path.join(thousands, "1234567.2.log"), "wb") as f:
        f.write(b"a log of job 1234567\n")
    big = http_request(front, "GET", "/logs/1234567/2.log")
    assert big.status == 200 and big.body == b"a log of job 1234567\n", big
    assert http_request(front, "GET", "/logs/234567/2.log").status == 404
    # Nothing but logs: no traversal, no other files of the data directory.
    for bad in ("/logs/", "/logs/%d/" % job["id"], "/logs/../yci.db", "/logs/..%2fadmin-token",
                "/logs/%d/%d.log.bak" % (job["id"], job["attempt"])):
        assert http_request(front, "GET", bad).status == 404, bad
    assert server.admin_token not in http_request(front, "GET", "/logs/../admin-token").text
    # The pages and the badge through the proxy.
    assert http_request(front, "GET", "/builds/%d" % b["id"]).status == 200
    assert b">passing<" in http_request(front, "GET", "/badge/proj/main.svg").body
    # git clone through nginx.
    dest = str(ctx.tmp / "clone")
    g = subprocess.run(["git", "clone", "-q", front + "/git/proj", dest], capture_output=True,
                       text=True, env=ctx.env())
    assert g.returncode == 0, g.stderr
    assert job["runner"] == "via-nginx", job


def _ok(front):
    try:
        return http_request(front, "GET", "/api/health", timeout=2).status == 200
    except OSError:
        return False
