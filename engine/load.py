"""How busy this process's cores are with other processes' work.

A choice timed while other work held the cores describes that moment, not the machine: on a
shared 2-core machine one thread beat two and the cached one-thread choice then ran a quiet
machine at 0.79x of its fastest setting. :mod:`engine.autotune` therefore reads the
load over its measurement and records it with the choice, and before reusing a choice
measured under load it reads the load again for a moment (:data:`RECHECK_S`).

The reading is the share of the cores this process may run on (``sched_getaffinity``) that
*other* work kept busy: the busy time of those cores in ``/proc/stat`` (user, nice, system,
irq, softirq, steal) minus this process's own CPU time, over the cores and the wall time of
the window. The load average is recorded beside it for people (it counts this process too,
and all cores of the host). Where ``/proc/stat`` cannot be read the share is unknown
(``None``) and counts as quiet: the cache then behaves as it would without this module.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: Other work holding more than this share of the process's cores makes a reading "loaded".
LOADED_SHARE = 0.25
#: Seconds the load is read for before a choice measured under load is reused.
RECHECK_S = 0.25
_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (idle 3, iowait 4)


@dataclass(frozen=True)
class Load:
    """What the cores were doing over a window.

    Attributes:
        others: share (0..1) of the process's cores kept busy by other work; None unknown.
        loadavg: the 1-minute load average at the end of the window (None unknown).
        cores: the cores the process may run on.
        seconds: the window's wall time.
    """

    others: float | None = None
    loadavg: float | None = None
    cores: int = 0
    seconds: float = 0.0

    @property
    def loaded(self) -> bool:
        """Other work held more than :data:`LOADED_SHARE` of the cores (unknown: no)."""
        return self.others is not None and self.others > LOADED_SHARE

    def describe(self) -> str:
        if self.others is None:
            return "load unknown"
        avg = f", load average {self.loadavg:.2f}" if self.loadavg is not None else ""
        return f"other work on {self.others:.0%} of {self.cores} cores{avg}"

    def to_dict(self) -> dict[str, float | int | None]:
        return {"others": self.others, "loadavg": self.loadavg, "cores": self.cores,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict | None) -> Load:
        d = d or {}
        return cls(others=d.get("others"), loadavg=d.get("loadavg"),
                   cores=int(d.get("cores") or 0), seconds=float(d.get("seconds") or 0.0))


class Window(Protocol):
    """A load reading started when the window was made; ``read`` ends it."""

    def read(self) -> Load: ...


#: Makes a started :class:`Window` (tests inject scripted readings through it).
Meter = Callable[[], Window]


class StatWindow:
    """The real reading: ``/proc/stat`` busy time of the process's cores minus its own CPU."""

    def __init__(self) -> None:
        self.cores = _cores()
        self._busy = _busy_seconds(self.cores)
        self._own = time.process_time()
        self._t0 = time.perf_counter()

    def read(self) -> Load:
        wall = time.perf_counter() - self._t0
        busy = _busy_seconds(self.cores)
        loadavg = None
        with contextlib.suppress(OSError):
            loadavg = round(os.getloadavg()[0], 2)
        if busy is None or self._busy is None or wall <= 0:
            return Load(None, loadavg, len(self.cores), round(wall, 3))
        others = (busy - self._busy) - (time.process_time() - self._own)
        share = min(max(others / (wall * len(self.cores)), 0.0), 1.0)
        return Load(round(share, 3), loadavg, len(self.cores), round(wall, 3))


def sample(meter: Meter = StatWindow, seconds: float = RECHECK_S) -> Load:
    """The load over the next ``seconds`` (this thread sleeps meanwhile)."""
    window = meter()
    time.sleep(seconds)
    return window.read()


def _cores() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def _busy_seconds(cores: tuple[int, ...]) -> float | None:
    """Busy seconds of ``cores`` since boot, None where ``/proc/stat`` is not readable."""
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    ticks = 0
    found = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in wanted:
            values = rest.split()
            ticks += sum(int(values[i]) for i in _BUSY_FIELDS if i < len(values))
            found += 1
    if found != len(wanted):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")
