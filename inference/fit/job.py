"""``isamap-fit``: labelled points and the stacks under them to a model file, in minutes.

The job (:class:`inference.fit.request.FitJob`, the command's options) runs in this order,
every check before the first expensive step:

0. the ``--out`` folder: one holding another fit's model is refused, never replaced
   (:func:`check_out`: a fit records the digest of its request, its files by where they are
   and every option, in ``fit.json``; the identical command fits again into its own folder);
1. the encoder's file, when Presto features are asked for (exists, SHA-256, fits);
2. the points, refusing an assessment design's (:mod:`inference.fit.inputs`) or drawn from a
   label raster (:mod:`inference.fit.drawn`), and the input stacks (given, or made over the
   points by ``--backend``: :mod:`inference.fit.sources`), each point found in the first one
   covering it;
3. the bands at the points; points on pixels without data are left out (a warning), and
   what is left must hold enough points of every class in at least two spatial blocks
   (:func:`training.points.fit.check_only`);
4. the normalisation: each input's own statistics (``--norm scene``, every map then
   normalised by its input's, as ``isamap-train --norm scene`` does), or all inputs' pooled
   (``training``; Presto's features need it, since the network undoes it);
5. the features at the points through the model itself, the fit cross-validated by spatial
   blocks (:mod:`training.points`), and the model file: ``OUT/model.pt``, with the fit's
   scores in ``OUT/fit.json`` and ``OUT/fit.txt``.

With ``--from MODEL.pt`` (``FitJob.base``) no classifier is fitted: the network of that
model file is fine-tuned on the points (:mod:`inference.fit.tune`), its bands and
normalisation kept.

``isamap-predict``, ``isamap-map`` and the Beam map then run ``model.pt`` as they run any
model file (docs/points.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform as warp_transform

from contract.bands import DEFAULT_IMAGE_BANDS, canonical_band, find_band, is_code_band, own_month
from contract.dataset import read_manifest
from contract.input_check import judge_stacks
from contract.stack import stack_month
from core.digest import json_digest
from core.errors import ConfigError, InputDataError, IsamapError
from core.jsonsafe import dumps
from core.shareable import shareable_path
from core.storage import atomic_write, files
from gee_export.ee.names import default_workload_tag
from gee_export.ee.session import EESession
from gee_export.local.compositing import LocalRecipe
from gee_export.local.extent import scenes_extent
from gee_export.local.scenes import discover_scenes
from inference.assess.point_files import ReferencePoints
from inference.fit.drawn import draw_points
from inference.fit.inputs import (
    StackInput,
    locate,
    open_input,
    points_record,
    read_training_points,
    stack_bands,
    values_at,
)
from inference.fit.request import FitJob, Norm
from inference.fit.sources import ee_stack, local_stack, points_grid
from inference.fit.tune import run_tune
from inference.predict.expected_inputs import read_band_sample
from inference.predict.scene import scene_statistics
from training.band_ranges import band_ranges, judge_patches
from training.data import NormStats, band_stats
from training.modelfile import save_model_file
from training.models.encoders.registry import PRESTO, load_encoder
from training.models.points import uses_encoder
from training.points.fit import PointFit, check_only, fit_points
from training.points.model import feature_model, finished, model_kwargs, point_features
from training.points.model import points_meta as describe
from training.run.inputs import dataset_record

log = logging.getLogger(__name__)

#: The band kinds a default fit reads: the image bands of the stack (not quality counts).
IMAGE_SENSORS = ("S1", "S2", "embedding")


FIT_WITHOUT_ACCOUNT = """No account? Make the stack over the points from local scenes instead:
  isamap-fit --backend local --scenes DIR --month YYYY-MM ...
