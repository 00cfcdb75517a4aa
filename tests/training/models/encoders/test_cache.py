"""Frozen features kept per patch: in memory, on disk across runs, never changing a map."""

from __future__ import annotations

import pytest
import torch

from training.models.encoders.cache import CACHE_ENV, FeatureCache, apply_view
from training.models.encoders.fused import EncoderUNet
from training.models.encoders.registry import PRESTO, load_encoder

BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]


def _counting(calls: list[int]):
    def compute(x: torch.Tensor) -> torch.Tensor:  # per pixel, so turns commute with it
        calls.append(len(x))
        return torch.cat([x * 2, x.sum(1, keepdim=True)], dim=1)
    return compute


def test_a_turned_patch_reuses_the_features_of_its_canonical_view():
    cache, calls = FeatureCache(1 << 20), []
    x = torch.rand(1, 3, 8, 8)
    first = cache.features(x, _counting(calls))
    turned = cache.features(apply_view(x, (1, True)), _counting(calls))
    assert calls == [1] and cache.hits == 1
    assert torch.allclose(turned, apply_view(first, (1, True)))


def test_the_disk_tier_serves_a_later_run_and_the_salt_keeps_others_apart(tmp_path):
    x = torch.rand(2, 3, 8, 8)
    calls: list[int] = []
    first = FeatureCache(0, tmp_path, "presto a").features(x, _counting(calls))
    again = FeatureCache(0, tmp_path, "presto a").features(x, _counting(calls))
    assert calls == [2] and torch.equal(first, again)
    FeatureCache(0, tmp_path, "presto b").features(x, _counting(calls))
    assert calls == [2, 2]  # another location or month is another encoding
    assert len(list(tmp_path.rglob("*.npy"))) == 4


def test_a_model_maps_the_same_with_and_without_the_cache(presto_file, tmp_path, monkeypatch):
    def model() -> EncoderUNet:
        torch.manual_seed(0)
        m = EncoderUNet(10, 2, bands=BANDS, encoder="presto", encoder_sha256=PRESTO.sha256,
                        input_mean=[0.1] * 10, input_std=[0.05] * 10, fusion="head")
        m.encoder.load_state_dict(load_encoder(PRESTO, presto_file).state_dict())
        return m.eval()

    x = torch.randn(2, 10, 16, 16)
    plain = model()(x)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cached = model()
    assert torch.equal(cached(x), plain) and torch.equal(cached(x), plain)
    assert cached.cache.hits == 2 and cached.cache.misses == 2
    assert len(list(tmp_path.rglob("*.npy"))) == 2


def test_a_frozen_encoders_run_flips_and_turns_but_does_not_blur():
    """A blurred patch is other pixels, which the cache would encode afresh every epoch."""
    from training.config import TrainConfig
    from training.run.inputs import augment_for

    frozen = augment_for(TrainConfig.of(encoder="presto=x.pt"))
    assert frozen is not None and frozen.blur == 0.0
    assert augment_for(TrainConfig.of(encoder="presto=x.pt", freeze_encoder=False)).blur > 0
    assert augment_for(TrainConfig()).blur > 0
    assert augment_for(TrainConfig.of(augment=False)) is None


def test_a_cache_folder_that_is_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    from core.errors import StorageError
    from training.models.encoders.cache import folder_from_env

    (tmp_path / "notadir").write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "notadir"))
    with pytest.raises(StorageError, match=f"{CACHE_ENV}=.* is not a folder isamap can write"):
        folder_from_env()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "new" / "cache"))
    assert folder_from_env() == tmp_path / "new" / "cache" and (tmp_path / "new").is_dir()
