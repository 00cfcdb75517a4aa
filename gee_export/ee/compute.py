"""Earth Engine compute in EECU-hours: what a plan will need, which tier allows it, what ran.

Earth Engine meters computation in EECU (Earth Engine Compute Units). A noncommercial project
has a monthly allowance by tier (Community 150 EECU-hours, the default; Contributor 1,000;
Partner 100,000); beyond it the project's computation is restricted until the next month.
A commercial project pays per EECU-hour. The cost of a request depends on the recipe, the
scenes under it and the service, so a plan's figure rests on a stated assumption per
request; a real run records the EECU the service reports for its batch tasks
(``batchEecuUsageSeconds`` in each operation's metadata), which is the figure to check the
assumption against. ``computePixels`` responses carry no EECU figure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from core.errors import ComputeBudgetError, ConfigError

TIERS: tuple[tuple[str, float], ...] = (("Community", 150.0), ("Contributor", 1_000.0),
                                        ("Partner", 100_000.0))
"""Noncommercial tiers and their monthly compute allowance in EECU-hours."""

EECU_S_PER_MEGAPIXEL = 4.0
"""Assumed EECU-seconds to compute one million output pixels of a month's recipe (all bands:
a cloud-masked Sentinel-2 composite, speckle-filtered Sentinel-1). Override with
``ISAMAP_EECU_S_PER_MPX`` after reading a real run's recorded EECU."""

EECU_S_PER_REQUEST = 0.05
"""Assumed fixed EECU-seconds of any request (graph evaluation, scene search)."""

ASSUMPTION_ENV = "ISAMAP_EECU_S_PER_MPX"


def eecu_s_per_megapixel() -> float:
    """The per-megapixel assumption: :data:`EECU_S_PER_MEGAPIXEL` or the environment's value."""
    text = os.environ.get(ASSUMPTION_ENV)
    if not text:
        return EECU_S_PER_MEGAPIXEL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{ASSUMPTION_ENV}={text!r} is not a positive number of EECU-seconds "
                          "per million pixels")
    return value


@dataclass(frozen=True)
class ComputeEstimate:
    """EECU a job is expected to use, with the assumption it rests on.

    Attributes:
        requests: requests (or batch tasks) the job sends.
        pixels_per_request: output pixels per request (mean).
        eecu_s_per_request: assumed EECU-seconds per request.
        eecu_hours: the job's total.
    """

    requests: int
    pixels_per_request: float
    eecu_s_per_request: float
    eecu_hours: float

    @property
    def tier(self) -> str:
        return tier_needed(self.eecu_hours)

    def to_dict(self) -> dict[str, float | int | str]:
        return {"requests": self.requests, "pixels_per_request": round(self.pixels_per_request),
                "eecu_s_per_request": round(self.eecu_s_per_request, 4),
                "eecu_hours": round(self.eecu_hours, 3), "tier": self.tier}


def estimate(requests: int, pixels: float) -> ComputeEstimate:
    """EECU of ``requests`` requests computing ``pixels`` output pixels in all (pure)."""
    per_mpx = eecu_s_per_megapixel()
    per_request_pixels = pixels / requests if requests else 0.0
    per_request = EECU_S_PER_REQUEST + per_mpx * per_request_pixels / 1e6
    return ComputeEstimate(requests, per_request_pixels, per_request,
                           requests * per_request / 3600.0)


def tier_needed(eecu_hours: float) -> str:
    """The smallest noncommercial tier whose monthly allowance holds ``eecu_hours``."""
    for name, allowance in TIERS:
        if eecu_hours <= allowance:
            return f"{name} ({allowance:,.0f} EECU-h a month)"
    return "beyond every noncommercial tier: a commercial (billed) project"


