"""Map scores against values worked out by hand; the AUC against pair counting on real pixels."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from experiments.scoring import (
    best_threshold_f1,
    binary_scores,
    index_baseline,
    ndbi,
    normalized_difference,
    roc_auc,
)


def test_binary_scores_by_hand():
    # tp 2 (pixels 0, 4), fp 1 (pixel 1), fn 1 (pixel 2), tn 1; 255 is not scored
    s = binary_scores(np.array([1, 1, 0, 0, 1, 1]), np.array([1, 0, 1, 0, 1, 255]))
    assert s.f1 == pytest.approx(4 / 6) and s.iou == pytest.approx(2 / 4)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert (s.pixels, s.built) == (5, 3)


def test_roc_auc_by_hand():
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered -> 0.75
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5  # a tie counts one half
    assert roc_auc(np.array([0.2, np.nan, 0.9]), np.array([0, 1, 1])) == 1.0  # NaN left out
    assert np.isnan(roc_auc(np.array([0.2, 0.3]), np.array([0, 0])))


def test_best_threshold_f1_by_hand():
    # >= 0.9: F1 2/3; >= 0.8: 1/2; >= 0.7: tp 2 fp 1 -> 4/5; >= 0.2: 4/6
    threshold, f1 = best_threshold_f1(np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 0, 1, 0]))
    assert threshold == 0.7 and f1 == pytest.approx(0.8)
    # ties go together: >= 0.5 takes both 0.5 pixels
    threshold, f1 = best_threshold_f1(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]))
    assert threshold == 0.5 and f1 == pytest.approx(2 / 3)


def test_indices_by_hand():
    assert ndbi(np.array([0.3]), np.array([0.1]))[0] == pytest.approx(0.5)
    assert np.isnan(normalized_difference(np.array([0.0]), np.array([0.0]))[0])
    base = index_baseline(np.array([0.2, -0.1, 0.05, -0.3]), np.array([1, 0, 0, 0]))
    assert base["auc"] == 1.0 and base["f1"] == pytest.approx(2 / 3)  # 0.2, 0.05 >= 0
    assert base["best_threshold"] == 0.2 and base["best_f1"] == 1.0


def test_roc_auc_equals_pairwise_counting_on_a_real_crop(shared_data):
    """NDBI against built on 30 x 40 Java pixels: the rank formula is the pair count."""
    folder = shared_data / "dynamicworld_s2"
    window = Window(300, 200, 40, 30)
    with rasterio.open(folder / "java_s2l2a.tif") as src:
        nir = src.read(8, window=window) / 10000.0
        swir = src.read(11, window=window) / 10000.0
    with rasterio.open(folder / "java_label.tif") as src:
        codes = src.read(1, window=window)
    keep = ~np.isin(codes, (0, 10))
    index, built = ndbi(swir, nir)[keep], (codes[keep] == 7).astype(int)
    pos, neg = index[built == 1], index[built == 0]
    assert pos.size > 20 and neg.size > 20
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(index, built) == pytest.approx(pairs / (pos.size * neg.size))
