"""Evaluate a model file on a split of a patch dataset: pixel metrics, point sample, areas.

Writes into ``out_dir``: ``metrics.json`` (everything), ``metrics.txt`` (readable tables),
``confusion_matrix.png`` and ``reliability.png`` (the probabilities' reliability diagram, before
and after the model file's calibration, with the expected calibration error of each,
:mod:`training.calibration.temperature`). ``metrics.json`` is written last and records the
evaluation's inputs (:func:`evaluation_inputs`): the same evaluation asked again into the
same folder is read back, not redone, and any change of inputs is evaluated afresh. Besides the
per-pixel
confusion matrix, it runs the papers' point assessment — sample points stratified by map
(predicted) class, their confusion matrix and UA/PA/OA/kappa — and the Olofsson et al. (2014)
area-weighted estimates of accuracy and of each class's area with 95 % confidence intervals.
:class:`EvaluateConfig` carries the options (``isamap-evaluate``'s flags) down.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.bands import LABEL_NODATA
from core.digest import json_digest
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.progress import progress_bar
from core.shareable import shareable, shareable_text
from core.storage import atomic_write, check_file_targets, open_store
from core.version import code_version
from engine import autotune
from engine.devices import Layout, Precision
from engine.distributed import DistInfo, resolve_device
from engine.outputs import main_output
from inference.assess.estimators import point_confusion, sample_points, stratified_area_accuracy
from training.band_ranges import check_patch_values
from training.calibration.record import check_model_data, model_split
from training.calibration.temperature import Reliability, describe, positive_class, probabilities
from training.data import PatchDataset, Split
from training.forward_memory import check_scaled_batch, memory_budget
from training.loader import make_loader
from training.metrics import ConfusionMatrix, compute_metrics
from training.model_meta import ModelMeta
from training.modelfile import load_model
from training.plots import plot_confusion, plot_reliability

log = logging.getLogger(__name__)

#: what an evaluation writes in its folder (metrics.json first: it is read back by name)
OUTPUT_FILES = ("metrics.json", "metrics.txt", "confusion_matrix.png", "reliability.png")

#: manifest keys that say when a dataset was written, not what it holds
_WRITE_TIMES = ("created", "updated")


@dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate and how: ``isamap-evaluate``'s options.

    Attributes:
        model: a model file written by training.
        data: patch dataset root (local or gs://).
        out_dir: folder for metrics.json, metrics.txt and the PNGs.
        split: ``train``, ``val`` or ``test``.
        batch_size: patches per forward pass.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        precision: autocast dtype: ``auto`` (measured on the first batch, see
            :mod:`engine.autotune`; the choice and its timings go into metrics.json),
            or ``fp32`` (exact), ``bf16``, ``fp16`` (never overridden).
        channels_last: NHWC memory format: ``auto`` (measured), ``on``, ``off``.
        autotune_cache: reuse a cached ``auto`` choice (None: unless disabled by env).
        num_workers: loader worker processes.
        points: number of sample points for the point assessment (0: skip it).
        point_seed: seed of the point sample.
        progress: show a tqdm bar.
    """

    model: str | os.PathLike
    data: str
    out_dir: str | os.PathLike
    split: Split = "test"
    batch_size: int = 16
    device: str = "auto"
    precision: Precision = "auto"
    channels_last: Layout | bool = "auto"
    autotune_cache: bool | None = None
    num_workers: int | None = 0
    points: int = 0
    point_seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class EvalResult:
    metrics_path: Path
    table_path: Path
    confusion_path: Path
    metrics: dict
    reliability_path: Path | None = None
    reused: bool = False  # read back from a folder that held this evaluation, nothing written


@dataclass
class _Scores:
    """What one pass over the split gathers: pixel counts, reliabilities, the runtime."""

    cm: ConfusionMatrix
    raw: Reliability
    calibrated: Reliability
    runtime: autotune.Choice | None
    preds: list[np.ndarray]
    refs: list[np.ndarray]


