"""``isamap-fit --from MODEL.pt``: a trained model's network fine-tuned on labelled points.

The model file (``isamap-train``'s, e.g. of the ``unet-s2`` recipe) is read and checked
first (:func:`training.modelfile.load_model`), then each ``--input`` against it as
``isamap-predict`` checks a map's input (:func:`inference.predict.expected_inputs.
check_input`: its bands, pixel size and values), then the points, read and checked as every
fit's (:mod:`inference.fit.inputs`, :mod:`inference.fit.drawn`). Around each point a window
of :data:`WINDOW` pixels (the model's own window where it records one) is read from its
stack, past the stack's edges as nodata, and normalised as the model's maps are: by the
input's own statistics for a scene-normalised model, by the recorded ones otherwise
(:func:`inference.predict.normalise.normalise_into`). The bands, normalisation, classes and
calibration of the model are kept; the network is fine-tuned with a loss at the labelled
pixels alone, its logits then shifted per class so that its mean class probabilities over
:data:`SHARE_WINDOWS` windows on a regular grid over the inputs are the base network's (the
base's prior kept, the points' ranking learnt), and scored, shift and all, on held-out blocks
beside the base network (:mod:`training.points.tune`). ``OUT/model.pt`` is the model file
of the base with the fine-tuned weights, the shift in its calibration record, its held-out
scores as ``metrics`` and ``extra["fine_tune"]`` saying where it comes from (the base
file's SHA-256, its points, the steps); ``OUT/fit.json`` and ``OUT/fit.txt`` hold the scores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from contract.bands import own_month
from core.digest import file_sha256
from core.errors import ModelError
from core.storage import files
from inference.fit.drawn import draw_points
from inference.fit.inputs import (
    Located,
    StackInput,
    locate,
    open_input,
    points_record,
    read_training_points,
    values_at,
)
from inference.fit.request import FitJob
from inference.predict.expected_inputs import check_input
from inference.predict.normalise import normalise_into
from inference.predict.scene import scene_statistics
from inference.predict.sources import masked_read
from training.model_meta import ModelMeta
from training.modelfile import LoadedModel, load_model, save_model_file
from training.norm_stats import NormStats
from training.points.fit import check_only
from training.points.tune import (
    BATCH,
    class_shares,
    fine_tune,
    held_out,
    point_probabilities,
    prior_shift,
    valid_logits,
)

log = logging.getLogger(__name__)

WINDOW = 64
"""Pixels a side of the window read around each point: context for the network."""
SHARE_WINDOWS = 64
"""Windows on a grid over the inputs whose base map gives the area's class shares."""


def check_base(path: str) -> LoadedModel:
    """The model file ``--from`` names, read and checked (a refusal names ``--from``).

    Raises:
        ModelError: not a model file, or one that maps other pixels than it is given
            (output scale other than 1).
    """
    loaded = load_model(path, flag="--from")
    if int(loaded.meta.output_scale) != 1:
        raise ModelError(f"--from {path} maps at {loaded.meta.output_scale} times its input's "
                         "resolution, which a fine-tune on points cannot follow; give a "
                         "model mapping each input pixel")
    return loaded


