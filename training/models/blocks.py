"""Network parts shared by the models, written in plain torch (no torchvision/timm).

Each block is one idea from the papers: the conv-BN-ReLU unit, the SE channel attention of
CroFuseNet's Cross Fusion Module, the spatial/channel attentions and gates of RU-Net++, its
ASPP, the ResNet-50 bottleneck, and the boundary enhancement module. They are kept small and
independent so the model files read like the papers' figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelError


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` resized to ``size`` (bilinear, half-pixel centres), in ``x``'s dtype.

    Reduced-precision maps on the CPU are interpolated in fp32 and rounded once: PyTorch's
    CPU kernel is slower in bf16, the casts included (``benchmarks/bench_pruning.py`` prints
    both), and both round the same weighted sum.
    """
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
        return F.interpolate(x.float(), size=size, mode="bilinear",
                             align_corners=False).to(x.dtype)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution, batch norm, ReLU: the unit every paper builds from."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 dilation: int = 1) -> None:
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU units: one U-Net encoder or decoder block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(ConvBNReLU(in_ch, out_ch), ConvBNReLU(out_ch, out_ch))


class SEAttention(nn.Module):
    """Squeeze-and-excitation channel attention (CroFuseNet eqs. 7-10, r = 16).

    Global average pooling, FC to ``C/r``, ReLU, FC back to ``C``, sigmoid, channel-wise
    product. ``C/r`` is floored at 1 so the narrow first level (32 channels) still works.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """Channel-wise mean and max maps, concatenated, 7x7 conv, sigmoid, product (RU-Net++ 2.5.2)."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class ChannelGate(nn.Module):
    """RU-Net++ decoder level 4: channel attention then spatial attention, in sequence.

    The channel weights come from a shared MLP over both the average- and max-pooled channel
    descriptors, so that the low-resolution level keeps both the mean response and the peaks.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels))
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(w)[:, :, None, None]
        return self.spatial(x)


class DualAttention(nn.Module):
    """RU-Net++ decoder level 3: position and channel self-attention in parallel, summed.

    Position attention relates every pixel to every other (global semantics); channel
    attention relates feature maps to each other. Both are residual with learnt scales that
    start at 0, so the block begins as an identity and the attention is learnt in gradually.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma_pos = nn.Parameter(torch.zeros(1))
        self.gamma_ch = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # N, HW, C'
        k = self.key(x).flatten(2)  # N, C', HW
        v = self.value(x).flatten(2)  # N, C, HW
        pos = torch.softmax(torch.bmm(q, k), dim=-1)  # N, HW, HW
        pos_out = torch.bmm(v, pos.transpose(1, 2)).view(n, c, h, w)
        flat = x.flatten(2)
        energy = torch.bmm(flat, flat.transpose(1, 2))  # N, C, C
        # DANet subtracts from the row max so that dissimilar channels get the weight.
        energy = energy.amax(dim=-1, keepdim=True) - energy
        ch_out = torch.bmm(torch.softmax(energy, dim=-1), flat).view(n, c, h, w)
        return x + self.gamma_pos * pos_out + self.gamma_ch * ch_out


class SpatialGate(nn.Module):
    """RU-Net++ decoder level 2: a spatial weight map from a small conv stack.

    At high resolution the map is computed from local context (3x3 conv then 7x7 on the
    mean/max maps) so that it can follow edges instead of whole regions.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local = ConvBNReLU(channels, max(channels // 4, 8), kernel=3)
        self.score = nn.Conv2d(max(channels // 4, 8), 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.score(self.local(x)))


class AttentionGate(nn.Module):
    """Additive attention on a skip connection, guided by the decoder feature (Exp-D).

    The skip feature and the (already upsampled) decoder feature are projected to a common
    width, summed, and turned into a per-pixel weight for the skip feature.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inner_ch: int) -> None:
        super().__init__()
        self.skip_proj = nn.Conv2d(skip_ch, inner_ch, 1, bias=False)
        self.gate_proj = nn.Conv2d(gate_ch, inner_ch, 1, bias=True)
        self.psi = nn.Conv2d(inner_ch, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.skip_proj(skip) + self.gate_proj(gate))
        return skip * torch.sigmoid(self.psi(a))


