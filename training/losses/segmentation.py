"""The segmentation losses of the papers, all honouring the nodata label (255 by default).

- CroFuseNet (eq. 11): ``L_shared + alpha * L_optical + beta * L_SAR`` with cross-entropy,
  alpha = 1.0, beta = 0.8 (``CROFUSENET``).
- RU-Net++ (eqs. 2-4): ``0.7 * Dice + 0.3 * Focal`` with gamma = 2, on the softmax output
  (``DICE_FOCAL``).
- Cross-entropy, plain (``CE``) or with per-class weights (``WEIGHTED_CE``; e.g. from class
  frequencies, or by class name).

Each factory is defined once here and exported in :data:`LOSSES`, which :mod:`training.losses`
merges; a model's recipe holds the factory itself (``ModelRecipe(loss=DICE_FOCAL)``).

Every loss takes the model output (a logits tensor or a dict with ``"out"``) and an integer
label map ``(N, H, W)``; pixels equal to ``ignore_index`` contribute nothing to the value or
the gradient. A batch with no valid pixel gives 0 (still connected to the graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from engine.outputs import Output, main_output
from training.losses.factory import LossFactory


def _ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
        ignore_index: int) -> torch.Tensor:
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    w = None if weight is None else weight.to(logits.device, torch.float32)
    return F.cross_entropy(logits.float(), target.long(), weight=w, ignore_index=ignore_index)


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with optional class weights; the mean runs over valid pixels only."""

    def __init__(self, class_weights: Sequence[float] | None = None,
                 ignore_index: int = LABEL_NODATA) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("weight", w)

    weight: torch.Tensor | None

    def forward(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        return _ce(main_output(output), target, self.weight, self.ignore_index)


class CroFuseNetLoss(nn.Module):
    """Composite loss of eq. 11: CE on the shared output plus weighted CE on the two branches.

    A plain tensor output (a baseline model) gets the shared term only, so the same loss
    name works for the U-Net comparison runs.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.8,
                 class_weights: Sequence[float] | None = None,
                 ignore_index: int = LABEL_NODATA) -> None:
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        self.ce = WeightedCrossEntropy(class_weights, ignore_index)

    def forward(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        loss = self.ce(main_output(output), target)
        if isinstance(output, Mapping):
            if "optical" in output:
                loss = loss + self.alpha * self.ce(output["optical"], target)
            if "sar" in output:
                loss = loss + self.beta * self.ce(output["sar"], target)
        return loss


def dice_loss(probs: torch.Tensor, target: torch.Tensor, ignore_index: int = LABEL_NODATA,
              eps: float = 1e-6) -> torch.Tensor:
    """``1 - 2 sum(p g) / (sum p^2 + sum g^2)`` (RU-Net++ eq. 2) over valid pixels.

    With two classes ``p`` is the probability of the positive class (1, impervious) as in
    the paper; with more classes the loss is the mean over classes of the one-vs-rest Dice.
    """
    k = probs.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)
    onehot = F.one_hot(torch.where(target == ignore_index, 0, target).long(), k)
    onehot = onehot.permute(0, 3, 1, 2).to(probs.dtype) * valid
    p = probs * valid
    if k == 2:
        p, onehot = p[:, 1:], onehot[:, 1:]
    inter = (p * onehot).sum(dim=(0, 2, 3))
    denom = (p * p).sum(dim=(0, 2, 3)) + (onehot * onehot).sum(dim=(0, 2, 3))
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: Sequence[float] | None = None,
               ignore_index: int = LABEL_NODATA) -> torch.Tensor:
    """``-alpha_t (1 - p_t)^gamma log p_t`` (RU-Net++ eq. 3), mean over valid pixels."""
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), dim=1)
    t = torch.where(valid, target, 0).long().unsqueeze(1)
    logpt = logp.gather(1, t).squeeze(1)
    loss = -((1 - logpt.exp()) ** gamma) * logpt
    if alpha is not None:
        a = torch.tensor(alpha, dtype=loss.dtype, device=loss.device)[t.squeeze(1)]
        loss = loss * a
    return loss[valid].mean()


class DiceFocalLoss(nn.Module):
    """RU-Net++ hybrid loss ``dice_weight * Dice + focal_weight * Focal`` (0.7 / 0.3, gamma 2)."""

    def __init__(self, dice_weight: float = 0.7, focal_weight: float = 0.3, gamma: float = 2.0,
                 alpha: Sequence[float] | None = None,
                 ignore_index: int = LABEL_NODATA) -> None:
        super().__init__()
        self.dice_weight, self.focal_weight = float(dice_weight), float(focal_weight)
        self.gamma, self.alpha, self.ignore_index = float(gamma), alpha, ignore_index

    def forward(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        logits = main_output(output).float()
        probs = torch.softmax(logits, dim=1)
        return (self.dice_weight * dice_loss(probs, target, self.ignore_index)
                + self.focal_weight * focal_loss(logits, target, self.gamma, self.alpha,
                                                 self.ignore_index))


def _plain_ce_loss(ignore_index: int = LABEL_NODATA, **kw) -> nn.Module:
    if kw:
        raise ConfigError(f"loss 'ce' takes no arguments, got {sorted(kw)}; use weighted_ce "
                          "for class weights")
    return WeightedCrossEntropy(None, ignore_index)


def _weighted_ce_loss(ignore_index: int = LABEL_NODATA, class_weights=None) -> nn.Module:
    if class_weights is None:
        raise ConfigError("weighted_ce needs class_weights=[...] (one per class) or "
                          "{class name: weight}")
    return WeightedCrossEntropy(class_weights, ignore_index)


CE = LossFactory("ce", _plain_ce_loss)
WEIGHTED_CE = LossFactory("weighted_ce", _weighted_ce_loss)
CROFUSENET = LossFactory("crofusenet", CroFuseNetLoss)
DICE_FOCAL = LossFactory("dice_focal", DiceFocalLoss)

#: This module's losses by name, merged by :mod:`training.losses`.
LOSSES: dict[str, LossFactory] = {f.name: f for f in (CE, WEIGHTED_CE, CROFUSENET, DICE_FOCAL)}
