"""What a set of labelled points must hold before a classifier is fitted on it.

Each refusal is one line saying what is wrong and what to do: too few points, a class
without points (a map of built-up area needs built-up points), too few of a class, or points
all in one spatial block (nothing to cross-validate on). Checked before any feature is
computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InputDataError

MIN_POINTS = 20
"""Labelled points below which no classifier is fitted (``isamap-fit --min-points``)."""
MIN_PER_CLASS = 5
"""Points of each class below which no classifier is fitted."""


@dataclass(frozen=True)
class PointCounts:
    """How many points of each class there are, and in how many blocks."""

    per_class: dict[str, int]
    blocks: int
    folds: int  # the folds the cross-validation can make (at most the blocks)


def check_points(labels: np.ndarray, classes: Sequence[str], blocks: np.ndarray,
                 folds: int, *, block_m: float, min_points: int = MIN_POINTS,
                 min_per_class: int = MIN_PER_CLASS, source: str = "--points") -> PointCounts:
    """Refuse points no classifier should be fitted on; the counts otherwise.

    Args:
        labels: ``(n,)`` class codes (0 .. len(classes) - 1).
        classes: the class names, in code order.
        blocks: ``(n,)`` spatial block of each point (:func:`training.points.blocks.block_ids`).
        folds: the folds asked for; fewer are made when there are fewer blocks.
        block_m: the block side (for the message).
        min_points: the least points in all.
        min_per_class: the least points of each class.
        source: how the messages name the points.

    Raises:
        InputDataError: too few points, a class with none or too few, one block.
    """
    labels = np.asarray(labels, np.int64)
    n = int(labels.size)
    if n < min_points:
        raise InputDataError(f"{source}: {n} labelled points inside the input; a classifier "
                             f"needs at least {min_points}: label more points (or lower "
                             "--min-points)")
    counts = {name: int((labels == code).sum()) for code, name in enumerate(classes)}
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise InputDataError(f"{source}: no point is labelled {' or '.join(map(repr, empty))} "
                             f"(the {n} points are {_counts(counts)}); a map needs examples of "
                             "every class: label some")
    few = [name for name, count in counts.items() if count < min_per_class]
    if few:
        raise InputDataError(f"{source}: only {_counts({k: counts[k] for k in few})} points "
                             f"({_counts(counts)} in all); label at least {min_per_class} of "
                             "each class")
    count = int(np.asarray(blocks).max()) + 1
    if count < 2:
        raise InputDataError(f"{source}: all {n} points lie in one {block_m:g} m block, so no "
                             "part of them can be held out to test the fit; spread them over "
                             "the area, or give a smaller --block")
    return PointCounts(counts, count, min(int(folds), count))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())
