"""The fit on the points' features: checked, cross-validated by block, fitted on them all.

:func:`fit_points` checks the points (:mod:`~training.points.checks`), deals their spatial
blocks to folds (:mod:`~training.points.blocks`), chooses the head's penalty by
cross-validation (:mod:`~training.points.crossval`) and fits the head on every point with it.
Arrays in, arrays out: reading the points and the stack is the caller's
(:mod:`inference.fit.job`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.points.blocks import block_folds, block_ids
from training.points.checks import MIN_PER_CLASS, MIN_POINTS, PointCounts, check_points
from training.points.crossval import CrossValidation, cross_validate
from training.points.head import FittedHead, fit_head

DEFAULT_BLOCK_M = 1000.0
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class FitOptions:
    """How the head is fitted and cross-validated (``isamap-fit``'s options).

    Attributes:
        hidden: hidden units of the head (0: linear).
        folds: cross-validation folds (at most the blocks holding points).
        block_m: the side in metres of the spatial blocks dealt to the folds.
        seed: the folds' tie-breaking and a hidden layer's initialisation.
        min_points / min_per_class: the least labelled points in all and of each class.
    """

    hidden: int = 0
    folds: int = DEFAULT_FOLDS
    block_m: float = DEFAULT_BLOCK_M
    seed: int = 0
    min_points: int = MIN_POINTS
    min_per_class: int = MIN_PER_CLASS


@dataclass(frozen=True)
class PointFit:
    """A fitted head and how it was chosen and scored."""

    head: FittedHead
    cv: CrossValidation
    counts: PointCounts
    options: FitOptions

    def record(self) -> dict:
        """What the model file records of the fit (JSON)."""
        return {"points": sum(self.counts.per_class.values()),
                "per_class": dict(self.counts.per_class), "blocks": self.counts.blocks,
                "block_m": self.options.block_m, "hidden": self.options.hidden,
                "seed": self.options.seed, "cross_validation": self.cv.record()}


def check_only(labels: np.ndarray, x: np.ndarray, y: np.ndarray, group: np.ndarray,
               classes: Sequence[str], options: FitOptions,
               source: str = "--points") -> PointCounts:
    """:func:`training.points.checks.check_points` on the points' blocks, before any feature."""
    blocks = block_ids(x, y, group, options.block_m)
    return check_points(labels, classes, blocks, options.folds, block_m=options.block_m,
                        min_points=options.min_points, min_per_class=options.min_per_class,
                        source=source)


def fit_points(features: np.ndarray, labels: np.ndarray, x: np.ndarray, y: np.ndarray,
               group: np.ndarray, classes: Sequence[str], positive: int,
               options: FitOptions = FitOptions(), source: str = "--points") -> PointFit:
    """Check, cross-validate and fit (module docstring).

    Args:
        features: ``(n, F)`` each point's features.
        labels: ``(n,)`` class codes.
        x: projected x in metres.
        y: projected y in metres.
        group: the input each point lies in.
        classes: class names in code order.
        positive: the code scored by AUC.
        options: :class:`FitOptions`.
        source: how refusals name the points.

    Raises:
        InputDataError: the points fail :func:`~training.points.checks.check_points`.
    """
    counts = check_only(labels, x, y, group, classes, options, source)
    blocks = block_ids(x, y, group, options.block_m)
    folds = block_folds(blocks, counts.folds, options.seed)
    cv = cross_validate(features, labels, folds, classes, positive, options.hidden,
                        options.seed)
    head = fit_head(features, labels, len(classes), cv.l2, options.hidden, options.seed)
    return PointFit(head, cv, counts, options)
