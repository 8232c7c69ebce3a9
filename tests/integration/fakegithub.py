#!/usr/bin/python3
"""A faithful fake of the GitHub REST API (v3) for yci's tests.

Python standard library only. It speaks what api.github.com speaks, as recorded
in tests/data/github (octokit/fixtures and octokit/webhooks data, MIT): the same
JSON shapes, status codes, error bodies and headers (X-RateLimit-*, ETag, Link,
X-GitHub-Request-Id, ...), over HTTP/1.1 with keep-alive.

In a test:

    from fakegithub import FakeGitHub
    gh = FakeGitHub(token="t0ken")
    gh.start()                       # gh.url = "http://127.0.0.1:PORT"
    gh.add_repo("octo", "app", clone_url=str(bare_repo))
    pr = gh.open_pull("octo", "app", head_sha=sha, head_ref="feature")
    ...                              # run yci with GITHUB_API_URL=gh.url
    assert [s["state"] for s in gh.statuses("octo", "app", sha)] == [...]
    gh.stop()

Standalone, for manual use (Ctrl-C stops it):

    /usr/bin/python3 tests/integration/fakegithub.py --port 8765 --token t0ken \\
        --repo octo/app=/abs/path/app.git

and then `curl -H 'Authorization: token t0ken' localhost:8765/repos/octo/app/pulls`.
Outside GitHub's API, `POST /_fake/<method>` with a JSON object of keyword arguments calls
one of add_repo, open_pull, push_pull, close_pull, reopen_pull, fail_next, rate_limit,
delay_next, and `GET /_fake/statuses` / `GET /_fake/requests` read the records (these admin
calls need no credentials and are not recorded).

Served (owner and repository names are case-insensitive, as on GitHub; every
/repos/{owner}/{repo}/... path also answers as /repositories/{id}/..., the form
GitHub uses in its Link headers):
    GET  /repos/{owner}/{repo}
    GET  /repos/{owner}/{repo}/pulls?state=&head=&base=&sort=&direction=&per_page=&page=
    GET  /repos/{owner}/{repo}/pulls/{number}
    POST /repos/{owner}/{repo}/statuses/{sha}
    GET  /repos/{owner}/{repo}/commits/{ref}/statuses   (list, newest first)
    GET  /repos/{owner}/{repo}/commits/{ref}/status     (combined status)
    GET  /user, GET /rate_limit (the latter does not count against the limit)

When the base repository's clone_url is a local git directory, open_pull and push_pull
also keep `refs/pull/N/head` in it pointing at the head sha (fetching a fork's objects
first), as GitHub does; refs/pull/N/merge is not made.
"""

import argparse
import base64
import binascii
import copy
import hashlib
import hmac
import http.client
import http.server
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

DATA_DIR = os.environ.get("YCI_GITHUB_DATA", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "data", "github"))
WEBHOOKS_DIR = os.path.join(DATA_DIR, "webhooks")

STATES = ("error", "failure", "pending", "success")
MAX_DESCRIPTION = 140
MAX_STATUSES_PER_CONTEXT = 1000
CORE_LIMIT = 5000
ANON_LIMIT = 60
HTML_BASE = "https://github.com"

DOCS = "https://docs.github.com/rest"
DOC_REPO = DOCS + "/repos/repos#get-a-repository"
DOC_PULLS = DOCS + "/pulls/pulls#list-pull-requests"
DOC_PULL = DOCS + "/pulls/pulls#get-a-pull-request"
DOC_CREATE_STATUS = DOCS + "/commits/statuses#create-a-commit-status"
DOC_LIST_STATUSES = DOCS + "/commits/statuses#list-commit-statuses-for-a-reference"
DOC_COMBINED = DOCS + "/commits/statuses#get-the-combined-status-for-a-specific-reference"
DOC_USER = DOCS + "/users/users#get-the-authenticated-user"
DOC_RATE = DOCS + "/overview/rate-limits-for-the-rest-api"
DOC_SECONDARY = DOC_RATE + "#about-secondary-rate-limits"

EXPOSE_HEADERS = ("ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, "
                  "X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, "
                  "X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, "
                  "X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset")
NO_UA_BODY = (b"Request forbidden by administrative rules. Please make sure your request has a "
              b"User-Agent header (https://docs.github.com/en/rest/overview/"
              b"resources-in-the-rest-api#user-agent-required). Check "
              b"https://developer.github.com for other possible causes.\n")
HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def http_date(t):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def dumps(obj):
    """GitHub's compact JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def node_id(kind, n):
    return base64.b64encode(("0%d:%s%d" % (len(kind), kind, n)).encode()).decode()


def etag_matches(header, etag):
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    want = etag[2:] if etag.startswith("W/") else etag
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == want:
            return True
    return False


class HeaderDict(dict):
    """A dict of request headers with case-insensitive keys (stored lower-cased)."""

    def __init__(self, items=()):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, k):
        return super().__getitem__(k.lower())

    def __contains__(self, k):
        return super().__contains__(k.lower())

    def get(self, k, default=None):
        return super().get(k.lower(), default)


class Response:
    def __init__(self, status, body=None, headers=None,
                 content_type="application/json; charset=utf-8"):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.content_type = content_type


# ---------------------------------------------------------------------------
# HTTP plumbing

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, OSError)):
            return  # the client went away (a timeout, a closed keep-alive connection)
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "github.com"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.server.gh._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.gh._track(self.connection, False)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        try:
            body = self._read_body()
        except ValueError:   # a bad Content-Length or chunk size: the client's bug, not ours
            self.close_connection = True
            self.send_error(400, "Bad Request")
            return
        resp = self.server.gh._handle(self.command, self.path, HeaderDict(self.headers.items()),
                                      body)
        self.send_response(resp.status)
        has_body = resp.body is not None and resp.status not in (204, 304)
        if has_body:
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers:
            self.send_header(k, v)
        self.end_headers()
        if has_body and self.command != "HEAD":
            self.wfile.write(resp.body)
        self.wfile.flush()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _handle


# ---------------------------------------------------------------------------
# The fake

class FakeGitHub:
    """A fake api.github.com. See the module docstring."""

    def __init__(self, token="t0ken", username=None, password=None, *, login=None,
                 allow_anonymous=False, require_user_agent=True, git_refs=True,
                 scopes="repo"):
        self.token = token
        self.username = username
        self.password = password
        self.login = login or username or "yci-bot"
        self.allow_anonymous = allow_anonymous
        self.require_user_agent = require_user_agent
        self.git_refs = git_refs
        self.scopes = scopes
        self.url = None
        self._server = None
        self._thread = None
        self._lock = threading.RLock()
        self._conns = set()
        self._repos = {}           # (owner.lower(), name.lower()) -> repo model
        self._repos_by_id = {}
        self._users = {}           # login.lower() -> (login, id, type)
        self._next_repo_id = 1296269
        self._next_pull_id = 1000001
        self._next_status_id = 2000001
        self._next_user_id = 583231
        self._statuses = []        # (repo key, record dict, status object)
        self._requests = []
        self._responses = []
        self._rules = []           # injected failures
        self._delays = []
        now = time.time()
        self._buckets = {"core": [CORE_LIMIT, 0, int(now) + 3600],
                         "anon": [ANON_LIMIT, 0, int(now) + 3600]}
        self._rate_status = 403
        self._user(self.login)

    # -- lifecycle ----------------------------------------------------------

    def start(self, port=0):
        """Listen on 127.0.0.1 (a free port, or `port`, e.g. to come back after stop())."""
        srv = _Server(("127.0.0.1", port), _Handler)
        srv.gh = self
        self._server = srv
        self.port = srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakegithub", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and close every open connection (keep-alive ones too)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    @property
    def api(self):
        return self.url or "http://fakegithub.invalid"

    # -- users and repositories -----------------------------------------------

    def _user(self, login, type_="User"):
        with self._lock:
            u = self._users.get(login.lower())
            if u is None:
                u = (login, self._next_user_id, type_)
                self._next_user_id += 1
                self._users[login.lower()] = u
            return u

    def _render_user(self, login):
        login, uid, type_ = self._user(login)
        api, html = self.api + "/users/" + login, HTML_BASE + "/" + login
        return {
            "login": login, "id": uid, "node_id": node_id(type_, uid),
            "avatar_url": "https://avatars.githubusercontent.com/u/%d?v=4" % uid,
            "gravatar_id": "", "url": api, "html_url": html,
            "followers_url": api + "/followers",
            "following_url": api + "/following{/other_user}",
            "gists_url": api + "/gists{/gist_id}",
            "starred_url": api + "/starred{/owner}{/repo}",
            "subscriptions_url": api + "/subscriptions",
            "organizations_url": api + "/orgs",
            "repos_url": api + "/repos",
            "events_url": api + "/events{/privacy}",
            "received_events_url": api + "/received_events",
            "type": type_, "site_admin": False,
        }

    def add_repo(self, owner, name, clone_url=None, private=False, *, default_branch="main",
                 owner_type="User", description=None, fork=False, parent=None):
        """Register a repository; returns its GET /repos/{owner}/{name} JSON."""
        with self._lock:
            key = (owner.lower(), name.lower())
            if key in self._repos:
                raise ValueError("repository %s/%s exists already" % (owner, name))
            self._user(owner, owner_type)
            now = time.time()
            r = {"owner": owner, "name": name, "id": self._next_repo_id,
                 "clone_url": clone_url or "%s/%s/%s.git" % (HTML_BASE, owner, name),
                 "private": bool(private), "default_branch": default_branch,
                 "owner_type": owner_type, "description": description, "fork": bool(fork),
                 "parent": parent, "created": now, "pushed": now, "pulls": {},
                 "next_number": 1}
            self._next_repo_id += 1
            self._repos[key] = r
            self._repos_by_id[r["id"]] = r
            return self._render_repo(r, full=True)

    def _repo(self, owner, name):
        r = self._repos.get((owner.lower(), name.lower()))
        if r is None:
            raise KeyError("no repository %s/%s in the fake (add_repo first)" % (owner, name))
        return r

    def _render_repo(self, r, full=False, authed=True, push_style=False):
        o, n = r["owner"], r["name"]
        full_name = "%s/%s" % (o, n)
        api = "%s/repos/%s" % (self.api, full_name)
        html = "%s/%s" % (HTML_BASE, full_name)
        host = urllib.parse.urlsplit(HTML_BASE).netloc
        open_count = sum(1 for p in r["pulls"].values() if p["state"] == "open")
        d = {
            "id": r["id"], "node_id": node_id("Repository", r["id"]), "name": n,
            "full_name": full_name, "private": r["private"], "owner": self._render_user(o),
            "html_url": html, "description": r["description"], "fork": r["fork"], "url": api,
            "forks_url": api + "/forks", "keys_url": api + "/keys{/key_id}",
            "collaborators_url": api + "/collaborators{/collaborator}",
            "teams_url": api + "/teams", "hooks_url": api + "/hooks",
            "issue_events_url": api + "/issues/events{/number}",
            "events_url": api + "/events", "assignees_url": api + "/assignees{/user}",
            "branches_url": api + "/branches{/branch}", "tags_url": api + "/tags",
            "blobs_url": api + "/git/blobs{/sha}", "git_tags_url": api + "/git/tags{/sha}",
            "git_refs_url": api + "/git/refs{/sha}", "trees_url": api + "/git/trees{/sha}",
            "statuses_url": api + "/statuses/{sha}", "languages_url": api + "/languages",
            "stargazers_url": api + "/stargazers", "contributors_url": api + "/contributors",
            "subscribers_url": api + "/subscribers", "subscription_url": api + "/subscription",
            "commits_url": api + "/commits{/sha}", "git_commits_url": api + "/git/commits{/sha}",
            "comments_url": api + "/comments{/number}",
            "issue_comment_url": api + "/issues/comments{/number}",
            "contents_url": api + "/contents/{+path}",
            "compare_url": api + "/compare/{base}...{head}", "merges_url": api + "/merges",
            "archive_url": api + "/{archive_format}{/ref}", "downloads_url": api + "/downloads",
            "issues_url": api + "/issues{/number}", "pulls_url": api + "/pulls{/number}",
            "milestones_url": api + "/milestones{/number}",
            "notifications_url": api + "/notifications{?since,all,participating}",
            "labels_url": api + "/labels{/name}", "releases_url": api + "/releases{/id}",
            "deployments_url": api + "/deployments",
            "created_at": int(r["created"]) if push_style else iso(r["created"]),
            "updated_at": iso(r["pushed"]),
            "pushed_at": int(r["pushed"]) if push_style else iso(r["pushed"]),
            "git_url": "git://%s/%s.git" % (host, full_name),
            "ssh_url": "git@%s:%s.git" % (host, full_name),
            "clone_url": r["clone_url"], "svn_url": html, "homepage": None, "size": 0,
            "stargazers_count": 0, "watchers_count": 0, "language": None, "has_issues": True,
            "has_projects": True, "has_downloads": True, "has_wiki": True, "has_pages": False,
            "forks_count": 0, "mirror_url": None, "archived": False, "disabled": False,
            "open_issues_count": open_count, "license": None, "allow_forking": True,
            "is_template": False, "web_commit_signoff_required": False, "topics": [],
            "visibility": "private" if r["private"] else "public", "forks": 0,
            "open_issues": open_count, "watchers": 0, "default_branch": r["default_branch"],
        }
        if push_style:
            d["stargazers"] = 0
            d["master_branch"] = r["default_branch"]
        if not full:
            return d
        if authed:
            d["permissions"] = {"admin": True, "maintain": True, "push": True, "triage": True,
                                "pull": True}
            d["temp_clone_token"] = ""
            d.update({"allow_squash_merge": True, "allow_merge_commit": True,
                      "allow_rebase_merge": True, "allow_auto_merge": False,
                      "delete_branch_on_merge": False, "allow_update_branch": False,
                      "use_squash_pr_title_as_default": False})
        if r["owner_type"] == "Organization":
            d["organization"] = self._render_user(o)
        if r["parent"]:
            parent = self._repos.get(r["parent"])
            if parent is not None:
                d["parent"] = self._render_repo(parent)
                d["source"] = d["parent"]
        d["network_count"] = 0
        d["subscribers_count"] = 0
        return d

    # -- pull requests ----------------------------------------------------------

    def open_pull(self, owner, name, number=None, head_sha=None, head_ref="feature",
                  head_repo=None, base_ref="main", title=None, body=None, *, user=None,
                  draft=False, base_sha=None, author_association=None, created_at=None):
        """Open a pull request; returns its GET /repos/{o}/{r}/pulls/{n} JSON.

        head_repo: None (a branch of the same repository), or (owner, name, clone_url) of a
        fork, registered on the fly (or (owner, name) of a repository added before)."""
        with self._lock:
            r = self._repo(owner, name)
            if head_repo is None:
                hr = r
            else:
                hkey = (head_repo[0].lower(), head_repo[1].lower())
                if hkey not in self._repos:
                    self.add_repo(head_repo[0], head_repo[1],
                                  clone_url=head_repo[2] if len(head_repo) > 2 else None,
                                  fork=True, parent=(owner.lower(), name.lower()),
                                  default_branch=r["default_branch"])
                hr = self._repos[hkey]
            if number is None:
                number = r["next_number"]
            if number in r["pulls"]:
                raise ValueError("pull request #%d exists already" % number)
            r["next_number"] = max(r["next_number"], number + 1)
        if head_sha is None:
            head_sha = _git_rev(hr["clone_url"], "refs/heads/" + head_ref)
            if head_sha is None:
                raise ValueError("head_sha not given and %s has no branch %s"
                                 % (hr["clone_url"], head_ref))
        if base_sha is None:
            base_sha = _git_rev(r["clone_url"], "refs/heads/" + base_ref) or "0" * 40
        if not HEX40.match(head_sha):
            raise ValueError("head_sha must be 40 hex digits: %r" % head_sha)
        self._update_pull_ref(r, hr, number, head_sha)
        with self._lock:
            now = created_at if created_at is not None else time.time()
            p = {"number": number, "id": self._next_pull_id, "state": "open",
                 "title": title if title is not None else "Update %s" % head_ref, "body": body,
                 "user": user or hr["owner"], "draft": bool(draft),
                 "head_ref": head_ref, "head_sha": head_sha.lower(),
                 "head_repo": (hr["owner"].lower(), hr["name"].lower()),
                 "base_ref": base_ref, "base_sha": base_sha,
                 "author_association": author_association or (
                     "OWNER" if hr is r else "CONTRIBUTOR"),
                 "created": now, "updated": now, "closed": None, "before": None}
            self._user(p["user"])
            self._next_pull_id += 1
            r["pulls"][number] = p
            r["pushed"] = max(r["pushed"], now)
            return self._render_pull(r, p)

    def push_pull(self, owner, name, number, new_sha):
        """A push to the pull request's head branch (GitHub's `synchronize`)."""
        with self._lock:
            r = self._repo(owner, name)
            p = r["pulls"][number]
            hr = self._repos[p["head_repo"]]
        self._update_pull_ref(r, hr, number, new_sha)
        with self._lock:
            p["before"], p["head_sha"] = p["head_sha"], new_sha.lower()
            self._touch(p)
            return self._render_pull(r, p)

    def close_pull(self, owner, name, number):
        with self._lock:
            r = self._repo(owner, name)
            p = r["pulls"][number]
            p["state"] = "closed"
            self._touch(p)
            p["closed"] = p["updated"]
            return self._render_pull(r, p)

    def reopen_pull(self, owner, name, number):
        with self._lock:
            r = self._repo(owner, name)
            p = r["pulls"][number]
            p["state"] = "open"
            p["closed"] = None
            self._touch(p)
            return self._render_pull(r, p)

    def pull(self, owner, name, number):
        """The pull request's JSON as GET /repos/{o}/{r}/pulls/{n} serves it."""
        with self._lock:
            r = self._repo(owner, name)
            return self._render_pull(r, r["pulls"][number])

    @staticmethod
    def _touch(p):
        # updated_at has a one-second resolution: make every change visible in it.
        p["updated"] = max(time.time(), p["updated"] + 1)

    def _update_pull_ref(self, r, hr, number, sha):
        """Keep refs/pull/N/head in the base repository, as GitHub does."""
        base = r["clone_url"]
        if not self.git_refs or not _is_git_dir(base):
            return
        if not _git_ok(base, "cat-file", "-e", sha + "^{commit}"):
            head = hr["clone_url"]
            if hr is not r and _is_git_dir(head):
                _git_ok(base, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                        head, "+refs/heads/*:refs/fakegithub/tmp/*")
                for ref in _git_out(base, "for-each-ref", "--format=%(refname)",
                                    "refs/fakegithub/tmp/").split():
                    _git_ok(base, "update-ref", "-d", ref)
            if not _git_ok(base, "cat-file", "-e", sha + "^{commit}"):
                raise ValueError("commit %s is in neither %s nor %s: cannot make refs/pull/%d/head"
                                 % (sha, base, head, number))
        if not _git_ok(base, "update-ref", "refs/pull/%d/head" % number, sha):
            raise ValueError("git update-ref refs/pull/%d/head failed in %s" % (number, base))

    def _render_pull(self, r, p, simple=False):
        o, n, num = r["owner"], r["name"], p["number"]
        api = "%s/repos/%s/%s" % (self.api, o, n)
        html = "%s/%s/%s/pull/%d" % (HTML_BASE, o, n, num)
        hr = self._repos[p["head_repo"]]

        def side(label_owner, ref, sha, repo):
            return {"label": "%s:%s" % (label_owner, ref), "ref": ref, "sha": sha,
                    "user": self._render_user(label_owner), "repo": self._render_repo(repo)}

        d = {
            "url": "%s/pulls/%d" % (api, num), "id": p["id"],
            "node_id": node_id("PullRequest", p["id"]), "html_url": html,
            "diff_url": html + ".diff", "patch_url": html + ".patch",
            "issue_url": "%s/issues/%d" % (api, num), "number": num, "state": p["state"],
            "locked": False, "title": p["title"], "user": self._render_user(p["user"]),
            "body": p["body"], "created_at": iso(p["created"]), "updated_at": iso(p["updated"]),
            "closed_at": iso(p["closed"]) if p["closed"] else None, "merged_at": None,
            "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [], "labels": [], "milestone": None,
            "draft": p["draft"],
            "commits_url": "%s/pulls/%d/commits" % (api, num),
            "review_comments_url": "%s/pulls/%d/comments" % (api, num),
            "review_comment_url": api + "/pulls/comments{/number}",
            "comments_url": "%s/issues/%d/comments" % (api, num),
            "statuses_url": "%s/statuses/%s" % (api, p["head_sha"]),
            "head": side(hr["owner"], p["head_ref"], p["head_sha"], hr),
            "base": side(o, p["base_ref"], p["base_sha"], r),
            "_links": {
                "self": {"href": "%s/pulls/%d" % (api, num)}, "html": {"href": html},
                "issue": {"href": "%s/issues/%d" % (api, num)},
                "comments": {"href": "%s/issues/%d/comments" % (api, num)},
                "review_comments": {"href": "%s/pulls/%d/comments" % (api, num)},
                "review_comment": {"href": api + "/pulls/comments{/number}"},
                "commits": {"href": "%s/pulls/%d/commits" % (api, num)},
                "statuses": {"href": "%s/statuses/%s" % (api, p["head_sha"])},
            },
            "author_association": p["author_association"], "auto_merge": None,
            "active_lock_reason": None,
        }
        if simple:
            return d
        d.update({"merged": False, "mergeable": None, "rebaseable": None,
                  "mergeable_state": "unknown", "merged_by": None, "comments": 0,
                  "review_comments": 0, "maintainer_can_modify": hr is not r, "commits": 1,
                  "additions": 1, "deletions": 1, "changed_files": 1})
        return d

    # -- records ----------------------------------------------------------------

    def statuses(self, owner, name, sha=None):
        """The accepted status POST bodies (plus "sha" and "time"), in arrival order."""
        key = (owner.lower(), name.lower())
        with self._lock:
            return [copy.deepcopy(rec) for k, rec, _ in self._statuses
                    if k == key and (sha is None or rec["sha"] == sha.lower())]

    def latest_states(self, owner, name, sha):
        """{context: state} of the newest status of each context for `sha`."""
        return {s.get("context") or "default": s["state"] for s in self.statuses(owner, name, sha)}

    @property
    def requests(self):
        """Every request received: (method, path with query, headers, body bytes)."""
        with self._lock:
            return list(self._requests)

    @property
    def responses(self):
        """(method, path, status) of every answer, in the order of `requests`."""
        with self._lock:
            return [tuple(a) for a in self._responses]

    def clear_requests(self):
        with self._lock:
            self._requests.clear()
            self._responses.clear()

    # -- failures on demand -------------------------------------------------------

    def fail_next(self, n=1, status=502, path_prefix=None, retry_after=None, reset_in=None, *,
                  method=None, message=None):
        """The next n requests whose path starts with path_prefix (and of `method`) get
        `status` instead of their answer (not counted against the rate limit).

        403/429: with retry_after, GitHub's secondary rate limit (Retry-After: seconds);
        otherwise, unless a `message` is given, the primary one: X-RateLimit-Remaining: 0
        and X-RateLimit-Reset now + reset_in (default 1 s). 5xx: {"message": "Server Error"}.
        """
        with self._lock:
            self._rules.append({"n": n, "status": status, "prefix": path_prefix,
                                "retry_after": retry_after, "reset_in": reset_in,
                                "method": method, "message": message})

    def rate_limit(self, remaining=0, reset_in=2, status=403):
        """Set the primary (core) rate limit: `remaining` requests left until now + reset_in
        seconds; when none remain, requests get `status` (403 or 429) until the reset."""
        with self._lock:
            b = self._buckets["core"]
            b[1] = max(0, b[0] - remaining)
            b[2] = math.ceil(time.time() + reset_in)   # never earlier than asked
            self._rate_status = status

    def delay_next(self, n, seconds, path_prefix=None):
        """The next n matching requests are answered only after `seconds`."""
        with self._lock:
            self._delays.append({"n": n, "seconds": seconds, "prefix": path_prefix})

    @staticmethod
    def _take(rules, method, path):
        for rule in rules:
            if rule["n"] > 0 and (rule.get("prefix") is None or path.startswith(rule["prefix"])) \
                    and (rule.get("method") is None or rule["method"].upper() == method):
                rule["n"] -= 1
                if rule["n"] == 0:
                    rules.remove(rule)
                return rule
        return None

    # -- request handling -----------------------------------------------------------

    def _handle(self, method, path, headers, body):
        if path.startswith("/_fake/"):
            return self._admin(method, path, body)
        req_id = "%04X:%05X:%07X:%07X:%08X" % (random.getrandbits(16), random.getrandbits(20),
                                              random.getrandbits(28), random.getrandbits(28),
                                              int(time.time()))
        with self._lock:
            self._requests.append((method, path, headers, body))
            answer = [method, path, None]
            self._responses.append(answer)
            delay = self._take(self._delays, method, path)
        if delay:
            time.sleep(delay["seconds"])
        try:
            resp = self._answer(method, path, headers, body, req_id)
        except Exception:
            import traceback
            traceback.print_exc()
            resp = Response(500, dumps({"message": "Server Error"}))
        resp.headers.append(("X-GitHub-Request-Id", req_id))
        answer[2] = resp.status
        return resp

    def _common(self, resp, bucket=None):
        h = [("X-GitHub-Media-Type", "github.v3; format=json"),
             ("x-github-api-version-selected", "2022-11-28")]
        if bucket is not None:
            limit, used, reset = bucket
            h += [("X-RateLimit-Limit", str(limit)),
                  ("X-RateLimit-Remaining", str(max(0, limit - used))),
                  ("X-RateLimit-Reset", str(reset)), ("X-RateLimit-Used", str(used)),
                  ("X-RateLimit-Resource", "core")]
        h += [("Access-Control-Expose-Headers", EXPOSE_HEADERS),
              ("Access-Control-Allow-Origin", "*"),
              ("Strict-Transport-Security", "max-age=31536000; includeSubdomains; preload"),
              ("X-Frame-Options", "deny"), ("X-Content-Type-Options", "nosniff"),
              ("X-XSS-Protection", "0"),
              ("Referrer-Policy", "origin-when-cross-origin, strict-origin-when-cross-origin"),
              ("Content-Security-Policy", "default-src 'none'")]
        resp.headers = resp.headers + h
        return resp

    @staticmethod
    def _error(status, message, doc=DOCS, **extra):
        d = {"message": message}
        d.update(extra)
        d["documentation_url"] = doc
        d["status"] = str(status)
        return Response(status, dumps(d))

    def _authenticate(self, headers):
        """"user", "anon" (no credentials) or "bad"."""
        if self.token is None and self.username is None:
            return "user"
        auth = (headers.get("Authorization") or "").strip()
        if not auth:
            return "anon"
        scheme, _, cred = auth.partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if scheme in ("token", "bearer"):
            ok = self.token is not None and hmac.compare_digest(cred.encode(), self.token.encode())
        elif scheme == "basic":
            try:
                user, _, pw = base64.b64decode(cred, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "bad"
            same_user = self.username is None or user.lower() == self.username.lower()
            ok = (self.username is not None and self.password is not None and same_user
                  and hmac.compare_digest(pw.encode(), self.password.encode())) or \
                 (self.token is not None and same_user
                  and hmac.compare_digest(pw.encode(), self.token.encode()))
        else:
            ok = False
        return "user" if ok else "bad"

    def _injected(self, rule, req_id):
        status, now = rule["status"], time.time()
        headers = []
        if status in (403, 429) and (rule["retry_after"] is not None or rule["message"] is None):
            if rule["retry_after"] is not None:
                headers.append(("Retry-After", str(rule["retry_after"])))
            if rule["retry_after"] is not None and rule["reset_in"] is None:
                resp = self._error(status, rule["message"] or (
                    "You have exceeded a secondary rate limit. Please wait a few minutes before "
                    "you try again. If you reach out to GitHub Support for help, please include "
                    "the request ID %s." % req_id), DOC_SECONDARY)
                bucket = list(self._buckets["core"])
            else:
                reset = math.ceil(now + (rule["reset_in"] if rule["reset_in"] is not None else 1))
                resp = self._error(status, rule["message"] or self._rate_message(req_id, now),
                                   DOC_RATE)
                bucket = [CORE_LIMIT, CORE_LIMIT, reset]
            resp.headers += headers
            return self._common(resp, bucket)
        if status == 504:
            msg = ("We couldn't respond to your request in time. Sorry about that. Please try "
                   "resubmitting your request and contact us if the problem persists.")
        elif status >= 500:
            msg = "Server Error"
        else:
            msg = http.server.BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
        if rule["message"] is not None:
            msg = rule["message"]
        if status >= 500:
            return Response(status, dumps({"message": msg}))
        return self._common(self._error(status, msg), list(self._buckets["core"]))

    def _rate_message(self, req_id, now):
        return ("API rate limit exceeded for user ID %d. If you reach out to GitHub Support for "
                "help, please include the request ID %s and timestamp %s."
                % (self._user(self.login)[1], req_id,
                   time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))))

    def _answer(self, method, path, headers, body, req_id):
        if self.require_user_agent and not headers.get("User-Agent"):
            return Response(403, NO_UA_BODY, content_type="text/plain; charset=utf-8")
        with self._lock:
            rule = self._take(self._rules, method, path)
            if rule:
                return self._injected(rule, req_id)
            who = self._authenticate(headers)
            now = time.time()
            bname = "core" if who == "user" else "anon"
            bucket = self._buckets[bname]
            if now >= bucket[2]:
                bucket[1], bucket[2] = 0, int(now) + 3600
            if who == "bad":
                bucket[1] += 1
                return self._common(self._error(401, "Bad credentials"), list(bucket))
            if who == "anon" and not self.allow_anonymous:
                bucket[1] += 1
                return self._common(self._error(401, "Requires authentication"), list(bucket))
            route, _, query = path.partition("?")
            if route == "/rate_limit" and method in ("GET", "HEAD"):
                return self._common(self._rate_limit_doc(), list(bucket))
            if bucket[1] >= bucket[0]:
                if who == "anon":
                    msg = ("API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                           "Authenticated requests get a higher rate limit. Check out the "
                           "documentation for more details.)")
                    resp = self._error(403, msg, DOC_RATE)
                else:
                    resp = self._error(self._rate_status, self._rate_message(req_id, now),
                                       DOC_RATE)
                return self._common(resp, list(bucket))
            resp = self._route(method, route, query, body, who)
            if method in ("GET", "HEAD") and resp.status == 200:
                etag = 'W/"%s"' % hashlib.sha256(resp.body).hexdigest()
                resp.headers += [("Cache-Control", "private, max-age=60, s-maxage=60"),
                                 ("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP"),
                                 ("ETag", etag)]
                if etag_matches(headers.get("If-None-Match"), etag):
                    # Not Modified: no body, and not counted against the rate limit.
                    resp = Response(304, None, [h for h in resp.headers
                                                if h[0] not in ("Link", "Last-Modified")])
                    return self._common(resp, list(bucket))
            elif resp.status == 201:
                resp.headers += [("Cache-Control", "private, max-age=60, s-maxage=60"),
                                 ("ETag", '"%s"' % hashlib.md5(resp.body).hexdigest())]
            bucket[1] += 1
            if who == "user" and self.token is not None:
                resp.headers += [("X-OAuth-Scopes", self.scopes),
                                 ("X-Accepted-OAuth-Scopes", "repo")]
            return self._common(resp, list(bucket))

    def _rate_limit_doc(self):
        now = int(time.time())

        def res(b):
            return {"limit": b[0], "used": b[1], "remaining": max(0, b[0] - b[1]), "reset": b[2]}
        core = res(self._buckets["core"])
        other = {"limit": 30, "used": 0, "remaining": 30, "reset": now + 60}
        return Response(200, dumps({"resources": {"core": core, "search": other,
                                                  "graphql": dict(core)},
                                    "rate": core}))

    def _find_repo(self, parts, who):
        """(repo, rest of path parts) for /repos/{o}/{r}/... or /repositories/{id}/..."""
        r = None
        if len(parts) >= 3 and parts[0] == "repos":
            r = self._repos.get((urllib.parse.unquote(parts[1]).lower(),
                                 urllib.parse.unquote(parts[2]).lower()))
            rest = parts[3:]
        elif len(parts) >= 2 and parts[0] == "repositories" and parts[1].isdigit():
            r = self._repos_by_id.get(int(parts[1]))
            rest = parts[2:]
        else:
            return None, None
        if r is not None and r["private"] and who != "user":
            r = None
        return r, rest

    def _route(self, method, route, query, body, who):
        parts = [p for p in route.split("/") if p]
        get = method in ("GET", "HEAD")
        if parts == ["user"] and get:
            if who != "user":
                return self._error(401, "Requires authentication", DOC_USER)
            d = self._render_user(self.login)
            d.update({"name": None, "company": None, "blog": "", "location": None,
                      "email": None, "hireable": None, "bio": None, "twitter_username": None,
                      "public_repos": len(self._repos), "public_gists": 0, "followers": 0,
                      "following": 0, "created_at": iso(0), "updated_at": iso(0)})
            return Response(200, dumps(d))
        if parts and parts[0] in ("repos", "repositories"):
            r, rest = self._find_repo(parts, who)
            if rest is None:
                return self._error(404, "Not Found")
            if r is None:
                doc = {(): DOC_REPO, ("pulls",): DOC_PULLS}.get(tuple(rest[:1]), DOC_REPO)
                if rest[:1] == ["statuses"]:
                    doc = DOC_CREATE_STATUS
                elif rest[:1] == ["pulls"] and len(rest) > 1:
                    doc = DOC_PULL
                return self._error(404, "Not Found", doc)
            if not rest and get:
                resp = Response(200, dumps(self._render_repo(r, full=True, authed=who == "user")))
                resp.headers.append(("Last-Modified", http_date(r["pushed"])))
                return resp
            if rest == ["pulls"] and get:
                return self._list_pulls(r, route, query)
            if len(rest) == 2 and rest[0] == "pulls" and get:
                p = r["pulls"].get(int(rest[1])) if rest[1].isdigit() else None
                if p is None:
                    return self._error(404, "Not Found", DOC_PULL)
                return Response(200, dumps(self._render_pull(r, p)))
            if len(rest) == 2 and rest[0] == "statuses" and method == "POST":
                return self._create_status(r, urllib.parse.unquote(rest[1]), body)
            if len(rest) == 3 and rest[0] == "commits" and rest[2] in ("statuses", "status") \
                    and get:
                return self._read_statuses(r, urllib.parse.unquote(rest[1]), rest[2], route,
                                           query)
        return self._error(404, "Not Found")

    @staticmethod
    def _query(query):
        """[(raw key, raw value)] as sent, and {key: decoded value}."""
        raw = [tuple(kv.partition("=")[::2]) for kv in query.split("&") if kv]
        return raw, {urllib.parse.unquote_plus(k): urllib.parse.unquote_plus(v) for k, v in raw}

    def _paginate(self, items, path, query):
        """(page of items, Link header value or None), as GitHub paginates."""
        raw, q = self._query(query)
        try:
            per_page = int(q.get("per_page", 30))
        except ValueError:
            per_page = 30
        per_page = 30 if per_page < 1 else min(per_page, 100)
        try:
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            page = 1
        last = max(1, -(-len(items) // per_page))
        keep = [(k, v) for k, v in raw if urllib.parse.unquote_plus(k) != "page"]

        def link(n, rel):
            qs = "&".join(["%s=%s" % kv for kv in keep] + ["page=%d" % n])
            return '<%s%s?%s>; rel="%s"' % (self.api, path, qs, rel)
        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < last:
            links.append(link(page + 1, "next"))
            links.append(link(last, "last"))
        if page > 1:
            links.append(link(1, "first"))
        return items[(page - 1) * per_page:page * per_page], (", ".join(links) or None)

    def _list_pulls(self, r, route, query):
        _, q = self._query(query)
        state = q.get("state", "open")
        pulls = [p for p in r["pulls"].values() if state == "all" or p["state"] == state]
        if "base" in q:
            pulls = [p for p in pulls if p["base_ref"] == q["base"]]
        if "head" in q:
            user, _, ref = q["head"].rpartition(":")
            pulls = [p for p in pulls if p["head_ref"] == ref and
                     (not user or self._repos[p["head_repo"]]["owner"].lower() == user.lower())]
        sort = q.get("sort", "created")
        field = "updated" if sort in ("updated", "popularity") else "created"
        # GitHub: direction defaults to desc when sort is created (the default), else asc.
        desc = q.get("direction", "desc" if sort == "created" else "asc") == "desc"
        pulls.sort(key=lambda p: (p[field], p["number"]), reverse=desc)
        page, link = self._paginate(pulls, "/repositories/%d/pulls" % r["id"], query)
        resp = Response(200, dumps([self._render_pull(r, p, simple=True) for p in page]))
        if link:
            resp.headers.append(("Link", link))
        return resp

    def _status_object(self, r, sha, rec, sid, created, with_creator=True):
        creator = self._render_user(self.login)
        d = {"url": "%s/repos/%s/%s/statuses/%s" % (self.api, r["owner"], r["name"], sha),
             "avatar_url": creator["avatar_url"], "id": sid,
             "node_id": node_id("StatusContext", sid),
             "state": rec["state"], "description": rec.get("description"),
             "target_url": rec.get("target_url"), "context": rec.get("context") or "default",
             "created_at": iso(created), "updated_at": iso(created)}
        if with_creator:
            d["creator"] = creator
        return d

    def _create_status(self, r, sha, body):
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "Problems parsing JSON", DOC_CREATE_STATUS)
        if not isinstance(data, dict):
            return self._error(422, "Invalid request.\n\nFor 'links/0/schema', %s is not an object."
                               % json.dumps(data), DOC_CREATE_STATUS)
        if "state" not in data:
            return self._error(422, "Invalid request.\n\n\"state\" wasn't supplied.",
                               DOC_CREATE_STATUS)
        errors = []
        if data["state"] not in STATES:
            errors.append({"resource": "Status", "code": "custom", "field": "state",
                           "message": "state is not included in the list"})
        for field in ("target_url", "description", "context"):
            if data.get(field) is not None and not isinstance(data[field], str):
                errors.append({"resource": "Status", "code": "invalid", "field": field})
        desc = data.get("description")
        if isinstance(desc, str) and len(desc) > MAX_DESCRIPTION:
            errors.append({"resource": "Status", "code": "custom", "field": "description",
                           "message": "description is too long (maximum is %d characters)"
                           % MAX_DESCRIPTION})
        if errors:
            return self._error(422, "Validation Failed", DOC_CREATE_STATUS, errors=errors)
        if not HEX40.match(sha):
            return self._error(422, "No commit found for SHA: %s" % sha, DOC_CREATE_STATUS)
        sha = sha.lower()
        key = (r["owner"].lower(), r["name"].lower())
        context = data.get("context") or "default"
        same = sum(1 for k, rec, _ in self._statuses
                   if k == key and rec["sha"] == sha
                   and (rec.get("context") or "default") == context)
        if same >= MAX_STATUSES_PER_CONTEXT:
            return self._error(422, "Validation Failed", DOC_CREATE_STATUS, errors=[{
                "resource": "Status", "code": "custom",
                "message": "This SHA and context has reached the maximum number of statuses."}])
        now = time.time()
        sid = self._next_status_id
        self._next_status_id += 1
        rec = dict(data)
        rec["sha"] = sha
        rec["time"] = now
        obj = self._status_object(r, sha, data, sid, now)
        self._statuses.append((key, rec, obj))
        resp = Response(201, dumps(obj))
        resp.headers.append(("Location", obj["url"]))
        return resp

    def _read_statuses(self, r, ref, what, route, query):
        key = (r["owner"].lower(), r["name"].lower())
        sha = ref.lower()
        for p in r["pulls"].values():   # a branch name of a pull request's head
            if ref in (p["head_ref"], "refs/heads/" + p["head_ref"]):
                sha = p["head_sha"]
        objs = [obj for k, rec, obj in self._statuses if k == key and rec["sha"] == sha]
        objs.reverse()
        if what == "statuses":
            page, link = self._paginate(objs, "/repositories/%d/commits/%s/statuses"
                                        % (r["id"], urllib.parse.quote(ref, safe="")), query)
            resp = Response(200, dumps(page))
            if link:
                resp.headers.append(("Link", link))
            return resp
        latest = {}
        for o in objs:
            latest.setdefault(o["context"], o)
        states = [o["state"] for o in latest.values()]
        if any(s in ("error", "failure") for s in states):
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        api = "%s/repos/%s/%s" % (self.api, r["owner"], r["name"])
        doc = {"state": state,
               "statuses": [{k: v for k, v in o.items() if k != "creator"}
                            for o in sorted(latest.values(), key=lambda o: o["id"])],
               "sha": sha, "total_count": len(latest),
               "repository": self._render_repo(r),
               "commit_url": "%s/commits/%s" % (api, sha),
               "url": "%s/commits/%s/status" % (api, sha)}
        return Response(200, dumps(doc))

    # -- admin (not GitHub) for standalone use ----------------------------------------

    ADMIN = ("add_repo", "open_pull", "push_pull", "close_pull", "reopen_pull", "fail_next",
             "rate_limit", "delay_next")

    def _admin(self, method, path, body):
        route, _, query = path.partition("?")
        name = route[len("/_fake/"):]
        try:
            if method == "GET" and name == "statuses":
                _, q = self._query(query)
                owner, _, repo = q.get("repo", "/").partition("/")
                result = self.statuses(owner, repo, q.get("sha"))
            elif method == "GET" and name == "requests":
                result = [{"method": m, "path": p, "headers": dict(h),
                           "body": b.decode("utf-8", "replace")} for m, p, h, b in self.requests]
            elif method == "POST" and name in self.ADMIN:
                kwargs = json.loads(body.decode() or "{}")
                if "head_repo" in kwargs and kwargs["head_repo"] is not None:
                    kwargs["head_repo"] = tuple(kwargs["head_repo"])
                result = getattr(self, name)(**kwargs)
            else:
                return Response(404, dumps({"message": "Not Found"}))
        except (TypeError, ValueError, KeyError) as e:
            return Response(400, dumps({"message": "%s: %s" % (type(e).__name__, e)}))
        return Response(200, dumps(result))

    # -- webhooks -----------------------------------------------------------------------

    @staticmethod
    def payload(name):
        """A webhook payload from tests/data/github/webhooks, freshly loaded: e.g.
        "pull_request_opened.payload", "push_payload", "ping_payload"."""
        fname = name if name.endswith(".json") else name + ".json"
        with open(os.path.join(WEBHOOKS_DIR, fname), encoding="utf-8") as f:
            return json.load(f)

    @staticmethod
    def sign(body, secret):
        """GitHub's X-Hub-Signature-256 value for a raw body."""
        if isinstance(secret, str):
            secret = secret.encode()
        return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()

    def webhook(self, event, payload, secret, url, delivery=None, *, signature=None,
                headers=None, content_type="json", timeout=10):
        """POST a webhook delivery to `url` as GitHub does; returns (status, body bytes).

        payload: a dict (sent as compact JSON), or str/bytes sent as they are.
        secret: the hook's secret (None: no signature headers, as GitHub with no secret).
        signature: override X-Hub-Signature-256 (e.g. a wrong one); "" leaves it out.
        content_type: "json" (application/json) or "form" (payload=<urlencoded JSON>).
        headers: extra headers, or None values to remove some."""
        if isinstance(payload, (bytes, bytearray)):
            raw = bytes(payload)
        elif isinstance(payload, str):
            raw = payload.encode("utf-8")
        else:
            raw = dumps(payload)
        if content_type == "form":
            raw = b"payload=" + urllib.parse.quote_plus(raw).encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            ctype = "application/json"
        h = {"Content-Type": ctype, "User-Agent": "GitHub-Hookshot/044aadd",
             "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
             "X-GitHub-Hook-ID": "292430182",
             "X-GitHub-Hook-Installation-Target-Type": "repository"}
        try:
            target = json.loads(raw)["repository"]["id"] if content_type == "json" else None
        except (ValueError, KeyError, TypeError):
            target = None
        if target is not None:
            h["X-GitHub-Hook-Installation-Target-ID"] = str(target)
        if secret is not None:
            key = secret.encode() if isinstance(secret, str) else secret
            h["X-Hub-Signature"] = "sha1=" + hmac.new(key, raw, hashlib.sha1).hexdigest()
            h["X-Hub-Signature-256"] = self.sign(raw, key)
        if signature is not None:
            h.pop("X-Hub-Signature", None)
            if signature:
                h["X-Hub-Signature-256"] = signature
            else:
                h.pop("X-Hub-Signature-256", None)
        for k, v in (headers or {}).items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        # http.client, not urllib: header names go out exactly as GitHub spells them.
        u = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=timeout)
        try:
            conn.request("POST", (u.path or "/") + ("?" + u.query if u.query else ""), body=raw,
                         headers=dict({"Accept": "*/*"}, **h))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def pull_request_payload(self, owner, name, number, action="opened", sender=None):
        """A `pull_request` webhook payload for a pull request of the fake, in the shape of
        pull_request_*.payload.json (synchronize carries before/after)."""
        with self._lock:
            r = self._repo(owner, name)
            p = r["pulls"][number]
            d = {"action": action, "number": number, "pull_request": self._render_pull(r, p)}
            if action == "synchronize":
                d["before"] = p["before"] or p["base_sha"]
                d["after"] = p["head_sha"]
            d["repository"] = self._render_repo(r)
            d["repository"]["custom_properties"] = {}
            d["sender"] = self._render_user(sender or p["user"])
            return d

    def push_payload(self, owner, name, ref, before, after, pusher=None):
        """A `push` webhook payload in the shape of push_payload.json (commits left empty:
        a receiver fetches them itself)."""
        with self._lock:
            r = self._repo(owner, name)
            login = pusher or r["owner"]
            zero = "0" * 40
            now = time.time()
            head = None if after == zero else {
                "id": after, "tree_id": "", "distinct": True, "message": "",
                "timestamp": iso(now),
                "url": "%s/%s/%s/commit/%s" % (HTML_BASE, r["owner"], r["name"], after),
                "author": {"name": login, "email": "%s@users.noreply.github.com" % login,
                           "username": login},
                "committer": {"name": login, "email": "%s@users.noreply.github.com" % login,
                              "username": login},
                "added": [], "removed": [], "modified": []}
            r["pushed"] = max(r["pushed"], now)
            repo = self._render_repo(r, push_style=True)
            repo["custom_properties"] = {}
            return {"ref": ref, "before": before, "after": after, "created": before == zero,
                    "deleted": after == zero, "forced": False, "base_ref": None,
                    "compare": "%s/%s/%s/compare/%s...%s" % (HTML_BASE, r["owner"], r["name"],
                                                             before[:12], after[:12]),
                    "commits": [], "head_commit": head,
                    "repository": repo,
                    "pusher": {"name": login, "email": "%s@users.noreply.github.com" % login},
                    "sender": self._render_user(login)}

    def ping_payload(self, owner, name):
        with self._lock:
            r = self._repo(owner, name)
            api = "%s/repos/%s/%s/hooks/292430182" % (self.api, r["owner"], r["name"])
            return {"zen": "Keep it logically awesome.", "hook_id": 292430182,
                    "hook": {"type": "Repository", "id": 292430182, "name": "web", "active": True,
                             "events": ["push", "pull_request"],
                             "config": {"content_type": "json", "insecure_ssl": "0",
                                        "url": "https://example.invalid/hooks/github"},
                             "updated_at": iso(time.time()), "created_at": iso(time.time()),
                             "url": api, "test_url": api + "/test", "ping_url": api + "/pings",
                             "last_response": {"code": None, "status": "unused",
                                               "message": None}},
                    "repository": self._render_repo(r), "sender": self._render_user(r["owner"])}


