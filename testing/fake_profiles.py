"""Computation profiles as the fake Earth Engine server keeps and answers them.

A request sent with profiling on is answered with a profile id: earthengine-api reads it from
the ``X-Earth-Engine-Computation-Profile`` header, and :class:`testing.fake_server.StackTransport`
hands it to the request's ``profile`` hook. ``Profile.getProfiles(ids)`` (a ``getInfo`` of that
hidden algorithm) is answered with the profiler's text table, summed over the ids, in the layout
earthengine-api's ``ee.profilePrinting`` prints: a header ``EECU·s PeakMem Count Description``
and one row per algorithm, asset load or overhead. The service does not document the layout;
this follows public output of ``ee.profilePrinting``. What a profile costs is the EECU the
request was metered (:class:`testing.fake_quota.EecuAccount`), so it depends on the pixels.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from testing.fake_quota import HttpError

# How a request's EECU-seconds split over the table's rows (shares sum to one).
ROWS = (("Algorithm Image.reproject", 0.55, 4),
        ("Loading assets: COPERNICUS/S2_SR_HARMONIZED/(...)", 0.3, 12),
        ("(plumbing)", 0.15, 40))
HEADER = " EECU·s PeakMem Count  Description"


def is_profiles_request(graph: dict[str, Any]) -> bool:
    """Whether a serialized expression is ``Profile.getProfiles(...)``."""
    root = graph["values"][graph["result"]].get("functionInvocationValue", {})
    return root.get("functionName") == "Profile.getProfiles"


def _memory(nbytes: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f}{unit}"
    return f"{nbytes:.0f}"


def profile_table(eecu_s: float, pixels: int, requests: int) -> str:
    """The profiler's table of ``requests`` requests: ``eecu_s`` over the rows of :data:`ROWS`."""
    lines = [HEADER]
    for description, share, count in ROWS:
        lines.append(f"{eecu_s * share:7.4f} {_memory(pixels * 4 * share):>7} "
                     f"{count * requests:5d}  {description}")
    return "\n".join(lines) + "\n"


class ProfileBook:
    """The profiles of one fake server: ids given out, what each cost, the answers read.

    Attributes:
        answer: text answered to every ``getProfiles`` instead of the table (a test's
            unreadable profile); None: the table.
        faults: HTTP statuses the next ``getProfiles`` requests fail with, in order.
        reads: the id lists ``getProfiles`` was asked for.
    """

    def __init__(self) -> None:
        self.costs: dict[str, tuple[float, int]] = {}
        self.answer: str | None = None
        self.faults: list[int] = []
        self.reads: list[list[str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, eecu_s: float, pixels: int) -> str:
        """A profiled request's cost; the id its answer carries."""
        with self._lock:
            profile_id = f"profile-{next(self._ids):05d}"
            self.costs[profile_id] = (eecu_s, pixels)
            return profile_id

    def read(self, graph: dict[str, Any]) -> str:
        """The answer to a ``Profile.getProfiles`` expression (its ``ids`` argument)."""
        root = graph["values"][graph["result"]]["functionInvocationValue"]
        ids = root["arguments"]["ids"]
        ids = ids["constantValue"] if "constantValue" in ids else [
            v["constantValue"] for v in ids["arrayValue"]["values"]]
        with self._lock:
            self.reads.append(list(ids))
            if self.faults:
                raise HttpError(self.faults.pop(0), "injected failure")
            unknown = [i for i in ids if i not in self.costs]
            if unknown:
                raise HttpError(400, f"Profile {unknown[0]} not found.")
            if self.answer is not None:
                return self.answer
            costs = [self.costs[i] for i in ids]
        return profile_table(sum(c for c, _ in costs), sum(p for _, p in costs), len(ids))
