"""Is an input what the model was trained on? Its pixel size and its values, before any tile.

A network maps whatever numbers it is given. A stack of 30 m pixels given to a 10 m model, an
integer stack (reflectance x 10000, dB x 100), bands in another order than their names say:
each runs to the end and writes a map that looks like one, with the wrong area. So before the
first forward pass the input is compared with the training data the model file records:

- its pixel size with the training grid's (``ModelMeta.training_pixel_size``), within
  :data:`PIXEL_SIZE_TOLERANCE`;
- the median of each band in a decimated sample (at most :data:`SAMPLE_SIDE` pixels a side)
  with the band's 1st-99th percentile range in the training split (``ModelMeta.band_ranges``),
  widened by :data:`RANGE_MARGIN` of its width on each side. Outside it, the input is refused
  where the values are on another scale or of another kind: a scale of :data:`_SCALES` brings
  them into the range (an integer export), or they lie more than :data:`FAR_SPANS` range widths
  away (dB where a reflectance should be). A median outside the range but near it is another
  scene, not another unit (water, snow, another season or region than the training data): it is
  mapped, with a warning that the model has not seen such values;
- the physical rules of each band's name (:mod:`gee_export.contract.band_values`) when the
  model file records no ranges (files of older isamap versions), and always for band names the
  user stated (``--bands``), which nothing else confirms.

Sources that fetch their pixels on demand (Earth Engine tiles) are built by the model's own
recipe on its own grid; only their pixel size is compared, as a sample would cost requests.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.crs import CRS

from gee_export.contract.band_values import (
    DARK_OBJECT_MIN,
    ZERO_FILL_MAX,
    band_value_problems,
    finite_values,
    offset_left_in,
    s1_unit_evidence,
    sigma0_swapped,
    sigma0_unit_of_range,
    zero_fill_share,
)
from gee_export.core.errors import InputDataError
from gee_export.core.storage import files
from inference.predict.sources import RasterSource, decimated_read, open_source, select_bands

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

SAMPLE_SIDE = 256
PIXEL_SIZE_TOLERANCE = 0.2  # reprojected lon/lat stacks differ by a few %; 30 m vs 10 m by 200 %
RANGE_MARGIN = 0.1
FAR_SPANS = 10.0  # dB under a reflectance is hundreds of widths away; another scene is a few
_SCALES = (10000.0, 100.0)  # integer exports: reflectance x 10000, dB x 100
_METRES_PER_DEGREE = 111_320.0
_UNITS = {"dB": "in dB", "linear": "in linear power"}


def pixel_size_m(transform: Any, crs: CRS | None, height: int) -> float | None:
    """Metres per pixel (the square root of a pixel's ground area), None without a CRS."""
    if crs is None:
        return None
    size = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    if crs.is_geographic:
        lat = transform.f + transform.e * height / 2
        return size * _METRES_PER_DEGREE * math.sqrt(max(math.cos(math.radians(lat)), 1e-6))
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return size * factor


def read_band_sample(source: str | RasterSource, indexes: Sequence[int],
                     max_side: int = SAMPLE_SIDE) -> np.ndarray | None:
    """A decimated read of the bands ``indexes`` as float32, nodata as NaN.

    None for a source whose pixels are fetched on demand (a sample would cost requests).
    """
    if isinstance(source, str):
        with rasterio.open(files.gdal_path(source)) as src:
            return decimated_read(src, indexes, max_side)
    sample = getattr(source, "sample", None)
    return sample(indexes, max_side) if callable(sample) else None


def range_problems(samples: Mapping[str, np.ndarray], ranges: Mapping[str, Sequence[float]],
                   warnings: list[str] | None = None) -> list[str]:
    """Bands whose sample median shows another scale or kind of value than the training data.

    A median outside the training range (with :data:`RANGE_MARGIN`) but within
    :data:`FAR_SPANS` range widths of it, and no scale of :data:`_SCALES` explaining it, is
    logged as a warning instead (or added to ``warnings``, for the caller to log once the
    input has passed its other checks): the input is plausible, the scene unlike the training
    data.
    """
    problems = []
    for name, values in samples.items():
        if name not in ranges:
            continue
        finite = finite_values(values)
        if finite.size < 16:
            continue
        p1, p50, p99 = (float(v) for v in ranges[name])
        margin = RANGE_MARGIN * max(p99 - p1, 1e-6)
        low, high = p1 - margin, p99 + margin
        median = float(np.median(finite))
        if low <= median <= high:
            continue
        guess = next((f" (x {scale:g} of values the model knows?)" for scale in _SCALES
                      if p1 <= median / scale <= p99 and median * p50 > 0), "")
        text = (f"{name} has a median of {median:.4g}, outside the {p1:.4g} to {p99:.4g} the "
                f"model saw in training (1st-99th percentile)")
        far = FAR_SPANS * max(p99 - p1, 1e-6)
        if guess or not p1 - far <= median <= p99 + far:
            problems.append(text + guess)
        else:
            unlike = (f"{text}: a scene unlike the training data; the model has not seen such "
                      "values and its map there may be poor")
            if warnings is None:
                log.warning("%s", unlike)
            else:
                warnings.append(unlike)
    return problems


def check_input(source: str | RasterSource, meta: ModelMeta,
                band_order: Sequence[str] | None = None, flag: str = "--input",
                allow_implausible: bool = False) -> None:
    """Refuse an input whose pixel size or values are not those the model was trained on.

    Args:
        source: the stack (path) or an open :class:`inference.predict.sources.RasterSource`.
        meta: the model's ``training.modelfile.ModelMeta``.
        band_order: the band names the user stated (``--bands``), for a file without names.
        flag: how messages name the input.
        allow_implausible: map an input the heuristic rules doubt (:func:`check_physics`),
            with a warning (``--allow-implausible``).

    Raises:
        InputDataError: another pixel size, values outside the training ranges, or values
            that cannot be the bands their names say.
    """
    what = f"{flag} {source}" if isinstance(source, str) else "the input"
    with open_source(source) as src:
        indexes = select_bands(src.descriptions, meta.bands, band_order)
        _check_pixel_size(what, src, meta)
        _warn_s2_level(what, src, meta)
    sample = read_band_sample(source, indexes)
    if sample is None:
        return
    samples = dict(zip(meta.bands, sample, strict=True))
    ranges = dict(meta.band_ranges)
    unlike: list[str] = []
    problems = range_problems(samples, ranges, unlike) if ranges else []
    if not ranges:
        log.info("the model file records no value ranges of its training data (an older "
                 "isamap wrote it): the input's values are checked against their band names "
                 "only")
    if not ranges or band_order is not None:
        problems += band_value_problems(samples)
    if not problems:
        check_physics(what, sample, samples, ranges, allow_implausible)
        for text in unlike:  # a plausible input, in a known unit, of a scene the model
            log.warning("%s", text)  # has not seen: mapped, with this warning
        return
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    fix = ("--bands must name the file's bands in the order they are stored: check that order "
           "(e.g. gdalinfo, or the export that wrote the file)" if band_order is not None else
           "give the stack in the units the model was trained on (float reflectance 0-1, "
           "sigma0 in dB), with its bands named in their order")
    raise InputDataError(f"{what} does not hold what the model was trained on: "
                         f"{problems[0]}{more}; {fix}")


def check_physics(what: str, sample: np.ndarray, samples: Mapping[str, np.ndarray],
                  ranges: Mapping[str, Sequence[float]], allow_implausible: bool = False) -> None:
    """Refuse values no real scene of these bands has (rules of ``band_values``), each with its fix.

    Zero fill without a nodata tag and sigma0 in another unit than the model's are certain;
    VV/VH swapped and the BOA offset left in are judged from typical scenes, so
    ``allow_implausible`` turns those two into warnings (a hazy or snow-covered scene can look
    like the offset).
    """
    zeros = zero_fill_share(sample)
    if zeros > ZERO_FILL_MAX:
        raise InputDataError(
            f"{what}: {100 * zeros:.1f} % of its pixels are 0 in every band, which no "
            "observation is (0 dB and 0 reflectance at once): fill without a nodata tag; tag "
            "it: rio edit-info --nodata 0 FILE")
    for name in ("VV", "VH"):
        if name not in samples or name not in ranges:
            continue
        trained = sigma0_unit_of_range(tuple(ranges[name]))
        shown = s1_unit_evidence(samples[name])
        if trained and shown.unit in ("dB", "linear") and shown.unit != trained:
            fix = "10 * log10(value)" if trained == "dB" else "10 ** (value / 10)"
            raise InputDataError(
                f"{what}: {name} holds sigma0 {_UNITS[shown.unit]} ({shown.describe()}), but "
                f"the model was trained on sigma0 {_UNITS[trained]}; convert it ({fix} of each "
                "value) or give the stack isamap-export writes")
    doubts = []
    if "VV" in samples and "VH" in samples:
        doubts.append(sigma0_swapped(samples["VV"], samples["VH"]))
    trained_dark = [float(ranges[b][0]) for b in samples if b in ranges]
    if not trained_dark or min(trained_dark) < DARK_OBJECT_MIN:  # the model knows no offset
        doubts.append(offset_left_in(samples))
    doubts = [d for d in doubts if d]
    if not doubts:
        return
    if allow_implausible:
        log.warning("%s: %s; mapped anyway (--allow-implausible)", what, doubts[0])
        return
    raise InputDataError(f"{what}: {doubts[0]}; fix the stack, or pass --allow-implausible if "
                         "the scene is real as it is (haze, snow cover)")


def s2_level_of(tags: Mapping[str, str], descriptions: Sequence[str | None]) -> str | None:
    """``"L1C"`` when a stack says it holds top-of-atmosphere Sentinel-2, else None.

    It says so by a ``PRODUCT_LEVEL`` tag ``L1C`` or ``Level-1C``, by a B10 band (Sen2Cor drops the
    cirrus band from L2A), or by an isamap export forced with ``--allow-l1c`` (its
    ``ISAMAP_RECIPE`` tag: such a stack may hold L1C scenes).
    """
    if re.search(r"(L|LEVEL-?)1C$", str(tags.get("PRODUCT_LEVEL", "")).strip().upper()):
        return "L1C"
    if any(str(d or "").upper() == "B10" for d in descriptions):
        return "L1C"
    try:
        recipe = (json.loads(tags.get("ISAMAP_RECIPE") or "{}").get("recipe") or {})
    except (ValueError, AttributeError):
        return None
    return "L1C" if recipe.get("allow_l1c") else None


def _warn_s2_level(what: str, src: Any, meta: ModelMeta) -> None:
    """Warn when a model trained on L2A surface reflectance is given Level-1C TOA input.

    TOA reflectance adds the atmosphere's path radiance to every band (most in the blue): the
    values stay on the reflectance scale, so the range check cannot tell them from a hazy
    scene, and the export refuses L1C scenes unless forced. A model trained on L2A maps such
    input as it maps haze (docs/real-data.md): a warning, not a refusal, as for other scenes
    unlike the training data.
    """
    tags = src.tags() if callable(getattr(src, "tags", None)) else {}
    if s2_level_of(tags, src.descriptions) != "L1C":
        return
    trained = (dict(meta.extra).get("dataset") or {}).get("recipe") or {}
    if trained.get("allow_l1c"):
        return
    log.warning("%s may hold Sentinel-2 Level-1C (top-of-atmosphere) reflectance, and the model "
                "was trained on Level-2A surface reflectance: the atmosphere's haze is in every "
                "band, and the map may be poor (see docs/real-data.md); map the L2A product, "
                "or train on L1C exports (isamap-export --allow-l1c)", what)


def _check_pixel_size(what: str, src: Any, meta: ModelMeta) -> None:
    trained = meta.training_pixel_size()
    if trained is None:
        log.info("the model file records no training grid: the input's pixel size is not "
                 "checked")
        return
    size = pixel_size_m(src.transform, src.crs, src.height)
    if size is None or abs(size / trained - 1.0) <= PIXEL_SIZE_TOLERANCE:
        return
    raise InputDataError(
        f"{what} has pixels of {size:.3g} m, but the model was trained on {trained:g} m pixels "
        f"(objects would look {trained / size:.2g} times their size to it); resample it to "
        f"the model's grid, e.g. gdalwarp -tr {trained:g} {trained:g} -r "
        f"{'average' if size < trained else 'bilinear'} IN OUT, or "
        f"use a model trained on {size:.3g} m pixels")
