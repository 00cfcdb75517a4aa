"""Plain-torch models with known outputs, for testing the inference engine without training.

``MODELS`` is this module's model table, as a model defined outside ``training.models``
exports it: a model file names this module (``ModelMeta.module``) and loading it finds
``test-threshold`` here (``tests.support.mapping.model_file``).
"""

from __future__ import annotations

import torch

from tests.support.rasters import BANDS
from training.models.registry import ModelEntry


class ConstantModel(torch.nn.Module):
    """Logits independent of the input: any seam or gap in the blend shows directly."""

    def __init__(self, logits=(0.3, -0.4)) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, _, h, w = x.shape
        return self.logits.view(1, -1, 1, 1).expand(n, -1, h, w) + 0 * self.dummy


def conv1x1(channels: int = len(BANDS), classes: int = 2, seed: int = 0) -> torch.nn.Module:
    """Per-pixel model: tiling cannot change its output at all."""
    torch.manual_seed(seed)
    return torch.nn.Conv2d(channels, classes, 1)


def padded_convnet(channels: int = len(BANDS), classes: int = 2, seed: int = 0):
    """Zero-padded 3x3 convolutions: tile edges see padding, so unblended tiles leave seams."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, classes, 3, padding=1),
    )


def conv_bn_net(width: int = 8, seed: int = 0) -> torch.nn.Module:
    """Conv + batch norm + ReLU + conv on six bands, in eval mode: what the engine measures."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(6, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
        torch.nn.Conv2d(width, 2, 3, padding=1)).eval()


def six_band_batch(n: int = 4, size: int = 32) -> torch.Tensor:
    """A fixed random batch ``(n, 6, size, size)``."""
    return torch.randn(n, 6, size, size, generator=torch.Generator().manual_seed(1))


class SuperRes(torch.nn.Module):
    """A 1x1 conv followed by nearest upsampling by s, returning the contract's dict form."""

    def __init__(self, channels: int = len(BANDS), scale: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.head = torch.nn.Conv2d(channels, 2, 1)
        self.scale = scale

    def forward(self, x):
        out = torch.nn.functional.interpolate(self.head(x), scale_factor=self.scale)
        return {"out": out, "aux": out.detach()}


class BandThreshold(torch.nn.Module):
    """Impervious exactly where band ``band`` exceeds ``threshold`` (a model with known maps)."""

    def __init__(self, in_channels: int, num_classes: int = 2, band: int = 0,
                 threshold: float = 0.5, bands=None) -> None:
        super().__init__()
        self.band, self.threshold = band, threshold
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = 20.0 * (x[:, self.band:self.band + 1] - self.threshold) + 0 * self.dummy
        return torch.cat([torch.zeros_like(logit), logit], dim=1)


class BandConv(torch.nn.Module):
    """A 3x3 convolution marking band ``band`` above 0 impervious (int8 keeps its map)."""

    def __init__(self, in_channels: int, num_classes: int = 2, band: int = 0, bands=None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, band, 1, 1] = 20.0

    def forward(self, x):
        return self.conv(x)


class TiedConv(torch.nn.Module):
    """A 1x1 convolution whose two logits differ by a thousandth of band 1.

    fp32 maps band 1's sign; int8 weights (127 steps per channel) cannot hold the difference,
    so an int8 copy ties every pixel: a model int8 must refuse.
    """

    def __init__(self, in_channels: int, num_classes: int = 2, bands=None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = 1.0
            self.conv.weight[1, 1] = 1e-3

    def forward(self, x):
        return self.conv(x)


class LinearLogits(torch.nn.Module):
    """Per-pixel logits ``weight @ bands + bias`` (a model with known maps of any classes)."""

    def __init__(self, in_channels: int, num_classes: int = 2, weight=None, bias=None,
                 bands=None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, num_classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight or [[0.0] * in_channels] * num_classes,
                                                dtype=torch.float32).view(num_classes,
                                                                          in_channels, 1, 1))
            self.conv.bias.copy_(torch.tensor(bias or [0.0] * num_classes,
                                              dtype=torch.float32))

    def forward(self, x):
        return self.conv(x)


class TileContext(torch.nn.Module):
    """A pixel's logits depend on its whole tile (the tile's band means, as CroFuseNet pools).

    Two tilings of the same pixels give different maps; the same tiles give the same map.
    """

    def __init__(self, in_channels: int = len(BANDS), num_classes: int = 2,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.local = torch.nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.context = torch.nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.local(x) + 4 * self.context(x.mean(dim=(2, 3)))[:, :, None, None]


class SignBranch(torch.nn.Module):
    """A convolution of the input or of its negation, as the batch's mean is positive or not.

    A branch on a tensor's value, as the Presto encoder's: ``torch.compile`` breaks its graph
    there (and warns), ``torch.export`` cannot trace it (and prints the partial graph).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(in_channels, num_classes, 3, padding=1)

    def forward(self, x):
        if bool((x.mean() > 0).item()):
            return self.conv(x)
        return self.conv(-x)


MODELS: dict[str, ModelEntry] = {"test-threshold": ModelEntry(BandThreshold),
                                 "test-linear": ModelEntry(LinearLogits),
                                 "test-band-conv": ModelEntry(BandConv),
                                 "test-tied": ModelEntry(TiedConv),
                                 "test-tile-context": ModelEntry(TileContext)}

