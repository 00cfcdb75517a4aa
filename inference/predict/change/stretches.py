"""The stretches rule of a map series: where the ground did not change, one class for all dates.

``isamap-map --temporal-consistency stretches``. A date's class map flickers where nothing
changed: haze, sun angle or season move the model's probability across 0.5 (on the eo-learn
Slovenia Level-1C series the default model's maps flip on 3.5-7.3 % of the pixels between
consecutive dates; docs/evidence/change.md). The stacks say where the ground did change: the
spectral rule's magnitude (:func:`inference.predict.change.arrays.spectral_magnitude`, each pair of
consecutive dates scored against the scene's own fit, :mod:`inference.predict.change.spectral`).

Each pixel's dates are cut into *stretches* wherever its bands changed between two
consecutive dates (magnitude above the threshold), and at every date without data (a stretch
never spans a cloud: nothing is seen through it). Within a stretch whose dates' class maps
disagree on impervious, every date takes the stretch's decision: impervious where its mean
impervious probability is above one half (as a binary map decides; a multi-class map's
impervious class is its arg-max, so there the mean decides where its dates disagreed); a
stretch whose dates agree keeps its classes. So whether a date is impervious changes from the
date before only where its bands changed too. A pixel relabelled pervious takes the
non-impervious class of the nearest date of its own stretch that has one (multi-class maps
keep their classes; their other classes are left as mapped); nodata stays nodata.

Assumption: ground whose bands did not change did not change class. What it costs: a change
too faint for the bands (below the threshold) is averaged away, and a stretch's class is its
probabilities' mean, not any one date's post-processing. Change maps and area are then made
from the relabelled maps (the class maps differenced).

Pure functions of arrays (:func:`stretched_series`), and :func:`apply_to_maps` for COGs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from core.storage import files
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict.change.arrays import spectral_changed
from inference.predict.change.consistency import nearest_other, write_series
from inference.predict.change.spectral import SpectralStacks, block_magnitude

RULE = "stretches: one class where the bands did not change (spectral rule's magnitude)"
#: the tag of each relabelled map that records every pair's spectral fit (JSON list)
FITS_TAG = "spectral_fits"
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
    if t < 2:  # one date: nothing to hold steady
        return series.copy()
    flat = series.reshape(t, -1)
    p = np.asarray(probability, np.float64).reshape(t, -1)
    valid = (flat != nodata) & np.isfinite(p)
    ids = stretch_ids(np.asarray(changed, bool).reshape(t - 1, -1), valid)
    isa = (flat == isa_class) & valid
    want = isa.copy()
    for s in range(t):  # a stretch number is at most t - 1
        member = (ids == s) & valid
        n = member.sum(axis=0)
        share = isa.sum(axis=0, where=member)
        disagree = (share > 0) & (share < n)
        if not disagree.any():
            continue
        mean = np.where(member, p, 0.0).sum(axis=0) / np.maximum(n, 1)
        # above one half, as a binary map decides (a tie is pervious)
        want = np.where(member & disagree[None], (mean > 0.5)[None], want)
    out = flat.copy()
    out[valid & want] = isa_class
    for s in range(t):  # relabelled pervious: the nearest other class of its own stretch
        demote = valid & ~want & isa & (ids == s)
        if demote.any():
            out[demote] = nearest_other(flat, valid & ~isa & (ids == s))[demote]
    return out.reshape(series.shape)


def apply_to_maps(class_paths: Sequence[str], prob_paths: Sequence[str],
                  pairs: Sequence[SpectralStacks], out_paths: Sequence[str],
                  isa_class: int = 1, work_dir: Path | None = None) -> dict[str, int]:
    """Write the relabelled class COGs of a series; pixels relabelled per map.

    Each pair is fitted (:meth:`~inference.predict.change.spectral.SpectralStacks.fitted`)
    only when a map is written, and its fit recorded in every output's tags
    (:data:`FITS_TAG`); a series whose maps are current reads nothing but their tags.

    Args:
        class_paths: the dates' class COGs, in date order, on one grid.
        prob_paths: their probability COGs (band 1: the impervious probability).
        pairs: each consecutive pair's stacks, checked, with the threshold.
        out_paths: where each date's relabelled map goes.
        isa_class: the impervious class's value.
        work_dir: where the unfinished maps are written
            (:func:`inference.predict.change.consistency.write_series`).
    """
    # the class maps' run hashes name their prediction (its stacks and probabilities)
    fields = {"isa_class": isa_class, "thresholds": [s.threshold for s in pairs]}
    ready: list[tuple[Any, Any, SpectralStacks]] = []  # each pair opened and fitted, once
    with contextlib.ExitStack() as opened:
        probs = [opened.enter_context(files.open_raster(p)) for p in prob_paths]

        def fix(window: Window, classes: np.ndarray) -> np.ndarray:
            if pairs and not ready:  # the first block written: no current series gets here
                ready.extend((opened.enter_context(files.open_raster(s.earlier)),
                              opened.enter_context(files.open_raster(s.later)), s.fitted())
                             for s in pairs)
            stored = np.stack([ds.read(1, window=window) for ds in probs])
            p = np.where(stored == NODATA, np.nan, stored / PROB_SCALE)
            changed = [spectral_changed(block_magnitude(a, b, s, window), s.threshold)
                       for a, b, s in ready]
            return stretched_series(classes, p, np.stack(changed) if changed else
                                    np.zeros((0, *classes.shape[1:]), bool), isa_class)

        return write_series(class_paths, out_paths, RULE, fields, fix, lambda: {
            FITS_TAG: json.dumps([s.fit.to_dict() if s.fit else None for _, _, s in ready])},
            work_dir=work_dir)


def describe(months: Sequence[str], first_output: str,
             threshold: float | None) -> dict[str, Any]:
    """What ``series.json`` records of the rule: its text, assumption, threshold and fits.

    The fits are read from ``first_output``'s tags (written there by :func:`apply_to_maps`).
    """
    with files.open_raster(first_output) as ds:
        fits = json.loads(ds.tags().get(FITS_TAG) or "[]")
    return {"rule": RULE, "assumption": ASSUMPTION, "spectral_threshold": threshold,
            "spectral_fits": {f"{a}/{b}": fit
                              for (a, b), fit in zip(itertools.pairwise(months), fits,
                                                     strict=False)}}
