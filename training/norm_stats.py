"""Per-band normalisation statistics: :class:`NormStats` and the one owner of their conventions.

:func:`band_stats` sums a band's moments over images (NaN ignored);
:func:`stats_from_moments` turns moments summed anywhere (here, or by Earth Engine's
``reduceRegion``) into :class:`NormStats`: the training split's, a scene's
(:func:`training.data.compute_scene_norms`, :mod:`inference.predict.scene`,
:mod:`inference.mapping.ee_statistics`, which alone pass ``earlier_from_base``) and a map
input's alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from contract.bands import canonical_band, find_band, is_code_band
from core.errors import InputDataError


@dataclass(frozen=True)
class NormStats:
    """Per-band mean and standard deviation (training split, NaN ignored)."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"bands": list(self.bands), "mean": list(self.mean), "std": list(self.std)}


def band_stats(images: Iterable[np.ndarray], bands: Sequence[str],
               where: str = "the training split", *, earlier_from_base: bool = False) -> NormStats:
    """Per-band mean and deviation over ``images`` (each ``(C, ...)``), NaN ignored.

    Float64 sums, one image at a time, so any number of patches fits in memory. The
    population deviation, refused and floored as :func:`stats_from_moments` says (with its
    ``earlier_from_base``).
    """
    c = len(bands)
    s = np.zeros(c)
    s2 = np.zeros(c)
    n = np.zeros(c)
    for image in images:
        img = np.asarray(image).reshape(c, -1).astype(np.float64)
        ok = np.isfinite(img)
        s += np.where(ok, img, 0).sum(1)
        s2 += np.where(ok, img * img, 0).sum(1)
        n += ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0))
    return stats_from_moments(bands, mean.tolist(), std.tolist(), where,
                              earlier_from_base=earlier_from_base)


def stats_from_moments(bands: Sequence[str], mean: Sequence[float | None],
                       std: Sequence[float | None], where: str,
                       advice: str = "", *, earlier_from_base: bool = False) -> NormStats:
    """:class:`NormStats` from per-band means and population deviations (None or NaN: no pixel).

    The one owner of the statistics' conventions, wherever the moments were summed (here, or
    by Earth Engine's ``reduceRegion``): a band with no valid pixel is refused, naming it,
    ``where`` it was read and ``advice`` (what to do; for an earlier month's band, ``B4_m1``,
    the advice to export that month again or leave it out of ``--bands``). With
    ``earlier_from_base`` (the statistics of one scene or map input, never the training
    split's nor the points fit's pooled ones) an earlier-month band with no valid pixel takes
    its base band's statistics of the same pixels instead (one scene's earlier month may be
    all cloud: its gaps are fed as the band mean, so any finite statistics map them alike, and
    the base band's are the nearest in value). Where statistics pool many scenes (training
    split, points fit) an earlier month with no pixel in any is a failed export, and the
    base band's would train on features a map of real earlier months never gives, so it
    stays refused. A constant band (deviation at most 1e-6) keeps deviation 1, i.e. it is
    centred and left unscaled; a band of class codes (``BandSpec.is_codes``: the coarse
    product) gets mean 0 and deviation 1, so the network sees the codes themselves, in every
    statistic (training split, scene, map input).

    Raises:
        InputDataError: a band has no valid pixel (with ``earlier_from_base``, an
            earlier-month band: nor its base band).
    """
    moments = {b: (_number(m), _number(d)) for b, m, d in zip(bands, mean, std, strict=True)}
    values = [(b, *(_with_base(b, moments) if earlier_from_base else moments[b]))
              for b in bands]
    empty = [b for b, m, d in values if not (math.isfinite(m) and math.isfinite(d))]
    if empty:
        earlier = [b for b in empty if (spec := find_band(b)) is not None and spec.months_before]
        months = (f"; {earlier} are earlier months' bands (their export failed, or every "
                  "image of those months was cloud): export those months again, or give "
                  "--bands without them" if earlier and not earlier_from_base else "")
        raise InputDataError(f"bands {empty} have no valid pixel in {where}" + months
                             + (f"; {advice}" if advice else ""))
    return NormStats(tuple(bands), tuple(0.0 if is_code_band(b) else m for b, m, _ in values),
                     tuple(1.0 if is_code_band(b) or d <= 1e-6 else d for b, _, d in values))


def _with_base(band: str, moments: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """``band``'s moments, or its base band's where it is an earlier month's with no pixel."""
    m, d = moments[band]
    spec = find_band(band)
    if (math.isfinite(m) and math.isfinite(d)) or spec is None or not spec.months_before:
        return m, d
    base = next((b for b in moments if canonical_band(b) == spec.base), None)
    return (m, d) if base is None else moments[base]


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
