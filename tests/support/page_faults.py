"""Counting the page faults of a large block freed and allocated again, in a fresh process.

The allocator's settings are process-wide, so tests that compare them run their steps in a
child interpreter: :data:`PRELUDE` gives it ``faults(mib)`` (the minor faults of the second
of two allocate-write-free cycles of a ``mib`` MiB block, through plain ``malloc``: numpy and
torch may ask for huge pages, which hide the count), the test's own lines do the rest and
print one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.support import REPO_ROOT

PRELUDE = textwrap.dedent("""
    import ctypes, json, resource, sys

    _libc = ctypes.CDLL("libc.so.6")
    _libc.malloc.restype = ctypes.c_void_p
    _libc.free.argtypes = [ctypes.c_void_p]

    def faults(mib):
        size = mib << 20
        for cycle in range(2):  # a forward's pattern: allocate, write, free; twice
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = _libc.malloc(size)
            ctypes.memset(block, cycle + 1, size)
            _libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
""")


def pages(mib: int) -> int:
    """Pages in a ``mib`` MiB block."""
    return (mib << 20) // os.sysconf("SC_PAGE_SIZE")


def run_fault_child(body: str, *args: object, **env: str) -> dict:
    """Run :data:`PRELUDE` + ``body`` in a fresh interpreter; its last printed line as JSON."""
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=REPO_ROOT, env={**os.environ, **env}, timeout=120,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
