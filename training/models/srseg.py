"""``srseg``: joint super-resolution + segmentation (JointSeg) and its two baselines.

JointSeg maps 10 m Sentinel-2 to 1 m impervious surface by *gradual* resolution enhancement
with *cross-scale feature fusion*, trained on cross-resolution data (10 m input, 1 m labels,
optionally 1 m imagery). The abstract leaves the architecture open; this one follows it:

```
 x (N,C,h,w) 10 m ──► U-Net encoder E1..E4 (h .. h/8) ──► U-Net decoder ──► D0 (h, 32 ch)
                          │ every level, 1x1-projected            │ ds_x1 (deep supervision)
                          ▼                                       ▼
                 cross-scale context ──► Stage x2: sub-pixel conv ↑2, fuse(context, x↑2), SE
                          │                    │ ds_x2
                          ├──────────────────► Stage x4  ... ds_x4
                          ├──────────────────► Stage x8            (x2 stages up to 2^n <= k)
                          └──────────────────► Stage xk: exact bilinear resize to k·h, fuse
                                                 (only when k is not a power of two: 5, 10)
                                                   │
                        reconstruction head ──► sr (N,Cf,kh,kw) = x↑k + residual
                                                   │ concatenated with the fine features
                        segmentation head   ──► out (N,K,kh,kw)
```

- The encoder sees only the 10 m input (the only thing available at inference), and is shared
  by both tasks: the reconstruction loss teaches it where fine texture hides in coarse pixels.
- Each x2 stage is an ESRGAN-style sub-pixel convolution followed by a fusion with every
  encoder level resized to the stage's resolution and with the bilinearly upsampled input
  (Prog-ESRGAN's fusion of the original image into the later stage), then squeeze-excitation
  channel attention. Factors that are not powers of two end with one exact resize stage, so
  the output is *exactly* ``k`` times the input on the same origin (``Grid.scaled(k)``).
- The segmentation head reads the fine features together with the reconstructed image:
  segmentation *of* the super-resolved representation, as in the paper.

Baselines: ``bilinear-unet`` (bilinear upsampling of the input to the fine scale, then the
segmentation U-Net: the paper's "bilinear-interpolation-based segmentation") and ``unet-upsample``
(the U-Net at 10 m, logits upsampled). Both reuse ``training.models.unet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from contract.bands import check_fine_scale
from core.errors import ModelError
from training.losses.srseg import SRSEG
from training.models.blocks import ConvBNReLU, SEAttention, init_weights, resize_bilinear
from training.models.registry import ModelEntry, ModelRecipe
from training.models.unet import UNet, UNetDecoder, UNetEncoder, check_bands

WIDTHS = (32, 64, 128, 256)  # 4 levels: stride 8, enough context for 10 m patches of 16+ px
STAGE_WIDTHS = (32, 24, 16, 16)  # channels of the x2, x4, x8 and final stages (cheap at 1 m)
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad H and W up to a multiple (so any tile size works); returns the pads."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, ph, pw


def replicate_padding(module: ModuleT) -> ModuleT:
    """Switch every padded convolution of ``module`` from zero to replicate padding.

    Patches and inference tiles are cut from larger scenes, so the unseen pixels beyond a tile
    edge resemble the edge, not zero; zero padding makes each x2 stage learn a different border
    response, and at 1 m these show as one-pixel lines along the tile frame. Applied to
    ``srseg`` and to both baselines so that the comparison is about the architecture.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple) and any(
                p > 0 for p in m.padding):
            m.padding_mode = "replicate"
    return module


class CrossScaleFusion(nn.Module):
    """Fuse every encoder level and the input image into a decoder stage.

    Each level is projected by a 1x1 conv at its own (coarse, cheap) resolution, the
    projections are summed at the 10 m resolution and resized once to the stage's size; the
    result, the stage features and the bilinearly upsampled input are concatenated, mixed by a
    3x3 conv-BN-ReLU and reweighted by SE channel attention.
    """

    def __init__(self, enc_widths: Sequence[int], in_channels: int, stage_ch: int,
                 ctx_ch: int = 16) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(w, ctx_ch, 1) for w in enc_widths)
        self.mix = ConvBNReLU(stage_ch + ctx_ch + in_channels, stage_ch)
        self.attn = SEAttention(stage_ch, reduction=4)

    def forward(self, x: torch.Tensor, feats: Sequence[torch.Tensor],
                image: torch.Tensor) -> torch.Tensor:
        base = feats[0].shape[-2:]
        parts = [resize_bilinear(p(f), base) for p, f in zip(self.proj, feats, strict=True)]
        ctx = parts[0]
        for part in parts[1:]:
            ctx = ctx + part
        size = x.shape[-2:]
        up = [resize_bilinear(ctx, size), resize_bilinear(image, size)]
        return self.attn(self.mix(torch.cat([x, *up], 1)))


