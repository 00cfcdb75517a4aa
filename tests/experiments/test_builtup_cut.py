"""``BASE+ef1``: each held-out map cut where its own probabilities' expected F1 is largest."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.builtup_cut import CUTS, expected_f1_cut
from experiments.builtup_stack import base_arm


def _expected_f1(prob: np.ndarray, cut: float) -> float:
    """The plug-in expected F1 written out: TP, FP and FN summed pixel by pixel."""
    above = prob >= cut
    tp, fp, fn = prob[above].sum(), (1 - prob[above]).sum(), prob[~above].sum()
    return 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_the_cut_is_the_best_of_every_cut_by_the_expected_f1_written_out(seed):
    rng = np.random.default_rng(seed)
    prob = rng.beta(0.3, 2.0 + seed, 2000)  # rare positives, as a rural tile's built ground
    cut, f1 = expected_f1_cut(prob)
    scores = [_expected_f1(prob, float(t)) for t in CUTS]
    assert f1 == pytest.approx(max(scores), abs=1e-12)
    assert cut == float(CUTS[int(np.argmax(scores))])


def test_calibrated_probabilities_of_a_hard_class_are_cut_below_one_half():
    """Calibrated scores are best cut at half the F1 they reach: a map unsure of its built
    pixels is cut low, one sure of them near one half; no probability above 0: one half."""
    unsure = np.array([0.4] * 10 + [0.05] * 90)
    assert expected_f1_cut(unsure)[0] <= 0.4
    sure = np.array([0.95] * 10 + [0.01] * 90)
    cut, f1 = expected_f1_cut(sure)
    assert 0.02 <= cut <= 0.95 and f1 > 0.9
    assert expected_f1_cut(np.zeros(5)) == (0.5, 0.0)
    assert base_arm("unet-s2+ef1") == "unet-s2"


def test_the_arm_scores_the_held_out_map_at_its_own_cut_without_reading_a_label(tmp_path):
    """The cut comes from the map alone: the same map under other labels gets the same cut."""
    from experiments.builtup_stack import cut_seed
    from tests.experiments.test_builtup_ensemble import FOOTPRINT, write_prob

    truth = np.zeros((4, 4), np.uint8)
    truth[:, 0] = 1
    prob = np.where(truth == 1, 0.35, 0.05)  # built is uncertain: one half maps nothing
    path = write_prob(tmp_path / "held.tif", prob, 100)
    area = np.ones((4, 4), bool)
    s = cut_seed(held=(path, FOOTPRINT, truth, np.zeros((4, 4)), area))
    assert s["threshold"] <= 0.35 and s["f1_built"] == 1.0
    other = cut_seed(held=(path, FOOTPRINT, 1 - truth, np.zeros((4, 4)), area))
    assert other["threshold"] == s["threshold"] and other["f1_built"] == 0.0
