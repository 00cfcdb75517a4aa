"""How an estimate and its ± spread are written in reports, tables and docs: one rule.

A printed "± 0.0" reads as an exact value. The spread of an estimate from a sample is zero
when the sample shows no variation (every sampled point of a class agrees with the
reference), not when the value is known exactly, and a spread smaller than the printed
precision is not zero either. So, at ``digits`` decimals:

- a spread of exactly zero is written :data:`NO_INTERVAL` ("(n.i.)"), and the table that
  shows it carries a note saying why (:data:`NO_INTERVAL_NOTE` for a sample's interval);
- a spread that would round to zero is written ``± <0.1`` (``± <0.001`` at three decimals);
- any other is ``± x`` at ``digits`` decimals.

The rule needs the unrounded spread, so figures kept for later formatting (the JSON of
docs/accuracy.md) are stored at full precision. ``inference.assess.report`` (``report.md``),
``inference.demo.figures`` (docs/accuracy.md) and the land-cover experiment's tables use it.
"""

from __future__ import annotations

import math

NO_INTERVAL = "(n.i.)"
"""Written instead of a zero-width spread."""

NO_INTERVAL_NOTE = (
    "n.i.: no interval. The sample shows no variation there (every sampled point of the "
    "class agrees, or disagrees, with the reference), so the estimator's 95 % interval has "
    "zero width; the value is not exact: more points would give an interval.")
"""The note under a table of sample estimates that shows :data:`NO_INTERVAL`."""


def half_width(spread: float, digits: int) -> str:
    """``± x`` at ``digits`` decimals; :data:`NO_INTERVAL` for zero, ``± <0.1`` if it rounds to 0.

    Args:
        spread: a 95 % half-width or a standard deviation, in the unit printed (>= 0).
        digits: decimals printed.
    """
    if spread == 0:
        return NO_INTERVAL
    smallest = 10.0 ** -digits
    return f"± <{smallest:.{digits}f}" if spread < smallest / 2 else f"± {spread:.{digits}f}"


def estimate(value: float | None, spread: float | None = None, digits: int = 1,
             scale: float = 1.0) -> str:
    """``value ± spread`` by :func:`half_width`'s rule; ``n/a`` for no value.

    Args:
        value: the estimate (None or NaN: not estimable, e.g. an accuracy of a class no
            point was mapped or found in).
        spread: its half-width or standard deviation (None or NaN: the value alone).
        digits: decimals of both.
        scale: factor applied to both before printing (100 for fractions shown as %).
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{scale * value:.{digits}f}"
    if spread is None or not math.isfinite(spread):
        return text
    return f"{text} {half_width(scale * spread, digits)}"


def notes(lines: list[str], note: str = NO_INTERVAL_NOTE) -> list[str]:
    """``note`` (after a blank line) when any of ``lines`` shows :data:`NO_INTERVAL`, else none."""
    return ["", note] if any(NO_INTERVAL in line for line in lines) else []


FROM_POINTS = "(from the points)"
"""Marks a product's mapped km² that is the points' estimate, not a count of its pixels."""

POINTS_NOTE = ("Mapped km² \"(from the points)\": the stratified estimate of the share of "
               "points the product maps in the class, not a count of its pixels (a product "
               "known at the points only: an Earth Engine product, a raster whose strata "
               "raster was not at hand, or figures recorded before rasters were counted).")
"""The note under a table that shows :data:`FROM_POINTS`."""

