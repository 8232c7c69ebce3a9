"""A minimal stand-in for Buildbot's `buildbot-www` plugin (the web UI), which
Debian does not package: without a www plugin named "base" the master does not
serve its REST API. This one serves no UI, only a placeholder index page; the
REST API (/api/v2/...), /sse and /ws are served by buildbot itself once it loads.
Found by the master through PYTHONPATH (bench/peers/buildbot.py sets it) and
the entry point in ../yci_buildbot_www-3.7.0.dist-info/entry_points.txt."""

from buildbot.www.plugin import Application

ep = Application(__name__, "Buildbot UI")
