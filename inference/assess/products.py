"""Other maps on the sample's points: rasters, and Earth Engine products.

A comparison is ``NAME=SOURCE``:

- ``PATH`` (a local or ``gs://`` raster whose values are the map's class codes) or
  ``PATH:CODE,...`` (any raster; those values are impervious, every other value is not),
  read at the points in the raster's own CRS;
- ``worldcover[:2020|2021]``: ESA WorldCover, built-up (code 50) is impervious;
- ``dynamicworld:YEAR``: the mode of Dynamic World's ``label`` over the year, built (6);
- ``ghsl:YEAR[:FRACTION]``: GHSL built-up surface (``built_surface``, m² per 100 m cell), a
  cell is impervious when at least ``FRACTION`` (default 0.2) of it is built;
- ``ee:ASSET_ID[:BAND[:CODE,...]]``: any image asset (default: its first band holding the
  map's class codes).

Earth Engine products are sampled at the points with ``reduceRegions`` (the first value of the
pixel under each point, at the product's native scale) through the one Earth Engine seam
(:class:`gee_export.ee.session.EESession`); the rule that makes a product's value
impervious is applied here, the same for a raster and an asset. A product that says only
impervious or not is scored on two classes: the map's own when it has two, else "other" and
the map's impervious class (the reference collapsed the same way).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, InputDataError
from core.storage import files
from gee_export.ee.labels import GHSL_BUILT, GHSL_CELL_M2
from inference.assess.estimators import short_strata
from inference.assess.strata import Strata, values_at
from inference.cog.maps import NODATA

log = logging.getLogger(__name__)

SAMPLE_CHUNK = 500  # points per reduceRegions request (getInfo answers are limited in size)
WORLDCOVER = {2020: ("ESA/WorldCover/v100/2020", "Map"), 2021: ("ESA/WorldCover/v200/2021", "Map")}
WORLDCOVER_BUILT = 50
DYNAMIC_WORLD = "GOOGLE/DYNAMICWORLD/V1"
DYNAMIC_WORLD_BUILT = 6
DEFAULT_GHSL_FRACTION = 0.2


@dataclass(frozen=True)
class Comparison:
    """A parsed ``NAME=SOURCE``: where the values come from and which are impervious."""

    name: str
    kind: str  # raster, worldcover, dynamicworld, ghsl, ee
    source: str
    isa_rule: Callable[[np.ndarray], np.ndarray] | None  # None: values are the map's codes
    band: str | None = None
    year: int | None = None
    scale: float = 10.0

    @property
    def on_earth_engine(self) -> bool:
        return self.kind != "raster"


@dataclass(frozen=True)
class ProductAtPoints:
    """A product's class at every point, in its class scheme, and how the reference maps to it."""

    name: str
    source: str
    classes: tuple[str, ...]
    values: np.ndarray  # class codes in ``classes``; -1 where the product has no data
    reference_code: np.ndarray  # map class code -> this product's class code
    points_only: bool = False  # known only at the points (an Earth Engine product)


def _codes(text: str) -> Callable[[np.ndarray], np.ndarray]:
    try:
        codes = [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"impervious codes {text!r} must be numbers, e.g. :50 or :1,2"
                          ) from None
    return lambda v: np.isin(v, codes)


