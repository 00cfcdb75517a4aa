"""Accuracy metrics of the papers, from one confusion matrix.

Convention: ``matrix[i, j]`` counts samples whose REFERENCE class is ``i`` and PREDICTED (map)
class is ``j`` (rows = reference). The papers print the transpose (rows = map class);
``from_map_rows`` converts a printed table.

- Per class: IoU = TP/(TP+FP+FN); producer's accuracy PA = TP/(TP+FN) (recall);
  user's accuracy UA = TP/(TP+FP) (precision); F1 = 2 PA UA/(PA+UA), computed as
  2TP/(2TP+FP+FN) so it is 0, not undefined, for a class mapped but absent from the reference
  (PA undefined) or present but never mapped (UA undefined), and undefined only for a class
  neither holds; Dice = 2TP/(2TP+FP+FN) (equal to F1 for hard labels, reported separately as
  RU-Net++ does).
- Overall: OA = trace/total; MIoU = mean IoU over classes that occur; Cohen's kappa
  (p0 - pe)/(1 - pe) with pe = sum(row total * column total)/total^2 (RU-Net++ eqs. 7-8).

Point samples and the stratified estimators of accuracy and area with confidence intervals
(Olofsson et al. 2014) are :mod:`inference.assess.estimators`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from core.jsonsafe import json_safe

if TYPE_CHECKING:  # torch loads only where a confusion matrix streams tensors: isamap-assess
    import torch  # uses the numpy functions alone, and exits without torch's slow teardown


def from_map_rows(table: Sequence[Sequence[float]]) -> np.ndarray:
    """A printed table with rows = map class, columns = reference -> ``matrix[ref, pred]``."""
    return np.asarray(table, dtype=np.int64).T.copy()


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int = LABEL_NODATA) -> np.ndarray:
    """Confusion matrix ``[ref, pred]`` of two integer arrays, skipping ``ignore_index``."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    keep &= (pred >= 0) & (pred < num_classes)
    idx = target[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def roc_auc(score: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``truth == 1`` (ties count one half).

    The Mann-Whitney form: the probability that a random built pixel scores above a random
    other pixel. NaN scores and truths other than 0/1 are left out; NaN without both classes.
    """
    score = np.asarray(score, dtype=np.float64).ravel()
    truth = np.asarray(truth).ravel()
    keep = np.isfinite(score) & ((truth == 0) | (truth == 1))
    score, positive = score[keep], truth[keep] == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    from scipy.stats import rankdata  # ~0.8 s to import: only where an AUC is asked

    ranks = rankdata(score)  # average ranks of ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class ConfusionMatrix:
    """Streaming confusion matrix on the device of the predictions (int64 bincount).

    ``update`` takes logits ``(N, K, H, W)`` or class maps ``(N, H, W)`` and labels
    ``(N, H, W)``; ``all_reduce`` sums it over DDP ranks.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self._m: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count a batch. The trainer calls it after every step, so it avoids the slow paths.

        The class axis is moved last before ``argmax`` (a reduction over a strided axis of
        a few elements runs many times slower than over a contiguous one), and ignored
        pixels are counted in a spare bin instead of being cut out by a boolean mask.
        """
        import torch

        with torch.no_grad():
            self._count(pred, target)

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        import torch

        if pred.ndim == target.ndim + 1:
            pred = pred.movedim(1, -1).contiguous().argmax(dim=-1)
        if pred.shape != target.shape:
            raise ConfigError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} "
                              "differ in shape; the label must be at the output scale")
        k = self.num_classes
        t = target.reshape(-1).long()
        p = pred.reshape(-1).long()
        keep = (t != LABEL_NODATA) & (t >= 0) & (t < k)
        pairs = torch.where(keep, t * k + p, k * k)  # k * k: the ignored pixels' bin
        counts = torch.bincount(pairs, minlength=k * k + 1)[:k * k].reshape(k, k)
        self._m = counts if self._m is None else self._m + counts.to(self._m.device)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            m = self.tensor()
            dist.all_reduce(m)
            self._m = m

    def tensor(self) -> torch.Tensor:
        import torch

        if self._m is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        return self._m.clone()

    @property
    def matrix(self) -> np.ndarray:
        return self.tensor().cpu().numpy().astype(np.int64)

    def compute(self, class_names: Sequence[str] | None = None) -> SegmentationMetrics:
        return compute_metrics(self.matrix, class_names)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def kappa(matrix: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix (orientation does not matter)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return math.nan
    p0 = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    return math.nan if pe == 1 else float((p0 - pe) / (1 - pe))


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of one confusion matrix (per-class tuples in class order; NaN = undefined)."""

    class_names: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    oa: float
    kappa: float
    miou: float
    mean_f1: float
    iou: tuple[float, ...]
    pa: tuple[float, ...]
    ua: tuple[float, ...]
    f1: tuple[float, ...]
    dice: tuple[float, ...]
    support: tuple[int, ...]

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    def table(self) -> str:
        """A fixed-width text table (percentages), one row per class then the overall rows."""
        head = f"{'class':<14}{'IoU':>8}{'PA':>8}{'UA':>8}{'F1':>8}{'Dice':>8}{'support':>12}"
        lines = [head, "-" * len(head)]
        for i, name in enumerate(self.class_names):
            vals = [self.iou[i], self.pa[i], self.ua[i], self.f1[i], self.dice[i]]
            lines.append(f"{name:<14}" + "".join(_pct(v) for v in vals) + f"{self.support[i]:>12}")
        lines.append("-" * len(head))
        lines.append(f"OA {100 * self.oa:.2f} %   MIoU {100 * self.miou:.2f} %   "
                     f"mean F1 {100 * self.mean_f1:.2f} %   kappa {self.kappa:.4f}")
        return "\n".join(lines)


def _pct(v: float) -> str:
    return f"{'n/a':>8}" if v is None or math.isnan(v) else f"{100 * v:>8.2f}"


def compute_metrics(matrix: np.ndarray,
                    class_names: Sequence[str] | None = None) -> SegmentationMetrics:
    """Every per-class and overall metric of a ``[ref, pred]`` confusion matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ConfigError(f"a confusion matrix must be square, got shape {m.shape}")
    k = m.shape[0]
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(k))
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names for a {k}-class matrix")
    tp = np.diag(m)
    ref = m.sum(1)
    pred = m.sum(0)
    iou = _div(tp, ref + pred - tp)
    pa = _div(tp, ref)
    ua = _div(tp, pred)
    f1 = _div(2 * tp, ref + pred)  # 2TP/(2TP+FP+FN): 0 where a class is only mapped or missed
    total = m.sum()
    present = (ref + pred) > 0
    return SegmentationMetrics(
        class_names=names,
        matrix=tuple(tuple(int(v) for v in row) for row in m),
        oa=float(tp.sum() / total) if total else math.nan,
        kappa=kappa(m),
        miou=float(np.nanmean(iou[present])) if present.any() else math.nan,
        mean_f1=float(np.nanmean(f1[present])) if np.isfinite(f1[present]).any() else math.nan,
        iou=tuple(float(v) for v in iou), pa=tuple(float(v) for v in pa),
        ua=tuple(float(v) for v in ua), f1=tuple(float(v) for v in f1),
        dice=tuple(float(v) for v in f1), support=tuple(int(v) for v in ref),
    )


