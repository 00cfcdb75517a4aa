"""The held-out score of a fine-tune: no point next to a scored one trains, or no claim.

:func:`training.points.tune.held_out` on points of a 2 km square, with a stand-in for the
fine-tune that records what each fold trained on: every point is scored once, by a fold
whose training points lie in no block next to (or in) one of its scored points' blocks; the
base network's scores sit beside on the same points; too few blocks is a reason, not a
number. :func:`~training.points.tune.fine_tune` is seeded: the same call, the same weights;
:func:`~training.points.tune.prior_shift` gives a network the base's class shares back.
"""

from __future__ import annotations

import numpy as np
import torch

from training.points.blocks import block_folds, block_ids
from training.points.tune import (
    SPAN,
    class_shares,
    fine_tune,
    held_out,
    point_probabilities,
    prior_shift,
    valid_logits,
)

CLASSES = ("pervious", "impervious")
BLOCK = 100.0


def _points(n: int = 250, side: float = 2000.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, side, n), rng.uniform(0, side, n)
    labels = (x > side / 2).astype(np.int64)
    return x, y, np.zeros(n, np.int64), labels


def test_each_fold_is_scored_by_a_tune_no_neighbour_of_its_points_trained():
    x, y, group, labels = _points()
    base = np.full((labels.size, 2), 0.5)
    base[:, 1] = np.where(y > 1000, 0.9, 0.1)  # the base ranks by the wrong axis
    trained: list[np.ndarray] = []

    def tune(train: np.ndarray) -> np.ndarray:
        trained.append(train.copy())
        return np.stack([1 - labels, labels], axis=1).astype(float)  # learns the points

    score = held_out(tune, base, labels, x, y, group, CLASSES, folds=5, block_m=BLOCK,
                     min_per_class=5)
    assert score.why is None and score.folds == 5 == len(trained) and score.points == 250
    assert score.tuned == {"pervious": 1.0, "impervious": 1.0} and score.tuned_auc == 1.0
    assert abs(score.base_auc - 0.5) < 0.1  # the base, on the same points, beside
    # the folds as dealt: contiguous areas of SPAN x SPAN blocks, each scored in turn
    fold = block_folds(block_ids(x, y, group, BLOCK * SPAN), 5, 0)
    bx, by = np.floor(x / BLOCK), np.floor(y / BLOCK)
    for f, train in enumerate(trained):
        test = fold == f
        assert test.any() and not (train & test).any()
        # a training point lies in no block next to (or in) a block of a point scored by it
        near = ((np.abs(bx[train][:, None] - bx[None, test]) <= 1)
                & (np.abs(by[train][:, None] - by[None, test]) <= 1))
        assert not near.any()
        assert train.sum() > 0.3 * labels.size  # contiguous areas leave most points to train
    record = score.record()
    assert record["folds"] == 5 and record["why_none"] is None and record["base_f1"]


def test_too_few_blocks_is_a_reason_not_a_number():
    x, y, group, labels = _points(side=300.0)  # 3 x 3 blocks of 100 m
    score = held_out(lambda train: np.zeros((labels.size, 2)), np.zeros((labels.size, 2)),
                     labels, x, y, group, CLASSES, folds=5, block_m=BLOCK)
    assert score.folds == 0 and score.tuned is None
    assert score.why.startswith("the points lie in 9 blocks of 100 m; a held-out score needs "
                                "at least 10")
    assert score.record()["f1"] is None and score.record()["why_none"] == score.why


def test_the_fine_tune_is_seeded_and_moves_the_labelled_pixels_toward_their_labels():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 3, padding=1)).eval()
    windows = np.random.default_rng(1).normal(size=(16, 3, 16, 16)).astype(np.float32)
    labels = np.arange(16) % 2
    centre = np.full(16, 8)
    before = point_probabilities(net, windows, centre, centre)[np.arange(16), labels]
    tuned = [fine_tune(net, windows, labels, centre, centre, steps=8, lr=0.1, seed=3)
             for _ in range(2)]
    after = point_probabilities(tuned[0], windows, centre, centre)[np.arange(16), labels]
    assert after.mean() > before.mean() + 0.2
    for a, b in zip(tuned[0].state_dict().values(), tuned[1].state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)  # the same seed, the same weights
    assert all(not p.requires_grad for p in tuned[0].parameters())
    assert point_probabilities(net, windows, centre, centre)[np.arange(16), labels].tolist() \
        == before.tolist()  # the base network is left as it was


def test_the_shift_gives_the_logits_the_shares_asked_and_keeps_their_order():
    rng = np.random.default_rng(0)
    two = np.stack([np.zeros(50_000), rng.normal(-1, 3, 50_000)], axis=1)
    shift = prior_shift(two, np.array([0.98, 0.02]))
    assert shift is not None and shift[0] == 0 and shift[1] < 0
    assert np.allclose(class_shares(two + np.array(shift)), [0.98, 0.02], atol=1e-6)
    four = rng.normal(0, 2, (20_000, 4))
    target = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.allclose(class_shares(four + np.array(prior_shift(four, target))), target,
                       atol=1e-6)
    assert prior_shift(np.zeros((0, 2)), target[:2]) is None  # no pixel: nothing to match


def test_the_area_logits_are_the_valid_pixels_of_the_windows_at_the_temperature():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1)).eval()
    windows = np.random.default_rng(1).normal(size=(5, 3, 8, 8)).astype(np.float32)
    valid = np.zeros((5, 8, 8), bool)
    valid[1, 2, 3] = valid[4, 7, 0] = True
    z = valid_logits(net, windows, valid, temperature=2.0, batch=2)
    with torch.no_grad():
        full = net(torch.from_numpy(windows)).double().numpy() / 2.0
    assert np.allclose(z, [full[1, :, 2, 3], full[4, :, 7, 0]])
