"""The points a classifier is refused on (training/points/checks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputDataError
from training.points.checks import check_points

CLASSES = ("pervious", "impervious")


def blocks(n: int, count: int = 5) -> np.ndarray:
    return np.arange(n) % count


def test_enough_points_of_every_class_in_several_blocks_pass():
    labels = np.array([0] * 15 + [1] * 6)
    counts = check_points(labels, CLASSES, blocks(21), 5, block_m=1000)
    assert counts.per_class == {"pervious": 15, "impervious": 6} and counts.folds == 5
    assert check_points(labels, CLASSES, blocks(21, 3), 5, block_m=1000).folds == 3


@pytest.mark.parametrize("labels, block_count, words", [
    ([0] * 10 + [1] * 5, 5, ("15 labelled points", "at least 20", "--min-points")),
    ([0] * 25, 5, ("no point is labelled 'impervious'", "25 pervious")),
    ([0] * 25 + [1] * 3, 5, ("only 3 impervious points", "at least 5 of each class")),
    ([0] * 20 + [1] * 10, 1, ("all 30 points lie in one 1000 m block", "--block")),
])
def test_refusals_say_what_is_wrong_and_what_to_do(labels, block_count, words):
    labels = np.array(labels)
    with pytest.raises(InputDataError) as caught:
        check_points(labels, CLASSES, blocks(labels.size, block_count), 5, block_m=1000)
    for word in words:
        assert word in str(caught.value)
