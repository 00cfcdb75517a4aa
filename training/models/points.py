"""A per-pixel classifier fitted on labelled points: what ``isamap-fit`` saves as a model file.

It is an ordinary isamap model: it takes the stack's bands normalised as the model file
records (``(x - mean) / std``, NaN then 0) and returns logits per pixel, so ``isamap-predict``,
``isamap-map`` and the Beam map run it as they run any model. Every output pixel depends on
its own input pixel alone (1x1 convolutions), so a map of it does not depend on the tile
it is made with.

Its features (``features``) are one of:

* ``bands``: the normalised bands themselves;
* ``presto``: the frozen Presto encoder's 128 values per pixel of the bands it reads
  (:func:`training.models.encoders.series.presto_stack_features`), the normalisation undone
  first (``input_mean``, ``input_std``) since Presto reads reflectance and dB. A series stack
  (``B4_m1``-style bands of earlier months, :mod:`contract.bands`) gives Presto one timestep
  per month, oldest first, each with its calendar month, a month's sensor missing at a pixel
  masked there: as the fused model does, by the one owner of that rule
  (:mod:`training.models.encoders.series`). The model's ``bands`` and ``month`` (the stack's
  own) say it all, so a map needs only the model file; one month is read as it always was;
* ``presto+bands``: both, side by side (with a series stack, every month's bands: the
  earlier months' are features too, a missing one the mean, 0).

The features are standardised by the statistics of the training points (``feature_mean``,
``feature_std``, buffers saved with the weights) and go through the head: one 1x1
convolution (a linear classifier, ``hidden=0``) or two with a ReLU between (``hidden``
units). With Presto the model file holds the encoder's weights and records its SHA-256
(``encoder_sha256``), so a map needs only the model file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from core.errors import ModelError
from training.losses.segmentation import CE
from training.models.encoders.registry import PRESTO, input_columns
from training.models.encoders.series import (
    encoder_series,
    mark_missing,
    presto_stack_features,
)
from training.models.registry import ModelEntry, ModelRecipe

Features = Literal["bands", "presto", "presto+bands"]
FEATURES: tuple[Features, ...] = ("bands", "presto", "presto+bands")
NAME = "pixel-classifier"
MODULE = "training.models.points"


def uses_encoder(features: str) -> bool:
    """Whether ``features`` read the Presto encoder."""
    return features.startswith("presto")


def feature_count(features: str, in_channels: int) -> int:
    """How many values per pixel ``features`` give for ``in_channels`` input bands."""
    count = PRESTO.dim if uses_encoder(features) else 0
    return count + (in_channels if features.endswith("bands") else 0)


class PixelClassifier(nn.Module):
    """Features per pixel, standardised, through a 1x1 head.

    Args:
        in_channels / num_classes: input bands and output classes.
        bands: the input band names, in the stack's order (Presto finds its bands by name).
        features: ``bands``, ``presto`` or ``presto+bands`` (module docstring).
        hidden: units of the head's hidden layer; 0: a linear head.
        encoder_sha256: with Presto, the SHA-256 of the file its weights came from; it must
            be the registry's (a model of another file is refused).
        input_mean / input_std: with Presto, the input normalisation, undone for the encoder.
        latlon: latitude, longitude (degrees) given to Presto for every pixel: the centre of
            the fit's first input stack.
        month: month (0-11) of the stack's own month, given to Presto (a series' earlier
            months are the months before it).
    """

    def __init__(self, in_channels: int, num_classes: int = 2,
                 bands: Sequence[str] | None = None, features: str = "bands", hidden: int = 0,
                 encoder_sha256: str = "", input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None,
                 latlon: Sequence[float] = (0.0, 0.0), month: int = 0) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ModelError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        if bands is None or len(bands) != in_channels:
            raise ModelError("a pixel classifier needs its input band names (bands=[...])")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ModelError(f"hidden must be a whole number >= 0, got {hidden!r}")
        self.features_kind, self.bands = features, list(bands)
        self.latlon, self.month = tuple(float(v) for v in latlon), int(month)
        self.encoder: nn.Module | None = None
        self.columns: list[int] = []  # the encoder's bands of every month, oldest first
        self.read_bands: list[str] = []  # the bands of each month the encoder reads
        self.timesteps = 1
        if uses_encoder(features):
            if encoder_sha256 != PRESTO.sha256:
                raise ModelError(f"the model was fitted on a presto file of sha256 "
                                 f"{encoder_sha256 or 'unknown'}, not the published one "
                                 f"({PRESTO.sha256})")
            own, input_mean, input_std = input_columns(PRESTO, bands, input_mean, input_std)
            self.read_bands = [self.bands[i] for i in own]
            self.columns, self.timesteps = encoder_series(PRESTO.name, self.bands, own)
            self.register_buffer("input_mean", torch.tensor(
                [float(input_mean[i]) for i in self.columns]), persistent=False)
            self.register_buffer("input_std", torch.tensor(
                [float(input_std[i]) for i in self.columns]), persistent=False)
            self.encoder = PRESTO.encoder_of(PRESTO.build())
            self.encoder.requires_grad_(False)
        count = feature_count(features, in_channels)
        self.register_buffer("feature_mean", torch.zeros(count))
        self.register_buffer("feature_std", torch.ones(count))
        self.head = head(count, num_classes, hidden)

    def train(self, mode: bool = True) -> PixelClassifier:
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: never in training mode
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, F, H, W)`` features of normalised input ``x`` ``(N, C, H, W)``, unstandardised."""
        parts = []
        if self.encoder is not None:
            mean, std = self.get_buffer("input_mean"), self.get_buffer("input_std")
            given = x[:, self.columns]
            raw = mark_missing((given * std[:, None, None] + mean[:, None, None]).float(),
                               given, self.read_bands)
            with torch.no_grad():
                parts.append(presto_stack_features(self.encoder, raw, self.read_bands,
                                                   self.latlon, self.month).to(x.dtype))
        if self.features_kind.endswith("bands"):
            parts.append(x)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits of features ``(N, F, H, W)`` (:meth:`features`' output)."""
        mean = self.get_buffer("feature_mean").to(feats.dtype)
        std = self.get_buffer("feature_std").to(feats.dtype)
        return self.head((feats - mean[:, None, None]) / std[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def head(count: int, num_classes: int, hidden: int = 0) -> nn.Module:
    """The 1x1 head: linear (``hidden=0``) or one hidden layer of ``hidden`` units."""
    if hidden == 0:
        return nn.Conv2d(count, num_classes, 1)
    return nn.Sequential(nn.Conv2d(count, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, num_classes, 1))


def _build(in_channels: int, num_classes: int, **kw: Any) -> nn.Module:
    return PixelClassifier(in_channels, num_classes, **kw)


#: Fitted by ``isamap-fit`` (:mod:`training.points`), never by ``isamap-train``: the recipe
#: is the plain default, recorded for the registry's sake.
RECIPE = ModelRecipe(loss=CE, patch_size=128, output_stride=1, source="docs/points.md")
MODELS: Mapping[str, ModelEntry] = {NAME: ModelEntry(_build, RECIPE)}
