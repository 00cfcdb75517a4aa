"""One Earth Engine image holding every band and the label, all on the dataset's grid.

Co-registration by construction: every band is reprojected with the grid's ``crs`` and
``crsTransform`` (never a ``scale``, which would let Earth Engine pick the origin), so patch
requests at any window of the grid hit the same pixel lattice. Resampling happens exactly once
per source pixel: continuous sources declare bilinear on each scene (sentinel1/sentinel2), the
composites are computed directly on the grid, and the final reprojection onto the same grid moves
nothing. Labels use mode (``reduceResolution``) when the source is a single fixed-projection
image, and nearest on each scene when it is a composite (Dynamic World) computed on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contract.bands import LABEL, PRODUCT, SERIES_SENSORS, get_band
from contract.grid import Grid
from contract.label_schemes import check_product_band
from core.errors import ConfigError
from core.months import earlier_month
from gee_export.ee.embedding import embedding_on_grid
from gee_export.ee.labels import LabelSource, label_image, landcover_codes
from gee_export.ee.sentinel1 import S1Recipe, s1_composite
from gee_export.ee.sentinel2 import S2Recipe, TimeWindow, month_window, s2_composite

FLOAT_NODATA = -3.0e38  # masked float pixels arrive as this (NUMPY_NDARRAY has no mask) -> NaN
LABEL_MAX_PIXELS = 1024  # input pixels per output pixel for the label's mode (1 m -> 10 m: 100)


@dataclass(frozen=True)
class EERecipe:
    """Everything that defines the Earth Engine stack besides the grid and the dates."""

    bands: tuple[str, ...]
    s1: S1Recipe = field(default_factory=S1Recipe)
    s2: S2Recipe = field(default_factory=S2Recipe)
    label: LabelSource | None = None
    fine_scale: int | None = None

    def __post_init__(self) -> None:
        for name in self.bands:
            if get_band(name).sensor == "label":
                raise ConfigError("'label' is not an image band; choose the label with --labels")
        if self.fine_scale is not None and (self.fine_scale < 2 or self.label is None):
            raise ConfigError("a fine-scale label needs --labels and an integer factor >= 2")
        check_product_band(self.bands, ("landcover:" + self.label.scheme)
                           if self.label is not None and self.label.kind == "landcover"
                           else None)

    def to_dict(self) -> dict[str, Any]:
        return {"bands": list(self.bands), "s1": self.s1.to_dict(), "s2": self.s2.to_dict(),
                "label": self.label.to_dict() if self.label else None,
                "fine_scale": self.fine_scale}


def on_grid(image, grid: Grid):
    """``image`` reprojected onto ``grid`` with its crs and crsTransform."""
    return image.reproject(crs=grid.crs, crsTransform=grid.crs_transform)


def categorical_on_grid(image, grid: Grid, source: LabelSource):
    """A categorical image of ``source`` on ``grid``: mode of its pixels, nearest for composites."""
    import ee

    if not source.is_composite:
        image = image.reduceResolution(ee.Reducer.mode(), maxPixels=LABEL_MAX_PIXELS)
    return on_grid(image, grid)


def label_on_grid(label, grid: Grid, source: LabelSource):
    """The label on ``grid`` (:func:`categorical_on_grid`)."""
    return categorical_on_grid(label, grid, source).rename(LABEL)


def product_on_grid(source: LabelSource, grid: Grid, window: TimeWindow, region):
    """The ``product`` band: the label source's own codes on ``grid``, float32.

    Put on the grid as the label is (mode of a fixed image's pixels, nearest for a
    composite), masked pixels FLOAT_NODATA; the codes are not remapped.
    """
    codes = landcover_codes(source, region, window.start, window.end, int(window.month[:4]))
    return categorical_on_grid(codes, grid, source).toFloat().unmask(
        FLOAT_NODATA, False).rename(PRODUCT)


def _source_of(name: str) -> str:
    if name == PRODUCT:
        return PRODUCT
    spec = get_band(name)
    if spec.sensor == "S2" or name == "s2_clear_count":
        return "S2"
    if spec.sensor == "S1" or name == "s1_scene_count":
        return "S1"
    if spec.sensor == "embedding":
        return "embedding"
    raise ConfigError(f"band {name!r} has no Earth Engine source")


def sentinel_composites_of(bands: tuple[str, ...] | list[str]
                           ) -> dict[tuple[int, str], tuple[str, ...]]:
    """Which Sentinel composites ``bands`` read, each with the base bands it composites.

    Keyed ``(months before, "S2" or "S1")``; the bases are empty for a count band's
    composite alone. The one owner of that grouping: :func:`build_stack` composites each;
    the export's and the map's check that every earlier month holds scenes
    (:func:`gee_export.ee.prediction_stack.require_series_scenes`) counts each.
    """
    wanted: dict[tuple[int, str], list[str]] = {}
    for name in bands:
        source = _source_of(name)
        if source in SERIES_SENSORS:
            spec = get_band(name)
            bases = wanted.setdefault((spec.months_before, source), [])
            if spec.sensor == source:  # a spectral band or polarisation, not a count
                bases.append(spec.base)
    return {key: tuple(bases) for key, bases in wanted.items()}


def _sentinel_composites(recipe: EERecipe, window: TimeWindow, s1_window: TimeWindow,
                         region) -> dict[tuple[int, str], Any]:
    """The Sentinel-2 and Sentinel-1 composites the bands read, by (months before, sensor).

    The month's own use ``window`` and ``s1_window``; an earlier month of a series stack
    (``B4_m2``) its calendar month, never widened (a widened window would overlap the
    neighbouring months of the series; its cloudy pixels stay nodata), by the same recipe.
    """
    composites: dict[tuple[int, str], Any] = {}
    for (k, source), bases in sentinel_composites_of(recipe.bands).items():
        own = series_window(window, k) if source == "S2" else series_window(s1_window, k)
        if source == "S2":
            composites[k, source] = s2_composite(region, own.start, own.end, recipe.s2,
                                                 bases or ("B2",))
        else:
            composites[k, source] = s1_composite(region, own.start, own.end, recipe.s1,
                                                 bases or ("VV", "VH"))
    return composites


def series_window(window: TimeWindow, months_before: int) -> TimeWindow:
    """``window`` for the month's own bands; the calendar month ``months_before`` earlier."""
    return window if months_before == 0 else \
        month_window(earlier_month(window.month, months_before))


