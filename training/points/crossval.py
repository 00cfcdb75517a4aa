"""Cross-validation by spatial blocks: the head's penalty chosen, and what the fit scores.

For each penalty of :data:`L2_GRID` the head is fitted on all folds but one and predicts the
held-out fold's points; the penalty whose out-of-fold predictions have the lowest mean
log-loss (a proper score: it rewards probabilities that are right, not only the ranking) is
kept. The out-of-fold predictions at that penalty are the fit's scores: F1 of each class at
the map's rule (the most probable class), ROC AUC of the positive class, and each fold's F1
(its spread is the figure's uncertainty over places). Every number is measured on points
in blocks the head did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.metrics import compute_metrics, confusion_matrix, roc_auc
from training.points.head import fit_head, probabilities

L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""The penalties compared (on standardised features; mean cross-entropy's scale)."""


@dataclass(frozen=True)
class CrossValidation:
    """What the block cross-validation measured.

    Attributes:
        l2: the penalty kept.
        log_loss: mean out-of-fold log-loss per penalty tried.
        probabilities: ``(n, K)`` out-of-fold probabilities at the kept penalty.
        folds: how many folds.
        f1: per class, F1 of the out-of-fold class (the most probable) against the labels.
        auc: ROC AUC of the positive class's out-of-fold probability (NaN without one).
        fold_f1: the positive class's F1 in each fold (NaN where a fold lacks it).
    """

    l2: float
    log_loss: dict[float, float]
    probabilities: np.ndarray
    folds: int
    f1: dict[str, float]
    auc: float
    fold_f1: tuple[float, ...]

    def record(self) -> dict:
        """What a model file and the report keep (JSON)."""
        return {"method": "spatial block cross-validation", "folds": self.folds,
                "l2": self.l2, "log_loss": {f"{k:g}": round(v, 6)
                                            for k, v in self.log_loss.items()},
                "f1": {k: round(v, 6) for k, v in self.f1.items()},
                "auc": round(self.auc, 6) if np.isfinite(self.auc) else None,
                "fold_f1": [round(v, 6) if np.isfinite(v) else None for v in self.fold_f1]}


def class_f1(predicted: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """F1 of each class (NaN for a class neither labelled nor predicted)."""
    return dict(zip(classes, compute_metrics(confusion_matrix(predicted, labels,
                                                              len(classes))).f1, strict=True))


def cross_validate(features: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                   classes: Sequence[str], positive: int, hidden: int = 0, seed: int = 0,
                   grid: Sequence[float] = L2_GRID) -> CrossValidation:
    """Choose the head's penalty by out-of-fold log-loss; score the fit (module docstring).

    Args:
        features: ``(n, F)`` the points' features.
        labels: ``(n,)`` class codes.
        folds: ``(n,)`` fold of each point (:func:`training.points.blocks.block_folds`).
        classes: the class names in code order.
        positive: the code of the class whose AUC and per-fold F1 are reported.
        hidden: the head's hidden units (0: linear).
        seed: a hidden layer's initialisation seed.
        grid: the penalties to compare.
    """
    labels = np.asarray(labels, np.int64)
    k = len(classes)
    count = int(folds.max()) + 1
    best: tuple[float, float, np.ndarray] | None = None
    losses = {}
    for l2 in grid:
        oof = np.zeros((labels.size, k))
        for f in range(count):
            test = folds == f
            fitted = fit_head(features[~test], labels[~test], k, l2, hidden, seed)
            oof[test] = probabilities(fitted.logits(features[test], k))
        loss = float(-np.mean(np.log(np.clip(oof[np.arange(labels.size), labels], 1e-12, 1))))
        losses[float(l2)] = loss
        if best is None or loss < best[1]:
            best = (float(l2), loss, oof)
    assert best is not None
    l2, _, oof = best
    predicted = oof.argmax(axis=1)
    fold_f1 = tuple(class_f1(predicted[folds == f], labels[folds == f], classes)[classes[positive]]
                    for f in range(count))
    return CrossValidation(l2, losses, oof, count, class_f1(predicted, labels, classes),
                           roc_auc(oof[:, positive], (labels == positive).astype(np.int64)),
                           fold_f1)
