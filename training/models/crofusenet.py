"""CroFuseNet (section III-A): optical-specific, SAR-specific and shared U-Net branches.

The model takes ONE ``(N, C, H, W)`` tensor in the manifest's band order and splits it by band
name: Sentinel-2 bands feed the optical branch, Sentinel-1 bands the SAR branch; any other band
(quality counts) is not used. The shared branch's encoder is built from Cross Fusion Modules
(CFM) fed by both specific encoders at every level, its decoder takes a Multimodal Feature
Aggregation (MFA) module at every level fed by both specific decoders. ``forward`` returns
``{"out": shared, "optical": ..., "sar": ...}`` logits; ``"out"`` is the model's prediction,
the other two feed the composite loss (eq. 11).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from core.errors import ModelError
from training.losses.segmentation import CROFUSENET
from training.models.blocks import ConvBNReLU, SEAttention, check_divisible, init_weights
from training.models.registry import ModelEntry, ModelRecipe
from training.models.unet import (
    WIDTHS,
    UNetDecoder,
    UNetEncoder,
    UpBlock,
    band_indices,
    check_bands,
    make_head,
)


class CrossFusion(nn.Module):
    """Cross Fusion Module (Fig. 6a, eqs. 1-5).

    SE attention on each modality, a 3x3 conv-BN-ReLU on each, element-wise product and
    maximum of the two, concatenation, 3x3 conv-BN-ReLU; then concatenation with the shared
    encoder's previous (pooled) feature and a last 3x3 conv-BN-ReLU giving F_CrossFuse.
    The first level has no previous shared feature and skips that concatenation.
    """

    def __init__(self, channels: int, prev_channels: int | None, reduction: int = 16) -> None:
        super().__init__()
        self.att_opt = SEAttention(channels, reduction)
        self.att_sar = SEAttention(channels, reduction)
        self.conv_opt = ConvBNReLU(channels, channels)
        self.conv_sar = ConvBNReLU(channels, channels)
        self.fuse = ConvBNReLU(2 * channels, channels)
        in_out = channels + (prev_channels or 0)
        self.out = ConvBNReLU(in_out, channels)

    def forward(self, f_opt: torch.Tensor, f_sar: torch.Tensor,
                f_shared: torch.Tensor | None) -> torch.Tensor:
        a = self.conv_opt(self.att_opt(f_opt))
        b = self.conv_sar(self.att_sar(f_sar))
        fused = self.fuse(torch.cat([a * b, torch.maximum(a, b)], dim=1))
        if f_shared is not None:
            fused = torch.cat([fused, f_shared], dim=1)
        return self.out(fused)


class MultimodalAggregation(nn.Module):
    """MFA (Fig. 6c): concat of shared, optical and SAR decoder features, 1x1 conv, BN, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = ConvBNReLU(3 * channels, channels, kernel=1)

    def forward(self, shared: torch.Tensor, opt: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([shared, opt, sar], dim=1))


