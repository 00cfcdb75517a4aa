"""Accuracy metrics of the papers, from one confusion matrix.

Convention: ``matrix[i, j]`` counts samples whose REFERENCE class is ``i`` and PREDICTED (map)
class is ``j`` (rows = reference). The papers print the transpose (rows = map class);
``from_map_rows`` converts a printed table.

- Per class: IoU = TP/(TP+FP+FN); producer's accuracy PA = TP/(TP+FN) (recall);
  user's accuracy UA = TP/(TP+FP) (precision); F1 = 2 PA UA/(PA+UA); Dice = 2TP/(2TP+FP+FN)
  (equal to F1 for hard labels, reported separately as RU-Net++ does).
- Overall: OA = trace/total; MIoU = mean IoU over classes that occur; Cohen's kappa
  (p0 - pe)/(1 - pe) with pe = sum(row total * column total)/total^2 (RU-Net++ eqs. 7-8).
- Point assessment: a confusion matrix from random (or map-stratified) sample points.
- Olofsson et al. (2014) stratified estimators: area-weighted error matrix, OA/UA/PA and class
  areas with standard errors and 95 % confidence intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from gee_export.contract.bands import LABEL_NODATA
from gee_export.core.errors import ConfigError
from gee_export.core.jsonsafe import json_safe

Z95 = 1.96  # the rounded normal quantile Olofsson et al. (2014) use for 95 % intervals


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


class ConfusionMatrix:
    """Streaming confusion matrix on the device of the predictions (int64 bincount).

    ``update`` takes logits ``(N, K, H, W)`` or class maps ``(N, H, W)`` and labels
    ``(N, H, W)``; ``all_reduce`` sums it over DDP ranks.
    """

    def __init__(self, num_classes: int, ignore_index: int = LABEL_NODATA) -> None:
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._m: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ConfigError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} "
                              "differ in shape; the label must be at the output scale")
        k = self.num_classes
        t = target.reshape(-1).long()
        p = pred.reshape(-1).long()
        keep = (t != self.ignore_index) & (t >= 0) & (t < k)
        counts = torch.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k)
        self._m = counts if self._m is None else self._m + counts.to(self._m.device)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            m = self.tensor()
            dist.all_reduce(m)
            self._m = m

    def tensor(self) -> torch.Tensor:
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
        d = asdict(self)
        return json_safe(d)

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
    f1 = _div(2 * pa * ua, pa + ua)
    f1 = np.where(np.isnan(pa) | np.isnan(ua), np.nan, np.nan_to_num(f1, nan=0.0))
    dice = _div(2 * tp, ref + pred)
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
        dice=tuple(float(v) for v in dice), support=tuple(int(v) for v in ref),
    )


# ------------------------------------------------------------------ point-sample assessment
def sample_points(map_: np.ndarray, n: int, seed: int = 0,
                  design: Literal["random", "stratified"] = "stratified",
                  num_classes: int | None = None,
                  nodata: int = LABEL_NODATA) -> tuple[np.ndarray, ...]:
    """Indices (one array per axis) of ``n`` sample points over the valid pixels of a class map.

    ``random``: simple random sampling. ``stratified``: the map classes are the strata and
    ``n`` is split equally between them (all pixels of a small class when it has fewer),
    the design the Olofsson estimators below assume.
    """
    flat = np.asarray(map_).ravel()
    valid = np.flatnonzero(flat != nodata)
    if valid.size == 0:
        raise ConfigError("the map has no valid pixel to sample")
    rng = np.random.default_rng(seed)
    if design == "random":
        pick = rng.choice(valid, size=min(n, valid.size), replace=False)
    elif design == "stratified":
        classes = np.unique(flat[valid]) if num_classes is None else np.arange(num_classes)
        per = max(n // max(len(classes), 1), 1)
        parts = []
        for c in classes:
            members = valid[flat[valid] == c]
            if members.size:
                parts.append(rng.choice(members, size=min(per, members.size), replace=False))
        pick = np.concatenate(parts)
    else:
        raise ConfigError(f"design must be 'random' or 'stratified', got {design!r}")
    return np.unravel_index(np.sort(pick), np.asarray(map_).shape)


def point_confusion(map_: np.ndarray, reference: np.ndarray, index: tuple[np.ndarray, ...],
                    num_classes: int, nodata: int = LABEL_NODATA) -> np.ndarray:
    """Confusion matrix ``[ref, pred]`` of the map against the reference at sample points."""
    return confusion_matrix(np.asarray(map_)[index], np.asarray(reference)[index],
                            num_classes, nodata)


@dataclass(frozen=True)
class AreaAccuracy:
    """Olofsson et al. (2014) estimates; ``*_ci`` are 95 % half-widths (1.96 x SE)."""

    class_names: tuple[str, ...]
    oa: float
    oa_ci: float
    ua: tuple[float, ...]
    ua_ci: tuple[float, ...]
    pa: tuple[float, ...]
    pa_ci: tuple[float, ...]
    proportion: tuple[float, ...]
    area: tuple[float, ...]
    area_ci: tuple[float, ...]
    mapped_area: tuple[float, ...]

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def stratified_area_accuracy(matrix: np.ndarray, mapped_pixels: Sequence[float],
                             pixel_area: float = 1.0,
                             class_names: Sequence[str] | None = None) -> AreaAccuracy:
    """Area-weighted accuracy and area estimates for a sample stratified by map class.

    Args:
        matrix: sample counts ``[ref, pred]`` (strata = predicted/map classes).
        mapped_pixels: number of map pixels of each class (the strata sizes).
        pixel_area: area of one pixel in the unit wanted for the areas (e.g. 0.01 ha).
        class_names: names for the report.

    Follows Olofsson et al. (2014), eqs. 2-11: with ``W_i`` the mapped proportion of class i
    and ``n_ij`` the sample counts (i map, j reference), ``p_ij = W_i n_ij / n_i.``.
    """
    n = np.asarray(matrix, dtype=np.float64).T  # rows = map class i, cols = reference j
    k = n.shape[0]
    mapped = np.asarray(mapped_pixels, dtype=np.float64)
    if mapped.shape != (k,) or (mapped < 0).any() or mapped.sum() <= 0:
        raise ConfigError(f"mapped_pixels must be {k} non-negative counts with a positive sum")
    ni = n.sum(1)
    if ((ni < 2) & (mapped > 0)).any():
        raise ConfigError("every mapped class needs at least 2 sample points for a variance; "
                          f"samples per map class: {ni.astype(int).tolist()}")
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(k))
    total = mapped.sum()
    w = mapped / total
    frac = np.divide(n, ni[:, None], out=np.zeros_like(n), where=ni[:, None] > 0)  # n_ij / n_i.
    p = w[:, None] * frac
    pj = p.sum(0)
    oa = float(np.trace(p))
    ua = np.diag(frac)
    pa = _div(np.diag(p), pj)
    dof = np.where(ni > 1, ni - 1, np.inf)
    var_oa = float((w**2 * ua * (1 - ua) / dof).sum())
    var_ua = ua * (1 - ua) / dof
    var_pj = ((w[:, None] ** 2) * frac * (1 - frac) / dof[:, None]).sum(0)
    # Producer's accuracy variance (eq. 7) with estimated reference totals N_.j.
    big_n = mapped
    n_ref = (big_n[:, None] * frac).sum(0)
    var_pa = np.empty(k)
    for j in range(k):
        others = [i for i in range(k) if i != j]
        term1 = big_n[j] ** 2 * (1 - pa[j]) ** 2 * ua[j] * (1 - ua[j]) / dof[j]
        term2 = pa[j] ** 2 * sum(big_n[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / dof[i]
                                 for i in others)
        var_pa[j] = (term1 + term2) / n_ref[j] ** 2 if n_ref[j] > 0 else math.nan
    area = pj * total * pixel_area
    return AreaAccuracy(
        class_names=names, oa=oa, oa_ci=Z95 * math.sqrt(var_oa),
        ua=tuple(float(v) for v in ua), ua_ci=tuple(float(Z95 * np.sqrt(v)) for v in var_ua),
        pa=tuple(float(v) for v in pa), pa_ci=tuple(float(Z95 * np.sqrt(v)) for v in var_pa),
        proportion=tuple(float(v) for v in pj),
        area=tuple(float(v) for v in area),
        area_ci=tuple(float(Z95 * np.sqrt(v) * total * pixel_area) for v in var_pj),
        mapped_area=tuple(float(v) for v in mapped * pixel_area),
    )
