"""A pretrained encoder fused with the U-Net: what ``isamap-train --encoder NAME=PATH`` trains.

The network takes the stack's bands normalised as every isamap model's are (by the training
statistics, or by each scene's with ``--norm scene``); it undoes the training statistics'
normalisation for the bands the encoder reads (``input_mean``, ``input_std``, recorded in the
model file), feeds the encoder as its authors did, and fuses its features (``dim`` per pixel)
with the U-Net in one of two ways (``fusion``):

* ``concat``: the features beside the image channels, at full resolution, into the U-Net's
  first layer (Presto gives one feature vector per pixel; Galileo's patch tokens are
  up-sampled bilinearly);
* ``head``: the encoder as the backbone, its features alone through a light decoder (two 3x3
  convolutions and a linear layer).

The encoder reads reflectance: the network's input times ``input_std`` plus ``input_mean``
(the training statistics, recorded in the model file), rounded to 1e-4 (the L2A digital
number's step, so the same pixels give the same bytes whatever statistics a run has). With
the training statistics as the input's normalisation (``--norm training``) that is the
stack's own reflectance; with each scene's (``--norm scene``) it is the scene's reflectance
with each band's mean and deviation set to the training data's: a first-moment radiometric
match, which takes a hazy scene's offset and gain out before the encoder sees it.

A series stack (``B4_m1``-style bands of earlier months, :mod:`contract.bands`) gives Presto
one timestep per month, oldest first, each with its calendar month, a month missing at a
pixel masked there (:mod:`training.models.encoders.series`); Galileo nano reads one month and
a series for it is refused. The U-Net (or head) beside the encoder reads every band of the
input, the earlier months' too: they are the stack the model is given, a change of season
is evidence of ground, and they cost only first-layer channels; a month missing there is
the mean (0), as every model's nodata is.

docs/encoders.md gives the held-out comparison that chose the default. With ``frozen`` the
encoder's weights do not train and stay in eval mode; its features (rounded to half
precision, whether cached or not, so a cache never changes a map) are cached per patch
(:class:`~training.models.encoders.cache.FeatureCache`: in memory where the trainer sets
``cache_bytes``, and on disk under ``$ISAMAP_ENCODER_CACHE`` when that is set); within one
forward of a joined model, a member given the very input tensor the member before it was
given, with an encoder of the same weights, takes its features
(:mod:`training.models.sharing`, :meth:`EncoderUNet.gives_features_of`). The model file
holds the encoder's weights with the rest, and records its name and SHA-256 (``encoder``,
``encoder_sha256``), so a map needs only the model file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from core.errors import ModelError
from training.losses.segmentation import CE
from training.models.blocks import ConvBNReLU, init_weights
from training.models.encoders.cache import FeatureCache, folder_from_env
from training.models.encoders.galileo import galileo_features
from training.models.encoders.registry import encoder_entry, input_columns
from training.models.encoders.series import (
    encoder_series,
    mark_missing,
    presto_stack_features,
    series_months,
)
from training.models.registry import ModelEntry, ModelRecipe
from training.models.sharing import scope
from training.models.unet import S2_WIDTHS, UNet

Fusion = Literal["concat", "head"]
FUSIONS: tuple[Fusion, ...] = ("concat", "head")
NAME = "encoder-unet"
MODULE = "training.models.encoders.fused"
REFLECTANCE_STEP = 1e-4  # the encoder's input is rounded to this (one L2A digital number)


class EncoderUNet(nn.Module):
    """A pretrained encoder's features fused with a U-Net (or a light decoder).

    Args:
        in_channels / num_classes: input bands and output classes.
        bands: the input band names (the manifest's order).
        encoder: a name of :data:`~training.models.encoders.registry.ENCODERS`.
        encoder_sha256: the SHA-256 of the file the encoder was loaded from; it must be the
            registry's (a model file of another file is refused).
        input_mean / input_std: the training normalisation, undone for the encoder.
        latlon: latitude, longitude (degrees) given to a location-aware encoder (Presto):
            the centre of the training grid.
        month: month (0-11) of the stack's own month (a series' earlier months are before it).
        fusion: ``concat`` or ``head`` (module docstring).
        frozen: the encoder's weights do not train.
        widths / flips / head_width: the U-Net's widths and test-time flips; the light
            decoder's width.
        patch_size: Galileo's token size in pixels.
    """

    def __init__(self, in_channels: int, num_classes: int = 2,
                 bands: Sequence[str] | None = None, encoder: str = "presto",
                 encoder_sha256: str = "", input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None,
                 latlon: Sequence[float] = (0.0, 0.0), month: int = 0,
                 fusion: str = "concat", frozen: bool = True,
                 widths: Sequence[int] = S2_WIDTHS, flips: bool = False, head_width: int = 64,
                 patch_size: int = 4) -> None:
        super().__init__()
        entry = encoder_entry(encoder)
        if encoder_sha256 != entry.sha256:
            raise ModelError(f"the model was built on an {encoder} file of sha256 "
                             f"{encoder_sha256 or 'unknown'}, not the published one "
                             f"({entry.sha256})")
        if fusion not in FUSIONS:
            raise ModelError(f"fusion must be {' or '.join(FUSIONS)}, got {fusion!r}")
        if bands is None or len(bands) != in_channels:
            raise ModelError("an encoder model needs the input band names (bands=[...])")
        own, input_mean, input_std = input_columns(entry, bands, input_mean, input_std)
        self.read_bands = [bands[i] for i in own]  # the bands of each month the encoder reads
        self.columns, self.timesteps = encoder_series(encoder, bands, own)  # oldest first
        self.encoder_bands = [bands[i] for i in self.columns]
        self.encoder_name, self.fusion, self.frozen, self.flips = encoder, fusion, frozen, flips
        self.latlon, self.month, self.patch_size = tuple(map(float, latlon)), int(month), patch_size
        self.register_buffer("mean", torch.tensor([input_mean[i] for i in self.columns]),
                             persistent=False)
        self.register_buffer("std", torch.tensor([input_std[i] for i in self.columns]),
                             persistent=False)
        self.encoder: nn.Module = entry.encoder_of(entry.build())
        self.salt = (f"{encoder} {entry.sha256} {self.encoder_bands} {list(self.latlon)} "
                     f"{self.month} {patch_size}")
        self.cache = FeatureCache(0, folder_from_env() if frozen else None, self.salt)
        dim = entry.dim
        self.net: nn.Module
        if fusion == "concat":
            self.net = UNet(in_channels + dim, num_classes, widths=widths, flips=flips)
        else:
            self.net = nn.Sequential(ConvBNReLU(dim, head_width, 3), ConvBNReLU(head_width,
                                     head_width, 3), nn.Conv2d(head_width, num_classes, 1))
            init_weights(self.net)
        if frozen:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> EncoderUNet:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def set_cache_bytes(self, limit: int) -> None:
        """Keep up to ``limit`` bytes of frozen features (the trainer's; 0: none)."""
        if self.frozen:
            self.cache = FeatureCache(limit, self.cache.folder, self.salt)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, dim, H, W)`` encoder features of normalised input ``x`` ``(N, C, H, W)``."""
        if not self.frozen:
            return self._encode(self._raw(x))
        shared = scope()  # the members of a joined forward given this very x share one
        found = shared.get(x, self) if shared is not None else None
        if found is not None:
            return found
        with torch.no_grad():
            feats = self.cache.features(self._raw(x),
                                        lambda r: self._encode(r).to(torch.float16))
        if shared is not None:
            shared.put(x, self.gives_features_of, feats)
        return feats

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        """The reflectance the encoder reads: ``x`` un-normalised, rounded to the DN step."""
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        given = x[:, self.columns].float()
        raw = torch.round((given * std[:, None, None] + mean[:, None, None]) / REFLECTANCE_STEP)
        return mark_missing(raw * REFLECTANCE_STEP, given, self.read_bands)

    def gives_features_of(self, other: Any) -> bool:
        """Whether frozen ``other`` computes the features this one computes from one input.

        The same encoder weights, bands, statistics, location, month and token size.
        """
        if not isinstance(other, EncoderUNet) or not (self.frozen and other.frozen) \
                or other.salt != self.salt or other.columns != self.columns:
            return False
        mine = [self.get_buffer("mean"), self.get_buffer("std"),
                *self.encoder.state_dict().values()]
        theirs = [other.get_buffer("mean"), other.get_buffer("std"),
                  *other.encoder.state_dict().values()]
        if len(mine) != len(theirs) or not all(
                isinstance(t, torch.Tensor) for t in (*mine, *theirs)):
            return False  # a packed (quantised) layer's state is no plain tensor
        try:
            return all(a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
                       for a, b in zip(mine, theirs, strict=True))
        except RuntimeError:  # on two devices: not shared
            return False

    @property
    def months(self) -> list[int]:
        """Presto's month (0-11) of each timestep, oldest first (one per month of the bands)."""
        return series_months(self.month, self.timesteps)

    def _encode(self, raw: torch.Tensor) -> torch.Tensor:
        if self.encoder_name == "presto":
            return presto_stack_features(self.encoder, raw, self.read_bands, self.latlon,
                                         self.month)
        return galileo_features(self.encoder, raw, self.encoder_bands, self.month,
                                self.patch_size, self.latlon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        if self.fusion == "head":
            return self.net(feats.to(x.dtype))
        return self.net(torch.cat([x, feats.to(x.dtype)], dim=1))


def _build(in_channels: int, num_classes: int, **kw: Any) -> nn.Module:
    return EncoderUNet(in_channels, num_classes, **kw)


#: The fused model is built from the kwargs a model file records; it is trained through
#: ``isamap-train --model unet-s2 --encoder NAME=PATH``, whose recipe (the base model's) it
#: keeps.
RECIPE = ModelRecipe(loss=CE, patch_size=128, output_stride=16,
                     source="docs/encoders.md")
MODELS: Mapping[str, ModelEntry] = {NAME: ModelEntry(_build, RECIPE)}
