"""U-Net (the CroFuseNet paper's backbone) and the early-fusion / single-modality baselines.

The encoder has five blocks of two 3x3 conv-BN-ReLU with 2x2 max pooling between them
(128 -> 8 px, 32 -> 512 channels); the decoder has four transposed-conv up-blocks back to 32
channels. ``unet`` stacks every input band (the paper's "directly concatenated" comparison);
``unet-s2`` and ``unet-s1`` keep only the optical or SAR bands, chosen by band name, for the
modality ablation. ``unet-s2`` (the default optical recipe) normalises each scene by its own
band statistics; ``unet-s2-window``, the same network standardising each window's bands
itself, is retired: its files still map, ``isamap-train`` no longer starts it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from contract.bands import get_band
from core.errors import ModelError, UnknownBandError
from training.losses.segmentation import CE
from training.models.blocks import ConvBNReLU, DoubleConv, check_divisible, flip_mean, init_weights
from training.models.registry import ModelEntry, ModelRecipe

WIDTHS: tuple[int, ...] = (32, 64, 128, 256, 512)
S2_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)  # unet-s2 recipes: a quarter of the cost a pass


def band_indices(bands: Sequence[str], sensor: str) -> list[int]:
    """Positions of the bands of one sensor (``"S2"`` or ``"S1"``) in the input band list."""
    try:
        idx = [i for i, b in enumerate(bands) if get_band(b).sensor == sensor]
    except UnknownBandError as exc:
        raise ModelError(f"{exc}; the model's band list comes from the dataset manifest") from None
    if not idx:
        raise ModelError(f"no {sensor} band among {list(bands)}; this model needs at least one")
    return idx


def check_bands(bands: Sequence[str] | None, in_channels: int) -> list[str] | None:
    if bands is None:
        return None
    bands = [str(b) for b in bands]
    if len(bands) != in_channels:
        raise ModelError(f"in_channels={in_channels} but {len(bands)} band names were given "
                         f"({bands}); pass the manifest's band list")
    return bands


class UpBlock(nn.Module):
    """2x2 transposed conv up, concatenation with the skip feature, two conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(out_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


HEADS = ("paper", "conv_bn", "linear")


def make_head(in_ch: int, num_classes: int, head: str) -> nn.Module:
    """Classifier producing logits.

    ``"paper"`` is CroFuseNet's printed head (3x3 conv + BN + ReLU): its logits are never
    negative, so wherever both pre-activations are negative the classes tie at 0 (a probability
    of exactly 1/K). ``"conv_bn"`` is the same 3x3 conv + BN without the ReLU, ``"linear"`` a
    1x1 conv (Ronneberger's head).
    """
    if head == "paper":
        return ConvBNReLU(in_ch, num_classes, kernel=3)
    if head == "conv_bn":
        return nn.Sequential(nn.Conv2d(in_ch, num_classes, 3, padding=1, bias=False),
                             nn.BatchNorm2d(num_classes))
    if head == "linear":
        return nn.Conv2d(in_ch, num_classes, 1)
    raise ModelError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


class UNetEncoder(nn.Module):
    def __init__(self, in_ch: int, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        chans = [in_ch, *widths]
        self.blocks = nn.ModuleList(DoubleConv(a, b) for a, b in itertools.pairwise(chans))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """Returns every decoder level's feature (coarse to fine) so CroFuseNet's MFA can use them."""

    def __init__(self, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        rev = list(widths)[::-1]
        self.ups = nn.ModuleList(UpBlock(a, b, b) for a, b in itertools.pairwise(rev))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        x = feats[-1]
        outs = []
        for up, skip in zip(self.ups, feats[-2::-1], strict=True):
            x = up(x, skip)
            outs.append(x)
        return outs


INPUT_NORMS = ("none", "patch")


class PatchStandardise(nn.Module):
    """Each sample's channels to zero mean and unit deviation over its own pixels.

    The statistics are those of the window the network sees (a training patch, a prediction
    tile), with a floor on the deviation so a constant channel (a nodata fill) stays finite.
    """

    eps = 1e-3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
        return (x - mean) / (std + self.eps)


#: the prediction tile a window-standardising U-Net's maps are made with (recorded in its model
#: file, ``ModelMeta.window``): isamap-predict's default ``--tile``, the tile its accuracy in
#: docs/real-data.md was mapped with. The same network on 64 px tiles makes another map (on
#: the ghana_a tile, less than half the built F1).
PREDICTION_WINDOW = 512


def prediction_window(model_kwargs: Mapping[str, Any]) -> int | None:
    """The tile every map of a U-Net with these arguments must be made with (None: any)."""
    return PREDICTION_WINDOW if model_kwargs.get("input_norm") == "patch" else None


class UNet(nn.Module):
    """U-Net on all input channels, or on the bands of one sensor when ``sensor`` is given.

    Args:
        in_channels: number of input channels (the manifest's band count).
        num_classes: output classes (2: pervious / impervious).
        bands: the manifest's band names; required when ``sensor`` selects a modality.
        sensor: ``"S2"`` or ``"S1"`` to keep only those bands (the ablation baselines).
        head: ``"linear"`` (1x1 conv, the original U-Net) or ``"paper"``.
        widths: channels of the encoder's five blocks.
        input_norm: ``"none"`` or ``"patch"``: ``patch`` standardises each input channel of
            each sample by its own spatial mean and standard deviation before the first
            convolution (:class:`PatchStandardise`), the retired ``unet-s2-window``'s. The
            model then sees each band relative to the rest of its window, so a scene-wide
            gain or offset does not move its input; it is part of the network, so the model
            file records it and every prediction path applies it. Its maps depend on the
            prediction tile, which the model file records (:func:`prediction_window`).
        flips: outside training (validation, calibration, every map), return the mean of
            the logits of the input and of its three mirror images
            (:func:`training.models.blocks.flip_mean`): four passes per window. Part of
            the network, so the model file records it and every prediction path (CPU, GPU,
            int8, Beam) applies it; training sees each patch once, as the augmentation's
            flips already turn it. It ranks the built pixels of Java's held-out rows better
            in every seed; on the Ghana tiles the difference lies within the seeds' spread
            (docs/evidence/builtup.md "Test-time flips").
    """

    channels: torch.Tensor  # a buffer: the input channels kept

    stride = 16
    divisible_input = True  # forward refuses other sides (forward_memory.input_multiple)

    def __init__(self, in_channels: int, num_classes: int = 2, bands: Sequence[str] | None = None,
                 sensor: str | None = None, head: str = "linear",
                 widths: Sequence[int] = WIDTHS, input_norm: str = "none",
                 flips: bool = False) -> None:
        super().__init__()
        bands = check_bands(bands, in_channels)
        if not isinstance(flips, bool):
            raise ModelError(f"flips must be true or false, got {flips!r}")
        self.flips = flips
        if input_norm not in INPUT_NORMS:
            raise ModelError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, "
                             f"got {input_norm!r}")
        self.standardise: nn.Module = PatchStandardise() if input_norm == "patch" else \
            nn.Identity()
        # what the trainer records in the model file (ModelMeta.window), as it does
        # output_scale: the network says whether its maps depend on the tile
        self.prediction_window = prediction_window({"input_norm": input_norm})
        if sensor is not None:
            if bands is None:
                raise ModelError(f"a {sensor}-only U-Net needs bands=[...] to find its channels")
            idx = band_indices(bands, sensor)
        else:
            idx = list(range(in_channels))
        self.register_buffer("channels", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.select = len(idx) != in_channels
        self.encoder = UNetEncoder(len(idx), widths)
        self.decoder = UNetDecoder(widths)
        self.head = make_head(widths[0], num_classes, head)
        init_weights(self)

    def extra_repr(self) -> str:
        # what the same weights are run with belongs in the repr, which keys measured
        # choices (engine.autotune.cache_key, engine.quantize.record_key)
        return "flips=True" if self.flips else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.stride, "U-Net")
        if self.flips and not self.training:
            return flip_mean(self._logits, x)
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.select:
            x = x.index_select(1, self.channels)
        return self.head(self.decoder(self.encoder(self.standardise(x)))[-1])


# Seed 002 line 180: the comparison networks are trained with CroFuseNet's hyper-parameters
# (line 178: Adam 1e-4, poly 0.9, batch 32, 400 epochs, early stop after 50) on its 128 px
# patches (line 81); cross-entropy (eq. 12, line 166) on their single output.
RECIPE = ModelRecipe(loss=CE, patch_size=128, output_stride=16,
                     source="seed 002 lines 81, 166, 178, 180")

# The optical U-Net on each scene's own band statistics, the default optical recipe: every
# training patch is normalised by those of the scene it was cut from, every map by its input
# stack's (isamap-train --norm scene). A scene-wide gain or offset (haze, another season's
# illumination) does not reach the network, and the statistics span the whole scene in
# training as in prediction, so its maps do not depend on the prediction tile. Each part was
# chosen by experiments.builtup's leave-one-tile-out comparison (docs/evidence/builtup.md, a
# section each): the scene statistics map the tiles its training never saw better than
# unet-s2-window; it keeps the moving average of its weights with a half-life of 10
# iterations, whose maps vary less from seed to seed than the last weights'; it maps each
# window as the mean of its four mirror images (flips), which ranks the built pixels of
# Java's held-out rows better in every seed; it draws its training patches in proportion to
# their built pixels (balanced sampling), which raises the mean built F1 on every held-out
# tile, and each scene's patches by their number. isamap-train trains it nine times by
# default (seeds --seed to --seed + 8) and maps the mean of the nine calibrated probabilities
# (training.run.members), each member seeing the window one of the four ways the flips turn it
# (member_views: nine passes a window, not 36): nine trainings of 50 iterations part their
# seeds less, and their worst seed is further above NDBI's best, than three of 150 in about
# the same time.
S2_RECIPE = dataclasses.replace(RECIPE, model_kwargs={"input_norm": "none",
                                                     "widths": list(S2_WIDTHS),
                                                     "flips": True, "member_views": True},
                                norm="scene", ema=10, balanced_sampling=True,
                                members=9)

# The same network standardising each window's bands itself (input_norm: patch) on the
# training split's statistics: the optical recipe of model files written before unet-s2
# took scene statistics (they record unet-s2, their model_kwargs and norm: training, and are
# rebuilt from those, so they predict as they did). Retired as a name to train: it maps
# every held-out tile with a lower built F1 than unet-s2's scene statistics. Its entry
# stays so that the files trained with it rebuild and map.
S2_WINDOW_RECIPE = dataclasses.replace(RECIPE, model_kwargs={"input_norm": "patch",
                                                            "widths": list(S2_WIDTHS)},
                                       norm="training")

#: Why ``unet-s2-window`` is no longer trained, and how to train its recipe anyway.
WINDOW_RETIRED = (
    "it maps every held-out tile with a lower built F1 than unet-s2 (docs/evidence/builtup.md, "
    "\"Scene statistics\"); its model files still map. Train --model unet-s2, or this recipe "
    "as it was: --model unet-s2 --model-kwargs '{\"input_norm\": \"patch\", \"flips\": "
    "false, \"member_views\": false}' --norm training --ema 0 --no-balanced-sampling "
    "--members 1")

#: This module's models, merged by :mod:`training.models`.
MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(lambda c, k, **kw: UNet(c, k, **kw), RECIPE),
    "unet-s2": ModelEntry(lambda c, k, **kw: UNet(c, k, sensor="S2", **kw), S2_RECIPE),
    "unet-s2-window": ModelEntry(lambda c, k, **kw: UNet(c, k, sensor="S2", **kw),
                                 S2_WINDOW_RECIPE, retired=WINDOW_RETIRED),
    "unet-s1": ModelEntry(lambda c, k, **kw: UNet(c, k, sensor="S1", **kw), RECIPE),
}
