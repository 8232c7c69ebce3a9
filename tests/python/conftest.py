"""Fixtures for the tests of the .yci.py plan driver (python/yci_plan.py).

The driver runs the way a runner runs it: a real subprocess,
`/usr/bin/python3 -I DIR/yci_plan.py BUILD_ID PULL_JSON OUT_JSON MAX_JOBS`, with
the cwd a temporary "checkout" holding the test's .yci.py. DIR is a copy of
python/ outside the checkout, as on a runner. Run from the repository root:

    /usr/bin/python3 -m pytest tests/python
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON_DIR = os.path.join(REPO_ROOT, "python")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 60  # seconds; the driver takes well under one


class Plan:
    """One driver run: what it wrote and printed."""

    def __init__(self, proc, out_text, checkout, plan_dir):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.text = out_text  # out.json as written
        self.out = json.loads(out_text) if out_text is not None else None
        self.checkout = checkout
        self.plan_dir = plan_dir


class Driver:
    """Writes a checkout and runs the driver in it: driver.run(SOURCE)."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.runs = 0

    def run(self, source=None, build_id=7, pull=None, max_jobs=256, files=None, out_name=None):
        """Run the driver on .yci.py = dedent(source) (None: no .yci.py).

        files: other files of the checkout, {relative path: text}. out_name: the
        OUT_JSON_PATH argument, relative to the checkout (default: absolute).
        Asserts the contract that holds for every run: exit 0, out.json holding
        exactly "jobs" or "error", no temporary file left beside it, and the
        checkout as it was (no __pycache__).
        """
        self.runs += 1
        base = self.tmp / ("run%d" % self.runs)
        checkout, plan_dir = base / "checkout", base / "plan"
        checkout.mkdir(parents=True)
        shutil.copytree(PYTHON_DIR, plan_dir, ignore=shutil.ignore_patterns("__pycache__"))
        written = {}
        if source is not None:
            written[".yci.py"] = textwrap.dedent(source)
        for path, text in (files or {}).items():
            written[path] = textwrap.dedent(text)
        for path, text in written.items():
            (checkout / path).parent.mkdir(parents=True, exist_ok=True)
            (checkout / path).write_text(text)
        pull_path = plan_dir / "pull.json"
        pull_path.write_text(json.dumps({"number": 1} if pull is None else pull))
        out_path = plan_dir / "out.json"
        out_arg = str(out_path) if out_name is None else out_name
        if out_name is not None:
            out_path = checkout / out_name
        argv = [PY, "-I", str(plan_dir / "yci_plan.py"), str(build_id), str(pull_path),
                out_arg, str(max_jobs)]
        proc = subprocess.run(argv, cwd=checkout, capture_output=True, text=True,
                              timeout=TIMEOUT, env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"})
        text = out_path.read_text(encoding="utf-8") if out_path.exists() else None
        result = Plan(proc, text, checkout, plan_dir)
        assert proc.returncode == 0, proc.stderr
        assert text is not None, proc.stderr
        assert len(result.out) == 1 and set(result.out) <= {"jobs", "error"}, text
        if "error" in result.out:
            error = result.out["error"]
            assert "\n" not in error and len(error) <= 1000
        leftovers = sorted(p.name for p in out_path.parent.iterdir()
                           if p.name.endswith(".tmp"))
        assert leftovers == []
        present = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
        expected = set(written) | {os.path.dirname(p) for p in written} - {""}
        if out_name is not None:
            expected.add(out_name)
        assert present == sorted(expected)
        return result


@pytest.fixture
def driver(tmp_path):
    return Driver(tmp_path)
