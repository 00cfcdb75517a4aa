"""Spectral-index input channels: computed inside the network, the same in training and mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ModelError
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.rasters import write_patch_dataset
from training.config import TrainConfig
from training.data import NormStats, PatchDataset
from training.modelfile import load_model_file
from training.models import create_model
from training.models.indices import INDEX_BANDS
from training.run.patch_training import train

BANDS = ("B2", "B3", "B4", "B8", "B11")
INDICES = ["ndbi", "ndvi", "mndwi"]


def _expected(raw: np.ndarray) -> np.ndarray:
    """The indices from reflectance, written out here (not through the module under test)."""
    band = {name: raw[BANDS.index(name)].astype(np.float64) for name in BANDS}
    return np.stack([(band[a] - band[b]) / (band[a] + band[b])
                     for a, b in (INDEX_BANDS[n] for n in INDICES)])


def test_index_channels_are_the_same_in_training_and_in_the_prediction_path(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, bands=BANDS)
    cfg = TrainConfig(data=str(root), out_dir=str(tmp_path / "run"), model="unet-s2-window",
                      model_kwargs={"widths": [4, 4, 8, 8, 8], "indices": INDICES},
                      epochs=1, batch_size=2, num_workers=0, precision="fp32",
                      channels_last="off", progress=False, augment=False)
    result = train(cfg)
    model, meta = load_model_file(result.model_path)
    assert meta.model_kwargs["indices"] == INDICES and len(meta.model_kwargs["input_mean"]) == 5
    assert meta.norm == "training" and meta.window == 512  # unet-s2-window records its tile
    raw = PatchDataset(root, "val").read_raw(0)[0]
    seen = []
    model.indices.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    with torch.no_grad():  # training's input: the dataset's normalisation
        model(PatchDataset(root, "val", norm=_norm(meta))[0]["image"][None])
    predictor = TilePredictor.for_model(model, meta, options=RuntimeOptions(
        device="cpu", precision="fp32", channels_last="off"))
    predictor(raw[None])  # the mapping path: raw reflectance in, its own normalisation
    assert len(seen) == 2
    assert np.allclose(seen[0].numpy()[0], _expected(raw), atol=1e-5)
    assert np.allclose(seen[1].numpy()[0], seen[0].numpy()[0], atol=1e-5)


def _norm(meta) -> NormStats:
    return NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))


def test_indices_need_their_bands_and_the_input_normalisation():
    stats = {"input_mean": [0.1] * 4, "input_std": [0.05] * 4}
    with pytest.raises(ModelError, match=r"need bands \['B11'\]"):
        create_model("unet-s2", 4, 2, bands=["B2", "B3", "B4", "B8"], indices=["ndbi"], **stats)
    with pytest.raises(ModelError, match="normalisation"):
        create_model("unet-s2", 5, 2, bands=list(BANDS), indices=["ndbi"])
    with pytest.raises(ModelError, match="unknown spectral indices"):
        create_model("unet-s2", 5, 2, bands=list(BANDS), indices=["nbr"], **stats)