def evaluate(cfg: EvaluateConfig) -> EvalResult:
    """Run the model over every patch of ``cfg.split`` and write the evaluation files.

    A folder that holds this very evaluation (:func:`evaluation_inputs`) is read back instead:
    nothing is computed or written, and the result says ``reused``.
    """
    dev = resolve_device(cfg.device, DistInfo())
    loaded = load_model(cfg.model, map_location=dev)
    model, meta = loaded.module, loaded.meta
    model.eval()
    check_model_data(meta, cfg.data)
    ds = model_split(meta, cfg.data, cfg.split)
    folder = Path(cfg.out_dir)
    inputs = evaluation_inputs(cfg, loaded.file_id, ds)
    done = _finished(folder, inputs)
    if done is not None:
        log.info("%s already holds this evaluation (the same model file, patches and "
                 "options): read back, not redone", folder / "metrics.json")
        return done
    check_file_targets(folder / n for n in OUTPUT_FILES)  # before the work, not at its end
    check_patch_values(lambda i: ds.read_raw(i)[0], len(ds), tuple(meta.bands),
                       meta.band_ranges, f"the {cfg.split} split of the dataset {cfg.data}")
    check_scaled_batch(int(meta.output_scale), ds.patch_size, cfg.batch_size, model=meta.name,
                       side_flag=None, budget=memory_budget(dev))  # before the first forward
    scores = _score(cfg, model, meta, ds, dev)
    names = list(meta.class_names)
    pixel = scores.cm.compute(names)
    raw, calibrated = scores.raw, scores.calibrated
    result = {"model": str(cfg.model), "model_name": meta.name, "data": str(cfg.data),
              "split": cfg.split, "patches": len(ds), "bands": list(meta.bands),
              "convention": "matrix[reference][prediction]", "pixel": pixel.to_dict(),
              "runtime": scores.runtime.to_dict() if scores.runtime else None,
              "inputs": inputs}
    joined = dict(meta.calibration or {}).get("method") == "members"  # isamap-train --members
    before = "the members' mean at temperature 1 (each member's own inside it)" if joined \
        else "temperature 1 (uncalibrated)"
    result["calibration"] = {
        "model_file": describe(meta.calibration), "temperature": meta.temperature,
        "calibrated": meta.calibrated, "ece_binned": raw.kind, "ece_bins": raw.bins,
        "ece_before": raw.ece, "ece_after": calibrated.ece,
        "before": raw.to_dict(), "after": calibrated.to_dict()}
    text = [f"{meta.name} on {cfg.data} [{cfg.split}], {len(ds)} patches, per-pixel",
            pixel.table(), "", f"calibration: {describe(meta.calibration)}",
            f"expected calibration error ({raw.bins} equal-width bins of the {raw.kind} "
            f"probability, {raw.pixels} pixels): {raw.ece:.4f} at {before}, "
            f"{calibrated.ece:.4f} at temperature {meta.temperature:.3f} (as predicted)"]
    if cfg.points:
        res = float((ds.manifest.get("grid") or {}).get("resolution", 10)) / meta.output_scale
        text += _point_assessment(cfg, scores, names, res, result)
    folder.mkdir(parents=True, exist_ok=True)
    # an earlier evaluation's metrics.json goes first: stopped before the new one is written,
    # the folder must not claim the old inputs beside the new files (metrics.json is last)
    (folder / "metrics.json").unlink(missing_ok=True)
    _atomic_text(folder / "metrics.txt", shareable_text("\n".join(text) + "\n", folder))
    png = plot_confusion(np.asarray(pixel.matrix), names, folder / "confusion_matrix.png",
                         f"{meta.name} [{cfg.split}] OA {100 * pixel.oa:.2f} %")
    curves = {"the members' mean (T = 1)" if joined else "uncalibrated (T = 1)": raw.to_dict()}
    if meta.calibrated or meta.temperature != 1.0:
        curves[f"calibrated (T = {meta.temperature:.2f})"] = calibrated.to_dict()
    reliability = plot_reliability(curves, folder / "reliability.png",
                                   f"{meta.name} [{cfg.split}] reliability")
    # last, so that a folder whose metrics.json records these inputs holds all of their files;
    # shared with the model: the model file and dataset named relative to out, or by name
    _atomic_text(folder / "metrics.json", dumps(shareable(result, folder), indent=2))
    return EvalResult(folder / "metrics.json", folder / "metrics.txt", png, result, reliability)


def evaluation_inputs(cfg: EvaluateConfig, model_id: str, ds: PatchDataset) -> dict[str, Any]:
    """What decides an evaluation's figures.

    The model file's identity (its bytes), the dataset's manifest (write times aside), the
    split's patch records and the checksums of the image and label files they name (pixels,
    not names: a folder exported again in place is noticed), the model file and dataset as
    metrics.json names them, the options that change a figure or how it is computed (the
    split, the point sample, the device, precision and layout, a fresh measurement), and the
    code version (another isamap evaluates again).
    """
    manifest = {k: v for k, v in ds.manifest.items() if k not in _WRITE_TIMES}
    store = open_store(ds.root)
    sums = [[store.md5(r["image"]), store.md5(r[ds.label_key])] for r in ds.records]
    return {"model_id": model_id, "data_id": json_digest([manifest, ds.records, sums], 16),
            "split": cfg.split, "points": cfg.points, "point_seed": cfg.point_seed,
            "device": cfg.device, "precision": cfg.precision,
            "channels_last": cfg.channels_last, "autotune_cache": cfg.autotune_cache,
            "code_version": code_version(),
            **shareable({"model": str(cfg.model), "data": str(cfg.data)}, cfg.out_dir)}


