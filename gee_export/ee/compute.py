"""Earth Engine compute in EECU-hours: what a plan will need, which tier allows it, what ran.

Earth Engine meters computation in EECU (Earth Engine Compute Units). A noncommercial project
has a monthly allowance by tier (Community 150 EECU-hours, the default; Contributor 1,000;
Partner 100,000); beyond it the project's computation is restricted until the next month.
A commercial project pays per EECU-hour, and any project may set a daily EECU-time quota.

What the service reports, per kind of work:

* a batch task's operation metadata carries ``batchEecuUsageSeconds`` once it finished: the
  task's real cost, read by the task loop (:mod:`gee_export.ee.task_loop`);
* a ``computePixels`` answer is the pixels alone (no EECU field, no EECU header), but a request
  sent with the profiling header is answered with a profile id, whose profile
  (``Profile.getProfiles``) reports its EECU-seconds: a run profiles a sample of its requests
  and prices them all from it (:mod:`gee_export.ee.profiles`), at the estimate until then.

One model prices both: :class:`EecuRate`, EECU-seconds per million output pixels of the month's
recipe (all bands) plus a fixed cost per interactive request. Its per-megapixel figure is
isamap's assumption (:data:`EECU_S_PER_MEGAPIXEL`), the environment's ``ISAMAP_EECU_S_PER_MPX``
(a figure a real run measured), what batch tasks of the run reported
(:func:`measured_rate`), or what its profiled requests reported
(:meth:`gee_export.ee.profiles.PixelCost.rate`); the plan and the run always say which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import ConfigError

TIERS: tuple[tuple[str, float], ...] = (("Community", 150.0), ("Contributor", 1_000.0),
                                        ("Partner", 100_000.0))
"""Noncommercial tiers and their monthly compute allowance in EECU-hours."""

EECU_S_PER_MEGAPIXEL = 4.0
"""Assumed EECU-seconds to compute one million output pixels of a month's recipe (all bands:
a cloud-masked Sentinel-2 composite, speckle-filtered Sentinel-1). Override with
``ISAMAP_EECU_S_PER_MPX`` after reading a real run's recorded EECU."""

EECU_S_PER_REQUEST = 0.05
"""Assumed fixed EECU-seconds of an interactive request (graph evaluation, scene search);
a batch task's reported figure includes its own."""

ASSUMPTION_ENV = "ISAMAP_EECU_S_PER_MPX"

NOT_REPORTED = ("computePixels answers carry no EECU: requests are counted at this estimate "
                "until the run's first profiled requests report theirs, then at that rate")
"""What a plan and a run say of interactive requests' EECU (measured from their profiles)."""


@dataclass(frozen=True)
class EecuRate:
    """The price of work in EECU-seconds, and where the figure comes from.

    Attributes:
        per_mpx: EECU-seconds per million output pixels.
        per_request: fixed EECU-seconds of each interactive request (0 for batch tasks).
        source: where ``per_mpx`` comes from, as the plan prints it.
        measured: whether ``per_mpx`` is what Earth Engine reported for this work.
    """

    per_mpx: float
    per_request: float = EECU_S_PER_REQUEST
    source: str = "isamap's assumption"
    measured: bool = False

    def cost_s(self, requests: float, pixels: float) -> float:
        """EECU-seconds of ``requests`` requests computing ``pixels`` output pixels."""
        return requests * self.per_request + self.per_mpx * pixels / 1e6


def assumed_rate() -> EecuRate:
    """The plan's rate before anything is measured: the assumption or the environment's."""
    text = os.environ.get(ASSUMPTION_ENV)
    if not text:
        return EecuRate(EECU_S_PER_MEGAPIXEL, source=f"isamap's assumption ({ASSUMPTION_ENV} "
                                                     "sets it from a real run's recorded EECU)")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{ASSUMPTION_ENV}={text!r} is not a positive number of EECU-seconds "
                          "per million pixels")
    return EecuRate(value, source=f"{ASSUMPTION_ENV}")


