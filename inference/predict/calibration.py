"""The patches an int8 model is calibrated and checked on, equally many with or without labels.

A model file records the patch dataset it was trained on (``extra["dataset"]["root"]``,
:func:`training.run.inputs.dataset_record`, relative to the model file's folder). Where that
dataset can still be read, its training split calibrates the quantized model and its
validation split, with labels, checks it (:func:`model_file_patches`). Where it cannot (a
model file copied without its dataset), as many windows of the training patches' size are
read spread over the input being mapped (:func:`input_patches`): the same number of pixels,
from all over the map rather than its first tiles, judged by the same bounds with the fp32
map's classes standing for the labels (:func:`engine.quantize.agreement`). The recorded
choice says which was used.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from contract.bands import LABEL_NODATA
from contract.grid import DEFAULT_PATCH_SIZE
from core.errors import IsamapError
from engine.quantize import CALIBRATION_PATCHES, CHECK_PATCHES, Int8Patches
from inference.predict.blending import nodata_as_nan, pad_to
from inference.predict.sources import read_window
from training.data import NormStats, PatchDataset, scene_norms_for

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

#: patches per calibration or check batch
BATCH = 8


def model_file_patches(meta: ModelMeta) -> Int8Patches | None:
    """Calibration (training split) and check (validation split, labelled) patches.

    Spread evenly over each split (patches are often stored in region order). None, with the
    reason logged, when the model file records no dataset or it cannot be read.
    """
    extra = dict(meta.extra or {})
    root = (extra.get("dataset") or {}).get("root") or (extra.get("config") or {}).get("data")
    if not root:
        log.info("int8: the model file records no training dataset; calibrating and "
                 "checking on windows spread over the input")
        return None
    label = str((extra.get("config") or {}).get("label") or "label")
    norm = NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))
    try:
        scenes = scene_norms_for(root, meta.bands, meta.norm)
        train = PatchDataset(root, "train", meta.bands, norm, None, targets=(label,),
                             scene_norms=scenes)
        val = PatchDataset(root, "val", meta.bands, norm, None, targets=(label,),
                           scene_norms=scenes)
        calibration = _batches(train, CALIBRATION_PATCHES)
        check = _batches(val, CHECK_PATCHES)
    except (IsamapError, OSError, ValueError, KeyError) as exc:
        log.warning("int8: the model file's training patches are not at %s (%s): a model "
                    "file finds its dataset where it lay beside it when trained (moved "
                    "together, they still meet); calibrating and checking on windows spread "
                    "over the input instead, against the fp32 map", root, exc)
        return None
    return Int8Patches(tuple(x for x, _ in calibration), tuple(x for x, _ in check),
                       tuple(y for _, y in check),
                       f"{sum(len(x) for x, _ in calibration)} patches of the training split "
                       f"of {root}",
                       f"{sum(len(x) for x, _ in check)} patches of the validation split of "
                       f"{root} (labelled)", label_nodata=LABEL_NODATA)


def _batches(dataset: PatchDataset, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` items spread over ``dataset`` as (image, label) batches of :data:`BATCH`."""
    n = len(dataset)
    step = max(n / count, 1.0)
    picks = sorted({int(i * step) for i in range(min(count, n))})
    items = [dataset[i] for i in picks]
    out = []
    for start in range(0, len(items), BATCH):
        part = items[start:start + BATCH]
        out.append((torch.stack([torch.as_tensor(it["image"]) for it in part]),
                    torch.stack([torch.as_tensor(it["label"]).long() for it in part])))
    return out


def input_patches(src: Any, indexes: Sequence[int],
                  normalise: Callable[[list[np.ndarray]], torch.Tensor],
                  side: int | None = None,
                  lock: AbstractContextManager[Any] | None = None) -> Int8Patches:
    """Windows spread over the input being mapped, as many as the labelled check reads.

    :data:`CALIBRATION_PATCHES` and :data:`CHECK_PATCHES` windows of ``side`` pixels (the
    model's training patches; :data:`DEFAULT_PATCH_SIZE` when unrecorded), on a lattice over
    the whole input, calibration and check windows interleaved. Windows mostly nodata are
    replaced by others of a shifted lattice where it has them. The check has no labels: the
    fp32 map's classes stand for them.

    Args:
        src: the open input (:class:`inference.predict.sources.RasterSource`).
        indexes: its 1-based bands in the model's order.
        normalise: raw tiles ``(C, side, side)`` to the model's normalised batch (NaN as 0).
        side: window side in input pixels.
        lock: held around each read (the job's reader thread reads the same open file,
            which rasterio does not read from two threads at once).
    """
    side = int(side or DEFAULT_PATCH_SIZE)
    wanted = CALIBRATION_PATCHES + CHECK_PATCHES
    nodata = [src.nodatavals[i - 1] for i in indexes]
    kept: list[np.ndarray] = []
    spare: list[np.ndarray] = []
    for row, col in _spread(src.height, src.width, side, wanted):
        with lock or contextlib.nullcontext():
            tile = _window(src, indexes, nodata, row, col, side)
        (kept if np.isfinite(tile).all(axis=0).mean() >= 0.5 else spare).append(tile)
        if len(kept) == wanted:
            break
    if len(kept) < 2:  # an input (nearly) all nodata: what there is
        kept += spare[:2 - len(kept)]
    third = [i % 3 == 0 for i in range(len(kept))]  # calibration : check = 1 : 2, interleaved
    calibration = [t for t, c in zip(kept, third, strict=True) if c]
    check = [t for t, c in zip(kept, third, strict=True) if not c] or calibration
    where = f"px spread over the input ({src.height} x {src.width} px)"
    return Int8Patches(_batched(calibration, normalise), _batched(check, normalise), None,
                       f"{len(calibration)} windows of {side} {where}",
                       f"{len(check)} windows of {side} {where}, no labels: the fp32 map's "
                       "classes stand for them")


def _spread(height: int, width: int, side: int, count: int) -> list[tuple[int, int]]:
    """Window origins: ``count`` on a lattice over the raster, then as many between them.

    Each origin once: a raster smaller than ``count`` windows gives fewer, all it holds.
    """
    rows = max(1, round(math.sqrt(count * height / max(width, 1))))
    cols = max(1, math.ceil(count / rows))
    out: list[tuple[int, int]] = []
    for shift in (0.0, 0.5):
        ys = _axis(height, side, rows, shift)
        xs = _axis(width, side, cols, shift)
        grid = [(y, x) for y in ys for x in xs]
        picks = [grid[int(i * len(grid) / count)] for i in range(min(count, len(grid)))]
        out += picks
    return list(dict.fromkeys(out))


def _axis(extent: int, side: int, n: int, shift: float) -> list[int]:
    """``n`` window starts over ``[0, extent - side]``, moved ``shift`` of a step along."""
    last = max(extent - side, 0)
    step = last / max(n - 1, 1)
    return [min(last, round((i + shift) * step)) for i in range(n)]


def _window(src: Any, indexes: Sequence[int], nodata: Sequence[float | None], row: int,
            col: int, side: int) -> np.ndarray:
    """One window ``(C, side, side)``: nodata as NaN, edge-padded past a smaller input."""
    from rasterio.windows import Window

    h, w = min(side, src.height - row), min(side, src.width - col)
    tile = nodata_as_nan(read_window(src, indexes, Window(col, row, w, h)), nodata)
    return pad_to(tile, side, side)


def _batched(tiles: list[np.ndarray],
             normalise: Callable[[list[np.ndarray]], torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(normalise(tiles[i:i + BATCH]).clone() for i in range(0, len(tiles), BATCH))
