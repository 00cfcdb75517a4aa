"""The area-over-time picture of a map series, and the rows it draws.

:func:`plot_area` draws ``series_area.png`` from the :class:`SeriesAreaRow` rows that
:func:`area_rows_of` counts for :func:`inference.mapping.series.series_products` (one per zone
and date).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from contract.quicklook import titled
from core.shareable import shareable_path
from core.storage import atomic_path
from inference.predict import stats


@dataclass(frozen=True)
class SeriesAreaRow:
    """ISA area of one zone at one date (km²)."""

    zone: str
    date: str
    isa_km2: float
    isa_probability_km2: float | None
    valid_km2: float
    nodata_km2: float
    isa_fraction: float
    #: the class map counted, relative to ``--out``: the date's own, or with temporal
    #: consistency ``consistent/isa_<date>_class.tif`` (the date's own table counts its own)
    class_map: str = ""


def area_rows_of(mapped: Sequence[tuple[str, Any]], class_maps: Mapping[str, str],
                 zone_list: list, isa_class: int, recount: bool, out: str
                 ) -> list[SeriesAreaRow]:
    """Each date's ISA per zone: its area table, or counted again on its (consistent) map.

    Every row names the class map it counts, relative to ``out``.
    """
    rows_of_dates = []
    for month, outputs in mapped:
        rows = ([asdict(r) for r in stats.isa_area(class_maps[month], zone_list,
                                                   isa_class=isa_class)]
                if recount else json.loads(Path(outputs.area_json).read_text()))
        counted = shareable_path(class_maps[month], out)
        rows_of_dates += [SeriesAreaRow(row["zone"], month, row["isa_km2"],
                                        row.get("isa_probability_km2"), row["valid_km2"],
                                        row["nodata_km2"], row["isa_fraction"], counted)
                          for row in rows]
    return rows_of_dates


def empty_zones(rows: Sequence[SeriesAreaRow]) -> dict[str, list[str]]:
    """Zone -> the dates it has no valid pixel of the map at (zones with one only)."""
    empty: dict[str, list[str]] = {}
    for row in rows:
        if row.isa_fraction is None:
            empty.setdefault(row.zone, []).append(row.date)
    return empty


def plot_area(rows: Sequence[SeriesAreaRow], png: Path) -> Path:
    """ISA km² over time: one line per zone, every mapped date marked and labelled on the axis.

    The area axis starts at zero, so a line's slope shows the change relative to the area.

    Zones are named in the legend (the largest 15 when there are more; every value is in
    ``series_area.csv``), so the plot reads on its own. Around each line a shaded band spans
    the class map's area (the line) and the probability-weighted area (``isa_probability_km2``,
    the area the calibrated probabilities expect): how much the area depends on the pixels the
    model is unsure of. It is the model's own spread, not a sampling interval (an accuracy
    assessment's area estimate gives that: docs/accuracy.md); dates without the weighted area
    (temporal consistency relabels classes only) have no band. A zone's date without a valid
    pixel (outside the map, or all nodata) is a gap in its line: its table row says no data.
    """
    from matplotlib.figure import Figure

    zones: dict[str, list[SeriesAreaRow]] = {}
    for row in rows:
        if row.valid_km2 <= 0:  # no valid pixel of the zone that date: no area, a gap
            row = dataclasses.replace(row, isa_km2=math.nan, isa_probability_km2=None)
        zones.setdefault(row.zone, []).append(row)
    zones = {z: items for z, items in zones.items()
             if any(math.isfinite(r.isa_km2) for r in items)}
    months = sorted({row.date for row in rows})
    shown = sorted(zones, key=lambda z: -max(np.nan_to_num(r.isa_km2) for r in zones[z]))[:15]
    fig = Figure(figsize=(8, 4.5), dpi=100)  # no pyplot: no figure manager to close
    ax = fig.subplots()
    banded = False
    for zone in shown:
        items = sorted(zones[zone], key=lambda r: r.date)
        # matplotlib takes dates through its unit converters; its stubs type only numbers
        when: list[Any] = [_mid_month(r.date) for r in items]
        km2 = [r.isa_km2 for r in items]
        (line,) = ax.plot(when, km2, marker="o", label=zone)
        banded = _band(ax, when, items, line.get_color()) or banded
        if len(shown) <= 5 and len(items) <= 12:  # few points: each value written beside it
            for x, y in zip(when, km2, strict=True):
                if y is not None and math.isfinite(y):
                    ax.annotate(f"{y:,.2f}", (x, y), textcoords="offset points", xytext=(0, 6),
                                ha="center", fontsize=7)
    ticks: list[Any] = [_mid_month(m) for m in months]
    ax.set_xticks(ticks, months, rotation=30 if len(months) > 4 else 0, ha="right"
                  if len(months) > 4 else "center")
    if len(ticks) == 1:
        lo: Any = date.fromordinal(ticks[0].toordinal() - 60)
        hi: Any = date.fromordinal(ticks[0].toordinal() + 60)
        ax.set_xlim(lo, hi)
    ax.set_xlabel("mapped date (monthly composite)")
    ax.set_ylabel("impervious surface area (km²)")
    span = f"{months[0]} to {months[-1]}" if months else "no mapped date"
    ax.set_title(titled(f"Impervious surface area per zone, {span}"))
    # from zero: the maps' areas carry no interval, and a zoomed axis (20.94-21.06 km²) draws
    # a 0.5 % change as a steep rise
    highest = max((max(r.isa_km2 or 0.0, r.isa_probability_km2 or 0.0)
                   for z in shown for r in zones[z]), default=0.0)
    ax.set_ylim(0.0, highest * 1.15 if highest > 0 else 1.0)
    ax.grid(alpha=0.3)
    if banded:
        fig.text(0.01, 0.01, "line: the class map's area; shaded: up to the probability-weighted "
                 "area (the model's spread, not a sampling interval)", fontsize=7, ha="left",
                 va="bottom")
    if shown:
        more = len(zones) - len(shown)
        ax.legend(title="zone" if not more else f"zone (largest {len(shown)} of {len(zones)})",
                  fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    return png


def _band(ax: Any, when: list[Any], items: Sequence[SeriesAreaRow], colour: Any) -> bool:
    """Shade from each date's class-map area to its probability-weighted area; whether any."""
    band = [(x, r.isa_km2, r.isa_probability_km2) for x, r in zip(when, items, strict=True)
            if math.isfinite(r.isa_km2) and r.isa_probability_km2 is not None]
    if not band:
        return False
    xs = [x for x, _, _ in band]
    lows = [min(y, w) for _, y, w in band]
    highs = [max(y, w) for _, y, w in band]
    if len(band) == 1:  # one date: the span as an error bar
        y = band[0][1]
        ax.errorbar(xs, [y], yerr=[[y - lows[0]], [highs[0] - y]], color=colour, capsize=4,
                    linewidth=1)
    else:
        ax.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
    return True


def _mid_month(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 15)
