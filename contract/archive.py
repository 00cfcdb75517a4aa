"""Which months the Sentinel archive can serve: the first month of each sensor, and no future.

A month before a sensor's first acquisitions, or one that has not begun, has no scenes: a run
would fail on its first request (or, worse, a dry run would print times for requests that can
only come back empty). :func:`check_months` refuses such months for the sensors the bands
need, before any work, for ``isamap-export`` and ``isamap-map`` alike, and returns a warning
for the month in progress (its composite holds only the scenes acquired so far).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from contract.bands import find_band, get_band, series_months
from core.errors import ConfigError, UnknownBandError
from core.months import check_month, earlier_month

#: the first month with scenes in the archive: Sentinel-1A's first IW GRD products (October
#: 2014), Sentinel-2A's launch (23 June 2015); the Satellite Embedding's first annual layer
#: (2017, gee_export/ee/embedding.py)
FIRST_MONTH = {"S1": "2014-10", "S2": "2015-06", "embedding": "2017-01"}
#: Earth Engine's Sentinel-2 L2A collection, which the Earth Engine recipe reads
S2_L2A_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
#: its first month of global cover: ESA produced L2A systematically over Europe from 2017 and
#: over the world from December 2018
GLOBAL_L2A_MONTH = "2019-01"
SENSOR_NAMES = {"S1": "Sentinel-1", "S2": "Sentinel-2", "embedding": "the Satellite Embedding"}


def sensors_of(bands: Sequence[str]) -> tuple[str, ...]:
    """The sources (``S1``, ``S2``, ``embedding``) ``bands`` come from (unknown names: none)."""
    found = set()
    for name in bands:
        try:
            found.add(get_band(name).sensor)
        except UnknownBandError:
            continue
    return tuple(s for s in FIRST_MONTH if s in found)


def check_months(months: Sequence[str], bands: Sequence[str],
                 today: dt.date | None = None, earth_engine: bool = False) -> list[str]:
    """Refuse months the archive cannot serve for ``bands``; warnings for the others.

    Args:
        months: ``YYYY-MM`` months to export or map.
        bands: the bands asked for (their sensors decide the first month).
        today: the date to compare with (default: today, UTC).
        earth_engine: the months are read from Earth Engine's catalogue, whose Sentinel-2
            L2A is global only from :data:`GLOBAL_L2A_MONTH`.

    Returns:
        One warning per month still in progress, and with ``earth_engine`` one for the
        Sentinel-2 months before :data:`GLOBAL_L2A_MONTH`.

    Raises:
        ConfigError: a month in the future, or before the first scenes of a sensor the bands
            need.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    current = f"{today.year:04d}-{today.month:02d}"
    months = [check_month(m) for m in months]
    future = [m for m in months if m > current]
    reached = series_reach(months, bands)
    if future:
        raise ConfigError(f"month(s) {', '.join(future)} are in the future (this is {current}): "
                          "no scene exists yet; choose months up to the current one")
    for sensor in sensors_of(bands):
        first = FIRST_MONTH[sensor]
        early = [m for m in reached if m < first]
        if early:
            raise ConfigError(
                f"month(s) {', '.join(early)} are before the first {SENSOR_NAMES[sensor]} "
                f"scenes ({first}), which the bands {', '.join(bands)} need"
                f"{_reach_note(months, bands)}; choose months from {first} on")
    warnings = [f"month {m} is not over: its composite holds only the scenes acquired so far, "
                "and mapping it again later gives another result" for m in months if m == current]
    partial = [m for m in reached if m < GLOBAL_L2A_MONTH] if earth_engine \
        and "S2" in sensors_of(bands) else []
    if partial:
        warnings.append(
            f"month(s) {', '.join(partial)}{_reach_note(months, bands)}: Earth Engine's "
            "Sentinel-2 L2A "
            f"({S2_L2A_COLLECTION}) is global only from {GLOBAL_L2A_MONTH[:4]} (before, mostly "
            "Europe), so parts of the area may have no scene: a month with none is skipped, one "
            "with a part covers that part only; look at the month's scenes in the Code Editor, "
            f"or start from {GLOBAL_L2A_MONTH[:4]}")
    return warnings


def series_reach(months: Sequence[str], bands: Sequence[str]) -> list[str]:
    """The months a run of ``months`` reads, sorted: a series stack's earlier months too.

    ``B4_m2`` in ``bands`` (:func:`contract.bands.series_months`) reads each month's two
    months before it as well.
    """
    back = series_months([b for b in bands if find_band(b) is not None])
    return sorted({earlier_month(m, k) for m in months for k in range(back)})


def _reach_note(months: Sequence[str], bands: Sequence[str]) -> str:
    """``" (the series reaches back to 2019-04)"`` where earlier months are read, else ""."""
    reached = series_reach(months, bands)
    return f" (the series reaches back to {reached[0]})" if reached[0] < min(months) else ""
