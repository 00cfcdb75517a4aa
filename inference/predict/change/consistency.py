"""The temporal consistency rule of a map series: impervious surface does not come and go.

Assumption (stated, and only applied when asked, ``isamap-map --temporal-consistency``): built-up
surface rarely returns to pervious within the span of a series, so a pixel's impervious history
is a step: pervious up to some date, impervious from then on. Classification flicker (a
cloud-shadowed roof read as pervious one year, a bright field read as impervious another)
breaks that step; the rule restores it with the fewest changes. For each pixel it chooses the
date of the step (or none) that disagrees with the fewest of its mapped dates, and relabels
only the dates that disagree:

- an isolated flip inside a stable history is removed (impervious, pervious, impervious ->
  impervious throughout; pervious, impervious, pervious -> pervious throughout when the
  pervious dates outnumber it);
- a real gain that persists stays a gain, at the date the history supports best;
- loss never survives: demolition, or a surface that truly returned to pervious, is treated as
  an error. A series of a region where that happens at scale should be mapped without the rule.

Ties go to the earlier step (impervious from the earlier date). Nodata dates vote for nothing
and stay nodata. A pixel relabelled pervious takes the non-impervious class it has at its
nearest date that has one (so multi-class maps keep their classes), one relabelled impervious
takes the impervious class.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.windows import Window

from core.digest import json_digest
from core.errors import InputDataError
from core.shareable import shareable_path
from core.storage import files, work_folder
from inference.cog import maps
from inference.cog.maps import NODATA

RULE = "monotone impervious: fewest relabelled dates, no loss"
#: the rules ``isamap-map --temporal-consistency`` offers (``stretches``:
#: :mod:`inference.predict.change.stretches`)
TemporalRule = Literal["monotone", "stretches"]
TEMPORAL_RULES: tuple[TemporalRule, ...] = ("monotone", "stretches")
ASSUMPTION = ("built-up surface does not return to pervious within the series; loss is "
              "treated as classification error")


def consistent_series(classes: np.ndarray, isa_class: int = 1) -> np.ndarray:
    """The series ``classes`` (dates first: ``(T, ...)``) with the rule applied (module doc)."""
    series = np.asarray(classes)
    t = series.shape[0]
    flat = series.reshape(t, -1)
    valid = flat != NODATA
    isa = (flat == isa_class) & valid
    pervious = valid & ~isa
    # cost[k]: impervious dates before k + pervious dates from k on (step at k; k = t: none)
    before = np.concatenate([np.zeros((1, flat.shape[1]), np.int32),
                             np.cumsum(isa, axis=0, dtype=np.int32)])
    after = np.concatenate([np.cumsum(pervious[::-1], axis=0, dtype=np.int32)[::-1],
                            np.zeros((1, flat.shape[1]), np.int32)])
    step = np.argmin(before + after, axis=0)  # the first minimum: the earlier step wins ties
    want_isa = np.arange(t)[:, None] >= step[None, :]
    out = flat.copy()
    out[valid & want_isa] = isa_class
    demote = valid & ~want_isa & isa
    if demote.any():
        out[demote] = nearest_other(flat, pervious)[demote]
    return out.reshape(series.shape)


def nearest_other(flat: np.ndarray, pervious: np.ndarray) -> np.ndarray:
    """For every date and pixel, the non-impervious class at the nearest date that has one."""
    t = flat.shape[0]
    index = np.arange(t)[:, None]
    last = np.maximum.accumulate(np.where(pervious, index, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(pervious, index, t)[::-1], axis=0)[::-1]
    use_next = (last < 0) | ((nxt < t) & (nxt - index < index - last))
    source = np.where(use_next, nxt, last).clip(0, t - 1)
    return np.take_along_axis(flat, source, axis=0)


def apply_to_maps(class_paths: Sequence[str], out_paths: Sequence[str],
                  isa_class: int = 1, work_dir: Path | None = None) -> dict[str, int]:
    """Write the consistent class COGs of a series (all on one grid); pixels relabelled per map.

    Each output records the rule and its inputs' run hashes in its tags (``isamap_run`` is a
    digest of them), so a series whose class maps did not change is not rewritten.
    ``work_dir``: :func:`write_series`'.
    """
    return write_series(class_paths, out_paths, RULE, {"isa_class": isa_class},
                        lambda _window, stack: consistent_series(stack, isa_class),
                        work_dir=work_dir)


def write_series(class_paths: Sequence[str], out_paths: Sequence[str], rule: str,
                 run_fields: Mapping[str, Any],
                 fix: Callable[[Window, np.ndarray], np.ndarray],
                 extra_tags: Callable[[], Mapping[str, str]] = dict,
                 work_dir: Path | None = None) -> dict[str, int]:
    """Write a series' class COGs relabelled by a rule, block by block; pixels relabelled per map.

    Args:
        class_paths: the dates' class COGs, in date order, on one grid.
        out_paths: where each date's relabelled map goes.
        rule: the rule's text (each output's ``temporal_consistency`` tag).
        run_fields: everything else the result depends on (with the rule and the inputs' run
            hashes, digested into ``isamap_run``: a series whose inputs did not change is not
            rewritten, and its counts are read back from its tags).
        fix: ``(window, classes (T, h, w)) -> relabelled (T, h, w)``, one block.
        extra_tags: what else each output records, asked once the blocks are written.
        work_dir: where the unfinished maps are written (default: the outputs' folder, or
            the system's temporary folder for gs://, never the current one); removed on any
            exit, and a killed run's is a temporary
            (:meth:`core.storage.LocalStore.remove_temporaries`). A series passes its local
            product folder's ``consistent/``, which its next run cleans.

    Raises:
        InputDataError: the class maps are not on one grid.
    """
    sources = [rasterio.open(files.gdal_path(p)) for p in class_paths]
    try:
        first = sources[0]
        for path, ds in zip(class_paths, sources, strict=True):
            if (ds.shape, ds.transform, ds.crs) != (first.shape, first.transform, first.crs):
                raise InputDataError(f"{path} is not on the grid of {class_paths[0]}; a series "
                                     "must be mapped on one grid")
        runs = [maps.map_identity(ds.tags()) for ds in sources]  # a date's runtime too
        run = json_digest({**run_fields, "rule": rule, "inputs": runs})
        recorded = {out: _recorded(out, run) for out in out_paths}
        todo = [i for i, out in enumerate(out_paths) if recorded[out] is None]
        changed = {out: count or 0 for out, count in recorded.items()}
        if todo:
            changed.update(_write(sources, class_paths, [out_paths[i] for i in todo], todo,
                                  fix, lambda: {"isamap_run": run, "temporal_consistency": rule,
                                                **extra_tags()}, work_dir))
    finally:
        for ds in sources:
            ds.close()
    return changed


def _write(sources: Sequence[Any], class_paths: Sequence[str], outs: Sequence[str],
           dates: Sequence[int], fix: Callable[[Window, np.ndarray], np.ndarray],
           tags: Callable[[], Mapping[str, str]], work_dir: Path | None) -> dict[str, int]:
    """Write the relabelled maps of ``dates`` (indexes of ``sources``) at ``outs``; counts."""
    first = sources[0]
    work = work_folder("consistent", outs[0], work_dir)
    changed = dict.fromkeys(outs, 0)
    try:
        profile = {"driver": "GTiff", "width": first.width, "height": first.height,
                   "count": 1, "dtype": "uint8", "crs": first.crs,
                   "transform": first.transform, "nodata": NODATA, "tiled": True,
                   "blockxsize": maps.BLOCK, "blockysize": maps.BLOCK, "compress": "ZSTD"}
        raws = [rasterio.open(work / f"{i}.tif", "w", **profile) for i in dates]
        try:
            for _, window in first.block_windows(1):
                stack = np.stack([ds.read(1, window=window) for ds in sources])
                fixed = fix(window, stack)
                for raw, i, out in zip(raws, dates, outs, strict=True):
                    raw.write(fixed[i], 1, window=window)
                    changed[out] += int((fixed[i] != stack[i]).sum())
        finally:
            for raw in raws:
                raw.close()
        shared = dict(tags())
        for i, out in zip(dates, outs, strict=True):
            here = out.rsplit("/", 1)[0] if "/" in out else "."
            named = [shareable_path(p, here) for p in class_paths]  # no path of this machine
            own = {**sources[i].tags(), **shared, "pixels_relabelled": str(changed[out]),
                   "temporal_consistency_inputs": json.dumps(named), "source": named[i]}
            files.put_output(functools.partial(maps.write_cog, work / f"{i}.tif",
                                               kind="class", tags=own), out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return changed


def _recorded(path: str, run: str) -> int | None:
    """The pixels a current output records as relabelled (None: missing or of another run)."""
    if not files.exists(path):
        return None
    with rasterio.open(files.gdal_path(path)) as ds:
        tags = ds.tags()
    if tags.get("isamap_run") != run:
        return None
    count = tags.get("pixels_relabelled", "")
    return int(count) if count.isdigit() else 0
