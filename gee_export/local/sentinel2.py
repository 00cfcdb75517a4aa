"""Sentinel-2 L2A monthly composite in numpy: reflectance, SCL cloud mask, per-pixel median.

The recipe matches the Earth Engine side (``COPERNICUS/S2_SR_HARMONIZED`` masked with SCL, median
over the month): reflectance = (DN + BOA_ADD_OFFSET) / 10000 with the offset -1000 for
processing baseline >= 04.00 (Earth Engine's harmonized collection already removed it); DN 0 is
nodata; SCL classes 3 (cloud shadow), 8, 9 (cloud medium/high), 10 (cirrus) and 11 (snow) and
SCL 0 (nodata) are masked; the median is taken over the clear observations only and the number
of clear observations is the ``s2_clear_count`` quality band.

``monthly_median`` is the pure numpy entry point (arrays in, arrays out); ``composite_window``
reads scenes onto one grid window with :mod:`gee_export.local.warp`.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Sequence

import numpy as np

from contract.grid import Grid, Window
from contract.s2_level import refuse_or_warn_l1c
from core.errors import InputDataError
from gee_export.local import plausibility
from gee_export.local.cloud_flags import CloudFlagCheck, visible_band
from gee_export.local.scenes import Scene
from gee_export.local.warp import read_to_grid

log = logging.getLogger(__name__)

SCL_MASKED_CLASSES: tuple[int, ...] = (3, 8, 9, 10, 11)
#: Sen2Cor's cloud classes: cloud medium and high probability, thin cirrus
SCL_CLOUD_CLASSES: tuple[int, ...] = (8, 9, 10)
SCL_NODATA = 0
#: the scene classification's surface classes (0 is nodata, always masked)
SCL_CLASSES = range(1, 12)
BASELINE_OFFSET_DATE = dt.date(2022, 1, 25)  # first products of processing baseline 04.00
BOA_ADD_OFFSET = -1000.0
DN_SCALE = 1e-4


def clear_from_scl(scl: np.ndarray, masked: Sequence[int] = SCL_MASKED_CLASSES) -> np.ndarray:
    """True where an SCL pixel is usable: not nodata (0, or negative fill) and not masked."""
    scl = np.asarray(scl)
    return (scl > SCL_NODATA) & ~np.isin(scl, np.asarray(masked))


def clear_from_cloud_mask(mask: np.ndarray) -> np.ndarray:
    """True where a cloud mask says clear (0); anything > 0 is cloud, negative is nodata."""
    mask = np.asarray(mask)
    return mask == 0


def monthly_median(reflectance: np.ndarray, clear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median of the clear observations of a time series.

    Args:
        reflectance: ``(time, bands, rows, cols)`` values, NaN = nodata.
        clear: ``(time, rows, cols)`` booleans; False observations never enter the median.

    Returns:
        ``(composite, clear_count)``: ``(bands, rows, cols)`` float32 with NaN where no clear
        observation exists, and ``(rows, cols)`` float32 counts of the observations used.
    """
    reflectance = np.asarray(reflectance, dtype=np.float32)
    clear = np.asarray(clear, dtype=bool)
    if reflectance.ndim != 4 or clear.shape != (reflectance.shape[0], *reflectance.shape[2:]):
        raise InputDataError(f"expected (time, bands, rows, cols) values and (time, rows, cols) "
                             f"mask, got {reflectance.shape} and {clear.shape}")
    usable = clear & np.isfinite(reflectance).all(axis=1)
    masked = np.where(usable[:, None], reflectance, np.nan)
    count = usable.sum(axis=0)
    return _nanmedian_time(masked, count), count.astype(np.float32)


