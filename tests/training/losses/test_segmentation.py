"""Segmentation losses: values on hand-computed cases, the nodata label ignored everywhere."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import ConfigError
from training.losses import build_loss
from training.losses.segmentation import (
    CroFuseNetLoss,
    DiceFocalLoss,
    WeightedCrossEntropy,
    dice_loss,
    focal_loss,
)


def _logits(values):  # (N=1, K=2, H=1, W=len) from per-pixel [l0, l1]
    return torch.tensor(values, dtype=torch.float32).T.reshape(1, 2, 1, -1)


def test_cross_entropy_known_value():
    logits = _logits([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[[0, 1]]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert WeightedCrossEntropy()(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_is_a_weighted_mean():
    logits = _logits([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[[0, 1]]])
    a, b = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))
    got = WeightedCrossEntropy([1.0, 3.0])(logits, target).item()
    assert got == pytest.approx((a + 3 * b) / 4, rel=1e-6)


def test_crofusenet_composite_weights():
    target = torch.tensor([[[0, 1]]])
    out = {"out": _logits([[2.0, 0.0], [0.0, 1.0]]), "optical": _logits([[0.0, 0.0]] * 2),
           "sar": _logits([[0.0, 3.0], [0.0, 3.0]])}
    ce = WeightedCrossEntropy()
    expected = (ce(out["out"], target) + 1.0 * ce(out["optical"], target)
                + 0.8 * ce(out["sar"], target))
    assert CroFuseNetLoss()(out, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert CroFuseNetLoss()(out["out"], target).item() == pytest.approx(
        ce(out["out"], target).item())


def test_dice_of_the_paper_formula():
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]]).T.reshape(1, 2, 1, 2)  # p1 = 0.8, 0.4
    target = torch.tensor([[[1, 0]]])
    expected = 1 - 2 * 0.8 / (0.8**2 + 0.4**2 + 1)
    assert dice_loss(probs, target).item() == pytest.approx(expected, rel=1e-5)
    perfect = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_gamma_zero_is_cross_entropy_and_gamma_two_known():
    logits = _logits([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[[0, 1]]])
    ce = WeightedCrossEntropy()(logits, target).item()
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(ce, rel=1e-6)
    p = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))]
    expected = sum(-(1 - q) ** 2 * math.log(q) for q in p) / 2
    assert focal_loss(logits, target, gamma=2).item() == pytest.approx(expected, rel=1e-5)


def test_dice_focal_mix():
    logits = _logits([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[[0, 1]]])
    probs = torch.softmax(logits, 1)
    expected = 0.7 * dice_loss(probs, target) + 0.3 * focal_loss(logits, target, 2.0)
    assert DiceFocalLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["crofusenet", "dice_focal", "ce"])
def test_nodata_pixels_change_nothing(name):
    torch.manual_seed(0)
    loss_fn = build_loss(name)
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 4, 4))
    target[:, 0] = 255
    loss = loss_fn(logits, target)
    loss.backward()
    assert logits.grad[:, :, 0].abs().sum() == 0  # no gradient through nodata pixels
    other = logits.detach().clone()
    other[:, :, 0] = 100.0
    assert loss_fn(other, target).item() == pytest.approx(loss.item(), rel=1e-6)
    empty = torch.full((2, 4, 4), 255)
    z = loss_fn(logits, empty)
    z.backward()
    assert z.item() == 0.0


def test_class_weights_and_builder_errors():
    with pytest.raises(ConfigError, match="class_weights"):
        build_loss("weighted_ce")
    with pytest.raises(ConfigError, match="unknown loss"):
        build_loss("lovasz")
