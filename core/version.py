"""The code version recorded in every manifest and model file, so outputs can be reproduced."""

from __future__ import annotations

import configparser
import functools
import subprocess
from importlib import metadata
from pathlib import Path

# the folder that holds core/, training/ and inference/: a clone's root, or site-packages
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """Return the package version, plus the git commit when running from an isamap checkout.

    The commit is isamap's only when the folder holding the package is itself the root of a
    git checkout of isamap (its ``setup.cfg`` names the project). An install into a virtual
    environment inside another repository (a user's project with ``.venv/`` in it) is inside
    that repository's work tree too, and its commit says nothing about isamap's code.
    """
    try:
        version = metadata.version("isamap")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    commit = checkout_commit(PACKAGE_ROOT)
    return f"{version}+g{commit}" if commit else version


def checkout_commit(root: Path) -> str:
    """The short commit of the isamap checkout whose root is ``root``; "" when it is none."""
    if not _names_isamap(root / "setup.cfg"):
        return ""
    try:
        top, commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    return commit if Path(top).resolve() == root.resolve() else ""


def _names_isamap(setup_cfg: Path) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(setup_cfg, encoding="utf-8")
    except (OSError, configparser.Error):
        return False
    return parser.get("metadata", "name", fallback="") == "isamap"
