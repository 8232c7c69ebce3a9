"""The job function of the python-rq peer (bench/peers/rq.py): what the rq
workers import (PYTHONPATH is this directory) and run in their work horses.
Seed 000's shape: a job runs its command as a subprocess with its output
appended to the job's log file, and raises when the command fails."""

import shutil
import subprocess


class CommandFailed(Exception):
    pass


def run(cmd, log, repo=None, workspace=None):
    """Run `cmd` (shell) with stdout and stderr appended to `log`; with `repo`,
    first make `workspace` a fresh clone of it and run `cmd` in there (the
    workspace is removed afterwards)."""
    with open(log, "ab") as out:
        cwd = None
        if repo is not None:
            shutil.rmtree(workspace, ignore_errors=True)
            rc = subprocess.call(["git", "clone", "-q", "--no-hardlinks", repo, workspace],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            if rc != 0:
                raise CommandFailed("git clone %s exited %d" % (repo, rc))
            cwd = workspace
        try:
            rc = subprocess.call(cmd, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
        finally:
            if repo is not None:
                shutil.rmtree(workspace, ignore_errors=True)
    if rc != 0:
        raise CommandFailed("%r exited %d" % (cmd, rc))
    return rc
