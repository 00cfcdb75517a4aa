"""The CPU threads an experiment runs on: one per process unless told otherwise.

The experiments pin their precision (``fp32``, so that their figures do not depend on what a
measurement chose), and an explicit precision skips the engine's measured choice, the one
that lowers the thread count when other work keeps the cores busy
(:mod:`engine.autotune`). Left at torch's default, every process would then spin one
thread per core on a machine other processes share, and OpenMP's waiting threads made one
land-cover training about twenty times slower than on one thread. So an experiment runs on
one thread per process (``--threads``, 0: torch's default), in its own process and in the
product commands it starts (``isamap-export``, ``isamap-train``, ``isamap-predict``), which
read it from the OpenMP environment variables.
"""

from __future__ import annotations

import argparse
import os

from engine.execution import set_threads

#: what the product commands an experiment starts read their thread count from
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_THREADS = 1


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads per process (default 1; 0: torch's default)."""
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch CPU threads of each process the experiment runs (default "
                             f"{DEFAULT_THREADS}: budgets hold on a busy machine; 0: torch's "
                             "default, one per core)")


def use_threads(threads: int) -> None:
    """Run this process and the commands it starts on ``threads`` threads (0: unchanged)."""
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads:
        set_threads(threads)
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity else os.cpu_count() or 1)
