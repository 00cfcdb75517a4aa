"""Sentinel-2 L2A monthly composite: cloud-masked median reflectance and a clear-count band.

``COPERNICUS/S2_SR_HARMONIZED`` already shifts processing-baseline >= 04.00 scenes back to the
old range, so reflectance is DN / 10000 everywhere. Clouds are masked with Cloud Score+
(``cs_cdf >= 0.60`` by default, linked by ``system:index``) or with the Sen2Cor SCL band; QA60
is not used (it was empty from Feb 2022 to Feb 2024). Each scene declares bilinear resampling
(applied once, when the grid asks for pixels: the 20 m bands are the only ones that move).

A month too cloudy for a usable median widens its window symmetrically, step by step, up to a
limit; the window actually used is recorded in the manifest. A month without any clear
observation even then fails with :class:`EmptyCompositeError` naming month and region.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from contract.archive import S2_L2A_COLLECTION as S2_COLLECTION
from core.errors import ConfigError, EmptyCompositeError
from core.months import month_dates

CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
# SCL classes kept as clear: 2 dark area, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified,
# 11 snow. Dropped: 0 nodata, 1 saturated, 3 cloud shadow, 8/9 cloud, 10 cirrus.
SCL_CLEAR = (2, 4, 5, 6, 7, 11)
CloudMask = Literal["cloudscoreplus", "scl"]


@dataclass(frozen=True)
class S2Recipe:
    """Every parameter of the Sentinel-2 composite (written to the manifest as is).

    Attributes:
        cloud_mask: 'cloudscoreplus' (default) or 'scl'.
        cs_threshold: keep pixels whose Cloud Score+ band is >= this (0.50-0.65 work).
        cs_band: 'cs_cdf' (robust to surface brightness) or 'cs'.
        min_clear: median clear observations over the region below which the window widens.
        widen_step_days: days added on *each* side per widening step.
        max_widen_days: most days added on each side before giving up.
    """

    cloud_mask: CloudMask = "cloudscoreplus"
    cs_threshold: float = 0.60
    cs_band: Literal["cs", "cs_cdf"] = "cs_cdf"
    min_clear: float = 1.0
    widen_step_days: int = 5
    max_widen_days: int = 15
    collection: str = S2_COLLECTION
    cloud_score_collection: str = CLOUD_SCORE_PLUS

    def __post_init__(self) -> None:
        if self.cloud_mask not in ("cloudscoreplus", "scl"):
            raise ConfigError(f"cloud mask {self.cloud_mask!r}: choose 'cloudscoreplus' or 'scl'")
        if not 0.0 <= self.cs_threshold <= 1.0:
            raise ConfigError(f"Cloud Score+ threshold must be in [0, 1], got {self.cs_threshold}")
        if self.widen_step_days < 1 or self.max_widen_days < 0:
            raise ConfigError("widen_step_days must be >= 1 and max_widen_days >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimeWindow:
    """Dates of a composite: ``start`` inclusive, ``end`` exclusive (ISO dates)."""

    month: str
    start: str
    end: str
    widened_days: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def month_window(month: str, widen_days: int = 0) -> TimeWindow:
    """The calendar month ``YYYY-MM``, optionally widened by ``widen_days`` on each side."""
    first, last = month_dates(month)
    delta = dt.timedelta(days=widen_days)
    return TimeWindow(month, (first - delta).isoformat(), (last + delta).isoformat(), widen_days)


def _mask_clouds(recipe: S2Recipe):
    import ee

    def by_cloud_score(img):
        return img.updateMask(img.select(recipe.cs_band).gte(recipe.cs_threshold))

    def by_scl(img):
        scl = img.select("SCL")
        clear = ee.Image.constant(0)
        for cls in SCL_CLEAR:
            clear = clear.Or(scl.eq(cls))
        return img.updateMask(clear)

    return by_cloud_score if recipe.cloud_mask == "cloudscoreplus" else by_scl


def s2_collection(region, start: str, end: str, recipe: S2Recipe, bands: tuple[str, ...]):
    """Cloud-masked scenes of ``bands`` in reflectance (DN / 10000), bilinear resampling."""
    import ee

    col = ee.ImageCollection(recipe.collection).filterBounds(region).filterDate(start, end)
    if recipe.cloud_mask == "cloudscoreplus":
        col = col.linkCollection(ee.ImageCollection(recipe.cloud_score_collection),
                                 [recipe.cs_band])
    mask = _mask_clouds(recipe)

    def prepare(img):
        img = mask(ee.Image(img))
        refl = img.select(list(bands)).divide(10000).resample("bilinear")
        return ee.Image(refl.copyProperties(img, ["system:time_start"]))

    return col.map(prepare)


def s2_composite(region, start: str, end: str, recipe: S2Recipe | None = None,
                 bands: tuple[str, ...] = ("B2", "B3", "B4", "B8")):
    """Median reflectance of ``bands`` + ``s2_clear_count`` (clear observations per pixel)."""
    recipe = recipe or S2Recipe()
    scenes = s2_collection(region, start, end, recipe, bands)
    median = scenes.median().rename(list(bands))
    count = scenes.select(bands[0]).count().rename("s2_clear_count").toFloat()
    return median.addBands(count)


CLEAR_COUNT_PIXELS = 250_000
"""Most pixels the clear-count check reduces: Earth Engine coarsens the scale past 200 m
(``bestEffort``) until a region fits, so a province costs what a city costs and the check
stays far inside the 5-minute limit of an interactive request."""

CLEAR_COUNT_TILE_SCALE = 4
"""Smaller tiles for the composite under the check (less memory per tile)."""


def clear_count_statistic(region, start: str, end: str, recipe: S2Recipe):
    """Server-side number: median over the region of the per-pixel clear count.

    Reduced at 200 m or coarser, at most :data:`CLEAR_COUNT_PIXELS` pixels whatever the
    region's size.
    """
    import ee

    count = s2_composite(region, start, end, recipe, ("B2",)).select("s2_clear_count")
    stats = count.unmask(0).reduceRegion(ee.Reducer.median(), region, 200.0, bestEffort=True,
                                         maxPixels=CLEAR_COUNT_PIXELS,
                                         tileScale=CLEAR_COUNT_TILE_SCALE)
    return ee.Number(stats.get("s2_clear_count"))


def choose_window(month: str, region_name: str, recipe: S2Recipe,
                  clear_count: Callable[[str, str], float]) -> TimeWindow:
    """The narrowest symmetric window around ``month`` with enough clear observations.

    ``clear_count(start, end)`` returns the region's median clear count for a window (the EE
    backend evaluates :func:`clear_count_statistic` through the session). Widening stops at
    ``recipe.max_widen_days`` per side; if even then nothing is clear, the month fails.
    """
    best: tuple[float, TimeWindow] | None = None
    widen = 0
    while widen <= recipe.max_widen_days:
        window = month_window(month, widen)
        value = float(clear_count(window.start, window.end) or 0.0)
        if value >= recipe.min_clear:
            return window
        if best is None or value > best[0]:
            best = (value, window)
        widen += recipe.widen_step_days
    if best is not None and best[0] > 0:
        return best[1]  # fewer than wanted but not empty: use the widest, manifest says so
    widest = month_window(month, recipe.max_widen_days)
    raise EmptyCompositeError(
        f"no clear Sentinel-2 observation over region {region_name!r} for month {month}, even "
        f"after widening the window to {widest.start}..{widest.end} "
        f"(cloud mask {recipe.cloud_mask}, threshold {recipe.cs_threshold}). Choose another "
        "month (--month), allow a wider window (--s2-max-widen-days) or lower the cloud "
        "threshold (--cloud-threshold).")
