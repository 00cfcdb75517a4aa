"""Helper threads yield the CPU to the model's threads (Linux: per-thread nice levels).

The streaming predictor runs the model on the main thread with every core (torch's intra-op
threads) and hands reading, blending and encoding to helper threads. On a machine
with as many cores as the model has threads, a helper that preempts one of the model's
threads stalls all of them (they meet at the next barrier), so helpers run at a lower
priority and fill the gaps the model leaves; the model's throughput bounds the pipeline
either way. Niceness 19 instead of 5 leaves the model at full speed but then makes it wait
for the helpers: the same throughput (docs/performance.md). Imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import os
import threading

#: How much lower helper threads run than the model's (Linux nice levels, 0-19).
HELPER_NICENESS = 5


def lower_thread_priority(by: int = HELPER_NICENESS) -> None:
    """Lower the calling thread's priority by ``by`` nice levels (a no-op where unsupported).

    Meant as a ``ThreadPoolExecutor`` initializer. Lowering is one-way for an unprivileged
    process, so only helper threads call it, never the model's.
    """
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid,
                       min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
