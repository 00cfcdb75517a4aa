"""The head, its penalty chosen by block cross-validation, and the whole fit."""

from __future__ import annotations

import numpy as np
import torch

from training.points.crossval import cross_validate
from training.points.fit import FitOptions, fit_points
from training.points.head import fit_head, probabilities

CLASSES = ("pervious", "impervious")


def separable(n: int = 300, seed: int = 0):
    """Features whose first two columns decide the class, with label noise; a grid of xy."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 6)) * [1, 1, 1, 1, 100, 0.01]  # scales standardised away
    labels = ((f[:, 0] - f[:, 1] + 0.3 * rng.normal(size=n)) > 0.5).astype(np.int64)
    x, y = rng.uniform(0, 5000, n), rng.uniform(0, 5000, n)
    return f, labels, x, y


def test_linear_head_separates_and_its_module_agrees():
    f, labels, _, _ = separable()
    fitted = fit_head(f, labels, 2, l2=1e-3)
    p = probabilities(fitted.logits(f, 2))[:, 1]
    assert ((p > 0.5) == labels).mean() > 0.9
    w = fitted.state["weight"]
    assert w.shape == (2, 6) and (w[1] - w[0])[0] > 0 > (w[1] - w[0])[1]
    # the 1x1-convolution head the model holds gives the same logits
    x = torch.from_numpy(((f - fitted.mean) / fitted.std).astype(np.float32))[:, :, None, None]
    with torch.no_grad():
        conv = fitted.module(2)(x)[:, :, 0, 0].numpy()
    np.testing.assert_allclose(conv, fitted.logits(f, 2), atol=1e-4)
    # convex: the same points give the same head
    again = fit_head(f, labels, 2, l2=1e-3)
    assert torch.equal(again.state["weight"], fitted.state["weight"])


def test_hidden_layer_head_fits_too():
    f, labels, _, _ = separable()
    fitted = fit_head(f, labels, 2, l2=1e-3, hidden=8, seed=1)
    assert set(fitted.state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert ((fitted.logits(f, 2).argmax(1)) == labels).mean() > 0.9


def test_out_of_fold_predictions_come_from_heads_that_never_saw_the_fold():
    f, labels, _, _ = separable(120)
    folds = np.arange(120) % 4
    cv = cross_validate(f, labels, folds, CLASSES, positive=1, grid=(1e-2,))
    for k in range(4):
        test = folds == k
        head = fit_head(f[~test], labels[~test], 2, 1e-2)
        np.testing.assert_allclose(cv.probabilities[test],
                                   probabilities(head.logits(f[test], 2)), atol=1e-9)
    assert cv.l2 == 1e-2 and cv.auc > 0.9 and len(cv.fold_f1) == 4


def test_fit_chooses_the_penalty_by_log_loss_and_records_it():
    f, labels, x, y = separable()
    fit = fit_points(f, labels, x, y, np.zeros(labels.size, np.int64), CLASSES, 1,
                     FitOptions(block_m=1000))
    assert fit.cv.l2 == min(fit.cv.log_loss, key=fit.cv.log_loss.get)
    assert fit.counts.blocks == 25 and fit.cv.folds == 5
    record = fit.record()
    assert record["points"] == 300 and record["cross_validation"]["auc"] > 0.9
    assert fit.head.l2 == fit.cv.l2
