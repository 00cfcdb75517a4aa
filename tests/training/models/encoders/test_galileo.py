"""The Galileo nano encoder from its published file: strict load, features that carry built-up."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from experiments.scoring import roc_auc
from training.models.encoders.galileo import GalileoEncoder, galileo_features, normalise
from training.models.encoders.registry import GALILEO_NANO, load_encoder

S2 = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
FILE = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def test_the_published_file_loads_strictly_with_the_nano_size(galileo_file):
    encoder = load_encoder(GALILEO_NANO, galileo_file)
    assert sum(p.numel() for p in encoder.parameters()) == 1_037_856


def test_s2_is_standardised_by_the_pretraining_statistics():
    """Galileo's "std" normalisation: the pretraining mean maps to 0.5, +-2 std to 1 and 0."""
    from training.models.encoders.galileo import MEAN, STD

    b2 = torch.tensor([MEAN[2] - 2 * STD[2], MEAN[2], MEAN[2] + 2 * STD[2]]) / 1e4
    assert torch.allclose(normalise(b2[:, None], ["B2"])[:, 0],
                          torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)


def _ridge_auc(feats: torch.Tensor, built: np.ndarray, scored: np.ndarray) -> float:
    """AUC on the lower half of a linear read-out fitted on the upper half."""
    x = feats[0].reshape(feats.shape[1], -1).T.double().numpy()
    x = np.c_[x, np.ones(len(x))]
    upper = np.zeros(scored.shape, bool)
    upper[: scored.shape[0] // 2] = True
    fit, test = (scored & upper).ravel(), (scored & ~upper).ravel()
    y = built.ravel() * 2.0 - 1
    w = np.linalg.solve(x[fit].T @ x[fit] + 1e-2 * np.eye(x.shape[1]), x[fit].T @ y[fit])
    return roc_auc(x[test] @ w, built.ravel()[test])


@pytest.mark.slow
def test_pretrained_features_carry_built_up_better_than_untrained_ones(galileo_file,
                                                                        shared_data):
    """On real East Java pixels, a linear read-out of the pretrained features separates the
    hand-labelled built area from the rest on rows it was not fitted on, and better than the
    same read-out of the same network with untrained weights."""
    folder = shared_data / "dynamicworld_s2"
    with rasterio.open(folder / "java_s2l2a.tif") as src:
        names = list(src.descriptions)
        image = src.read([names.index(b) + 1 for b in FILE]).astype(np.float32) / 1e4
    with rasterio.open(folder / "java_label.tif") as src:
        label = src.read(1)
    image, label = image[:, :256, 128:384], label[:256, 128:384]
    built, scored = label == 7, (label != 0) & (label != 10)
    raw = torch.from_numpy(image.copy())[None]
    trained = load_encoder(GALILEO_NANO, galileo_file)
    torch.manual_seed(0)
    untrained = GalileoEncoder().eval()
    with torch.no_grad():
        auc = [_ridge_auc(galileo_features(net, raw, S2, 6, 4, (-7.8, 112.1)), built, scored)
               for net in (trained, untrained)]
    assert auc[0] > 0.95 and auc[0] > auc[1] + 0.01, auc