or fit on a stack you hold: isamap-fit --input STACK.tif ..."""
"""What ``isamap-fit`` can do without an Earth Engine account (its authentication advice)."""
FIT_PURPOSE = "make the stack over the points with Earth Engine (--backend ee)"
"""What ``isamap-fit --backend ee`` needs Earth Engine for."""

@dataclass(frozen=True)
class FitResult:
    """What a fit wrote and scored."""

    model: Path
    report: dict


def default_bands(path: str) -> tuple[str, ...]:
    """The image bands of a stack (Sentinel-1/2 and embedding bands), in file order.

    A series stack's earlier months (``B4_m1``) are among them: Presto reads them as its
    earlier timesteps, the bands arm as more features.
    """
    names = stack_bands(path)
    known = (canonical_band(n) for n in names)  # Sentinel-2's B02 is isamap's B2
    picked = tuple(n for n in known
                   if (spec := find_band(n)) is not None and spec.sensor in IMAGE_SENSORS)
    if not picked:
        raise InputDataError(f"--input {path} holds no image band isamap knows ({list(names)}); "
                             "name its bands as isamap-export does, or give --bands")
    return picked


def fit_request(job: FitJob) -> str:
    """A digest of what makes the fit: its files (by where they are) and every option.

    Paths are made absolute (the same files named from another folder are the same fit) and
    only their digest is recorded (``fit.json``'s ``request``): nothing private is written.
    """
    def where(path: str | None) -> str | None:
        return path if path is None or files.is_gcs(path) else os.path.abspath(path)

    record = {**asdict(job), "out": None, "progress": None, "project": None,
              "points": [where(p) for p in job.points],
              "inputs": [where(p) for p in job.inputs], "points_from": where(job.points_from),
              "encoder": where(job.encoder), "scenes": where(job.scenes),
              "norm": job.normalised_by, "base": where(job.base)}
    if job.points_from is None:  # points from files: no draw, the digest a files' fit had
        record = {k: v for k, v in record.items() if k not in ("points_from", "n")}
    if job.base is None:  # a classifier's fit: the digest it had before fine-tunes were made
        record = {k: v for k, v in record.items() if k not in ("base", "steps", "lr")}
    if not job.scene_reading:  # scenes read as their files say: the digest such a fit had
        del record["scene_reading"]
    return "sha256:" + json_digest(record)


def check_out(job: FitJob) -> str:
    """Refuse an ``--out`` holding another fit's model; returns this fit's request digest.

    The identical command fits again into its own folder (with ``--backend``, reusing the
    stack made there); a ``model.pt`` of other points, stacks or options (or of a run that
    recorded none) would be replaced without a word.

    Raises:
        ConfigError: ``OUT/model.pt`` exists and ``OUT/fit.json`` records another request.
    """
    request = fit_request(job)
    out = Path(job.out)
    if not (out / "model.pt").exists():
        return request
    try:
        theirs = json.loads((out / "fit.json").read_text()).get("request")
    except (OSError, ValueError, AttributeError):
        theirs = None
    if theirs != request:
        raise ConfigError(f"--out {job.out} holds another fit's model (model.pt of other "
                          "points, stacks or options); give another --out, or delete that "
                          "folder first")
    return request


def run_fit(job: FitJob, session: Any = None) -> FitResult:
    """The whole fit (module docstring); returns the model file and the report.

    ``session``: the Earth Engine session of ``--backend ee`` (None: one is opened).
    """
    start = time.perf_counter()
    request = check_out(job)
    if job.base is not None:
        path, report = run_tune(job, request, start)
        write_report(Path(job.out), report)
        return FitResult(path, report)
    _check_encoder(job)
    drawn = (draw_points(job.points_from, job.n, job.options.seed, job.classes, job.inputs)
             if job.points_from else None)
    points = drawn.points if drawn else read_training_points(job.points, job.classes,
                                                             job.column)
    inputs_paths, dataset = _stacks(job, points, session)
    bands = job.bands or default_bands(inputs_paths[0])
    named = "that --bands names" if job.bands else f"that --input {inputs_paths[0]} has"
    inputs = [open_input(path, bands, named) for path in inputs_paths]
    month = _month(job, inputs)
    where = locate(points, inputs)
    raw = values_at(inputs, where)
    # a point is read where its stack's own month is; an earlier month of a series missing
    # there is masked for Presto and the mean for the bands, as in every map
    kept = np.isfinite(raw[:, list(own_month(bands))]).all(axis=1)
    if not kept.all():
        log.warning("%d of %d points lie on pixels without data in the input (cloud-masked or "
                    "outside the composite) and are left out", int((~kept).sum()), kept.size)
    labels = points.reference[kept]
    check_only(labels, where.x[kept], where.y[kept], where.group[kept], job.classes,
               job.options)
    norms, pooled, ranges, checked = _statistics(inputs, bands, job.allow_implausible)
    kwargs = model_kwargs(job.features, bands, pooled, job.options.hidden,
                          centre(inputs[0]), month)
    model = feature_model(kwargs, len(job.classes), job.encoder)
    normalised = _normalised(raw[kept], where.group[kept], norms, pooled, job.normalised_by)
    log.info("features of %d points (%s)", int(kept.sum()), job.features)
    features = point_features(model, normalised)
    fit = fit_points(features, labels, where.x[kept], where.y[kept], where.group[kept],
                     job.classes, len(job.classes) - 1, job.options)
    model = finished(model, fit, len(job.classes))
    record = points_record(job.points, points, kept, drawn.record if drawn else None)
    extra = {"points": record, **checked,
             "inputs": [Path(p).name for p in inputs_paths], "dataset": dataset}
    meta = describe(kwargs, pooled, job.normalised_by, job.classes, fit,
                    pixel_size=abs(float(inputs[0].transform.a)), band_ranges=ranges,
                    extra={k: v for k, v in extra.items() if v is not None})
    out = Path(job.out)
    path = save_model_file(out / "model.pt", model, meta)
    report = {**_report(job, fit, bands, time.perf_counter() - start), "request": request}
    report["stacks"] = [shareable_path(p, out) for p in inputs_paths] if job.backend else None
    write_report(out, report)
    return FitResult(path, report)


def _check_encoder(job: FitJob) -> None:
    """Presto's file checked (exists, SHA-256, fits) before any pixel is read."""
    if not uses_encoder(job.features):
        return
    if not job.encoder:
        raise ConfigError(f"--features {job.features} needs the Presto file: "
                          f"--encoder presto=PATH; {PRESTO.where()}")
    load_encoder(PRESTO, job.encoder)
    if job.norm == "scene":
        raise ConfigError("Presto reads reflectance, which only the pooled statistics "
                          "give back: use --norm training (the default with Presto)")


def check_covered(points: ReferencePoints, bbox: tuple[float, float, float, float],
                  what: str) -> None:
    """Refuse points outside ``bbox`` (lon/lat) before a stack is made over all of them.

    A point kilometres off (a typo, swapped digits) stretched the stack over the gap: a large,
    nearly empty composite, its points then left out as "without data".

    Raises:
        InputDataError: a point outside ``bbox``.
    """
    west, south, east, north = bbox
    out = ~((points.lon >= west) & (points.lon <= east) & (points.lat >= south)
            & (points.lat <= north))
    if out.any():
        first = int(np.argmax(out))
        raise InputDataError(
            f"{int(out.sum())} of {len(points.ids)} points lie outside the area {what} cover "
            f"({west:.5f},{south:.5f},{east:.5f},{north:.5f}), first {points.ids[first]} at "
            f"{points.lon[first]:.5f},{points.lat[first]:.5f}; check their coordinates, or "
            "give scenes that cover them")


def _stacks(job: FitJob, points: ReferencePoints, session: Any
            ) -> tuple[list[str], dict | None]:
    """The input stacks, made over the points by ``--backend``; the first one's record.

    A stack of series bands is made as ``isamap-export --series-months N`` makes it, by the
    same builders, which refuse an earlier month without scenes before any pixel is read.
    """
    if job.backend is None:
        return list(job.inputs), _dataset(job.inputs[0])
    assert job.month  # FitJob's own check
    bands = job.bands or DEFAULT_IMAGE_BANDS
    grid = points_grid(points.lon, points.lat, job.crs)
    _check_before_stack(job, points, grid.crs)
    folder = Path(job.out) / "stack"
    if job.backend == "local":
        assert job.scenes  # FitJob's own check
        recipe = LocalRecipe(allow_l1c=job.allow_l1c,
                             allow_implausible=job.allow_implausible or None,
                             **dict(job.scene_reading))
        scenes = discover_scenes(job.scenes, **recipe.reading())  # once, for both steps
        extent = scenes_extent(scenes, [job.month])
        if extent is not None:  # none: the stack's own refusal says so
            check_covered(points, extent, f"the scenes of {job.month} in {job.scenes}")
        with files.unmade_if_refused(folder, job.out):  # a refusal leaves no empty folder
            path, record = local_stack(scenes, grid, job.month, bands, folder, recipe)
    else:
        if session is None:
            session = EESession(project=job.project, workload_tag=default_workload_tag(
                "isamap-fit"), without_account=FIT_WITHOUT_ACCOUNT,
                purpose=FIT_PURPOSE).initialize()
        with files.unmade_if_refused(folder, job.out):
            path, record = ee_stack(session, grid, job.month, bands, folder, job.progress)
    return [path], dataset_record(str(folder), record)


def _check_before_stack(job: FitJob, points: ReferencePoints, crs: str) -> None:
    """The points' counts checked before a backend makes (or fetches) the stack over them.

    Points on nodata are dropped later and checked again; too few of them even all counted
    is refused here, before any scene is composited or pixel fetched.
    """
    xs, ys = warp_transform("EPSG:4326", crs, list(points.lon), list(points.lat))
    check_only(points.reference, np.asarray(xs), np.asarray(ys),
               np.zeros(len(points.ids), np.int64), job.classes, job.options)


def _statistics(inputs: Sequence[StackInput], bands: Sequence[str], allow_implausible: bool
                ) -> tuple[list[NormStats], NormStats, dict, dict[str, Any]]:
    """Scene statistics, pooled ones, ranges, the input check's record (``judge_patches``)."""
    samples = []
    for stack in inputs:
        sample = read_band_sample(stack.path, stack.indexes)
        if sample is None:  # a local file always gives one
            raise InputDataError(f"--input {stack.path} cannot be sampled")
        samples.append(sample)
    later = judge_stacks({f"--input {stack.path} (against --input {inputs[0].path})": {
        b: sample[i] for i, b in enumerate(bands) if not is_code_band(b)}
        for stack, sample in zip(inputs, samples, strict=True)},
        allow_implausible=allow_implausible, recorded_in="the model file")
    checked = judge_patches(f"--input {' '.join(str(s.path) for s in inputs)}", samples.__getitem__,
                            len(samples), tuple(bands), allow_implausible=allow_implausible,
                            per_patch=samples[0][0].size)
    if later:  # each later stack's doubts against the first's, then the pooled ones'
        checked["input_notes"] = [*later, *checked.get("input_notes", ())]
    pooled = band_stats(samples, tuple(bands), where="the input stacks")
    norms = [scene_statistics(stack.path, bands) for stack in inputs]
    return norms, pooled, band_ranges(samples.__getitem__, len(samples), tuple(bands)), checked


def _normalised(raw: np.ndarray, group: np.ndarray, norms: Sequence[NormStats],
                pooled: NormStats, by: Norm) -> np.ndarray:
    """The points' bands as the map will see them: ``(x - mean) / std`` per input or pooled."""
    out = np.empty_like(raw, dtype=np.float32)
    for g in np.unique(group):
        stats = norms[int(g)] if by == "scene" else pooled
        rows = group == g
        out[rows] = (raw[rows] - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std,
                                                                                  np.float32)
    return out


def centre(stack: StackInput) -> tuple[float, float]:
    """Latitude, longitude of a stack's centre: where Presto is told every pixel lies.

    One place per model, as ``isamap-train --encoder`` tells it the training grid's centre:
    the first input's, for the points and for every map the model makes.
    """
    x, y = stack.transform @ (stack.width / 2, stack.height / 2)
    lon, lat = warp_transform(stack.crs, "EPSG:4326", [x], [y])
    return float(lat[0]), float(lon[0])


def _month(job: FitJob, inputs: Sequence[StackInput]) -> int:
    """Month (0-11) Presto is told; only Presto features need it.

    A ``--month`` that contradicts an input's recorded month is refused, as
    ``isamap-predict`` refuses it (:func:`contract.stack.stack_month`).
    """
    months = [stack_month(job.month, s.month, f"--input {s.path}") for s in inputs]
    text = months[0]  # every input's checked; the first one's is Presto's
    if not uses_encoder(job.features):
        return 0
    if not text:
        raise ConfigError(f"--input {inputs[0].path} records no month (its MONTH tag), and "
                          "Presto needs one: give --month YYYY-MM")
    return int(text[5:7]) - 1


def _dataset(stack: str) -> dict | None:
    """The export's dataset record when ``stack`` is ``ROOT/stacks/...`` of a patch dataset.

    What ``isamap-map`` rebuilds a map's inputs from, as for a trained model; None for a
    stack of no dataset (``isamap-predict`` maps it all the same).
    """
    path = Path(stack)
    if path.parent.name != "stacks":
        return None
    try:
        record = read_manifest(path.parent.parent, missing_ok=True)
    except IsamapError:
        return None
    return dataset_record(str(path.parent.parent), record) if record else None


def _report(job: FitJob, fit: PointFit, bands: Sequence[str], seconds: float) -> dict:
    cv = fit.cv.record()
    return {"features": job.features, "norm": job.normalised_by, "bands": list(bands),
            "classes": list(job.classes), "points": fit.record(), "cross_validation": cv,
            "seconds": round(seconds, 1)}


def report_table(report: dict) -> str:
    """The fit's cross-validated scores as a few readable lines."""
    if "from" in report:
        return tune_table(report)
    cv, points = report["cross_validation"], report["points"]
    counts = ", ".join(f"{n} {name}" for name, n in points["per_class"].items())
    head = f"{points['hidden']} hidden units" if points["hidden"] else "linear"
    spread = [v for v in cv["fold_f1"] if v is not None]
    lines = [f"points       {points['points']} ({counts}) in {points['blocks']} blocks of "
             f"{points['block_m']:g} m",
             f"features     {report['features']} ({len(report['bands'])} bands, "
             f"normalised by {report['norm']})",
             f"head         {head}, L2 {cv['l2']:g} (lowest out-of-fold log-loss)",
             f"block CV     {cv['folds']} folds: F1 "
             + ", ".join(f"{k} {v:.3f}" for k, v in cv["f1"].items())
             + (f"; ROC AUC {cv['auc']:.3f}" if cv["auc"] is not None else "")]
    if spread:
        lines.append(f"             {report['classes'][-1]} F1 per fold {min(spread):.3f}-"
                     f"{max(spread):.3f}")
    return "\n".join(lines)


def tune_table(report: dict) -> str:
    """A fine-tune's held-out scores beside the base network's, or why there are none."""
    base, points, tune, held = (report["from"], report["points"], report["fine_tune"],
                                report["held_out"])
    counts = ", ".join(f"{n} {name}" for name, n in points["per_class"].items())
    lines = [f"from         {base['file']} ({base['name']}, sha256 {base['sha256'][:12]}), "
             f"{len(report['bands'])} bands normalised by {report['norm']}",
             f"points       {points['used']} ({counts}) in {points['blocks']} blocks of "
             f"{points['block_m']:g} m",
             f"fine-tune    {tune['steps']} steps of {tune['batch']} windows of {tune['window']} "
             f"px, Adam {tune['lr']:g}, loss at the labelled pixels, seed {tune['seed']}"]
    if tune.get("shift"):
        shares = ", ".join(f"{name} {100 * v:.1f} %" for name, v in tune["base_shares"].items())
        lines.append(f"prior        the base's class shares over the inputs kept ({shares}): "
                     f"logits shifted by ({', '.join(f'{v:+.3f}' for v in tune['shift'])})")
    if not held["folds"]:
        lines.append(f"held out     no score claimed: {held['why_none']}")
        return "\n".join(lines)
    positive = report["classes"][-1]
    line = (f"held out     {held['folds']} folds of blocks, their neighbours apart: {positive} "
            f"F1 {_beside(held['f1'][positive], held['base_f1'][positive])}; ROC AUC "
            f"{_beside(held['auc'], held['base_auc'])}")
    return "\n".join([*lines, line])


def _beside(tuned: float | None, base: float | None) -> str:
    """A fine-tune's score beside the base model's and the lift (``n/a``: not defined)."""
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lift = "" if tuned is None or base is None else f", {tuned - base:+.3f}"
    return f"{shown(tuned)} (base {shown(base)}{lift})"


def write_report(out: Path, report: dict) -> None:
    """``OUT/fit.json`` (the report) and ``OUT/fit.txt`` (:func:`report_table`)."""
    text = dumps(report, indent=2)
    atomic_write(out / "fit.json", lambda fh: fh.write(text.encode()))
    table = report_table(report)
    atomic_write(out / "fit.txt", lambda fh: fh.write(table.encode() + b"\n"))