# ---------------------------------------------------------------------------
# git helpers (refs/pull/N/head in local bare repositories)

def _git_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _is_git_dir(path):
    return isinstance(path, str) and os.path.isabs(path) and os.path.isdir(path) and \
        _git_ok(path, "rev-parse", "--git-dir")


def _git_ok(gitdir, *args):
    return subprocess.run(["git", "--git-dir", gitdir] + list(args), env=_git_env(),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def _git_out(gitdir, *args):
    p = subprocess.run(["git", "--git-dir", gitdir] + list(args), env=_git_env(),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


def _git_rev(gitdir, ref):
    if not _is_git_dir(gitdir):
        return None
    return _git_out(gitdir, "rev-parse", "--verify", "--quiet", ref + "^{commit}").strip() or None


# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake GitHub REST API for yci's tests.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="the valid token (Authorization: token/Bearer)")
    ap.add_argument("--username", default=None, help="the valid Basic-auth user")
    ap.add_argument("--password", default=None, help="the valid Basic-auth password")
    ap.add_argument("--allow-anonymous", action="store_true",
                    help="answer requests without credentials (public repositories only)")
    ap.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME[=CLONE_URL]")
    a = ap.parse_args(argv)
    gh = FakeGitHub(token=a.token, username=a.username, password=a.password,
                    allow_anonymous=a.allow_anonymous)
    gh.start(a.port)
    for spec in a.repo:
        full, _, clone = spec.partition("=")
        owner, _, name = full.partition("/")
        gh.add_repo(owner, name, clone_url=clone or None)
    print("fakegithub listening on %s" % gh.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    gh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
