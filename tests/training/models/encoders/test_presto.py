"""Presto from its published file: it loads strictly and behaves as the pretrained model does."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from training.models.encoders.presto import GROUPS, Presto, prepare
from training.models.encoders.registry import PRESTO, load_encoder

S2 = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
FILE = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _java_pixels(shared_data, n: int = 1500) -> torch.Tensor:
    """``(n, 1, 10)`` reflectance of random pixels of the real East Java scene."""
    with rasterio.open(shared_data / "dynamicworld_s2" / "java_s2l2a.tif") as src:
        names = list(src.descriptions)
        image = src.read([names.index(b) + 1 for b in FILE]).astype(np.float32) / 1e4
    rng = np.random.default_rng(0)
    rows = rng.integers(0, image.shape[1], n)
    cols = rng.integers(0, image.shape[2], n)
    return torch.from_numpy(image[:, rows, cols].T.copy())[:, None, :]


def _presto(path) -> Presto:
    model = Presto()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def test_the_published_file_loads_strictly_with_the_papers_encoder_size(presto_file):
    encoder = load_encoder(PRESTO, presto_file)
    assert sum(p.numel() for p in encoder.parameters()) == 404_160
    assert not encoder.training


@pytest.mark.slow
def test_the_decoder_restores_a_held_out_band_group_from_the_encoding(presto_file,
                                                                      shared_data):
    """Presto was pretrained to predict masked inputs: on real pixels, a band group left out
    of the input comes back from the encoding far closer than a per-band mean does, and
    closer than the same network with untrained weights gets it."""
    values = _java_pixels(shared_data)
    x, mask = prepare(values, S2)
    n = x.shape[0]
    dw = torch.full((n, 1), 9)
    latlon = torch.tensor([[-7.8, 112.1]]).expand(n, 2)
    month = torch.full((n,), 6)
    trained = _presto(presto_file)
    torch.manual_seed(0)
    untrained = Presto().eval()
    for group in ("S2_Red_Edge", "S2_SWIR", "S2_NIR_20m"):
        cols = list(GROUPS[group])
        held = mask.clone()
        held[..., cols] = 1
        with torch.no_grad():
            restored = trained(x * (1 - held), dw, latlon, held, month)[0][..., cols]
            guessed = untrained(x * (1 - held), dw, latlon, held, month)[0][..., cols]
        truth = x[..., cols]
        error = (restored - truth).abs().mean()
        spread = (truth - truth.mean(0)).abs().mean()
        assert error < 0.75 * spread, group
        assert error < 0.5 * (guessed - truth).abs().mean(), group


def test_a_batch_of_one_mask_equals_the_masked_attention_path(presto_file, shared_data):
    """Pixels sharing one mask run their kept tokens alone (the fast path every map takes);
    mixed with a pixel masked otherwise they go through masked attention: same features."""
    encoder = _presto(presto_file).encoder
    values = _java_pixels(shared_data, 8)
    x, mask = prepare(values, S2)
    n = x.shape[0]
    args = (torch.full((n, 1), 9), torch.zeros(n, 2), mask, torch.zeros(n, dtype=torch.long))
    with torch.no_grad():
        alone = encoder(x, *args[:2], args[2], args[3])
        other = mask.clone()
        other[0, :, list(GROUPS["S2_SWIR"])] = 1
        mixed = encoder(x, args[0], args[1], other, args[3])
    assert torch.allclose(alone[1:], mixed[1:], atol=1e-5)
    assert not torch.allclose(alone[0], mixed[0], atol=1e-3)


def test_absent_groups_are_masked_and_ndvi_needs_red_and_nir():
    x, mask = prepare(torch.full((2, 1, 3), 0.2), ("B2", "B3", "B4"))
    absent = {name for name, cols in GROUPS.items() if mask[0, 0, list(cols)].max() == 1}
    assert absent == set(GROUPS) - {"S2_RGB"}  # NDVI too: no B8
    x, mask = prepare(torch.tensor([[[0.1, 0.3]]]), ("B4", "B8"))
    assert mask[0, 0, 16] == 0 and abs(float(x[0, 0, 16]) - 0.5) < 1e-6
