"""The fitted classifier as an ordinary isamap model: built, fed, finished and described.

:func:`feature_model` builds the :class:`~training.models.points.PixelClassifier` whose
features the head is fitted on (with Presto, the encoder's weights from its published file,
checked by :func:`training.models.encoders.registry.load_encoder`);
:func:`point_features` computes the points' features through that very module, so the map
reads what the fit read; :func:`finished` puts the fitted head and its standardisation in;
:func:`points_meta` writes the description every prediction path rebuilds it from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from core.errors import ModelError
from training.data import NormStats
from training.modelfile import ModelMeta
from training.models.encoders.registry import PRESTO, load_encoder
from training.models.points import MODULE, NAME, PixelClassifier, uses_encoder
from training.points.fit import PointFit

PIXELS_PER_CALL = 32768  # points per forward pass (Presto splits its own calls by timesteps)


def model_kwargs(features: str, bands: Sequence[str], norm: NormStats, hidden: int,
                 latlon: Sequence[float], month: int) -> dict[str, Any]:
    """The classifier's constructor arguments (JSON values; recorded in the model file)."""
    kwargs: dict[str, Any] = {"bands": list(bands), "features": features, "hidden": int(hidden)}
    if uses_encoder(features):
        kwargs |= {"encoder_sha256": PRESTO.sha256, "input_mean": list(norm.mean),
                   "input_std": list(norm.std), "latlon": [float(v) for v in latlon],
                   "month": int(month)}
    return kwargs


def feature_model(kwargs: Mapping[str, Any], num_classes: int,
                  encoder: str | os.PathLike | None = None) -> PixelClassifier:
    """The classifier of ``kwargs`` (head not fitted), Presto's weights from ``encoder``.

    Raises:
        ModelError: Presto features without a file, or a file that is not the published
            one (one line saying where to get it).
    """
    model = PixelClassifier(len(kwargs["bands"]), num_classes, **dict(kwargs))
    if model.encoder is not None:
        if encoder is None:
            raise ModelError(f"Presto features need the encoder's file: {PRESTO.where()}")
        model.encoder.load_state_dict(load_encoder(PRESTO, encoder).state_dict(), strict=True)
    return model.eval()


def point_features(model: PixelClassifier, normalised: np.ndarray) -> np.ndarray:
    """``(n, F)`` features of points whose normalised bands are ``(n, C)`` (NaN then 0)."""
    x = torch.from_numpy(np.nan_to_num(np.asarray(normalised, np.float32), nan=0.0))
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], PIXELS_PER_CALL):
            part = x[start:start + PIXELS_PER_CALL].T[None, :, None, :]  # (1, C, 1, m)
            out.append(model.features(part)[0, :, 0, :].T.numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def finished(model: PixelClassifier, fit: PointFit, num_classes: int) -> PixelClassifier:
    """``model`` with the fitted head and the features' standardisation in place."""
    model.head.load_state_dict(fit.head.module(num_classes).state_dict(), strict=True)
    model.get_buffer("feature_mean").copy_(torch.from_numpy(fit.head.mean).float())
    model.get_buffer("feature_std").copy_(torch.from_numpy(fit.head.std).float())
    return model.eval()


def points_meta(kwargs: Mapping[str, Any], norm: NormStats, by: str,
                classes: Sequence[str], fit: PointFit, *, pixel_size: float | None = None,
                band_ranges: Mapping | None = None, extra: Mapping | None = None) -> ModelMeta:
    """The model file's description of a fitted classifier.

    Args:
        kwargs: :func:`model_kwargs`.
        norm: the input normalisation (``by="scene"``: the statistics recorded for reference;
            every map normalises by its own input's).
        by: ``training`` or ``scene`` (``ModelMeta.norm``).
        classes: the class names.
        fit: the fit (its cross-validated scores become ``metrics``, its record goes to
            ``extra["fit"]``).
        pixel_size: as :class:`~training.modelfile.ModelMeta`.
        band_ranges: as :class:`~training.modelfile.ModelMeta`.
        extra: more of ``extra`` (the points' record, the stack's dataset).
    """
    cv = fit.cv.record()
    metrics = {"cross_validation": {"f1": cv["f1"], "auc": cv["auc"], "folds": cv["folds"],
                                    "points": sum(fit.counts.per_class.values())}}
    bands = tuple(kwargs["bands"])
    return ModelMeta(name=NAME, module=MODULE, in_channels=len(bands),
                     num_classes=len(classes), bands=bands,
                     norm_mean=tuple(float(v) for v in norm.mean),
                     norm_std=tuple(float(v) for v in norm.std), class_scheme="isa",
                     class_names=tuple(classes), model_kwargs=dict(kwargs), metrics=metrics,
                     extra={**dict(extra or {}), "fit": fit.record()}, pixel_size=pixel_size,
                     band_ranges=dict(band_ranges or {}), norm=by,
                     learnt_classes=tuple(c for c, n in fit.counts.per_class.items() if n))
