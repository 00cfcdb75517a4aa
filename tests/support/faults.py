"""Real environment faults for command tests: a full disk, a read-only disk, no write permission.

Nothing is simulated: the command runs in a subprocess whose output folder is a real tmpfs
mounted in a private mount namespace (``unshare -rm``: a user namespace makes this work
without root where unprivileged user namespaces are enabled), so writes fail with the
kernel's own ENOSPC or EROFS. Missing write permission is a real ``chmod 0500`` folder; under
root, whose capabilities ignore modes, the command runs as an unprivileged user of a user
namespace (``unshare --user --map-user=65534``), to which the folder's owner bits apply.
Tests skip when the machine allows none of this.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _works(*probe: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def python(*args: str) -> list[str]:
    """argv running this interpreter on ``args`` (``-m module ...`` or ``-c code``)."""
    return [sys.executable, *args]


def run_on_small_disk(argv: Sequence[str], mount: Path, size_kb: int, *, readonly: bool = False,
                      timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``argv`` with a ``size_kb`` tmpfs (read-only if asked) mounted over ``mount``."""
    if not _works("unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"):
        pytest.skip("cannot mount a private tmpfs here (unshare -rm / mount refused)")
    mount.mkdir(parents=True, exist_ok=True)
    options = ("ro," if readonly else "") + f"size={size_kb}k"
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && exec \"$@\""
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *argv], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def run_without_write_permission(argv: Sequence[str], folder: Path,
                                 timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``argv`` with ``folder`` made read-and-enter-only (mode 0500) for the process."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not _works("unshare", "--user", "--map-user=65534", "--map-group=65534", "true"):
            pytest.skip("running as root without user namespaces: permissions cannot bite")
        prefix = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]
    try:
        return subprocess.run([*prefix, *argv], cwd=REPO, env=_env(), capture_output=True,
                              text=True, timeout=timeout)
    finally:
        folder.chmod(0o700)