def _nanmedian_time(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN, for the few observations of a month.

    ``np.nanmedian`` goes through masked arrays and ``np.sort`` along a short first axis is
    slow, so up to 24 observations are sorted with an odd-even transposition network of
    element-wise min/max (NaN replaced by +inf so it sorts last); the median of the ``n``
    finite values then sits at positions (n-1)//2 and n//2.
    """
    t = values.shape[0]
    if t == 0:
        return np.full(values.shape[1:], np.nan, dtype=np.float32)
    rows = [np.where(np.isnan(v), np.inf, v) for v in values]
    if t <= 24:
        for step in range(t):
            for i in range(step % 2, t - 1, 2):
                rows[i], rows[i + 1] = np.minimum(rows[i], rows[i + 1]), np.maximum(rows[i],
                                                                                    rows[i + 1])
    else:
        rows = list(np.sort(np.stack(rows), axis=0))
    n = np.broadcast_to(count, values.shape[1:])
    lo_idx, hi_idx = np.maximum(n - 1, 0) // 2, n // 2
    low = np.full(values.shape[1:], np.nan, dtype=np.float32)
    high = np.full(values.shape[1:], np.nan, dtype=np.float32)
    for k, row in enumerate(rows):
        low = np.where(lo_idx == k, row, low)
        high = np.where(hi_idx == k, row, high)
    return np.where(n > 0, (low + high) / 2, np.nan).astype(np.float32)


def boa_offset(scene: Scene, override: float | None = None) -> float:
    """The BOA_ADD_OFFSET to add to DNs of this scene (0 or -1000).

    Order: the caller's value; the scene's BOA_ADD_OFFSET tag; the processing baseline in the
    metadata or product name (``_N0400_`` -> 04.00); else the acquisition date (on or after
    2022-01-25 all products carry the offset), with a warning because reprocessed or harmonized
    exports may already have removed it.
    """
    if override is not None:
        return float(override)
    if scene.boa_add_offset is not None:
        return scene.boa_add_offset
    if scene.baseline is not None:
        try:
            major = float(scene.baseline)
        except ValueError:
            raise InputDataError(f"{scene.product}: processing baseline {scene.baseline!r} is "
                                 "not a number like 04.00") from None
        return BOA_ADD_OFFSET if major >= 4.0 else 0.0
    if scene.date >= BASELINE_OFFSET_DATE:
        warnings.warn(f"{scene.product}: no processing baseline or BOA_ADD_OFFSET in metadata; "
                      f"acquired {scene.date} (>= 2022-01-25) so assuming offset -1000. If the "
                      "DNs were already harmonized, pass --boa-add-offset 0 or tag the files "
                      "with: rio edit-info --tag BOA_ADD_OFFSET=0 FILE (Python: "
                      "boa_add_offset=0)", stacklevel=2)
        return BOA_ADD_OFFSET
    return 0.0


def check_level(scene: Scene, allow_l1c: bool = False) -> None:
    """Refuse Level-1C (top-of-atmosphere) input, or warn when the user forces it.

    The level comes from the band set before the name (see ``Scene.level_reason``), so an
    L1C product renamed L2A is caught too.
    """
    if scene.level == "L1C":
        why = f" ({scene.level_reason})" if scene.level_reason else ""
        refuse_or_warn_l1c(f"{scene.product} is Sentinel-2 Level-1C{why}", allow_l1c,
                           "composite")


def check_plausible(scenes: Sequence[Scene], bands: Sequence[str], offsets: dict[str, float],
                    reflectance_bands: frozenset[tuple[str, str]]) -> None:
    """Refuse scenes whose first requested band does not scale to surface reflectance.

    One decimated sample per scene (see :mod:`gee_export.local.plausibility`), converted
    exactly as the composite will convert it.
    """
    if not bands:
        return
    band = bands[0]
    for scene in scenes:
        sample = plausibility.read_sample(scene.band(band))
        if (scene.product, band) not in reflectance_bands:
            sample = dn_to_reflectance(zero_is_nodata(sample), offsets.get(scene.product, 0.0))
        plausibility.check_reflectance(sample, f"Sentinel-2 {scene.product} {band}")


def check_band_names(scenes: Sequence[Scene], offsets: dict[str, float],
                     reflectance_bands: frozenset[tuple[str, str]],
                     trust_names: bool = False) -> None:
    """Refuse scenes whose band names their reflectances contradict (``--s2-band-names``).

    One decimated sample of every spectral band, converted as the composite converts it,
    each checked for reflectance range, then all together for their spectral relations
    (:func:`gee_export.local.plausibility.check_s2_band_names`); ``trust_names``
    (``--trust-band-names``) makes a contradiction of those relations a warning: they hold
    in typical scenes, not in every real one.
    """
    for scene in scenes:
        samples = {}
        for band in scene.band_names:
            if band in ("SCL", "CLOUD_MASK"):
                continue
            sample = plausibility.read_sample(scene.band(band))
            if (scene.product, band) not in reflectance_bands:
                sample = dn_to_reflectance(zero_is_nodata(sample),
                                           offsets.get(scene.product, 0.0))
            plausibility.check_reflectance(sample, f"Sentinel-2 {scene.product} {band}")
            samples[band] = sample
        try:
            plausibility.check_s2_band_names(samples, f"Sentinel-2 {scene.product}")
        except InputDataError as exc:
            if not trust_names:
                raise
            log.warning("%s; used as named (--trust-band-names)", str(exc).split("; ")[0])


def zero_is_nodata(dn: np.ndarray) -> np.ndarray:
    """DN 0 is Sentinel-2 nodata even when a file does not declare it."""
    return np.where(dn == 0, np.nan, dn)


def dn_to_reflectance(dn: np.ndarray, offset: float) -> np.ndarray:
    """(DN + offset) / 10000; DN 0 / NaN stay NaN. Float input <= 2 is taken as reflectance."""
    return (np.asarray(dn, dtype=np.float32) + np.float32(offset)) * np.float32(DN_SCALE)


def is_reflectance(scene: Scene, band: str) -> bool:
    """Whether a band already holds 0-1 reflectance (float GeoTIFF tagged or valued so)."""
    import rasterio

    ref = scene.band(band)
    with rasterio.open(ref.path) as src:
        if src.dtypes[ref.index - 1].startswith("float"):
            step = max(1, max(src.width, src.height) // 256)
            sample = src.read(ref.index, out_shape=(max(1, src.height // step),
                                                    max(1, src.width // step)))
            finite = sample[np.isfinite(sample) & (sample != 0)]
            return bool(finite.size) and float(np.percentile(finite, 99)) <= 2.0
    return False


def composite_window(scenes: Sequence[Scene], bands: Sequence[str], grid: Grid, window: Window,
                     *, masked_classes: Sequence[int] = SCL_MASKED_CLASSES,
                     offsets: dict[str, float] | None = None,
                     reflectance_bands: frozenset[tuple[str, str]] = frozenset(),
                     check: CloudFlagCheck | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Median composite of ``bands`` over ``scenes`` on one grid window, and the clear count.

    Each scene's cloud information (SCL, else a cloud mask) is put on the grid with nearest
    neighbour, each band bilinearly, once. ``offsets`` maps product -> BOA_ADD_OFFSET;
    ``reflectance_bands`` holds (product, band) pairs that are already reflectance.
    ``check`` counts what the SCL's cloud flags removed (:mod:`gee_export.local.cloud_flags`).
    """
    offsets = offsets or {}
    values = np.full((len(scenes), len(bands), window.height, window.width), np.nan, np.float32)
    clear = np.zeros((len(scenes), window.height, window.width), dtype=bool)
    flagged = np.zeros_like(clear)
    cloud = [c for c in SCL_CLOUD_CLASSES if c in masked_classes]
    for t, scene in enumerate(scenes):
        if scene.has("SCL"):
            scl = read_to_grid(scene.band("SCL"), grid, window, "nearest", categorical_nodata=0)
            clear[t] = clear_from_scl(scl, masked_classes)
            if check is not None:
                flagged[t] = np.isin(scl, cloud)
        elif scene.has("CLOUD_MASK"):
            cm = read_to_grid(scene.band("CLOUD_MASK"), grid, window, "nearest",
                              categorical_nodata=-1)
            clear[t] = clear_from_cloud_mask(cm)
        else:
            clear[t] = True
        for b, band in enumerate(bands):
            if (scene.product, band) in reflectance_bands:
                values[t, b] = read_to_grid(scene.band(band), grid, window, "bilinear")
            else:
                raw = read_to_grid(scene.band(band), grid, window, "bilinear",
                                   prepare=zero_is_nodata)
                values[t, b] = dn_to_reflectance(raw, offsets.get(scene.product, 0.0))
    if check is not None:
        data = np.asarray(np.isfinite(values).all(axis=1))
        visible = visible_band(bands)
        check.add(None if visible is None else values[:, visible], clear & data, flagged & data,
                  data)
    return monthly_median(values, clear)
