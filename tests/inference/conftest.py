"""Small real rasters and plain-torch models for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.models import conv1x1
from tests.support.rasters import smooth_stack, write_stack

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")














@pytest.fixture
def stack(tmp_path) -> Path:
    """A 300 x 410 six-band stack with a NaN hole in one band."""
    data = smooth_stack(300, 410)
    data[2, 40:60, 100:130] = np.nan
    return write_stack(tmp_path / "stack.tif", data)


@pytest.fixture
def cogs(tmp_path):
    """A real class/probability COG pair from a tiny prediction."""
    from inference.cog.maps import OutputInfo
    from inference.predict.raster import PredictConfig, predict_raster
    from inference.predict.runtime import RuntimeOptions, TilePredictor

    src = write_stack(tmp_path / "small.tif", smooth_stack(90, 110))
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                      options=RuntimeOptions(precision="fp32", channels_last="on"))
    info = OutputInfo("unet", BANDS, month="2023-06", metrics={"iou": 0.8})
    return predict_raster(str(src), str(tmp_path / "maps" / "wuhan_2023-06"), p, info,
                          PredictConfig(tile=64, overlap=16), progress=False)