def _finished(folder: Path, inputs: dict[str, Any]) -> EvalResult | None:
    """The evaluation ``folder`` holds, when it was made from ``inputs``, else None."""
    paths = [folder / n for n in OUTPUT_FILES]
    if not all(p.is_file() for p in paths):
        return None
    try:
        metrics = json.loads(paths[0].read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("inputs") != inputs:
        return None
    return EvalResult(paths[0], paths[1], paths[2], metrics, paths[3], reused=True)


def _score(cfg: EvaluateConfig, model: torch.nn.Module, meta: ModelMeta, ds: PatchDataset,
           dev: torch.device) -> _Scores:
    """One pass of the model over the split: confusion, reliability, the points' inputs."""
    loader = make_loader(ds, cfg.batch_size, False, 0, cfg.num_workers)
    positive = positive_class(max(meta.num_classes, 2))
    name = meta.class_names[positive] if positive is not None and meta.num_classes > 1 else ""
    scores = _Scores(ConfusionMatrix(meta.num_classes), Reliability(positive, name=name),
                     Reliability(positive, name=name),
                     autotune.explicit(cfg.precision, cfg.channels_last, dev), [], [])
    run = None
    with torch.no_grad():
        for batch in progress_bar(loader, desc=f"evaluate {cfg.split}",
                                  disable=not cfg.progress):
            x = batch["image"].to(dev)
            y = batch["label"].to(dev)
            if scores.runtime is None:
                scores.runtime = autotune.choose(
                    model, x, dev, precision=cfg.precision, channels_last=cfg.channels_last,
                    cache=cfg.autotune_cache)
            if run is None:
                run = autotune.apply(scores.runtime, model, dev)
            x = x.contiguous(memory_format=scores.runtime.setting.memory_format)
            with scores.runtime.setting.autocast(dev.type):
                out = main_output(run(x)).float()
            pred = out.argmax(1)
            scores.cm.update(pred, y)
            scores.raw.update(probabilities(out), y)
            scores.calibrated.update(probabilities(out, meta.temperature, meta.logit_shift), y)
            if cfg.points:
                scores.preds.append(pred.cpu().numpy().astype(np.uint8))
                scores.refs.append(y.cpu().numpy().astype(np.uint8))
    return scores


def _point_assessment(cfg: EvaluateConfig, scores: _Scores, names: list[str], res: float,
                      result: dict[str, Any]) -> list[str]:
    """The point sample's confusion and the area estimates, into ``result``; their lines."""
    k = len(names)
    pmap = np.concatenate(scores.preds)
    ref = np.concatenate(scores.refs)
    pmap_valid = np.where(ref == LABEL_NODATA, LABEL_NODATA, pmap)
    index = sample_points(pmap_valid, cfg.points, cfg.point_seed, "stratified", k)
    pcm = point_confusion(pmap_valid, ref, index, k)
    pm = compute_metrics(pcm, names)
    mapped = np.bincount(pmap_valid[pmap_valid != LABEL_NODATA].ravel(), minlength=k)
    result["points"] = {"n": int(pcm.sum()), "asked": cfg.points,
                        "design": "stratified by map class", "seed": cfg.point_seed,
                        "metrics": pm.to_dict()}
    text = ["", f"point sample ({_sample_size(int(pcm.sum()), cfg.points, mapped, names)}, "
                "stratified by map class)", pm.table()]
    try:
        area = stratified_area_accuracy(pcm, mapped, pixel_area=res * res / 1e6,
                                        class_names=names)
    except ConfigError as exc:
        result["area_km2"] = {"error": str(exc)}
        return [*text, "", f"area estimates skipped: {exc}"]
    result["area_km2"] = area.to_dict()
    text += ["", "Olofsson et al. (2014) estimates, areas in km², +/- 95 % CI",
             f"OA {_estimate(area.oa, area.oa_ci, 100, '.2f', '.2f')} %"]
    for i, n in enumerate(names):
        text.append(f"{n:<14} UA {_estimate(area.ua[i], area.ua_ci[i], 100, '6.2f', '5.2f')}  "
                    f"PA {_estimate(area.pa[i], area.pa_ci[i], 100, '6.2f', '5.2f')}  "
                    f"area {_estimate(area.area[i], area.area_ci[i], 1, '10.3f', '8.3f')} km² "
                    f"(mapped {area.mapped_area[i]:.3f})")
    return text


def _sample_size(n: int, asked: int, mapped: np.ndarray, names: list[str]) -> str:
    """How many points the sample holds; where fewer than ``asked``, why (equal strata)."""
    if n == asked:
        return f"{n} points"
    per = max(asked // len(names), 1)
    why = [f"{per} in each of the {len(names)} map classes"]
    short = [f"{names[i]} maps {int(c)} px" for i, c in enumerate(mapped) if c < per]
    if short:
        why.append(f"all of a class that maps fewer pixels: {', '.join(short)}")
    return f"{n} of the {asked} points asked for: {'; '.join(why)}"


def _estimate(value: float, ci: float, scale: float, fmt: str, ci_fmt: str) -> str:
    """``value +/- ci`` (both times ``scale``), or ``n/a`` where the estimate is undefined."""
    if not np.isfinite(value):
        return f"{'n/a':>{len(format(0.0, fmt))}}"
    spread = format(scale * ci, ci_fmt) if np.isfinite(ci) else "n/a"
    return f"{format(scale * value, fmt)} +/- {spread}"


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))
