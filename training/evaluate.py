"""Evaluate a model file on a split of a patch dataset: pixel metrics, point sample, areas.

Writes into ``out_dir``: ``metrics.json`` (everything), ``metrics.txt`` (readable tables),
``confusion_matrix.png`` and ``reliability.png`` (the probabilities' reliability diagram, before
and after the model file's calibration, with the expected calibration error of each,
:mod:`training.calibration`). Besides the per-pixel confusion matrix, it runs the papers' point
assessment — sample points stratified by map (predicted) class, their confusion matrix and
UA/PA/OA/kappa — and the Olofsson et al. (2014) area-weighted estimates of accuracy and of
each class's area with 95 % confidence intervals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.progress import progress_bar
from core.shareable import shareable, shareable_text
from core.storage import atomic_write
from engine import autotune
from engine.devices import Layout, Precision
from engine.distributed import DistInfo, resolve_device
from engine.outputs import main_output
from training.area_estimation import point_confusion, sample_points, stratified_area_accuracy
from training.calibration import Reliability, describe, positive_class, probabilities
from training.data import NormStats, PatchDataset, Split, scene_norms_for
from training.loader import make_loader
from training.metrics import ConfusionMatrix, compute_metrics
from training.modelfile import load_model_file
from training.plots import plot_confusion, plot_reliability


@dataclass(frozen=True)
class EvalResult:
    metrics_path: Path
    table_path: Path
    confusion_path: Path
    metrics: dict
    reliability_path: Path | None = None


def evaluate(model_path: str | os.PathLike, data: str, out_dir: str | os.PathLike,
             split: Split = "test", batch_size: int = 16, device: str = "auto",
             precision: Precision = "auto", num_workers: int | None = 0, points: int = 0,
             point_seed: int = 0, progress: bool = True, channels_last: Layout | bool = "auto",
             autotune_cache: bool | None = None) -> EvalResult:
    """Run the model over every patch of ``split`` and write the evaluation files.

    Args:
        model_path: a model file written by training.
        data: patch dataset root (local or gs://).
        out_dir: folder for metrics.json, metrics.txt and confusion_matrix.png.
        split: ``train``, ``val`` or ``test``.
        batch_size: patches per forward pass.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        precision: autocast dtype: ``auto`` (measured on the first batch, see
            :mod:`engine.autotune`; the choice and its timings go into metrics.json),
            or ``fp32`` (exact), ``bf16``, ``fp16`` (never overridden).
        num_workers: loader worker processes.
        progress: show a tqdm bar.
        points: number of sample points for the point assessment (0: skip it).
        point_seed: seed of the point sample.
        channels_last: NHWC memory format: ``auto`` (measured), ``on``, ``off``.
        autotune_cache: reuse a cached ``auto`` choice (None: unless disabled by env).
    """
    dev = resolve_device(device, DistInfo())
    model, meta = load_model_file(model_path, map_location=dev)
    model.eval()
    runtime = autotune.explicit(precision, channels_last, dev)
    norm = NormStats(meta.bands, meta.norm_mean, meta.norm_std)
    label = "label_fine" if meta.output_scale > 1 else "label"
    ds = PatchDataset(data, split, bands=meta.bands, norm=norm, label=label,
                      scene_norms=scene_norms_for(data, meta.bands, meta.norm))
    if tuple(ds.class_names) != tuple(meta.class_names):
        raise ConfigError(f"the model predicts {meta.class_names} but the dataset's classes are "
                          f"{ds.class_names}")
    loader = make_loader(ds, batch_size, False, 0, num_workers)
    cm = ConfusionMatrix(meta.num_classes)
    positive = positive_class(max(meta.num_classes, 2))
    name = meta.class_names[positive] if positive is not None and meta.num_classes > 1 else ""
    raw, calibrated = Reliability(positive, name=name), Reliability(positive, name=name)
    preds, refs = [], []
    run = None
    with torch.no_grad():
        for batch in progress_bar(loader, desc=f"evaluate {split}", disable=not progress):
            x = batch["image"].to(dev)
            y = batch["label"].to(dev)
            if runtime is None:
                runtime = autotune.choose(model, x, dev, precision=precision,
                                          channels_last=channels_last, cache=autotune_cache)
            if run is None:
                run = autotune.apply(runtime, model, dev)
            x = x.contiguous(memory_format=runtime.setting.memory_format)
            with runtime.setting.autocast(dev.type):
                out = main_output(run(x)).float()
            pred = out.argmax(1)
            cm.update(pred, y)
            raw.update(probabilities(out), y)
            calibrated.update(probabilities(out, meta.temperature), y)
            if points:
                preds.append(pred.cpu().numpy().astype(np.uint8))
                refs.append(y.cpu().numpy().astype(np.uint8))
    names = list(meta.class_names)
    pixel = cm.compute(names)
    result = {"model": str(model_path), "model_name": meta.name, "data": str(data),
              "split": split, "patches": len(ds), "bands": list(meta.bands),
              "convention": "matrix[reference][prediction]", "pixel": pixel.to_dict(),
              "runtime": runtime.to_dict() if runtime else None}
    result["calibration"] = {
        "model_file": describe(meta.calibration), "temperature": meta.temperature,
        "calibrated": meta.calibrated, "ece_binned": raw.kind, "ece_bins": raw.bins,
        "ece_before": raw.ece, "ece_after": calibrated.ece,
        "before": raw.to_dict(), "after": calibrated.to_dict()}
    text = [f"{meta.name} on {data} [{split}], {len(ds)} patches, per-pixel", pixel.table(), "",
            f"calibration: {describe(meta.calibration)}",
            f"expected calibration error ({raw.bins} equal-width bins of the {raw.kind} "
            f"probability, {raw.pixels} pixels): {raw.ece:.4f} at temperature 1 (uncalibrated), "
            f"{calibrated.ece:.4f} at temperature {meta.temperature:.3f} (as predicted)"]
    if points:
        pmap = np.concatenate(preds)
        ref = np.concatenate(refs)
        pmap_valid = np.where(ref == LABEL_NODATA, LABEL_NODATA, pmap)
        index = sample_points(pmap_valid, points, point_seed, "stratified",
                                  meta.num_classes)
        pcm = point_confusion(pmap_valid, ref, index, meta.num_classes)
        pm = compute_metrics(pcm, names)
        mapped = np.bincount(pmap_valid[pmap_valid != LABEL_NODATA].ravel(),
                             minlength=meta.num_classes)
        res = float((ds.manifest.get("grid") or {}).get("resolution", 10)) / meta.output_scale
        result["points"] = {"n": int(pcm.sum()), "design": "stratified by map class",
                            "seed": point_seed, "metrics": pm.to_dict()}
        text += ["", f"point sample ({int(pcm.sum())} points, stratified by map class)",
                 pm.table()]
        try:
            area = stratified_area_accuracy(pcm, mapped, pixel_area=res * res / 1e6,
                                            class_names=names)
            result["area_km2"] = area.to_dict()
            text += ["", "Olofsson et al. (2014) estimates, areas in km², +/- 95 % CI",
                     f"OA {100 * area.oa:.2f} +/- {100 * area.oa_ci:.2f} %"]
            for i, n in enumerate(names):
                text.append(f"{n:<14} UA {100 * area.ua[i]:6.2f} +/- {100 * area.ua_ci[i]:5.2f}  "
                            f"PA {100 * area.pa[i]:6.2f} +/- {100 * area.pa_ci[i]:5.2f}  "
                            f"area {area.area[i]:10.3f} +/- {area.area_ci[i]:8.3f} km² "
                            f"(mapped {area.mapped_area[i]:.3f})")
        except ConfigError as exc:
            result["area_km2"] = {"error": str(exc)}
            text += ["", f"area estimates skipped: {exc}"]
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # shared with the model: the model file and dataset named relative to out, or by name
    _atomic_text(folder / "metrics.json", dumps(shareable(result, folder), indent=2))
    _atomic_text(folder / "metrics.txt", shareable_text("\n".join(text) + "\n", folder))
    png = plot_confusion(np.asarray(pixel.matrix), names, folder / "confusion_matrix.png",
                         f"{meta.name} [{split}] OA {100 * pixel.oa:.2f} %")
    curves = {"uncalibrated (T = 1)": raw.to_dict()}
    if meta.calibrated:
        curves[f"calibrated (T = {meta.temperature:.2f})"] = calibrated.to_dict()
    reliability = plot_reliability(curves, folder / "reliability.png",
                                   f"{meta.name} [{split}] reliability")
    return EvalResult(folder / "metrics.json", folder / "metrics.txt", png, result, reliability)


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))
