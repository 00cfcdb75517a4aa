"""The srseg joint loss: which terms apply, the scale check, its weights and its factory."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from training.losses import build_loss
from training.losses.srseg import SRLossConfig, SRSegLoss


def _output(scale: int = 2, size: int = 8, sr: bool = True) -> dict[str, torch.Tensor]:
    """An srseg training output: fine logits, deep supervision at x1 and x2, the fine image."""
    torch.manual_seed(0)
    fine = size * scale
    out = {"out": torch.randn(1, 2, fine, fine), "ds_x1": torch.randn(1, 2, size, size),
           "ds_x2": torch.randn(1, 2, fine, fine)}
    if sr:
        out["sr"] = torch.randn(1, 3, fine, fine)
    return out


def test_each_term_applies_only_with_its_weight_and_its_inputs():
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    fine_image = torch.randn(1, 3, 16, 16)
    loss_fn = SRSegLoss(SRLossConfig(ds_weight=0))
    loss_fn(_output(sr=False), target)
    assert set(loss_fn.last_terms) == {"seg"}
    full = SRSegLoss()
    full(_output(sr=False), target, fine_image)  # no reconstruction output: no L1 term
    assert set(full.last_terms) == {"seg", "deep_supervision"}
    full(_output(), {"label": target, "image_fine": fine_image})  # the whole batch
    assert set(full.last_terms) == {"seg", "deep_supervision", "reconstruction"}
    full(_output()["out"], target)  # a baseline's plain tensor: the fine-scale terms only
    assert set(full.last_terms) == {"seg"}


def test_an_output_off_the_label_scale_and_bad_weights_are_refused():
    with pytest.raises(ConfigError, match="scale"):
        SRSegLoss()(_output(), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ConfigError):
        SRLossConfig(ce_weight=0, dice_weight=0)
    with pytest.raises(ConfigError, match=">= 0"):
        SRLossConfig(rec_weight=-1.0)


def test_the_srseg_factory_passes_the_weights_and_the_nodata_label():
    loss = build_loss("srseg", ignore_index=7, ds_weight=0.0, rec_weight=2.0)
    assert isinstance(loss, SRSegLoss)
    assert loss.config == SRLossConfig(ds_weight=0.0, rec_weight=2.0, ignore_index=7)
    with pytest.raises(ConfigError, match="bad arguments for loss 'srseg'"):
        build_loss("srseg", gamma=2.0)
