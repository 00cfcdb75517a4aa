"""Boundary F1 with a distance tolerance: does a map get the *outlines* of ISA right?

Area metrics (IoU, F1) are dominated by the interiors of large objects; a 1 m map from 10 m
input is only worth making if it places the edges of thin roads and small buildings, which area
metrics barely notice. The boundary F1 (Csurka et al. 2013, as used for semantic contours)
counts a predicted boundary pixel as correct when a reference boundary pixel lies within
``tolerance`` pixels of it (precision), and symmetrically for recall.

Boundary pixels are foreground pixels with at least one 4-connected background neighbour
inside the image (the image frame is not an edge: it is where the patch was cut). Nodata
(255) in the reference is neither object nor background, on both sides: no boundary lies on it
and the border between an object and nodata is not an outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from contract.bands import LABEL_NODATA
from core.errors import ConfigError, InputDataError

_CROSS = ndimage.generate_binary_structure(2, 1)


def boundary_mask(mask: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Pixels of a 2-D boolean mask with a 4-connected neighbour in ``background``.

    ``background`` defaults to ``~mask``; pass ``~mask & valid`` so that the border between an
    object and nodata is not mistaken for an outline. Beyond the image frame is not background
    (the frame is where the patch was cut, not an edge of the object).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputDataError(f"boundary_mask needs a 2-D mask, got shape {mask.shape}")
    background = ~mask if background is None else np.asarray(background, dtype=bool)
    touches = ndimage.binary_dilation(background, structure=_CROSS, border_value=0)
    return mask & touches


def _within(target: np.ndarray, reference: np.ndarray, tolerance: float) -> np.ndarray:
    """Which ``target`` pixels lie within ``tolerance`` (Euclidean px) of a ``reference`` pixel."""
    if not reference.any():
        return np.zeros_like(target)
    distance = ndimage.distance_transform_edt(~reference)
    return target & (distance <= tolerance)


@dataclass(frozen=True)
class BoundaryCounts:
    """Matched and total boundary pixels; summed over images before computing the score."""

    pred_matched: int = 0
    pred_total: int = 0
    true_matched: int = 0
    true_total: int = 0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(self.pred_matched + other.pred_matched,
                              self.pred_total + other.pred_total,
                              self.true_matched + other.true_matched,
                              self.true_total + other.true_total)

    @property
    def precision(self) -> float:
        return self.pred_matched / self.pred_total if self.pred_total else math.nan

    @property
    def recall(self) -> float:
        return self.true_matched / self.true_total if self.true_total else math.nan

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; NaN when neither map has a boundary.

        When only one map has boundaries the score is 0 (everything drawn is wrong, or
        everything real was missed), not NaN.
        """
        if not self.pred_total and not self.true_total:
            return math.nan
        p = self.precision if self.pred_total else 0.0
        r = self.recall if self.true_total else 0.0
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def boundary_counts(pred: np.ndarray, target: np.ndarray, tolerance: float = 2.0,
                    positive: int = 1, ignore_index: int = LABEL_NODATA) -> BoundaryCounts:
    """Boundary-match counts of one 2-D class map against its reference.

    Args:
        pred: predicted class map ``(H, W)``.
        target: reference class map ``(H, W)``; ``ignore_index`` marks nodata.
        tolerance: largest distance in pixels at which boundaries still match.
        positive: the class whose outline is scored (1 = impervious).
        ignore_index: reference value meaning nodata.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise InputDataError(
            f"prediction {pred.shape} and reference {target.shape} must be equal 2-D shapes"
        )
    if tolerance < 0:
        raise ConfigError(f"boundary tolerance must be >= 0 pixels, got {tolerance}")
    valid = target != ignore_index
    pred_fg, true_fg = (pred == positive) & valid, (target == positive) & valid
    pred_edge = boundary_mask(pred_fg, ~pred_fg & valid)
    true_edge = boundary_mask(true_fg, ~true_fg & valid)
    return BoundaryCounts(
        pred_matched=int(_within(pred_edge, true_edge, tolerance).sum()),
        pred_total=int(pred_edge.sum()),
        true_matched=int(_within(true_edge, pred_edge, tolerance).sum()),
        true_total=int(true_edge.sum()),
    )


@dataclass
class BoundaryF1:
    """Streaming boundary F1 over batches of class maps (``(N, H, W)`` or ``(H, W)``)."""

    tolerance: float = 2.0
    positive: int = 1
    ignore_index: int = LABEL_NODATA
    counts: BoundaryCounts = field(default_factory=BoundaryCounts)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        if pred.shape != target.shape:
            raise InputDataError(f"prediction {pred.shape} and reference {target.shape} differ")
        for p, t in zip(pred, target, strict=True):
            self.counts = self.counts + boundary_counts(
                p, t, self.tolerance, self.positive, self.ignore_index
            )

    def compute(self) -> dict[str, float]:
        c = self.counts
        return {"boundary_precision": c.precision, "boundary_recall": c.recall,
                "boundary_f1": c.f1, "boundary_tolerance_px": float(self.tolerance)}