def parse_comparison(text: str) -> Comparison:
    """``NAME=SOURCE`` (see module docstring), checked before anything is read."""
    name, sep, source = text.partition("=")
    name, source = name.strip(), source.strip()
    if not sep or not name or not source:
        raise ConfigError(f"--compare {text!r} must be NAME=SOURCE, e.g. worldcover=worldcover "
                          "or old=old_class.tif")
    head, _, rest = source.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if head == "worldcover":
            year = int(parts[0]) if parts else 2021
            if year not in WORLDCOVER:
                raise ConfigError(f"--compare {name}: WorldCover exists for {sorted(WORLDCOVER)}")
            return Comparison(name, "worldcover", WORLDCOVER[year][0],
                              lambda v: v == WORLDCOVER_BUILT, WORLDCOVER[year][1], year)
        if head == "dynamicworld":
            if len(parts) != 1:
                raise ConfigError(f"--compare {name}=dynamicworld:YEAR (e.g. dynamicworld:2021)")
            year, now = int(parts[0]), datetime.date.today().year
            if year < 2015:
                raise ConfigError(f"--compare {name}: Dynamic World starts in 2015")
            if year > now:
                raise ConfigError(f"--compare {name}: Dynamic World has no images of {year} "
                                  f"(this is {now}); give a year from 2015 to {now}")
            return Comparison(name, "dynamicworld", DYNAMIC_WORLD,
                              lambda v: v == DYNAMIC_WORLD_BUILT, "label", year)
        if head == "ghsl":
            if not 1 <= len(parts) <= 2:
                raise ConfigError(f"--compare {name}=ghsl:YEAR[:FRACTION] (e.g. ghsl:2020:0.2)")
            year = int(parts[0])
            fraction = float(parts[1]) if len(parts) > 1 else DEFAULT_GHSL_FRACTION
            if year % 5 or not 1975 <= year <= 2030 or not 0 < fraction <= 1:
                raise ConfigError(f"--compare {name}: GHSL built surface exists every 5 years "
                                  "1975-2030, and FRACTION is in (0, 1]")
            return Comparison(name, "ghsl", f"{GHSL_BUILT}/{year}",
                              lambda v: v / GHSL_CELL_M2 >= fraction, "built_surface", year,
                              scale=100.0)
        if head == "ee":
            if not parts or not parts[0]:
                raise ConfigError(f"--compare {name}=ee:ASSET_ID[:BAND[:CODE,...]]")
            band = parts[1] if len(parts) > 1 and parts[1] else None
            rule = _codes(parts[2]) if len(parts) > 2 else None
            return Comparison(name, "ee", parts[0], rule, band)
    except ConfigError:  # a ValueError too: the rule it names, not "must be numbers"
        raise
    except ValueError:
        raise ConfigError(f"--compare {text!r}: years and fractions must be numbers") from None
    match = re.fullmatch(r"(.+?)(?::([0-9.,\s]+))?", source)
    assert match is not None  # ".+?" matches any non-empty source
    path, codes = match.group(1), match.group(2)
    if not files.is_gcs(path) and not Path(path).is_file():
        raise ConfigError(f"--compare {name}: {path} does not exist; give a class raster, with "
                          "its impervious codes as numbers where they are not the map's "
                          "(PATH:CODE,..., e.g. old.tif:1,2)")
    return Comparison(name, "raster", path, _codes(codes) if codes else None)


def ee_values(comparison: Comparison, lon: np.ndarray, lat: np.ndarray, ids: Sequence[str],
              session: Any) -> np.ndarray:
    """The product's raw value at each point (NaN where masked), via ``session``."""
    import ee

    image = ee_image(comparison, ee)
    out = np.full(lon.size, np.nan)
    index = {pid: i for i, pid in enumerate(ids)}
    for start in range(0, lon.size, SAMPLE_CHUNK):
        stop = min(start + SAMPLE_CHUNK, lon.size)
        points = ee.FeatureCollection([
            ee.Feature(ee.Geometry.Point([float(lon[i]), float(lat[i])]), {"id": ids[i]})
            for i in range(start, stop)])
        sampled = image.reduceRegions(collection=points, reducer=ee.Reducer.first(),
                                      scale=comparison.scale)
        answer = session.get_info(sampled, f"sampling {comparison.name} at points "
                                           f"{start + 1}-{stop}")
        for feature in (answer or {}).get("features", []):
            props = feature.get("properties") or {}
            if props.get("id") in index and props.get("first") is not None:
                out[index[props["id"]]] = float(props["first"])
    return out


