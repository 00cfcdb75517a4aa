"""Two-date ISA change on real Sentinel-2 pairs: false change on stable ground, implanted gain.

``python -m experiments.change_pairs --out DIR``

Models (``--recipes``): ``unet-s2`` (each scene normalised by its own statistics) and
``unet-s2-global`` (the training split's statistics) by default, trained as
:mod:`experiments.builtup` trains them, through ``isamap-export`` and ``isamap-train``; and,
with ``--encoder NAME=PATH``, models on a frozen pretrained encoder: ``presto`` or
``galileo-nano`` (its features beside the bands, ``--fusion concat``), ``NAME:head`` (the
encoder as backbone), and ``bands`` (the same U-Net and loop without an encoder), trained
``--frozen-iterations`` steps on features computed once per image
(:mod:`experiments.change_series`). Every model is trained on the whole East Java Dynamic
World tile (Sentinel-2 **L2A**), several seeds, a short budget.

Pairs: the eo-learn Slovenia sample (1 km², near Ljubljana, 2015), whose five reference
scenes are Sentinel-2 **L1C** top-of-atmosphere reflectance; the scenes its cloud mask
(``CLM``) calls clear (at most 5 % cloud) are paired in date order. The ground is taken as
stable between those dates (weeks apart, one summer): every pixel a method flags is false
change. The arrays go to the model directly (the product's own route for such files is
``isamap-export --allow-l1c``, which warns, and ``isamap-predict``, which warns again).

Detection: real change is not labelled in the sample, so change is **implanted**: blocks of
the later date's own artificial-surface pixels (land use class 8) are pasted, pixel spectra
drawn at random, into blocks of the later date with no artificial surface; the earlier date
is left as it is. The implanted pixels are the only true gain.

Arms, each scored for false change (gain or loss) and false gain on the stable pair, gain F1
and ROC AUC (of :func:`gain_score`, or of :func:`spectral_gain_score` for ``spectral k``) on
the implanted pair:

- ``differenced``: the two dates' class maps differenced (margin 0, raw inputs);
- ``normalised``: the later date first normalised onto the earlier
  (:func:`inference.predict.change.arrays.fit_relative_normalisation`,
  :func:`apply_normalisation`);
- ``margin M``: change only where both probabilities clear 0.5 by M (0.1, 0.2, 0.3 and
  ``--margin``);
- ``both``: normalised and margin;
- ``training stats``: both dates' bands moved to the model's training statistics
  (:func:`match_statistics`: mapping L1C toward the L2A radiometry);
- ``spectral k``: the bands decide whether a pixel changed, the model which way
  (:func:`inference.predict.change.arrays.spectral_change` on the raw inputs' probabilities, at
  ``k`` = 3, 4 and the product's default), the magnitude of the later date's model bands
  against the earlier date's under that pair's own fit, as the product fits one per pair;
- NDBI gain ``NDBI(later) - NDBI(earlier) > t`` at ``t = --ndbi-gain`` and at the ``t`` that
  flags as many implanted-pair pixels as the model's ``both`` arm does.

Two baselines use no model: NDBI gain at ``t = --ndbi-gain``, and the ``spectral gate, NDBI
direction`` (gain where the spectral magnitude exceeds the default threshold and NDBI rose,
loss where it exceeds it and NDBI fell): how much of a ``spectral k`` arm's score the gate
alone gives. Each seed's gain ROC AUC of the model's own score and of the default rule is
set beside the gate's (:func:`experiments.change_figures.seed_ranking`).

Per date: every model's map of each clear date, as given (L1C) and dark-object subtracted
(an L2A stand-in), its built share, F1 and ROC AUC against class 8 and its stability between
the dates (:mod:`experiments.change_series`); what the input check reads of each scene.

Writes ``DIR/change_pairs.json`` and prints the tables; the docs' tables are rendered from
the committed copy of that JSON (:func:`experiments.change_figures.figures_markdown`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from core.commands import add_logging_arguments, check_output_folder, configure_logging, run_command
from core.errors import InputDataError
from core.jsonsafe import dumps
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.builtup import DEFAULT_BANDS
from experiments.builtup_tiles import DW_FOLDER
from experiments.change_figures import (
    FIGURES_JSON,
    GATE,
    figures_markdown,
    seed_ranking,
    summarise,
    update_page,
)
from experiments.change_series import (
    check_recipe,
    date_maps,
    level_facts,
    probability,
    summarise_dates,
    trained_model,
)
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.scoring import binary_scores, ndbi, roc_auc
from experiments.threads import add_threads_argument, use_threads
from inference.predict.change import arrays as change

__all__ = ["ARTIFICIAL", "FIGURES_JSON", "GATE", "SLOVENIA", "SLOVENIA_BANDS",
           "SPECTRAL_THRESHOLDS", "apply_normalisation", "figures_markdown", "gain_score",
           "implant", "load_scenes", "main", "match_statistics", "pair_magnitudes", "probability",
           "run", "score_gate", "score_ndbi", "score_pair", "spectral_arms", "spectral_gain_score",
           "summarise", "update_page"]

log = logging.getLogger(__name__)

SLOVENIA = "eolearn_slovenia"
SLOVENIA_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11",
                  "B12")
ARTIFICIAL = 8  # land use class of artificial surface
CLEAR_MAX_CLOUD = 0.05
DEFAULT_RECIPES = ("unet-s2", "unet-s2-global")
DEFAULT_SEEDS, DEFAULT_ITERATIONS, DEFAULT_MARGIN, DEFAULT_NDBI_GAIN = 2, 150, 0.2, 0.1
DEFAULT_BLOCKS, DEFAULT_BLOCK_SIZE = 12, 8
DEFAULT_FROZEN_ITERATIONS = 300
MARGINS = (0.1, 0.2, 0.3)  # margins scored on the raw inputs beside --margin
SPECTRAL_THRESHOLDS = tuple(sorted({3.0, 4.0, change.DEFAULT_SPECTRAL_THRESHOLD}))


def load_scenes(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(dates, clear scenes ``(T, 13, H, W)`` in date order, land use ``(H, W)``)."""
    scenes = np.load(folder / "REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((folder / "REFERENCE_SCENES.timestamps.json").read_text())["timestamps"]
    series = json.loads((folder / "timestamps.json").read_text())
    cloud = np.load(folder / "CLM.npy", allow_pickle=False)[..., 0]
    order = sorted(range(len(stamps)), key=lambda i: stamps[i])
    clear = [i for i in order if stamps[i] in series
             and float(cloud[series.index(stamps[i])].mean()) <= CLEAR_MAX_CLOUD]
    if len(clear) < 2:
        raise InputDataError(f"{folder}: fewer than 2 clear reference scenes; nothing to pair")
    lulc = np.load(folder / "LULC.npy", allow_pickle=False)[..., 0]
    return ([stamps[i][:10] for i in clear],
            np.moveaxis(scenes[clear], -1, 1).astype(np.float32), lulc)


def implant(later: np.ndarray, lulc: np.ndarray, blocks: int, size: int,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``later`` with ``blocks`` square blocks of its own class-8 spectra, and their mask."""
    rng = np.random.default_rng(seed)
    built = np.argwhere(lulc == ARTIFICIAL)
    out, truth = later.copy(), np.zeros(lulc.shape, bool)
    free = np.ones(lulc.shape, bool)
    free[lulc == ARTIFICIAL] = False
    h, w = lulc.shape
    for _ in range(1000 * blocks):
        if truth.sum() >= blocks * size * size:
            break
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        window = (slice(max(0, y - 2), y + size + 2), slice(max(0, x - 2), x + size + 2))
        if not free[window].all():
            continue
        pick = built[rng.integers(0, len(built), size * size)]
        out[:, y:y + size, x:x + size] = later[:, pick[:, 0], pick[:, 1]].reshape(-1, size, size)
        truth[y:y + size, x:x + size] = True
        free[window] = False
    return out, truth


def pair_magnitudes(earlier: np.ndarray, later: np.ndarray,
                    implanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral change magnitude of the stable and the implanted pair, each under its own fit.

    Each later date (``later``, ``implanted``) is scored against ``earlier`` with
    :func:`inference.predict.change.arrays.fit_spectral_change` of that same pair, as the product
    fits one per pair. Stacks ``(C, H, W)`` in one band order; returns two ``(H, W)``.
    """
    return tuple(change.spectral_magnitude(b, earlier, change.fit_spectral_change(b, earlier))
                 for b in (later, implanted))


def _flagged(code: np.ndarray) -> tuple[float, float]:
    return float(np.isin(code, (change.GAIN, change.LOSS)).mean()), float((code == change.GAIN)
                                                                          .mean())


def score_pair(model: Callable[[np.ndarray], np.ndarray], stats: tuple[Sequence[float],
                                                                       Sequence[float]],
               earlier: np.ndarray, later: np.ndarray, implanted: np.ndarray,
               truth: np.ndarray, index: Sequence[int], margin: float) -> dict:
    """Every model arm on one pair: stable-pair false change, implanted-pair F1 and AUC.

    ``model`` gives the built probability of a scene's ``index`` bands; ``stats`` are the
    mean and standard deviation of its training bands (the ``training stats`` arm).
    """
    pick = list(index)
    first, second, moved = earlier[pick], later[pick], implanted[pick]
    p1 = model(first)
    inputs = {"raw": (p1, model(second), model(moved))}
    norm_stable = apply_normalisation(second, change.fit_relative_normalisation(second, first))
    norm_moved = apply_normalisation(moved, change.fit_relative_normalisation(moved, first))
    inputs["normalised"] = (p1, model(norm_stable), model(norm_moved))

    def match(bands: np.ndarray) -> np.ndarray:
        return match_statistics(bands, *stats)

    inputs["training stats"] = (model(match(first)), model(match(second)), model(match(moved)))
    plan = {"differenced": ("raw", 0.0), "normalised": ("normalised", 0.0),
            **{f"margin {m:g}": ("raw", m) for m in sorted({*MARGINS, margin})},
            "both": ("normalised", margin), "training stats": ("training stats", 0.0)}
    out = {}
    for arm, (source, m) in plan.items():
        a, b, bi = inputs[source]
        out[arm] = _arm_scores(change.margin_change(a, b, m), change.margin_change(a, bi, m),
                               gain_score(a, bi), truth, (a, b))
    return {**out, **spectral_arms(inputs["raw"], pair_magnitudes(first, second, moved), truth)}


def apply_normalisation(stack: np.ndarray, fit: change.RadiometricFit) -> np.ndarray:
    """``stack * gain + offset`` per band (``(C, ...)``, float32; NaN stays NaN)."""
    array = np.asarray(stack, dtype=np.float32)
    if array.shape[0] != len(fit.gain):
        raise ValueError(f"the stack has {array.shape[0]} bands, the fit {len(fit.gain)}")
    shape = (-1,) + (1,) * (array.ndim - 1)
    return (array * np.asarray(fit.gain, np.float32).reshape(shape)
            + np.asarray(fit.offset, np.float32).reshape(shape))


def match_statistics(stack: np.ndarray, mean: Sequence[float],
                     std: Sequence[float]) -> np.ndarray:
    """Each band of ``stack`` moved to the given mean and standard deviation (``(C, ...)``).

    A per-band linear map from the scene's own statistics (finite pixels) to, e.g., a model's
    training statistics: a crude stand-in for atmospheric correction when a model trained on
    one radiometry (L2A surface reflectance) is given another (L1C top of atmosphere). Unlike
    :func:`inference.predict.change.arrays.fit_relative_normalisation` it assumes the scene's
    land cover resembles the training set's, which a change study cannot assume.
    """
    array = np.asarray(stack, dtype=np.float64)
    flat = array.reshape(array.shape[0], -1)
    own_mean = np.nanmean(flat, axis=1)
    own_std = np.nanstd(flat, axis=1)
    gain = np.asarray(std, np.float64) / np.where(own_std > 0, own_std, 1.0)
    offset = np.asarray(mean, np.float64) - gain * own_mean
    shape = (-1,) + (1,) * (array.ndim - 1)
    return (array * gain.reshape(shape) + offset.reshape(shape)).astype(np.float32)


def gain_score(p_from: np.ndarray, p_to: np.ndarray) -> np.ndarray:
    """How surely a pixel gained impervious surface: ``min(0.5 - p_from, p_to - 0.5)``.

    Positive where the two per-date maps differ by a gain; a pixel is called gain at margin
    ``m`` (:func:`inference.predict.change.arrays.margin_change`) when the score exceeds
    ``m``, so the score ranks pixels for ROC curves.
    """
    return np.minimum(0.5 - np.asarray(p_from, np.float64), np.asarray(p_to, np.float64) - 0.5)


def spectral_gain_score(p_from: np.ndarray, p_to: np.ndarray,
                        magnitude: np.ndarray) -> np.ndarray:
    """The magnitude where ``spectral_change`` could call gain, else 0 (ranks pixels).

    A pixel is gain at threshold ``t > 0``
    (:func:`inference.predict.change.arrays.spectral_change`) exactly when its score exceeds
    ``t``.
    """
    a, b = np.asarray(p_from, np.float64), np.asarray(p_to, np.float64)
    return np.where((b > a) & (a < 0.5), np.nan_to_num(np.asarray(magnitude, np.float64)), 0.0)


def spectral_arms(probabilities: tuple[np.ndarray, np.ndarray, np.ndarray],
                  magnitudes: tuple[np.ndarray, np.ndarray], truth: np.ndarray) -> dict:
    """The ``spectral k`` arms, ``k`` in :data:`SPECTRAL_THRESHOLDS`, scored as the others.

    Args:
        probabilities: the model's impervious probability of the earlier, the later and the
            implanted date (the stable pair is earlier/later, the implanted earlier/implanted).
        magnitudes: :func:`pair_magnitudes` of the stable and the implanted pair.
        truth: the implanted pixels.
    """
    (a, b, bi), (stable, moving) = probabilities, magnitudes
    return {f"spectral {k:g}": _arm_scores(
        change.spectral_change(a, b, stable, k), change.spectral_change(a, bi, moving, k),
        spectral_gain_score(a, bi, moving), truth, (a, b)) for k in SPECTRAL_THRESHOLDS}


def _arm_scores(stable: np.ndarray, moved: np.ndarray, score: np.ndarray, truth: np.ndarray,
                probabilities: tuple[np.ndarray, np.ndarray]) -> dict:
    """One arm from its change codes on the stable and implanted pair and its gain score."""
    false_change, false_gain = _flagged(stable)
    found = moved == change.GAIN
    return {"false_change": false_change, "false_gain": false_gain,
            "f1": binary_scores(found, truth).f1, "auc": roc_auc(score.ravel(), truth.ravel()),
            "built_share": [float((p >= 0.5).mean()) for p in probabilities],
            "flagged_implanted": float(found.mean())}


def score_ndbi(earlier: np.ndarray, later: np.ndarray, implanted: np.ndarray,
               truth: np.ndarray, threshold: float, flagged: float | None = None) -> dict:
    """NDBI gain at ``threshold``, or at the one flagging ``flagged`` of the implanted pair."""
    stable, moved = _ndbi_rise(earlier, later), _ndbi_rise(earlier, implanted)
    if flagged is not None:
        threshold = float(np.quantile(moved, 1 - flagged))
    false = float((stable > threshold).mean())
    return {"threshold": threshold, "false_change": false, "false_gain": false,
            "f1": binary_scores(moved > threshold, truth).f1,
            "auc": roc_auc(moved.ravel(), truth.ravel())}


def score_gate(earlier: np.ndarray, later: np.ndarray, implanted: np.ndarray,
               truth: np.ndarray, index: Sequence[int],
               threshold: float = change.DEFAULT_SPECTRAL_THRESHOLD) -> dict:
    """The spectral gate with NDBI's direction: a model-free baseline of ``spectral k``.

    Gain where :func:`pair_magnitudes` (of the ``index`` bands) exceeds ``threshold`` and NDBI
    rose, loss where it exceeds it and NDBI fell; false change counts both on the stable pair,
    false gain the gain. ROC AUC ranks the magnitude where NDBI rose (0 elsewhere).
    """
    pick = list(index)
    stable, moving = pair_magnitudes(earlier[pick], later[pick], implanted[pick])
    rise, moved_rise = _ndbi_rise(earlier, later), _ndbi_rise(earlier, implanted)
    gate = stable > threshold
    found = (moving > threshold) & (moved_rise > 0)
    return {"threshold": threshold, "false_change": float((gate & (rise != 0)).mean()),
            "false_gain": float((gate & (rise > 0)).mean()),
            "f1": binary_scores(found, truth).f1,
            "auc": roc_auc(np.where(moved_rise > 0, moving, 0.0).ravel(), truth.ravel())}


def _ndbi_rise(earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """``NDBI(later) - NDBI(earlier)`` of two 13-band Slovenia scenes."""
    b8, b11 = SLOVENIA_BANDS.index("B8"), SLOVENIA_BANDS.index("B11")
    return ndbi(later[b11], later[b8]) - ndbi(earlier[b11], earlier[b8])


def run(data: Path, dw: Path, out: Path, *, recipes: Sequence[str], seeds: int,
        iterations: int, margin: float, ndbi_gain: float, blocks: int, size: int,
        encoders: Mapping[str, str] | None = None, frozen_iterations: int = 300) -> dict:
    """The whole experiment; returns (and writes) ``change_pairs.json``.

    ``encoders``: encoder name -> its published file, for the recipes on a frozen encoder
    (:func:`experiments.change_series.frozen_recipe`), trained ``frozen_iterations`` steps.
    """
    start = time.perf_counter()
    dates, scenes, lulc = load_scenes(data)
    index = [SLOVENIA_BANDS.index(b) for b in DEFAULT_BANDS]
    pairs = [(i, j) for i in range(len(dates)) for j in range(i + 1, len(dates))]
    implanted = {(i, j): implant(scenes[j], lulc, blocks, size, seed=j) for i, j in pairs}
    runs: dict[str, list[dict]] = {r: [] for r in recipes}
    per_date: dict[str, list[dict]] = {r: [] for r in recipes}
    artificial = lulc == ARTIFICIAL
    for recipe in recipes:
        for seed in range(seeds):
            log.info("%s, seed %d: training", recipe, seed)
            model, stats = trained_model(recipe, seed, out, dw, iterations, frozen_iterations,
                                    encoders or {})
            log.info("%s, seed %d: mapping the pairs and dates", recipe, seed)
            for i, j in pairs:
                moved, truth = implanted[(i, j)]
                arms = score_pair(model, stats, scenes[i], scenes[j], moved, truth, index,
                                  margin)
                arms["NDBI gain matched"] = score_ndbi(scenes[i], scenes[j], moved, truth,
                                                       ndbi_gain,
                                                       arms["both"]["flagged_implanted"])
                runs[recipe].append({"seed": seed, "pair": f"{dates[i]}/{dates[j]}",
                                     "arms": arms})
            per_date[recipe].append({"seed": seed, **date_maps(model, scenes, artificial,
                                                               index)})
    baseline = {f"{dates[i]}/{dates[j]}": score_ndbi(scenes[i], scenes[j], *implanted[(i, j)],
                                                     ndbi_gain) for i, j in pairs}
    gate = {f"{dates[i]}/{dates[j]}": score_gate(scenes[i], scenes[j], *implanted[(i, j)], index)
            for i, j in pairs}
    metrics = {"dates": dates, "pairs": [f"{dates[i]}/{dates[j]}" for i, j in pairs],
               "recipes": list(recipes), "seeds": seeds, "iterations": iterations,
               "frozen_iterations": frozen_iterations, "margin": margin, "ndbi_gain": ndbi_gain,
               "spectral_thresholds": list(SPECTRAL_THRESHOLDS),
               "gate_threshold": change.DEFAULT_SPECTRAL_THRESHOLD,
               "implanted": {"blocks": blocks, "size": size,
                             "pixels": int(next(iter(implanted.values()))[1].sum())},
               "bands": list(DEFAULT_BANDS), "runs": runs, "ndbi": baseline, "gate": gate,
               "date_runs": per_date, "date_summary": summarise_dates(per_date),
               "level_facts": level_facts(scenes, {b: SLOVENIA_BANDS.index(b)
                                                   for b in ("B2", "B3", "B4", "B8")}),
               "ndbi_class8_auc": [roc_auc(ndbi(s[SLOVENIA_BANDS.index("B11")],
                                                s[SLOVENIA_BANDS.index("B8")]).ravel(),
                                           (lulc == ARTIFICIAL).ravel()) for s in scenes],
               "summary": summarise(runs, baseline, gate),
               "seed_ranking": seed_ranking(runs, gate),
               "seconds": round(time.perf_counter() - start, 1)}
    text = dumps(metrics, indent=1)
    atomic_write(out / "change_pairs.json", lambda fh: fh.write(text.encode()))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.change_pairs``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.change_pairs",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data", help=f"the Slovenia folder (default: {SLOVENIA} in the data root)")
    p.add_argument("--dw", help=f"the Dynamic World folder (default: {DW_FOLDER})")
    add_data_root_argument(p)
    p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES),
                   help="isamap-train models or unet-s2-global, unet-s2-window (experiments."
                   "change_series.RECIPES), comma-separated; "
                   "bands, presto, presto:head, galileo-nano, galileo-nano:head: models on a "
                   "frozen encoder (with --encoder)")
    p.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH",
                   help="a pretrained encoder's published file, for the recipes NAME and "
                   "NAME:head (isamap-train --encoder NAME=PATH --fusion concat|head); "
                   "repeat for each encoder")
    p.add_argument("--frozen-iterations", type=int, default=DEFAULT_FROZEN_ITERATIONS,
                   help="training steps of the recipes on a frozen encoder and of bands")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    p.add_argument("--ndbi-gain", type=float, default=DEFAULT_NDBI_GAIN,
                   help="the NDBI gain rule's natural threshold")
    p.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS, help="implanted blocks")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="their side (px)")
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)

    def go() -> int:
        if min(a.seeds, a.iterations, a.frozen_iterations) < 1:
            raise InputDataError("--seeds, --iterations and --frozen-iterations must be >= 1")
        if not 0 <= a.margin < 0.5:
            raise InputDataError(f"--margin must be in [0, 0.5), got {a.margin}")
        encoders = dict(_encoder(text) for text in a.encoder)
        recipes = [r for r in a.recipes.split(",") if r]
        for recipe in recipes:  # options first: an encoder recipe without its file is refused
            check_recipe(recipe, encoders)  # on a machine without the sample data too
        data = existing_folder(a.data or sample_folder(SLOVENIA, a.data_root), "Slovenia",
                               "--data")
        dw = existing_folder(a.dw or sample_folder(DW_FOLDER, a.data_root), "Dynamic World",
                             "--dw")
        check_output_folder("--out", a.out)
        use_threads(a.threads)
        metrics = run(data, dw, Path(os.path.abspath(a.out)), recipes=recipes, seeds=a.seeds,
                      iterations=a.iterations, margin=a.margin, ndbi_gain=a.ndbi_gain,
                      blocks=a.blocks, size=a.block_size, encoders=encoders,
                      frozen_iterations=a.frozen_iterations)
        print(figures_markdown(metrics))
        print(f"{metrics['seconds']:.0f} s; metrics: {Path(a.out) / 'change_pairs.json'}")
        return 0

    return run_command("python -m experiments.change_pairs", go, debug=a.debug,
                       writes_to=[a.out])


def _encoder(text: str) -> tuple[str, str]:
    """``--encoder NAME=PATH`` -> (name, path), the file checked (sha256) before any work."""
    from training.models.encoders.registry import load_encoder, parse_encoder

    entry, path = parse_encoder(text)
    load_encoder(entry, path)
    return entry.name, os.path.abspath(path)


if __name__ == "__main__":
    raise SystemExit(main())