def format_estimate(est: ComputeEstimate, unit: str = "request", width: int = 10) -> list[str]:
    """The plan's compute lines (labels ``width`` wide): total, tier, assumption."""
    return [
        f"  {'compute':<{width}}about {est.eecu_hours:,.1f} EECU-hours: {est.tier} (past "
        "the monthly allowance the project's computation is restricted)",
        f"  {'assumed':<{width}}{est.eecu_s_per_request:.3g} EECU-s per {unit} of "
        f"{est.pixels_per_request / 1e6:.3g} Mpx ({EECU_S_PER_REQUEST:g} + "
        f"{eecu_s_per_megapixel():g} per Mpx; {ASSUMPTION_ENV} sets the second from a real "
        "run's recorded EECU)",
    ]


def used_eecu_seconds(statuses: list[dict]) -> float:
    """EECU-seconds the service reported for finished batch tasks (``eecu_seconds``)."""
    return float(sum(s.get("eecu_seconds") or 0.0 for s in statuses))


def check_max_eecu_hours(max_hours: float) -> None:
    """Refuse a ``--max-eecu-hours`` that bounds nothing: zero, negative, inf or nan.

    Raises:
        ConfigError: ``max_hours`` is not a finite positive number.
    """
    if not (max_hours > 0 and math.isfinite(max_hours)):
        raise ConfigError(f"--max-eecu-hours must be a finite positive number of EECU-hours, "
                          f"got {max_hours:g}; leave it out to set no bound")


class ComputeBudget:
    """``--max-eecu-hours``: what a job may spend, what it spent, and when to stop.

    Spending is counted per request (or task) from the plan's estimate
    (:func:`estimate`'s ``eecu_s_per_request``) while requests run, and replaced by what the
    service reported where it reports it (a batch task's ``batchEecuUsageSeconds``). What
    earlier runs of the same dataset spent counts too (the patches they wrote or found
    invalid at the estimate, the EECU their tasks reported), so the bound covers the
    dataset, not one invocation: a run stopped by it resumes only with a higher bound.
    Thread-safe: request threads charge it.

    Args:
        max_hours: the bound in EECU-hours.
        eecu_s_per_request: the estimate charged per request (or task) not yet measured.
    """

    def __init__(self, max_hours: float, eecu_s_per_request: float) -> None:
        check_max_eecu_hours(max_hours)
        import threading

        self.max_hours = max_hours
        self.per_request = eecu_s_per_request
        self.spent_s = 0.0
        self._lock = threading.Lock()

    def allows(self, requests: int = 1) -> bool:
        """Whether ``requests`` more requests stay within the bound."""
        with self._lock:
            return self.spent_s + requests * self.per_request <= self.max_hours * 3600.0

    def charge(self, requests: float = 1, eecu_s: float | None = None) -> None:
        """Count ``requests`` requests at the estimate, or ``eecu_s`` measured EECU-seconds."""
        with self._lock:
            self.spent_s += requests * self.per_request if eecu_s is None else eecu_s

    def recount(self, measured_s: float, unmeasured: int) -> None:
        """Set the spending to ``measured_s`` reported EECU-s plus ``unmeasured`` estimates."""
        with self._lock:
            self.spent_s = measured_s + unmeasured * self.per_request

    def take(self, requests: int) -> bool:
        """Charge ``requests`` requests if they stay within the bound; whether they did."""
        with self._lock:
            cost = requests * self.per_request
            if self.spent_s + cost > self.max_hours * 3600.0:
                return False
            self.spent_s += cost
            return True

    def stopped(self, what: str) -> ComputeBudgetError:
        """The error of a run stopped by the bound, saying how to resume."""
        return ComputeBudgetError(
            f"stopped before passing --max-eecu-hours {self.max_hours:g}: {what}, about "
            f"{self.spent_s / 3600.0:.3g} EECU-hours spent by this dataset's runs so far "
            f"({self.per_request:.3g} EECU-s assumed per request; see the dry run). Finished "
            "work is kept: run the same command with a higher --max-eecu-hours to go on")


def format_duration(hours: float) -> str:
    """A rough duration in the unit a person reads best (small exports are not '0.0 h')."""
    if hours >= 1.0:
        return f"{hours:,.1f} h"
    minutes = hours * 60.0
    if minutes >= 1.0:
        return f"{minutes:.0f} min"
    return f"{max(1.0, minutes * 60.0):.0f} s"