class CroFuseNet(nn.Module):
    """The three-branch optical/SAR fusion network.

    Args:
        in_channels: number of input channels (len of the manifest's band list).
        num_classes: output classes (2 in the paper).
        bands: the manifest's band names, in input order (required: the split is by name).
        optical_bands / sar_bands: override which names feed each branch (default: every
            Sentinel-2 band / every Sentinel-1 band of ``bands``).
        reduction: SE reduction ratio r (16 in the paper).
        head: ``"paper"`` (3x3 conv + BN + ReLU, as printed), ``"conv_bn"`` (the same without
            the ReLU) or ``"linear"`` (1x1 conv); see :func:`training.models.unet.make_head`.
            The recipe trains ``"conv_bn"``; a model file that records no head rebuilds
            ``"paper"``.
    """

    opt_idx: torch.Tensor  # buffers: the optical and SAR channels
    sar_idx: torch.Tensor

    stride = 16
    divisible_input = True  # forward refuses other sides (forward_memory.input_multiple)

    def __init__(self, in_channels: int, num_classes: int = 2,
                 bands: Sequence[str] | None = None,
                 optical_bands: Sequence[str] | None = None,
                 sar_bands: Sequence[str] | None = None,
                 reduction: int = 16, head: str = "paper",
                 widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        bands = check_bands(bands, in_channels)
        if bands is None:
            raise ModelError("crofusenet needs bands=[...] (the manifest's band names) to split "
                             "optical and SAR channels")
        opt_idx = _pick(bands, optical_bands, "S2")
        sar_idx = _pick(bands, sar_bands, "S1")
        if set(opt_idx) & set(sar_idx):
            raise ModelError("a band cannot feed both the optical and the SAR branch")
        self.register_buffer("opt_idx", torch.tensor(opt_idx), persistent=False)
        self.register_buffer("sar_idx", torch.tensor(sar_idx), persistent=False)
        widths = list(widths)
        self.enc_opt = UNetEncoder(len(opt_idx), widths)
        self.enc_sar = UNetEncoder(len(sar_idx), widths)
        self.dec_opt = UNetDecoder(widths)
        self.dec_sar = UNetDecoder(widths)
        self.cfm = nn.ModuleList(
            CrossFusion(w, widths[i - 1] if i else None, reduction) for i, w in enumerate(widths))
        self.pool = nn.MaxPool2d(2)
        rev = widths[::-1]
        self.shared_ups = nn.ModuleList(UpBlock(a, b, b) for a, b in itertools.pairwise(rev))
        self.mfa = nn.ModuleList(MultimodalAggregation(w) for w in rev[1:])
        self.head_shared = make_head(widths[0], num_classes, head)
        self.head_opt = make_head(widths[0], num_classes, head)
        self.head_sar = make_head(widths[0], num_classes, head)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_divisible(x, self.stride, "CroFuseNet")
        f_opt = self.enc_opt(x.index_select(1, self.opt_idx))
        f_sar = self.enc_sar(x.index_select(1, self.sar_idx))
        shared: list[torch.Tensor] = []
        for i, cfm in enumerate(self.cfm):
            prev = self.pool(shared[-1]) if shared else None
            shared.append(cfm(f_opt[i], f_sar[i], prev))
        d_opt = self.dec_opt(f_opt)
        d_sar = self.dec_sar(f_sar)
        y = shared[-1]
        for level, (up, mfa) in enumerate(zip(self.shared_ups, self.mfa, strict=True)):
            y = up(y, shared[-2 - level])
            y = mfa(y, d_opt[level], d_sar[level])
        return {"out": self.head_shared(y), "optical": self.head_opt(d_opt[-1]),
                "sar": self.head_sar(d_sar[-1])}


def _pick(bands: list[str], names: Sequence[str] | None, sensor: str) -> list[int]:
    if names is None:
        return band_indices(bands, sensor)
    missing = [n for n in names if n not in bands]
    if missing or not names:
        raise ModelError(f"{sensor} branch bands {list(names)} must be a non-empty subset of the "
                         f"input bands {bands}")
    return [bands.index(n) for n in names]


# Seed 002: 128 px patches (lines 81, 107), the composite loss of eq. 11 with alpha 1 and
# beta 0.8 (lines 159-166), Adam 1e-4, poly 0.9 per iteration, batch 32, 400 epochs, early
# stop after 50 epochs without a validation gain (line 178, MIoU: line 201). The head is the
# printed 3x3 conv + BN without its ReLU (line 107 ends in a ReLU, which makes every logit >= 0
# and ties both classes at 0 wherever the pre-activations are negative: a probability map with
# a spike at exactly 0.5); ``head="paper"`` is the printed one (docs/training.md).
RECIPE = ModelRecipe(loss=CROFUSENET, loss_kwargs={"alpha": 1.0, "beta": 0.8},
                     patch_size=128, output_stride=16, model_kwargs={"head": "conv_bn"},
                     source="seed 002 lines 81, 107, 159-166, 178, 201")

#: This module's models, merged by :mod:`training.models`.
MODELS: dict[str, ModelEntry] = {
    "crofusenet": ModelEntry(lambda c, k, **kw: CroFuseNet(c, k, **kw), RECIPE),
}
