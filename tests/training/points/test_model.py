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


def _presto_model(bands, shared_weights, month: int = 5) -> PixelClassifier:
    stats = NormStats(tuple(bands), NORM.mean * (len(bands) // len(BANDS)),
                      NORM.std * (len(bands) // len(BANDS)))
    return feature_model(model_kwargs("presto", bands, stats, 0, (45.9, 14.6), month), 2,
                         shared_weights / "presto" / "default_model.pt")


def _image(bands, seed: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(
        size=(1, len(bands), 3, 4)).astype(np.float32))


def test_one_month_presto_features_are_the_one_month_paths_bit_for_bit(shared_weights):
    """The oracle: a one-month stack's features are what the model gave before series
    stacks (Presto's features of the un-normalised bands as one month,
    :func:`training.models.encoders.series.presto_series_features`), to the last bit."""
    from training.models.encoders.series import presto_series_features

    model = _presto_model(BANDS, shared_weights)
    x = _image(BANDS)
    mean, std = torch.tensor(NORM.mean), torch.tensor(NORM.std)
    raw = x * std[:, None, None] + mean[:, None, None]
    with torch.no_grad():
        ours = model.features(x)
        before = presto_series_features(model.encoder, raw.float()[:, None], list(BANDS),
                                        model.latlon, [5])
    assert torch.equal(ours, before)


def test_a_series_stack_gives_presto_its_months_from_the_model_file(tmp_path, shared_weights):
    """A series stack's earlier months (``B4_m1``) are Presto's earlier timesteps, oldest
    first, each with its month, a month missing at a pixel masked there: what the fused
    model gives (:mod:`training.models.encoders.series`), rebuilt from the model file."""
    from contract.bands import series_bands
    from training.models.encoders.series import presto_series_features

    bands = series_bands(BANDS, 3)  # May, then April (_m1), then March (_m2)
    stats = NormStats(bands, NORM.mean * 3, NORM.std * 3)
    fit = fit_points(np.random.default_rng(0).normal(size=(40, 128)), np.arange(40) % 2,
                     np.arange(40) * 500.0, np.zeros(40), np.zeros(40, np.int64), CLASSES, 1,
                     FitOptions(block_m=1000))
    kwargs = model_kwargs("presto", bands, stats, 0, (45.9, 14.6), 5)
    meta = points_meta(kwargs, stats, "training", CLASSES, fit, pixel_size=10.0)
    fitted_model = finished(_presto_model(bands, shared_weights), fit, 2)
    model, _ = load_model_file(save_model_file(tmp_path / "model.pt", fitted_model, meta))
    assert isinstance(model, PixelClassifier) and model.timesteps == 3
    x = _image(bands)
    x[0, 2 * len(BANDS):, 1, 2] = 0.0  # March missing at one pixel: the mean, 0, in every band
    mean, std = torch.tensor(stats.mean), torch.tensor(stats.std)
    raw = (x * std[:, None, None] + mean[:, None, None])[0].reshape(3, len(BANDS), 3, 4)
    raw[2, :, 1, 2] = float("nan")
    series = torch.stack([raw[2], raw[1], raw[0]])[None]  # oldest first
    with torch.no_grad():
        ours = model.features(x)
        theirs = presto_series_features(model.encoder, series, list(BANDS), model.latlon,
                                         [3, 4, 5])
        own = _presto_model(BANDS, shared_weights).features(x[:, :len(BANDS)])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (ours - own).abs().amax() > 0.1  # the months are read, not the stack's own alone


def test_a_cloudy_month_beside_its_radar_keeps_the_radar_for_presto(shared_weights):
    """The default bands (S2 with S1): the month before's S2 missing at a pixel, its S1
    there. Presto leaves out that month's optical bands alone at that pixel: Presto's
    features of the bands with those values NaN, not the whole month left out."""
    from contract.bands import series_bands
    from training.models.encoders.series import presto_series_features

    own = ("B2", "B3", "B4", "B8", "VV", "VH")
    bands = series_bands(own, 2)  # May, then April (_m1)
    model = _presto_model(bands, shared_weights)
    x = _image(bands)
    x[0, 6:10, 1, 2] = 0.0  # April's S2 missing at one pixel (cloud); its VV, VH there
    mean, std = model.get_buffer("input_mean"), model.get_buffer("input_std")
    raw = x[:, model.columns] * std[:, None, None] + mean[:, None, None]
    raw[0, :4, 1, 2] = float("nan")  # oldest first: April's B2, B3, B4, B8
    whole = x.clone()
    whole[0, 6:12, 1, 2] = 0.0  # the whole of April missing there
    with torch.no_grad():
        ours = model.features(x)
        theirs = presto_series_features(model.encoder, raw.reshape(1, 2, 6, 3, 4), list(own),
                                         model.latlon, [4, 5])
        gone = model.features(whole)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (ours[0, :, 1, 2] - gone[0, :, 1, 2]).abs().amax() > 0.01  # April's radar is read
