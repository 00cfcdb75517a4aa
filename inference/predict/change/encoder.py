"""The encoder change rule: the bands decide how much changed, the encoder which pixels.

``isamap-map --change-rule encoder``, for a model trained with ``isamap-train --encoder``.
The spectral rule (:mod:`inference.predict.change.spectral`) calls a pixel changed where its
bands' difference is an outlier; this rule scores the pixel by its *encoder features'*
difference instead, with the same arithmetic
(:func:`inference.predict.change.arrays.spectral_magnitude` of the two dates' features against
their :class:`~inference.predict.change.arrays.SpectralFit`), and takes as many pixels as the
bands would:

- on the decimated sample of both stacks the spectral rule fits on
  (:func:`inference.predict.sources.decimated_read`), the bands' magnitude at
  ``--spectral-threshold`` flags ``k`` of the pixels valid at both dates;
- the encoder's magnitude is cut where it flags the same ``k`` sample pixels
  (:func:`cut_flagging`; ties at the cut flag them all), so no threshold of the encoder's own
  is tuned: :func:`matched_cut`, the one definition, which ``experiments.presto_change``
  scores too;
- which way a changed pixel went is the model's probabilities', as the spectral rule decides it
  (:func:`inference.predict.change.arrays.spectral_change`).

The features are the model's own (:meth:`training.models.encoders.fused.EncoderUNet.features`)
of the bands normalised as the predictor normalised that date
(:func:`inference.predict.normalise.normalise_into`; the model file's statistics, or the
scene's its probability map records), NaN as the band mean, at fp32 on the CPU in eval mode
(a frozen encoder's features then rounded to half precision, as the model reads them), block
by block; a pixel with a band missing at either date is nodata. Presto's features are a
pixel's own, so a block's pixels score as they would in any other block, and a map cut into
tiles equals the whole. Galileo's depend on the window around a pixel (a decimated sample is
no window of ground), so a Galileo model is refused, as is a model without an encoder, and a
model that reads a series of months (``B4_m1``-style bands, :mod:`training.models.encoders.series`):
its features of a date mix the months before it, so two dates' series share months and their
difference is not one date's against the other's. A
joined model (``--members``) reads its first member's encoder where every member's gives the
same features (frozen encoders of the same weights); members with encoders of their own
(fine-tuned) are refused.

What a change map made so records: ``change_rule`` (:data:`RULE`), ``spectral_threshold`` and
``change_fit`` (:meth:`MatchedCut.to_dict`: the matched share, the encoder's threshold, both
fits).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from core.errors import InputDataError
from core.storage import files
from inference.predict.change import arrays as change
from inference.predict.change.arrays import SpectralFit
from inference.predict.change.spectral import NAME as SPECTRAL
from inference.predict.change.spectral import SpectralStacks, StackRule
from inference.predict.normalise import normalise_into
from inference.predict.sources import masked_read
from training.models.encoders.fused import EncoderUNet

NAME = "encoder"
"""What a record calls the rule (``change_rule`` of ``series.json``, ``isamap-map``'s summary)."""
RULE = ("gain where the encoder's features changed (RMS robust z of their difference above the "
        "cut flagging as many sample pixels as the bands flag at the spectral threshold) and "
        "p_to > p_from with p_from < 0.5; loss where they changed and p_to < p_from with "
        "p_from >= 0.5")
MIN_CUT = float(np.finfo(np.float64).tiny)
"""The lowest cut (:func:`~inference.predict.change.arrays.spectral_change` needs one above 0)."""
Stats = tuple[tuple[float, ...], tuple[float, ...]]  # a date's normalisation: mean, std


@dataclass(frozen=True)
class EncoderModel:
    """The network the rule reads (:func:`change_encoder`) and its model file's statistics."""

    network: EncoderUNet
    mean: tuple[float, ...]
    std: tuple[float, ...]


STACK_RULES = (SPECTRAL, NAME)
"""The change rules that read both dates' stacks."""


def stack_rule(change_rule: str, bands: SpectralStacks, model: EncoderModel | None,
               probs: tuple[str, str]) -> StackRule:
    """The stack rule ``change_rule`` names on checked ``bands``, for the maps ``probs``.

    ``bands`` themselves for the spectral rule; the encoder rule on them reads ``model``.
    """
    if change_rule != NAME:
        return bands
    if model is None:
        raise ValueError("the encoder change rule reads the model's encoder: give model")
    return encoder_stacks(bands, model, probs)


def fits_key(change_rule: str) -> str:
    """Where a record holds a stack rule's fit of each pair (``series.json``, the summary)."""
    return "encoder_fits" if change_rule == NAME else "spectral_fits"


def summary_fits(change_rule: str, fits: Mapping[str, Any]) -> dict[str, Any]:
    """The pairs' recorded fits as a summary prints them (``fits``: pair -> fit).

    The encoder rule's without its two fits (the 128 features' centre and spread, kept in
    ``series.json`` and the COGs' tags): each pair's matched share, thresholds and sample size.
    """
    if change_rule != NAME:
        return dict(fits)
    return {pair: {k: v for k, v in fit.items() if not isinstance(v, dict)} if fit else fit
            for pair, fit in fits.items()}


@dataclass(frozen=True)
class MatchedCut:
    """The encoder's fit and threshold, matched on a sample to the bands' flagged share.

    Attributes:
        fit: the :class:`~inference.predict.change.arrays.SpectralFit` of the features' difference.
        threshold: the cut on the features' magnitude.
        share: the share of the valid sample pixels the bands flag (and the features do).
        spectral_threshold: the bands' threshold the share is read at.
        band_fit: the bands' fit on the same sample.
        pixels: sample pixels valid in every band and feature at both dates.
    """

    fit: SpectralFit
    threshold: float
    share: float
    spectral_threshold: float
    band_fit: SpectralFit
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        """The numbers as JSON-ready values (recorded beside a change map)."""
        return {"matched_share": round(self.share, 8), "encoder_threshold": self.threshold,
                "spectral_threshold": self.spectral_threshold, "sample_pixels": self.pixels,
                "spectral_fit": self.band_fit.to_dict(), "encoder_fit": self.fit.to_dict()}


def cut_flagging(values: np.ndarray, count: int) -> float:
    """The threshold above which the ``count`` largest of ``values`` lie (ties: all of them).

    ``values`` finite; at least :data:`MIN_CUT`. ``count`` 0 flags none.
    """
    flat = np.sort(np.asarray(values, np.float64), axis=None)
    if count <= 0 or not flat.size:
        return max(float(flat[-1]) if flat.size else MIN_CUT, MIN_CUT)
    kth = float(flat[-min(count, flat.size)])
    return max(float(np.nextafter(kth, -np.inf)), MIN_CUT)


def matched_cut(bands: tuple[np.ndarray, np.ndarray], features: tuple[np.ndarray, np.ndarray],
                spectral_threshold: float = change.DEFAULT_SPECTRAL_THRESHOLD) -> MatchedCut:
    """The encoder's cut flagging as many sample pixels as the bands at ``spectral_threshold``.

    Args:
        bands: the sample's bands ``(later, earlier)``, each ``(C, ...)``, NaN where missing.
        features: the same pixels' encoder features ``(later, earlier)``, each ``(D, ...)``.
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).

    Raises:
        ValueError: no pixel is valid at both dates.
    """
    band_fit = change.fit_spectral_change(*bands)
    fit = change.fit_spectral_change(*features)
    by_bands = change.spectral_magnitude(*bands, band_fit).reshape(-1)
    by_features = change.spectral_magnitude(*features, fit).reshape(-1)
    valid = np.isfinite(by_bands) & np.isfinite(by_features)
    if not valid.any():
        raise ValueError("no pixel is valid in every band and feature at both dates")
    count = int((by_bands[valid] > spectral_threshold).sum())
    return MatchedCut(fit, cut_flagging(by_features[valid], count), count / int(valid.sum()),
                      float(spectral_threshold), band_fit, int(valid.sum()))


def change_encoder(module: nn.Module) -> EncoderUNet:
    """The network whose features the rule reads (module docstring).

    Raises:
        InputDataError: the model has no encoder, a window-dependent one (Galileo), one that
            reads a series of months, or joined members with encoders of their own.
    """
    members = list(getattr(module, "members", None) or [module])
    first = members[0]
    if not isinstance(first, EncoderUNet):
        raise InputDataError("--change-rule encoder reads the features of a model trained with "
                             "isamap-train --encoder, and this model has none: choose "
                             "--change-rule spectral")
    if first.encoder_name != "presto":
        raise InputDataError(f"--change-rule encoder reads each pixel's own features, and "
                             f"{first.encoder_name}'s depend on the window around it: choose "
                             "--change-rule spectral")
    if first.timesteps > 1:
        raise InputDataError(f"--change-rule encoder compares one month's features of each "
                             f"date, and this model reads a series of {first.timesteps} months "
                             "at each: choose --change-rule spectral")
    if not all(first.gives_features_of(m) for m in members[1:]):
        raise InputDataError("--change-rule encoder reads one encoder's features, and this "
                             "joined model's members have encoders of their own (fine-tuned): "
                             "choose --change-rule spectral")
    return first


def encoder_features(model: EncoderUNet, bands: np.ndarray, stats: Stats) -> np.ndarray:
    """``(D, H, W)`` features of raw bands ``(C, H, W)`` (the model's), NaN where a band is.

    Normalised as the predictor normalises (``stats``: the date's mean and std), NaN as the
    mean, fp32 on the CPU, without gradients.
    """
    mean = np.asarray(stats[0], np.float32)
    std = np.asarray(stats[1], np.float32)
    shift = torch.from_numpy(-mean / std).view(-1, 1, 1)
    scale = torch.from_numpy(np.float32(1.0) / std).view(-1, 1, 1)
    raw = torch.from_numpy(np.ascontiguousarray(bands, np.float32))
    x = normalise_into(raw, shift, scale, torch.empty_like(raw))
    torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
    with torch.inference_mode():
        feats = model.features(x[None])[0].float().numpy().copy()
    feats[:, ~np.isfinite(bands).all(axis=0)] = np.nan
    return feats


def seconds_per_pixel(model: EncoderUNet, bands: int, side: int = 64, repeats: int = 2) -> float:
    """Seconds :func:`encoder_features` takes per pixel of one date on this machine's CPU.

    Timed on a ``side`` x ``side`` block of ``bands`` bands, after a warm-up (dry-run estimates).
    """
    block = np.full((bands, side, side), 0.1, np.float32)
    stats = ((0.0,) * bands, (1.0,) * bands)
    encoder_features(model, block, stats)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        encoder_features(model, block, stats)
    return (time.perf_counter() - start) / repeats / (side * side)


def date_normalisation(prob_path: str, mean: Sequence[float], std: Sequence[float]) -> Stats:
    """How a date was normalised: the scene's statistics its map records, else ``mean``/``std``."""
    with files.open_raster(prob_path) as ds:
        recorded = ds.tags().get("normalisation")
    if recorded:
        scene = json.loads(recorded)
        return tuple(map(float, scene["mean"])), tuple(map(float, scene["std"]))
    return tuple(map(float, mean)), tuple(map(float, std))


@dataclass(frozen=True)
class EncoderStacks:
    """Both dates' stacks (checked as the spectral rule checks them), the model and the cut.

    Attributes:
        bands: the stacks, the bands read in each and the spectral threshold.
        model: the network whose features are read (:func:`change_encoder`).
        stats: each date's normalisation ``(earlier, later)`` (:func:`date_normalisation`).
        fit: the :class:`MatchedCut` (None until :meth:`fitted`).
    """

    bands: SpectralStacks
    model: EncoderUNet
    stats: tuple[Stats, Stats]
    fit: MatchedCut | None = None
    rule_text: ClassVar[str] = RULE
    fit_tag: ClassVar[str] = "change_fit"

    @property
    def earlier(self) -> str:
        return self.bands.earlier

    @property
    def later(self) -> str:
        return self.bands.later

    @property
    def threshold(self) -> float:
        """The spectral threshold the encoder's cut is matched at."""
        return self.bands.threshold

    def fitted(self) -> EncoderStacks:
        """These stacks with the :class:`MatchedCut` of a decimated sample of both.

        Raises:
            InputDataError: no pixel is valid in every band at both dates.
        """
        if self.fit is not None:
            return self
        s = self.bands
        earlier, later = s.samples()
        feats = (encoder_features(self.model, later, self.stats[1]),
                 encoder_features(self.model, earlier, self.stats[0]))
        try:
            cut = matched_cut((later, earlier), feats, s.threshold)
        except ValueError as exc:
            raise InputDataError(f"the encoder change rule cannot be fitted on {s.earlier} and "
                                 f"{s.later}: {exc}; give stacks with common valid "
                                 "pixels") from None
        return replace(self, bands=replace(s, fit=cut.band_fit), fit=cut)

    def tags(self, here: str) -> dict[str, str]:
        """What the change COG records (stacks named relative to ``here``)."""
        assert self.fit is not None, "fit the stacks first (fitted())"
        return {**self.bands.tags(here), "change_rule": RULE,
                "change_fit": json.dumps(self.fit.to_dict())}

    def record(self, here: str) -> dict[str, Any]:
        """What a command's summary records of the rule (no absolute path)."""
        assert self.fit is not None, "fit the stacks first (fitted())"
        return {**self.bands.record(here), "change_rule": NAME, "change_fit": self.fit.to_dict()}

    def codes(self, earlier: Any, later: Any, window: Window, p_from: np.ndarray,
              p_to: np.ndarray) -> np.ndarray:
        """Change codes of one block of the two open stacks (255 where a band is missing)."""
        assert self.fit is not None, "fit the stacks first (fitted())"
        s = self.bands
        magnitude = change.spectral_magnitude(
            encoder_features(self.model, masked_read(later, s.later_bands, window),
                             self.stats[1]),
            encoder_features(self.model, masked_read(earlier, s.earlier_bands, window),
                             self.stats[0]), self.fit.fit)
        return change.spectral_change(p_from, p_to, magnitude, self.fit.threshold)


def encoder_stacks(bands: SpectralStacks, model: EncoderModel,
                   probs: tuple[str, str]) -> EncoderStacks:
    """The encoder rule on checked ``bands``, each date normalised as its map ``probs`` was."""
    return EncoderStacks(bands, model.network,
                         (date_normalisation(probs[0], model.mean, model.std),
                          date_normalisation(probs[1], model.mean, model.std)))
