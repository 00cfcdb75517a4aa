"""Scores of a binary built-up map on labelled pixels: F1, IoU, ROC AUC, and index baselines.

The map's class decides F1 and IoU (what a user of the map gets); its probability decides
the ROC AUC, which is also what a spectral index gets, so model and index are compared on the
same footing. The index baselines are NDBI (Zha et al. 2003: built-up reflects more SWIR than
NIR) scored as a probability (AUC), at its natural threshold 0, and at the threshold that
maximises F1 on the scored pixels themselves (an oracle threshold: an upper bound of what the
index can give, not a fair competitor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.metrics import confusion_matrix, roc_auc


@dataclass(frozen=True)
class BinaryScores:
    """Built-up (class 1) against the rest on the scored pixels.

    Attributes:
        f1: harmonic mean of precision and recall of class 1.
        iou: intersection over union of class 1.
        precision: share of pixels mapped built that are built.
        recall: share of built pixels mapped built.
        pixels: pixels scored; built: of which labelled built.
    """

    f1: float
    iou: float
    precision: float
    recall: float
    pixels: int
    built: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def binary_scores(predicted: np.ndarray, truth: np.ndarray) -> BinaryScores:
    """F1, IoU, precision, recall of class 1 from 0/1 maps (other values are not scored)."""
    matrix = confusion_matrix(predicted, truth, 2)
    tp, fp, fn = matrix[1, 1], matrix[0, 1], matrix[1, 0]
    return BinaryScores(f1=_ratio(2 * tp, 2 * tp + fp + fn), iou=_ratio(tp, tp + fp + fn),
                        precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
                        pixels=int(matrix.sum()), built=int(matrix[1].sum()))


def best_threshold_f1(score: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """``(threshold, F1)`` of the rule ``score >= threshold`` with the best F1 on these pixels."""
    score = np.asarray(score, dtype=np.float64).ravel()
    truth = np.asarray(truth).ravel()
    keep = np.isfinite(score) & ((truth == 0) | (truth == 1))
    score, positive = score[keep], truth[keep] == 1
    if not positive.any():
        return float("nan"), float("nan")
    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    tp = np.cumsum(positive)
    fp = np.cumsum(~positive)
    last = np.r_[score[1:] != score[:-1], True]  # a threshold takes every tie at once
    f1 = 2 * tp[last] / (2 * tp[last] + fp[last] + (positive.sum() - tp[last]))
    best = int(np.argmax(f1))
    return float(score[last][best]), float(f1[best])


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``, NaN where the sum is 0 or an input is NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, (a - b) / total, np.nan)


def ndbi(swir1: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Normalized Difference Built-up Index, (SWIR1 - NIR) / (SWIR1 + NIR) (S2: B11, B8)."""
    return normalized_difference(swir1, nir)


def index_baseline(index: np.ndarray, truth: np.ndarray, threshold: float = 0.0) -> dict:
    """An index scored like a map: AUC, F1 at ``threshold``, F1 at its best threshold."""
    index = np.asarray(index, dtype=np.float64)
    mapped = np.where(np.isfinite(index), (index >= threshold).astype(np.int64), -1)
    best_t, best_f1 = best_threshold_f1(index, truth)
    fixed = binary_scores(mapped, truth)
    return {"auc": roc_auc(index, truth), "f1": fixed.f1, "iou": fixed.iou,
            "threshold": threshold, "best_threshold": best_t, "best_f1": best_f1}
