"""The prior-adapted arm: Saerens et al.'s EM on calibrated mixtures, and the arm on real maps."""

from __future__ import annotations

import numpy as np
import pytest

from contract.dataset import write_index, write_manifest
from core.storage import open_store
from experiments.builtup_prior import adjust_to_prior, em_prior


def calibrated_mixture(prior: float, train_prior: float, n: int, seed: int):
    """Pixels of a tile ``prior`` positive and their exact posterior at ``train_prior``.

    The classes' appearance is fixed (N(0, 1) negative, N(2, 1) positive): the posterior a
    classifier calibrated where ``train_prior`` is positive gives is Bayes' rule at that prior.
    """
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < prior
    x = rng.normal(np.where(truth, 2.0, 0.0), 1.0)
    log_odds = np.log(train_prior / (1 - train_prior)) + 2.0 * x - 2.0
    return 1 / (1 + np.exp(-log_odds)), truth


def test_the_em_recovers_a_known_prior_from_calibrated_probabilities():
    for true_prior in (0.007, 0.03, 0.3):
        prob, truth = calibrated_mixture(true_prior, 0.2, 200_000, seed=1)
        estimate = em_prior(prob, 0.2)
        assert estimate.converged and estimate.iterations < 1000
        assert estimate.prior == pytest.approx(truth.mean(), abs=0.004)
    # the adjusted probabilities are calibrated again: their mean is the tile's share, and
    # among the pixels they put at about 0.5, about half are positive
    prob, truth = calibrated_mixture(0.01, 0.2, 400_000, seed=2)
    adjusted = adjust_to_prior(prob, 0.2, em_prior(prob, 0.2).prior)
    assert adjusted.mean() == pytest.approx(truth.mean(), abs=0.002)
    near_half = (adjusted > 0.4) & (adjusted < 0.6)
    assert truth[near_half].mean() == pytest.approx(0.5, abs=0.08)
    assert prob.mean() > 3 * truth.mean()  # unadjusted, it maps several times too much


def test_agreeing_priors_leave_the_probabilities_as_they_are():
    prob, truth = calibrated_mixture(0.2, 0.2, 100_000, seed=3)
    assert np.array_equal(adjust_to_prior(prob, 0.2, 0.2), prob)
    assert em_prior(prob, 0.2).prior == pytest.approx(truth.mean(), abs=0.004)
    there_and_back = adjust_to_prior(adjust_to_prior(prob, 0.2, 0.01), 0.01, 0.2)
    assert np.allclose(there_and_back, prob, rtol=0, atol=1e-12)
    with_nan = np.array([0.1, np.nan, 0.9])
    adjusted = adjust_to_prior(with_nan, 0.3, 0.1)
    assert np.isnan(adjusted[1]) and adjusted[0] < 0.1 and adjusted[2] < 0.9


def test_the_iterations_are_bounded_and_bad_input_refused():
    prob, _truth = calibrated_mixture(0.005, 0.3, 20_000, seed=4)
    cut = em_prior(prob, 0.3, max_iterations=3)
    assert cut.iterations == 3 and not cut.converged
    assert em_prior(np.zeros(10), 0.3).prior == pytest.approx(0.0, abs=1e-8)  # stays in (0, 1)
    with pytest.raises(ValueError, match="finite"):
        em_prior(np.array([np.nan]), 0.3)
    with pytest.raises(ValueError, match="max_iterations"):
        em_prior(prob, 0.3, max_iterations=0)
    with pytest.raises(ValueError, match="train_prior"):
        em_prior(prob, 1.0)
    with pytest.raises(ValueError, match="new_prior"):
        adjust_to_prior(prob, 0.3, 0.0)


def test_the_prior_arm_counts_the_training_patches_and_adapts_the_held_out_map(tmp_path):
    from experiments.builtup_stack import base_arm, prior_seed, training_prior
    from tests.experiments.test_builtup_ensemble import FOOTPRINT, write_prob

    # the training tile: a training patch over the top half (4 of 8 labelled pixels built),
    # a validation patch over the bottom half (all built), which the prior does not count
    records = [{"id": i, "month": "2018-12", "row": r, "col": 0, "split": split, "bounds": b,
                "valid_fraction": 1.0, "isa_fraction": 0.0, "image": f"{i}.tif",
                "label": f"{i}_label.tif"}
               for i, r, split, b in (("t", 0, "train", [0, 20, 40, 40]),
                                      ("v", 1, "val", [0, 0, 40, 20]))]
    store = open_store(str(tmp_path))
    write_manifest(store, {"bands": ["B2"]})
    write_index(store, records)
    train_truth = np.ones((4, 4), np.uint8)
    train_truth[:2, 2:] = 0
    train_truth[0, 0] = 255  # unlabelled: not counted
    assert training_prior([(FOOTPRINT, train_truth, tmp_path)]) == pytest.approx(3 / 7)
    # the held-out tile: one built pixel of 16; the model, at the training prior of one half,
    # gives it 0.99 and three look-alikes 0.6: cut at one half they are mapped, adapted not
    truth = np.zeros((4, 4), np.uint8)
    truth[0, 0] = 1
    truth[3, 3] = 255  # unlabelled: helps estimate the prior, not scored
    held = np.full((4, 4), 0.02)
    held[0, 0] = 0.99
    held[1, 1:] = 0.6
    path = write_prob(tmp_path / "held.tif", held, 250)
    s = prior_seed(train_prior=0.5, held=(path, FOOTPRINT, truth, np.zeros((4, 4)),
                                          np.ones((4, 4), bool)))
    assert s["estimated_prior"] < 0.1 and s["em_converged"] and s["prior_pixels"] == 16
    assert s["f1_built"] == 1.0 and s["mapped_built_share"] == pytest.approx(1 / 15)
    assert s["auc_built"] == 1.0 and s["pixels"] == 15 and s["train_prior"] == 0.5
    assert base_arm("unet-s2+prior") == "unet-s2"
