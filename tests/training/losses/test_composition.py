"""Label super-resolution: soft labels are matched by the mean prediction of their cells."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from training.losses import build_loss
from training.losses.composition import CompositionLoss

NAMES = ("grassland", "impervious", "woodland")


def _logits(p_impervious: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax gives impervious ``p`` and grassland the rest (woodland ~0)."""
    p = torch.stack([1 - p_impervious, p_impervious, torch.full_like(p_impervious, 1e-9)], 1)
    return p.log()


def test_a_cell_whose_mean_matches_the_fraction_costs_nothing_wherever_the_class_sits():
    loss = CompositionLoss({200: {"impervious": 0.25}}, block=4, class_names=NAMES)
    target = torch.full((1, 4, 4), 200)
    concentrated = torch.zeros(1, 4, 4)
    concentrated[0, :1] = 1.0  # a road on one row of four: 25 % of the cell
    spread = torch.full((1, 4, 4), 0.25)
    assert loss(_logits(concentrated.clamp(1e-6, 1 - 1e-6)), target) < 1e-4
    assert loss(_logits(spread), target) < 1e-6
    wrong = loss(_logits(torch.full((1, 4, 4), 0.5)), target)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(wrong) == pytest.approx(kl, rel=1e-4)


def test_cells_are_scored_apart_and_hard_pixels_by_cross_entropy():
    loss = CompositionLoss({200: {"impervious": 0.5}}, block=2, class_names=NAMES)
    target = torch.full((1, 2, 4), 200)
    p = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]).clamp(1e-6, 1 - 1e-6)
    # over the whole crop the mean is 25 %; per 2 px cell it is 50 % and 0 %
    per_cell = 0.5 * (0 + (0.5 * math.log(0.5 / 1e-6) + 0.5 * math.log(0.5 / (1 - 1e-6))))
    assert float(loss(_logits(p), target)) == pytest.approx(per_cell, rel=1e-3)
    hard = torch.tensor([[[0, 2, 255, 200]]])
    logits = torch.randn(1, 3, 1, 4, requires_grad=True)
    weights = [1.0, 3.0, 2.0]
    weighted = CompositionLoss({200: {"impervious": 0.5}}, weights, block=1,
                               composition_weight=0.0, class_names=NAMES)
    expected = F.cross_entropy(logits[..., :2], hard[..., :2], weight=torch.tensor(weights))
    value = weighted(logits, hard)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    value.backward()
    assert logits.grad[..., 2:].abs().sum() == 0  # nodata and the unweighted soft pixel


def test_the_factory_and_bad_compositions():
    loss = build_loss("composition", compositions={"200": {"1": 0.1}}, block=30)
    assert isinstance(loss, CompositionLoss)
    with pytest.raises(ConfigError, match="sum to at most 1"):
        CompositionLoss({200: {"impervious": 0.8, "woodland": 0.4}}, class_names=NAMES)
    with pytest.raises(ConfigError, match="does not have"):
        CompositionLoss({200: {"snow": 0.1}}, class_names=NAMES)
    with pytest.raises(ConfigError, match="also a class index"):
        CompositionLoss({1: {"impervious": 0.1}}, class_names=NAMES)(
            torch.zeros(1, 3, 2, 2), torch.ones(1, 2, 2, dtype=torch.long))
