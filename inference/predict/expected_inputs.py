"""Is an input what the model was trained on? Its pixel size and its values, before any tile.

A network maps whatever numbers it is given. A stack of 30 m pixels given to a 10 m model, an
integer stack (reflectance x 10000, dB x 100), bands in another order than their names say:
each runs to the end and writes a map that looks like one, with the wrong area. So before the
first forward pass the input is compared with the training data the model file records:

- its pixel size with the training grid's (``ModelMeta.check_pixel_size``, the rule's one
  owner, also ``isamap-evaluate``'s), within ``training.model_meta.PIXEL_SIZE_TOLERANCE``;
- the median of each band in a decimated sample (at most :data:`SAMPLE_SIDE` pixels a side)
  with the band's 1st-99th percentile range in the training split (``ModelMeta.band_ranges``),
  by the rule's one owner, :func:`training.band_ranges.value_problems` (also
  ``isamap-evaluate``'s, on a dataset's patches). Outside the range (widened by
  ``training.band_ranges.RANGE_MARGIN``), the input is refused where the values are on another
  scale or of another kind (an integer export; dB where a reflectance should be). A median
  outside the range but near it is another scene, not another unit (water, snow, another
  season or region than the training data): it is mapped, with a warning that the model has
  not seen such values;
- the physical rules of each band's name (:mod:`contract.band_values`) when the
  model file records no ranges (files of older isamap versions), and always for band names the
  user stated (``--bands``), which nothing else confirms.

Sources that fetch their pixels on demand (Earth Engine tiles) are built by the model's own
recipe on its own grid; only their pixel size is compared, as a sample would cost requests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.io import DatasetReaderBase

from contract.backscatter import backscatter_note
from contract.band_values import (
    DARK_OBJECT_MIN,
    s1_unit_evidence,
    sigma0_unit_of_range,
)
from contract.bands import own_month
from contract.input_check import Fingerprint, judge_stack
from contract.input_facts import InputFacts, findings, input_facts, judge_level
from contract.s2_level import allowed_l1c, s2_level_of
from core.errors import InputDataError
from core.storage import files
from inference.predict.sources import (
    RasterSource,
    decimated_read,
    input_path,
    masked_read,
    open_source,
    select_bands,
)
from training.band_ranges import UNITS_FIX, not_trained_on, value_problems

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

SAMPLE_SIDE = 256
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
    if isinstance(source, DatasetReaderBase):  # a path the caller has open already
        return decimated_read(source, indexes, max_side)
    sample = getattr(source, "sample", None)
    return sample(indexes, max_side) if callable(sample) else None


@dataclass(frozen=True)
class Level:
    """What an input says of its Sentinel-2 level, and whether the model takes Level-1C.

    The level itself is judged from the pixels (:func:`contract.input_facts.judge_level`).

    Attributes:
        stated: ``"L1C"`` when the input says it is top of atmosphere (:func:`s2_level_of`).
        allowed: the user asked for Level-1C (an export forced with ``--allow-l1c``).
        model: why the model takes Level-1C input (None: it was trained on Level-2A).
    """

    stated: str | None = None
    allowed: bool = False
    model: str | None = None


#: input values per read of :func:`check_some_valid`'s scan (64 MB of float32)
SCAN_VALUES = 1 << 24


def check_some_valid(what: str, src: Any, indexes: Sequence[int], sample: np.ndarray,
                     bands: Sequence[str]) -> None:
    """Refuse an input without one pixel that has a value in every band that judges it.

    Such an input maps to nodata only (exit 0 with an empty map). The judged bands are the
    month's own (:func:`contract.bands.own_month`: a series stack's earlier month may be
    nodata and its pixels still map). The decimated ``sample`` (bands first) settles it for
    nearly every stack; only where it holds no such pixel are the rows scanned, until the
    first one (a stack of sparse data the sample missed).

    Raises:
        InputDataError: every pixel is nodata (NaN, or its band's nodata value) in some band.
    """
    own = list(own_month(bands))
    if np.isfinite(sample[own]).all(axis=0).any():
        return
    from rasterio.windows import Window

    judged = [indexes[k] for k in own]
    rows = max(1, SCAN_VALUES // max(1, src.width * len(judged)))
    for row in range(0, src.height, rows):
        window = Window(0, row, src.width, min(rows, src.height - row))
        if np.isfinite(masked_read(src, judged, window)).all(axis=0).any():
            return
    named = [bands[k] for k in own]
    raise InputDataError(f"{what} has no pixel with a value in every band the model reads "
                         f"({', '.join(named)}): all are nodata, so its map would be empty; "
                         "check the stack's export (or the nodata value it records)")


def check_input(source: str | RasterSource, meta: ModelMeta,
                band_order: Sequence[str] | None = None, flag: str = "--input",
                allow_implausible: bool = False) -> InputFacts:
    """Refuse an input whose pixel size or values are not those the model was trained on.

    The input is opened once: its grid, tags and a decimated sample of the model's bands,
    from which every value rule reads (:func:`contract.input_facts.input_facts`).

    Args:
        source: the stack (path) or an open :class:`inference.predict.sources.RasterSource`.
        meta: the model's ``training.modelfile.ModelMeta``.
        band_order: the band names the user stated (``--bands``), for a file without names.
        flag: how messages name the input.
        allow_implausible: map an input the heuristic rules doubt (:func:`check_physics`),
            the reason recorded in the returned facts' ``notes`` (``--allow-implausible``).

    Returns:
        What the sample showed, with the notes the map's tags and report must carry (why a
        doubted input was mapped; which Sentinel-1 backscatter the model learned where the
        pixels cannot show the stack holds it, :func:`contract.backscatter.backscatter_note`);
        empty facts for a source fetched on demand (built by the model's own recipe).

    Raises:
        InputDataError: another pixel size, values outside the training ranges, or values
            that cannot be the bands their names say.
    """
    path = input_path(source)
    what = f"{flag} {path}" if path is not None else "the input"
    with open_source(source) as src:
        indexes = select_bands(src.descriptions, meta.bands, band_order)
        _check_pixel_size(what, src, meta)
        level = _s2_level(src, meta)
        sample = (decimated_read(src, indexes, SAMPLE_SIDE) if isinstance(source, str)
                  else read_band_sample(src, indexes))
        if sample is not None:  # a file's, not pixels fetched on demand
            check_some_valid(what, src, indexes, sample, meta.bands)
    if sample is None:
        return InputFacts(None, None)
    samples = dict(zip(meta.bands, sample, strict=True))
    ranges = dict(meta.band_ranges)
    unlike: list[str] = []
    problems = value_problems(samples, ranges, unlike, named_by_user=band_order is not None)
    if not problems:
        recorded = Fingerprint.from_dict(dict(meta.extra).get("pixel_fingerprint"))
        facts = check_physics(what, samples, ranges, allow_implausible, level=level,
                              fingerprint=recorded)
        note = backscatter_note(facts.radar, meta.s1_backscatter(), ranges)
        if note:  # what the pixels cannot show, and why a mix-up is likely where it is
            log.warning("%s: %s", what, note)
            facts = replace(facts, notes=(*facts.notes, note))
        for text in unlike:  # a plausible input, in a known unit, of a scene the model
            log.warning("%s", text)  # has not seen: mapped, with this warning
        return facts
    fix = ("--bands must name the file's bands in the order they are stored: check that order "
           "(e.g. gdalinfo, or the export that wrote the file)" if band_order is not None else
           UNITS_FIX.format("the stack"))
    raise not_trained_on(what, problems, fix)


def check_physics(what: str, samples: Mapping[str, np.ndarray],
                  ranges: Mapping[str, Sequence[float]], allow_implausible: bool = False, *,
                  level: Level = Level(), fingerprint: Fingerprint | None = None) -> InputFacts:
    """Refuse values no real scene of these bands has, each with its fix; the facts shown.

    The one input check of every door, :func:`contract.input_check.judge_stack`: untagged fill
    (a constant in every band, or in one sensor's) is certain, and so is sigma0 in another unit
    than the model's. The stack against the training data's fingerprint (a model file's
    ``extra["pixel_fingerprint"]``: band order, scale, offset, calibration) and the spectral
    rules (:func:`contract.input_facts.findings`; VV/VH swapped; where the file records no
    fingerprint, older versions, the BOA offset left in and the red/blue spread) are judged
    from real scenes, so ``allow_implausible`` maps them, each reason recorded in the facts'
    ``notes`` (the map's
    tags and report). Top-of-atmosphere input, as its pixels show it (or, where they cannot,
    as the input says), is refused unless the model takes it or the user allowed it
    (:func:`contract.input_facts.judge_level`), and mapped with that recorded: its bright
    dark objects are path radiance, not an offset.
    """
    _check_s1_unit(what, samples, ranges)
    facts = input_facts(samples)
    judged = judge_level(facts, stated=level.stated, model_takes_l1c=level.model,
                         allowed=level.allowed)
    for note in judged.notes:
        log.warning("%s: %s", what, note)
    trained_dark = [float(ranges[b][0]) for b in samples if b in ranges]
    notes = judge_stack(
        what, samples, fingerprint=fingerprint, allow_implausible=allow_implausible,
        recorded_in="the map's tags", level=judged.taken, done="mapped",
        dark_rule=judged.taken != "L1C" and (not trained_dark
                                              or min(trained_dark) < DARK_OBJECT_MIN),
        first=[f"{f.text}; {f.fix}" for f in [judged.finding] if f])
    return replace(facts, notes=(*judged.notes, *notes))


def _check_s1_unit(what: str, samples: Mapping[str, np.ndarray],
                   ranges: Mapping[str, Sequence[float]]) -> None:
    """Refuse sigma0 in another unit (dB, linear) than the model was trained on."""
    for name in ("VV", "VH"):
        if name not in samples or name not in ranges:
            continue
        trained = sigma0_unit_of_range(tuple(ranges[name]))
        shown = s1_unit_evidence(samples[name])
        if trained and shown.unit in ("dB", "linear") and shown.unit != trained:
            amplitude = [f for f in findings(input_facts(samples)) if f.kind == "s1_amplitude"]
            if amplitude:
                raise InputDataError(f"{what}: {amplitude[0].text}, but the model was trained "
                                     f"on sigma0 {_UNITS[trained]}; {amplitude[0].fix}")
            fix = "10 * log10(value)" if trained == "dB" else "10 ** (value / 10)"
            raise InputDataError(
                f"{what}: {name} holds sigma0 {_UNITS[shown.unit]} ({shown.describe()}), but "
                f"the model was trained on sigma0 {_UNITS[trained]}; convert it ({fix} of each "
                "value) or give the stack isamap-export writes")


def _s2_level(src: Any, meta: ModelMeta) -> Level:
    """What the input says of its level, whether the user allowed Level-1C, and the model.

    Top-of-atmosphere reflectance adds the atmosphere's path radiance to every band (most in
    the blue); the pixels decide (:func:`contract.input_facts.judge_level`), the input's
    tags, B10 and recipe only where they cannot tell. A model trained on exports forced with
    ``--allow-l1c`` takes Level-1C; one trained on Level-2A maps it only where the user
    allowed it (``isamap-export`` / ``isamap-map --allow-l1c``), with that recorded in the
    map's tags (docs/real-data.md). An encoder pretrained on Level-1C (the registry's
    ``level``) does not make its fused model take it: on a real Level-1C series those
    models' maps change on a third to more than half of the ground when the scenes are
    dark-object subtracted (docs/evidence/change.md).
    """
    tags = src.tags() if callable(getattr(src, "tags", None)) else {}
    trained = (dict(meta.extra).get("dataset") or {}).get("recipe") or {}
    return Level(s2_level_of(tags, src.descriptions), allowed_l1c(tags),
                 "it was trained on Level-1C scenes (exported or imported with allow_l1c)"
                 if trained.get("allow_l1c") else None)


def _check_pixel_size(what: str, src: Any, meta: ModelMeta) -> None:
    if meta.training_pixel_size() is None:
        log.info("the model file records no training grid: the input's pixel size is not "
                 "checked")
        return
    meta.check_pixel_size(what, pixel_size_m(src.transform, src.crs, src.height))
