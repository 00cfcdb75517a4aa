"""A compared product's mapped area, counted from its pixels over the assessed region.

The stratified estimator gives every product a "mapped" area: the stratum-weighted share of
the points it maps in each class. That is the product's own pixel count only for the
raster that drew the strata (each point of a stratum is mapped in it); for any other
product it is an estimate from the points. A raster product's area is therefore counted:
read nearest onto the strata raster's grid (the product cell under each pixel's centre, as
:func:`inference.predict.keep.inputs.product_on` reads a product onto a map's grid), only
where the strata raster has a class, its values made classes by the rule its points go
through (:func:`inference.assess.products.product_classes`), each pixel weighted by its
ground area. A product known only at the points (Earth Engine) keeps the estimate, named as
one (``points_mapped_km2``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.errors import InputDataError
from core.storage import files
from inference.assess.products import Comparison, ProductAtPoints, product_classes
from inference.assess.strata import Strata, read_strata
from inference.cog.maps import NODATA, extra_codes_problem
from inference.predict.keep.inputs import product_on
from inference.predict.pixel_area import pixel_area_km2

log = logging.getLogger(__name__)

#: a date's folder of a series' maps (``maps/2021-06``, ``maps/2021-06-15``)
_DATE_FOLDER = re.compile(r"\d{4}-\d{2}(-\d{2})?")

Classify = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(raw values, valid) -> class codes`` (-1: no class) of a product's pixels."""


def region_raster(strata: Strata, candidates: tuple[str, ...]) -> str | None:
    """Which of ``candidates`` drew the design's strata: its classes and pixel counts are theirs.

    A design's record names its strata raster by file name only; the raster read now (the
    map scored, most often) is the region when its strata are the design's. None when none
    is: the areas then stay estimates from the points.
    """
    for path in dict.fromkeys(p for p in (strata.path, *candidates) if p):
        if not (files.is_gcs(path) or Path(path).is_file()):
            continue
        try:
            read = read_strata(path, strata.classes)
        except InputDataError:
            continue
        if read.strata_id == strata.strata_id:
            return path
    log.warning("the strata raster %s of the design is not at hand: compared products' mapped "
                "areas are estimated from the points", strata.path)
    return None


def strata_candidates(name: str, design: str | Path, map_path: str) -> tuple[str, ...]:
    """Where a design's strata raster, recorded by file ``name``, may be: local paths to try.

    Beside the design folder, beside the map scored, and, for a map in a date's folder of a
    series (``maps/2021-06/``), in the other dates' folders (a design drawn on one date's map,
    another date's map scored). Which one drew the strata is decided by their pixels
    (:func:`region_raster`), not by the name.
    """
    if not name or files.is_gcs(map_path):
        return ()
    here = Path(map_path).parent
    folders = [Path(design) if Path(design).is_dir() else Path(design).parent, here]
    if _DATE_FOLDER.fullmatch(here.resolve().name):
        folders += sorted(p for p in here.resolve().parent.iterdir()
                          if p.is_dir() and _DATE_FOLDER.fullmatch(p.name))
    found = (folder / Path(name).name for folder in dict.fromkeys(folders))
    return tuple(str(p) for p in found if p.is_file())


def counted_area(source: str, classify: Classify, classes: Sequence[str], region: str,
                 n_strata: int, given: str) -> tuple[float, ...]:
    """km² of each of the product's classes over ``region``'s classed pixels.

    Args:
        source: the product raster (any grid and CRS).
        classify: its values and their validity -> class codes 0..k-1 (-1 none).
        classes: the product's classes (``k``).
        region: the strata raster; pixels holding one of its ``n_strata`` classes count.
        n_strata: the strata's classes.
        given: the product as a refusal names it (``--compare old (old.tif)``).

    Raises:
        InputDataError: the product's pixels hold codes beyond its classes (a change map or
            another scheme's map given as the map's classes: its points may not show it).
    """
    k = len(classes)
    area, beyond = np.zeros(k), np.zeros(256, dtype=np.int64)
    with files.open_raster(region) as grid, files.open_raster(source) as prod, \
            product_on(prod, grid.crs, grid.transform, grid.width, grid.height) as vrt:
        nodata = prod.nodata
        for _, window in grid.block_windows(1):
            stratum = grid.read(1, window=window)
            raw = vrt.read(1, window=window).astype(np.float64)
            valid = (vrt.read_masks(1, window=window) > 0) & np.isfinite(raw) & (raw != NODATA)
            if nodata is not None:
                valid &= raw != nodata
            codes = classify(raw, valid)
            inside = (stratum < n_strata) & (stratum != NODATA) & (codes >= 0) & (codes < k)
            weights = np.broadcast_to(pixel_area_km2(
                grid.transform, grid.crs, int(window.row_off), int(window.height),
                int(window.col_off), int(window.width)), stratum.shape)
            area += np.bincount(codes[inside], weights=weights[inside], minlength=k)[:k]
            extra = codes[(stratum < n_strata) & (codes >= k) & (codes < 256)]
            beyond += np.bincount(extra, minlength=256)
    problem = extra_codes_problem(given, beyond, classes, "a map of these classes, or "
                                  "PATH:CODE,... naming the product's impervious codes")
    if problem:
        raise InputDataError(problem)
    return tuple(float(a) for a in area)


def mapped_areas(products: Sequence[ProductAtPoints], comparisons: Sequence[Comparison],
                 classes: Sequence[str], isa: int, region: str | None,
                 strata: Strata) -> dict[str, tuple[float, ...] | None]:
    """Each product's km² per class from its pixels over ``region`` (None: from the points).

    The product that is ``region`` itself (the map, when it drew the strata) is left out:
    its estimate is its pixel count. Earth Engine products, and every product when the
    region is not at hand, are known at the points only.
    """
    rules = {c.name: c for c in comparisons}
    out: dict[str, tuple[float, ...] | None] = {}
    for product in products:
        if region is not None and _same_file(product.source, region):
            continue
        if region is None or product.points_only:
            out[product.name] = None
            continue
        rule = rules.get(product.name)

        def classify(raw: np.ndarray, valid: np.ndarray,
                     rule: Comparison | None = rule) -> np.ndarray:
            if rule is None:  # the map scored: its values are its classes
                return np.where(valid, raw, -1).astype(np.int64)
            return product_classes(rule, classes, isa, raw, valid)[1]

        log.info("counting %s's mapped area on the strata's grid", product.name)
        out[product.name] = counted_area(product.source, classify, product.classes, region,
                                         len(strata.classes),
                                         f"--compare {product.name} ({product.source})"
                                         if rule else f"--map {product.source}")
    return out


def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    return "://" not in a + b and Path(a).resolve() == Path(b).resolve()