def build_stack(grid: Grid, window: TimeWindow, recipe: EERecipe, region,
                s1_window: TimeWindow | None = None, with_label: bool = True):
    """The image to export, every band on ``grid``.

    Bands: ``recipe.bands`` as float32 (masked -> FLOAT_NODATA; ``product`` from the label
    source, :func:`product_on_grid`; the Satellite Embedding's as its published 8-bit
    integers, masked -128, for the year of the calendar month,
    :func:`gee_export.ee.embedding.embedding_on_grid`), then ``label`` (0/1/255, carried as
    float so one request holds everything) when a label source is set and ``with_label`` (a
    map's input reads the source for its ``product`` band only).

    ``window`` is the Sentinel-2 window (possibly widened); Sentinel-1 uses the calendar month
    (``s1_window``) since its scenes do not depend on the weather. A band of an earlier month
    (``B4_m2``, a series stack) is its base band composited for that month
    (:func:`_sentinel_composites`), renamed.
    """
    import ee

    s1_window = s1_window or window
    composites = _sentinel_composites(recipe, window, s1_window, region)
    embedded = [b for b in recipe.bands if _source_of(b) == "embedding"]
    embedding = (embedding_on_grid(grid, int(s1_window.month[:4]), region, embedded)
                 if embedded else None)
    parts = []
    for name in recipe.bands:
        if name == PRODUCT and recipe.label is not None:  # the recipe checked the source
            parts.append(product_on_grid(recipe.label, grid, window, region))
            continue
        if embedding is not None and name in embedded:  # int8, already on the grid
            parts.append(embedding.select([name]))
            continue
        spec = get_band(name)
        src = composites[spec.months_before, _source_of(name)]
        band = src.select([spec.base]).rename(name).toFloat().unmask(FLOAT_NODATA, False)
        parts.append(on_grid(band, grid))
    stack = ee.Image.cat(parts)
    if recipe.label is not None and with_label:
        label = label_image(recipe.label, region, window.start, window.end,
                            int(window.month[:4]))
        stack = stack.addBands(label_on_grid(label, grid, recipe.label).toFloat())
    return stack


def build_fine_label(grid: Grid, window: TimeWindow, recipe: EERecipe, region):
    """The label on ``grid.scaled(fine_scale)``: same origin, integer finer pixels."""
    if recipe.label is None or recipe.fine_scale is None:
        raise ConfigError("no fine-scale label was requested")
    label = label_image(recipe.label, region, window.start, window.end, int(window.month[:4]))
    return label_on_grid(label, grid.scaled(recipe.fine_scale), recipe.label).toFloat()
