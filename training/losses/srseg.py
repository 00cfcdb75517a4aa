"""Losses of the joint super-resolution + segmentation model (configurable, JointSeg-style).

``total = ce_weight * CE(out) + dice_weight * Dice(out)``             at the fine scale
``      + ds_weight * mean_s [CE + Dice](ds_x{s} resized to the fine scale)``   deep supervision
``      + rec_weight * L1(sr, fine image)``                          when a fine image exists

- CE and Dice at the fine scale: CE for per-pixel calibration, Dice because ISA is a minority
  class (0.3-30 % of the NAIP tiles) and Dice is insensitive to the background's size.
- Deep supervision: each intermediate scale (x1 = 10 m, x2, x4, ...) must already segment, so
  the gradual enhancement is supervised stage by stage instead of only through the last head.
  Intermediate logits are bilinearly resized to the fine label rather than the label being
  down-sampled, so no label has to be invented for mixed coarse pixels.
- L1 reconstruction: the super-resolution target of JointSeg (Jilin-1 1 m imagery there; the
  1 m NAIP bands here). L1 rather than L2 keeps edges sharp (the usual SR choice), and the term
  is simply absent when a batch carries no fine image.

Every term ignores nodata labels (LABEL_NODATA) through the segmentation losses. The factory
``SRSEG`` (``build_loss("srseg", ce_weight=..., ...)``) is the loss the srseg models' recipes
name; it is exported in :data:`LOSSES`, which :mod:`training.losses` merges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from engine.outputs import main_output
from training.losses.factory import LossFactory
from training.losses.segmentation import WeightedCrossEntropy, dice_loss


@dataclass(frozen=True)
class SRLossConfig:
    """Weights of each term; 0 switches a term off."""

    ce_weight: float = 1.0
    dice_weight: float = 1.0
    ds_weight: float = 0.4
    rec_weight: float = 1.0
    ignore_index: int = LABEL_NODATA

    def __post_init__(self) -> None:
        weights = (self.ce_weight, self.dice_weight, self.ds_weight, self.rec_weight)
        if any(w < 0 for w in weights):
            raise ConfigError(f"loss weights must be >= 0, got {weights}")
        if self.ce_weight == 0 and self.dice_weight == 0:
            raise ConfigError("at least one of ce_weight and dice_weight must be > 0")


class SRSegLoss(nn.Module):
    """The joint loss; also works for plain-tensor outputs (the baselines: fine-scale terms only).

    ``forward`` returns the total; ``last_terms`` keeps each term's value (floats) of the last
    call, for the learning-curve logs. ``wants_batch`` makes the ``Trainer`` pass the
    whole batch as ``target``, so the reconstruction term gets the batch's ``image_fine``.
    """

    wants_batch = True

    def __init__(self, config: SRLossConfig | None = None) -> None:
        super().__init__()
        self.config = config or SRLossConfig()
        self.ce = WeightedCrossEntropy(None, self.config.ignore_index)
        self.last_terms: dict[str, float] = {}

    def segmentation(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                                   align_corners=False)
        loss = logits.new_zeros(())
        if cfg.ce_weight:
            loss = loss + cfg.ce_weight * self.ce(logits, target)
        if cfg.dice_weight:
            probs = torch.softmax(logits.float(), dim=1)
            loss = loss + cfg.dice_weight * dice_loss(probs, target, cfg.ignore_index)
        return loss

    def forward(self, output: torch.Tensor | Mapping[str, torch.Tensor],
                target: torch.Tensor | Mapping[str, torch.Tensor],
                image_fine: torch.Tensor | None = None) -> torch.Tensor:
        """``target`` is the fine label, or a batch dict with ``label`` (and ``image_fine``)."""
        cfg = self.config
        if isinstance(target, Mapping):
            if image_fine is None:
                image_fine = target.get("image_fine")
            target = target["label"]
        main = main_output(output)
        if main.shape[-2:] != target.shape[-2:]:
            raise ConfigError(
                f"model output {tuple(main.shape[-2:])} is not at the label's scale "
                f"{tuple(target.shape[-2:])}; build the model with the dataset's scale"
            )
        terms = {"seg": self.segmentation(main, target)}
        if isinstance(output, Mapping):
            ds = [v for key, v in output.items() if key.startswith("ds_x")]
            if ds and cfg.ds_weight:
                terms["deep_supervision"] = cfg.ds_weight * torch.stack(
                    [self.segmentation(v, target) for v in ds]).mean()
            if "sr" in output and image_fine is not None and cfg.rec_weight:
                if output["sr"].shape != image_fine.shape:
                    raise ConfigError(f"reconstruction {tuple(output['sr'].shape)} and fine "
                                      f"image {tuple(image_fine.shape)} differ")
                terms["reconstruction"] = cfg.rec_weight * F.l1_loss(
                    output["sr"].float(), image_fine.float())
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return torch.stack(list(terms.values())).sum()


def _srseg_loss(ignore_index: int = LABEL_NODATA, **weights) -> SRSegLoss:
    return SRSegLoss(SRLossConfig(ignore_index=ignore_index, **weights))


SRSEG = LossFactory("srseg", _srseg_loss)

#: This module's losses by name, merged by :mod:`training.losses`.
LOSSES: dict[str, LossFactory] = {SRSEG.name: SRSEG}