class BoundaryEnhancement(nn.Module):
    """RU-Net++ decoder level 1 (BEM): refine boundaries from local contrast.

    The feature minus its 3x3 local mean is a high-pass (Laplacian-like) response that peaks
    on edges; a conv turns it into an edge-attention map which re-weights the feature, and a
    final conv-BN-ReLU mixes the result with the original feature.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edge = ConvBNReLU(channels, channels, kernel=3)
        self.att = nn.Conv2d(channels, 1, 1)
        self.fuse = ConvBNReLU(channels, channels, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        att = torch.sigmoid(self.att(self.edge(high)))
        return self.fuse(x + x * att)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three 3x3 with dilation 6/12/18, global pooling.

    A 3x3 branch with dilation ``r`` on a map of ``s <= r`` pixels reads nothing but its
    centre tap inside the map (the other taps fall in the zero padding): it is a 1x1
    convolution there. :meth:`collapsed_rates` says which branches that happens to.
    """

    def __init__(self, in_ch: int, out_ch: int, branch_ch: int = 256,
                 rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_ch, branch_ch, kernel=1)]
            + [ConvBNReLU(in_ch, branch_ch, kernel=3, dilation=r) for r in rates]
        )
        # No BN on the pooled branch: a 1x1 map per sample has no spatial statistics and
        # BatchNorm would fail on a batch of one.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, branch_ch, 1),
                                  nn.ReLU(inplace=True))
        self.project = ConvBNReLU(branch_ch * (len(rates) + 2), out_ch, kernel=1)

    def collapsed_rates(self, map_size: int) -> tuple[int, ...]:
        """The dilation rates whose 3x3 branch acts as a 1x1 convolution on this map size."""
        return tuple(r for r in self.rates if map_size <= r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([*feats, pooled], dim=1))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (stride here, as in ResNet v1.5), 1x1 expand x4.

    ``dilation`` dilates the 3x3 convolution (a stage that keeps its resolution instead of
    halving it keeps its receptive field this way, as in DeepLab's output stride 16).
    """

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = ConvBNReLU(in_ch, width, kernel=1)
        self.conv2 = ConvBNReLU(width, width, kernel=3, stride=stride, dilation=dilation)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        # Zero-initialised last BN: each residual block starts as an identity, which makes
        # the 16-block encoder train from scratch without a pretrained checkpoint.
        nn.init.zeros_(self.bn3.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.conv1(x))
        identity = self.shortcut(x)
        return F.relu(self.bn3(self.conv3(h)) + identity)


class BasicBlock(nn.Module):
    """ResNet basic residual block: two 3x3 conv-BN, identity shortcut (HRNet's branch unit).

    ``conv1`` is a :class:`ConvBNReLU` (its output only feeds ``conv2``, which is what filter
    pruning may shrink); ``conv2``/``bn2`` write into the residual stream and keep its width.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels, kernel=3)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)  # start as identity, as the bottleneck does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        return F.relu(x + self.bn2(self.conv2(h)))


class ResidualBlocks(nn.Sequential):
    """Residual blocks run in sequence (same state-dict keys as ``nn.Sequential``)."""


def resnet_stage(in_ch: int, width: int, blocks: int, stride: int,
                 dilate: bool = False) -> ResidualBlocks:
    """One ResNet stage: ``blocks`` bottlenecks, the first one changing stride and width.

    ``dilate=True`` replaces the stage's stride by dilation (the first block keeps dilation 1
    and stride 1, the others use dilation ``stride``): the same weights, no downsampling, the
    same receptive field (torchvision's ``replace_stride_with_dilation``).
    """
    dilation = stride if dilate else 1
    layers = [Bottleneck(in_ch, width, 1 if dilate else stride)]
    layers += [Bottleneck(width * Bottleneck.expansion, width, dilation=dilation)
               for _ in range(blocks - 1)]
    return ResidualBlocks(*layers)


#: the mirror images :func:`flip_mean` averages over: each as the dims ``torch.flip`` reverses
FLIPS: tuple[tuple[int, ...], ...] = ((3,), (2,), (2, 3))


def flip_mean(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of ``run`` over ``x`` and its three mirror images, each output mirrored back.

    For a network whose output is a per-pixel map of its input's pixels (a segmentation's
    logits), this is the map of the same ground seen four ways: a prediction that no longer
    depends on whether the scene is mirrored or turned half round. The four views go through
    ``run`` as one batch of four times the samples (each
    sample's output must depend on that sample alone, as in eval mode): one call of each
    layer, which is what the int8 quantizer's graph patterns expect (a layer called four
    times is one partition with four outputs, which it refuses).
    """
    n = x.shape[0]
    out = run(torch.cat([x, *(x.flip(dims) for dims in FLIPS)]))
    views = out.reshape(len(FLIPS) + 1, n, *out.shape[1:])
    return torch.stack([views[0], *(views[i + 1].flip(dims) for i, dims in enumerate(FLIPS))]
                       ).mean(dim=0)


def check_divisible(x: torch.Tensor, stride: int, name: str) -> None:
    """Refuse inputs whose height/width the encoder cannot halve down and back up exactly."""
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ModelError(f"{name} needs height and width divisible by {stride}, got {h}x{w}; "
                         f"pad or crop the input (inference tiles should be multiples of {stride})")


def init_weights(module: nn.Module) -> None:
    """He initialisation for convolutions, unit/zero BN (except zero-init residual BNs)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference with every conv -> BN pair folded into the conv.

    In eval mode a batch norm is an affine map per channel, so it can be merged into the
    weights and bias of the convolution feeding it: the same outputs (to float rounding) with
    one pass over each feature map instead of two. Pairs are found where they are certain:
    consecutive ``Conv2d``, ``BatchNorm2d`` children of an ``nn.Sequential`` (``ConvBNReLU``,
    shortcuts, fusion paths) and the residual ends of :class:`BasicBlock` and
    :class:`Bottleneck`. Everything else is left as it is. Not for training (the folded
    model has no batch statistics to update).
    """
    import copy
    import itertools

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in itertools.pairwise(names):
                conv, bn = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[first] = fuse_conv_bn_eval(conv, bn)
                    module._modules[second] = nn.Identity()
        elif isinstance(module, BasicBlock) and isinstance(module.bn2, nn.BatchNorm2d):
            module.conv2 = fuse_conv_bn_eval(module.conv2, module.bn2)
            module._modules["bn2"] = nn.Identity()
        elif isinstance(module, Bottleneck) and isinstance(module.bn3, nn.BatchNorm2d):
            module.conv3 = fuse_conv_bn_eval(module.conv3, module.bn3)
            module._modules["bn3"] = nn.Identity()
    return model
