"""A stacked arm of the leave-one-tile-out comparison: a model's probability with the tile's NDBI.

An arm named ``BASE+stack`` (``unet-s2-window+stack``) trains nothing. For each fold and seed it
takes the ``BASE`` model of that fold and seed and maps each of the fold's training tiles
with it; a logistic regression then learns the built class from two features per pixel:

- the model's logit, ``log(p / (1 - p))`` of its probability map;
- the tile's own NDBI rank: NDBI (B11, B8) standardised over the tile's pixels by their
  median and scaled median absolute deviation (robust to the built share). A scene-wide
  offset (haze, another season's light) moves every NDBI value of a tile; the standardised
  value moves with it, so a threshold on it can carry from tile to tile where one on NDBI
  itself does not (NDBI's best threshold is about -0.19 on Java's rows and -0.06 on Ghana's).

The stacker is fitted on the labelled pixels of the training tiles' validation and test
patches (the exports' own splits): the model never trained on them, so its logits there are
as confident as on new ground, not as on its own training pixels. The held-out tile informs
nothing but its own features: its NDBI is standardised over its own imagery (no label), and
the stacker's probability is cut at 0.5.

An arm named ``BASE+thr`` (``unet-s2-window+thr``) keeps the model's probability and moves only its
cut: the threshold with the best built F1 on the same fit pixels (the training tiles'
validation and test patches) replaces one half on the held-out tile.

An arm named ``BASE+prior`` (``unet-s2+prior``) re-expresses the model's probability at the
held-out tile's own built share, estimated from that tile's probabilities alone
(:mod:`experiments.builtup_prior`), and cuts it at one half; the training prior is the built
share of the labelled pixels of the fold's training patches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA
from experiments.builtup_cut import SUFFIX as CUT_SUFFIX
from experiments.builtup_cut import expected_f1_cut
from experiments.builtup_prior import SUFFIX as PRIOR_SUFFIX
from experiments.builtup_prior import adjust_to_prior, em_prior
from experiments.realscenes import Footprint, probability_scale, read_on, split_area
from experiments.scoring import best_threshold_f1, binary_scores, roc_auc
from training.calibration.temperature import binary_reliability

SUFFIX = "+stack"
THRESHOLD_SUFFIX = "+thr"
FIT_SPLITS = ("val", "test")


def base_arm(arm: str) -> str | None:
    """The arm a stacked, threshold, prior or cut arm builds on (``u`` of ``u+prior``), or None."""
    for suffix in (SUFFIX, THRESHOLD_SUFFIX, PRIOR_SUFFIX, CUT_SUFFIX):
        if arm.endswith(suffix):
            return arm[: -len(suffix)]
    return None


def robust_z(values: np.ndarray) -> np.ndarray:
    """``values`` standardised by the median and 1.4826 x MAD of their finite entries."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan, dtype=np.float64)
    median = float(np.median(finite))
    spread = 1.4826 * float(np.median(np.abs(finite - median)))
    return (values - median) / (spread if spread > 0 else 1.0)


def split_pixels(dataset: Path, footprint: Footprint, splits: Sequence[str]) -> np.ndarray:
    """Pixels of ``footprint`` inside the dataset's patches of ``splits`` and no training one."""
    chosen = np.logical_or.reduce([split_area(dataset, footprint, s) for s in splits])
    return chosen & ~split_area(dataset, footprint, "train")


def logit(prob: np.ndarray, scale: float) -> np.ndarray:
    """The logit of a probability map quantised in steps of ``1 / scale`` (kept off 0 and 1)."""
    p = np.clip(prob, 0.5 / scale, 1 - 0.5 / scale)
    return np.log(p / (1 - p))


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3,
                 iterations: int = 50) -> np.ndarray:
    """Weights ``(bias, w1, ...)`` of a logistic regression of ``y`` (0/1) on ``x`` (n, k).

    Newton's method on the mean log-likelihood with a small ridge on the non-bias weights, so
    a separable sample still gives finite weights.
    """
    design = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [ridge] * x.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ w, -30, 30)))
        gradient = design.T @ (p - y) / len(y) + penalty @ w
        hessian = (design * (p * (1 - p))[:, None]).T @ design / len(y) + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The fitted regression's probability for the rows of ``x``."""
    return 1 / (1 + np.exp(-np.clip(w[0] + x @ w[1:], -30, 30)))


def features(prob_path: Path, footprint: Footprint, z_ndbi: np.ndarray) -> np.ndarray:
    """(rows, cols, 2): the map's logit and the tile's standardised NDBI."""
    scale = probability_scale(prob_path)
    return np.stack([logit(read_on(prob_path, footprint) / scale, scale), z_ndbi], axis=-1)


