"""What ``computePixels`` requests cost, read from Earth Engine's computation profiles.

A ``computePixels`` answer is the pixels alone: no EECU field and no EECU header. What the
service does report per request is a computation profile. A request sent with the header
``X-Earth-Engine-Computation-Profiling: 1`` (earthengine-api's ``ee.data.profiling``) is
answered with a header ``X-Earth-Engine-Computation-Profile: <id>``, and the algorithm
``Profile.getProfiles(ids)`` returns the profiles of those ids as text. earthengine-api's
``ee.profilePrinting`` does exactly this. That text is the profiler table of the Code Editor:
one row per algorithm, asset load or overhead, with the columns ``EECU·s``, ``PeakMem``,
``Count`` and ``Description``.

Why this source:

* The Earth Engine guide "Computation overview" (section Profiler) says the profiler gives
  the EECU-time and memory of the computations run while it is on. It says the profiler
  works in the Code Editor and in the Python client. Its "Compute" column is "an indicator of
  EECU-time taken by the operation". The Python client prints that column as ``EECU·s``
  (EECU-seconds), as public output of ``ee.profilePrinting`` shows (for example, geetools'
  profiler guide). geetools' parser expects the columns ``EECU-s, PeakMem, Count,
  Description``.
* Cloud Monitoring's "Used EECU-seconds" metric (guide "Monitoring usage", labels
  ``compute_type``, ``client_type`` and ``workload_tag``) is the documented meter of what a
  project is billed. But it is Beta. It sums a whole project by time window and arrives
  minutes late. It needs another client (google-cloud-monitoring) and the
  ``monitoring.viewer`` role. So it cannot price one run's requests while that run goes on.
  Every request carries the run's ``workloadTag``, so a person can still check a run's total
  there.
* The profile table's layout is not specified anywhere: ``Profile.getProfiles`` is a hidden
  algorithm. So isamap reads only what the guide names: the EECU-seconds column, summed over
  the table's rows. A table with no such column, or a value that is not a number, is not
  read. The estimate then stays, and the run says so once. It never fails on this.

Sampling (:class:`ProfileMeter`): a run profiles its first :data:`PROFILE_FIRST` requests,
then one in :data:`PROFILE_EVERY`. It reads them back :data:`PROFILE_BATCH` ids at a time.
That is one extra ``getInfo`` per batch, through the session's one retry loop, which retries
it as earthengine-api's ``ee.profilePrinting`` does: after any failure (a profile the service
has not stored yet is refused), not only after congestion. An answer without a profile id
is said once: its request stays priced at the estimate. The EECU-seconds
of the profiled requests and the pixels they computed give the run's rate in EECU-s per
megapixel (:meth:`PixelCost.rate`). This is the same model batch tasks calibrate
(:func:`gee_export.ee.compute.measured_rate`). The rate then prices every request of the run
in ``--max-eecu-hours``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from gee_export.ee.compute import EecuRate

log = logging.getLogger(__name__)

PROFILE_FIRST = 5
"""The first requests of a run are all profiled (the rate is known early)."""
PROFILE_EVERY = 50
"""After them, one request in this many is profiled (the rate follows the run)."""
PROFILE_BATCH = 5
"""Profile ids read back per ``Profile.getProfiles`` request."""
EECU_COLUMNS = ("eecu-s", "eecu·s", "eecus")
"""How the table's EECU-seconds column is headed (compared lower-case)."""


class ProfileFormatError(ValueError):
    """A profile whose text carries no readable EECU-seconds column."""


def profile_eecu_seconds(text: Any) -> float:
    """The EECU-seconds a profile table reports: its ``EECU·s`` column summed over its rows.

    Raises:
        ProfileFormatError: no header with an EECU-seconds column, a value there that is
            not a number (``-`` is read as nothing), or no row at all.
    """
    if not isinstance(text, str):
        raise ProfileFormatError(f"a profile answer is text, got {type(text).__name__}")
    lines = [line.split() for line in text.splitlines() if line.strip()]
    found = [(at, names.index(name)) for at, names in enumerate(
        [[n.lower() for n in line] for line in lines]) for name in EECU_COLUMNS if name in names]
    if not found:
        raise ProfileFormatError("no EECU-seconds column in the profile: "
                                 f"{text.strip()[:80]!r}")
    header, column = found[0]
    total, rows = 0.0, 0
    for row in lines[header + 1:]:
        value = row[column] if column < len(row) else ""
        if value == "-":
            rows += 1
            continue
        try:
            total += float(value)
        except ValueError:
            raise ProfileFormatError(f"EECU-seconds {value!r} is not a number, in the "
                                     f"profile row {' '.join(row)[:80]!r}") from None
        rows += 1
    if not rows:
        raise ProfileFormatError("the profile has a header but no row")
    return total


def request_pixels(request: dict[str, Any]) -> int:
    """Output pixels of a computePixels request (its grid's width x height)."""
    dims = request.get("grid", {}).get("dimensions", {})
    return int(dims.get("width", 0)) * int(dims.get("height", 0))


def profiles_request(ids: list[str]) -> Any:
    """``Profile.getProfiles(ids)`` as a computed object (its ``getInfo`` is the text)."""
    import ee  # earthengine-api: the optional dependency of the Earth Engine backend

    # a hidden algorithm: looked up by name, as earthengine-api's profilePrinting does
    return ee.ApiFunction.lookup("Profile.getProfiles").call(ids=list(ids))


