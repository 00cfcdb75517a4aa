"""One fold of the land-cover experiment: every arm of a setting trained, decided and scored.

Apart from :mod:`experiments.landcover` (the runs, the report and the command) so that each
stays small. :func:`run_fold` trains each arm's model once (an arm that decides with another
arm's model, or whose filtered labels equal its preliminary model's, reuses it), with its loss
(:func:`arm_loss`: the recipe's, class weights, or label super-resolution), and scores every
arm's map on the fold's held-out pixels.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError
from experiments.chesapeake_nlcd import BANDS, PRODUCT_BANDS, compositions
from experiments.landcover_arms import Arm
from experiments.landcover_config import LandCoverConfig
from experiments.landcover_keep import keep_decision
from experiments.landcover_scenes import SOFT
from experiments.landcover_train import (
    TRUTH,
    Budget,
    Scene,
    filter_labels,
    model_input,
    predict_probabilities,
    share_decision,
    train_model,
    training_counts,
)
from training.losses.composition import CompositionLoss
from training.losses.segmentation import WeightedCrossEntropy
from training.metrics import confusion_matrix
from training.models import model_loss

log = logging.getLogger(__name__)
K = len(LANDCOVER_CLASSES)

#: the run files' key suffix of an arm's impervious probability on the scored pixels
SCORE = "|impervious score"


def class_weights_from_counts(counts: Sequence[int]) -> list[float]:
    """Median-frequency class weights from pixel counts; an absent class weighs 0.

    Raises:
        ConfigError: every count is zero.
    """
    c = np.asarray(counts, dtype=np.float64)
    if not (c > 0).any():
        raise ConfigError("all class counts are zero; cannot derive class weights")
    freq = c / c.sum()
    return [float(v) for v in np.where(c > 0, np.median(freq[c > 0]) / np.maximum(freq, 1e-12),
                                       0.0)]


def arm_loss(cfg: LandCoverConfig, arm: Arm, labels: Sequence[np.ndarray],
             scenes: Sequence[Scene]) -> torch.nn.Module:
    """The arm's loss: the recipe's, or balanced weights; soft labels add label SR."""
    if arm.weights == "recipe" and arm.label != SOFT:
        return model_loss("hrnet", LANDCOVER_CLASSES)
    weights = None
    if arm.weights == "balanced":
        counts = training_counts(labels, scenes, compositions())
        if not any(counts):
            raise ConfigError(f"{arm.name}: no training pixel keeps a label (the noisy-sample "
                              "filter dropped every chip?); give more --nlcd-iterations")
        weights = [min(w, cfg.weight_cap) for w in class_weights_from_counts(counts)]
    if arm.label != SOFT:
        return WeightedCrossEntropy(weights, LABEL_NODATA)
    return CompositionLoss(compositions(), weights, cfg.composition_block,
                           cfg.composition_weight, LABEL_NODATA, LANDCOVER_CLASSES)


def run_fold(cfg: LandCoverConfig, setting: str, scenes: Sequence[Scene], seed: int
             ) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """Train every arm of ``setting`` on one fold with ``seed``; score the held-out pixels.

    Returns the record (each arm's confusion matrix on the fold's held-out pixels, the
    filter's chips, training seconds) and each arm's maps of the fold's held-out scenes,
    with its impervious probability on their scored pixels under ``arm + SCORE``.
    """
    spec = cfg.spec(setting)
    pixels = np.concatenate([s.image[:, ~s.test] for s in scenes], axis=1)
    mean, std = pixels.mean(1), np.maximum(pixels.std(1), 1e-6)
    window = cfg.nlcd_crop if setting == "nlcd" else cfg.naip_crop
    budget = (Budget(cfg.nlcd_crop, cfg.nlcd_batch, cfg.nlcd_iterations, cfg.lr, seed)
              if setting == "nlcd" else
              Budget(cfg.naip_crop, cfg.naip_batch, cfg.naip_iterations, cfg.lr, seed))
    images = {p: [model_input(s, mean, std, p) for s in scenes]
              for p in {a.product_input for a in spec.arms}}
    preds: dict[str, list[np.ndarray]] = {}
    probs: dict[Arm, list[np.ndarray]] = {}  # by the training an arm needs
    record: dict = {"confusion": {}, "filter": {}, "seconds": {}}
    dropped_mask: dict[str, tuple[list[np.ndarray], int, int]] = {}
    trained_by: dict[str, Arm] = {}  # arm -> the training whose model it decides with
    for arm in spec.arms:
        labels = [s.labels(arm.label) for s in scenes]
        reuse = None
        if arm.filtered:
            prelim = next(a for a in spec.arms if not a.filtered and a.weights == "recipe"
                          and a.stem_norm == arm.stem_norm and a.label != TRUTH)
            if prelim.name not in dropped_mask:
                hard = [s.labels(prelim.label) for s in scenes]
                kept, dropped, scored = filter_labels(scenes, hard, preds[prelim.name],
                                                      cfg.filter_chip, cfg.filter_threshold)
                dropped_mask[prelim.name] = ([(k == LABEL_NODATA) & (h != LABEL_NODATA)
                                              for k, h in zip(kept, hard, strict=True)],
                                             dropped, scored)
                log.info("%s: the filter drops %d of %d chips", arm.name, dropped, scored)
            masks, dropped, scored = dropped_mask[prelim.name]
            labels = [np.where(m, LABEL_NODATA, x) for m, x in zip(masks, labels, strict=True)]
            record["filter"][arm.name] = {"preliminary": prelim.name, "dropped_chips": dropped,
                                          "scored_chips": scored}
            if (not any(m.any() for m in masks) and replace(
                    arm, name=prelim.name, filtered=False, keep_rule=False, window=0) == prelim):
                reuse = prelim  # same labels, loss and seed: the same model
        started = time.perf_counter()
        training = replace(reuse or arm, name="", share_rule=False, keep_rule=False, window=0)
        if training not in probs:
            loss = arm_loss(cfg, arm, labels, scenes)
            kwargs = {**cfg.model, "stem_norm": arm.stem_norm}
            with tempfile.TemporaryDirectory(prefix=".landcover.") as tmp:
                model = train_model(kwargs, BANDS, scenes, labels, mean, std, loss, budget,
                                    Path(tmp), PRODUCT_BANDS if arm.product_input else ())
            probs[training] = [predict_probabilities(model, x, window)
                               for x in images[arm.product_input]]
        trained_by[arm.name] = training
        if arm.share_rule:
            preds[arm.name] = share_decision(probs[training], labels, scenes, compositions(),
                                             "impervious")
        elif arm.keep_rule:
            learnt = {int(k) for x, s in zip(labels, scenes, strict=True)
                      for k in np.unique(x[~s.test]) if k < K}
            preds[arm.name] = keep_decision(probs[training], [s.image for s in scenes],
                                            [s.products[arm.label] for s in scenes], learnt,
                                            arm.window)
        else:
            preds[arm.name] = [p.argmax(0).astype(np.uint8) for p in probs[training]]
        record["seconds"][arm.name] = time.perf_counter() - started
        matrix = np.zeros((K, K), np.int64)
        for scene, pred in zip(scenes, preds[arm.name], strict=True):
            ok = scene.scored
            matrix += confusion_matrix(pred[ok], scene.truth[ok], K)
        record["confusion"][arm.name] = matrix.tolist()
    held = [i for i, s in enumerate(scenes) if s.test.any()]
    imp = LANDCOVER_CLASSES.index("impervious")
    scores = {f"{a}{SCORE}": [p[imp][s.scored].astype(np.float32) for p, s in
                              zip(probs[t], scenes, strict=True)] for a, t in trained_by.items()}
    return record, {a: [p[i] for i in held] for a, p in {**preds, **scores}.items()}