def measured_rate(eecu_s: float, pixels: float, tasks: int) -> EecuRate | None:
    """The rate ``tasks`` finished batch tasks reported: ``eecu_s`` for ``pixels`` in all.

    None before a task reported a figure for pixels it computed.
    """
    if tasks < 1 or pixels <= 0:
        return None
    return EecuRate(eecu_s / (pixels / 1e6), 0.0, measured=True,
                    source=f"measured: {tasks:,} batch task(s) reported {eecu_s:,.1f} EECU-s "
                           f"for {pixels / 1e6:,.1f} Mpx")


@dataclass(frozen=True)
class ComputeEstimate:
    """EECU a job is expected to use, with the assumption it rests on.

    Attributes:
        requests: requests (or batch tasks) the job sends.
        pixels_per_request: output pixels per request (mean).
        eecu_s_per_request: estimated EECU-seconds per request (or task).
        eecu_hours: the job's total.
        rate: the price it rests on.
    """

    requests: int
    pixels_per_request: float
    eecu_s_per_request: float
    eecu_hours: float
    rate: EecuRate = EecuRate(EECU_S_PER_MEGAPIXEL)

    @property
    def tier(self) -> str:
        return tier_needed(self.eecu_hours)

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return {"requests": self.requests, "pixels_per_request": round(self.pixels_per_request),
                "eecu_s_per_request": round(self.eecu_s_per_request, 4),
                "eecu_hours": round(self.eecu_hours, 3), "tier": self.tier,
                "eecu_s_per_mpx": self.rate.per_mpx, "rate_source": self.rate.source,
                "measured": self.rate.measured}


def estimate(requests: int, pixels: float, rate: EecuRate | None = None,
             interactive: bool = True) -> ComputeEstimate:
    """EECU of ``requests`` requests computing ``pixels`` output pixels in all (pure).

    ``interactive``: computePixels requests, each with the rate's fixed cost; batch tasks
    carry none (their reported figure includes it).
    """
    rate = rate or assumed_rate()
    per_request_pixels = pixels / requests if requests else 0.0
    per_request = rate.cost_s(1 if interactive else 0, per_request_pixels)
    return ComputeEstimate(requests, per_request_pixels, per_request,
                           requests * per_request / 3600.0, rate)


def tier_needed(eecu_hours: float) -> str:
    """The smallest noncommercial tier whose monthly allowance holds ``eecu_hours``."""
    for name, allowance in TIERS:
        if eecu_hours <= allowance:
            return f"{name} ({allowance:,.0f} EECU-h a month)"
    return "beyond every noncommercial tier: a commercial (billed) project"


def format_estimate(est: ComputeEstimate, unit: str = "request", width: int = 10) -> list[str]:
    """The plan's compute lines (labels ``width`` wide): total, tier, price, what is measured."""
    rate = est.rate
    fixed = f"{rate.per_request:g} + " if unit == "request" else ""
    lines = [
        f"  {'compute':<{width}}about {est.eecu_hours:,.1f} EECU-hours: {est.tier} (past "
        "the monthly allowance the project's computation is restricted)",
        f"  {'assumed':<{width}}{est.eecu_s_per_request:.3g} EECU-s per {unit} of "
        f"{est.pixels_per_request / 1e6:.3g} Mpx ({fixed}{rate.per_mpx:g} per Mpx; "
        f"{rate.source})",
    ]
    if unit == "request":
        lines.append(f"  {'measured':<{width}}{NOT_REPORTED}")
    else:
        lines.append(f"  {'measured':<{width}}each finished task reports its EECU "
                     "(batchEecuUsageSeconds): the run counts that, and prices the tasks "
                     "left from it")
    return lines


def format_duration(hours: float) -> str:
    """A rough duration in the unit a person reads best (small exports are not '0.0 h')."""
    if hours >= 1.0:
        return f"{hours:,.1f} h"
    minutes = hours * 60.0
    if minutes >= 1.0:
        return f"{minutes:.0f} min"
    return f"{max(1.0, minutes * 60.0):.0f} s"
