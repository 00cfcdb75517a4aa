"""The fitted classifier as a model file: per pixel, rebuilt from the file alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ModelError
from training.data import NormStats
from training.modelfile import load_model_file, save_model_file
from training.models.encoders.registry import PRESTO
from training.models.points import PixelClassifier
from training.points.fit import FitOptions, fit_points
from training.points.model import (
    feature_model,
    finished,
    model_kwargs,
    point_features,
    points_meta,
)

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
CLASSES = ("pervious", "impervious")
NORM = NormStats(BANDS, (0.05, 0.07, 0.08, 0.25, 0.2, 0.15), (0.02, 0.02, 0.03, 0.08, 0.07, 0.06))


def fitted(tmp_path, features: str = "bands", encoder=None):
    rng = np.random.default_rng(0)
    raw = rng.normal(NORM.mean, NORM.std, size=(200, len(BANDS))).astype(np.float32)
    labels = (raw[:, 4] > raw[:, 3]).astype(np.int64)  # built: SWIR above NIR
    normalised = (raw - np.asarray(NORM.mean, np.float32)) / np.asarray(NORM.std, np.float32)
    kwargs = model_kwargs(features, BANDS, NORM, 0, (30.5, 114.3), 5)
    model = feature_model(kwargs, 2, encoder)
    feats = point_features(model, normalised)
    fit = fit_points(feats, labels, rng.uniform(0, 4000, 200), rng.uniform(0, 4000, 200),
                     np.zeros(200, np.int64), CLASSES, 1, FitOptions())
    model = finished(model, fit, 2)
    meta = points_meta(kwargs, NORM, "training", CLASSES, fit, pixel_size=10.0)
    return save_model_file(tmp_path / "model.pt", model, meta), normalised, labels


def test_model_file_maps_each_pixel_from_itself(tmp_path):
    path, normalised, labels = fitted(tmp_path)
    model, meta = load_model_file(path)
    assert meta.module == "training.models.points" and meta.bands == BANDS
    assert meta.metrics["cross_validation"]["auc"] > 0.9
    image = torch.from_numpy(normalised[:144].T.reshape(1, len(BANDS), 12, 12).copy())
    with torch.no_grad():
        whole = model(image)
        part = model(image[:, :, 3:7, 5:11])
    torch.testing.assert_close(whole[:, :, 3:7, 5:11], part)  # no pixel sees another
    predicted = whole.argmax(1).reshape(-1).numpy()
    assert (predicted == labels[:144]).mean() > 0.9


def test_presto_features_travel_in_the_model_file(tmp_path, shared_weights):
    encoder = shared_weights / "presto" / "default_model.pt"
    path, normalised, _ = fitted(tmp_path, "presto+bands", encoder)
    model, meta = load_model_file(path)
    assert meta.model_kwargs["encoder_sha256"] == PRESTO.sha256
    assert isinstance(model, PixelClassifier) and model.encoder is not None
    image = torch.from_numpy(normalised[:16].T.reshape(1, len(BANDS), 4, 4).copy())
    with torch.no_grad():
        assert model(image).shape == (1, 2, 4, 4)
    with pytest.raises(ModelError, match="not the published one"):
        PixelClassifier(len(BANDS), 2, bands=BANDS, features="presto", encoder_sha256="0" * 64,
                        input_mean=NORM.mean, input_std=NORM.std)
    with pytest.raises(ModelError, match=r"Presto features need the encoder's file"):
        feature_model(model_kwargs("presto", BANDS, NORM, 0, (0, 0), 0), 2, None)