def stack_seed(*, train_parts: Mapping[str, tuple[Path, Footprint, np.ndarray, np.ndarray,
                                                  Path]],
               held: tuple[Path, Footprint, np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """Fit on the training parts, score on the held-out tile.

    Args:
        train_parts: per training export, ``(prob map, footprint, built label, z-NDBI,
            dataset)``; the labelled pixels of its validation and test patches fit the stacker.
        held: ``(prob map, footprint, built label, z-NDBI, area)`` of the held-out tile.
    """
    xs, ys = [], []
    for prob_path, footprint, truth, z, dataset in train_parts.values():
        x = features(prob_path, footprint, z)
        keep = split_pixels(dataset, footprint, FIT_SPLITS) & (truth != LABEL_NODATA)
        keep &= np.isfinite(x).all(axis=-1)
        xs.append(x[keep])
        ys.append(truth[keep].astype(np.float64))
    w = fit_logistic(np.concatenate(xs), np.concatenate(ys))
    prob_path, footprint, truth, z, area = held
    x = features(prob_path, footprint, z)
    scored = area & (truth != LABEL_NODATA) & np.isfinite(x).all(axis=-1)
    p = predict_logistic(w, x[scored])
    return {**cut_scores(p, truth[scored]),
            "stacker": {"bias": float(w[0]), "logit": float(w[1]), "z_ndbi": float(w[2]),
                        "fit_pixels": int(sum(len(y) for y in ys))}}


def threshold_seed(*, train_parts: Mapping[str, tuple[Path, Footprint, np.ndarray, np.ndarray,
                                                      Path]],
                   held: tuple[Path, Footprint, np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """The held-out map cut at the threshold of best F1 on the training parts' fit pixels.

    Args:
        train_parts: as :func:`stack_seed` (the z-NDBI is not used).
        held: as :func:`stack_seed`.
    """
    probs, ys = [], []
    for prob_path, footprint, truth, _z, dataset in train_parts.values():
        prob = read_on(prob_path, footprint) / probability_scale(prob_path)
        keep = split_pixels(dataset, footprint, FIT_SPLITS) & (truth != LABEL_NODATA)
        keep &= np.isfinite(prob)
        probs.append(prob[keep])
        ys.append(truth[keep])
    threshold, fit_f1 = best_threshold_f1(np.concatenate(probs), np.concatenate(ys))
    prob_path, footprint, truth, _z, area = held
    prob = read_on(prob_path, footprint) / probability_scale(prob_path)
    scored = area & (truth != LABEL_NODATA) & np.isfinite(prob)
    return {**cut_scores(prob[scored], truth[scored], threshold),
            "threshold": threshold, "fit_f1": fit_f1,
            "fit_pixels": int(sum(len(y) for y in ys))}


def cut_seed(*, held: tuple[Path, Footprint, np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """The held-out map cut where its own probabilities' expected F1 is largest.

    The cut is chosen over every mapped pixel of the held-out area, labelled or not
    (:func:`experiments.builtup_cut.expected_f1_cut`); the labels only score the result.

    Args:
        held: as :func:`stack_seed` (the z-NDBI is not used).
    """
    prob_path, footprint, truth, _z, area = held
    prob = read_on(prob_path, footprint) / probability_scale(prob_path)
    mapped = area & np.isfinite(prob)
    cut, expected = expected_f1_cut(prob[mapped])
    scored = mapped & (truth != LABEL_NODATA)
    return {**cut_scores(prob[scored], truth[scored], cut),
            "ece_built": binary_reliability(prob[scored], truth[scored], "built").ece,
            "threshold": cut, "expected_f1": expected}


def training_prior(parts: Sequence[tuple[Footprint, np.ndarray, Path]]) -> float:
    """The built share of the labelled pixels inside the training patches of ``parts``.

    Args:
        parts: per training export, ``(footprint, built label, dataset)``; its ``train``
            patches (each pixel once, however many patches overlap it) are counted.
    """
    built = labelled = 0
    for footprint, truth, dataset in parts:
        keep = split_area(dataset, footprint, "train") & (truth != LABEL_NODATA)
        built += int((truth[keep] == 1).sum())
        labelled += int(keep.sum())
    return built / labelled if labelled else float("nan")


def prior_seed(*, train_prior: float,
               held: tuple[Path, Footprint, np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """The held-out map re-expressed at the tile's estimated built share, cut at one half.

    The share is estimated over every mapped pixel of the held-out area, labelled or not
    (:func:`experiments.builtup_prior.em_prior`); the labels only score the result.

    Args:
        train_prior: the built share the model's probabilities are calibrated for.
        held: as :func:`stack_seed` (the z-NDBI is not used).
    """
    prob_path, footprint, truth, _z, area = held
    prob = read_on(prob_path, footprint) / probability_scale(prob_path)
    mapped = area & np.isfinite(prob)
    estimate = em_prior(prob[mapped], train_prior)
    adjusted = adjust_to_prior(prob, train_prior, estimate.prior)
    scored = mapped & (truth != LABEL_NODATA)
    return {**cut_scores(adjusted[scored], truth[scored]),
            "ece_built": binary_reliability(adjusted[scored], truth[scored], "built").ece,
            "train_prior": train_prior, "estimated_prior": estimate.prior,
            "em_iterations": estimate.iterations, "em_converged": estimate.converged,
            "prior_pixels": int(mapped.sum())}


def cut_scores(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict:
    """F1, IoU, precision, recall, ROC AUC and mapped share of ``prob`` cut at ``threshold``.

    The pixels are already chosen (``truth`` 0/1, one entry per pixel of ``prob``).
    """
    mapped = (prob >= threshold).astype(np.int64)
    scores = binary_scores(mapped, truth)
    return {"f1_built": scores.f1, "iou_built": scores.iou, "precision_built": scores.precision,
            "recall_built": scores.recall, "auc_built": roc_auc(prob, truth),
            "pixels": scores.pixels, "built_pixels": scores.built,
            "mapped_built_share": float(mapped.mean()) if scores.pixels else float("nan")}


def stack_runs(arms: Sequence[str], seeds: int, fold_parts: Mapping[str, Sequence[str]],
               out: Path, map_tile: Callable[[Path, str, Path], Path],
               tile_data: Callable[[str], tuple[Footprint, np.ndarray, np.ndarray]],
               exports: Mapping[str, Path], areas: Mapping[str, np.ndarray]
               ) -> dict[str, dict[str, list[dict]]]:
    """Every stacked arm's scores per held-out tile and seed.

    Args:
        arms: the comparison's arms; those named ``BASE+stack``, ``BASE+thr``,
            ``BASE+prior`` or ``BASE+ef1`` are computed here.
        seeds: seeds per arm.
        fold_parts: held-out tile -> the export names its models trained on.
        out: the comparison's folder (``runs/<tile>/<arm>/seed<k>`` hold the base maps).
        map_tile: ``(model file, tile prefix, map prefix) -> prob map``: the model's map of a
            whole tile (made once, reused).
        tile_data: tile prefix -> (footprint, built label, z-NDBI).
        exports: export name -> dataset root.
        areas: held-out tile -> its scored pixels.
    """
    result: dict[str, dict[str, list[dict]]] = {}
    for arm in arms:
        base = base_arm(arm)
        if base is None:
            continue
        for held, parts in fold_parts.items():
            for seed in range(seeds):
                run = out / "runs" / held / base / f"seed{seed}"
                if arm.endswith(CUT_SUFFIX):  # the held-out map alone
                    footprint, truth, z = tile_data(held)
                    scores = cut_seed(held=(run / "map_prob.tif", footprint, truth, z,
                                            areas[held]))
                    result.setdefault(held, {}).setdefault(arm, []).append(
                        {**scores, "seed": seed})
                    continue
                if arm.endswith(PRIOR_SUFFIX):  # the training labels alone; no map of them
                    footprint, truth, z = tile_data(held)
                    labels = [(*tile_data(p.removesuffix("_north"))[:2], exports[p])
                              for p in parts]
                    scores = prior_seed(train_prior=training_prior(labels), held=(
                        run / "map_prob.tif", footprint, truth, z, areas[held]))
                    result.setdefault(held, {}).setdefault(arm, []).append(
                        {**scores, "seed": seed})
                    continue
                train_parts = {}
                for part in parts:
                    tile = part.removesuffix("_north")
                    footprint, truth, z = tile_data(tile)
                    prob = map_tile(run / "model.pt", tile, run / f"fit_{tile}")
                    train_parts[part] = (prob, footprint, truth, z, exports[part])
                footprint, truth, z = tile_data(held)
                fit = threshold_seed if arm.endswith(THRESHOLD_SUFFIX) else stack_seed
                scores = fit(train_parts=train_parts, held=(
                    run / "map_prob.tif", footprint, truth, z, areas[held]))
                result.setdefault(held, {}).setdefault(arm, []).append({**scores, "seed": seed})
    return result
