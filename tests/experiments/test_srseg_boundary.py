import math

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.srseg_boundary import BoundaryF1, boundary_counts, boundary_mask


def square(size=20, top=5, left=5, side=8):
    m = np.zeros((size, size), np.uint8)
    m[top:top + side, left:left + side] = 1
    return m


def test_boundary_of_a_square_is_its_outline():
    edge = boundary_mask(square() == 1)
    assert edge.sum() == 4 * 8 - 4
    assert not edge[6:12, 6:12].any()


def test_image_frame_is_not_a_boundary():
    full = np.ones((6, 6), bool)
    assert not boundary_mask(full).any()


def test_identical_masks_score_one_and_a_shift_needs_tolerance():
    gt = square()
    assert boundary_counts(gt, gt, tolerance=0).f1 == 1.0
    shifted = square(left=7)  # two pixels to the right
    strict = boundary_counts(shifted, gt, tolerance=0)
    # only the top and bottom rows of the overlapping columns coincide: 2 x 6 of 28 pixels
    assert strict.pred_matched == 12 and strict.pred_total == 28
    assert strict.f1 == pytest.approx(12 / 28)
    assert boundary_counts(shifted, gt, tolerance=1).f1 < 1.0
    assert boundary_counts(shifted, gt, tolerance=2).f1 == 1.0


def test_thin_road_missed_scores_zero():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, 4] = 1  # a one-pixel road
    counts = boundary_counts(np.zeros_like(gt), gt, tolerance=1)
    assert counts.f1 == 0.0 and counts.recall == 0.0 and math.isnan(counts.precision)


def test_nodata_boundaries_are_ignored_and_empty_is_nan():
    gt = square()
    gt[:, :10] = 255  # left half unknown
    pred = square()
    c = boundary_counts(pred, gt, tolerance=0)
    assert c.true_total < 28 and c.f1 == 1.0
    assert math.isnan(boundary_counts(np.zeros((4, 4)), np.zeros((4, 4))).f1)
    with pytest.raises(ConfigError):
        boundary_counts(gt, gt, tolerance=-1)


def test_streaming_sums_counts_over_images():
    metric = BoundaryF1(tolerance=0)
    gt = np.stack([square(), square()])
    pred = np.stack([square(), np.zeros((20, 20), np.uint8)])
    metric.update(pred, gt)
    out = metric.compute()
    assert out["boundary_precision"] == 1.0
    assert out["boundary_recall"] == pytest.approx(0.5)
    assert out["boundary_f1"] == pytest.approx(2 / 3)