class UpStage(nn.Module):
    """One resolution step: x2 sub-pixel conv (or an exact resize), fusion, refinement."""

    def __init__(self, in_ch: int, out_ch: int, enc_widths: Sequence[int], in_channels: int,
                 exact_resize: bool = False) -> None:
        super().__init__()
        self.exact_resize = exact_resize
        self.up: nn.Module
        if exact_resize:
            self.up = ConvBNReLU(in_ch, out_ch, kernel=1)
        else:
            self.up = nn.Sequential(nn.Conv2d(in_ch, 4 * out_ch, 3, padding=1),
                                    nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.fuse = CrossScaleFusion(enc_widths, in_channels, out_ch)
        self.refine = ConvBNReLU(out_ch, out_ch)

    def forward(self, x: torch.Tensor, feats: Sequence[torch.Tensor], image: torch.Tensor,
                size: Sequence[int]) -> torch.Tensor:
        x = resize_bilinear(self.up(x), size) if self.exact_resize else self.up(x)
        return self.refine(self.fuse(x, feats, image))


class SRSeg(nn.Module):
    """Joint super-resolution and segmentation network (see the module docstring).

    Args:
        in_channels: input bands (the manifest's band count).
        num_classes: output classes.
        scale: output scale factor k (2, 4, 5, 8 or 10); logits are ``(N, K, k*H, k*W)``.
        widths: encoder/decoder widths at 10 m (stride ``2**(len(widths)-1)``).
        stage_widths: channels of the successive upsampling stages.
        reconstruction: add the reconstruction head (a super-resolved image, ``"sr"``).
        fine_channels: bands of the fine image the reconstruction is trained against
            (defaults to ``in_channels``; the upsampled input is then its residual base).
        deep_supervision: in training mode also return ``ds_x1``, ``ds_x2``... logits of the
            intermediate scales for the deep-supervision loss.
        bands: the manifest's band names (checked against ``in_channels``; all are used).
    """

    def __init__(self, in_channels: int, num_classes: int = 2, scale: int = 10,
                 widths: Sequence[int] = WIDTHS, stage_widths: Sequence[int] = STAGE_WIDTHS,
                 reconstruction: bool = True, fine_channels: int | None = None,
                 deep_supervision: bool = True, bands: Sequence[str] | None = None) -> None:
        super().__init__()
        check_bands(bands, in_channels)  # the trainer passes the manifest's bands to every model
        self.output_scale = check_fine_scale(scale, required=True)
        self.stride = 2 ** (len(widths) - 1)
        self.deep_supervision = deep_supervision
        self.encoder = UNetEncoder(in_channels, widths)
        self.decoder = UNetDecoder(widths)
        doublings = int(math.log2(scale))
        self.stage_scales = [2 ** (i + 1) for i in range(doublings)]
        if 2 ** doublings != scale:
            self.stage_scales.append(scale)
        if len(stage_widths) < len(self.stage_scales):
            raise ModelError(f"scale {scale} needs {len(self.stage_scales)} stage widths, got "
                             f"{list(stage_widths)}")
        chans = [widths[0], *stage_widths[: len(self.stage_scales)]]
        self.stages = nn.ModuleList(
            UpStage(a, b, widths, in_channels, exact_resize=(s & (s - 1)) != 0)
            for a, b, s in zip(chans[:-1], chans[1:], self.stage_scales, strict=True)
        )
        # Deep supervision: 10 m decoder output and every stage but the last.
        self.ds_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in chans[:-1])
        fine_ch = chans[-1]
        self.fine_channels = fine_channels or in_channels
        self.residual = reconstruction and self.fine_channels == in_channels
        self.reconstruction = (
            nn.Sequential(ConvBNReLU(fine_ch, fine_ch), nn.Conv2d(fine_ch, self.fine_channels, 3,
                                                                  padding=1))
            if reconstruction else None
        )
        seg_in = fine_ch + (self.fine_channels if reconstruction else 0)
        self.seg_head = nn.Sequential(ConvBNReLU(seg_in, fine_ch),
                                      nn.Conv2d(fine_ch, num_classes, 1))
        init_weights(self)
        replicate_padding(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        k = self.output_scale
        x, _, _ = pad_to_multiple(x, self.stride)
        feats = self.encoder(x)
        y = self.decoder(feats)[-1]
        out: dict[str, torch.Tensor] = {}
        emit_ds = self.deep_supervision and self.training
        if emit_ds:
            out["ds_x1"] = self.ds_heads[0](y)[..., :h, :w]
        for i, (stage, s) in enumerate(zip(self.stages, self.stage_scales, strict=True)):
            y = stage(y, feats, x, (x.shape[-2] * s, x.shape[-1] * s))
            if emit_ds and i + 1 < len(self.stages):
                out[f"ds_x{s}"] = self.ds_heads[i + 1](y)[..., : h * s, : w * s]
        y = y[..., : h * k, : w * k]
        if self.reconstruction is not None:
            sr = self.reconstruction(y)
            if self.residual:
                up = resize_bilinear(x, (x.shape[-2] * k, x.shape[-1] * k))
                sr = sr + up[..., : h * k, : w * k]
            out["sr"] = sr
            y = torch.cat([y, sr], 1)
        out["out"] = self.seg_head(y)
        return out


class _UNetBaseline(nn.Module):
    """The segmentation U-Net plus an output scale: what both upsampling baselines are built on."""

    runs_at_fine_scale = False  # BilinearUNet runs its U-Net on the k-times upsampled input

    def __init__(self, in_channels: int, num_classes: int = 2, scale: int = 10,
                 widths: Sequence[int] = WIDTHS, bands: Sequence[str] | None = None) -> None:
        super().__init__()
        check_bands(bands, in_channels)
        self.output_scale = check_fine_scale(scale, required=True)
        self.unet = replicate_padding(UNet(in_channels, num_classes, widths=widths))
        self.stride = self.unet.stride  # what the U-Net checks inputs against
        self.depth = 2 ** (len(widths) - 1)  # the U-Net's real downsampling

    @property
    def min_input_size(self) -> int:
        """Smallest input edge on which the U-Net's deepest 3x3 convolutions see 2x2 pixels."""
        k = self.output_scale if self.runs_at_fine_scale else 1
        return max(math.ceil(2 * self.depth / k), 1)

    def context_problem(self, patch_size: int) -> str | None:
        if patch_size >= self.min_input_size:
            return None
        k = self.output_scale if self.runs_at_fine_scale else 1
        size = patch_size * k // self.depth
        return (f"its U-Net's deepest 3x3 convolutions see a {size}x{size} map and act as 1x1 "
                "convolutions")


class BilinearUNet(_UNetBaseline):
    """Baseline: bilinear upsampling of the 10 m input to the fine scale, then a U-Net there."""

    runs_at_fine_scale = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        k = self.output_scale
        fine = resize_bilinear(x, (h * k, w * k))
        fine, _, _ = pad_to_multiple(fine, self.stride)
        return self.unet(fine)[..., : h * k, : w * k]


class UNetUpsample(_UNetBaseline):
    """Baseline: the U-Net at 10 m, its logits bilinearly upsampled to the fine scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        k = self.output_scale
        padded, _, _ = pad_to_multiple(x, self.stride)
        logits = self.unet(padded)[..., :h, :w]
        return resize_bilinear(logits, (h * k, w * k))


# JointSeg gives no optimiser or patch size (seed 000, notes/jointseg.md): the recipe is the one
# the srseg comparison measured (docs/srseg.md): Adam 1e-3, poly 0.9, batch 4, the joint loss
# (CE + Dice at the fine scale, deep supervision, L1 reconstruction of the fine image). The
# baselines get the same loss (only its fine-scale terms apply) and the same optimisation.
RECIPE = ModelRecipe(loss=SRSEG, targets=("label_fine", "image_fine"), output_stride=8,
                     lr=1e-3, batch_size=4, source="seed 000 lines 9-14; notes/jointseg.md")
BASELINE_RECIPE = ModelRecipe(loss=SRSEG, targets=("label_fine",), output_stride=8,
                              lr=1e-3, batch_size=4, source=RECIPE.source)

#: This module's models, merged by :mod:`training.models`.
MODELS: dict[str, ModelEntry] = {
    "srseg": ModelEntry(lambda c, k, **kw: SRSeg(c, k, **kw), RECIPE, upsamples=True),
    "bilinear-unet": ModelEntry(lambda c, k, **kw: BilinearUNet(c, k, **kw), BASELINE_RECIPE,
                                upsamples=True),
    "unet-upsample": ModelEntry(lambda c, k, **kw: UNetUpsample(c, k, **kw), BASELINE_RECIPE,
                                upsamples=True),
}
