"""The product's series features are the ``presto series`` arm's, on the real Slovenia series.

docs/evidence/points.md's ``presto series`` arm (experiments.presto_dates) calls Presto on the
tile's three clear dates as one series; ``isamap-train --encoder presto=PATH`` on a series
stack (``B4_m1``-style bands) must give the same features for the same pixels, so that
evidence is evidence about the product's path.
"""

from __future__ import annotations

import numpy as np
import torch

from contract.bands import series_bands
from experiments.change_pairs import load_scenes
from experiments.presto_dates import COLUMNS, PRESTO_BANDS, presto_series, tile_latlon
from training.models.encoders.fused import EncoderUNet
from training.models.encoders.registry import PRESTO, load_encoder

#: the tolerance before the product's half-precision rounding: float32 arithmetic in another
#: order (the measured largest difference is 2.9e-6); the encoder's input is the reflectance
#: on the 1e-4 step, which the tile's already is (to float32's ulp)
FLOAT_ATOL = 2e-5
#: the product keeps frozen features in half precision: rounded by up to 2**-11 of the value
HALF_RTOL = 2.0 ** -10


def test_the_fused_models_series_features_are_the_experiments_presto_series(shared_data,
                                                                            shared_weights):
    dates, scenes, _ = load_scenes(shared_data / "eolearn_slovenia")
    assert dates == ["2015-07-11", "2015-08-30", "2015-09-09"]  # July, August, September
    scenes = scenes[:, :, :40]  # 40 of the 101 rows: 4,000 pixels
    encoder = load_encoder(PRESTO, shared_weights / "presto" / "default_model.pt")
    latlon = tile_latlon((101, 100))
    theirs = presto_series(encoder, scenes, [int(d[5:7]) - 1 for d in dates], latlon)

    # the series stack of September: its own bands, then August's (_m1), then July's (_m2)
    stack = np.concatenate([scenes[2 - k][list(COLUMNS)] for k in range(3)])
    bands = series_bands(PRESTO_BANDS, 3)
    mean = stack.reshape(len(bands), -1).mean(axis=1)
    std = stack.reshape(len(bands), -1).std(axis=1)
    model = EncoderUNet(len(bands), 2, bands=list(bands), encoder="presto",
                        encoder_sha256=PRESTO.sha256, input_mean=mean.tolist(),
                        input_std=std.tolist(), latlon=latlon, month=8,
                        widths=(4, 8, 8, 8, 8)).eval()
    model.encoder.load_state_dict(encoder.state_dict(), strict=True)
    x = torch.from_numpy((stack - mean[:, None, None]) / std[:, None, None])[None]
    assert model.months == [6, 7, 8]
    with torch.no_grad():
        ours = model.features(x)[0].float().reshape(128, -1).T.numpy()
        exact = model._encode(model._raw(x))[0].reshape(128, -1).T.numpy()
    assert theirs.shape == ours.shape == (4000, 128)
    assert np.abs(exact - theirs).max() <= FLOAT_ATOL
    assert np.allclose(ours, theirs, rtol=HALF_RTOL, atol=FLOAT_ATOL)
    one = presto_series(encoder, scenes[2:], [8], latlon)
    assert np.abs(ours - one).max() > 0.1  # a series, not September alone
