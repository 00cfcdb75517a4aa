"""The stretches rule of a map series: where the ground did not change, one class for all dates.

``isamap-map --temporal-consistency stretches``. A date's class map flickers where nothing
changed: haze, sun angle or season move the model's probability across 0.5 (on the eo-learn
Slovenia Level-1C series the default model's maps flip on 3.5-7.3 % of the pixels between
consecutive dates; docs/evidence/change.md). The stacks say where the ground did change: the
spectral rule's magnitude (:func:`inference.predict.change.spectral_magnitude`, each pair of
consecutive dates scored against the scene's own fit, :mod:`inference.predict.spectral_stacks`).

Each pixel's dates are cut into *stretches* wherever its bands changed between two
consecutive dates (magnitude above the threshold), and at every date without data (a stretch
never spans a cloud: nothing is seen through it). Within a stretch whose dates' class maps
disagree, every date takes the class of the stretch's mean impervious probability (impervious
where it is at least 0.5); a stretch whose dates agree keeps its classes. So a date's map
changes from the one before only where its bands changed too. A pixel relabelled pervious takes
the non-impervious class of its nearest date that has one (multi-class maps keep their
classes); nodata stays nodata.

Assumption: ground whose bands did not change did not change class. What it costs: a change
too faint for the bands (below the threshold) is averaged away, and a stretch's class is its
probabilities' mean, not any one date's post-processing. Change maps and area are then made
from the relabelled maps (the class maps differenced).

Pure functions of arrays (:func:`stretched_series`), and :func:`apply_to_maps` for COGs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.windows import Window

from core.storage import files
from inference.cog.maps import NODATA, PROB_SCALE
from inference.mapping.consistency import nearest_other, write_series
from inference.predict import change
from inference.predict.sources import masked_read
from inference.predict.spectral_stacks import SpectralStacks

RULE = "stretches: one class where the bands did not change (spectral rule's magnitude)"
ASSUMPTION = ("ground whose bands did not change between two dates did not change class; a "
              "change below the spectral threshold is averaged away")


def stretch_ids(changed: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each date's stretch number per pixel ``(T, ...)``: a new stretch after every cut.

    Args:
        changed: ``(T - 1, ...)``, whether the bands changed between dates ``t`` and ``t + 1``
            (NaN magnitudes already False or True: the caller decides).
        valid: ``(T, ...)``, where a date has data; a date without data is a stretch of its own
            and cuts the stretches on both sides.
    """
    cut = np.asarray(changed, bool) | ~valid[:-1] | ~valid[1:]
    first = np.zeros((1, *valid.shape[1:]), np.int32)
    return np.concatenate([first, np.cumsum(cut, axis=0, dtype=np.int32)])


def stretched_series(classes: np.ndarray, probability: np.ndarray, changed: np.ndarray,
                     isa_class: int = 1, nodata: int = NODATA) -> np.ndarray:
    """The class maps ``(T, ...)`` with the rule applied (module doc).

    Args:
        classes: the dates' class maps, dates first (``nodata`` where a date has none).
        probability: the dates' impervious probabilities, same shape (NaN where none).
        changed: ``(T - 1, ...)``, whether each consecutive pair's bands changed.
        isa_class: the impervious class's value.
        nodata: the class maps' nodata value.
    """
    series = np.asarray(classes)
    t = series.shape[0]
    flat = series.reshape(t, -1)
    p = np.asarray(probability, np.float64).reshape(t, -1)
    valid = (flat != nodata) & np.isfinite(p)
    ids = stretch_ids(np.asarray(changed, bool).reshape(t - 1, -1), valid)
    isa = (flat == isa_class) & valid
    want = isa.copy()
    for s in range(t):  # a stretch number is at most t - 1
        member = (ids == s) & valid
        n = member.sum(axis=0)
        if not n.any():
            continue
        share = isa.sum(axis=0, where=member)
        disagree = (share > 0) & (share < n)
        mean = np.where(member, p, 0.0).sum(axis=0) / np.maximum(n, 1)
        vote = member & disagree[None]
        want = np.where(vote, (mean >= 0.5)[None], want)
    out = flat.copy()
    out[valid & want] = isa_class
    demote = valid & ~want & isa
    if demote.any():
        out[demote] = nearest_other(flat, valid & ~isa)[demote]
    return out.reshape(series.shape)


def apply_to_maps(class_paths: Sequence[str], prob_paths: Sequence[str],
                  pairs: Sequence[SpectralStacks], out_paths: Sequence[str],
                  isa_class: int = 1) -> dict[str, int]:
    """Write the relabelled class COGs of a series; pixels relabelled per map.

    Args:
        class_paths: the dates' class COGs, in date order, on one grid.
        prob_paths: their probability COGs (band 1: the impervious probability).
        pairs: each consecutive pair's stacks, checked and fitted
            (:meth:`~inference.predict.spectral_stacks.SpectralStacks.fitted`), with the
            threshold.
        out_paths: where each date's relabelled map goes.
        isa_class: the impervious class's value.
    """
    # the class maps' run hashes name their prediction (its probabilities, its stacks' pixels)
    fields = {"isa_class": isa_class,
              "pairs": [[s.threshold, s.fit.to_dict() if s.fit else None] for s in pairs]}
    with contextlib.ExitStack() as opened:
        probs = [opened.enter_context(files.open_raster(p)) for p in prob_paths]
        stacks = [(opened.enter_context(files.open_raster(s.earlier)),
                   opened.enter_context(files.open_raster(s.later)), s) for s in pairs]

        def fix(window: Window, classes: np.ndarray) -> np.ndarray:
            stored = np.stack([ds.read(1, window=window) for ds in probs])
            p = np.where(stored == NODATA, np.nan, stored / PROB_SCALE)
            changed = np.stack([_changed(a, b, s, window) for a, b, s in stacks])
            return stretched_series(classes, p, changed, isa_class)

        return write_series(class_paths, out_paths, RULE, fields, fix)


def describe(months: Sequence[str], pairs: Sequence[SpectralStacks]) -> dict[str, Any]:
    """What ``series.json`` records of the rule: its text, assumption, threshold and fits."""
    return {"rule": RULE, "assumption": ASSUMPTION,
            "spectral_threshold": pairs[0].threshold if pairs else None,
            "spectral_fits": {f"{a}/{b}": s.fit.to_dict() if s.fit else None
                              for (a, b), s in zip(itertools.pairwise(months), pairs,
                                                   strict=True)}}


def _changed(earlier: object, later: object, stacks: SpectralStacks,
             window: Window) -> np.ndarray:
    """Where one pair's bands changed in ``window`` (NaN magnitude: a cut, as for nodata)."""
    assert stacks.fit is not None, "fit the stacks first (fitted())"
    magnitude = change.spectral_magnitude(masked_read(later, stacks.later_bands, window),
                                          masked_read(earlier, stacks.earlier_bands, window),
                                          stacks.fit)
    return ~(magnitude <= stacks.threshold)
