"""``make setup`` refuses an unsupported Python in one line, and never reuses a half-made venv.

The real Makefile runs in a temporary folder (its prerequisites copied there) with stand-in
Python executables: shell scripts that answer the version check as that Python would and log
every other call, so no venv is made and nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FAKE_PYTHON = """#!/bin/sh
echo "$0 $*" >> {log}
case "$1" in
  -V) echo "Python {version}" ;;
  -c) exit {check} ;;
  -m) [ "$2" = venv ] && mkdir -p "$3/bin" && cp "{pip}" "$3/bin/python" ;;
esac
"""
# the venv's python: pip fails, as an install with a resolution error does
FAILING_PIP = """#!/bin/sh
echo "$0 $*" >> {log}
exit 1
"""


def _make(folder: Path, version: str, supported: bool) -> subprocess.CompletedProcess:
    for name in ("Makefile", "setup.cfg", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO_ROOT / name, folder / name)
    log = folder / "calls.log"
    pip = folder / "venv_python"
    pip.write_text(FAILING_PIP.format(log=log))
    python = folder / "python"
    python.write_text(FAKE_PYTHON.format(log=log, version=version, check=0 if supported else 1,
                                         pip=pip))
    for script in (pip, python):
        script.chmod(0o755)
    # a `make test` running this passes its own flags and variables down: not to this make
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run(["make", "--no-print-directory", "setup", f"PYTHON={python}"],
                          cwd=folder, capture_output=True, text=True, timeout=60, env=env)


def test_an_old_python_is_refused_in_one_line_before_any_install(tmp_path):
    done = _make(tmp_path, "3.10.14", supported=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines()
              if line.strip() and not line.startswith("make:")]
    assert len(errors) == 1, done.stderr
    assert "isamap needs Python 3.11 or newer" in errors[0] and "Python 3.10.14" in errors[0]
    assert not (tmp_path / ".venv").exists()
    calls = (tmp_path / "calls.log").read_text()
    assert "-m venv" not in calls and "pip" not in calls, calls


def test_a_venv_left_by_a_failed_install_is_made_anew(tmp_path):
    stale = tmp_path / ".venv" / "bin"
    stale.mkdir(parents=True)
    (stale / "python").write_text("#!/bin/sh\nexit 0\n")  # half installed: no stamp
    (stale / "python").chmod(0o755)
    done = _make(tmp_path, "3.11.9", supported=True)
    assert done.returncode != 0  # the stand-in pip fails
    assert "an earlier install did not finish" in done.stdout
    calls = (tmp_path / "calls.log").read_text()
    assert "-m venv" in calls, "the unfinished venv was reused"
    assert not (tmp_path / ".venv" / ".isamap-installed").exists()
