"""The recorded code version takes a git commit only from an isamap checkout's own root.

Real git repositories in temporary folders: isamap's checkout (its ``setup.cfg`` names the
project), a user's project with the package installed in a ``.venv`` inside it, and another
project at the root.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from core.version import PACKAGE_ROOT, checkout_commit, code_version
from tests.support import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _repository(root: Path, project: str) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "setup.cfg").write_text(f"[metadata]\nname = {project}\nversion = 1.0\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "setup.cfg"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    return subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_an_isamap_checkout_gives_its_commit(tmp_path):
    commit = _repository(tmp_path / "isamap", "isamap")
    assert checkout_commit(tmp_path / "isamap") == commit


def test_a_package_installed_inside_another_repository_gives_no_commit(tmp_path):
    _repository(tmp_path / "project", "their-project")
    site = tmp_path / "project" / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    # even a setup.cfg naming isamap beside the installed package is not a checkout's root
    (site / "setup.cfg").write_text("[metadata]\nname = isamap\n")
    assert checkout_commit(site) == ""


def test_another_project_at_the_root_gives_no_commit(tmp_path):
    _repository(tmp_path / "other", "other")
    assert checkout_commit(tmp_path / "other") == ""


def test_a_folder_outside_any_repository_gives_no_commit(tmp_path):
    assert checkout_commit(tmp_path) == ""


def test_this_checkout_records_its_own_commit():
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    if REPO_ROOT.resolve() != PACKAGE_ROOT or head.returncode != 0:
        pytest.skip("the package is not imported from a git checkout")
    assert code_version().endswith(f"+g{head.stdout.strip()}")


def test_the_package_root_is_the_folder_that_holds_the_packages():
    """A module moved to another depth must not point its root elsewhere (it would record no
    commit, and the test above would only skip)."""
    assert (PACKAGE_ROOT / "core" / "version.py").is_file()
    assert (PACKAGE_ROOT / "training").is_dir() and (PACKAGE_ROOT / "inference").is_dir()