def ee_image(comparison: Comparison, ee: Any) -> Any:
    """The product as one single-band ``ee.Image`` (built offline; nothing is called)."""
    if comparison.kind == "dynamicworld":
        year = int(comparison.year or 0)
        return (ee.ImageCollection(comparison.source)
                .filterDate(f"{year}-01-01", f"{year + 1}-01-01").select("label").mode())
    image = ee.Image(comparison.source)
    return image.select(comparison.band) if comparison.band else image.select(0)


def sample_product(comparison: Comparison, classes: Sequence[str], isa_class: int,
                   lon: np.ndarray, lat: np.ndarray, ids: Sequence[str],
                   session_factory: Callable[[], Any] | None = None) -> ProductAtPoints:
    """The product's class at every point (see module docstring)."""
    if comparison.on_earth_engine:
        if session_factory is None:
            raise ConfigError(f"--compare {comparison.name} reads Earth Engine: give --project")
        raw = ee_values(comparison, lon, lat, ids, session_factory())
        valid = np.isfinite(raw)
    else:
        raw = values_at(comparison.source, lon, lat).astype(np.float64)
        valid = raw != NODATA
    names, values, to_product = product_classes(comparison, classes, isa_class, raw, valid)
    bad = values[valid & ((values < 0) | (values >= len(names)))]
    if bad.size:
        raise InputDataError(f"--compare {comparison.name}: values "
                             f"{sorted({int(v) for v in bad})[:5]} "
                             f"are not the map's class codes 0..{len(classes) - 1}; give the "
                             "impervious codes (PATH:CODE,... or ee:ASSET:BAND:CODE,...)")
    return ProductAtPoints(comparison.name, comparison.source, names,
                           np.where(valid, values, -1).astype(np.int64), to_product,
                           points_only=comparison.on_earth_engine)


def product_classes(comparison: Comparison, classes: Sequence[str], isa_class: int,
                    raw: np.ndarray, valid: np.ndarray
                    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """A product's raw values as its classes: the one rule for its points and its pixels.

    Returns:
        The product's class names, its class code per value (-1 where not ``valid``; codes
        of a product without an impervious rule are its values, unchecked) and the map class
        -> product class table the reference goes through.
    """
    k = len(classes)
    if comparison.isa_rule is None:
        return tuple(classes), np.where(valid, raw, -1).astype(np.int64), np.arange(k)
    isa = comparison.isa_rule(np.nan_to_num(raw))
    if k == 2:
        names, to_product = tuple(classes), np.arange(2)
        values = np.where(isa, isa_class, 1 - isa_class)
    else:
        names = ("other", classes[isa_class])
        to_product = (np.arange(k) == isa_class).astype(np.int64)
        values = isa.astype(np.int64)
    return names, np.where(valid, values, -1).astype(np.int64), to_product


def check_coverage(product: ProductAtPoints, stratum: np.ndarray, strata: Strata) -> None:
    """Refuse a compared product with too few points of data in a stratum to be scored.

    Its estimates need 2 points with data in every stratum with area (the rule of
    :func:`inference.assess.estimators.short_strata`); checked as it is read, before its mapped
    area is counted, so the refusal names the product, not a stratum count. Points without
    data that leave it scorable are told in a warning.

    Raises:
        InputDataError: a stratum holds fewer than 2 of the product's points with data.
    """
    keep = product.values >= 0
    counts = np.bincount(stratum[keep], minlength=len(strata.classes))
    short = short_strata(counts, np.asarray(strata.area_km2), strata.pixels)
    if short.any():
        first = int(np.flatnonzero(short)[0])
        raise InputDataError(
            f"--compare {product.name} ({product.source}) has data at {int(keep.sum())} of "
            f"{keep.size} points, {int(counts[first])} of them in the stratum "
            f"{strata.classes[first]}: too few to score it (2 per stratum at least); compare "
            "a product that covers the sampled area, or leave it out")
    if not keep.all():
        log.warning("%s has no data at %d of %d points; they are left out of its scores",
                    product.name, int((~keep).sum()), keep.size)