def run_tune(job: FitJob, request: str, start: float) -> tuple[Path, dict]:
    """The fine-tune of ``job.base`` (module docstring); the model file and the report."""
    assert job.base is not None
    loaded = check_base(job.base)
    meta = loaded.meta
    classes = tuple(meta.class_names)
    inputs = [open_input(path, meta.bands, f"that --from {job.base} reads", remedy=(
        "Export a stack of the model's bands (isamap-export --bands), or fine-tune a model "
        "of these bands.")) for path in job.inputs]
    notes = [note for path in job.inputs for note in check_input(
        path, meta, allow_implausible=job.allow_implausible).notes]
    drawn = (draw_points(job.points_from, job.n, job.options.seed, classes, job.inputs)
             if job.points_from else None)
    points = drawn.points if drawn else read_training_points(job.points, classes, job.column)
    where = locate(points, inputs)
    # a series model's earlier month missing at a point is read as every map reads it
    kept = np.isfinite(values_at(inputs, where)[:, list(own_month(meta.bands))]).all(axis=1)
    if not kept.all():
        log.warning("%d of %d points lie on pixels without data in the input (cloud-masked or "
                    "outside the composite) and are left out", int((~kept).sum()), kept.size)
    labels = points.reference[kept]
    x, y, group = where.x[kept], where.y[kept], where.group[kept]
    counts = check_only(labels, x, y, group, classes, job.options)
    size = meta.window or WINDOW
    norms = _statistics(inputs, meta)
    windows, _ = read_windows(inputs, where, kept, size, norms)
    centre = np.full(labels.size, size // 2)
    grid = on_grid(inputs, size, SHARE_WINDOWS)
    spread = read_windows(inputs, grid, np.ones(grid.row.size, bool), size, norms)
    # the base as it maps: a base fine-tuned before adds its own shift, which the new replaces
    shares = class_shares(valid_logits(loaded.module, *spread, meta.temperature)
                          + np.asarray(meta.logit_shift or 0.0))
    log.info("fine-tuning %s on %d points: %d steps", Path(job.base).name, labels.size,
             job.steps)
    base = point_probabilities(loaded.module, windows, centre, centre, meta.temperature,
                               meta.logit_shift)

    def shift_of(model: torch.nn.Module) -> tuple[float, ...] | None:
        return prior_shift(valid_logits(model, *spread, meta.temperature), shares)

    def tuned_on(train: np.ndarray) -> np.ndarray:
        model = fine_tune(loaded.module, windows[train], labels[train], centre[train],
                          centre[train], temperature=meta.temperature, steps=job.steps,
                          lr=job.lr, seed=job.options.seed)
        return point_probabilities(model, windows, centre, centre, meta.temperature,
                                   shift_of(model))

    score = held_out(tuned_on, base, labels, x, y, group, classes, folds=job.options.folds,
                     block_m=job.options.block_m, seed=job.options.seed,
                     min_per_class=job.options.min_per_class)
    tuned = fine_tune(loaded.module, windows, labels, centre, centre,
                      temperature=meta.temperature, steps=job.steps, lr=job.lr,
                      seed=job.options.seed)
    shift = shift_of(tuned)
    record = {"from": {"file": Path(job.base).name, "sha256": file_sha256(job.base),
                       "name": meta.name},
              "points": {**points_record(job.points, points, kept,
                                         drawn.record if drawn else None),
                         "per_class": counts.per_class, "blocks": counts.blocks,
                         "block_m": job.options.block_m},
              "fine_tune": {"steps": job.steps, "lr": job.lr, "batch": BATCH, "window": size,
                            "seed": job.options.seed,
                            "loss": "cross-entropy at the labelled pixels",
                            "base_shares": dict(zip(classes, np.round(shares, 6).tolist(),
                                                    strict=False)),
                            "shift": None if shift is None else list(shift)},
              "held_out": score.record(), "inputs": [Path(p).name for p in job.inputs]}
    out = Path(job.out)
    path = save_model_file(out / "model.pt", tuned, tuned_meta(meta, record, notes))
    report = {"from": record["from"], "norm": meta.norm, "bands": list(meta.bands),
              "classes": list(classes), "points": record["points"],
              "fine_tune": record["fine_tune"], "held_out": record["held_out"],
              "seconds": round(time.perf_counter() - start, 1), "request": request}
    return path, report


def tuned_meta(base: ModelMeta, record: dict, notes: Sequence[str]) -> ModelMeta:
    """The base's description with the fine-tune's record beside what the base recorded.

    Its ``metrics`` become the held-out scores (the base's, which no longer describe the
    weights, are kept in the record); its calibration the base's with the fine-tune's shift;
    ``code_version`` is this isamap's.
    """
    held = record["held_out"]
    metrics = ({"cross_validation": {"f1": held["f1"], "auc": held["auc"],
                                     "folds": held["folds"], "points": held["points"]}}
               if held["folds"] else {})
    fine = {**record, "base_metrics": dict(base.metrics)}
    if notes:
        fine["input_notes"] = list(notes)
    shift = record["fine_tune"]["shift"]
    calibration = {k: v for k, v in base.calibration.items() if k != "shift"}
    if shift is not None:
        calibration["shift"] = shift
    return ModelMeta.from_dict({**base.to_dict(), "metrics": metrics, "code_version": "",
                                "calibration": calibration,
                                "extra": {**dict(base.extra), "fine_tune": fine}})


def _statistics(inputs: Sequence[StackInput], meta: ModelMeta) -> list[NormStats]:
    """What each input's windows are normalised by, as its maps are (module docstring)."""
    if meta.norm == "scene":
        return [scene_statistics(stack.path, meta.bands) for stack in inputs]
    return [NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))] * len(
        inputs)


def on_grid(inputs: Sequence[StackInput], size: int, count: int) -> Located:
    """About ``count`` window centres on a regular grid over the inputs, shared among them."""
    side = max(1, round((count / len(inputs)) ** 0.5))
    parts = []
    for g, stack in enumerate(inputs):
        rows = np.unique(np.linspace(size // 2, max(size // 2, stack.height - size // 2),
                                     side).astype(np.int64))
        cols = np.unique(np.linspace(size // 2, max(size // 2, stack.width - size // 2),
                                     side).astype(np.int64))
        r, c = np.meshgrid(rows, cols, indexing="ij")
        parts.append((np.full(r.size, g), r.ravel(), c.ravel()))
    group, row, col = (np.concatenate(v) for v in zip(*parts, strict=True))
    return Located(group, row, col, np.zeros(row.size), np.zeros(row.size))


def read_windows(inputs: Sequence[StackInput], where: Located, kept: np.ndarray, size: int,
                 norms: Sequence[NormStats]) -> tuple[np.ndarray, np.ndarray]:
    """``(n, C, size, size)`` normalised windows centred on the kept points, nodata 0.

    The point lies at ``(size // 2, size // 2)``; past the stack's edges is nodata, as a
    map's tiles see it. Beside: ``(n, size, size)`` whether each pixel has data.
    """
    rows = np.flatnonzero(kept)
    out = np.full((rows.size, len(inputs[0].indexes), size, size), np.nan, np.float32)
    half = size // 2
    for g, stack in enumerate(inputs):
        members = [k for k, i in enumerate(rows) if where.group[i] == g]
        if not members:
            continue
        stats = norms[g]
        shift = torch.from_numpy(-np.asarray(stats.mean, np.float32)
                                 / np.asarray(stats.std, np.float32)).view(-1, 1, 1)
        scale = torch.from_numpy(1 / np.asarray(stats.std, np.float32)).view(-1, 1, 1)
        with files.open_raster(stack.path) as src:
            for k in members:
                r0, c0 = int(where.row[rows[k]]) - half, int(where.col[rows[k]]) - half
                r1, c1 = max(r0, 0), max(c0, 0)
                r2, c2 = min(r0 + size, stack.height), min(c0 + size, stack.width)
                out[k, :, r1 - r0:r2 - r0, c1 - c0:c2 - c0] = masked_read(
                    src, stack.indexes, Window(c1, r1, c2 - c1, r2 - r1))
                window = torch.from_numpy(out[k])
                normalise_into(window, shift, scale, window)
    return (np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0),
            np.asarray(np.isfinite(out).all(axis=1)))
