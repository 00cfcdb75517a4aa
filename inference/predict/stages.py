"""Where a prediction's time goes: seconds per stage, summed over the threads that run it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator


class Stages:
    """Seconds per stage, summed over the threads that run it (thread-safe).

    Wall time, and the CPU time of the calling thread: what the stage costs the model's
    cores, whatever other threads make of their wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - start
                self.cpu[name] += time.thread_time() - cpu