@dataclass(frozen=True)
class PixelCost:
    """What profiled requests cost in all: kept in resume state, read back on a re-run.

    Attributes:
        eecu_s: the EECU-seconds their profiles report.
        pixels: the output pixels they computed.
        requests: how many requests were profiled.
    """

    eecu_s: float = 0.0
    pixels: float = 0.0
    requests: int = 0

    def plus(self, eecu_s: float, pixels: float, requests: int) -> PixelCost:
        return PixelCost(self.eecu_s + eecu_s, self.pixels + pixels, self.requests + requests)

    def rate(self) -> EecuRate | None:
        """EECU-s per Mpx of the profiled requests (None before one was read)."""
        if self.requests < 1 or self.pixels <= 0:
            return None
        return EecuRate(self.eecu_s / (self.pixels / 1e6), 0.0, measured=True,
                        source=f"measured from {self.requests:,} profiled request(s): "
                               f"{self.eecu_s:,.3g} EECU-s for {self.pixels / 1e6:,.3g} Mpx")

    def to_dict(self) -> dict[str, float | int]:
        return {"eecu_s": self.eecu_s, "pixels": self.pixels, "requests": self.requests}

    @classmethod
    def from_dict(cls, value: Any) -> PixelCost:
        """A saved record; anything unreadable is nothing measured."""
        try:
            return cls(float(value["eecu_s"]), float(value["pixels"]), int(value["requests"]))
        except (KeyError, TypeError, ValueError):
            return cls()


class ProfileMeter:
    """Which requests of a run to profile, their profile ids, and what they measured.

    Thread-safe: the session's request threads call :meth:`wants` and :meth:`record`. The
    thread whose request fills a batch reads it back (:meth:`due`, then :meth:`add` or
    :meth:`give_up`).

    Args:
        measured: what earlier runs of the same output measured (resume state).
        first: requests profiled from the start.
        every: then one request in this many.
        batch: ids read back per ``Profile.getProfiles`` request.
    """

    def __init__(self, measured: PixelCost | None = None, *, first: int = PROFILE_FIRST,
                 every: int = PROFILE_EVERY, batch: int = PROFILE_BATCH) -> None:
        self.measured = measured or PixelCost()
        self.first, self.every, self.batch = first, max(1, every), max(1, batch)
        self.sent = 0  # requests the session sent while this meter was on
        self.sent_pixels = 0
        self.failed = ""  # why profiles are no longer read ("" while they are)
        self._pending: list[tuple[str, int]] = []
        self._said = False  # whether the run logged its measured price
        self._unidentified = False  # whether an answer came without a profile id (said once)
        self._lock = threading.Lock()

    def wants(self, pixels: int) -> bool:
        """Count a request about to be sent; whether to profile it."""
        with self._lock:
            n = self.sent
            self.sent += 1
            self.sent_pixels += pixels
            if self.failed:
                return False
            return n < self.first or (n - self.first) % self.every == self.every - 1

    def record(self, profile_id: str, pixels: int) -> None:
        """A profiled request's answer came with ``profile_id``."""
        with self._lock:
            self._pending.append((profile_id, pixels))

    def due(self, flush: bool = False) -> list[tuple[str, int]]:
        """The ids to read now: a full batch, or with ``flush`` whatever is pending."""
        with self._lock:
            if not self._pending or (len(self._pending) < self.batch and not flush):
                return []
            taken, self._pending = self._pending[:self.batch], self._pending[self.batch:]
            return taken

    def add(self, batch: list[tuple[str, int]], text: Any) -> EecuRate | None:
        """Count a batch's profile text; the run's rate from everything measured so far.

        Raises:
            ProfileFormatError: the text carries no readable EECU-seconds.
        """
        eecu_s = profile_eecu_seconds(text)
        with self._lock:
            self.measured = self.measured.plus(eecu_s, float(sum(p for _, p in batch)),
                                               len(batch))
            rate, first = self.measured.rate(), not self._said
            self._said = True
        if rate is not None and first:
            log.info("computePixels requests priced %s: %.3g EECU-s per Mpx "
                     "(ISAMAP_EECU_S_PER_MPX=%.3g plans later runs from it)", rate.source,
                     rate.per_mpx, rate.per_mpx)
        return rate

    def no_profile_id(self) -> None:
        """A profiled request's answer carried no profile id: say once that the price stays."""
        with self._lock:
            first, self._unidentified = not self._unidentified, True
            measured = self.measured.requests
        if first:
            log.warning("a profiled computePixels answer carried no profile id (no "
                        "X-Earth-Engine-Computation-Profile header): its EECU cannot be read, "
                        "and --max-eecu-hours counts requests at %s until answers carry one",
                        "the measured rate so far" if measured else "the plan's estimate")

    def give_up(self, why: str) -> None:
        """Stop profiling; say once that requests stay priced at the estimate."""
        with self._lock:
            first = not self.failed
            self.failed = why or "no reason given"
            self._pending = []
        if first:
            log.warning("computePixels profiles could not be read (%s): requests stay priced "
                        "at %s", why[:300], "the measured rate so far" if self.measured.requests
                        else "the plan's estimate")

    def mean_pixels(self) -> float:
        """Mean output pixels of the requests sent so far (0 before any)."""
        with self._lock:
            return self.sent_pixels / self.sent if self.sent else 0.0

    def price(self) -> tuple[float, str] | None:
        """EECU-s per request at what was measured, and where it comes from (None: nothing).

        The one price of a request: the measured rate per Mpx times the mean output of the
        requests this run sent, or, before it sent any (a re-run), of those profiled.
        """
        rate = self.measured.rate()
        if rate is None:
            return None
        pixels = self.mean_pixels() or self.measured.pixels / self.measured.requests
        return rate.cost_s(0, pixels), rate.source
