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
pixels alone and scored on held-out blocks beside the base network
(:mod:`training.points.tune`). ``OUT/model.pt`` is the model file of the base with the
fine-tuned weights, its held-out scores as ``metrics`` and ``extra["fine_tune"]`` saying
where it comes from (the base file's SHA-256, its points, the steps); ``OUT/fit.json`` and
``OUT/fit.txt`` hold the scores.
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
from training.points.tune import BATCH, fine_tune, held_out, point_probabilities

log = logging.getLogger(__name__)

WINDOW = 64
"""Pixels a side of the window read around each point: context for the network."""


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
    windows = read_windows(inputs, where, kept, size, _statistics(inputs, meta))
    centre = np.full(labels.size, size // 2)
    log.info("fine-tuning %s on %d points: %d steps", Path(job.base).name, labels.size,
             job.steps)
    base = point_probabilities(loaded.module, windows, centre, centre, meta.temperature)

    def tuned_on(train: np.ndarray) -> np.ndarray:
        model = fine_tune(loaded.module, windows[train], labels[train], centre[train],
                          centre[train], temperature=meta.temperature, steps=job.steps,
                          lr=job.lr, seed=job.options.seed)
        return point_probabilities(model, windows, centre, centre, meta.temperature)

    score = held_out(tuned_on, base, labels, x, y, group, classes, folds=job.options.folds,
                     block_m=job.options.block_m, seed=job.options.seed,
                     min_per_class=job.options.min_per_class)
    tuned = fine_tune(loaded.module, windows, labels, centre, centre,
                      temperature=meta.temperature, steps=job.steps, lr=job.lr,
                      seed=job.options.seed)
    record = {"from": {"file": Path(job.base).name, "sha256": file_sha256(job.base),
                       "name": meta.name},
              "points": {**points_record(job.points, points, kept,
                                         drawn.record if drawn else None),
                         "per_class": counts.per_class, "blocks": counts.blocks,
                         "block_m": job.options.block_m},
              "fine_tune": {"steps": job.steps, "lr": job.lr, "batch": BATCH, "window": size,
                            "seed": job.options.seed,
                            "loss": "cross-entropy at the labelled pixels"},
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
    weights, are kept in the record); ``code_version`` is this isamap's.
    """
    held = record["held_out"]
    metrics = ({"cross_validation": {"f1": held["f1"], "auc": held["auc"],
                                     "folds": held["folds"], "points": held["points"]}}
               if held["folds"] else {})
    fine = {**record, "base_metrics": dict(base.metrics)}
    if notes:
        fine["input_notes"] = list(notes)
    return ModelMeta.from_dict({**base.to_dict(), "metrics": metrics, "code_version": "",
                                "extra": {**dict(base.extra), "fine_tune": fine}})


def _statistics(inputs: Sequence[StackInput], meta: ModelMeta) -> list[NormStats]:
    """What each input's windows are normalised by, as its maps are (module docstring)."""
    if meta.norm == "scene":
        return [scene_statistics(stack.path, meta.bands) for stack in inputs]
    return [NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))] * len(
        inputs)


def read_windows(inputs: Sequence[StackInput], where: Located, kept: np.ndarray, size: int,
                 norms: Sequence[NormStats]) -> np.ndarray:
    """``(n, C, size, size)`` normalised windows centred on the kept points, nodata 0.

    The point lies at ``(size // 2, size // 2)``; past the stack's edges is nodata, as a
    map's tiles see it.
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
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
