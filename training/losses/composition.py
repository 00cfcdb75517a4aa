"""Label super-resolution: a coarse class as the expected class fractions of its pixels.

A coarse product's class often states a composition rather than one fine class: NLCD's
developed classes 21-24 are cells of under 20, 20-49, 50-79 and 80-100 % impervious surface.
Taking such a class as one fine label everywhere in the cell (what plain cross-entropy does)
teaches the network either that a lawn is impervious or that a road is grass. Label
super-resolution (Malkin et al. 2019, "Label super-resolution networks") instead asks the
network's *mean* prediction over the pixels of a coarse cell to match the class's expected
composition, and leaves it free to decide which pixels carry which class.

``CompositionLoss`` reads one integer label map holding both kinds of label:

- values ``0 .. K-1``: ordinary (hard) classes, scored by class-weighted cross-entropy;
- values listed in ``compositions``: soft labels. Each gives expected fractions of some
  classes (by name or index, e.g. ``{"impervious": 0.35}``); the classes it does not name
  share the rest freely. The pixels of one soft value inside one ``block`` x ``block`` square
  of one image form a group; the loss is the Kullback-Leibler divergence from the expected
  fractions (the named classes and "the rest") to the group's mean predicted probabilities,
  weighted by the group's pixels;
- ``ignore_index`` and every other value: no loss.

``total = CE(hard pixels) + composition_weight * mean_g KL_g`` (each part a mean over its own
pixels, 0 when a batch has none, still connected to the graph). Exported as ``composition``
in :data:`LOSSES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from engine.outputs import Output, main_output
from training.losses.factory import LossFactory

_EPS = 1e-6


def _class_index(name: str | int, class_names: Sequence[str] | None) -> int:
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    if not class_names or name not in class_names:
        raise ConfigError(f"composition names class {name!r}, which the dataset does not have "
                          f"({', '.join(class_names or [])})")
    return list(class_names).index(name)


class CompositionLoss(nn.Module):
    """Class-weighted cross-entropy on hard labels plus expected fractions on soft labels.

    Args:
        compositions: ``{label value: {class (name or index): expected fraction}}``; the
            fractions of one value sum to at most 1 and its value is not a class index.
        class_weights: per-class weights of the cross-entropy (None: equal).
        block: side (px) of the squares that group a soft value's pixels: about the coarse
            product's cell, so that the fractions hold locally, not only over a whole crop.
        composition_weight: the weight of the soft term.
        ignore_index: the nodata label.
        class_names: resolves classes given by name.
    """

    def __init__(self, compositions: Mapping[int, Mapping[str | int, float]],
                 class_weights: Sequence[float] | None = None, block: int = 30,
                 composition_weight: float = 1.0, ignore_index: int = LABEL_NODATA,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not compositions or block < 1 or composition_weight < 0:
            raise ConfigError("the composition loss needs compositions, a block >= 1 and a "
                              "composition weight >= 0")
        self.block, self.weight_soft = int(block), float(composition_weight)
        self.ignore_index = ignore_index
        self.soft: list[tuple[int, list[int], list[float]]] = []
        for value, fractions in compositions.items():
            idx = [_class_index(c, class_names) for c in fractions]
            share = [float(f) for f in fractions.values()]
            if min(share) < 0 or sum(share) > 1 + 1e-9 or len(set(idx)) != len(idx):
                raise ConfigError(f"composition {int(value)}: fractions {share} must be >= 0, "
                                  "name each class once and sum to at most 1")
            self.soft.append((int(value), idx, share))
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weight", w)

    def forward(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        logits = main_output(output).float()
        k = logits.shape[1]
        soft_values = {v for v, _, _ in self.soft}
        if soft_values & set(range(k)) or self.ignore_index in soft_values:
            raise ConfigError("a composition's label value is also a class index or nodata")
        hard = (target >= 0) & (target < k)
        loss = logits.sum() * 0.0
        if bool(hard.any()):
            t = torch.where(hard, target, torch.full_like(target, -100)).long()
            w = None if self.class_weight is None else \
                cast(torch.Tensor, self.class_weight).to(logits.device)  # a buffer
            loss = loss + F.cross_entropy(logits, t, weight=w, ignore_index=-100)
        soft_loss = self._composition(torch.softmax(logits, dim=1), target)
        return loss + self.weight_soft * soft_loss if soft_loss is not None else loss

    def _composition(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        n, k, h, w = probs.shape
        b = self.block
        rows = torch.arange(h, device=probs.device) // b
        cols = torch.arange(w, device=probs.device) // b
        per_image = int(rows[-1] + 1) * int(cols[-1] + 1)
        cell = (rows[:, None] * int(cols[-1] + 1) + cols[None, :])[None] \
            + per_image * torch.arange(n, device=probs.device)[:, None, None]
        flat = probs.permute(0, 2, 3, 1).reshape(-1, k)
        total, pixels = probs.sum() * 0.0, 0
        for value, idx, share in self.soft:
            mask = (target == value).reshape(-1)
            if not bool(mask.any()):
                continue
            group = cell.reshape(-1)[mask]
            sums = torch.zeros(n * per_image, k, device=probs.device).index_add_(
                0, group, flat[mask])
            count = torch.bincount(group, minlength=n * per_image).to(probs.dtype)
            used = count > 0
            mean = sums[used] / count[used, None]
            named = mean[:, idx]
            q = torch.cat([named, (1 - named.sum(1, keepdim=True))], 1).clamp_min(_EPS)
            p = torch.tensor([*share, max(0.0, 1 - sum(share))], device=probs.device)
            kl = (p * (p.clamp_min(_EPS).log() - q.log())).sum(1)
            total = total + (kl * count[used]).sum()
            pixels += int(count[used].sum())
        return total / pixels if pixels else None


def _composition_loss(ignore_index: int = LABEL_NODATA, compositions=None, class_weights=None,
                      block: int = 30, composition_weight: float = 1.0,
                      class_names: Sequence[str] | None = None) -> nn.Module:
    if not compositions:
        raise ConfigError("loss 'composition' needs compositions={label value: {class: "
                          "fraction}}")
    return CompositionLoss({int(v): c for v, c in compositions.items()}, class_weights, block,
                           composition_weight, ignore_index, class_names)


COMPOSITION = LossFactory("composition", _composition_loss)

#: This module's losses by name, merged by :mod:`training.losses`.
LOSSES: dict[str, LossFactory] = {COMPOSITION.name: COMPOSITION}
