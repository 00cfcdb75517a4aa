"""RU-Net++ (section 2.5, Table 2): ResNet-50 encoder, ASPP, attention decoder, 2-class head.

Encoder: 7x7/2 stem (64 channels, any number of input bands), 3x3/2 max pool, the four
ResNet-50 bottleneck stages (3, 4, 6, 3 blocks; 256, 512, 1024, 2048 channels), spatial
attention after stage 1 and channel attention after stage 4, then ASPP (1x1, 3x3 at
dilation 6/12/18, global pooling) — Table 2's sizes: 512 -> 16 px, stride 32.

Decoder, levels 4 -> 1 (section 2.5.3): each level upsamples 2x, aligns the skip feature's
channels (1x1), weights it with an additive attention gate (Exp-D, "channel alignment and
spatial attention" on the skips), concatenates and convolves, then applies its level module:
ChannelGate (4), DualAttention (3), SpatialGate (2), Boundary Enhancement (1). Section 2.5.3's
text and Table 2 disagree on which of ChannelGate/SpatialGate sits at levels 4 and 2; the text
is followed (the channel gate where semantics are rich, the spatial gate where resolution is
high). A last 2x upsampling and a 1x1 conv give 2-class logits at the input size; the softmax
of the paper's output layer is applied by the loss and by inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.models.blocks import (
    ASPP,
    AttentionGate,
    BoundaryEnhancement,
    ChannelGate,
    ConvBNReLU,
    DualAttention,
    SEAttention,
    SpatialAttention,
    SpatialGate,
    check_divisible,
    init_weights,
    resnet_stage,
)
from training.models.registry import register_model
from training.models.unet import check_bands

STAGE_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50
STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)  # x4 expansion -> 256..2048
DECODER: tuple[int, ...] = (1024, 512, 256, 128)  # Table 2, levels 4..1


class DecoderLevel(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, module: nn.Module) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_ch, out_ch, kernel=1)
        self.align = ConvBNReLU(skip_ch, out_ch, kernel=1)
        self.gate = AttentionGate(out_ch, out_ch, max(out_ch // 2, 16))
        self.conv = ConvBNReLU(2 * out_ch, out_ch, kernel=3)
        self.module = module

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear",
                          align_corners=False)
        s = self.gate(self.align(skip), x)
        return self.module(self.conv(torch.cat([x, s], dim=1)))


class RUNetPP(nn.Module):
    """RU-Net++ for N input bands.

    Args:
        in_channels: number of input bands (the paper: 3 RGB; here the manifest's list).
        num_classes: 2 (pervious / impervious) in the paper.
        bands: optional band names, only checked against ``in_channels`` and recorded.
        aspp_channels: width of each ASPP branch (projected back to 2048).
        decoder_channels: widths of decoder levels 4..1 (Table 2: 1024, 512, 256, 128).
    """

    stride = 32

    def __init__(self, in_channels: int, num_classes: int = 2,
                 bands: Sequence[str] | None = None, aspp_channels: int = 256,
                 decoder_channels: Sequence[int] = DECODER) -> None:
        super().__init__()
        check_bands(bands, in_channels)
        self.stem = ConvBNReLU(in_channels, 64, kernel=7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [64] + [w * 4 for w in STAGE_WIDTHS]
        self.stages = nn.ModuleList(
            resnet_stage(chans[i], STAGE_WIDTHS[i], STAGE_BLOCKS[i], 1 if i == 0 else 2)
            for i in range(4))
        self.spatial_att = SpatialAttention()
        self.channel_att = SEAttention(chans[4], reduction=16)
        self.aspp = ASPP(chans[4], chans[4], branch_ch=aspp_channels)
        d4, d3, d2, d1 = decoder_channels
        self.level4 = DecoderLevel(chans[4], chans[3], d4, ChannelGate(d4))
        self.level3 = DecoderLevel(d4, chans[2], d3, DualAttention(d3))
        self.level2 = DecoderLevel(d3, chans[1], d2, SpatialGate(d2))
        self.level1 = DecoderLevel(d2, 64, d1, BoundaryEnhancement(d1))
        self.head = nn.Conv2d(d1, num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.stride, "RU-Net++")
        size = x.shape[-2:]
        s0 = self.stem(x)  # /2, 64
        s1 = self.spatial_att(self.stages[0](self.maxpool(s0)))  # /4, 256
        s2 = self.stages[1](s1)  # /8, 512
        s3 = self.stages[2](s2)  # /16, 1024
        s4 = self.aspp(self.channel_att(self.stages[3](s3)))  # /32, 2048
        y = self.level4(s4, s3)
        y = self.level3(y, s2)
        y = self.level2(y, s1)
        y = self.level1(y, s0)
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.head(y)


register_model("runetpp")(lambda c, k, **kw: RUNetPP(c, k, **kw))
