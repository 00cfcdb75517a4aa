"""Scripted CPU clocks for ``auto``'s contention rules (``engine.autotune.choose(cpu_time=)``).

``auto`` judges contention by the process's CPU time over wall time x threads; these clocks
make that share 1 or 0 whatever the test machine's load, so a test decides it.
"""

from __future__ import annotations

import time

import torch


def all_cores() -> float:
    """A CPU clock under which the process got all its threads' time while measuring."""
    return time.perf_counter() * torch.get_num_threads()


def no_cores() -> float:
    """A CPU clock under which other work held the cores all the time."""
    return 0.0
