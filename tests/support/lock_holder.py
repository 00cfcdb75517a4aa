"""Another real process holding an output root's lock (:func:`core.lock.hold_output`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO_ROOT

_HOLDER = """
import sys, time
from core.lock import hold_output
with hold_output(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def held_elsewhere(root: Path) -> Iterator[subprocess.Popen]:
    """A second process holds ``root``'s lock for the block; it is killed (and reaped) after."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held", \
            holder.stderr.read() if holder.stderr else ""
        yield holder
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: a refused run's folder is compared by it."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
